"""SQL of the registry."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

_POINT_COLUMNS = "id, name, township, village, auto_registered, created_at"
_DEVICE_COLUMNS = "device_id, role, state, last_seen, status_ts, heartbeat_s, software, detail, outbox_depth"


def list_points(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"SELECT {_POINT_COLUMNS} FROM meal_points ORDER BY id").fetchall()


def get_point(conn: psycopg.Connection[Any], point_id: str) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"SELECT {_POINT_COLUMNS} FROM meal_points WHERE id = %s", (point_id,)).fetchone()


def list_devices(conn: psycopg.Connection[Any], point_id: str) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE point_id = %s ORDER BY device_id", (point_id,)
        ).fetchall()
