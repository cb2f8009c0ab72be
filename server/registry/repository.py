"""SQL of the registry."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from server.auth.scopes import SqlFilter

_POINT_COLUMNS = "id, name, township, village, auto_registered, created_at"
_DEVICE_COLUMNS = "device_id, role, state, last_seen, status_ts, heartbeat_s, software, detail, outbox_depth"


def list_points(conn: psycopg.Connection[Any], where: SqlFilter) -> list[dict[str, Any]]:
    query = sql.SQL(f"SELECT {_POINT_COLUMNS} FROM meal_points WHERE {{}} ORDER BY id").format(where.sql)
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, where.params).fetchall()


def get_point(conn: psycopg.Connection[Any], point_id: str) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"SELECT {_POINT_COLUMNS} FROM meal_points WHERE id = %s", (point_id,)).fetchone()


def list_devices(conn: psycopg.Connection[Any], point_id: str) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE point_id = %s ORDER BY device_id", (point_id,)
        ).fetchall()
