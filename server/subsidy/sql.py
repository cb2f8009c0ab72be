"""The settlement as one set-based query, for months too large for the pure path (a province).

It applies the rules of server.subsidy.settlement, in the same order, inside TimescaleDB:

    diner_events of the local days ─┬─ placed point?        (an array of the placed points, hashed)
                                    ├─ binding at tap time  ┐ _cx: one row per card binding and per resident
                                    ├─ lost / replaced card │ ID card with its elder: an integer key, birth
                                    ├─ moved / deceased,    │ date as YYYYMMDD, status and its day, residence,
                                    │  local or long-term   │ best registered ranks per policy version, and per
                                    │  resident             ┘ day for categories starting or ending inside it
                                    ├─ policy of the day    ┐ constant integer arrays built by calling the
                                    ├─ meal slot            │ policy's own methods (meal_at, rank) in Python,
                                    ├─ age band, best rank  ┘ indexed per tap: no join
                                    ├─ repeat               ┐ one window pass over the taps still eligible,
                                    └─ daily limit          ┘ per (elder, day) in tap order: the meal slots
                                                              of the elder's earlier eligible taps that day →
                                                              the tap is the first of its slot, and the slots
                                                              started so far are within max_meals_per_day

The only join per tap is the card binding (a hash join on card_id); everything else is arithmetic and
array lookups. The excluded taps are counted as they are; only the eligible ones are sorted.
Tap order is (time, point, device, seq, card) with text compared in the "C" collation, as Python
compares strings; the window sorts by (elder key, day) as one bigint first. Local days and
minutes come from epoch arithmetic with the zone's offset when the zone keeps one offset all month (no
DST change; Asia/Shanghai), else from a zone conversion. Outcomes leave the database as small integer
codes with the policy version index, rank and meal slot; categories and amounts are looked up in
Python from the same SubsidyPolicy objects the pure path uses (no money is summed in SQL).

Per-tap outcomes (`outcomes`) serve the equality check against the pure path; `totals` counts them
per (point, outcome, version, rank, slot) in the database and rolls up to point, village, township
and county in Python (a few thousand rows). The SQL path computes no anomaly flags and no content
hash: a month is signed from the pure run, and the SQL run is for volume and cross-checking.
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
from server.subsidy.repository import ID_CARD_BOUND_FROM, ID_CARD_PREFIX
from server.subsidy.settlement import CATEGORY_ORDER, LEVEL_ORDER, CategoryTotal, Level, Total

logger = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]
ZERO = Decimal("0.00")
CENT = Decimal("0.01")
MAX_AGE = 200
EPOCH_DAY = date(1970, 1, 1)
MINUTES = 24 * 60
# A registered rank of "none" in the per-day arrays (ranks are positions in a ranking of ten).
NO_RANK = 99
REASON_ORDER = {r: i for i, r in enumerate(ExclusionReason)}
# Outcome codes in SQL: 0 subsidised, i + 1 the i-th ExclusionReason.
REASONS: tuple[ExclusionReason, ...] = tuple(ExclusionReason)
_CODE = {r: i + 1 for i, r in enumerate(REASONS)}
# Meal slot codes in SQL: 0 none, i + 1 the i-th Meal.
MEALS: tuple[Meal, ...] = tuple(Meal)
KINDS: tuple[DinerKind, ...] = tuple(DinerKind)
# The taps are materialized and the eligible ones sorted once per query; in memory, not spilled to disk.
WORK_MEM = "1GB"
# Taps per query: the days are read in groups this large at most (about 0.4 GB materialized, less sorted;
# a whole province connection's 9 M taps in one query spilled 0.8 GB to disk).
MAX_TAPS_PER_QUERY = 3_000_000
# JIT compilation of the query's expressions paid off from about this many taps per query (a province's
# groups of days in bench.settlement); below, at a county's size, it gained nothing.
JIT_MIN_TAPS = 1_000_000

assert len(Meal) <= 3, "meal slot codes are bits 1..3 of a small int and index slots_started"


@dataclass(frozen=True, slots=True)
class _Versions:
    """The policy versions in force on the days settled, in effective order (index = `vi` in SQL)."""

    policies: tuple[SubsidyPolicy, ...]

    def amount(self, vi: int, rank: int, meal: int) -> tuple[Category, Decimal]:
        policy = self.policies[vi]
        category = policy.category_ranking[rank]
        return category, policy.amount(category, MEALS[meal - 1])


def _parameters(month: Month, book: PolicyBook, points: Sequence[PointPlace],
                days: Sequence[date]) -> tuple[_Versions, dict[str, Any]]:
    """The versions in force on `days` and the constants the query reads, most as arrays indexed per tap.

    placed             the meal points placed in a township and village (others: unknown_point)
    day_vi / day_ymd   by local day number - first day of the month: the version index (-1: no policy), YYYYMMDD
    v_*                by version index: max meals, special-group minimum age, non-locals allowed, years,
                       and the first and last day settled under it
    slot               by (version, tap kind, minute of the day): meal slot code, 0 outside every window
    band               by (version, age -1..MAX_AGE): best rank of the age bands reached, -1 none
    slots_started      by a bit mask of meal slot codes: how many slots it holds
    r_*                the priced categories of each version: version, category, rank, special group"""
    by_version: dict[str, list[date]] = {}
    for day in days:
        policy = book.in_force(day)
        if policy is not None:
            by_version.setdefault(policy.version, []).append(day)
    versions = tuple(sorted((p for p in book.policies if p.version in by_version), key=lambda p: p.effective_from))
    index = {p.version: i for i, p in enumerate(versions)}
    day_vi: list[int] = []
    day_ymd: list[int] = []
    for day in month.days():
        policy = book.in_force(day) if day in days else None
        day_vi.append(index[policy.version] if policy is not None else -1)
        day_ymd.append(day.year * 10000 + day.month * 100 + day.day)
    slot: list[int] = []
    band: list[int] = []
    for p in versions:
        for kind in KINDS:
            for minute in range(MINUTES):
                meal = p.meal_at(time(minute // 60, minute % 60), kind)
                slot.append(0 if meal is None else MEALS.index(meal) + 1)
        band.append(-1)  # a birth date after the day
        for age in range(MAX_AGE + 1):
            held = [p.rank(b.category) for b in p.age_bands if age >= b.min_age]
            band.append(min(held) if held else -1)
    ranks = [(vi, str(c), p.rank(c), c in p.special_groups) for vi, p in enumerate(versions) for c in p.amounts]
    spans = [by_version[p.version] for p in versions]
    params: dict[str, Any] = {
        "day0": (month.first_day - EPOCH_DAY).days,
        "ndays": len(month.days()),
        "placed": [p.point_id for p in points],
        "day_vi": day_vi,
        "day_ymd": day_ymd,
        "v_max": [p.max_meals_per_day for p in versions],
        "v_special_age": [p.special_min_age for p in versions],
        "v_non_local": [int(p.allow_non_local) for p in versions],
        "v_years": [p.long_term_min_years for p in versions],
        "v_first": [s[0] for s in spans],
        "v_last": [s[-1] for s in spans],
        "slot": slot,
        "band": band,
        "slots_started": [bin(mask).count("1") for mask in range(16)],
        "r_vi": [r[0] for r in ranks],
        "r_category": [r[1] for r in ranks],
        "r_rank": [r[2] for r in ranks],
        "r_special": [r[3] for r in ranks],
        "moved": _CODE[ExclusionReason.ELDER_MOVED],
        "deceased": _CODE[ExclusionReason.ELDER_DECEASED],
        "id_prefix": ID_CARD_PREFIX,
        "id_from": ID_CARD_BOUND_FROM,
    }
    return _Versions(versions), params


def _partial_grants(conn: Conn, month: Month, versions: _Versions, firsts: Sequence[date], lasts: Sequence[date],
                    days: Sequence[date]) -> dict[str, Any]:
    """Registered categories that start or end inside a version's settled days, as per-day best ranks.

    Returns p_ids (elder ids) and p_any / p_special: for each of those elders in turn, one rank per day
    of the month (NO_RANK: none that day), the best of any such category and of the special groups among
    them. Categories covering all of a version's days are left to the query (gfull). A few rows even for
    a province: most registrations span whole months."""
    out: dict[str, Any] = {"p_ids": [], "p_any": [], "p_special": []}
    if not firsts:
        return out
    where = " OR ".join("(valid_from <= %s AND (valid_to IS NULL OR valid_to >= %s)"
                        " AND (valid_from > %s OR valid_to < %s))" for _ in firsts)
    args: list[date] = []
    for first, last in zip(firsts, lasts, strict=True):
        args += [last, first, first, last]
    ranks = [{str(c): (p.rank(c), c in p.special_groups) for c in p.amounts} for p in versions.policies]
    ndays = len(month.days())
    spans = list(zip(firsts, lasts, strict=True))
    # The settled days of each version (a version's days are consecutive), by index in the month.
    version_days = [[((d - month.first_day).days, d) for d in days if first <= d <= last] for first, last in spans]
    grants: dict[str, tuple[list[int], list[int]]] = {}
    for elder_id, category, start, end in conn.execute(
            "SELECT elder_id, category, valid_from, valid_to FROM elder_categories WHERE " + where, args):
        for vi, (first, last) in enumerate(spans):
            if start <= first and (end is None or end >= last):
                continue  # covers the version's days: gfull
            if start > last or (end is not None and end < first):
                continue
            held = ranks[vi].get(category)
            if held is None:
                continue
            rank, special = held
            best_any, best_special = grants.setdefault(elder_id, ([NO_RANK] * ndays, [NO_RANK] * ndays))
            for i, day in version_days[vi]:
                if start <= day and (end is None or day <= end):
                    best_any[i] = min(best_any[i], rank)
                    if special:
                        best_special[i] = min(best_special[i], rank)
    for elder_id, (best_any, best_special) in grants.items():
        out["p_ids"].append(elder_id)
        out["p_any"] += best_any
        out["p_special"] += best_special
    return out


def _prepare(conn: Conn, month: Month, book: PolicyBook, points: Sequence[PointPlace],
             days: Sequence[date]) -> tuple[_Versions, dict[str, Any]]:
    """Settings and the _cx table for this transaction; return the versions and the query's parameters."""
    versions, params = _parameters(month, book, points, days)
    conn.execute(f"SET LOCAL work_mem = '{WORK_MEM}'")
    # A merge join would sort every tap once more; the hash joins do not.
    conn.execute("SET LOCAL enable_mergejoin = off")
    # JIT only for large groups of days (_point_rows, JIT_MIN_TAPS).
    conn.execute("SET LOCAL jit = off")
    conn.execute("DROP TABLE IF EXISTS pg_temp._cx")
    params.update(_partial_grants(conn, month, versions, params["v_first"], params["v_last"], days))
    n = len(versions.policies)
    w_cols = "".join(f", g.a{vi}, g.s{vi}" for vi in range(n))
    conn.execute(_REGISTRY.format(
        gfull_cols="".join(f", min(rk.rank) FILTER (WHERE rk.vi = {vi}) AS a{vi},"
                           f" min(rk.rank) FILTER (WHERE rk.vi = {vi} AND rk.special) AS s{vi}" for vi in range(n)),
        w_cols=w_cols,
        elder_cols="w.k, w.birth_ymd, w.gone, w.gone_day, w.hukou_local, w.res_ymd, w.p_any, w.p_special"
                   + w_cols.replace("g.", "w."),
        none=NO_RANK), params, prepare=False)
    conn.execute("ANALYZE _cx (card_id)")
    return versions, params


# The registry side, as one temporary table _cx made by one statement:
#   rk      the priced categories per version
#   gfull   per elder and version, the best registered ranks (any, special) of categories covering all of
#           the version's days
#   p       per elder, those of categories that start or end inside them, per day (see _partial_grants)
#   w       elders with an integer key (the window sorts by it), birth date as YYYYMMDD, status code and day,
#           residence, and their grants
#   cx      every card binding and every resident ID card ("ID:<number>", bound at any time), with its elder
# The table is analyzed on card_id: without a distinct count the planner would rather hash every tap.
_REGISTRY = """
CREATE TEMP TABLE _cx ON COMMIT DROP AS
WITH rk AS (
    SELECT * FROM unnest(%(r_vi)s::int[], %(r_category)s::text[], %(r_rank)s::int[], %(r_special)s::bool[])
                  AS r (vi, category, rank, special)
), vs AS (
    SELECT * FROM unnest(%(v_first)s::date[], %(v_last)s::date[]) WITH ORDINALITY AS v (first_day, last_day, n)
), gfull AS (
    SELECT g.elder_id {gfull_cols}
    FROM elder_categories g
    JOIN vs ON g.valid_from <= vs.first_day AND (g.valid_to IS NULL OR g.valid_to >= vs.last_day)
    JOIN rk ON rk.vi = vs.n - 1 AND rk.category = g.category
    GROUP BY 1
), p AS (
    SELECT u.elder_id, (%(p_any)s::int[])[(u.i - 1) * %(ndays)s + 1:u.i * %(ndays)s] AS p_any,
           (%(p_special)s::int[])[(u.i - 1) * %(ndays)s + 1:u.i * %(ndays)s] AS p_special
    FROM unnest(%(p_ids)s::text[]) WITH ORDINALITY AS u (elder_id, i)
), w AS MATERIALIZED (
    SELECT e.id, e.id_number, (row_number() OVER ())::int AS k, substr(e.id_number, 7, 8)::int AS birth_ymd,
           CASE WHEN e.status_date IS NULL THEN 0 WHEN e.status = 'moved' THEN %(moved)s
                WHEN e.status = 'deceased' THEN %(deceased)s ELSE 0 END AS gone,
           e.status_date - DATE '1970-01-01' AS gone_day, e.hukou_local,
           to_char(e.resident_since, 'YYYYMMDD')::int AS res_ymd, p.p_any, p.p_special {w_cols}
    FROM elders e LEFT JOIN gfull g ON g.elder_id = e.id LEFT JOIN p ON p.elder_id = e.id
), cx AS (
    SELECT c.card_id, c.bound_from, c.bound_to, CASE WHEN c.state <> 'active' THEN c.state_since END AS lost_since,
           {elder_cols}
    FROM cards c JOIN w ON w.id = c.elder_id
    UNION ALL
    SELECT %(id_prefix)s || w.id_number, %(id_from)s::timestamptz, NULL::timestamptz, NULL::timestamptz, {elder_cols}
    FROM w
)
SELECT * FROM cx"""


# Levels are kept apart (OFFSET 0) where a computed column is used several times, so that it is computed
# once per tap: t (local epoch seconds), b (binding, day, version), f (slot, best rank), then e (reason)
# is materialized once and read twice: the excluded taps are counted as they are, and only the taps
# still eligible go through the window pass (sorted by elder and day).
_OUTCOMES = """
WITH b AS (
    SELECT t.time, t.point_id, t.device_id, t.seq, t.card_id, t.kind,
           (t.le / 86400)::int AS dayno, ((t.le %% 86400) / 60)::int AS minute,
           (%(day_vi)s::int[])[(t.le / 86400)::int - %(day0)s + 1] AS vi,
           (%(day_ymd)s::int[])[(t.le / 86400)::int - %(day0)s + 1] AS ymd,
           t.point_id = ANY(%(placed)s::text[]) AS placed, coalesce(t.time >= c.lost_since, false) AS lost,
           c.k, c.birth_ymd, c.gone, c.gone_day, c.hukou_local, c.res_ymd, c.p_any, c.p_special {grant_cols}
    FROM (SELECT d.time, d.point_id, d.device_id, d.seq, d.card_id, d.kind, {local_epoch} AS le
          FROM diner_events d
          WHERE d.time >= %(start)s AND d.time < %(end)s {filter}
          OFFSET 0) t
    LEFT JOIN _cx c ON c.card_id = t.card_id AND c.bound_from <= t.time AND (c.bound_to IS NULL OR t.time < c.bound_to)
    OFFSET 0
), f AS (
    SELECT b.time, b.point_id, b.device_id, b.seq, b.card_id, b.k, b.dayno, b.vi, b.ymd, b.placed, b.lost,
           b.gone, b.gone_day, b.hukou_local, b.res_ymd,
           CASE WHEN b.vi >= 0 THEN (%(slot)s::int[])[b.vi * {slots_per_version} + {kind_code} * 1440 + b.minute + 1]
           END AS meal,
           CASE WHEN b.vi < 0 OR b.k IS NULL THEN NULL
                WHEN (%(band)s::int[])[b.vi * {bands_per_version} + least(greatest((b.ymd - b.birth_ymd) / 10000, -1),
                                                                           {max_age}) + 2] >= 0
                THEN least((%(band)s::int[])[b.vi * {bands_per_version}
                                             + least(greatest((b.ymd - b.birth_ymd) / 10000, -1), {max_age}) + 2],
                           {g_any}, nullif(b.p_any[b.dayno - %(day0)s + 1], {none}))
                WHEN (b.ymd - b.birth_ymd) / 10000 >= (%(v_special_age)s::int[])[b.vi + 1]
                THEN least({g_special}, nullif(b.p_special[b.dayno - %(day0)s + 1], {none}))
           END AS best
    FROM b
    OFFSET 0
), e AS MATERIALIZED (
    SELECT f.time, f.point_id, f.device_id, f.seq, f.card_id, (f.k::bigint << 32) | f.dayno AS elder_day,
           f.vi, f.meal, f.best,
           CASE WHEN NOT f.placed THEN {unknown_point}
                WHEN f.k IS NULL THEN {unknown_card}
                WHEN f.lost THEN {card_lost}
                WHEN f.vi < 0 THEN {no_policy}
                WHEN coalesce(f.meal, 0) = 0 THEN {outside_window}
                WHEN f.gone > 0 AND f.dayno >= f.gone_day THEN f.gone
                WHEN NOT f.hukou_local AND (%(v_non_local)s::int[])[f.vi + 1] = 0
                     AND (f.res_ymd IS NULL OR f.res_ymd > f.ymd
                          OR (f.ymd - f.res_ymd) / 10000 < (%(v_years)s::int[])[f.vi + 1]) THEN {not_eligible}
                WHEN f.best IS NULL THEN {not_eligible}
           END AS reason
    FROM f
), q AS (
    -- The meal slots (bits 1..3) of the elder's eligible taps earlier that day.
    SELECT e.point_id, e.device_id, e.seq, e.time, e.vi, e.meal, e.best,
           coalesce(bit_or(1 << e.meal) OVER w, 0) AS earlier
    FROM e
    WHERE e.reason IS NULL
    WINDOW w AS (PARTITION BY e.elder_day
                 ORDER BY e.time, e.point_id COLLATE "C", e.device_id COLLATE "C", e.seq, e.card_id COLLATE "C"
                 ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
), o AS (
    -- A repeat if its slot was started earlier; over the limit if the slots started so far, with its own,
    -- are more than the day's maximum.
    SELECT q.point_id, q.device_id, q.seq, q.time, q.vi, q.meal, q.best,
           CASE WHEN q.earlier & (1 << q.meal) <> 0 THEN {repeat}
                WHEN (%(slots_started)s::int[])[(q.earlier | (1 << q.meal)) + 1] > (%(v_max)s::int[])[q.vi + 1]
                THEN {over_daily_limit}
                ELSE 0
           END AS outcome
    FROM q
    UNION ALL
    SELECT e.point_id, e.device_id, e.seq, e.time, e.vi, e.meal, e.best, e.reason
    FROM e
    WHERE e.reason IS NOT NULL
)
"""


_OUTCOME_ROWS = """
SELECT o.point_id, o.device_id, o.seq, o.time, o.outcome, o.vi, o.best, o.meal FROM o {where}
"""

# Subsidised taps are counted per version, rank and slot (their amount); excluded ones per reason.
_POINT_COUNTS = """
SELECT o.point_id, o.outcome, CASE WHEN o.outcome = 0 THEN o.vi END, CASE WHEN o.outcome = 0 THEN o.best END,
       CASE WHEN o.outcome = 0 THEN o.meal END, count(*)
FROM o
GROUP BY 1, 2, 3, 4, 5
"""


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


def _query(book: PolicyBook, month: Month, versions: _Versions, tail: str, filter: str = "") -> str:
    """The outcome query for these versions, followed by `tail` (a select from `o`)."""
    n = len(versions.policies)

    def per_version(column: str) -> str:
        if n == 0:
            return "NULL::int"
        return "CASE b.vi " + " ".join(f"WHEN {vi} THEN b.{column}{vi}" for vi in range(n)) + " END"

    kind_code = "CASE b.kind " + " ".join(f"WHEN '{k}' THEN {i}" for i, k in enumerate(KINDS)) + " END"
    codes = {r.value: _CODE[r] for r in REASONS}
    return _OUTCOMES.format(
        local_epoch=_local_epoch(book, month), filter=filter,
        grant_cols="".join(f", c.a{vi}, c.s{vi}" for vi in range(n)),
        slots_per_version=len(KINDS) * MINUTES, kind_code=kind_code,
        bands_per_version=MAX_AGE + 2, max_age=MAX_AGE, none=NO_RANK,
        g_any=per_version("a"), g_special=per_version("s"),
        **codes,
    ) + tail


def _run(conn: Conn, month: Month, book: PolicyBook, points: Sequence[PointPlace], days: Sequence[date],
         tail: str, filter: str = "", extra: dict[str, Any] | None = None) -> tuple[_Versions, list[tuple[Any, ...]]]:
    versions, params = _prepare(conn, month, book, points, days)
    start, end = _bounds(days, book)
    params.update({"tz": book.timezone, "start": start, "end": end, **(extra or {})})
    with conn.cursor(binary=True) as cur:
        # Never as a prepared statement: a generic plan would not see the arrays as constants (the placed
        # points would be searched one by one instead of hashed).
        cur.execute(_query(book, month, versions, tail, filter), params, prepare=False)
        return versions, cur.fetchall()


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
    where = "" if only_points is None else "WHERE o.point_id = ANY(%(only)s)"
    taps = "" if only_points is None else "AND (d.point_id = ANY(%(only)s) OR d.card_id = ANY(%(cards)s))"
    versions, rows = _run(conn, month, book, points, month.days(), _OUTCOME_ROWS.format(where=where), taps,
                          {"only": list(only_points or ()), "cards": list(cards)})
    out: dict[TapKey, Outcome] = {}
    for point, device, seq, at, outcome, vi, best, meal in rows:
        if outcome:
            out[(point, device, seq, at)] = Outcome(REASONS[outcome - 1], None, ZERO)
        else:
            category, amount = versions.amount(vi, best, meal)
            out[(point, device, seq, at)] = Outcome(None, category, amount)
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


def _estimate(conn: Conn, days: Sequence[date], book: PolicyBook) -> int:
    """The planner's estimate of the taps on `days` (from the statistics; no scan)."""
    start, end = _bounds(days, book)
    plan = conn.execute("EXPLAIN (FORMAT JSON) SELECT 1 FROM diner_events WHERE time >= %s AND time < %s",
                        (start, end)).fetchone()
    return int(plan[0][0]["Plan"]["Plan Rows"]) if plan else 0


def _day_groups(conn: Conn, days: Sequence[date], book: PolicyBook) -> list[Sequence[date]]:
    """`days` in consecutive groups of about MAX_TAPS_PER_QUERY taps at most, by the planner's estimate."""
    per_group = max(1, MAX_TAPS_PER_QUERY * len(days) // max(1, _estimate(conn, days, book)))
    return [days[i:i + per_group] for i in range(0, len(days), per_group)]


def _point_rows(conn: Conn, month: Month, book: PolicyBook, points: Sequence[PointPlace],
                days: Sequence[date]) -> list[PointRow]:
    """Per (point, outcome, category): taps and amount, over the given consecutive days of the month.

    One _cx for all the days; the taps are read in groups of days small enough to be sorted in memory
    (exact: the rules that link taps work within one local day, and the registered categories of a day
    are the same whichever span of days around it _cx was made for)."""
    versions, params = _prepare(conn, month, book, points, days)
    query = _query(book, month, versions, _POINT_COUNTS)
    groups = _day_groups(conn, days, book)
    if _estimate(conn, groups[0], book) >= JIT_MIN_TAPS:
        conn.execute("SET LOCAL jit = on")
    counted: list[tuple[Any, ...]] = []
    for group in groups:
        start, end = _bounds(group, book)
        params.update({"tz": book.timezone, "start": start, "end": end})
        with conn.cursor(binary=True) as cur:
            cur.execute(query, params, prepare=False)
            counted += cur.fetchall()
    merged: dict[tuple[str, ExclusionReason | None, Category | None], list[Any]] = {}
    for point, outcome, vi, best, meal, n in counted:
        if outcome:
            key: tuple[str, ExclusionReason | None, Category | None] = (point, REASONS[outcome - 1], None)
            amount = ZERO
        else:
            category, each = versions.amount(vi, best, meal)
            key, amount = (point, None, category), each * n
        slot = merged.setdefault(key, [0, ZERO])
        slot[0] += int(n)
        slot[1] += amount
    return [(p, r, c, v[0], v[1]) for (p, r, c), v in merged.items()]


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
