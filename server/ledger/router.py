"""HTTP routes of the safety ledger (安全台账).

Point routes ({point_id}) sit behind the place guard like every point route. The village and township
routes check the caller's scope themselves (their names are in SCOPE_AWARE_ROUTES, which the app
passes to guard_points): a place outside the scope answers 404, as an unknown place does.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response

from server.auth.deps import Auditor, Conn, CurrentPrincipal, CurrentScope, auditor
from server.auth.scopes import Scope

from . import repository
from .calendar import InspectionKind, month_bounds
from .errors import AlreadyDoneError, ForbiddenKindError, InspectionRefusedError, LedgerError, LedgerNotFoundError
from .export import XLSX_MEDIA_TYPE, export_filename, workbook_bytes
from .schemas import (
    MONTH_PATTERN,
    ClosureIn,
    ClosureOut,
    EvidenceDetail,
    InspectionCreate,
    InspectionOut,
    MissingOut,
    ProblemDone,
    ProblemOut,
    SampleDisposal,
    SampleOut,
    parse_month,
)
from .service import LedgerService
from .settings import LedgerSettings

router = APIRouter(prefix="/api/v1/ledger", tags=["ledger"])
SCOPE_AWARE_ROUTES = frozenset({"village_missing", "township_missing", "village_export", "township_export"})
MAX_EVIDENCE_DAYS = 92

Month = Annotated[str | None, Query(pattern=MONTH_PATTERN, description="YYYY-MM; default: this month")]
Audit = Annotated[Auditor, Depends(auditor)]


def ledger_service(request: Request) -> LedgerService:
    """One LedgerService per application (settings from app.state.ledger_settings, else YANGYI_LEDGER_*)."""
    state = request.app.state
    service = getattr(state, "ledger_service", None)
    if not isinstance(service, LedgerService):
        settings = getattr(state, "ledger_settings", None)
        service = LedgerService(settings if isinstance(settings, LedgerSettings) else LedgerSettings(),
                                state.settings.api.timezone)
        state.ledger_service = service
    return service


Service = Annotated[LedgerService, Depends(ledger_service)]


def _now(request: Request) -> datetime:
    clock = getattr(request.app.state, "clock", None)
    return clock() if clock is not None else datetime.now(UTC)


def _http(exc: LedgerError) -> HTTPException:
    if isinstance(exc, LedgerNotFoundError):
        return HTTPException(404, str(exc))
    if isinstance(exc, ForbiddenKindError):
        return HTTPException(403, str(exc))
    if isinstance(exc, AlreadyDoneError):
        return HTTPException(409, str(exc))
    if isinstance(exc, InspectionRefusedError):
        return HTTPException(422, str(exc))
    return HTTPException(400, str(exc))


def _month(service: LedgerService, month: str | None, now: datetime) -> tuple[int, int]:
    if month is None:
        today = service.local_day(now)
        return today.year, today.month
    return parse_month(month)


# ---- a meal point's ledger ------------------------------------------------------------------------


@router.post("/points/{point_id}/inspections", response_model=InspectionOut, status_code=201,
             summary="Record a daily, weekly or monthly inspection")
def record_inspection(point_id: str, body: InspectionCreate, request: Request, conn: Conn,
                      principal: CurrentPrincipal, service: Service, audit: Audit) -> InspectionOut:
    try:
        out = service.record(conn, point_id, body, principal, _now(request))
    except LedgerError as exc:
        conn.rollback()
        raise _http(exc) from exc
    audit("ledger.inspection", f"point:{point_id}", inspection_id=out.id, kind=out.kind.value,
          failed_items=sum(1 for i in out.items if not i.passed), problems=len(out.problems))
    conn.commit()
    return out


@router.get("/points/{point_id}/inspections", response_model=list[InspectionOut],
            summary="A month's inspections with their sensor evidence")
def list_inspections(point_id: str, request: Request, conn: Conn, service: Service,
                     month: Month = None) -> list[InspectionOut]:
    now = _now(request)
    first, stop = month_bounds(*_month(service, month, now))
    if repository.point(conn, point_id) is None:
        raise HTTPException(404, f"no meal point {point_id!r}")
    out = service.inspections(conn, [point_id], first, stop, now)
    conn.commit()  # refreshed evidence summaries
    return out


@router.get("/points/{point_id}/inspections/{inspection_id}", response_model=InspectionOut,
            summary="One inspection with its items, problems, samples and evidence")
def get_inspection(point_id: str, inspection_id: int, request: Request, conn: Conn,
                   service: Service) -> InspectionOut:
    try:
        out = service.inspection(conn, point_id, inspection_id, _now(request))
    except LedgerError as exc:
        raise _http(exc) from exc
    conn.commit()
    return out


@router.post("/points/{point_id}/problems/{problem_id}/done", response_model=ProblemOut,
             summary="Report a problem rectified (整改完成)")
def problem_done(point_id: str, problem_id: int, body: ProblemDone, request: Request, conn: Conn,
                 principal: CurrentPrincipal, service: Service, audit: Audit) -> ProblemOut:
    try:
        out = service.problem_done(conn, point_id, problem_id, body, principal, _now(request))
    except LedgerError as exc:
        conn.rollback()
        raise _http(exc) from exc
    audit("ledger.problem_done", f"point:{point_id}", problem_id=problem_id)
    conn.commit()
    return out


@router.post("/points/{point_id}/samples/{sample_id}/disposal", response_model=SampleOut,
             summary="Record a meal sample's disposal (留样销毁)")
def dispose_sample(point_id: str, sample_id: int, body: SampleDisposal, request: Request, conn: Conn,
                   principal: CurrentPrincipal, service: Service, audit: Audit) -> SampleOut:
    try:
        out = service.dispose_sample(conn, point_id, sample_id, body, principal, _now(request))
    except LedgerError as exc:
        conn.rollback()
        raise _http(exc) from exc
    audit("ledger.sample_disposal", f"point:{point_id}", sample_id=sample_id, kept_hours=out.kept_hours)
    conn.commit()
    return out


@router.post("/points/{point_id}/closures", response_model=ClosureOut, status_code=201,
             summary="Record a day the point was closed (no daily check due)")
def add_closure(point_id: str, body: ClosureIn, request: Request, conn: Conn, principal: CurrentPrincipal,
                service: Service, audit: Audit) -> ClosureOut:
    try:
        out = service.add_closure(conn, point_id, body, principal, _now(request))
    except LedgerError as exc:
        conn.rollback()
        raise _http(exc) from exc
    audit("ledger.closure", f"point:{point_id}", day=body.day.isoformat(), reason=body.reason)
    conn.commit()
    return out


@router.get("/points/{point_id}/missing", response_model=list[MissingOut],
            summary="Required inspections not recorded in a month")
def point_missing(point_id: str, request: Request, conn: Conn, service: Service,
                  month: Month = None) -> list[MissingOut]:
    now = _now(request)
    point = repository.point(conn, point_id)
    if point is None:
        raise HTTPException(404, f"no meal point {point_id!r}")
    return service.missing(conn, [point], *month_bounds(*_month(service, month, now)), now)


@router.get("/points/{point_id}/evidence", response_model=EvidenceDetail,
            summary="Sensor evidence over local days [start, end), each alarm and alert and how it closed")
def point_evidence(point_id: str, request: Request, conn: Conn, service: Service,
                   start: Annotated[date, Query()], end: Annotated[date, Query()]) -> EvidenceDetail:
    if not start < end <= start + timedelta(days=MAX_EVIDENCE_DAYS):
        raise HTTPException(422, f"need start < end, at most {MAX_EVIDENCE_DAYS} days apart")
    try:
        return service.evidence(conn, point_id, start, end, _now(request))
    except LedgerError as exc:
        raise _http(exc) from exc


# ---- villages and townships -----------------------------------------------------------------------


def _village_in_scope(conn: Conn, scope: Scope, village_id: int) -> dict[str, Any]:
    found = repository.village(conn, village_id)
    if found is None or not (scope.county or village_id in scope.village_ids
                             or found["township_id"] in scope.township_ids):
        raise HTTPException(404, f"no village {village_id}")
    return found


def _township_in_scope(conn: Conn, scope: Scope, township_id: int) -> dict[str, Any]:
    found = repository.township(conn, township_id)
    if found is None or not (scope.county or township_id in scope.township_ids):
        raise HTTPException(404, f"no township {township_id}")
    return found


@router.get("/villages/{village_id}/missing", response_model=list[MissingOut],
            summary="A village's missing daily and weekly checks in a month")
def village_missing(village_id: int, request: Request, conn: Conn, scope: CurrentScope, service: Service,
                    month: Month = None) -> list[MissingOut]:
    _village_in_scope(conn, scope, village_id)
    now = _now(request)
    points = repository.points_of(conn, village_id=village_id)
    return service.missing(conn, points, *month_bounds(*_month(service, month, now)), now,
                           (InspectionKind.DAILY, InspectionKind.WEEKLY))


@router.get("/townships/{township_id}/missing", response_model=list[MissingOut],
            summary="A township's missing daily, weekly and monthly checks in a month")
def township_missing(township_id: int, request: Request, conn: Conn, scope: CurrentScope, service: Service,
                     month: Month = None) -> list[MissingOut]:
    _township_in_scope(conn, scope, township_id)
    now = _now(request)
    points = repository.points_of(conn, township_id=township_id)
    return service.missing(conn, points, *month_bounds(*_month(service, month, now)), now)


def _xlsx(data: bytes, filename: str) -> Response:
    # RFC 6266/5987: an ASCII fallback name and the UTF-8 one (Chinese place names).
    disposition = f"attachment; filename=\"ledger.xlsx\"; filename*=UTF-8''{quote(filename)}"
    return Response(content=data, media_type=XLSX_MEDIA_TYPE, headers={"Content-Disposition": disposition})


@router.get("/villages/{village_id}/export", response_class=Response,
            responses={200: {"content": {XLSX_MEDIA_TYPE: {}}}}, summary="A village's monthly ledger as XLSX")
def village_export(village_id: int, request: Request, conn: Conn, scope: CurrentScope, service: Service,
                   audit: Audit, month: Month = None) -> Response:
    _village_in_scope(conn, scope, village_id)
    year, mon = _month(service, month, _now(request))
    ledger = service.month(conn, village_id=village_id, year=year, month=mon, now=_now(request))
    audit("ledger.export", f"village:{village_id}", month=f"{year:04d}-{mon:02d}")
    conn.commit()
    return _xlsx(workbook_bytes(ledger), export_filename(ledger))


@router.get("/townships/{township_id}/export", response_class=Response,
            responses={200: {"content": {XLSX_MEDIA_TYPE: {}}}}, summary="A township's monthly ledger as XLSX")
def township_export(township_id: int, request: Request, conn: Conn, scope: CurrentScope, service: Service,
                    audit: Audit, month: Month = None) -> Response:
    _township_in_scope(conn, scope, township_id)
    year, mon = _month(service, month, _now(request))
    ledger = service.month(conn, township_id=township_id, year=year, month=mon, now=_now(request))
    audit("ledger.export", f"township:{township_id}", month=f"{year:04d}-{mon:02d}")
    conn.commit()
    return _xlsx(workbook_bytes(ledger), export_filename(ledger))
