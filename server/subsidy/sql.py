"""The settlement as one set-based query, for months too large for the pure path (a province).

It applies the rules of server.subsidy.settlement, in the same order, inside TimescaleDB:

    diner_events of the month ─┬─ placed point?         (_places: meal points with township and village)
                               ├─ binding at tap time   (cards, or the elder's own resident ID card)
                               ├─ lost / replaced card
                               ├─ policy of the day     (_days: the version in force per local date)
                               ├─ meal slot             (_slots: per version, minute of day and tap kind —
                               │                         built by calling SubsidyPolicy.meal_at itself)
                               ├─ moved / deceased, local or long-term resident, age on the day
                               ├─ best category         (_ageband: best band rank per age; _gfull/_gpart:
                               │                         best registered rank, any / special)
                               ├─ repeat                ┐ one window pass per (elder, day) in tap order:
                               └─ daily limit           ┘ running counts per meal slot → the tap is the
                                                          first of its slot, and the slots started so
                                                          far that day are within max_meals_per_day

Tap order is (time, point, device, seq, card) with text compared in the "C" collation, as Python
compares strings. Local days and minutes come from epoch arithmetic with the zone's offset when the
zone keeps one offset all month (no DST change; Asia/Shanghai), else from a zone conversion.

Per-tap outcomes (`outcomes`) serve the equality check against the pure path;
`totals` aggregates them per point in the database and rolls up to village, township and county in
Python (a few thousand rows). The SQL path computes no anomaly flags and no content hash: a month is
signed from the pure run, and the SQL run is for volume and cross-checking.
"""

from __future__ import annotations

import logging
import time as _time
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import psycopg

from firmware_bridge.contract.messages import DinerKind, Meal
from server.subsidy.policy import Category, PolicyBook, SubsidyPolicy
from server.subsidy.records import AdjustmentLine, ExclusionReason, Month, PointPlace, TapKey
from server.subsidy.repository import month_bounds
from server.subsidy.settlement import CATEGORY_ORDER, LEVEL_ORDER, CategoryTotal, Level, Total

logger = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]
ZERO = Decimal("0.00")
CENT = Decimal("0.01")
MAX_AGE = 200
EPOCH_DAY = date(1970, 1, 1)
REASON_ORDER = {r: i for i, r in enumerate(ExclusionReason)}
# Large sorts for the two window passes; set for this transaction only.
WORK_MEM = "512MB"


def _prepare(conn: Conn, month: Month, book: PolicyBook, points: Sequence[PointPlace],
             only_days: Sequence[date] | None = None) -> list[SubsidyPolicy]:
    """Create and fill the parameter tables of this transaction; return the versions in force in the month."""
    conn.execute(f"SET LOCAL work_mem = '{WORK_MEM}'")
    # A merge join with the grants would sort every tap once more; the hash join does not.
    conn.execute("SET LOCAL enable_mergejoin = off")
    for name in ("_places", "_days", "_slots", "_ageband", "_ranks", "_amounts", "_params", "_vspan", "_gfull",
                 "_gpart", "_who"):
        conn.execute(f"DROP TABLE IF EXISTS pg_temp.{name}")
    conn.execute("CREATE TEMP TABLE _places (point_id text PRIMARY KEY, township_id bigint, village_id bigint)"
                 " ON COMMIT DROP")
    conn.execute("CREATE TEMP TABLE _days (dayno int PRIMARY KEY, day date NOT NULL, ymd int NOT NULL,"
                 " version text NOT NULL) ON COMMIT DROP")
    conn.execute("CREATE TEMP TABLE _slots (version text, minute int, kind text, meal text,"
                 " PRIMARY KEY (version, minute, kind)) ON COMMIT DROP")
    conn.execute("CREATE TEMP TABLE _ageband (version text, age int, rank int, PRIMARY KEY (version, age))"
                 " ON COMMIT DROP")
    conn.execute("CREATE TEMP TABLE _ranks (version text, category text, rank int, special boolean,"
                 " PRIMARY KEY (version, category)) ON COMMIT DROP")
    conn.execute("CREATE TEMP TABLE _amounts (version text, category text, meal text, amount numeric(10, 2),"
                 " PRIMARY KEY (version, category, meal)) ON COMMIT DROP")
    conn.execute("CREATE TEMP TABLE _params (version text PRIMARY KEY, max_meals int, special_min_age int,"
                 " allow_non_local boolean, long_term_min_years int) ON COMMIT DROP")
    used: dict[str, SubsidyPolicy] = {}
    days: list[tuple[int, date, int, str]] = []
    for day in only_days or month.days():
        policy = book.in_force(day)
        if policy is not None:
            used[policy.version] = policy
            days.append(((day - EPOCH_DAY).days, day, day.year * 10000 + day.month * 100 + day.day, policy.version))
    slots: list[tuple[str, int, str, str]] = []
    ageband: list[tuple[str, int, int]] = []
    ranks: list[tuple[str, str, int, bool]] = []
    amounts: list[tuple[str, str, str, Decimal]] = []
    params: list[tuple[str, int, int, bool, int]] = []
    for v, p in used.items():
        for minute in range(24 * 60):
            for kind in DinerKind:
                meal = p.meal_at(time(minute // 60, minute % 60), kind)
                if meal is not None:
                    slots.append((v, minute, str(kind), str(meal)))
        for age in range(MAX_AGE + 1):
            held = [b.category for b in p.age_bands if age >= b.min_age]
            if held:
                ageband.append((v, age, min(p.rank(c) for c in held)))
        for c in p.amounts:
            ranks.append((v, str(c), p.rank(c), c in p.special_groups))
            for meal in p.meal_windows:
                amounts.append((v, str(c), str(meal), p.amount(c, meal)))
        params.append((v, p.max_meals_per_day, p.special_min_age, p.allow_non_local, p.long_term_min_years))
    with conn.cursor() as cur:
        for table, rows in (
            ("_places (point_id, township_id, village_id)",
             [(p.point_id, int(p.township_id), int(p.village_id)) for p in points]),
            ("_days (dayno, day, ymd, version)", days),
            ("_slots (version, minute, kind, meal)", slots),
            ("_ageband (version, age, rank)", ageband),
            ("_ranks (version, category, rank, special)", ranks),
            ("_amounts (version, category, meal, amount)", amounts),
            ("_params (version, max_meals, special_min_age, allow_non_local, long_term_min_years)", params),
        ):
            with cur.copy(f"COPY {table} FROM STDIN") as cp:
                for row in rows:
                    cp.write_row(row)
    # Elders with an integer key (cheaper to sort by than the text id) and the birth date as YYYYMMDD.
    conn.execute(
        "CREATE TEMP TABLE _who ON COMMIT DROP AS"
        " SELECT id AS elder_id, (row_number() OVER ())::int AS k, substr(id_number, 7, 8)::int AS birth_ymd,"
        " status, status_date, hukou_local, resident_since FROM elders"
    )
    # Registered categories: grants covering all of a version's days in the (part of the) month are kept
    # per elder and version; the few that start or end inside it are expanded per day.
    conn.execute(
        "CREATE TEMP TABLE _vspan ON COMMIT DROP AS"
        " SELECT version, min(day) AS first_day, max(day) AS last_day FROM _days GROUP BY version"
    )
    conn.execute(
        "CREATE TEMP TABLE _gfull ON COMMIT DROP AS"
        " SELECT g.elder_id, v.version, min(r.rank) AS any_rank, min(r.rank) FILTER (WHERE r.special) AS special_rank"
        " FROM elder_categories g"
        " JOIN _vspan v ON g.valid_from <= v.first_day AND (g.valid_to IS NULL OR g.valid_to >= v.last_day)"
        " JOIN _ranks r ON r.version = v.version AND r.category = g.category"
        " GROUP BY 1, 2"
    )
    conn.execute(
        "CREATE TEMP TABLE _gpart ON COMMIT DROP AS"
        " SELECT g.elder_id, dy.dayno, min(r.rank) AS any_rank, min(r.rank) FILTER (WHERE r.special) AS special_rank"
        " FROM elder_categories g"
        " JOIN _vspan v ON g.valid_from <= v.last_day AND (g.valid_to IS NULL OR g.valid_to >= v.first_day)"
        "  AND NOT (g.valid_from <= v.first_day AND (g.valid_to IS NULL OR g.valid_to >= v.last_day))"
        " JOIN _days dy ON dy.version = v.version AND dy.day >= g.valid_from"
        "  AND (g.valid_to IS NULL OR dy.day <= g.valid_to)"
        " JOIN _ranks r ON r.version = v.version AND r.category = g.category"
        " GROUP BY 1, 2"
    )
    conn.execute("ANALYZE _places; ANALYZE _days; ANALYZE _slots; ANALYZE _ageband; ANALYZE _ranks;"
                 " ANALYZE _amounts; ANALYZE _params; ANALYZE _gfull; ANALYZE _gpart; ANALYZE _who")
    return sorted(used.values(), key=lambda p: p.effective_from)


_TAP_ORDER = 'time, point_id COLLATE "C", device_id COLLATE "C", seq, card_id COLLATE "C"'

_OUTCOMES = """
WITH t AS (
    SELECT d.time, d.point_id, d.device_id, d.seq, d.card_id, d.kind, {local_epoch} AS le
    FROM diner_events d
    WHERE d.time >= %(start)s AND d.time < %(end)s {filter}
), b AS (
    SELECT t.time, t.point_id, t.device_id, t.seq, t.card_id, t.kind,
           (t.le / 86400)::int AS dayno, ((t.le %% 86400) / 60)::int AS minute,
           pl.point_id IS NOT NULL AS placed,
           coalesce(c.elder_id, ie.id) AS elder_id,
           coalesce(c.state <> 'active' AND t.time >= c.state_since, false) AS lost
    FROM t
    LEFT JOIN _places pl ON pl.point_id = t.point_id
    LEFT JOIN cards c ON c.card_id = t.card_id AND c.bound_from <= t.time
                     AND (c.bound_to IS NULL OR t.time < c.bound_to)
    LEFT JOIN elders ie ON ie.id_number = CASE WHEN t.card_id LIKE 'ID:%%' THEN substr(t.card_id, 4) END
), e AS (
    SELECT b.time, b.point_id, b.device_id, b.seq, b.card_id, b.elder_id, el.k, b.dayno, dy.version, sl.meal,
           pa.max_meals,
           CASE WHEN ab.rank IS NOT NULL THEN least(ab.rank, gf.any_rank, gp.any_rank)
                WHEN (dy.ymd - el.birth_ymd) / 10000 >= pa.special_min_age
                THEN least(gf.special_rank, gp.special_rank) END AS best,
           CASE WHEN NOT b.placed THEN 'unknown_point'
                WHEN b.elder_id IS NULL THEN 'unknown_card'
                WHEN b.lost THEN 'card_lost'
                WHEN dy.version IS NULL THEN 'no_policy'
                WHEN sl.meal IS NULL THEN 'outside_window'
                WHEN el.status = 'moved' AND dy.day >= el.status_date THEN 'elder_moved'
                WHEN el.status = 'deceased' AND dy.day >= el.status_date THEN 'elder_deceased'
                WHEN NOT el.hukou_local AND NOT pa.allow_non_local
                     AND (el.resident_since IS NULL OR el.resident_since > dy.day
                          OR (dy.ymd - to_char(el.resident_since, 'YYYYMMDD')::int) / 10000
                             < pa.long_term_min_years) THEN 'not_eligible'
                WHEN ab.rank IS NULL AND ((dy.ymd - el.birth_ymd) / 10000 < pa.special_min_age
                                          OR least(gf.special_rank, gp.special_rank) IS NULL)
                     THEN 'not_eligible'
           END AS reason
    FROM b
    LEFT JOIN _days dy ON dy.dayno = b.dayno
    LEFT JOIN _params pa ON pa.version = dy.version
    LEFT JOIN _slots sl ON sl.version = dy.version AND sl.minute = b.minute AND sl.kind = b.kind
    LEFT JOIN _who el ON el.elder_id = b.elder_id
    LEFT JOIN _ageband ab ON ab.version = dy.version AND ab.age = (dy.ymd - el.birth_ymd) / 10000
    LEFT JOIN _gfull gf ON gf.elder_id = b.elder_id AND gf.version = dy.version
    LEFT JOIN _gpart gp ON gp.elder_id = b.elder_id AND gp.dayno = b.dayno
), q AS (
    SELECT e.point_id, e.device_id, e.seq, e.time, e.card_id, e.elder_id, e.dayno, e.meal, e.version, e.best,
           e.max_meals, e.reason,
           count(*) FILTER (WHERE e.meal = 'breakfast') OVER w AS nb,
           count(*) FILTER (WHERE e.meal = 'lunch') OVER w AS nl,
           count(*) FILTER (WHERE e.meal = 'dinner') OVER w AS nd
    FROM e
    WINDOW w AS (PARTITION BY e.reason IS NULL, e.k, e.dayno
                 ORDER BY {order} ROWS UNBOUNDED PRECEDING)
), o AS (
    -- First tap of its slot, and the slots started that day so far within the daily limit.
    SELECT q.point_id, q.device_id, q.seq, q.time, q.card_id, q.elder_id, q.meal, q.version, q.best,
           CASE WHEN q.reason IS NOT NULL THEN q.reason
                WHEN CASE q.meal WHEN 'breakfast' THEN q.nb WHEN 'lunch' THEN q.nl ELSE q.nd END > 1 THEN 'repeat'
                WHEN (q.nb > 0)::int + (q.nl > 0)::int + (q.nd > 0)::int > q.max_meals THEN 'over_daily_limit'
           END AS outcome
    FROM q
)
"""

assert [m.value for m in Meal] == ["breakfast", "lunch", "dinner"], "the window counts name each meal slot"


def _local_epoch(book: PolicyBook, month: Month) -> str:
    """SQL for a tap's local wall-clock time in epoch seconds: a constant offset when the zone keeps one all
    month (no DST change), which spares a zone conversion per tap; the zone conversion otherwise."""
    offsets = set()
    for day in month.days():
        for hour in (0, 12, 23):
            offset = datetime.combine(day, time(hour), book.tz).utcoffset()
            assert offset is not None
            offsets.add(int(offset.total_seconds()))
    if len(offsets) == 1:
        return f"floor(date_part('epoch', d.time))::bigint + {offsets.pop()}"
    return "floor(date_part('epoch', d.time AT TIME ZONE %(tz)s))::bigint"


def _query(book: PolicyBook, month: Month, tail: str) -> str:
    return _OUTCOMES.format(local_epoch=_local_epoch(book, month), filter="", order=_TAP_ORDER) + tail


_OUTCOME_ROWS = """
SELECT o.point_id, o.device_id, o.seq, o.time, o.outcome, ra.category, coalesce(am.amount, 0.00)
FROM o
LEFT JOIN _ranks ra ON o.outcome IS NULL AND ra.version = o.version AND ra.rank = o.best
LEFT JOIN _amounts am ON am.version = o.version AND am.category = ra.category AND am.meal = o.meal
{where}
"""

_POINT_TOTALS = """
SELECT o.point_id, o.outcome, ra.category, count(*)::bigint, coalesce(sum(am.amount), 0.00)
FROM o
LEFT JOIN _ranks ra ON o.outcome IS NULL AND ra.version = o.version AND ra.rank = o.best
LEFT JOIN _amounts am ON am.version = o.version AND am.category = ra.category AND am.meal = o.meal
GROUP BY 1, 2, 3
"""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the SQL path decided for one tap: reason None means subsidised at `amount` under `category`."""

    reason: ExclusionReason | None
    category: Category | None
    amount: Decimal


def outcomes(conn: Conn, month: Month, book: PolicyBook, points: Sequence[PointPlace],
             only_points: Sequence[str] | None = None, cards: Sequence[str] = ()) -> dict[TapKey, Outcome]:
    """Per-tap outcomes of the month, or of the taps at `only_points`.

    With `only_points`, the query reads only the taps at those points and on `cards`: exact for the
    points' taps when `cards` holds every card of the elders who tapped there (their other taps decide
    repeats and daily limits), which is how a sample of a province month is checked quickly."""
    _prepare(conn, month, book, points)
    start, end = month_bounds(month, book)
    where = "" if only_points is None else "WHERE o.point_id = ANY(%(only)s)"
    taps = "" if only_points is None else "AND (d.point_id = ANY(%(only)s) OR d.card_id = ANY(%(cards)s))"
    query = _OUTCOMES.format(local_epoch=_local_epoch(book, month), filter=taps, order=_TAP_ORDER)
    query += _OUTCOME_ROWS.format(where=where)
    out: dict[TapKey, Outcome] = {}
    with conn.cursor(binary=True) as cur:
        cur.execute(query, {"tz": book.timezone, "start": start, "end": end, "only": list(only_points or ()),
                            "cards": list(cards)})
        for point, device, seq, at, reason, category, amount in cur:
            out[(point, device, seq, at)] = Outcome(
                ExclusionReason(reason) if reason else None, Category(category) if category else None,
                Decimal(amount).quantize(Decimal("0.01")),
            )
    return out


@dataclass(frozen=True, slots=True)
class SqlSettlement:
    """Totals of the SQL path, in the pure path's Total records, and the versions in force."""

    month: Month
    policies: tuple[SubsidyPolicy, ...]
    totals: tuple[Total, ...]

    @property
    def county(self) -> Total:
        return next(t for t in self.totals if t.level is Level.COUNTY)


class _Acc:
    __slots__ = ("adjustments", "by_cat", "excluded", "meals", "taps")

    def __init__(self) -> None:
        self.by_cat: dict[Category, list[Any]] = {}
        self.excluded: dict[ExclusionReason, int] = defaultdict(int)
        self.meals = 0
        self.adjustments = ZERO
        self.taps = 0

    def add(self, reason: ExclusionReason | None, category: Category | None, n: int, amount: Decimal) -> None:
        self.taps += n
        if reason is not None:
            self.excluded[reason] += n
            return
        assert category is not None
        slot = self.by_cat.setdefault(category, [0, ZERO])
        slot[0] += n
        slot[1] += amount
        self.meals += n

    def freeze(self, level: Level, unit: str, name: str, township: str | None, village: str | None) -> Total:
        cats = tuple(CategoryTotal(c, n, a) for c, (n, a) in sorted(self.by_cat.items(),
                                                                    key=lambda kv: CATEGORY_ORDER[kv[0]]))
        amount = sum((c.amount for c in cats), ZERO)
        excluded = tuple(sorted(((r, n) for r, n in self.excluded.items() if n), key=lambda kv: REASON_ORDER[kv[0]]))
        return Total(level, unit, name, township, village, cats, self.meals, amount, self.adjustments, excluded,
                     self.taps)


def roll_up(rows: Sequence[tuple[str, ExclusionReason | None, Category | None, int, Decimal]],
            points: Sequence[PointPlace], adjustments: Sequence[AdjustmentLine] = ()) -> tuple[Total, ...]:
    """Point rows (point, reason, category, taps, amount) summed per point, village, township and county."""
    places = {p.point_id: p for p in points}
    acc: dict[tuple[Level, str], _Acc] = defaultdict(_Acc)

    def units(point_id: str) -> list[tuple[Level, str]]:
        p = places.get(point_id)
        if p is None:
            return [(Level.COUNTY, "county")]
        return [(Level.POINT, p.point_id), (Level.VILLAGE, p.village_id), (Level.TOWNSHIP, p.township_id),
                (Level.COUNTY, "county")]

    for point_id, reason, category, n, amount in rows:
        for unit in units(point_id):
            acc[unit].add(reason, category, n, amount)
    for adj in adjustments:
        for unit in units(adj.point_id):
            acc[unit].adjustments += adj.delta
    acc[(Level.COUNTY, "county")]  # the county total exists even for an empty month
    villages = {p.village_id: p for p in points}
    townships = {p.township_id: p for p in points}
    out = []
    for (level, uid), a in acc.items():
        if level is Level.POINT:
            p = places[uid]
            out.append(a.freeze(level, uid, p.point_name, p.township_id, p.village_id))
        elif level is Level.VILLAGE:
            p = villages[uid]
            out.append(a.freeze(level, uid, p.village_name, p.township_id, None))
        elif level is Level.TOWNSHIP:
            p = townships[uid]
            out.append(a.freeze(level, uid, p.township_name, None, None))
        else:
            out.append(a.freeze(level, uid, "", None, None))
    out.sort(key=lambda t: (LEVEL_ORDER[t.level], t.township_id or "", t.village_id or "", t.unit_id))
    return tuple(out)


def _bounds(days: Sequence[date], book: PolicyBook) -> tuple[datetime, datetime]:
    start = datetime.combine(days[0], time(), book.tz)
    end = datetime.combine(days[-1] + timedelta(days=1), time(), book.tz)
    return start, end


PointRow = tuple[str, ExclusionReason | None, Category | None, int, Decimal]


def _point_rows(conn: Conn, month: Month, book: PolicyBook, points: Sequence[PointPlace],
                days: Sequence[date]) -> list[PointRow]:
    """Per (point, outcome, category): taps and amount, over the given consecutive days of the month."""
    _prepare(conn, month, book, points, days)
    start, end = _bounds(days, book)
    rows: list[PointRow] = []
    with conn.cursor(binary=True) as cur:
        cur.execute(_query(book, month, _POINT_TOTALS), {"tz": book.timezone, "start": start, "end": end})
        for point, reason, category, n, amount in cur:
            rows.append((point, ExclusionReason(reason) if reason else None,
                         Category(category) if category else None, int(n), Decimal(amount).quantize(CENT)))
    return rows


def _versions(month: Month, book: PolicyBook) -> tuple[SubsidyPolicy, ...]:
    found = {p.version: p for p in (book.in_force(d) for d in month.days()) if p is not None}
    return tuple(sorted(found.values(), key=lambda p: p.effective_from))


def settle_sql(conn: Conn, month: Month, book: PolicyBook, points: Sequence[PointPlace],
               adjustments: Sequence[AdjustmentLine] = ()) -> SqlSettlement:
    """Settle the month in the database on this connection; return its totals at every level."""
    began = _time.perf_counter()
    rows = _point_rows(conn, month, book, points, month.days())
    totals = roll_up(rows, points, adjustments)
    logger.info("SQL settlement of %s: %d point rows in %.1f s", month, len(rows), _time.perf_counter() - began)
    return SqlSettlement(month, _versions(month, book), totals)


def settle_sql_parallel(dsn: str, month: Month, book: PolicyBook, points: Sequence[PointPlace],
                        adjustments: Sequence[AdjustmentLine] = (), workers: int = 2) -> SqlSettlement:
    """settle_sql split by local days over `workers` connections (one server process each).

    Exact, because every rule that links taps (repeat, daily limit) works within one local day."""
    began = _time.perf_counter()
    all_days = month.days()
    n = max(1, min(workers, len(all_days)))
    chunks = [all_days[i * len(all_days) // n:(i + 1) * len(all_days) // n] for i in range(n)]

    def work(days: list[date]) -> list[PointRow]:
        with psycopg.connect(dsn) as conn:
            try:
                return _point_rows(conn, month, book, points, days)
            finally:
                conn.rollback()

    merged: dict[tuple[str, ExclusionReason | None, Category | None], list[Any]] = {}
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="settle-sql") as pool:
        for part in pool.map(work, chunks):
            for point, reason, category, count, amount in part:
                slot = merged.setdefault((point, reason, category), [0, ZERO])
                slot[0] += count
                slot[1] += amount
    rows = [(p, r, c, v[0], v[1]) for (p, r, c), v in merged.items()]
    totals = roll_up(rows, points, adjustments)
    logger.info("SQL settlement of %s over %d connections: %d point rows in %.1f s", month, n, len(rows),
                _time.perf_counter() - began)
    return SqlSettlement(month, _versions(month, book), totals)
