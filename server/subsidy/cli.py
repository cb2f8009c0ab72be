"""`python -m server.subsidy.cli`: registry workbook import/export, policies, settlement and notice jobs.

    import-elders FILE [--dry-run] [--report OUT.csv]   check (and write) the bureau's workbook
    export-elders FILE                                   the registry in the same layout
    template FILE                                        an empty workbook with the headers
    policies add FILE | policies list                    stored policy versions
    settle YYYY-MM [--sql]                               compute and store a run
    notices-daily [--today YYYY-MM-DD]                   draft on the 1st, flag unpublished after the 10th

Exit codes: 0 done, 1 the file or data has problems (report printed), 2 bad usage or settings.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TextIO

import psycopg

from server.errors import ServerError
from server.subsidy import importer, jobs, repository, service
from server.subsidy.records import Month

log = logging.getLogger(__name__)
BAR_WIDTH = 30


def progress_bar(out: TextIO) -> Callable[[int, int], None]:
    """A one-line text progress bar, redrawn at most 100 times."""
    last = [-1]

    def show(done: int, total: int) -> None:
        pct = 100 * done // max(total, 1)
        if pct == last[0] and done != total:
            return
        last[0] = pct
        filled = BAR_WIDTH * done // max(total, 1)
        out.write(f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{total} rows")
        if done == total:
            out.write("\n")
        out.flush()

    return show


def _template(path: Path) -> None:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = importer.ELDERS_SHEET
    ws.append(list(importer.ELDER_COLUMNS))
    wb.create_sheet(importer.CATEGORIES_SHEET).append(list(importer.CATEGORY_COLUMNS))
    wb.create_sheet(importer.CARDS_SHEET).append(list(importer.CARD_COLUMNS))
    wb.save(path)


def main(argv: list[str] | None = None, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
         stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Entry point; returns the exit code."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    parser = argparse.ArgumentParser(prog="python -m server.subsidy.cli", description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", help="PostgreSQL DSN (default: YANGYI_DB_DSN or the native deploy's)")
    parser.add_argument("--actor", default="cli", help="who is recorded as having done it")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("import-elders", help="import the registry workbook")
    p.add_argument("file", type=Path)
    p.add_argument("--dry-run", action="store_true", help="check and count, write nothing")
    p.add_argument("--report", type=Path, help="write the row-by-row problems as CSV")
    p.add_argument("--no-progress", action="store_true")
    p = sub.add_parser("export-elders", help="export the registry workbook")
    p.add_argument("file", type=Path)
    p = sub.add_parser("template", help="write an empty workbook with the headers")
    p.add_argument("file", type=Path)
    p = sub.add_parser("policies", help="stored policy versions")
    p.add_argument("action", choices=["add", "list"])
    p.add_argument("file", type=Path, nargs="?")
    p = sub.add_parser("settle", help="compute and store a month's settlement run")
    p.add_argument("month")
    p.add_argument("--sql", action="store_true", help="the set-based path (totals only)")
    p = sub.add_parser("notices-daily", help="the daily notice job")
    p.add_argument("--today", type=date.fromisoformat, help="the day to act as (default: today, local)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=err)

    if args.command == "template":
        _template(args.file)
        print(f"wrote {args.file}", file=out)
        return 0
    try:
        from server.settings import load_settings

        dsn = args.dsn or load_settings().db.resolved_dsn()
    except ServerError as exc:
        print(f"settings: {exc}", file=err)
        return 2
    try:
        args.dsn = dsn
        with psycopg.connect(dsn) as conn:
            return _run(args, conn, clock, out, err)
    except ServerError as exc:
        print(f"error: {exc}", file=err)
        return 1
    except psycopg.OperationalError as exc:
        print(f"database: {exc}", file=err)
        return 2


def _run(args: argparse.Namespace, conn: psycopg.Connection[Any], clock: Callable[[], datetime], out: TextIO,
         err: TextIO) -> int:
    if args.command == "import-elders":
        book = repository.load_book(conn)
        tz = book.tz if book else importer.DEFAULT_TZ
        report = importer.import_workbook(
            conn, importer.read_file(args.file), at=clock(), dry_run=args.dry_run, tz=tz,
            progress=None if args.no_progress else progress_bar(err))
        for problem in report.problems:
            print(problem, file=out)
        if args.report:
            with args.report.open("w", newline="", encoding="utf-8-sig") as f:
                w = csv.writer(f)
                w.writerow(["sheet", "row", "column", "message"])
                for pr in report.problems:
                    w.writerow([pr.sheet, pr.row, pr.column, pr.message])
        print(report.summary(), file=out)
        if not report.dry_run and report.ok and report.rows.get(importer.CARDS_SHEET):
            print("cards changed: run `yangyi-registry publish-rosters` so the points get them", file=out)
        return 0 if report.ok else 1
    if args.command == "export-elders":
        book = repository.load_book(conn)
        args.file.write_bytes(importer.export_workbook(conn, tz=book.tz if book else importer.DEFAULT_TZ))
        print(f"wrote {args.file}", file=out)
        return 0
    if args.command == "policies":
        if args.action == "list":
            for r in repository.policy_rows(conn):
                print(f"{r['version']}\t{r['effective_from']}\t{r['sha256'][:12]}\t{r['added_by']}", file=out)
            return 0
        if args.file is None:
            print("policies add needs a FILE", file=err)
            return 2
        added = service.add_policies(conn, importer.read_file(args.file).decode("utf-8"),
                                     by=args.actor, at=clock())
        conn.commit()
        for a in added:
            print(f"{a.version}: {a.status}", file=out)
        return 0
    if args.command == "settle":
        month = Month.parse(args.month)
        if args.sql:
            # Split by local days over one connection per core (the DSN this command connected with).
            run_id, sql_result = service.settle_month_sql(conn, month, by=args.actor, at=clock(), dsn=args.dsn,
                                                          workers=max(1, os.cpu_count() or 1))
            county = sql_result.county
        else:
            run_id, result = service.settle_month(conn, month, by=args.actor, at=clock())
            county = result.county
        conn.commit()
        print(f"run {run_id}: {county.taps} taps, {county.meals} meals, {county.amount_due} yuan due", file=out)
        return 0
    if args.command == "notices-daily":
        book = repository.load_book(conn)
        today = args.today or clock().astimezone(book.tz if book else importer.DEFAULT_TZ).date()
        daily = jobs.daily(conn, today)
        conn.commit()
        print(f"{daily.month}: drafted {len(daily.drafted)}, kept as published {len(daily.kept_published)},"
              f" overdue {len(daily.overdue)} {daily.overdue}", file=out)
        return 0
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
