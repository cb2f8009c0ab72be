"""HTTP routes of telemetry."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, HTTPException, Query, Request

from server.db.pool import connection

from . import service
from .schemas import ReadingOut, SeriesOut

router = APIRouter(prefix="/api/v1/points", tags=["telemetry"])
Conn = Annotated[psycopg.Connection[Any], Depends(connection)]


@router.get("/{point_id}/readings/latest", response_model=list[ReadingOut],
            summary="Latest reading of each device and channel")
def latest_readings(
    point_id: str, request: Request, conn: Conn,
    hours: Annotated[int | None, Query(ge=1, le=24 * 366, description="Look-back window")] = None,
) -> list[ReadingOut]:
    lookback = hours or request.app.state.settings.api.latest_lookback_hours
    return service.latest(conn, point_id, request.app.state.clock(), lookback)


MAX_SERIES_DAYS = 400


@router.get("/{point_id}/devices/{device_id}/channels/{channel}/series", response_model=SeriesOut,
            summary="A channel's summaries rolled up in time buckets, with thresholds to draw")
def channel_series(
    point_id: str, device_id: str, channel: str, request: Request, conn: Conn,
    start: Annotated[datetime | None, Query(description="From (inclusive); default 24 h before end")] = None,
    end: Annotated[datetime | None, Query(description="To (exclusive); default now")] = None,
    bucket_s: Annotated[int | None, Query(ge=60, le=86400, description="Bucket width; chosen if absent")] = None,
) -> SeriesOut:
    end = end or request.app.state.clock()
    start = start or end - timedelta(hours=24)
    if start.tzinfo is None or end.tzinfo is None:
        raise HTTPException(status_code=422, detail="start and end need a time zone offset")
    if start >= end or end - start > timedelta(days=MAX_SERIES_DAYS):
        raise HTTPException(status_code=422, detail=f"start must be before end, at most {MAX_SERIES_DAYS} days")
    return service.series(conn, point_id, device_id, channel, start, end, bucket_s)
