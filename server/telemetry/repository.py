"""SQL of telemetry."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row


def latest_readings(conn: psycopg.Connection[Any], point_id: str, since: datetime) -> list[dict[str, Any]]:
    """The newest reading of each (device, channel) of a point since `since` (chunks before are skipped)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT DISTINCT ON (device_id, channel)"
            "  device_id, channel, unit, value, time, vmin, vmean, vmax, n, period_s"
            " FROM telemetry WHERE point_id = %s AND time > %s"
            " ORDER BY device_id, channel, time DESC",
            (point_id, since),
        ).fetchall()


def series(
    conn: psycopg.Connection[Any], point_id: str, device_id: str, channel: str,
    start: datetime, end: datetime, bucket_s: int,
) -> list[dict[str, Any]]:
    """time_bucket rollup of one channel's summaries in [start, end).

    A summary's row time is the end of its period; it is bucketed by its period's start so a
    minute's summary lands in the bucket holding that minute.
    """
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT time_bucket(make_interval(secs => %(b)s),"
            "                   time - make_interval(secs => coalesce(period_s, 0))) AS time,"
            "  min(coalesce(vmin, value)) AS min,"
            "  sum(coalesce(vmean, value) * coalesce(n, 1)) / sum(coalesce(n, 1)) AS mean,"
            "  max(coalesce(vmax, value)) AS max,"
            "  last(value, time) AS last,"
            "  sum(coalesce(n, 1))::bigint AS n"
            " FROM telemetry"
            " WHERE point_id = %(p)s AND device_id = %(d)s AND channel = %(c)s AND time >= %(s)s AND time < %(e)s"
            " GROUP BY 1 ORDER BY 1",
            {"b": bucket_s, "p": point_id, "d": device_id, "c": channel, "s": start, "e": end},
        ).fetchall()


def channel_unit(conn: psycopg.Connection[Any], point_id: str, device_id: str, channel: str,
                 start: datetime, end: datetime) -> str | None:
    row = conn.execute(
        "SELECT unit FROM telemetry WHERE point_id = %s AND device_id = %s AND channel = %s"
        " AND time >= %s AND time < %s AND unit IS NOT NULL ORDER BY time DESC LIMIT 1",
        (point_id, device_id, channel, start, end),
    ).fetchone()
    return None if row is None else row[0]


def edge_thresholds(conn: psycopg.Connection[Any], point_id: str, device_id: str, channel: str
                    ) -> list[dict[str, Any]]:
    """The latest threshold the edge reported for each level of a channel (CO's is a dose, not ppm)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT DISTINCT ON (level) level, threshold, value FROM safety_events"
            " WHERE point_id = %s AND device_id = %s AND channel = %s AND threshold IS NOT NULL"
            "   AND level IN ('warn', 'alarm', 'alarm2') AND rule <> 'gas.co'"
            " ORDER BY level, time DESC",
            (point_id, device_id, channel),
        ).fetchall()


def device_setpoints(conn: psycopg.Connection[Any], point_id: str, device_id: str, prefixes: list[str],
                     start: datetime, end: datetime) -> list[dict[str, Any]]:
    """The latest value of the device's own set-point channels (e.g. lel.low_setpoint) in the range."""
    patterns = [f"{p}.%setpoint" for p in prefixes]
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT DISTINCT ON (channel) channel, value FROM telemetry"
            " WHERE point_id = %s AND device_id = %s AND channel LIKE ANY(%s) AND time >= %s AND time < %s"
            " ORDER BY channel, time DESC",
            (point_id, device_id, patterns, start, end),
        ).fetchall()
