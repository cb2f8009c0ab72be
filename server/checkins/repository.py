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


# Each event with the elder it counts for: the card binding covering the tap time (lost/replaced
# cards after state_since count for nobody) or, for ID:<number>, the elder with that ID number.
_ATTRIBUTED = """
SELECT d.time, d.device_id, d.seq, d.kind, d.meal, d.card_id, d.decision,
       (d.time AT TIME ZONE %(tz)s)::date AS day,
       CASE WHEN b.lost THEN NULL ELSE coalesce(b.elder_id, idc.id) END AS elder_id,
       coalesce(b.lost, false) AS lost
FROM diner_events d
LEFT JOIN LATERAL (
    SELECT c.elder_id, (c.state <> 'active' AND d.time >= c.state_since) AS lost FROM cards c
    WHERE c.card_id = d.card_id AND c.bound_from <= d.time AND (c.bound_to IS NULL OR d.time < c.bound_to)
    LIMIT 1) b ON true
LEFT JOIN elders idc ON d.card_id LIKE 'ID:%%' AND idc.id_number = substr(d.card_id, 4)
WHERE d.point_id = %(point)s AND d.time >= %(start)s AND d.time < %(end)s
"""


def served(conn: psycopg.Connection[Any], point_id: str, start: datetime, end: datetime, tz: str
           ) -> list[dict[str, Any]]:
    """Per local day and meal: distinct elders served (at the point, by delivery), taps by outcome."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"WITH ev AS ({_ATTRIBUTED})"
            " SELECT day, coalesce(meal, %(unassigned)s) AS meal, count(*) AS events,"
            "  count(DISTINCT elder_id) FILTER (WHERE meal IS NOT NULL) AS elders,"
            "  count(DISTINCT elder_id) FILTER (WHERE meal IS NOT NULL AND kind = 'tap') AS at_point,"
            "  count(DISTINCT elder_id) FILTER (WHERE meal IS NOT NULL AND kind = 'delivery') AS delivered,"
            "  count(*) FILTER (WHERE elder_id IS NULL AND NOT lost) AS unknown_card_events,"
            "  count(*) FILTER (WHERE lost) AS lost_card_events"
            " FROM ev GROUP BY 1, 2 ORDER BY 1, 2",
            {"tz": tz, "point": point_id, "start": start, "end": end, "unassigned": UNASSIGNED_MEAL},
        ).fetchall()


def served_elders(conn: psycopg.Connection[Any], point_id: str, start: datetime, end: datetime, tz: str
                  ) -> list[dict[str, Any]]:
    """Per local day, meal and elder: how they were served and their first event's time."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"WITH ev AS ({_ATTRIBUTED})"
            " SELECT ev.day, ev.meal, ev.elder_id, e.name, min(ev.time) AS first_at, count(*) AS events,"
            "  bool_or(ev.kind = 'tap') AS at_point, bool_or(ev.kind = 'delivery') AS delivered"
            " FROM ev JOIN elders e ON e.id = ev.elder_id WHERE ev.meal IS NOT NULL"
            " GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 5",
            {"tz": tz, "point": point_id, "start": start, "end": end},
        ).fetchall()


def elder_for_delivery(conn: psycopg.Connection[Any], elder_id: str) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT id, name, id_number, status, status_date FROM elders WHERE id = %s",
                           (elder_id,)).fetchone()


def already_served(conn: psycopg.Connection[Any], elder_id: str, id_number: str, meal: str,
                   start: datetime, end: datetime) -> bool:
    """Whether the elder has an event for this meal in [start, end) at any point (own card, ID card or API)."""
    row = conn.execute(
        "SELECT 1 FROM diner_events d WHERE d.time >= %(start)s AND d.time < %(end)s AND d.meal = %(meal)s"
        " AND d.decision IN ('accepted', 'repeat')"
        " AND (d.elder_id = %(elder)s OR d.card_id = %(idcard)s OR EXISTS (SELECT 1 FROM cards c"
        "      WHERE c.card_id = d.card_id AND c.elder_id = %(elder)s AND c.bound_from <= d.time"
        "      AND (c.bound_to IS NULL OR d.time < c.bound_to)"
        "      AND NOT (c.state <> 'active' AND d.time >= c.state_since))) LIMIT 1",
        {"start": start, "end": end, "meal": meal, "elder": elder_id, "idcard": "ID:" + id_number},
    ).fetchone()
    return row is not None


def insert_server_event(conn: psycopg.Connection[Any], point_id: str, device_id: str, at: datetime,
                        body: dict[str, Any], received_at: datetime) -> int:
    """Store a diner event the server itself made: receipt and row, seq from server_diner_seq."""
    row = conn.execute("SELECT nextval('server_diner_seq')").fetchone()
    assert row is not None
    seq = int(row[0])
    conn.execute("INSERT INTO message_receipts (time, point_id, device_id, seq, channel, received_at, clock_synced)"
                 " VALUES (%s, %s, %s, %s, 'diner', %s, true)", (at, point_id, device_id, seq, received_at))
    conn.execute(
        "INSERT INTO diner_events (time, point_id, device_id, seq, kind, method, card_id, meal, decision, elder_id,"
        " clock_synced) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, true)",
        (at, point_id, device_id, seq, body["kind"], body["method"], body["card_id"], body["meal"],
         body["decision"], body["elder_id"]))
    return seq
