"""SQL of elders, categories, card bindings and rosters (tables of migration 0020)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from server.auth.scopes import SqlFilter

ELDER_COLUMNS = ("id, name, id_number, birth_date, sex, phone, address, hukou_local, resident_since, status,"
                 " status_date, village_id, home_point_id, note, created_at, updated_at")
CARD_COLUMNS = "id, card_id, elder_id, state, state_since, bound_from, bound_to, note"
UPDATABLE = frozenset({"name", "id_number", "birth_date", "sex", "phone", "address", "hukou_local",
                       "resident_since", "status", "status_date", "village_id", "home_point_id", "note"})

# An elder belongs to a meal point when it is their home point or the point serves their village.
_OF_POINT = """(e.home_point_id = %(point)s OR e.village_id IS NOT NULL AND e.village_id =
               (SELECT village_id FROM meal_point_places WHERE point_id = %(point)s))"""


def point_village(conn: psycopg.Connection[Any], point_id: str) -> tuple[bool, int | None]:
    """(whether the point exists, its village id)."""
    row = conn.execute("SELECT village_id FROM meal_point_places WHERE point_id = %s", (point_id,)).fetchone()
    return (row is not None, row[0] if row else None)


def village_exists(conn: psycopg.Connection[Any], village_id: int) -> bool:
    return conn.execute("SELECT 1 FROM villages WHERE id = %s", (village_id,)).fetchone() is not None


def insert_elder(conn: psycopg.Connection[Any], fields: dict[str, Any]) -> str:
    names = list(fields)
    query = sql.SQL("INSERT INTO elders ({}) VALUES ({}) RETURNING id").format(
        sql.SQL(", ").join(map(sql.Identifier, names)), sql.SQL(", ").join(sql.Placeholder() * len(names)))
    row = conn.execute(query, [fields[n] for n in names]).fetchone()
    assert row is not None
    return str(row[0])


def update_elder(conn: psycopg.Connection[Any], elder_id: str, fields: dict[str, Any], at: datetime) -> None:
    unknown = set(fields) - UPDATABLE
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    if not fields:
        return
    sets = [sql.SQL("{} = {}").format(sql.Identifier(n), sql.Placeholder()) for n in fields]
    query = sql.SQL("UPDATE elders SET {}, updated_at = %s WHERE id = %s").format(sql.SQL(", ").join(sets))
    conn.execute(query, [*fields.values(), at, elder_id])


def get_elder(conn: psycopg.Connection[Any], elder_id: str, point_id: str | None = None,
              lock: bool = False) -> dict[str, Any] | None:
    """The elder, or None when unknown (or not of `point_id` when one is given)."""
    where = "e.id = %(id)s" + (f" AND {_OF_POINT}" if point_id is not None else "")
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"SELECT {ELDER_COLUMNS} FROM elders e WHERE {where}" + (" FOR UPDATE" if lock else ""),
                           {"id": elder_id, "point": point_id}).fetchone()


def list_elders(conn: psycopg.Connection[Any], *, point_id: str | None, village_id: int | None,
                status: str | None, id_number: str | None, limit: int, offset: int) -> list[dict[str, Any]]:
    parts = ["TRUE"]
    if point_id is not None:
        parts.append(_OF_POINT)
    if village_id is not None:
        parts.append("e.village_id = %(village)s")
    if status is not None:
        parts.append("e.status = %(status)s")
    if id_number is not None:
        parts.append("e.id_number = %(number)s")
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"SELECT {ELDER_COLUMNS} FROM elders e WHERE {' AND '.join(parts)} ORDER BY e.id"
            " LIMIT %(limit)s OFFSET %(offset)s",
            {"point": point_id, "village": village_id, "status": status, "number": id_number,
             "limit": limit, "offset": offset}).fetchall()


def categories(conn: psycopg.Connection[Any], elder_ids: Sequence[str]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT id, elder_id, category, evidence, valid_from, valid_to FROM elder_categories"
            " WHERE elder_id = ANY(%s) ORDER BY elder_id, valid_from, id", (list(elder_ids),)).fetchall()


def insert_category(conn: psycopg.Connection[Any], elder_id: str, category: str, evidence: str,
                    valid_from: date, valid_to: date | None) -> int:
    row = conn.execute(
        "INSERT INTO elder_categories (elder_id, category, evidence, valid_from, valid_to)"
        " VALUES (%s, %s, %s, %s, %s) RETURNING id", (elder_id, category, evidence, valid_from, valid_to)
    ).fetchone()
    assert row is not None
    return int(row[0])


def end_category(conn: psycopg.Connection[Any], elder_id: str, category_id: int, valid_to: date) -> bool:
    cur = conn.execute("UPDATE elder_categories SET valid_to = %s WHERE id = %s AND elder_id = %s",
                       (valid_to, category_id, elder_id))
    return cur.rowcount == 1


def cards(conn: psycopg.Connection[Any], elder_ids: Sequence[str]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"SELECT {CARD_COLUMNS} FROM cards WHERE elder_id = ANY(%s) ORDER BY elder_id, bound_from",
                           (list(elder_ids),)).fetchall()


def open_binding(conn: psycopg.Connection[Any], card_id: str) -> dict[str, Any] | None:
    """The card's binding that has not been released, if any."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"SELECT {CARD_COLUMNS} FROM cards WHERE card_id = %s AND bound_to IS NULL FOR UPDATE",
                           (card_id,)).fetchone()


def active_card(conn: psycopg.Connection[Any], elder_id: str) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"SELECT {CARD_COLUMNS} FROM cards WHERE elder_id = %s AND state = 'active' AND bound_to IS NULL"
            " FOR UPDATE", (elder_id,)).fetchone()


def last_binding_end(conn: psycopg.Connection[Any], card_id: str) -> datetime | None:
    row = conn.execute("SELECT max(bound_to) FROM cards WHERE card_id = %s", (card_id,)).fetchone()
    return row[0] if row else None


def insert_card(conn: psycopg.Connection[Any], card_id: str, elder_id: str, at: datetime, note: str | None) -> None:
    conn.execute("INSERT INTO cards (card_id, elder_id, bound_from, note) VALUES (%s, %s, %s, %s)",
                 (card_id, elder_id, at, note))


def set_card_state(conn: psycopg.Connection[Any], row_id: int, state: str, since: datetime) -> None:
    conn.execute("UPDATE cards SET state = %s, state_since = %s WHERE id = %s", (state, since, row_id))


def release_card(conn: psycopg.Connection[Any], row_id: int, at: datetime) -> None:
    conn.execute("UPDATE cards SET bound_to = %s WHERE id = %s", (at, row_id))


# -- rosters ---------------------------------------------------------------------------------------


def points_of_elders(conn: psycopg.Connection[Any], elder_ids: Iterable[str]) -> set[str]:
    """Meal points whose roster lists any of these elders (home point, or a point of their village)."""
    rows = conn.execute(
        "SELECT e.home_point_id FROM elders e WHERE e.id = ANY(%(ids)s) AND e.home_point_id IS NOT NULL"
        " UNION SELECT p.point_id FROM meal_point_places p JOIN elders e ON e.village_id = p.village_id"
        " WHERE e.id = ANY(%(ids)s)", {"ids": list(elder_ids)}).fetchall()
    return {r[0] for r in rows}


def roster_rows(conn: psycopg.Connection[Any], point_id: str, today: date) -> list[dict[str, Any]]:
    """Active elders of the point with their active card (if any) and whether a category is valid today."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT e.id, e.name, e.id_number, e.birth_date, e.hukou_local, e.resident_since, c.card_id,"
            "  EXISTS (SELECT 1 FROM elder_categories k WHERE k.elder_id = e.id AND k.valid_from <= %(today)s"
            "          AND (k.valid_to IS NULL OR k.valid_to >= %(today)s)) AS has_category"
            " FROM elders e"
            " LEFT JOIN cards c ON c.elder_id = e.id AND c.state = 'active' AND c.bound_to IS NULL"
            f" WHERE e.status = 'active' AND {_OF_POINT} ORDER BY e.id",
            {"point": point_id, "today": today}).fetchall()


def roster_state(conn: psycopg.Connection[Any], point_id: str, lock: bool = False) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT point_id, version, content_hash, entries, built_at, published_version, published_at"
            " FROM rosters WHERE point_id = %s" + (" FOR UPDATE" if lock else ""), (point_id,)).fetchone()


def lock_roster(conn: psycopg.Connection[Any], point_id: str) -> None:
    """Serialise roster builds of one point (two writers must not issue the same version)."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('yangyi-roster'), hashtext(%s))", (point_id,))


def save_roster_state(conn: psycopg.Connection[Any], point_id: str, version: int, content_hash: str,
                      entries: int, built_at: datetime) -> None:
    conn.execute(
        "INSERT INTO rosters (point_id, version, content_hash, entries, built_at) VALUES (%s, %s, %s, %s, %s)"
        " ON CONFLICT (point_id) DO UPDATE SET version = EXCLUDED.version, content_hash = EXCLUDED.content_hash,"
        " entries = EXCLUDED.entries, built_at = EXCLUDED.built_at", (point_id, version, content_hash, entries,
                                                                       built_at))


def mark_published(conn: psycopg.Connection[Any], point_id: str, version: int, at: datetime) -> None:
    conn.execute("UPDATE rosters SET published_version = %s, published_at = %s"
                 " WHERE point_id = %s AND (published_version IS NULL OR published_version < %s)",
                 (version, at, point_id, version))


def all_points(conn: psycopg.Connection[Any]) -> list[str]:
    return [r[0] for r in conn.execute("SELECT id FROM meal_points ORDER BY id").fetchall()]


def unpublished_points(conn: psycopg.Connection[Any]) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT point_id FROM rosters WHERE published_version IS DISTINCT FROM version ORDER BY point_id"
    ).fetchall()]


# -- unknown cards -----------------------------------------------------------------------------------


def unknown_cards(conn: psycopg.Connection[Any], where: SqlFilter, start: datetime, end: datetime,
                  point_id: str | None = None) -> list[dict[str, Any]]:
    """Cards tapped in [start, end) that no binding covered at the tap and that are still unbound now."""
    query = sql.SQL(
        "SELECT d.point_id, d.card_id, count(*) AS taps, min(d.time) AS first_seen, max(d.time) AS last_seen,"
        "  array_agg(DISTINCT d.device_id ORDER BY d.device_id) AS devices"
        " FROM diner_events d"
        " WHERE d.time >= %s AND d.time < %s AND {} AND (%s::text IS NULL OR d.point_id = %s)"
        "   AND NOT EXISTS (SELECT 1 FROM cards c WHERE c.card_id = d.card_id"
        "       AND (c.bound_to IS NULL OR c.bound_from <= d.time AND d.time < c.bound_to))"
        "   AND NOT (d.card_id LIKE 'ID:%%' AND EXISTS (SELECT 1 FROM elders e"
        "       WHERE e.id_number = substr(d.card_id, 4)))"
        " GROUP BY d.point_id, d.card_id ORDER BY d.point_id, max(d.time) DESC"
    ).format(where.sql)
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, (start, end, *where.params, point_id, point_id)).fetchall()
