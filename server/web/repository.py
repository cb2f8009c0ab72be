"""SQL of the dashboards: small aggregate queries, each filtered by the caller's scope.

County-wide rollups of diner events (per point and day) are computed for all points at once and
filtered by scope afterwards (see service.DayCounts), so fifty users share one scan.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from server.auth.scopes import Scope

Conn = psycopg.Connection[Any]


def points(conn: Conn, scope: Scope) -> list[dict[str, Any]]:
    """Meal points in scope with their place names and ids."""
    where = scope.sql_filter("p.id")
    query = sql.SQL(
        "SELECT p.id, p.name, p.township, p.village, pp.township_id, pp.village_id"
        " FROM meal_points p JOIN meal_point_places pp ON pp.point_id = p.id WHERE {}"
        " ORDER BY p.township NULLS LAST, p.village NULLS LAST, p.id").format(where.sql)
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, where.params).fetchall()


def point(conn: Conn, point_id: str) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT id, name, township, village FROM meal_points WHERE id = %s",
                           (point_id,)).fetchone()


# A device is online while its retained status says so and it was heard from within `heartbeats`
# heartbeat intervals (the same rule as server.registry.service.is_online). Parameters: now,
# heartbeats, default heartbeat.
_ONLINE = ("(d.state = 'online' AND d.last_seen IS NOT NULL"
           " AND d.last_seen >= %s - make_interval(secs => %s * coalesce(d.heartbeat_s, %s)))")


def device_health(conn: Conn, scope: Scope, now: datetime, heartbeats: float, default_heartbeat_s: int
                  ) -> list[dict[str, Any]]:
    """Every device in scope with its online flag (a few per point: small)."""
    where = scope.sql_filter("d.point_id")
    query = sql.SQL(
        "SELECT d.point_id, d.device_id, d.role, d.state, d.last_seen, d.outbox_depth, "
        + _ONLINE + " AS online FROM devices d WHERE {} ORDER BY d.point_id, d.device_id"
    ).format(where.sql)
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, (now, heartbeats, default_heartbeat_s, *where.params)).fetchall()


def active_alerts(conn: Conn, scope: Scope) -> list[dict[str, Any]]:
    """Unresolved alerts in scope (the partial index alerts_open_state keeps this small)."""
    where = scope.sql_filter("point_id")
    query = sql.SQL(
        "SELECT id, point_id, device_id, condition, hazard, severity, state, opened_at, last_value, unit, message"
        " FROM alerts WHERE state <> 'resolved' AND {} ORDER BY opened_at DESC").format(where.sql)
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, where.params).fetchall()


def accepted_by_point(conn: Conn, start: datetime, end: datetime) -> dict[str, int]:
    """Meals served (accepted check-ins and deliveries) per point in [start, end), county-wide."""
    rows = conn.execute(
        "SELECT point_id, count(*) FROM diner_events"
        " WHERE time >= %s AND time < %s AND decision = 'accepted' GROUP BY point_id",
        (start, end)).fetchall()
    return {r[0]: int(r[1]) for r in rows}


def point_meals(conn: Conn, point_id: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """A point's day by meal: taps, meals served, deliveries."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT coalesce(meal, 'unassigned') AS meal, count(*) AS events,"
            "  count(*) FILTER (WHERE decision = 'accepted') AS accepted,"
            "  count(*) FILTER (WHERE kind = 'delivery' AND decision = 'accepted') AS deliveries"
            " FROM diner_events WHERE point_id = %s AND time >= %s AND time < %s GROUP BY 1",
            (point_id, start, end)).fetchall()


def cards_by_hour(conn: Conn, point_id: str, start: datetime, end: datetime) -> dict[datetime, int]:
    """Accepted walk-in taps (not deliveries) per hour: what the door camera should also see."""
    rows = conn.execute(
        "SELECT time_bucket('1 hour', time) AS h, count(*) FROM diner_events"
        " WHERE point_id = %s AND time >= %s AND time < %s AND decision = 'accepted' AND kind <> 'delivery'"
        " GROUP BY 1", (point_id, start, end)).fetchall()
    return {r[0]: int(r[1]) for r in rows}


def camera_by_hour(conn: Conn, point_id: str, start: datetime, end: datetime) -> dict[datetime, int]:
    """People the camera counted coming in, per hour."""
    rows = conn.execute(
        "SELECT time_bucket('1 hour', time) AS h, sum(entries) FROM count_events"
        " WHERE point_id = %s AND time >= %s AND time < %s GROUP BY 1", (point_id, start, end)).fetchall()
    return {r[0]: int(r[1]) for r in rows}


def sensor_channels(conn: Conn, point_id: str, since: datetime) -> list[dict[str, Any]]:
    """Each (device, channel) of a point with a reading since `since`, and its latest value."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT DISTINCT ON (device_id, channel) device_id, channel, unit, value, time FROM telemetry"
            " WHERE point_id = %s AND time > %s AND channel NOT LIKE '%%setpoint'"
            " ORDER BY device_id, channel, time DESC", (point_id, since)).fetchall()


def alert_history(conn: Conn, point_id: str, limit: int) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT id, device_id, condition, hazard, severity, peak_severity, state, opened_at, resolved_at,"
            "  ack_by, ack_at, count, last_value, unit, message"
            " FROM alerts WHERE point_id = %s ORDER BY opened_at DESC LIMIT %s", (point_id, limit)).fetchall()
