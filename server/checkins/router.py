"""HTTP routes of check-ins."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, HTTPException, Query, Request

from server.auth.deps import Auditor, auditor, require
from server.auth.scopes import Principal, Role
from server.db.pool import connection

from . import service
from .schemas import DeliveryIn, DeliveryOut, DinersOut, ServedOut

router = APIRouter(prefix="/api/v1/points", tags=["checkins"])
Conn = Annotated[psycopg.Connection[Any], Depends(connection)]
# Caregivers record deliveries for their points; officers and the bureau admin may too. Viewers may not.
DeliveryRecorder = Annotated[Principal, Depends(require(Role.CAREGIVER, Role.VILLAGE_OFFICER, Role.TOWNSHIP_OFFICER,
                                                        Role.BUREAU_ADMIN))]


@router.get("/{point_id}/diners", response_model=DinersOut,
            summary="A local day's diner events and per-meal counts of distinct cards")
def diners(
    point_id: str, request: Request, conn: Conn,
    day: Annotated[date, Query(description="Local calendar day, YYYY-MM-DD")],
) -> DinersOut:
    return service.diners(conn, point_id, day, request.app.state.settings.api.timezone)


@router.get("/{point_id}/served", response_model=ServedOut,
            summary="Distinct elders served per local day and meal (taps joined to card bindings at tap time)")
def served(
    point_id: str, request: Request, conn: Conn,
    start: Annotated[date, Query(alias="from", description="First local day, YYYY-MM-DD")],
    end: Annotated[date | None, Query(alias="to", description="Last local day (inclusive); default: from")] = None,
    elders: Annotated[bool, Query(description="Also list the elders served (masked names)")] = False,
) -> ServedOut:
    try:
        return service.served(conn, point_id, start, end or start, request.app.state.settings.api.timezone, elders)
    except ValueError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc


@router.post("/{point_id}/deliveries", response_model=DeliveryOut, status_code=201,
             summary="Record a meal delivered to an elder who could not come (送餐 / 邻里代送)")
def record_delivery(point_id: str, spec: DeliveryIn, request: Request, conn: Conn, _r: DeliveryRecorder,
                    audit: Annotated[Auditor, Depends(auditor)]) -> DeliveryOut:
    now = request.app.state.clock()
    try:
        out = service.record_delivery(conn, point_id, spec, now, request.app.state.settings.api.timezone)
    except service.DeliveryRefusedError as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from exc
    audit("diner.delivery", target=f"elder:{spec.elder_id}", point=point_id, meal=spec.meal.value, seq=out.seq,
          decision=out.decision)
    return out
