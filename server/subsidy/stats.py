"""Statistics for the bureau (大数据分析): diners per day, per point and village, by category, trends,
first-time diners, elders who stopped coming, meals served per point.

Raw figures come from diner_events with each tap's card resolved to its elder at the tap's time
(cards, or the elder's resident ID card), in the county's local days (time_bucket with the zone).
A "meal served" is one elder (or one unknown card) at one point for one local day and meal label:
repeats do not count, and unknown cards do (the meal was served; the operation subsidy pays for
it), which is why these figures are not the subsidised meals. Figures by category come from the
month's settlement run (signed, else the latest full run), where categories are decided by policy.
Every query takes the caller's Scope and filters on the point id.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from server.auth.scopes import Scope

Conn = psycopg.Connection[Any]

# Diner events with the elder each card meant at the tap's time.
_DINERS = """
    SELECT d.time, d.point_id, d.kind, coalesce(d.meal, 'unknown') AS meal, d.card_id,
           coalesce(c.elder_id, ie.id) AS elder_id
    FROM diner_events d
    LEFT JOIN cards c ON c.card_id = d.card_id AND c.bound_from <= d.time
                     AND (c.bound_to IS NULL OR d.time < c.bound_to)
    LEFT JOIN elders ie ON d.card_id LIKE 'ID:%%' AND ie.id_number = substr(d.card_id, 4)
    WHERE d.time >= %(start)s AND d.time < %(end)s AND {scope}
"""


def _bounds(start: date, end: date, tz: str) -> dict[str, Any]:
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(tz)
    return {"start": datetime.combine(start, datetime.min.time(), zone),
            "end": datetime.combine(end, datetime.min.time(), zone), "tz": tz}


def _run(conn: Conn, query: str, scope: Scope, params: dict[str, Any], column: str = "d.point_id"
         ) -> list[dict[str, Any]]:
    flt = scope.sql_filter(column)
    # The scope fragment uses positional %s; turn it into named parameters.
    names = {f"scope{i}": v for i, v in enumerate(flt.params)}
    fragment = flt.sql.as_string(conn) % tuple(f"%({k})s" for k in names) if names else flt.sql.as_string(conn)
    text = query.replace("{scope}", fragment)
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql.SQL(text), {**params, **names}).fetchall()


def daily(conn: Conn, scope: Scope, start: date, end: date, tz: str) -> list[dict[str, Any]]:
    """Per local day and point: taps, meals served, distinct elders, deliveries, unknown-card taps."""
    q = f"""
    WITH x AS ({_DINERS})
    SELECT time_bucket('1 day', x.time, %(tz)s)::date AS day, x.point_id,
           count(*) AS taps,
           count(DISTINCT (coalesce(x.elder_id, x.card_id), x.meal)) AS meals_served,
           count(DISTINCT x.elder_id) AS elders,
           count(*) FILTER (WHERE x.kind = 'delivery') AS deliveries,
           count(*) FILTER (WHERE x.elder_id IS NULL) AS unknown_card_taps
    FROM x GROUP BY 1, 2 ORDER BY 1, 2
    """
    return _run(conn, q, scope, _bounds(start, end, tz))


def per_point(conn: Conn, scope: Scope, start: date, end: date, tz: str) -> list[dict[str, Any]]:
    """Meals served per point over the period (the basis of operation subsidies), with serving days."""
    q = f"""
    WITH x AS ({_DINERS}),
    m AS (SELECT DISTINCT x.point_id, time_bucket('1 day', x.time, %(tz)s)::date AS day, x.meal,
                          coalesce(x.elder_id, x.card_id) AS who, x.elder_id IS NOT NULL AS known, x.kind
          FROM x)
    SELECT m.point_id, p.name, p.village, p.township, count(*) AS meals_served,
           count(*) FILTER (WHERE m.known) AS meals_registered, count(*) FILTER (WHERE m.kind = 'delivery')
           AS deliveries, count(DISTINCT m.day) AS serving_days, count(DISTINCT m.who) FILTER (WHERE m.known)
           AS elders
    FROM m LEFT JOIN meal_points p ON p.id = m.point_id
    GROUP BY 1, 2, 3, 4 ORDER BY 4, 3, 1
    """
    return _run(conn, q, scope, _bounds(start, end, tz))


def per_village(conn: Conn, scope: Scope, start: date, end: date, tz: str) -> list[dict[str, Any]]:
    """Meals served and distinct elders per village and township over the period."""
    q = f"""
    WITH x AS ({_DINERS}),
    m AS (SELECT DISTINCT x.point_id, time_bucket('1 day', x.time, %(tz)s)::date AS day, x.meal,
                          coalesce(x.elder_id, x.card_id) AS who, x.elder_id
          FROM x)
    SELECT coalesce(p.township, '') AS township, coalesce(p.village, '') AS village, count(*) AS meals_served,
           count(DISTINCT m.elder_id) AS elders, count(DISTINCT m.point_id) AS points
    FROM m LEFT JOIN meal_points p ON p.id = m.point_id
    GROUP BY 1, 2 ORDER BY 1, 2
    """
    return _run(conn, q, scope, _bounds(start, end, tz))


def trend(conn: Conn, scope: Scope, start: date, end: date, tz: str) -> list[dict[str, Any]]:
    """Per local month: meals served, distinct elders, taps and serving points."""
    q = f"""
    WITH x AS ({_DINERS})
    SELECT date_trunc('month', x.time AT TIME ZONE %(tz)s)::date AS month,
           count(DISTINCT (x.point_id, (x.time AT TIME ZONE %(tz)s)::date, x.meal,
                           coalesce(x.elder_id, x.card_id))) AS meals_served,
           count(DISTINCT x.elder_id) AS elders, count(*) AS taps, count(DISTINCT x.point_id) AS points
    FROM x GROUP BY 1 ORDER BY 1
    """
    return _run(conn, q, scope, _bounds(start, end, tz))


def by_category(conn: Conn, scope: Scope, run_id: int) -> list[dict[str, Any]]:
    """Per local day and category of a settlement run: subsidised meals, distinct elders, amount."""
    q = """
    SELECT l.day, l.category, count(*) AS meals, count(DISTINCT l.elder_id) AS elders, sum(l.amount) AS amount
    FROM settlement_lines l WHERE l.run_id = %(run)s AND {scope}
    GROUP BY 1, 2 ORDER BY 1, 2
    """
    return _run(conn, q, scope, {"run": run_id}, column="l.point_id")


def first_time(conn: Conn, scope: Scope, start: date, end: date, tz: str) -> list[dict[str, Any]]:
    """Elders whose first meal ever (at any point) falls in the period, at a point in scope."""
    q = f"""
    WITH x AS ({_DINERS}),
    firsts AS (
        SELECT DISTINCT ON (x.elder_id) x.elder_id, x.point_id, x.time
        FROM x WHERE x.elder_id IS NOT NULL ORDER BY x.elder_id, x.time
    ),
    cards_of AS (
        SELECT c.card_id, c.elder_id, c.bound_from, c.bound_to FROM cards c
        WHERE c.elder_id IN (SELECT elder_id FROM firsts)
        UNION ALL
        SELECT 'ID:' || e.id_number, e.id, '-infinity'::timestamptz, NULL FROM elders e
        WHERE e.id IN (SELECT elder_id FROM firsts)
    ),
    earlier AS (
        SELECT DISTINCT co.elder_id FROM diner_events d
        JOIN cards_of co ON co.card_id = d.card_id AND d.time >= co.bound_from
                        AND (co.bound_to IS NULL OR d.time < co.bound_to)
        WHERE d.time < %(start)s
    )
    SELECT f.elder_id, e.name, f.point_id, (f.time AT TIME ZONE %(tz)s)::date AS first_day
    FROM firsts f JOIN elders e ON e.id = f.elder_id
    WHERE f.elder_id NOT IN (SELECT elder_id FROM earlier)
    ORDER BY first_day, f.elder_id
    """
    return _run(conn, q, scope, _bounds(start, end, tz))


def lapsed(conn: Conn, scope: Scope, as_of: date, tz: str, *, quiet_days: int = 14, lookback_days: int = 60,
           min_meals: int = 8) -> list[dict[str, Any]]:
    """Regulars who stopped coming: at least `min_meals` meal days in the `lookback_days` before the
    last `quiet_days`, and none since — a prompt for a welfare visit. Deceased and moved elders are left out."""
    quiet_from = as_of - timedelta(days=quiet_days - 1)
    params = _bounds(quiet_from - timedelta(days=lookback_days), as_of + timedelta(days=1), tz)
    params.update({"quiet": _bounds(quiet_from, as_of, tz)["start"], "min_meals": min_meals})
    q = f"""
    WITH x AS ({_DINERS}),
    per AS (
        SELECT x.elder_id,
               count(DISTINCT (x.time AT TIME ZONE %(tz)s)::date) FILTER (WHERE x.time < %(quiet)s) AS days_before,
               count(*) FILTER (WHERE x.time >= %(quiet)s) AS taps_since,
               max(x.time) AS last_seen,
               (array_agg(x.point_id ORDER BY x.time DESC))[1] AS last_point
        FROM x WHERE x.elder_id IS NOT NULL GROUP BY 1
    )
    SELECT per.elder_id, e.name, e.phone, e.village_id, per.last_point AS point_id,
           (per.last_seen AT TIME ZONE %(tz)s)::date AS last_day, per.days_before
    FROM per JOIN elders e ON e.id = per.elder_id
    WHERE per.days_before >= %(min_meals)s AND per.taps_since = 0 AND e.status = 'active'
    ORDER BY last_day, per.elder_id
    """
    return _run(conn, q, scope, params)
