"""HTTP routes of alerts: list, detail with timeline, acknowledge, resolve, contacts, live streams
(guarded), and the signed acknowledge link (open: the link itself is the credential)."""

from __future__ import annotations

import asyncio
import html
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import parse_qsl

import anyio
import psycopg
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from server.auth.deps import CurrentPrincipal, CurrentScope, now, require
from server.auth.scopes import Principal, PrincipalKind, Role
from server.db.pool import connection

from . import repository as repo
from .errors import (
    AlertConfigError,
    AlertStateError,
    ConfirmationRequiredError,
    LinkExpiredError,
    LinkSignatureError,
    UnknownAlertError,
)
from .lifecycle import AlertBook
from .links import AckLinks
from .schemas import (
    AckIn,
    ActionOut,
    AlertDetail,
    AlertOut,
    AttemptOut,
    ContactIn,
    ContactOut,
    ContactPatch,
    ResolveIn,
    TimelineOut,
)
from .service import ActionResult, AlertActions
from .settings import AlertConfig, AlertProcessSettings, load_alert_config, make_links
from .sse import KEEPALIVE_SECONDS, AlertFeed, format_event

router = APIRouter(prefix="/api/v1", tags=["alerts"])
ack_router = APIRouter(prefix="/api/v1", tags=["alerts"])
Conn = Annotated[psycopg.Connection[Any], Depends(connection)]
Actor = Annotated[Principal, Depends(require(Role.BUREAU_ADMIN, Role.TOWNSHIP_OFFICER, Role.VILLAGE_OFFICER,
                                             Role.CAREGIVER))]
Admin = Annotated[Principal, Depends(require(Role.BUREAU_ADMIN))]
WEB_CHANNEL = "web"
LINK_CHANNEL = "link"


@dataclass
class AlertApi:
    """Per-application alert state: the policy, the actions, the link verifier, the live feed."""

    config: AlertConfig
    actions: AlertActions
    links: AckLinks | None
    dsn: str
    feed: AlertFeed | None = None

    def live_feed(self) -> AlertFeed:
        if self.feed is None or not self.feed.alive:
            self.feed = AlertFeed(self.dsn).start()
        return self.feed


def alert_api(request: Request) -> AlertApi:
    """From app.state.alert_api, else built once from app.state.alert_config or YANGYI_ALERTS_CONFIG_FILE."""
    state = request.app.state
    found = getattr(state, "alert_api", None)
    if isinstance(found, AlertApi):
        return found
    config = getattr(state, "alert_config", None)
    try:
        if not isinstance(config, AlertConfig):
            config = load_alert_config(AlertProcessSettings().config_file)
        links = make_links(config)
    except AlertConfigError as exc:
        raise HTTPException(503, f"alert settings are invalid: {exc}") from exc
    api = AlertApi(config, AlertActions(config.lifecycle, config.command_ttl_s), links,
                   state.settings.db.resolved_dsn())
    state.alert_api = api
    return api


Api = Annotated[AlertApi, Depends(alert_api)]


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except UnknownAlertError as exc:
        raise HTTPException(404, f"no alert {exc.args[0]!r} at this meal point") from exc
    except ConfirmationRequiredError as exc:
        raise HTTPException(422, str(exc)) from exc
    except AlertStateError as exc:
        raise HTTPException(409, str(exc)) from exc


def _out(api: AlertApi, alert_and_version: tuple[Any, int]) -> AlertOut:
    a, v = alert_and_version
    return AlertOut.of(a, v, AlertBook(api.config.lifecycle).needs_confirmation(a))


def _action_out(api: AlertApi, r: ActionResult) -> ActionOut:
    return ActionOut(alert=_out(api, (r.alert, r.version)), events=[e.kind.value for e in r.events],
                     command_id=r.command_id)


# ---- live streams --------------------------------------------------------------------------------------


def persons_of(conn: Conn, principal: Principal) -> list[str]:
    """The alert contacts a signed-in user is: their in-app messages come on the user's streams."""
    if principal.kind is not PrincipalKind.USER:
        return []
    return repo.contact_ids_of_user(conn, principal.id)


# How often a quiet stream checks that its client is still there (and the server not shutting down).
DISCONNECT_POLL_SECONDS = 1.0


async def event_stream(request: Request, api: AlertApi, points: list[str] | None,
                       persons: list[str]) -> AsyncIterator[str]:
    """Server-sent events of alert changes at `points` (None: every point) and of in-app messages to
    `persons`, for the API and the dashboard pages alike. While it is open the persons count as present
    for the in-app channel; the presence goes with the stream."""
    feed = api.live_feed()
    sub = feed.subscribe(points, persons)
    if not feed.alive:  # it went idle just now: take the next one
        feed.unsubscribe(sub)
        feed = api.live_feed()
        sub = feed.subscribe(points, persons)
    session_id = uuid.uuid4().hex
    clock = request.app.state.clock

    def presence(touch: bool) -> None:
        with psycopg.connect(api.dsn, connect_timeout=5) as c:
            for person in persons:
                if touch:
                    repo.touch_presence(c, f"{session_id}:{person}", person, clock())
                else:
                    repo.drop_presence(c, f"{session_id}:{person}")

    try:
        if persons:
            await run_in_threadpool(presence, True)
        await asyncio.to_thread(feed.listening.wait, 5.0)
        yield ": connected\n\n"
        quiet_s = 0.0
        while not await request.is_disconnected():
            try:
                seq, kind, data = await asyncio.wait_for(sub.queue.get(), timeout=DISCONNECT_POLL_SECONDS)
            except TimeoutError:
                quiet_s += DISCONNECT_POLL_SECONDS
                if quiet_s >= KEEPALIVE_SECONDS:
                    quiet_s = 0.0
                    if persons:
                        await run_in_threadpool(presence, True)
                    yield ": keep-alive\n\n"
                continue
            quiet_s = 0.0
            yield format_event(seq, kind, data)
    finally:
        feed.unsubscribe(sub)
        if persons:
            # A stream ends by cancellation when its client goes: shield the clean-up from it, or the
            # person would count as present (for the in-app channel) until the presence window ran out.
            with anyio.CancelScope(shield=True):
                await run_in_threadpool(presence, False)


SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@router.get("/alerts/stream", summary="Server-sent events: every alert change in the county")
def alerts_stream(request: Request, conn: Conn, api: Api, principal: CurrentPrincipal) -> StreamingResponse:
    persons = persons_of(conn, principal)
    conn.commit()
    return StreamingResponse(event_stream(request, api, None, persons), media_type="text/event-stream",
                             headers=SSE_HEADERS)


@router.get("/points/{point_id}/alerts/stream", summary="Server-sent events: this meal point's alert changes")
def point_alerts_stream(point_id: str, request: Request, conn: Conn, api: Api,
                        principal: CurrentPrincipal) -> StreamingResponse:
    persons = persons_of(conn, principal)
    conn.commit()
    return StreamingResponse(event_stream(request, api, [point_id], persons), media_type="text/event-stream",
                             headers=SSE_HEADERS)


# ---- lists and details ----------------------------------------------------------------------------


def _filter(point_id: str | None, state: list[str] | None, hazard: str | None, min_severity: str | None,
            since: datetime | None, until: datetime | None, limit: int) -> repo.AlertFilter:
    return repo.AlertFilter(point_id, tuple(state or ()), hazard, min_severity, since, until, limit)


StateQ = Annotated[list[str] | None, Query(description="open, acknowledged, resolved (repeatable)")]
HazardQ = Annotated[str | None, Query(pattern=r"^(gas|electric|device|diners|other)$")]
SeverityQ = Annotated[str | None, Query(pattern=r"^(info|warning|alarm|critical)$")]
LimitQ = Annotated[int, Query(ge=1, le=1000)]


@router.get("/alerts", response_model=list[AlertOut], summary="Alerts in the caller's scope, newest first")
def list_alerts(conn: Conn, api: Api, scope: CurrentScope, state: StateQ = None, hazard: HazardQ = None,
                min_severity: SeverityQ = None, since: datetime | None = None, until: datetime | None = None,
                point_id: str | None = None, limit: LimitQ = 100) -> list[AlertOut]:
    f = _filter(point_id, state, hazard, min_severity, since, until, limit)
    return [_out(api, r) for r in repo.list_alerts(conn, f, scope)]


@router.get("/points/{point_id}/alerts", response_model=list[AlertOut], summary="A meal point's alerts")
def list_point_alerts(point_id: str, conn: Conn, api: Api, scope: CurrentScope, state: StateQ = None,
                      hazard: HazardQ = None, min_severity: SeverityQ = None, since: datetime | None = None,
                      until: datetime | None = None, limit: LimitQ = 100) -> list[AlertOut]:
    f = _filter(point_id, state, hazard, min_severity, since, until, limit)
    return [_out(api, r) for r in repo.list_alerts(conn, f, scope)]


@router.get("/points/{point_id}/alerts/{alert_id}", response_model=AlertDetail,
            summary="One alert with its timeline and every notification attempt")
def get_alert(point_id: str, alert_id: str, conn: Conn, api: Api) -> AlertDetail:
    row = repo.get_alert(conn, alert_id)
    if row is None or row[0].key.point != point_id:
        raise HTTPException(404, f"no alert {alert_id!r} at this meal point")
    base = _out(api, row)
    return AlertDetail(**base.model_dump(),
                       timeline=[TimelineOut(**t) for t in repo.timeline(conn, alert_id)],
                       notifications=[AttemptOut(**n) for n in repo.notifications(conn, alert_id)])


# ---- actions ----------------------------------------------------------------------------------------


@router.post("/points/{point_id}/alerts/{alert_id}/ack", response_model=ActionOut,
             summary="Acknowledge (stops escalation; the meal point's buzzer is silenced)")
def acknowledge(point_id: str, alert_id: str, request: Request, conn: Conn, api: Api, actor: Actor,
                body: AckIn | None = None) -> ActionOut:
    with _errors():
        result = api.actions.acknowledge(conn, alert_id, actor.actor, WEB_CHANNEL, now(request), point_id)
    conn.commit()
    return _action_out(api, result)


@router.post("/points/{point_id}/alerts/{alert_id}/resolve", response_model=ActionOut,
             summary="Resolve; gas and electric alarms need on_site=true and a rectification note")
def resolve(point_id: str, alert_id: str, body: ResolveIn, request: Request, conn: Conn, api: Api,
            actor: Actor) -> ActionOut:
    with _errors():
        result = api.actions.resolve(conn, alert_id, actor.actor, now(request), body.note, body.on_site, point_id)
    conn.commit()
    return _action_out(api, result)


# ---- contacts ------------------------------------------------------------------------------------------


def _contact_out(row: dict[str, Any]) -> ContactOut:
    return ContactOut(**{**row, "point_ids": list(row["point_ids"] or [])})


@router.get("/points/{point_id}/alert-contacts", response_model=list[ContactOut],
            summary="Who is told about this meal point's alerts: caregivers, village officer, township leader")
def point_contacts(point_id: str, conn: Conn) -> list[ContactOut]:
    return [_contact_out(r) for r in repo.list_contacts(conn, point_id)]


@router.get("/alert-contacts", response_model=list[ContactOut], summary="Every alert contact (county-wide)")
def list_contacts(conn: Conn) -> list[ContactOut]:
    return [_contact_out(r) for r in repo.list_contacts(conn)]


@router.get("/alert-contacts/{contact_id}", response_model=ContactOut, summary="One alert contact")
def get_contact(contact_id: int, conn: Conn) -> ContactOut:
    row = repo.get_contact(conn, contact_id)
    if row is None:
        raise HTTPException(404, f"no contact {contact_id}")
    return _contact_out(row)


def _check_places(conn: Conn, township_id: int | None, village_id: int | None, point_ids: list[str]) -> None:
    from server.auth import repository as auth_repo

    if township_id is not None and not auth_repo.township_exists(conn, township_id):
        raise HTTPException(422, f"no township {township_id}")
    if village_id is not None and not auth_repo.village_exists(conn, village_id):
        raise HTTPException(422, f"no village {village_id}")
    missing = auth_repo.missing_points(conn, point_ids)
    if missing:
        raise HTTPException(422, f"unknown meal points: {', '.join(missing)}")


@router.post("/alert-contacts", response_model=ContactOut, status_code=201, summary="Add a contact (bureau admin)")
def create_contact(body: ContactIn, conn: Conn, _: Admin) -> ContactOut:
    _check_places(conn, body.township_id, body.village_id, body.point_ids)
    fields = body.model_dump(exclude={"point_ids"})
    fields["role"] = body.role.value
    contact_id = repo.insert_contact(conn, fields, body.point_ids)
    repo.notify(conn, {"type": "contacts", "contact_id": contact_id})
    conn.commit()
    return get_contact(contact_id, conn)


@router.patch("/alert-contacts/{contact_id}", response_model=ContactOut, summary="Change a contact (bureau admin)")
def update_contact(contact_id: int, body: ContactPatch, conn: Conn, _: Admin) -> ContactOut:
    row = repo.get_contact(conn, contact_id)
    if row is None:
        raise HTTPException(404, f"no contact {contact_id}")
    fields = body.model_dump(exclude_unset=True, exclude={"point_ids"})
    if body.point_ids is not None:
        if row["role"] != "caregiver":
            raise HTTPException(422, "only caregivers are bound to meal points")
        _check_places(conn, None, None, body.point_ids)
        repo.set_contact_points(conn, contact_id, body.point_ids)
    repo.update_contact(conn, contact_id, fields)
    repo.notify(conn, {"type": "contacts", "contact_id": contact_id})
    conn.commit()
    return get_contact(contact_id, conn)


@router.delete("/alert-contacts/{contact_id}", status_code=204, summary="Remove a contact (bureau admin)")
def delete_contact(contact_id: int, conn: Conn, _: Admin) -> Response:
    if not repo.delete_contact(conn, contact_id):
        raise HTTPException(404, f"no contact {contact_id}")
    conn.commit()
    return Response(status_code=204)


# ---- the signed acknowledge link (open) -------------------------------------------------------------------


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><html lang=zh-CN><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width,initial-scale=1'>"
        f"<title>{html.escape(title)}</title></head><body><h1>{html.escape(title)}</h1>{body}</body></html>",
        status_code=status)


def _verified(api: AlertApi, params: dict[str, str], at: datetime) -> tuple[str, str]:
    if api.links is None:
        raise HTTPException(404, "acknowledge links are not configured")
    try:
        claim = api.links.verify(params, at)
    except LinkExpiredError as exc:
        raise HTTPException(410, "该确认链接已过期，请登录平台处理 (link expired)") from exc
    except LinkSignatureError as exc:
        raise HTTPException(403, "确认链接无效 (invalid link)") from exc
    return claim.alert_id, claim.person_id


@ack_router.get("/alert-ack", response_class=HTMLResponse, summary="The acknowledge page a message links to")
def ack_page(request: Request, conn: Conn, api: Api) -> HTMLResponse:
    # A GET never acknowledges: chat apps fetch links for previews. The page posts back the same link.
    alert_id, _ = _verified(api, dict(request.query_params), now(request))
    row = repo.get_alert(conn, alert_id)
    if row is None:
        raise HTTPException(404, "no such alert")
    a = row[0]
    action = html.escape(str(request.url), quote=True)
    return _page("养怡 安全告警确认", (
        f"<p>{html.escape(a.key.point)} · {html.escape(a.key.device)}</p><p>{html.escape(a.message)}</p>"
        f"<p>状态：{html.escape(a.state.value)}</p>"
        f"<form method=post action=\"{action}\"><button type=submit>我已收到，马上处理</button></form>"))


@ack_router.post("/alert-ack", summary="Acknowledge through a signed link (as the person it was sent to)")
async def ack_by_link(request: Request, api: Api) -> Response:
    params = dict(request.query_params)
    params.update(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))
    at = now(request)
    alert_id, person_id = _verified(api, params, at)

    def act() -> ActionResult:
        with psycopg.connect(api.dsn) as conn:
            row = repo.get_contact(conn, int(person_id)) if person_id.isdigit() else None
            who = f"contact:{person_id}:{row['name']}" if row else f"contact:{person_id}"
            with _errors():
                result = api.actions.acknowledge(conn, alert_id, who, LINK_CHANNEL, at)
            conn.commit()
            return result

    result = await run_in_threadpool(act)
    if "application/json" in request.headers.get("accept", ""):
        return Response(_action_out(api, result).model_dump_json(), media_type="application/json")
    done = "已确认，请尽快到场处理。" if result.events else "此告警已有人确认。"
    return _page("养怡 安全告警确认", f"<p>{done}</p>")
