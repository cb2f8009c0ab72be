"""HTTP routes for the bureau's Excel sheets of elders, categories and cards (import with a report, export)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel

from server.auth.deps import Auditor, Conn, auditor, require
from server.auth.scopes import Role
from server.subsidy import importer, repository

router = APIRouter(prefix="/api/v1/registry", tags=["registry"])
Admin = Depends(require(Role.BUREAU_ADMIN))
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
MAX_UPLOAD_BYTES = 20 * 1024 * 1024


class ProblemOut(BaseModel):
    sheet: str
    row: int
    column: str
    message: str


class ImportReportOut(BaseModel):
    dry_run: bool
    ok: bool
    written: bool
    rows: dict[str, int]
    added: dict[str, int]
    updated: dict[str, int]
    unchanged: dict[str, int]
    problems: list[ProblemOut]


def _tz(conn: Any) -> Any:
    book = repository.load_book(conn)
    return book.tz if book else importer.DEFAULT_TZ


@router.post("/import", response_model=ImportReportOut, dependencies=[Admin],
             summary="Import the bureau's workbook (body: the .xlsx bytes); dry_run checks without writing")
async def import_workbook(request: Request, conn: Conn, audit: Annotated[Auditor, Depends(auditor)],
                          dry_run: Annotated[bool, Query()] = True) -> ImportReportOut:
    data = await request.body()
    if not data:
        raise HTTPException(422, "send the .xlsx file as the request body")
    if len(data) > MAX_UPLOAD_BYTES:
        raise HTTPException(413, f"the workbook is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MiB")

    def run() -> importer.Report:
        report = importer.import_workbook(conn, data, dry_run=dry_run, tz=_tz(conn))
        if not dry_run:
            audit("registry.import", "registry", ok=report.ok, rows=report.rows, added=report.added,
                  updated=report.updated, problems=len(report.problems))
        conn.commit()
        return report

    try:
        report = await run_in_threadpool(run)
    except importer.ImportFileError as exc:
        raise HTTPException(422, str(exc)) from exc
    return ImportReportOut(
        dry_run=report.dry_run, ok=report.ok, written=report.ok and not report.dry_run, rows=report.rows,
        added=report.added, updated=report.updated, unchanged=report.unchanged,
        problems=[ProblemOut(sheet=p.sheet, row=p.row, column=p.column, message=p.message) for p in report.problems],
    )


@router.get("/export", dependencies=[Admin], summary="The registry as the bureau's workbook (re-importable)")
def export_workbook(conn: Conn) -> Response:
    data = importer.export_workbook(conn, tz=_tz(conn))
    return Response(data, media_type=XLSX,
                    headers={"Content-Disposition": 'attachment; filename="yangyi-registry.xlsx"'})
