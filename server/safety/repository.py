"""SQL of safety."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

_EVENT_COLUMNS = ("time, device_id, seq, channel, level, prev_level, rule, value, unit, threshold, latched,"
                  " actions, message, clock_synced")


def events(
    conn: psycopg.Connection[Any], point_id: str, start: datetime, end: datetime,
    levels: list[str] | None, device_id: str | None, limit: int,
) -> list[dict[str, Any]]:
    """A point's safety events in [start, end), newest first."""
    where = ["point_id = %s", "time >= %s", "time < %s"]
    params: list[Any] = [point_id, start, end]
    if levels:
        where.append("level = ANY(%s)")
        params.append(levels)
    if device_id is not None:
        where.append("device_id = %s")
        params.append(device_id)
    params.append(limit)
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"SELECT {_EVENT_COLUMNS} FROM safety_events WHERE {' AND '.join(where)}"
            " ORDER BY time DESC, device_id, seq DESC LIMIT %s",
            params,
        ).fetchall()


def current_channels(conn: psycopg.Connection[Any], point_id: str) -> list[dict[str, Any]]:
    """The latest event of each (device, channel) of a point: its current level (events are transitions)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT DISTINCT ON (device_id, channel)"
            "  device_id, channel, level, rule, latched, time AS since, value, unit, threshold, message"
            " FROM safety_events WHERE point_id = %s"
            " ORDER BY device_id, channel, time DESC, seq DESC",
            (point_id,),
        ).fetchall()


def sensor_devices(conn: psycopg.Connection[Any], point_id: str, since: datetime) -> list[str]:
    """Devices of a point that sent telemetry since `since`."""
    rows = conn.execute(
        "SELECT DISTINCT device_id FROM telemetry WHERE point_id = %s AND time > %s", (point_id, since)
    ).fetchall()
    return [r[0] for r in rows]


def device_status(conn: psycopg.Connection[Any], point_id: str) -> dict[str, dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT device_id, state, last_seen FROM devices WHERE point_id = %s", (point_id,)
        ).fetchall()
    return {r["device_id"]: r for r in rows}
