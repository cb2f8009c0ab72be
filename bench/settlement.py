"""Benchmark the monthly settlement: a province month through the SQL path and a county month, both
checked against the pure settle().

    python -m bench.settlement                 # 10,000 points x 30 days x 60 diners (~18 M taps) + county
    python -m bench.settlement --points 500    # a quick run

Two fresh databases are created and migrated, one for the province and one for a 300-point county
(a county deployment has its own); elders, categories, cards and meal points are loaded with COPY,
then the diner events (June 2024 for the province, July 2024 for the county) also with COPY, and
both are vacuumed and analyzed (untimed), as a month's rows are by autovacuum before the month closes.
Each elder eats lunch at their point most days; the data hold repeats (double taps),
unknown cards, taps outside the meal window, lost cards, deaths and moves mid-month, non-locals,
under-70s with and without special categories, and the policy change of 15 June (dinner added).

Timed: `province_seconds` = server.subsidy.sql.settle_sql_parallel over the province month (all
totals at every level, split by local days over --workers connections, one per core); `county_seconds`
= the same day-split settlement of the county month over --workers connections, and
`county_one_connection_seconds` = settle_sql on a single connection (both after one warm-up run, as on
a server that has run before; the median of --repeat runs, each run listed in `*_runs`). The day-split
is exact: repeats and daily limits never cross a local day. The targets (`*_target_seconds`) are
issue 6's. Checked: `matches_reference` is true
when (a) for a sample of province points every tap's outcome from the SQL path equals the pure
settle() over those points' taps (and every tap of their elders anywhere), and their point totals
equal, and (b) the county month's totals at every level from SQL equal the pure settle()'s.
Progress goes to stderr; the last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import statistics
import sys
import time
import uuid
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from bench._db import drop_database
from firmware_bridge.residentid import check_char
from server.db.migrate import migrate
from server.subsidy import repository
from server.subsidy.policy import PolicyBook, parse_policies
from server.subsidy.records import Month
from server.subsidy.settlement import Level, settle
from server.subsidy.sql import outcomes, settle_sql, settle_sql_parallel

TZ = ZoneInfo("Asia/Shanghai")
PROVINCE = Month(2024, 6)
COUNTY = Month(2024, 7)
POLICY = """
county: 基准省
timezone: Asia/Shanghai
policies:
  - version: v1
    effective_from: 2024-01-01
    age_bands: [{min_age: 70, category: general}, {min_age: 80, category: advanced_age}]
    meal_windows:
      lunch: {start: "10:30", end: "13:30"}
    amounts:
      tekun: {lunch: "8.00"}
      dibao: {lunch: "6.00"}
      severe_disability: {lunch: "6.00"}
      disabled: {lunch: "6.00"}
      dibao_edge: {lunch: "5.00"}
      family_planning: {lunch: "5.00"}
      youfu: {lunch: "5.00"}
      advanced_age: {lunch: "4.00"}
      empty_nest: {lunch: "3.50"}
      general: {lunch: "3.00"}
  - version: v2
    effective_from: 2024-06-15
    age_bands: [{min_age: 70, category: general}, {min_age: 80, category: advanced_age}]
    max_meals_per_day: 2
    meal_windows:
      lunch: {start: "10:30", end: "13:30"}
      dinner: {start: "16:30", end: "19:00"}
    amounts:
      tekun: {lunch: "10.00", dinner: "9.00"}
      dibao: {lunch: "7.00", dinner: "6.00"}
      severe_disability: {lunch: "7.00", dinner: "6.00"}
      disabled: {lunch: "7.00", dinner: "6.00"}
      dibao_edge: {lunch: "6.00", dinner: "5.00"}
      family_planning: {lunch: "6.00", dinner: "5.00"}
      youfu: {lunch: "6.00", dinner: "5.00"}
      advanced_age: {lunch: "5.00", dinner: "4.00"}
      empty_nest: {lunch: "4.50", dinner: "3.50"}
      general: {lunch: "4.00", dinner: "3.00"}
"""
CATEGORIES = ["tekun", "dibao", "dibao_edge", "disabled", "severe_disability", "family_planning", "youfu",
              "empty_nest"]


def log(msg: str) -> None:
    print(f"[bench.settlement {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _copy(conn: psycopg.Connection[Any], statement: str, text: io.StringIO) -> None:
    with conn.cursor() as cur, cur.copy(statement) as cp:
        cp.write(text.getvalue().encode())


class Loader:
    """Writes one synthetic population (points, elders, cards) and its month of taps with COPY."""

    def __init__(self, conn: psycopg.Connection[Any], rng: random.Random) -> None:
        self.conn = conn
        self.rng = rng
        self.next_elder = 0

    def population(self, prefix: str, points: int, diners: int, month: Month) -> list[tuple[str, list[str]]]:
        """Points with their elders' card ids; every elder's registry row, categories and card."""
        rng = self.rng
        pts, eld, cats, cards = io.StringIO(), io.StringIO(), io.StringIO(), io.StringIO()
        out: list[tuple[str, list[str]]] = []
        first = month.first_day
        for p in range(points):
            township, village = p // 100, p // 10
            pid = f"{prefix}{p:05d}"
            pts.write(f"{pid}\t{prefix}助餐点{p}\t{prefix}镇{township}\t{prefix}村{village}\n")
            point_cards = []
            for _ in range(diners):
                i = self.next_elder
                self.next_elder += 1
                age = rng.choice([62, 66, 68, 70, 72, 75, 78, 81, 85, 90])
                born = date(first.year - age, 1, 1) + timedelta(days=rng.randint(0, 364))
                first17 = f"{110000 + i // 1000:06d}{born:%Y%m%d}{i % 1000:03d}"
                number = first17 + check_char(first17)
                sex = "male" if int(first17[16]) % 2 else "female"
                local = rng.random() < 0.92
                since = "\\N" if local else (f"{first.year - rng.choice([1, 3, 6])}-03-01")
                status, status_date = "active", "\\N"
                if rng.random() < 0.01:
                    status = rng.choice(["moved", "deceased"])
                    status_date = (first + timedelta(days=rng.randint(0, 27))).isoformat()
                eid = f"E{i:08d}"
                eld.write(f"{eid}\t老人{i}\t{number}\t{born.isoformat()}\t{sex}\t{'t' if local else 'f'}\t{since}\t"
                          f"{status}\t{status_date}\n")
                if rng.random() < 0.2 or (age < 70 and rng.random() < 0.5):
                    start = first - timedelta(days=rng.choice([400, 20, 0])) + timedelta(days=rng.choice([0, 0, 10]))
                    end = "\\N" if rng.random() < 0.8 else (start + timedelta(days=rng.randint(5, 25))).isoformat()
                    cats.write(f"{eid}\t{rng.choice(CATEGORIES)}\t证明{i}\t{start.isoformat()}\t{end}\n")
                card = f"EM:{i:010X}"
                if rng.random() < 0.005:
                    lost = datetime.combine(first + timedelta(days=rng.randint(1, 25)), datetime.min.time(), TZ)
                    cards.write(f"{card}\t{eid}\tlost\t{lost.isoformat()}\t2020-01-01T00:00:00+08:00\t\\N\n")
                else:
                    cards.write(f"{card}\t{eid}\tactive\t\\N\t2020-01-01T00:00:00+08:00\t\\N\n")
                point_cards.append(card)
            out.append((pid, point_cards))
        _copy(self.conn, "COPY meal_points (id, name, township, village) FROM STDIN", pts)
        _copy(self.conn, "COPY elders (id, name, id_number, birth_date, sex, hukou_local, resident_since, status,"
                         " status_date) FROM STDIN", eld)
        _copy(self.conn, "COPY elder_categories (elder_id, category, evidence, valid_from, valid_to) FROM STDIN", cats)
        _copy(self.conn, "COPY cards (card_id, elder_id, state, state_since, bound_from, bound_to) FROM STDIN", cards)
        return out

    def taps(self, population: list[tuple[str, list[str]]], month: Month, *, attendance: float = 1.0) -> int:
        """A month of taps: lunch for everyone most days, dinners after 15 June, noise; return the count."""
        rng = self.rng
        n = 0
        statement = ("COPY diner_events (time, point_id, device_id, seq, kind, method, card_id, meal, decision,"
                     " elder_id, clock_synced) FROM STDIN")
        buf = io.StringIO()
        for day in month.days():
            d = day.isoformat()
            dinner = day >= date(2024, 6, 15)
            for pid, cards in population:
                seq = n
                for card in cards:
                    if attendance < 1.0 and rng.random() > attendance:
                        continue
                    r = rng.random()
                    hh = 11 if r > 0.01 else 15  # 1 % outside the window
                    mm, ss = rng.randint(0, 59), rng.randint(0, 59)
                    seq += 1
                    buf.write(f"{d} {hh:02d}:{mm:02d}:{ss:02d}+08\t{pid}\tr1\t{seq}\ttap\tcard\t{card}\tlunch\t"
                              "accepted\t\\N\tt\n")
                    if r > 0.98:  # a double tap
                        seq += 1
                        buf.write(f"{d} {hh:02d}:{mm:02d}:{min(ss + 1, 59):02d}.5+08\t{pid}\tr1\t{seq}\ttap\tcard\t"
                                  f"{card}\tlunch\taccepted\t\\N\tt\n")
                    if dinner and r < 0.05:
                        seq += 1
                        buf.write(f"{d} 17:{mm:02d}:{ss:02d}+08\t{pid}\tr1\t{seq}\ttap\tcard\t{card}\tdinner\t"
                                  "accepted\t\\N\tt\n")
                if rng.random() < 0.3:  # an unregistered card
                    seq += 1
                    buf.write(f"{d} 12:00:00+08\t{pid}\tr1\t{seq}\ttap\tcard\tEM:FF{rng.randint(0, 99999999):08X}\t"
                              "lunch\tunknown_card\t\\N\tt\n")
                n = seq
            if buf.tell() > 64 << 20:
                _copy(self.conn, statement, buf)
                buf = io.StringIO()
        _copy(self.conn, statement, buf)
        return n


def sample_matches(conn: psycopg.Connection[Any], book: PolicyBook, month: Month, sample: list[str],
                   sql_totals: dict[str, Any]) -> bool:
    """SQL outcomes of the sampled points' taps equal the pure settle() over their elders' taps."""
    points = repository.load_points(conn)
    elder_ids = [r[0] for r in conn.execute(
        "SELECT DISTINCT c.elder_id FROM diner_events d JOIN cards c ON c.card_id = d.card_id"
        " WHERE d.point_id = ANY(%s) AND d.time >= %s AND d.time < %s",
        (sample, *repository.month_bounds(month, book)))]
    elders = repository.load_elders(conn, elder_ids)
    bindings = repository.load_bindings(conn, elders)
    cards = [b.card_id for b in bindings]
    by_sql = outcomes(conn, month, book, points, only_points=sample, cards=cards)
    conn.rollback()
    taps = repository.load_taps(conn, month, book, point_ids=sample, card_ids=cards)
    # Taps of these elders at other points join the month: they decide repeats and daily limits too.
    pure = settle(month, taps=taps, bindings=bindings, elders=elders, points=points, policies=book)
    expected: dict[Any, tuple[Any, Any, Any]] = {
        ln.tap.key: (None, ln.category, ln.amount) for ln in pure.lines if ln.tap.point_id in sample}
    expected.update({ex.tap.key: (ex.reason, None, None) for ex in pure.exclusions if ex.tap.point_id in sample})
    got = {k: (o.reason, o.category, o.amount if o.reason is None else None) for k, o in by_sql.items()}
    taps_equal = got == expected and len(got) > 0
    totals_equal = all(pure.total(Level.POINT, p) == sql_totals[p] for p in sample)
    log(f"sample of {len(sample)} points: {len(got)} taps compared, equal={taps_equal}; point totals equal="
        f"{totals_equal}")
    return taps_equal and totals_equal


def vacuum(dsn: str) -> None:
    """VACUUM (ANALYZE) the freshly loaded database: at a month's close its rows have long been vacuumed by
    autovacuum (hint bits set, statistics current); untimed, and autovacuum then has nothing to do during
    the timed runs."""
    t0 = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("VACUUM (ANALYZE)")
    log(f"vacuumed and analyzed in {time.perf_counter() - t0:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.settlement", description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=10_000, help="province meal points (default 10,000)")
    parser.add_argument("--diners", type=int, default=60, help="diners per point (default 60)")
    parser.add_argument("--county-points", type=int, default=300)
    parser.add_argument("--sample", type=int, default=20, help="province points checked tap by tap")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="connections for the province month, split by local days (default: CPUs)")
    parser.add_argument("--admin-dsn", default=None, help="default: deploy/native/timescaledb.sh dsn")
    parser.add_argument("--repeat", type=int, default=3, help="timed county runs; the median is reported")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    args = parser.parse_args(argv)

    admin = args.admin_dsn or os.environ.get("YANGYI_BENCH_ADMIN_DSN")
    if admin is None:
        import subprocess

        admin = subprocess.run(["bash", "deploy/native/timescaledb.sh", "dsn"], check=True, capture_output=True,
                               text=True).stdout.strip()
    base = admin.rsplit("/", 1)[0]
    names = {kind: f"yangyi_bench_settle_{kind}_{uuid.uuid4().hex[:8]}" for kind in ("province", "county")}
    with psycopg.connect(admin, autocommit=True) as c:
        for name in names.values():
            c.execute(f'CREATE DATABASE "{name}"')
    prov_dsn, county_dsn = (f"{base}/{names[k]}" for k in ("province", "county"))
    book = parse_policies(POLICY)
    rng = random.Random(2024)
    try:
        # A county deployment has its own database; the province month is the scale test.
        for dsn in (prov_dsn, county_dsn):
            migrate(dsn)
        with psycopg.connect(prov_dsn) as conn:
            loader = Loader(conn, rng)
            t0 = time.perf_counter()
            province = loader.population("P", args.points, args.diners, PROVINCE)
            conn.commit()
            log(f"province registry loaded: {loader.next_elder} elders in {time.perf_counter() - t0:.0f} s")
            t0 = time.perf_counter()
            taps = loader.taps(province, PROVINCE)
            conn.commit()
            log(f"province taps loaded: {taps} in {time.perf_counter() - t0:.0f} s")
        vacuum(prov_dsn)
        with psycopg.connect(county_dsn) as conn:
            cloader = Loader(conn, rng)
            county = cloader.population("C", args.county_points, args.diners, COUNTY)
            county_taps = cloader.taps(county, COUNTY, attendance=0.9)
            conn.commit()
            log(f"county loaded: {cloader.next_elder} elders, {county_taps} taps")
        vacuum(county_dsn)

        with psycopg.connect(prov_dsn) as conn:
            points = repository.load_points(conn)
            load_before = os.getloadavg()
            t0 = time.perf_counter()
            result = settle_sql_parallel(prov_dsn, PROVINCE, book, points, workers=args.workers)
            province_seconds = time.perf_counter() - t0
            log(f"province: {result.county.taps} taps, {result.county.meals} meals, {result.county.amount_due} yuan"
                f" in {province_seconds:.1f} s over {args.workers} connections (load {load_before[0]:.1f})")
            assert result.county.taps == taps, (result.county.taps, taps)
            sample = sorted(rng.sample([p for p, _ in province], min(args.sample, len(province))))
            by_point = {t.unit_id: t for t in result.totals if t.level is Level.POINT}
            province_equal = sample_matches(conn, book, PROVINCE, sample, by_point)
            conn.rollback()

        with psycopg.connect(county_dsn) as conn:
            cpoints = repository.load_points(conn)
            settle_sql(conn, COUNTY, book, cpoints)  # warm the caches once, as a server that has run before
            conn.rollback()
            one: list[float] = []
            split: list[float] = []
            for run in range(max(1, args.repeat)):
                t0 = time.perf_counter()
                county_result = settle_sql(conn, COUNTY, book, cpoints)
                one.append(time.perf_counter() - t0)
                conn.rollback()
                t0 = time.perf_counter()
                county_parallel = settle_sql_parallel(county_dsn, COUNTY, book, cpoints, workers=args.workers)
                split.append(time.perf_counter() - t0)
                assert county_parallel.totals == county_result.totals
                log(f"county run {run + 1}: {county_result.county.taps} taps in {split[-1]:.3f} s over"
                    f" {args.workers} connections, {one[-1]:.3f} s on one")
            county_seconds, county_one_seconds = statistics.median(split), statistics.median(one)
            t0 = time.perf_counter()
            elders = repository.load_elders(conn)
            bindings = repository.load_bindings(conn, elders)
            ctaps = repository.load_taps(conn, COUNTY, book)
            pure = settle(COUNTY, taps=ctaps, bindings=bindings, elders=elders, points=cpoints, policies=book)
            pure_county_seconds = time.perf_counter() - t0
            county_equal = pure.totals == county_result.totals
            log(f"county pure path: {pure_county_seconds:.1f} s (load + settle), totals equal={county_equal}")
            load_after = os.getloadavg()
    finally:
        if not args.keep:
            for name in names.values():
                drop_database(admin, name, log)
    assert by_point
    print(json.dumps({
        "taps": taps,
        "province_points": args.points,
        "province_seconds": round(province_seconds, 2),
        "province_workers": args.workers,
        "province_target_seconds": 60,
        "county_taps": county_taps,
        "county_points": args.county_points,
        "county_seconds": round(county_seconds, 3),
        "county_workers": args.workers,
        "county_one_connection_seconds": round(county_one_seconds, 3),
        "county_runs": [round(t, 3) for t in split],
        "county_one_connection_runs": [round(t, 3) for t in one],
        "county_target_seconds": 1,
        "county_pure_seconds": round(pure_county_seconds, 2),
        "matches_reference": bool(province_equal and county_equal),
        "sample_points": len(sample),
        "loadavg_1m": [round(load_before[0], 2), round(load_after[0], 2)],
        "cpus": os.cpu_count(),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
