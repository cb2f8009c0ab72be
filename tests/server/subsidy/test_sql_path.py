"""The database paths against the pure one: random months written into the real tables, then settled three ways.

1. the reference (test_settlement_property.reference) on the month in memory;
2. the pure settle() on the inputs read back by server.subsidy.repository (tests the loader);
3. the set-based SQL path (server.subsidy.sql), per tap and in totals at every level.
Each example runs in a transaction that is rolled back, so examples never see each other.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.subsidy import repository, service
from server.subsidy.cli import main
from server.subsidy.policy import Category, parse_policies
from server.subsidy.records import Month
from server.subsidy.settlement import settle
from server.subsidy.sql import outcomes, settle_sql, settle_sql_parallel

from .conftest import POLICY_YAML
from .dbdata import insert_month
from .months import RandomMonth, months
from .test_settlement_property import BOOKS, JUNE, reference

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def db(tsdb_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(tsdb_dsn, autocommit=True) as conn:
        yield conn


def _settle_three_ways(conn: psycopg.Connection[Any], month: RandomMonth, book_index: int, prefix: str) -> None:
    book = BOOKS[book_index]
    with conn.transaction(force_rollback=True):
        insert_month(conn, month.points, month.elders, month.bindings, month.taps, tag=prefix)
        ours = [e.elder_id for e in month.elders]
        points = repository.load_points(conn)
        elders = repository.load_elders(conn, ours)
        bindings = repository.load_bindings(conn, elders)
        taps = repository.load_taps(conn, JUNE, book)
        assert sorted(t.key for t in taps) == sorted(t.key for t in month.taps)
        pure = settle(JUNE, taps=taps, bindings=bindings, elders=elders, points=points, policies=book)

        expected = reference(month.taps, month.bindings, month.elders, month.points, book)
        got = {ln.tap.key: ("counted", ln.category, ln.amount) for ln in pure.lines}
        got.update({ex.tap.key: (str(ex.reason), None, Decimal("0.00")) for ex in pure.exclusions})
        assert got == expected

        by_sql = outcomes(conn, JUNE, book, points)
        sql_view: dict[Any, tuple[str, Category | None, Decimal]] = {
            k: (str(o.reason) if o.reason else "counted", o.category, o.amount) for k, o in by_sql.items()
        }
        assert sql_view == expected

        totals = settle_sql(conn, JUNE, book, points)
        assert totals.totals == pure.totals
        assert totals.county.amount_due == pure.county.amount_due
        assert [p.version for p in totals.policies] == [p.version for p in pure.policies]


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data(), book_index=st.integers(0, 1))
def test_database_paths_equal_the_reference(db: psycopg.Connection[Any], data: st.DataObject,
                                            book_index: int) -> None:
    prefix = uuid.uuid4().hex[:6].upper()
    month = data.draw(months(prefix=prefix, max_taps=200))
    _settle_three_ways(db, month, book_index, prefix)


# Policies that start inside June (days 1-9 under none) or after it (no version in force at all).
LATE_BOOKS = [
    parse_policies(POLICY_YAML.replace("effective_from: 2024-01-01", "effective_from: 2024-06-10")),
    parse_policies(POLICY_YAML.replace("effective_from: 2024-01-01", "effective_from: 2024-07-01")
                   .replace("effective_from: 2024-06-15", "effective_from: 2024-07-15")),
]


@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data(), book_index=st.integers(0, 1))
def test_days_without_a_policy_in_the_database_paths(db: psycopg.Connection[Any], data: st.DataObject,
                                                      book_index: int) -> None:
    prefix = uuid.uuid4().hex[:6].upper()
    month = data.draw(months(prefix=prefix, max_taps=120))
    book = LATE_BOOKS[book_index]
    with db.transaction(force_rollback=True):
        insert_month(db, month.points, month.elders, month.bindings, month.taps, tag=prefix)
        points = repository.load_points(db)
        expected = reference(month.taps, month.bindings, month.elders, month.points, book)
        by_sql = outcomes(db, JUNE, book, points)
        assert {k: (str(o.reason) if o.reason else "counted", o.category, o.amount)
                for k, o in by_sql.items()} == expected
        elders = repository.load_elders(db, [e.elder_id for e in month.elders])
        pure = settle(JUNE, taps=repository.load_taps(db, JUNE, book), bindings=repository.load_bindings(db, elders),
                      elders=elders, points=points, policies=book)
        assert settle_sql(db, JUNE, book, points).totals == pure.totals


def test_the_day_split_parallel_path_equals_the_single_query(tsdb_dsn: str) -> None:
    from .dbcounty import build, commit

    month = Month(2033, 1)
    county = commit(tsdb_dsn, build(month, seed=3))
    book = BOOKS[1]
    with psycopg.connect(tsdb_dsn) as conn:
        points = repository.load_points(conn)
        single = settle_sql(conn, month, book, points)
        conn.rollback()
        elders = repository.load_elders(conn, [e.elder_id for e in county.elders])
        pure = settle(month, taps=repository.load_taps(conn, month, book),
                      bindings=repository.load_bindings(conn, elders), elders=elders, points=points, policies=book)
    for workers in (2, 3):
        parallel = settle_sql_parallel(tsdb_dsn, month, book, points, workers=workers)
        assert parallel.totals == single.totals == pure.totals
    assert pure.county.meals > 50 and pure.county.excluded_taps > 0


def test_a_stored_sql_run_split_by_days_equals_one_on_a_single_connection(tsdb_dsn: str) -> None:
    from .dbcounty import build, commit

    month = Month(2033, 2)
    commit(tsdb_dsn, build(month, seed=5))
    now = datetime.now(UTC)
    with psycopg.connect(tsdb_dsn) as conn:
        service.add_policies(conn, POLICY_YAML, by="tests", at=now)
        conn.commit()
        one_id, one = service.settle_month_sql(conn, month, by="tests", at=now)
        split_id, split = service.settle_month_sql(conn, month, by="tests", at=now, dsn=tsdb_dsn, workers=3)
        conn.commit()
        assert split_id != one_id and split.totals == one.totals and one.county.meals > 50
        stored = repository.run_row(conn, split_id)
        assert stored is not None and stored["meals"] == one.county.meals
    out = io.StringIO()
    assert main(["--dsn", tsdb_dsn, "settle", "2033-02", "--sql"], stdout=out, stderr=io.StringIO()) == 0
    assert f"{one.county.taps} taps, {one.county.meals} meals, {one.county.amount_due} yuan due" in out.getvalue()


def test_reading_the_month_in_groups_of_days_equals_one_read(tsdb_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from server.subsidy import sql

    from .dbcounty import build, commit

    month = Month(2033, 3)
    commit(tsdb_dsn, build(month, seed=9))
    book = BOOKS[1]
    with psycopg.connect(tsdb_dsn) as conn:
        points = repository.load_points(conn)
        whole = settle_sql(conn, month, book, points)
        conn.rollback()
        monkeypatch.setattr(sql, "MAX_TAPS_PER_QUERY", 0)  # one day per query
        assert sql._day_groups(conn, month.days(), book) == [[d] for d in month.days()]
        grouped = settle_sql(conn, month, book, points)
        conn.rollback()
    split = settle_sql_parallel(tsdb_dsn, month, book, points, workers=2)
    assert grouped.totals == whole.totals == split.totals
    assert whole.county.meals > 50 and whole.county.excluded_taps > 0
