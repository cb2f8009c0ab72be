"""HTTP routes of camera counts."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, HTTPException, Query, Request

from server.db.pool import connection

from . import service
from .crosscheck import Margin
from .schemas import CameraHealthListOut, CameraMealsOut, OccupancyDayOut
from .settings import VisionSettings

router = APIRouter(prefix="/api/v1/points", tags=["vision"])
Conn = Annotated[psycopg.Connection[Any], Depends(connection)]


def _settings(request: Request) -> VisionSettings:
    settings = getattr(request.app.state, "vision_settings", None)
    if settings is None:
        settings = request.app.state.vision_settings = VisionSettings()
    return settings


@router.get("/{point_id}/camera/meals", response_model=CameraMealsOut,
            summary="Camera entries against distinct cards tapped, per local day and meal, with the excess flag")
def camera_meals(
    point_id: str, request: Request, conn: Conn,
    start: Annotated[date, Query(alias="from", description="First local day, YYYY-MM-DD")],
    end: Annotated[date | None, Query(alias="to", description="Last local day (inclusive); default: from")] = None,
    min_excess: Annotated[int | None, Query(ge=0, description="Flag above this many; default from settings")] = None,
    ratio: Annotated[Decimal | None, Query(ge=0, description="… and above this share of entries")] = None,
) -> CameraMealsOut:
    settings = _settings(request)
    margin = Margin(min_excess=settings.min_excess if min_excess is None else min_excess,
                    ratio=settings.excess_ratio if ratio is None else ratio)
    try:
        return service.camera_meals(conn, point_id, start, end or start, request.app.state.settings.api.timezone,
                                    margin)
    except ValueError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc


@router.get("/{point_id}/camera/occupancy", response_model=OccupancyDayOut,
            summary="A local day's seated head-count snapshots")
def camera_occupancy(
    point_id: str, request: Request, conn: Conn,
    day: Annotated[date, Query(description="Local calendar day, YYYY-MM-DD")],
) -> OccupancyDayOut:
    return service.occupancy(conn, point_id, day, request.app.state.settings.api.timezone)


@router.get("/{point_id}/camera/health", response_model=CameraHealthListOut,
            summary="Each camera's latest health: online, frame rate, reconnects, counts received")
def camera_health(
    point_id: str, request: Request, conn: Conn,
    hours: Annotated[int | None, Query(ge=1, le=24 * 31, description="Look-back; default from settings")] = None,
) -> CameraHealthListOut:
    return service.health(conn, point_id, request.app.state.clock(), hours or _settings(request).health_hours)
