"""HTTP routes of safety."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, HTTPException, Query, Request

from server.db.pool import connection
from server.safety.thresholds import LEVEL_RANK

from . import service
from .schemas import PointSafety, SafetyEventOut

router = APIRouter(prefix="/api/v1/points", tags=["safety"])
Conn = Annotated[psycopg.Connection[Any], Depends(connection)]
DEFAULT_EVENTS_DAYS = 7


@router.get("/{point_id}/safety/events", response_model=list[SafetyEventOut],
            summary="A point's safety events (level transitions), newest first")
def safety_events(
    point_id: str, request: Request, conn: Conn,
    start: Annotated[datetime | None, Query(description="From (inclusive); default 7 days before end")] = None,
    end: Annotated[datetime | None, Query(description="To (exclusive); default now")] = None,
    level: Annotated[list[str] | None, Query(description="Only these levels (repeatable)")] = None,
    device_id: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 500,
) -> list[SafetyEventOut]:
    unknown = set(level or ()) - set(LEVEL_RANK)
    if unknown:
        raise HTTPException(status_code=422, detail=f"unknown levels {sorted(unknown)}; known: {list(LEVEL_RANK)}")
    end = end or request.app.state.clock()
    start = start or end - timedelta(days=DEFAULT_EVENTS_DAYS)
    if start.tzinfo is None or end.tzinfo is None:
        raise HTTPException(status_code=422, detail="start and end need a time zone offset")
    if start >= end:
        raise HTTPException(status_code=422, detail="start must be before end")
    return service.events(conn, point_id, start, end, level, device_id, limit)


@router.get("/{point_id}/safety/state", response_model=PointSafety,
            summary="The current safety level of a point, each sensor device and each channel")
def safety_state(point_id: str, request: Request, conn: Conn) -> PointSafety:
    return service.state(conn, point_id, request.app.state.clock(),
                         request.app.state.settings.api.latest_lookback_hours)
