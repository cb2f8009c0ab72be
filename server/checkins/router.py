"""HTTP routes of check-ins."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, HTTPException, Query, Request

from server.db.pool import connection
from server.errors import NotFoundError

from . import service
from .schemas import DinersOut

router = APIRouter(prefix="/api/v1/points", tags=["checkins"])
Conn = Annotated[psycopg.Connection[Any], Depends(connection)]


@router.get("/{point_id}/diners", response_model=DinersOut,
            summary="A local day's diner events and per-meal counts of distinct cards")
def diners(
    point_id: str, request: Request, conn: Conn,
    day: Annotated[date, Query(description="Local calendar day, YYYY-MM-DD")],
) -> DinersOut:
    try:
        return service.diners(conn, point_id, day, request.app.state.settings.api.timezone)
    except NotFoundError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from exc
