"""SQL of the subsidy package: stored policies, settlement inputs from the registry and events, results.

Inputs map one to one onto the pure records (see 0020_elders_cards.sql): elders + elder_categories →
Elder, cards → CardBinding, meal_points placed in a township and village → PointPlace (a point
without both is unplaced, and its taps are excluded as unknown_point until it is placed),
diner_events → Tap, count_events summed per meal window → CameraCount. A resident ID card tapped as
"ID:<number>" is the elder's own card at any time: it becomes an implicit binding.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from firmware_bridge.contract.messages import DinerKind, Meal
from server.subsidy import canonical
from server.subsidy.eligibility import CategoryGrant, Elder, ElderStatus
from server.subsidy.policy import Category, PolicyBook, SubsidyPolicy
from server.subsidy.records import (
    AdjustmentLine,
    CameraCount,
    CardBinding,
    CardState,
    Month,
    PointPlace,
    Tap,
)
from server.subsidy.settlement import Settlement, Total

Conn = psycopg.Connection[Any]
ID_CARD_PREFIX = "ID:"
_MEALS = {m.value: m for m in Meal}
# The implicit binding of a resident ID card starts before any tap could.
ID_CARD_BOUND_FROM = datetime(1900, 1, 1, tzinfo=UTC)


def month_bounds(month: Month, book: PolicyBook) -> tuple[datetime, datetime]:
    """The month's first and next month's first instant, local midnight in the county's zone."""
    start = datetime.combine(month.first_day, datetime.min.time(), book.tz)
    end = datetime.combine(month.next().first_day, datetime.min.time(), book.tz)
    return start, end


# --- policies -------------------------------------------------------------------------------------


def policy_rows(conn: Conn) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT version, effective_from, county, timezone, content, sha256, added_by, added_at, source_yaml"
            " FROM subsidy_policies ORDER BY effective_from"
        ).fetchall()


def load_book(conn: Conn) -> PolicyBook | None:
    """All stored versions as one book (county and zone from the latest version), or None if empty."""
    rows = policy_rows(conn)
    if not rows:
        return None
    policies = [SubsidyPolicy.model_validate_json(canonical.dumps(r["content"])) for r in rows]
    return PolicyBook(county=rows[-1]["county"], timezone=rows[-1]["timezone"], policies=tuple(policies))


def insert_policy(conn: Conn, policy: SubsidyPolicy, *, county: str, timezone: str, source_yaml: str,
                  by: str, at: datetime) -> None:
    conn.execute(
        "INSERT INTO subsidy_policies (version, effective_from, county, timezone, source_yaml, content, sha256,"
        " added_by, added_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (policy.version, policy.effective_from, county, timezone, source_yaml, Jsonb(policy.canonical()),
         policy.content_hash, by, at),
    )


# --- inputs ---------------------------------------------------------------------------------------


def load_points(conn: Conn) -> list[PointPlace]:
    """Meal points placed in a township and a village; ids are the places' ids as text."""
    rows = conn.execute(
        "SELECT p.id, coalesce(p.name, ''), v.id, v.name, t.id, t.name"
        " FROM meal_points p JOIN meal_point_places pp ON pp.point_id = p.id"
        " JOIN villages v ON v.id = pp.village_id JOIN townships t ON t.id = pp.township_id"
        " ORDER BY p.id"
    ).fetchall()
    return [PointPlace(r[0], str(r[2]), str(r[4]), r[1], r[3], r[5]) for r in rows]


def load_elders(conn: Conn, elder_ids: Iterable[str] | None = None) -> list[Elder]:
    """Elders with their categories (all of them, or those named)."""
    where, params = ("", ()) if elder_ids is None else (" WHERE e.id = ANY(%s)", (list(elder_ids),))
    grants: dict[str, list[CategoryGrant]] = defaultdict(list)
    for eid, cat, frm, to, evidence in conn.execute(
        "SELECT g.elder_id, g.category, g.valid_from, g.valid_to, g.evidence FROM elder_categories g"
        " JOIN elders e ON e.id = g.elder_id" + where + " ORDER BY g.id",
        params,
    ):
        grants[eid].append(CategoryGrant(Category(cat), frm, evidence, to))
    out = []
    for r in conn.execute(
        "SELECT e.id, e.name, e.id_number, e.hukou_local, e.resident_since, e.status, e.status_date, e.phone,"
        " e.address FROM elders e" + where + " ORDER BY e.id",
        params,
    ):
        out.append(Elder(r[0], r[1], r[2], r[3], r[4], tuple(grants.get(r[0], ())), ElderStatus(r[5]), r[6],
                         r[7], r[8]))
    return out


def load_bindings(conn: Conn, elders: Sequence[Elder]) -> list[CardBinding]:
    """Stored card bindings of these elders plus each one's implicit resident ID card."""
    ids = [e.elder_id for e in elders]
    out = [
        CardBinding(r[0], r[1], r[2], r[3], CardState(r[4]), r[5])
        for r in conn.execute(
            "SELECT card_id, elder_id, bound_from, bound_to, state, state_since FROM cards"
            " WHERE elder_id = ANY(%s) ORDER BY id",
            (ids,),
        )
    ]
    out.extend(CardBinding(ID_CARD_PREFIX + e.id_number, e.elder_id, ID_CARD_BOUND_FROM) for e in elders)
    return out


def load_taps(conn: Conn, month: Month, book: PolicyBook, *, point_ids: Sequence[str] | None = None,
              card_ids: Sequence[str] | None = None) -> list[Tap]:
    """The month's diner events (all, or those at the points or on the cards given)."""
    start, end = month_bounds(month, book)
    where = ""
    params: list[Any] = [start, end]
    if point_ids is not None or card_ids is not None:
        where = " AND (point_id = ANY(%s) OR card_id = ANY(%s))"
        params += [list(point_ids or ()), list(card_ids or ())]
    with conn.cursor(binary=True) as cur:
        cur.execute(
            "SELECT point_id, device_id, seq, time, card_id, kind, meal FROM diner_events"
            " WHERE time >= %s AND time < %s" + where,
            params,
        )
        return [
            Tap(p, d, s, t, c, DinerKind(k), _MEALS.get(m))
            for p, d, s, t, c, k, m in cur
        ]


def load_camera_counts(conn: Conn, month: Month, book: PolicyBook) -> list[CameraCount]:
    """People counted entering each point in each meal window of each day (camera points only)."""
    start, end = month_bounds(month, book)
    windows: list[tuple[date, str, str, str]] = []
    for day in month.days():
        policy = book.in_force(day)
        if policy is None:
            continue
        for meal, w in policy.meal_windows.items():
            windows.append((day, str(meal), w.start.strftime("%H:%M"), w.end.strftime("%H:%M")))
    if not windows:
        return []
    rows = conn.execute(
        "WITH w(day, meal, ws, we) AS (SELECT d::date, m, s::time, e::time"
        "   FROM unnest(%s::date[], %s::text[], %s::text[], %s::text[]) AS u(d, m, s, e))"
        " SELECT c.point_id, w.day, w.meal, sum(c.entries)::bigint"
        " FROM count_events c JOIN w ON (c.time AT TIME ZONE %s)::date = w.day"
        "  AND (c.time AT TIME ZONE %s)::time >= w.ws AND (c.time AT TIME ZONE %s)::time < w.we"
        " WHERE c.time >= %s AND c.time < %s GROUP BY 1, 2, 3",
        ([w[0] for w in windows], [w[1] for w in windows], [w[2] for w in windows], [w[3] for w in windows],
         book.timezone, book.timezone, book.timezone, start, end),
    ).fetchall()
    return [CameraCount(r[0], r[1], Meal(r[2]), int(r[3])) for r in rows]


def load_adjustments(conn: Conn, into: Month) -> list[AdjustmentLine]:
    """Corrections of earlier signed months payable in `into`."""
    out = []
    for r in conn.execute(
        "SELECT origin_month, point_id, device_id, seq, tap_time, elder_id, day, meal, category_before,"
        " category_after, amount_before, amount_after, note FROM settlement_adjustments WHERE into_month = %s"
        " ORDER BY id",
        (into.first_day,),
    ):
        out.append(AdjustmentLine(
            Month.of(r[0]), r[1], (r[1], r[2], r[3], r[4]), r[5], r[6], Meal(r[7]) if r[7] else None,
            Category(r[8]) if r[8] else None, Category(r[9]) if r[9] else None, r[10], r[11], r[12],
        ))
    return out


# --- results --------------------------------------------------------------------------------------


def _ids(points: dict[str, PointPlace], point_id: str) -> tuple[int | None, int | None]:
    p = points.get(point_id)
    return (int(p.township_id), int(p.village_id)) if p else (None, None)


def store_run(conn: Conn, result: Settlement, *, method: str, by: str, at: datetime, seconds: float,
              points: Sequence[PointPlace], content_hash: str | None) -> int:
    """Insert a run with its lines, exclusions, totals and flags; return the run id."""
    county = result.county
    run_id = conn.execute(
        "INSERT INTO settlement_runs (month, method, computed_at, computed_by, seconds, content_hash, taps, meals,"
        " amount, adjustments, excluded, anomalies, policies, inputs)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (result.month.first_day, method, at, by, seconds, content_hash, county.taps, county.meals, county.amount,
         county.adjustments, county.excluded_taps, len(result.anomalies),
         Jsonb([{"version": p.version, "sha256": p.content_hash} for p in result.policies]),
         Jsonb(result.inputs.canonical())),
    ).fetchone()[0]  # type: ignore[index]
    places = {p.point_id: p for p in points}
    with conn.cursor() as cur:
        with cur.copy(
            "COPY settlement_lines (run_id, point_id, device_id, seq, tap_time, card_id, kind, elder_id, day, meal,"
            " category, amount, policy_version, township_id, village_id) FROM STDIN"
        ) as cp:
            for ln in result.lines:
                t = ln.tap
                cp.write_row((run_id, t.point_id, t.device_id, t.seq, t.time, t.card_id, str(t.kind), ln.elder_id,
                              ln.day, str(ln.meal), str(ln.category), ln.amount, ln.policy_version,
                              *_ids(places, t.point_id)))
        with cur.copy(
            "COPY settlement_exclusions (run_id, point_id, device_id, seq, tap_time, card_id, kind, reason, detail,"
            " elder_id, day, meal, township_id, village_id) FROM STDIN"
        ) as cp:
            for ex in result.exclusions:
                t = ex.tap
                cp.write_row((run_id, t.point_id, t.device_id, t.seq, t.time, t.card_id, str(t.kind), str(ex.reason),
                              ex.detail, ex.elder_id, ex.day, str(ex.meal) if ex.meal else None,
                              *_ids(places, t.point_id)))
    store_totals(conn, run_id, result.totals)
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO settlement_anomalies (run_id, kind, point_id, day, meal, card_id, detail, figures)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            [(run_id, str(a.kind), a.point_id, a.day, str(a.meal) if a.meal else None, a.card_id, a.detail,
              Jsonb(dict(a.figures))) for a in result.anomalies],
        )
    return int(run_id)


def store_totals(conn: Conn, run_id: int, totals: Sequence[Total]) -> None:
    rows = []
    for t in totals:
        township = int(t.township_id) if t.township_id else None
        village = int(t.village_id) if t.village_id else None
        if t.level.value == "township":
            township = int(t.unit_id)
        elif t.level.value == "village":
            village = int(t.unit_id)
        rows.append((
            run_id, str(t.level), t.unit_id, t.name, township, village, t.meals, t.amount, t.adjustments, t.taps,
            Jsonb({str(r): n for r, n in t.excluded}),
            Jsonb([{"category": str(c.category), "meals": c.meals, "amount": str(c.amount)} for c in t.by_category]),
        ))
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO settlement_totals (run_id, level, unit_id, name, township_id, village_id, meals, amount,"
            " adjustments, taps, excluded, by_category) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            rows,
        )


def insert_sql_run(conn: Conn, month: Month, *, by: str, at: datetime, seconds: float, taps: int, meals: int,
                   amount: Decimal, adjustments: Decimal, excluded: int, policies: Sequence[SubsidyPolicy]) -> int:
    row = conn.execute(
        "INSERT INTO settlement_runs (month, method, computed_at, computed_by, seconds, taps, meals, amount,"
        " adjustments, excluded, policies) VALUES (%s, 'sql', %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (month.first_day, at, by, seconds, taps, meals, amount, adjustments, excluded,
         Jsonb([{"version": p.version, "sha256": p.content_hash} for p in policies])),
    ).fetchone()
    assert row is not None
    return int(row[0])


def run_row(conn: Conn, run_id: int) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM settlement_runs WHERE id = %s", (run_id,)).fetchone()


def runs_of(conn: Conn, month: Month) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT id, month, method, computed_at, computed_by, seconds, content_hash, taps, meals, amount,"
            " adjustments, excluded, anomalies FROM settlement_runs WHERE month = %s ORDER BY id DESC",
            (month.first_day,),
        ).fetchall()


def latest_run(conn: Conn, month: Month, method: str = "pure") -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT * FROM settlement_runs WHERE month = %s AND method = %s ORDER BY id DESC LIMIT 1",
            (month.first_day, method),
        ).fetchone()


# --- the month's ledger -------------------------------------------------------------------------


def month_state(conn: Conn, month: Month, lock: bool = False) -> dict[str, Any]:
    """The month's ledger row, created open if missing (locked FOR UPDATE when asked)."""
    conn.execute("INSERT INTO settlement_months (month) VALUES (%s) ON CONFLICT DO NOTHING", (month.first_day,))
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT month, state, revision, updated_at FROM settlement_months WHERE month = %s"
            + (" FOR UPDATE" if lock else ""),
            (month.first_day,),
        ).fetchone()
    assert row is not None
    return row


def set_month_state(conn: Conn, month: Month, state: str, revision: int, at: datetime) -> None:
    conn.execute("UPDATE settlement_months SET state = %s, revision = %s, updated_at = %s WHERE month = %s",
                 (state, revision, at, month.first_day))


def insert_snapshot(conn: Conn, month: Month, revision: int, run_id: int, content: str, content_hash: str,
                    by: str, at: datetime) -> None:
    conn.execute(
        "INSERT INTO settlement_snapshots (month, revision, run_id, content, content_hash, signed_by, signed_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (month.first_day, revision, run_id, content, content_hash, by, at),
    )


def snapshot(conn: Conn, month: Month, revision: int | None = None) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        if revision is None:
            return cur.execute(
                "SELECT * FROM settlement_snapshots WHERE month = %s ORDER BY revision DESC LIMIT 1",
                (month.first_day,),
            ).fetchone()
        return cur.execute("SELECT * FROM settlement_snapshots WHERE month = %s AND revision = %s",
                           (month.first_day, revision)).fetchone()


def insert_event(conn: Conn, month: Month, action: str, revision: int, content_hash: str, actor: str,
                 at: datetime, reason: str = "") -> None:
    conn.execute(
        "INSERT INTO settlement_events (month, action, revision, content_hash, actor, at, reason)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (month.first_day, action, revision, content_hash, actor, at, reason),
    )


def events(conn: Conn, month: Month) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT action, revision, content_hash, actor, at, reason FROM settlement_events WHERE month = %s"
            " ORDER BY id",
            (month.first_day,),
        ).fetchall()


def insert_adjustments(conn: Conn, lines: Sequence[AdjustmentLine], *, origin_revision: int, into: Month,
                       by: str, at: datetime) -> int:
    """Store adjustment lines (a line already stored for the same signed revision and tap is skipped)."""
    rows = [
        (a.origin_month.first_day, origin_revision, into.first_day, a.point_id, a.tap_key[1], a.tap_key[2],
         a.tap_key[3], a.elder_id, a.day, str(a.meal) if a.meal else None,
         str(a.category_before) if a.category_before else None,
         str(a.category_after) if a.category_after else None, a.amount_before, a.amount_after, a.note, by, at)
        for a in lines
    ]
    before = conn.execute("SELECT count(*) FROM settlement_adjustments").fetchone()[0]  # type: ignore[index]
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO settlement_adjustments (origin_month, origin_revision, into_month, point_id, device_id, seq,"
            " tap_time, elder_id, day, meal, category_before, category_after, amount_before, amount_after, note,"
            " created_by, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            rows,
        )
    after = conn.execute("SELECT count(*) FROM settlement_adjustments").fetchone()[0]  # type: ignore[index]
    return int(after) - int(before)


def day_range(month: Month) -> tuple[date, date]:
    return month.first_day, month.last_day + timedelta(days=1)


# --- service records, donations, notices ------------------------------------------------------------


def insert_service(conn: Conn, *, day: date, elder_id: str, service: str, note: str | None, by: str,
                   at: datetime) -> dict[str, Any] | None:
    """Record a service for an elder in the elder's village; None if the elder has no village."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "INSERT INTO service_records (day, elder_id, village_id, service, note, recorded_by, recorded_at)"
            " SELECT %s, e.id, e.village_id, %s, %s, %s, %s FROM elders e WHERE e.id = %s AND e.village_id IS NOT NULL"
            " RETURNING id, day, elder_id, village_id, service, note",
            (day, service, note, by, at, elder_id),
        ).fetchone()


def elder_village(conn: Conn, elder_id: str) -> tuple[bool, int | None]:
    row = conn.execute("SELECT village_id FROM elders WHERE id = %s", (elder_id,)).fetchone()
    return (row is not None, row[0] if row else None)


def services(conn: Conn, start: date, end: date, village_ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
    where = "" if village_ids is None else " AND village_id = ANY(%s)"
    params: tuple[Any, ...] = (start, end) if village_ids is None else (start, end, list(village_ids))
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT id, day, elder_id, village_id, service, note FROM service_records WHERE day >= %s AND day < %s"
            + where + " ORDER BY day, id",
            params,
        ).fetchall()


def insert_donation(conn: Conn, fields: dict[str, Any], *, by: str, at: datetime) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "INSERT INTO donations (donor, donor_kind, kind, day, village_id, amount, goods, publish_name, anonymous,"
            " recorded_by, recorded_at) VALUES (%(donor)s, %(donor_kind)s, %(kind)s, %(day)s, %(village_id)s,"
            " %(amount)s, %(goods)s, %(publish_name)s, %(anonymous)s, %(by)s, %(at)s)"
            " RETURNING id, donor, donor_kind, kind, day, village_id, amount, goods, publish_name, anonymous",
            {**fields, "by": by, "at": at},
        ).fetchone()
    assert row is not None
    return row


def donations(conn: Conn, start: date, end: date, village_ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
    where = "" if village_ids is None else " AND village_id = ANY(%s)"
    params: tuple[Any, ...] = (start, end) if village_ids is None else (start, end, list(village_ids))
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT id, donor, donor_kind, kind, day, village_id, amount, goods, publish_name, anonymous"
            " FROM donations WHERE day >= %s AND day < %s" + where + " ORDER BY day, id",
            params,
        ).fetchall()


def villages(conn: Conn) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT v.id, v.name, t.id AS township_id, t.name AS township FROM villages v"
            " JOIN townships t ON t.id = v.township_id ORDER BY t.name, v.name"
        ).fetchall()


def upsert_notice(conn: Conn, month: Month, village_id: int, run_id: int | None, html: str, html_sha256: str,
                  drafted_at: datetime, due_on: date) -> bool:
    """Store a drafted notice; a published one is kept as published (returns False then)."""
    row = conn.execute(
        "INSERT INTO subsidy_notices (month, village_id, run_id, html, html_sha256, drafted_at, due_on)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (month, village_id) DO UPDATE SET run_id = EXCLUDED.run_id, html = EXCLUDED.html,"
        " html_sha256 = EXCLUDED.html_sha256, drafted_at = EXCLUDED.drafted_at, due_on = EXCLUDED.due_on"
        " WHERE subsidy_notices.published_on IS NULL RETURNING 1",
        (month.first_day, village_id, run_id, html, html_sha256, drafted_at, due_on),
    ).fetchone()
    return row is not None


def notices(conn: Conn, month: Month) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT n.month, n.village_id, v.name AS village, t.name AS township, n.drafted_at, n.due_on,"
            " n.published_on, n.published_by, n.html_sha256 FROM subsidy_notices n"
            " JOIN villages v ON v.id = n.village_id JOIN townships t ON t.id = v.township_id"
            " WHERE n.month = %s ORDER BY t.name, v.name",
            (month.first_day,),
        ).fetchall()


def notice_html(conn: Conn, month: Month, village_id: int) -> str | None:
    row = conn.execute("SELECT html FROM subsidy_notices WHERE month = %s AND village_id = %s",
                       (month.first_day, village_id)).fetchone()
    return row[0] if row else None


def publish_notice(conn: Conn, month: Month, village_id: int, on: date, by: str) -> bool:
    row = conn.execute(
        "UPDATE subsidy_notices SET published_on = %s, published_by = %s WHERE month = %s AND village_id = %s"
        " AND published_on IS NULL RETURNING 1",
        (on, by, month.first_day, village_id),
    ).fetchone()
    return row is not None
