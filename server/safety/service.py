"""Safety queries: events with filters, and the current state of each device and of the point."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import psycopg

from server.errors import NotFoundError
from server.registry import repository as registry

from . import repository
from .schemas import ChannelState, DeviceSafety, PointSafety, SafetyEventOut
from .thresholds import worst


def _require_point(conn: psycopg.Connection[Any], point_id: str) -> None:
    if registry.get_point(conn, point_id) is None:
        raise NotFoundError(f"no meal point {point_id!r}")


def events(
    conn: psycopg.Connection[Any], point_id: str, start: datetime, end: datetime,
    levels: list[str] | None = None, device_id: str | None = None, limit: int = 500,
) -> list[SafetyEventOut]:
    _require_point(conn, point_id)
    rows = repository.events(conn, point_id, start, end, levels, device_id, limit)
    return [SafetyEventOut(**r) for r in rows]


def state(conn: psycopg.Connection[Any], point_id: str, now: datetime, lookback_hours: int) -> PointSafety:
    """Each sensor device's channels at their latest level; a device's level is its worst channel's.

    Sensor devices are those with a safety event ever or telemetry within the look-back window (a
    healthy detector sends no events, only summaries).
    """
    _require_point(conn, point_id)
    by_device: dict[str, list[ChannelState]] = {}
    for row in repository.current_channels(conn, point_id):
        by_device.setdefault(row.pop("device_id"), []).append(ChannelState(**row))
    for device_id in repository.sensor_devices(conn, point_id, now - timedelta(hours=lookback_hours)):
        by_device.setdefault(device_id, [])
    status = repository.device_status(conn, point_id)
    devices = []
    for device_id in sorted(by_device):
        channels = by_device[device_id]
        st = status.get(device_id, {})
        devices.append(DeviceSafety(device_id=device_id, level=worst([c.level for c in channels]),
                                    state=st.get("state"), last_seen=st.get("last_seen"), channels=channels))
    alarms = sum(1 for d in devices for c in d.channels if c.level in ("alarm", "alarm2"))
    return PointSafety(point_id=point_id, level=worst([d.level for d in devices]), alarms=alarms, devices=devices)
