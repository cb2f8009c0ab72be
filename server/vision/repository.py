"""SQL of camera counts: count periods, card taps, occupancy snapshots, camera health, meal policies."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from .crosscheck import CardTap, CountPeriod

Conn = psycopg.Connection[Any]
HEALTH_CHANNELS = ("camera.online", "camera.fps", "camera.reconnects")


def count_periods(conn: Conn, point_id: str, start: datetime, end: datetime) -> list[CountPeriod]:
    """Every count event whose period starts in [start, end), duplicates of a period start included."""
    rows = conn.execute(
        "SELECT time, device_id, period_s, entries, exits FROM count_events"
        " WHERE point_id = %s AND time >= %s AND time < %s ORDER BY time, device_id, seq",
        (point_id, start, end),
    ).fetchall()
    return [CountPeriod(*r) for r in rows]


def card_taps(conn: Conn, point_id: str, start: datetime, end: datetime) -> list[CardTap]:
    """Taps at the point (deliveries excluded: they never pass the camera)."""
    rows = conn.execute(
        "SELECT time, card_id FROM diner_events"
        " WHERE point_id = %s AND time >= %s AND time < %s AND kind = 'tap' ORDER BY time",
        (point_id, start, end),
    ).fetchall()
    return [CardTap(*r) for r in rows]


def occupancy(conn: Conn, point_id: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT time, device_id, occupancy FROM count_events"
            " WHERE point_id = %s AND time >= %s AND time < %s AND occupancy IS NOT NULL"
            " ORDER BY time, device_id, seq",
            (point_id, start, end),
        ).fetchall()


def camera_health(conn: Conn, point_id: str, since: datetime) -> list[dict[str, Any]]:
    """Per camera (a device with camera.* readings or count events since `since`): latest health figures."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "WITH latest AS ("
            "  SELECT DISTINCT ON (device_id, channel) device_id, channel, time, value FROM telemetry"
            "  WHERE point_id = %(p)s AND time >= %(since)s AND channel = ANY(%(ch)s)"
            "  ORDER BY device_id, channel, time DESC, seq DESC),"
            " counts AS ("
            "  SELECT device_id, max(time + make_interval(secs => period_s)) AS counted_until,"
            "   count(*) AS count_events FROM count_events"
            "  WHERE point_id = %(p)s AND time >= %(since)s GROUP BY device_id),"
            " cams AS (SELECT device_id FROM latest UNION SELECT device_id FROM counts)"
            " SELECT c.device_id,"
            "  (SELECT value FROM latest l WHERE l.device_id = c.device_id AND l.channel = 'camera.online') AS online,"
            "  (SELECT time FROM latest l WHERE l.device_id = c.device_id AND l.channel = 'camera.online')"
            "    AS online_at,"
            "  (SELECT value FROM latest l WHERE l.device_id = c.device_id AND l.channel = 'camera.fps') AS fps,"
            "  (SELECT value FROM latest l WHERE l.device_id = c.device_id AND l.channel = 'camera.reconnects')"
            "    AS reconnects,"
            "  k.counted_until, coalesce(k.count_events, 0) AS count_events"
            " FROM cams c LEFT JOIN counts k USING (device_id)"
            " ORDER BY c.device_id",
            {"p": point_id, "since": since, "ch": list(HEALTH_CHANNELS)},
        ).fetchall()


def policy_contents(conn: Conn) -> list[dict[str, Any]]:
    """Stored subsidy policy versions (server.subsidy.policy), oldest first: their meal windows place slots."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT version, effective_from, county, timezone, content FROM subsidy_policies ORDER BY effective_from"
        ).fetchall()
