"""HTTP routes of elders, categories, cards, rosters and the unknown-card list.

Two doors to the same operations, both behind the place guard:
    /api/v1/points/{point_id}/elders/...   the elders of one meal point (its home elders and its
                                           village's); village, township and bureau roles within
                                           their scope; caregivers read (masked)
    /api/v1/elders/...                     county-wide (bureau roles only: the guard refuses others)
Writes need bureau_admin, township_officer or village_officer; each is audited, commits, and then
publishes the rosters it changed (retained). Fields are masked by role (server.auth current_masker).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import psycopg
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response

from firmware_bridge.contract import Roster
from server.auth.deps import Auditor, CurrentScope, auditor, current_masker, require
from server.auth.scopes import Masker, Principal, Role
from server.db.pool import connection
from server.errors import NotFoundError

from . import elders_repository as repo
from . import roster
from .elders_schemas import (
    CardEvent,
    CardIn,
    CategoryEnd,
    CategoryIn,
    ChangeOut,
    ElderCreate,
    ElderOut,
    ElderStatus,
    ElderUpdate,
    UnknownCardOut,
)
from .elders_service import Change, ConflictError, EldersService, InvalidChangeError

router = APIRouter(prefix="/api/v1", tags=["elders"])
Conn = Annotated[psycopg.Connection[Any], Depends(connection)]
Writer = Annotated[Principal, Depends(require(Role.BUREAU_ADMIN, Role.TOWNSHIP_OFFICER, Role.VILLAGE_OFFICER))]
Masking = Annotated[Masker, Depends(current_masker)]
Audit = Annotated[Auditor, Depends(auditor)]
UNKNOWN_CARDS_DEFAULT_DAYS = 30


def _tz(request: Request) -> str:
    return str(request.app.state.settings.api.timezone)


def _service(request: Request) -> EldersService:
    return EldersService(_tz(request))


def _now(request: Request) -> datetime:
    now: datetime = request.app.state.clock()
    return now


def _publisher(request: Request) -> roster.RosterPublisher:
    """The app's roster publisher (tests may set app.state.roster_publisher), else one from the settings."""
    found = getattr(request.app.state, "roster_publisher", None)
    if isinstance(found, roster.RosterPublisher):
        return found
    return roster.RosterPublisher(request.app.state.settings.mqtt)


def _errors(exc: Exception) -> HTTPException:
    if isinstance(exc, NotFoundError):
        return HTTPException(404, str(exc))
    if isinstance(exc, ConflictError):
        return HTTPException(409, str(exc))
    return HTTPException(422, str(exc))


def _finish(request: Request, conn: psycopg.Connection[Any], change: Change, masker: Masker,
            audit: Auditor, action: str, **detail: Any) -> ChangeOut:
    """Audit, commit, publish the changed rosters, and answer with the elder as the caller may see it."""
    now = _now(request)
    audit(action, target=f"elder:{change.elder_id}", **detail)
    conn.commit()
    changed = [b.roster for b in change.rosters.values() if b.changed]
    published = roster.publish_built(conn, _publisher(request), changed, now)
    service = _service(request)
    elder = service.out(conn, [service.get(conn, change.elder_id)], masker, _local_today(request))[0]
    return ChangeOut(elder=elder, rosters={p: b.roster.version for p, b in change.rosters.items()},
                     rosters_published=published)


def _local_today(request: Request) -> date:
    return _now(request).astimezone(ZoneInfo(_tz(request))).date()


Errors = (NotFoundError, ConflictError, InvalidChangeError, ValueError)


# -- reads ---------------------------------------------------------------------------------------------


def list_elders_at(point_id: str | None, request: Request, conn: Conn, masker: Masking,
                   village_id: int | None = None, status: ElderStatus | None = None,
                   id_number: str | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 200,
                   offset: Annotated[int, Query(ge=0)] = 0) -> list[ElderOut]:
    if point_id is not None and not repo.point_village(conn, point_id)[0]:
        raise HTTPException(404, f"no meal point {point_id!r}")
    rows = repo.list_elders(conn, point_id=point_id, village_id=village_id,
                            status=status.value if status else None,
                            id_number=id_number.strip().upper() if id_number else None, limit=limit, offset=offset)
    return _service(request).out(conn, rows, masker, _local_today(request))


@router.get("/points/{point_id}/elders", response_model=list[ElderOut], summary="Elders of a meal point")
def list_point_elders(point_id: str, request: Request, conn: Conn, masker: Masking,
                      status: ElderStatus | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 200,
                      offset: Annotated[int, Query(ge=0)] = 0) -> list[ElderOut]:
    return list_elders_at(point_id, request, conn, masker, status=status, limit=limit, offset=offset)


@router.get("/elders", response_model=list[ElderOut], summary="Elders county-wide (bureau roles)")
def list_elders(request: Request, conn: Conn, masker: Masking, point_id: str | None = None,
                village_id: int | None = None, status: ElderStatus | None = None, id_number: str | None = None,
                limit: Annotated[int, Query(ge=1, le=1000)] = 200,
                offset: Annotated[int, Query(ge=0)] = 0) -> list[ElderOut]:
    return list_elders_at(point_id, request, conn, masker, village_id, status, id_number, limit, offset)


def _get(point_id: str | None, elder_id: str, request: Request, conn: Conn, masker: Masker) -> ElderOut:
    service = _service(request)
    try:
        return service.out(conn, [service.get(conn, elder_id, point_id)], masker, _local_today(request))[0]
    except NotFoundError as exc:
        raise _errors(exc) from exc


@router.get("/points/{point_id}/elders/{elder_id}", response_model=ElderOut, summary="One elder of a point")
def get_point_elder(point_id: str, elder_id: str, request: Request, conn: Conn, masker: Masking) -> ElderOut:
    return _get(point_id, elder_id, request, conn, masker)


@router.get("/elders/{elder_id}", response_model=ElderOut, summary="One elder (bureau roles)")
def get_elder(elder_id: str, request: Request, conn: Conn, masker: Masking) -> ElderOut:
    return _get(None, elder_id, request, conn, masker)


@router.get("/points/{point_id}/roster", response_model=Roster,
            summary="The point's roster as its agent gets it (built now if anything changed)")
def get_roster(point_id: str, request: Request, conn: Conn) -> Response:
    if not repo.point_village(conn, point_id)[0]:
        raise HTTPException(404, f"no meal point {point_id!r}")
    built = roster.build(conn, point_id, _now(request), _tz(request))
    conn.commit()
    if built.changed:
        roster.publish_built(conn, _publisher(request), [built.roster], _now(request))
    return Response(built.roster.to_bytes(), media_type="application/json")


def _unknown(request: Request, conn: Conn, scope: CurrentScope, point_id: str | None,
             start: date | None, end: date | None) -> list[UnknownCardOut]:
    zone = ZoneInfo(_tz(request))
    last = end or _local_today(request)
    first = start or last - timedelta(days=UNKNOWN_CARDS_DEFAULT_DAYS - 1)
    if first > last:
        raise HTTPException(422, "from is after to")
    rows = repo.unknown_cards(conn, scope.sql_filter("d.point_id"), datetime.combine(first, time(0), zone),
                              datetime.combine(last + timedelta(days=1), time(0), zone), point_id)
    return [UnknownCardOut(**r) for r in rows]


@router.get("/points/{point_id}/unknown-cards", response_model=list[UnknownCardOut],
            summary="Cards tapped at the point that are not bound to anyone (to register)")
def point_unknown_cards(point_id: str, request: Request, conn: Conn, scope: CurrentScope,
                        start: Annotated[date | None, Query(alias="from")] = None,
                        end: Annotated[date | None, Query(alias="to")] = None) -> list[UnknownCardOut]:
    return _unknown(request, conn, scope, point_id, start, end)


@router.get("/cards/unknown", response_model=list[UnknownCardOut],
            summary="Unbound cards tapped anywhere, per point, with first and last seen (bureau roles)")
def unknown_cards(request: Request, conn: Conn, scope: CurrentScope,
                  start: Annotated[date | None, Query(alias="from")] = None,
                  end: Annotated[date | None, Query(alias="to")] = None) -> list[UnknownCardOut]:
    return _unknown(request, conn, scope, None, start, end)


# -- writes --------------------------------------------------------------------------------------------


def _do(request: Request, conn: psycopg.Connection[Any], masker: Masker, audit: Auditor, action: str,
        op: Any, **detail: Any) -> ChangeOut:
    try:
        change = op(_service(request), _now(request))
    except Errors as exc:
        conn.rollback()
        raise _errors(exc) from exc
    except psycopg.errors.IntegrityError as exc:  # a concurrent writer won the race
        conn.rollback()
        raise HTTPException(409, f"conflicting change: {exc.diag.message_primary}") from exc
    return _finish(request, conn, change, masker, audit, action, **detail)


@router.post("/points/{point_id}/elders", response_model=ChangeOut, status_code=201,
             summary="Register an elder whose home point is this point")
def create_point_elder(point_id: str, spec: ElderCreate, request: Request, conn: Conn, _w: Writer,
                       masker: Masking, audit: Audit) -> ChangeOut:
    return _do(request, conn, masker, audit, "elder.create",
               lambda s, now: s.create(conn, spec, point_id, now), point=point_id)


@router.post("/elders", response_model=ChangeOut, status_code=201, summary="Register an elder (bureau roles)")
def create_elder(spec: ElderCreate, request: Request, conn: Conn, _w: Writer, masker: Masking,
                 audit: Audit) -> ChangeOut:
    return _do(request, conn, masker, audit, "elder.create", lambda s, now: s.create(conn, spec, None, now))


@router.patch("/points/{point_id}/elders/{elder_id}", response_model=ChangeOut, summary="Change an elder")
def update_point_elder(point_id: str, elder_id: str, spec: ElderUpdate, request: Request, conn: Conn, _w: Writer,
                       masker: Masking, audit: Audit) -> ChangeOut:
    return _do(request, conn, masker, audit, "elder.update",
               lambda s, now: s.update(conn, elder_id, spec, point_id, now), fields=sorted(spec.model_fields_set))


@router.patch("/elders/{elder_id}", response_model=ChangeOut, summary="Change an elder (bureau roles)")
def update_elder(elder_id: str, spec: ElderUpdate, request: Request, conn: Conn, _w: Writer, masker: Masking,
                 audit: Audit) -> ChangeOut:
    return _do(request, conn, masker, audit, "elder.update",
               lambda s, now: s.update(conn, elder_id, spec, None, now), fields=sorted(spec.model_fields_set))


def _point_and_county(path: str, name: str, summary: str, handler: Any) -> None:
    """Register one write under /points/{point_id}/elders/... and under /elders/... (county-wide)."""
    router.add_api_route(f"/points/{{point_id}}/elders/{{elder_id}}{path}", handler(True), methods=["POST"],
                         response_model=ChangeOut, name=f"{name}_at_point", summary=summary)
    router.add_api_route(f"/elders/{{elder_id}}{path}", handler(False), methods=["POST"],
                         response_model=ChangeOut, name=name, summary=f"{summary} (bureau roles)")


def _category_add(at_point: bool) -> Any:
    def endpoint(elder_id: str, spec: CategoryIn, request: Request, conn: Conn, _w: Writer, masker: Masking,
                 audit: Audit) -> ChangeOut:
        pid = request.path_params.get("point_id") if at_point else None
        return _do(request, conn, masker, audit, "elder.category.add",
                   lambda s, now: s.add_category(conn, elder_id, spec, pid, now), category=spec.category.value)
    return endpoint


def _category_end(at_point: bool) -> Any:
    def endpoint(elder_id: str, category_id: int, spec: CategoryEnd, request: Request, conn: Conn, _w: Writer,
                 masker: Masking, audit: Audit) -> ChangeOut:
        pid = request.path_params.get("point_id") if at_point else None
        return _do(request, conn, masker, audit, "elder.category.end",
                   lambda s, now: s.end_category(conn, elder_id, category_id, spec, pid, now),
                   category_id=category_id)
    return endpoint


def _card_bind(at_point: bool) -> Any:
    def endpoint(elder_id: str, spec: CardIn, request: Request, conn: Conn, _w: Writer, masker: Masking,
                 audit: Audit) -> ChangeOut:
        pid = request.path_params.get("point_id") if at_point else None
        return _do(request, conn, masker, audit, "card.bind",
                   lambda s, now: s.bind_card(conn, elder_id, spec, pid, now))
    return endpoint


def _card_replace(at_point: bool) -> Any:
    def endpoint(elder_id: str, spec: CardIn, request: Request, conn: Conn, _w: Writer, masker: Masking,
                 audit: Audit) -> ChangeOut:
        pid = request.path_params.get("point_id") if at_point else None
        return _do(request, conn, masker, audit, "card.replace",
                   lambda s, now: s.replace_card(conn, elder_id, spec, pid, now))
    return endpoint


def _card_lost(at_point: bool) -> Any:
    def endpoint(elder_id: str, card_id: str, request: Request, conn: Conn, _w: Writer, masker: Masking,
                 audit: Audit, spec: CardEvent | None = None) -> ChangeOut:
        pid = request.path_params.get("point_id") if at_point else None
        event = spec or CardEvent()
        return _do(request, conn, masker, audit, "card.lost",
                   lambda s, now: s.card_lost(conn, elder_id, card_id, event, pid, now), card=card_id)
    return endpoint


def _card_release(at_point: bool) -> Any:
    def endpoint(elder_id: str, card_id: str, request: Request, conn: Conn, _w: Writer, masker: Masking,
                 audit: Audit, spec: CardEvent | None = None) -> ChangeOut:
        pid = request.path_params.get("point_id") if at_point else None
        event = spec or CardEvent()
        return _do(request, conn, masker, audit, "card.release",
                   lambda s, now: s.release_card(conn, elder_id, card_id, event, pid, now), card=card_id)
    return endpoint


_point_and_county("/categories", "add_category", "Add a category with evidence and validity", _category_add)
_point_and_county("/categories/{category_id}/end", "end_category", "End a category on a date", _category_end)
_point_and_county("/cards", "bind_card", "Bind a card (the elder has no active card)", _card_bind)
_point_and_county("/cards/replace", "replace_card", "Replace the active card (补办/换卡)", _card_replace)
_point_and_county("/cards/{card_id}/lost", "card_lost", "Report the card lost (挂失)", _card_lost)
_point_and_county("/cards/{card_id}/release", "release_card", "Release the card back to stock", _card_release)
