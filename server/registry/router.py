"""HTTP routes of the registry."""

from __future__ import annotations

from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, Request

from server.auth.deps import CurrentScope
from server.db.pool import connection

from .schemas import DeviceOut, PointDetail, PointOut
from .service import RegistryService

router = APIRouter(prefix="/api/v1/points", tags=["registry"])
Conn = Annotated[psycopg.Connection[Any], Depends(connection)]


def _service(request: Request) -> RegistryService:
    api = request.app.state.settings.api
    return RegistryService(api.online_heartbeats, api.default_heartbeat_s)


@router.get("", response_model=list[PointOut], summary="All meal points")
def list_points(request: Request, conn: Conn, scope: CurrentScope) -> list[PointOut]:
    return _service(request).points(conn, scope)


@router.get("/{point_id}", response_model=PointDetail, summary="One meal point with device counts")
def get_point(point_id: str, request: Request, conn: Conn) -> PointDetail:
    return _service(request).point(conn, point_id, request.app.state.clock())


@router.get("/{point_id}/devices", response_model=list[DeviceOut], summary="Devices, last seen, online")
def list_devices(point_id: str, request: Request, conn: Conn) -> list[DeviceOut]:
    return _service(request).devices(conn, point_id, request.app.state.clock())
