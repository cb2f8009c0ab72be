"""Registry logic: a device is online when its status says so and it was heard from recently."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import psycopg

from server.auth.scopes import Scope
from server.errors import NotFoundError

from . import repository
from .schemas import DeviceOut, PointDetail, PointOut


def is_online(state: str | None, last_seen: datetime | None, heartbeat_s: int | None, now: datetime,
              heartbeats: float, default_heartbeat_s: int) -> bool:
    """Online = retained status 'online' and heard from within `heartbeats` heartbeat intervals."""
    if state != "online" or last_seen is None:
        return False
    return now - last_seen <= timedelta(seconds=heartbeats * (heartbeat_s or default_heartbeat_s))


class RegistryService:
    def __init__(self, heartbeats: float, default_heartbeat_s: int) -> None:
        self.heartbeats = heartbeats
        self.default_heartbeat_s = default_heartbeat_s

    def points(self, conn: psycopg.Connection[Any], scope: Scope) -> list[PointOut]:
        """The meal points inside `scope`."""
        return [PointOut(**row) for row in repository.list_points(conn, scope.sql_filter("id"))]

    def devices(self, conn: psycopg.Connection[Any], point_id: str, now: datetime) -> list[DeviceOut]:
        if repository.get_point(conn, point_id) is None:
            raise NotFoundError(f"no meal point {point_id!r}")
        return [self._device(row, now) for row in repository.list_devices(conn, point_id)]

    def point(self, conn: psycopg.Connection[Any], point_id: str, now: datetime) -> PointDetail:
        row = repository.get_point(conn, point_id)
        if row is None:
            raise NotFoundError(f"no meal point {point_id!r}")
        devices = [self._device(d, now) for d in repository.list_devices(conn, point_id)]
        seen = [d.last_seen for d in devices if d.last_seen is not None]
        return PointDetail(**row, devices=len(devices), devices_online=sum(d.online for d in devices),
                           last_seen=max(seen) if seen else None)

    def _device(self, row: dict[str, Any], now: datetime) -> DeviceOut:
        online = is_online(row["state"], row["last_seen"], row["heartbeat_s"], now,
                           self.heartbeats, self.default_heartbeat_s)
        return DeviceOut(
            device_id=row["device_id"], role=row["role"], reported_state=row["state"], online=online,
            last_seen=row["last_seen"], status_ts=row["status_ts"], heartbeat_s=row["heartbeat_s"],
            software=row["software"], detail=row["detail"], outbox_depth=row["outbox_depth"],
        )
