"""Migrations: apply once, idempotent, safe against concurrent runs."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import psycopg
import pytest

from server.db.migrate import available, migrate

from .conftest import scratch_database

pytestmark = pytest.mark.integration


@pytest.fixture
def empty_dsn(tsdb_admin_dsn: str) -> Iterator[str]:
    with scratch_database(tsdb_admin_dsn, "mig", migrated=False) as dsn:
        yield dsn


def test_applies_all_then_nothing(empty_dsn: str) -> None:
    names = [m.name for m in available()]
    assert names and names[0] == "0001_foundation.sql"
    assert migrate(empty_dsn) == names
    assert migrate(empty_dsn) == []
    with psycopg.connect(empty_dsn) as conn:
        hypertables = {
            r[0] for r in conn.execute("SELECT hypertable_name FROM timescaledb_information.hypertables")
        }
        recorded = [r[0] for r in conn.execute("SELECT name FROM schema_migrations ORDER BY name")]
    assert hypertables == {"message_receipts", "diner_events", "telemetry", "safety_events", "count_events"}
    assert recorded == names


def test_concurrent_runs_apply_each_migration_once(empty_dsn: str) -> None:
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(migrate(empty_dsn))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    applied = sorted(name for r in results for name in r)
    assert applied == [m.name for m in available()]
