"""Write settlement inputs (points, elders, categories, cards, taps) into the real tables for DB tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from firmware_bridge import residentid
from server.subsidy.eligibility import Elder
from server.subsidy.records import CardBinding, PointPlace, Tap


def insert_points(conn: psycopg.Connection[Any], points: Sequence[PointPlace], tag: str = "") -> None:
    """Meal points with township and village NAMES (the place trigger creates the ids); `tag` keeps names apart."""
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO meal_points (id, name, township, village) VALUES (%s, %s, %s, %s)",
            [(p.point_id, p.point_name, p.township_name + tag, p.village_name + tag) for p in points],
        )


def insert_elders(conn: psycopg.Connection[Any], elders: Sequence[Elder]) -> None:
    with conn.cursor() as cur:
        for e in elders:
            rid = residentid.parse(e.id_number)
            cur.execute(
                "INSERT INTO elders (id, name, id_number, birth_date, sex, phone, address, hukou_local,"
                " resident_since, status, status_date) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (e.elder_id, e.name, e.id_number, rid.birth_date, str(rid.sex), e.phone, e.address, e.hukou_local,
                 e.resident_since, str(e.status), e.status_date),
            )
            for g in e.categories:
                cur.execute(
                    "INSERT INTO elder_categories (elder_id, category, evidence, valid_from, valid_to)"
                    " VALUES (%s, %s, %s, %s, %s)",
                    (e.elder_id, str(g.category), g.evidence, g.valid_from, g.valid_to),
                )


def insert_bindings(conn: psycopg.Connection[Any], bindings: Sequence[CardBinding]) -> None:
    """Stored cards; resident ID card bindings are implicit and skipped."""
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO cards (card_id, elder_id, state, state_since, bound_from, bound_to)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            [(b.card_id, b.elder_id, str(b.state), b.state_since, b.bound_from, b.bound_to)
             for b in bindings if not b.card_id.startswith("ID:")],
        )


def insert_taps(conn: psycopg.Connection[Any], taps: Sequence[Tap]) -> None:
    with conn.cursor() as cur, cur.copy(
        "COPY diner_events (time, point_id, device_id, seq, kind, method, card_id, meal, decision, elder_id,"
        " clock_synced) FROM STDIN"
    ) as cp:
        for t in taps:
            method = "idcard" if t.card_id.startswith("ID:") else "card"
            cp.write_row((t.time, t.point_id, t.device_id, t.seq, str(t.kind), method, t.card_id,
                          str(t.meal) if t.meal else None, "accepted", None, True))


def insert_month(conn: psycopg.Connection[Any], points: Sequence[PointPlace], elders: Sequence[Elder],
                 bindings: Sequence[CardBinding], taps: Sequence[Tap], tag: str = "") -> None:
    insert_points(conn, points, tag)
    insert_elders(conn, elders)
    insert_bindings(conn, bindings)
    insert_taps(conn, taps)
