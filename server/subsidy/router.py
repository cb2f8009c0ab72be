"""HTTP routes of the subsidy package (all behind the place guard; list routes filter by the caller's scope).

    GET  /api/v1/subsidy/policies                         stored versions (county-wide roles)
    POST /api/v1/subsidy/policies                         add versions from YAML (bureau_admin)
    POST /api/v1/subsidy/settlements/{month}/runs         settle and store a run, ?method=pure|sql (bureau_admin)
    GET  /api/v1/subsidy/settlements/{month}              state, runs, sign/reopen trail
    GET  …/settlements/{month}/totals|lines|exclusions|anomalies   of the signed run, else the latest
                                                          (or ?run_id=); scope-filtered
    POST …/settlements/{month}/sign | reopen | corrections        bureau_admin; audited
    GET  …/settlements/{month}/export.xlsx | export.csv   downloads, scope-filtered
    GET  /api/v1/subsidy/stats/{daily|points|villages|trend|first-time|lapsed|categories}
    POST/GET /api/v1/subsidy/services, /donations         staff records for the notice
    POST /api/v1/subsidy/notices/{month}/draft            draft all villages (bureau_admin)
    GET  /api/v1/subsidy/notices/{month}                  each village's notice status
    GET  /api/v1/subsidy/notices/{month}/{village_id}.html | .pdf ; POST …/{village_id}/publish
"""

from __future__ import annotations

import os
from datetime import date, timedelta
from decimal import Decimal
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from psycopg import sql
from psycopg.rows import dict_row

from server.auth.deps import Auditor, Conn, CurrentScope, auditor, current_masker, require
from server.auth.scopes import Masker, Place, Principal, Role, Scope, Sensitive
from server.subsidy import export, jobs, repository, service, stats
from server.subsidy.errors import (
    NoticeError,
    PolicyError,
    SettlementInputError,
    SnapshotError,
    SubsidyError,
)
from server.subsidy.notice import NoticeStatus, due_date, notice_status, render_html
from server.subsidy.pdf import render_pdf
from server.subsidy.records import Month

from .schemas import (
    AnomalyOut,
    CategoryAmount,
    CorrectionsOut,
    DonationIn,
    DonationOut,
    ExclusionOut,
    LineOut,
    MonthOut,
    NoticeOut,
    PolicyAddedOut,
    PolicyOut,
    PolicyUpload,
    PublishIn,
    ReopenIn,
    RunOut,
    ServiceIn,
    ServiceOut,
    SignedOut,
    SignIn,
    TotalOut,
)

router = APIRouter(prefix="/api/v1/subsidy", tags=["subsidy"])

# Route names that filter their rows by the caller's scope themselves (guard_points lets them through).
SCOPE_AWARE_ROUTES = frozenset({
    "settlement_totals", "settlement_lines", "settlement_exclusions", "settlement_anomalies",
    "settlement_export_xlsx", "settlement_export_csv", "stats_daily", "stats_points", "stats_villages",
    "stats_trend", "stats_first_time", "stats_lapsed", "stats_categories", "record_service", "list_services",
    "record_donation", "list_donations", "list_notices", "notice_html", "notice_pdf", "publish_notice",
})

Admin = Annotated[Principal, Depends(require(Role.BUREAU_ADMIN))]
# The SQL run splits the month over at most this many connections (one per core beyond that gains nothing).
SQL_WORKERS_MAX = 4
Staff = Annotated[Principal, Depends(require(Role.BUREAU_ADMIN, Role.TOWNSHIP_OFFICER, Role.VILLAGE_OFFICER,
                                             Role.CAREGIVER))]
Audit = Annotated[Auditor, Depends(auditor)]
Mask = Annotated[Masker, Depends(current_masker)]
MAX_LIST_ROWS = 5000


def _http(exc: Exception) -> HTTPException:
    if isinstance(exc, service.NoPolicyError | service.MonthLockedError | SnapshotError):
        return HTTPException(409, str(exc))
    if isinstance(exc, PolicyError | SettlementInputError | NoticeError):
        return HTTPException(422, str(exc))
    if isinstance(exc, psycopg.errors.IntegrityConstraintViolation):
        return HTTPException(409, str(exc).splitlines()[0])
    return HTTPException(400, str(exc))


def _month(text: str) -> Month:
    try:
        return Month.parse(text)
    except SubsidyError as exc:
        raise HTTPException(422, str(exc)) from exc


def _now(request: Request) -> Any:
    return request.app.state.clock()


def _run_for(conn: psycopg.Connection[Any], month: Month, run_id: int | None) -> int:
    if run_id is not None:
        row = repository.run_row(conn, run_id)
        if row is None or row["month"] != month.first_day:
            raise HTTPException(404, f"no run {run_id} for {month}")
        return run_id
    state = repository.month_state(conn, month)
    if state["state"] == "signed":
        snap = repository.snapshot(conn, month, int(state["revision"]))
        assert snap is not None
        return int(snap["run_id"])
    for method in ("pure", "sql"):
        row = repository.latest_run(conn, month, method)
        if row is not None:
            return int(row["id"])
    raise HTTPException(404, f"{month} has not been settled")


# --- policies -----------------------------------------------------------------------------------------


@router.get("/policies", response_model=list[PolicyOut], summary="Stored policy versions")
def list_policies(conn: Conn) -> list[dict[str, Any]]:
    return repository.policy_rows(conn)


@router.post("/policies", response_model=list[PolicyAddedOut], status_code=201, summary="Add policy versions")
def add_policies(body: PolicyUpload, request: Request, conn: Conn, who: Admin, audit: Audit) -> list[Any]:
    try:
        added = service.add_policies(conn, body.yaml, by=who.actor, at=_now(request))
    except (SubsidyError, psycopg.errors.IntegrityConstraintViolation) as exc:
        conn.rollback()
        raise _http(exc) from exc
    audit("subsidy.policy.add", "policies", versions=[f"{a.version}:{a.status}" for a in added])
    conn.commit()
    return [PolicyAddedOut(version=a.version, status=a.status) for a in added]


# --- settlements --------------------------------------------------------------------------------------


@router.post("/settlements/{month}/runs", response_model=RunOut, status_code=201, summary="Settle and store a run")
def create_run(month: str, request: Request, conn: Conn, who: Admin, audit: Audit,
               method: Annotated[str, Query(pattern="^(pure|sql)$")] = "pure") -> dict[str, Any]:
    m = _month(month)
    try:
        if method == "pure":
            run_id, _ = service.settle_month(conn, m, by=who.actor, at=_now(request))
        else:
            # Split by local days over one connection of its own per core (exact: the rules that link
            # taps never cross a local day); they read what this request's connection has committed.
            run_id, _ = service.settle_month_sql(conn, m, by=who.actor, at=_now(request),
                                                 dsn=request.app.state.settings.db.resolved_dsn(),
                                                 workers=max(1, min(SQL_WORKERS_MAX, os.cpu_count() or 1)))
    except (SubsidyError, psycopg.errors.IntegrityConstraintViolation) as exc:
        conn.rollback()
        raise _http(exc) from exc
    audit("subsidy.settle", f"month:{m}", run_id=run_id, method=method)
    conn.commit()
    row = repository.run_row(conn, run_id)
    assert row is not None
    return row


@router.get("/settlements/{month}", response_model=MonthOut, summary="A month's state, runs and trail")
def get_month(month: str, conn: Conn) -> dict[str, Any]:
    return service.month_overview(conn, _month(month))


def _point_rows(conn: psycopg.Connection[Any], table: str, columns: str, run_id: int, scope: Scope,
                point_id: str | None, extra: str = "", limit: int = MAX_LIST_ROWS) -> list[dict[str, Any]]:
    flt = scope.sql_filter("point_id")
    params: list[Any] = [run_id, *flt.params]
    where = sql.SQL("run_id = %s AND {}").format(flt.sql)
    if point_id is not None:
        where = where + sql.SQL(" AND point_id = %s")
        params.append(point_id)
    if extra:
        where = where + sql.SQL(extra)
    query = sql.SQL("SELECT {} FROM {} WHERE {} ORDER BY point_id, 1 LIMIT {}").format(
        sql.SQL(columns), sql.Identifier(table), where, sql.Literal(limit))
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchall()


@router.get("/settlements/{month}/totals", response_model=list[TotalOut], summary="Totals at every level in scope")
def settlement_totals(month: str, conn: Conn, scope: CurrentScope, mask: Mask,
                      run_id: int | None = None) -> list[TotalOut]:
    rid = _run_for(conn, _month(month), run_id)
    where, params = export.totals_filter(scope)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            sql.SQL("SELECT level, unit_id, name, township_id, village_id, meals, amount, adjustments, taps, excluded,"
                    " by_category FROM settlement_totals WHERE run_id = %s AND {} ORDER BY CASE level"
                    " WHEN 'county' THEN 0 WHEN 'township' THEN 1 WHEN 'village' THEN 2 ELSE 3 END,"
                    " township_id, village_id, unit_id").format(where),
            (rid, *params),
        ).fetchall()
    out = []
    for r in rows:
        cats = r["by_category"] if mask.sees(Sensitive.CATEGORY) else []
        out.append(TotalOut(
            level=r["level"], unit_id=r["unit_id"], name=r["name"], township_id=r["township_id"],
            village_id=r["village_id"], meals=r["meals"], amount=r["amount"], adjustments=r["adjustments"],
            due=r["amount"] + r["adjustments"], taps=r["taps"], excluded=r["excluded"],
            by_category=[CategoryAmount(category=c["category"], meals=c["meals"], amount=Decimal(c["amount"]))
                         for c in cats],
        ))
    return out


@router.get("/settlements/{month}/lines", response_model=list[LineOut], summary="Subsidised taps in scope")
def settlement_lines(month: str, conn: Conn, scope: CurrentScope, mask: Mask, run_id: int | None = None,
                     point_id: str | None = None) -> list[dict[str, Any]]:
    rid = _run_for(conn, _month(month), run_id)
    rows = _point_rows(conn, "settlement_lines", "point_id, device_id, seq, tap_time, card_id, kind, elder_id, day,"
                       " meal, category, amount, policy_version", rid, scope, point_id)
    return [mask.record(r, {"category": Sensitive.CATEGORY}) for r in rows]


@router.get("/settlements/{month}/exclusions", response_model=list[ExclusionOut], summary="Excluded taps in scope")
def settlement_exclusions(month: str, conn: Conn, scope: CurrentScope, run_id: int | None = None,
                          point_id: str | None = None, reason: str | None = None) -> list[dict[str, Any]]:
    rid = _run_for(conn, _month(month), run_id)
    rows = _point_rows(conn, "settlement_exclusions", "point_id, device_id, seq, tap_time, card_id, kind, reason,"
                       " detail, elder_id, day, meal", rid, scope, point_id)
    return [r for r in rows if reason is None or r["reason"] == reason]


@router.get("/settlements/{month}/anomalies", response_model=list[AnomalyOut], summary="Anomaly flags in scope")
def settlement_anomalies(month: str, conn: Conn, scope: CurrentScope, run_id: int | None = None
                         ) -> list[dict[str, Any]]:
    rid = _run_for(conn, _month(month), run_id)
    return _point_rows(conn, "settlement_anomalies", "point_id, kind, day, meal, card_id, detail, figures", rid, scope,
                       None)


@router.post("/settlements/{month}/sign", response_model=SignedOut, summary="Sign the month on a run")
def sign_month(month: str, body: SignIn, request: Request, conn: Conn, who: Admin, audit: Audit) -> SignedOut:
    m = _month(month)
    try:
        signed = service.sign(conn, m, body.run_id, by=who.actor, at=_now(request), audit=audit)
    except (SubsidyError, psycopg.errors.IntegrityConstraintViolation) as exc:
        conn.rollback()
        raise _http(exc) from exc
    conn.commit()
    return SignedOut(month=str(m), revision=signed.revision, run_id=signed.run_id, content_hash=signed.content_hash)


@router.post("/settlements/{month}/reopen", summary="Reopen a signed month, with a reason")
def reopen_month(month: str, body: ReopenIn, request: Request, conn: Conn, who: Admin, audit: Audit
                 ) -> dict[str, Any]:
    m = _month(month)
    try:
        revision = service.reopen(conn, m, body.reason, by=who.actor, at=_now(request), audit=audit)
    except SubsidyError as exc:
        conn.rollback()
        raise _http(exc) from exc
    conn.commit()
    return {"month": str(m), "state": "reopened", "revision": revision}


@router.post("/settlements/{month}/corrections", response_model=CorrectionsOut,
             summary="Carry differences since sign-off into the next open month")
def month_corrections(month: str, request: Request, conn: Conn, who: Admin, audit: Audit) -> CorrectionsOut:
    m = _month(month)
    try:
        into, lines = service.corrections(conn, m, by=who.actor, at=_now(request), audit=audit)
    except SubsidyError as exc:
        conn.rollback()
        raise _http(exc) from exc
    conn.commit()
    return CorrectionsOut(origin=str(m), into=str(into), lines=len(lines),
                          delta=sum((a.delta for a in lines), Decimal("0.00")))


def _export_data(conn: psycopg.Connection[Any], month: str, run_id: int | None, scope: Scope,
                 mask: Masker) -> export.ExportData:
    m = _month(month)
    rid = _run_for(conn, m, run_id)
    book = repository.load_book(conn)
    return export.load(conn, rid, str(m), book.county if book else "", scope, mask)


@router.get("/settlements/{month}/export.xlsx", summary="Settlement workbook (a sheet per township)")
def settlement_export_xlsx(month: str, conn: Conn, scope: CurrentScope, mask: Mask,
                           run_id: int | None = None) -> Response:
    data = _export_data(conn, month, run_id, scope, mask)
    return Response(export.to_xlsx(data),
                    media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    headers={"Content-Disposition": f'attachment; filename="settlement-{month}.xlsx"'})


@router.get("/settlements/{month}/export.csv", summary="Settlement per-elder lines and totals as CSV")
def settlement_export_csv(month: str, conn: Conn, scope: CurrentScope, mask: Mask,
                          run_id: int | None = None) -> Response:
    data = _export_data(conn, month, run_id, scope, mask)
    return Response(export.to_csv(data).encode("utf-8"), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="settlement-{month}.csv"'})


# --- statistics ---------------------------------------------------------------------------------------


def _tz(conn: psycopg.Connection[Any], request: Request) -> str:
    book = repository.load_book(conn)
    return book.timezone if book else request.app.state.settings.api.timezone


def _period(month: str | None, start: date | None, end: date | None) -> tuple[date, date]:
    if month is not None:
        m = _month(month)
        return m.first_day, m.next().first_day
    if start is None or end is None or end <= start or (end - start).days > 400:
        raise HTTPException(422, "give month=YYYY-MM, or start and end (exclusive) at most 400 days apart")
    return start, end


@router.get("/stats/daily", summary="Per day and point: taps, meals served, elders, deliveries")
def stats_daily(request: Request, conn: Conn, scope: CurrentScope, month: str | None = None,
                start: date | None = None, end: date | None = None) -> list[dict[str, Any]]:
    a, b = _period(month, start, end)
    return stats.daily(conn, scope, a, b, _tz(conn, request))


@router.get("/stats/points", summary="Meals served per point (basis of operation subsidies)")
def stats_points(request: Request, conn: Conn, scope: CurrentScope, month: str | None = None,
                 start: date | None = None, end: date | None = None) -> list[dict[str, Any]]:
    a, b = _period(month, start, end)
    return stats.per_point(conn, scope, a, b, _tz(conn, request))


@router.get("/stats/villages", summary="Meals served and elders per village")
def stats_villages(request: Request, conn: Conn, scope: CurrentScope, month: str | None = None,
                   start: date | None = None, end: date | None = None) -> list[dict[str, Any]]:
    a, b = _period(month, start, end)
    return stats.per_village(conn, scope, a, b, _tz(conn, request))


@router.get("/stats/trend", summary="Per month: meals served, elders, taps, points")
def stats_trend(request: Request, conn: Conn, scope: CurrentScope, start: date, end: date) -> list[dict[str, Any]]:
    a, b = _period(None, start, end)
    return stats.trend(conn, scope, a, b, _tz(conn, request))


@router.get("/stats/first-time", summary="Elders whose first meal ever falls in the period")
def stats_first_time(request: Request, conn: Conn, scope: CurrentScope, month: str | None = None,
                     start: date | None = None, end: date | None = None) -> list[dict[str, Any]]:
    a, b = _period(month, start, end)
    return stats.first_time(conn, scope, a, b, _tz(conn, request))


@router.get("/stats/lapsed", summary="Regulars who stopped coming (welfare visit prompts)")
def stats_lapsed(request: Request, conn: Conn, scope: CurrentScope, mask: Mask, as_of: date | None = None,
                 quiet_days: Annotated[int, Query(ge=3, le=90)] = 14,
                 min_meals: Annotated[int, Query(ge=1, le=60)] = 8) -> list[dict[str, Any]]:
    day = as_of or (_now(request).date() - timedelta(days=1))
    rows = stats.lapsed(conn, scope, day, _tz(conn, request), quiet_days=quiet_days, min_meals=min_meals)
    return [mask.record(r, {"phone": Sensitive.PHONE}) for r in rows]


@router.get("/stats/categories", summary="Per day and category: subsidised meals and elders (from the run)")
def stats_categories(month: str, conn: Conn, scope: CurrentScope, mask: Mask,
                     run_id: int | None = None) -> list[dict[str, Any]]:
    if not mask.sees(Sensitive.CATEGORY):
        raise HTTPException(403, "your role may not see categories")
    rid = _run_for(conn, _month(month), run_id)
    return stats.by_category(conn, scope, rid)


# --- services, donations, notices ---------------------------------------------------------------------


def _village_place(conn: psycopg.Connection[Any], village_id: int) -> Place | None:
    row = conn.execute("SELECT township_id FROM villages WHERE id = %s", (village_id,)).fetchone()
    return None if row is None else Place("", int(row[0]), village_id)


def _check_village(conn: psycopg.Connection[Any], scope: Scope, village_id: int) -> None:
    place = _village_place(conn, village_id)
    if place is None or not (scope.county or scope.allows(place)):
        raise HTTPException(404, f"no village {village_id}")


def _scope_villages(conn: psycopg.Connection[Any], scope: Scope) -> list[int] | None:
    """Villages a scope covers (None = all); a caregiver's are those of their points."""
    if scope.county:
        return None
    out = set(scope.village_ids)
    rows = conn.execute("SELECT v.id, v.township_id FROM villages v").fetchall()
    out |= {r[0] for r in rows if r[1] in scope.township_ids}
    if scope.point_ids:
        out |= {r[0] for r in conn.execute(
            "SELECT village_id FROM meal_point_places WHERE point_id = ANY(%s) AND village_id IS NOT NULL",
            (sorted(scope.point_ids),))}
    return sorted(out)


@router.post("/services", response_model=ServiceOut, status_code=201, summary="Record 助洁 / 助医 for an elder")
def record_service(body: ServiceIn, request: Request, conn: Conn, scope: CurrentScope, who: Staff) -> dict[str, Any]:
    found, village = repository.elder_village(conn, body.elder_id)
    if not found:
        raise HTTPException(404, f"no elder {body.elder_id!r}")
    if village is None:
        raise HTTPException(422, f"elder {body.elder_id} has no village; set it in the registry first")
    allowed = _scope_villages(conn, scope)
    if allowed is not None and village not in allowed:
        raise HTTPException(404, f"no elder {body.elder_id!r}")
    row = repository.insert_service(conn, day=body.day, elder_id=body.elder_id, service=str(body.service),
                                    note=body.note, by=who.actor, at=_now(request))
    conn.commit()
    assert row is not None
    return row


@router.get("/services", response_model=list[ServiceOut], summary="Service records of a month in scope")
def list_services(month: str, conn: Conn, scope: CurrentScope) -> list[dict[str, Any]]:
    m = _month(month)
    return repository.services(conn, m.first_day, m.next().first_day, _scope_villages(conn, scope))


@router.post("/donations", response_model=DonationOut, status_code=201, summary="Record a donation")
def record_donation(body: DonationIn, request: Request, conn: Conn, scope: CurrentScope, who: Staff
                    ) -> dict[str, Any]:
    _check_village(conn, scope, body.village_id)
    allowed = _scope_villages(conn, scope)
    if allowed is not None and body.village_id not in allowed:
        raise HTTPException(404, f"no village {body.village_id}")
    row = repository.insert_donation(conn, {**body.model_dump(), "donor_kind": str(body.donor_kind),
                                            "kind": str(body.kind)}, by=who.actor, at=_now(request))
    conn.commit()
    return row


@router.get("/donations", response_model=list[DonationOut], summary="Donations of a month in scope")
def list_donations(month: str, conn: Conn, scope: CurrentScope) -> list[dict[str, Any]]:
    m = _month(month)
    return repository.donations(conn, m.first_day, m.next().first_day, _scope_villages(conn, scope))


@router.post("/notices/{month}/draft", summary="Draft every village's notice now")
def draft_notices(month: str, request: Request, conn: Conn, who: Admin, audit: Audit) -> dict[str, Any]:
    m = _month(month)
    try:
        drafted, kept = jobs.draft_all(conn, m, _now(request).date())
    except SubsidyError as exc:
        conn.rollback()
        raise _http(exc) from exc
    audit("subsidy.notice.draft", f"month:{m}", drafted=len(drafted), kept_published=len(kept))
    conn.commit()
    return {"month": str(m), "drafted": drafted, "kept_published": kept}


@router.get("/notices/{month}", response_model=list[NoticeOut], summary="Each village's notice and its status")
def list_notices(month: str, request: Request, conn: Conn, scope: CurrentScope) -> list[NoticeOut]:
    m = _month(month)
    today = _now(request).date()
    allowed = _scope_villages(conn, scope)
    drafted = {r["village_id"]: r for r in repository.notices(conn, m)}
    out = []
    for v in repository.villages(conn):
        if allowed is not None and v["id"] not in allowed:
            continue
        r = drafted.get(v["id"])
        published = r["published_on"] if r else None
        status = notice_status(m, published, today)
        label = "not_drafted" if r is None and status is NoticeStatus.PENDING else str(status)
        out.append(NoticeOut(month=m.first_day, village_id=v["id"], village=v["name"], township=v["township"],
                             drafted_at=r["drafted_at"] if r else None, due_on=due_date(m),
                             published_on=published, status=label))
    return out


@router.get("/notices/{month}/{village_id}.html", summary="The village's notice as drafted (printable HTML)")
def notice_html(month: str, village_id: int, request: Request, conn: Conn, scope: CurrentScope) -> Response:
    m = _month(month)
    _check_village(conn, scope, village_id)
    html = repository.notice_html(conn, m, village_id)
    if html is None:
        try:
            html = render_html(jobs.village_notice(conn, m, village_id, _now(request).date()))
        except SubsidyError as exc:
            raise _http(exc) from exc
    return Response(html, media_type="text/html; charset=utf-8")


@router.get("/notices/{month}/{village_id}.pdf", summary="The village's notice as a printable PDF")
def notice_pdf(month: str, village_id: int, request: Request, conn: Conn, scope: CurrentScope) -> Response:
    m = _month(month)
    _check_village(conn, scope, village_id)
    try:
        pdf = render_pdf(jobs.village_notice(conn, m, village_id, _now(request).date()))
    except SubsidyError as exc:
        raise _http(exc) from exc
    return Response(pdf, media_type="application/pdf",
                    headers={"Content-Disposition": f'inline; filename="notice-{month}-{village_id}.pdf"'})


@router.post("/notices/{month}/{village_id}/publish", summary="Mark the village's notice as posted")
def publish_notice(month: str, village_id: int, body: PublishIn, request: Request, conn: Conn, scope: CurrentScope,
                   who: Staff, audit: Audit) -> dict[str, Any]:
    m = _month(month)
    _check_village(conn, scope, village_id)
    on = body.published_on or _now(request).date()
    if not repository.publish_notice(conn, m, village_id, on, who.actor):
        conn.rollback()
        raise HTTPException(409, "no drafted, unpublished notice for that village and month")
    audit("subsidy.notice.publish", f"village:{village_id}", month=str(m), on=on.isoformat())
    conn.commit()
    return {"month": str(m), "village_id": village_id, "published_on": on.isoformat()}
