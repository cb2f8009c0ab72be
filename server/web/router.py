"""The web UI: server-rendered pages (Jinja2 + htmx), Chinese first, for signed-in users only.

This router is open (no place guard) so the login page and the vendored assets load without a
session; every other page takes the session itself and redirects to /login without one, and reads
only inside the caller's scope (a point outside it is "not found", as in the API).
"""

from __future__ import annotations

import mimetypes
from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import psycopg
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from server.alerts import repository as alerts_repository
from server.alerts.router import SSE_HEADERS, alert_api
from server.alerts.router import event_stream as alert_event_stream
from server.alerts.router import persons_of as alerts_persons_of
from server.auth import repository as auth_repository
from server.auth.deps import OptionalPrincipal, auth_service, auth_settings, now, optional_principal
from server.auth.scopes import Principal, Role, Scope, masker_for, scope_for
from server.db.pool import connection
from server.ledger.calendar import month_bounds
from server.ledger.router import ledger_service
from server.registry.elders_router import list_elders_at
from server.registry.service import RegistryService
from server.safety import repository as safety_repository
from server.safety.thresholds import worst
from server.subsidy import router as subsidy_router

from . import service
from .i18n import LANG_COOKIE, LANG_QUERY, Lang, pick_lang, translator

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
STATIC_MAX_AGE_S = 86400
LANG_COOKIE_MAX_AGE_S = 365 * 86400

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(HERE / "templates"))
Conn = Annotated[psycopg.Connection[Any], Depends(connection)]


def lang_of(request: Request) -> Lang:
    return pick_lang(request.query_params.get(LANG_QUERY), request.cookies.get(LANG_COOKIE))


def signed_in(request: Request, principal: OptionalPrincipal) -> Principal:
    """The session's user; without one, a redirect to the login page that comes back here."""
    if principal is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise HTTPException(303, "sign in first", headers={"Location": f"/login?next={quote(target, safe='')}"})
    return principal


User = Annotated[Principal, Depends(signed_in)]


def _tz(request: Request) -> ZoneInfo:
    return ZoneInfo(request.app.state.settings.api.timezone)


def _cache(request: Request) -> service.CountCache:
    state = request.app.state
    cache = getattr(state, "web_counts", None)
    if not isinstance(cache, service.CountCache):
        cache = service.CountCache()
        state.web_counts = cache
    return cache


def _overview(request: Request, conn: psycopg.Connection[Any], scope: Scope) -> service.Overview:
    """The scope's overview, shared by everyone with the same scope for OVERVIEW_TTL_S."""
    state = request.app.state
    cache = getattr(state, "web_overviews", None)
    if not isinstance(cache, service.TtlCache):
        cache = service.TtlCache()
        state.web_overviews = cache
    api = state.settings.api
    overviews: service.TtlCache[Scope, service.Overview] = cache
    return overviews.get(scope, service.OVERVIEW_TTL_S, lambda: service.overview(
        conn, _cache(request), scope, now(request), _tz(request), api.online_heartbeats, api.default_heartbeat_s))


def _local(value: datetime | None, tz: ZoneInfo, fmt: str = "%m-%d %H:%M") -> str:
    return "" if value is None else value.astimezone(tz).strftime(fmt)


def render(request: Request, name: str, context: dict[str, Any], principal: Principal | None = None,
           status_code: int = 200) -> HTMLResponse:
    """A page in the caller's language; `?lang=` also sets the language cookie."""
    lang = lang_of(request)
    tz = _tz(request)
    ctx: dict[str, Any] = {
        "t": translator(lang), "lang": lang.value, "other_lang": "en" if lang is Lang.ZH else "zh",
        "user": principal, "csrf_token": principal.csrf_token if principal else None,
        "csrf_header": auth_settings(request).csrf_header,
        "local": lambda v, fmt="%m-%d %H:%M": _local(v, tz, fmt), "path": request.url.path, **context,
    }
    if principal is not None:
        ctx["user_label"] = principal.display_name or principal.name
        ctx["role_key"] = f"role.{Role(principal.role).value}"
    response = templates.TemplateResponse(request, name, ctx, status_code=status_code)
    if request.query_params.get(LANG_QUERY) == lang.value:
        response.set_cookie(LANG_COOKIE, lang.value, max_age=LANG_COOKIE_MAX_AGE_S, path="/", samesite="lax")
    return response


# ---- open: login and assets ---------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: Annotated[str, Query(max_length=2000)] = "/") -> HTMLResponse:
    # Only same-site paths: an absolute URL here would make the login page an open redirect.
    safe_next = next if next.startswith("/") and not next.startswith("//") else "/"
    return render(request, "login.html", {"next": safe_next})


@router.get("/static/{path:path}")
def static(path: str) -> Response:
    """A file under static/ (never outside it), cached by the browser for a day."""
    target = (STATIC_DIR / path).resolve()
    if not target.is_file() or not target.is_relative_to(STATIC_DIR):
        raise HTTPException(404, "not found")
    media_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    return FileResponse(target, media_type=media_type,
                        headers={"Cache-Control": f"public, max-age={STATIC_MAX_AGE_S}"})


# ---- pages --------------------------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
def overview_page(request: Request, conn: Conn, user: User) -> HTMLResponse:
    scope = scope_for(user)
    data = _overview(request, conn, scope)
    # County-wide: townships fold their villages and points until opened (hundreds of rows otherwise).
    lazy = scope.county and len(data.townships) > 1
    return render(request, "overview.html", {"o": data, "nav": "overview", "county": scope.county, "lazy": lazy,
                                             "freshness_s": int(service.TODAY_TTL_S)}, user)


@router.get("/overview/township", response_class=HTMLResponse)
def overview_township(request: Request, conn: Conn, user: User,
                      name: Annotated[str, Query(max_length=200)]) -> HTMLResponse:
    """One township's villages and points (a fragment the overview opens in place)."""
    town = next((t for t in _overview(request, conn, scope_for(user)).townships if t.name == name), None)
    if town is None:
        raise HTTPException(404, f"no township {name!r} in your area")
    return render(request, "_township.html", {"town": town, "lazy": False}, user)


def _point_in_scope(conn: psycopg.Connection[Any], user: Principal, point_id: str) -> dict[str, Any]:
    """The point's row if the user may see it; 404 otherwise (as for an unknown point)."""
    place = auth_repository.point_place(conn, point_id)
    point = service.repository.point(conn, point_id) if place is not None and scope_for(user).allows(place) else None
    if point is None:
        raise HTTPException(404, f"no meal point {point_id!r}")
    return point


@router.get("/points/{point_id}", response_class=HTMLResponse)
def point_page(point_id: str, request: Request, conn: Conn, user: User) -> HTMLResponse:
    point = _point_in_scope(conn, user, point_id)
    at = now(request)
    api = request.app.state.settings.api
    state = request.app.state
    if not isinstance(getattr(state, "web_channels", None), service.TtlCache):
        state.web_channels = service.TtlCache(max_entries=2000)
    page = service.point_page(conn, point, at, _tz(request), state.web_channels)
    devices = RegistryService(api.online_heartbeats, api.default_heartbeat_s).devices(conn, point_id, at)
    # Safety levels from the latest event per channel (a healthy sensor sends none: "normal").
    levels: dict[str, list[str]] = {}
    for ch in safety_repository.current_channels(conn, point_id):
        levels.setdefault(ch["device_id"], []).append(ch["level"])
    device_levels = {d: worst(lv) for d, lv in levels.items()}
    for c in page.channels:
        device_levels.setdefault(c["device_id"], "normal")
    return render(request, "point.html", {
        "p": page, "devices": devices, "device_levels": device_levels, "nav": "overview",
        "point_level": worst(list(device_levels.values()))}, user)


# ---- alerts -------------------------------------------------------------------------------------------

ACTING_ROLES = frozenset({Role.BUREAU_ADMIN, Role.TOWNSHIP_OFFICER, Role.VILLAGE_OFFICER, Role.CAREGIVER})
ALERT_STATES = ("open", "acknowledged", "resolved")
ALERT_HAZARDS = ("gas", "electric", "device", "diners", "other")
ALERT_SEVERITIES = ("info", "warning", "alarm", "critical")
ALERTS_SHOWN = 200


def _alert_filter(state: str | None, hazard: str | None, severity: str | None, point: str | None
                  ) -> alerts_repository.AlertFilter:
    states: tuple[str, ...] = ("open", "acknowledged") if not state else ((state,) if state in ALERT_STATES else ())
    return alerts_repository.AlertFilter(
        point_id=point or None, states=states,
        hazard=hazard if hazard in ALERT_HAZARDS else None,
        min_severity=severity if severity in ALERT_SEVERITIES else None, limit=ALERTS_SHOWN)


@router.get("/alerts", response_class=HTMLResponse)
def alerts_page(
    request: Request, conn: Conn, user: User,
    state: Annotated[str | None, Query(max_length=20)] = None,
    hazard: Annotated[str | None, Query(max_length=20)] = None,
    severity: Annotated[str | None, Query(max_length=20)] = None,
    point: Annotated[str | None, Query(max_length=64)] = None,
) -> HTMLResponse:
    scope = scope_for(user)
    rows = alerts_repository.list_alerts(conn, _alert_filter(state, hazard, severity, point), scope)
    names = {p["id"]: p["name"] or p["id"] for p in service.repository.points(conn, scope)}
    alerts = [{"a": a, "version": v, "point_name": names.get(a.key.point, a.key.point)} for a, v in rows]
    return render(request, "alerts.html", {
        "alerts": alerts, "nav": "alerts", "can_act": user.role in ACTING_ROLES,
        "f": {"state": state or "", "hazard": hazard or "", "severity": severity or "", "point": point or ""},
        "states": ALERT_STATES, "hazards": ALERT_HAZARDS, "severities": ALERT_SEVERITIES,
        "points": sorted(names.items(), key=lambda kv: kv[1])}, user)


@router.get("/alerts/{point_id}/{alert_id}/timeline", response_class=HTMLResponse)
def alert_timeline(point_id: str, alert_id: str, request: Request, conn: Conn, user: User) -> HTMLResponse:
    place = auth_repository.point_place(conn, point_id)
    found = alerts_repository.get_alert(conn, alert_id)
    if place is None or not scope_for(user).allows(place) or found is None or found[0].key.point != point_id:
        raise HTTPException(404, "no such alert")
    return render(request, "_timeline.html", {"events": alerts_repository.timeline(conn, alert_id),
                                              "alert": found[0]}, user)


@router.get("/events/alerts")
async def alert_events(request: Request) -> StreamingResponse:
    """Server-sent events of alert changes in the caller's scope and of the caller's in-app messages
    (the alerts API's stream).

    The session is checked with a connection held only for that: a stream may stay open for hours.
    """
    def who() -> tuple[Principal | None, list[str] | None, list[str]]:
        with request.app.state.pool.connection() as conn:
            principal = optional_principal(request, conn, auth_service(request))
            if principal is None:
                return None, None, []
            scope = scope_for(principal)
            points = None if scope.county else [p["id"] for p in service.repository.points(conn, scope)]
            persons = alerts_persons_of(conn, principal)
            conn.commit()
            return principal, points, persons

    principal, points, persons = await run_in_threadpool(who)
    if principal is None:
        raise HTTPException(401, "not signed in")
    return StreamingResponse(alert_event_stream(request, alert_api(request), points, persons),
                             media_type="text/event-stream", headers=SSE_HEADERS)


# ---- registry and ledger of a meal point ----------------------------------------------------------------

WRITER_ROLES = frozenset({Role.BUREAU_ADMIN, Role.TOWNSHIP_OFFICER, Role.VILLAGE_OFFICER})
# The daily check's items (the county plan: electricity, gas and food every day); weekly and monthly
# checks use the same list, and the inspector may add a note.
CHECK_ITEMS = (("electricity", "ledger.item.electricity"), ("gas", "ledger.item.gas"),
               ("food", "ledger.item.food"), ("food", "ledger.item.samples"), ("fire", "ledger.item.fire"))


@router.get("/points/{point_id}/registry", response_class=HTMLResponse)
def registry_page(point_id: str, request: Request, conn: Conn, user: User) -> HTMLResponse:
    """Elders and cards of a point (masked by role) and this month's inspections with the entry form."""
    point = _point_in_scope(conn, user, point_id)
    elders = list_elders_at(point_id, request, conn, masker_for(user.role), limit=1000)
    ledger = ledger_service(request)
    at = now(request)
    today = ledger.local_day(at)
    first, stop = month_bounds(today.year, today.month)
    inspections = ledger.inspections(conn, [point_id], first, stop, at)
    conn.commit()  # the ledger refreshes evidence summaries as it reads
    return render(request, "registry.html", {
        "point": point, "elders": elders, "inspections": sorted(inspections, key=lambda i: i.inspected_at,
                                                                reverse=True),
        "check_items": CHECK_ITEMS, "nav": "overview", "can_write": user.role in WRITER_ROLES,
        "can_import": user.role == Role.BUREAU_ADMIN,
        "kinds": ("daily", "weekly", "monthly")}, user)


# ---- subsidy ------------------------------------------------------------------------------------------


ANOMALIES_SHOWN = 50
# Who may mark a village's notice as posted (the API's own rule: staff in scope, not viewers or tokens).
PUBLISHERS = frozenset({Role.BUREAU_ADMIN, Role.TOWNSHIP_OFFICER, Role.VILLAGE_OFFICER, Role.CAREGIVER})


def _previous_month(today: date) -> str:
    first = today.replace(day=1)
    last = first - timedelta(days=1)
    return f"{last.year:04d}-{last.month:02d}"


@router.get("/subsidy", response_class=HTMLResponse)
def subsidy_page(request: Request, conn: Conn, user: User,
                 month: Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}$")] = None) -> HTMLResponse:
    """The month's settlement in scope: state and runs (county roles), totals, anomalies, exports, notices."""
    scope = scope_for(user)
    masker = masker_for(user.role)
    today = now(request).astimezone(_tz(request)).date()
    month = month or _previous_month(today)
    state = subsidy_router.get_month(month, conn) if scope.county else None
    try:
        totals = subsidy_router.settlement_totals(month, conn, scope, masker)
        anomalies = subsidy_router.settlement_anomalies(month, conn, scope)
        settled = True
    except HTTPException as exc:
        if exc.status_code != 404:
            raise
        totals, anomalies, settled = [], [], False
    notices = subsidy_router.list_notices(month, request, conn, scope)
    names = {p["id"]: p["name"] or p["id"] for p in service.repository.points(conn, scope)}
    kinds = Counter(a["kind"] for a in anomalies)
    return render(request, "subsidy.html", {
        "month": month, "state": state, "totals": totals, "anomalies": anomalies[:ANOMALIES_SHOWN],
        "anomaly_count": len(anomalies), "anomaly_kinds": sorted(kinds.items()), "settled": settled,
        "notices": notices, "names": names, "nav": "subsidy", "is_admin": user.role is Role.BUREAU_ADMIN,
        "can_publish": user.role in PUBLISHERS, "today": today.isoformat(),
        "months": [_previous_month(today.replace(day=1) - timedelta(days=31 * i)) for i in range(-1, 11)]}, user)
