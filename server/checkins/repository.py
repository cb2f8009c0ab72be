"""SQL of check-ins."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

UNASSIGNED_MEAL = "unassigned"


def diner_events(conn: psycopg.Connection[Any], point_id: str, start: datetime, end: datetime
                 ) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT time, device_id, seq, kind, method, card_id, meal, decision, elder_id, clock_synced"
            " FROM diner_events WHERE point_id = %s AND time >= %s AND time < %s ORDER BY time, device_id, seq",
            (point_id, start, end),
        ).fetchall()


def meal_counts(conn: psycopg.Connection[Any], point_id: str, start: datetime, end: datetime
                ) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT coalesce(meal, %s) AS meal, count(*) AS events,"
            "  count(DISTINCT card_id) AS distinct_cards,"
            "  count(DISTINCT card_id) FILTER (WHERE decision = 'accepted') AS distinct_accepted_cards,"
            "  count(*) FILTER (WHERE kind = 'delivery') AS deliveries"
            " FROM diner_events WHERE point_id = %s AND time >= %s AND time < %s"
            " GROUP BY 1 ORDER BY 1",
            (UNASSIGNED_MEAL, point_id, start, end),
        ).fetchall()
