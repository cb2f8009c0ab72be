"""HTTP routes of telemetry."""

from __future__ import annotations

from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, HTTPException, Query, Request

from server.db.pool import connection
from server.errors import NotFoundError

from . import service
from .schemas import ReadingOut

router = APIRouter(prefix="/api/v1/points", tags=["telemetry"])
Conn = Annotated[psycopg.Connection[Any], Depends(connection)]


@router.get("/{point_id}/readings/latest", response_model=list[ReadingOut],
            summary="Latest reading of each device and channel")
def latest_readings(
    point_id: str, request: Request, conn: Conn,
    hours: Annotated[int | None, Query(ge=1, le=24 * 366, description="Look-back window")] = None,
) -> list[ReadingOut]:
    lookback = hours or request.app.state.settings.api.latest_lookback_hours
    try:
        return service.latest(conn, point_id, request.app.state.clock(), lookback)
    except NotFoundError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from exc
