"""Camera API fixtures: a migrated database of this module's own (its stored policies are its own)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import date
from typing import Any

import psycopg
import pytest

from server.subsidy.policy import EXAMPLE_POLICY_FILE, SubsidyPolicy, load_policies


def store_policy(dsn: str, version: str, effective_from: date, windows: dict[str, tuple[str, str]]) -> None:
    """Store a policy version (the example county's rules) with these meal windows, as the subsidy code does."""
    data: dict[str, Any] = load_policies(EXAMPLE_POLICY_FILE).policies[0].canonical()
    amount = next(iter(next(iter(data["amounts"].values())).values()))
    data.update(version=version, effective_from=effective_from.isoformat(),
                meal_windows={m: {"start": s, "end": e} for m, (s, e) in windows.items()},
                amounts={c: dict.fromkeys(windows, amount) for c in data["amounts"]})
    policy = SubsidyPolicy.model_validate_json(json.dumps(data))
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO subsidy_policies (version, effective_from, county, timezone, source_yaml, content, sha256,"
            " added_by, added_at) VALUES (%s, %s, 'test county', 'Asia/Shanghai', '', %s, %s, 'tests', now())",
            (policy.version, policy.effective_from, json.dumps(policy.canonical()), policy.content_hash))


def drop_database(admin_dsn: str, name: str, timeout: float = 10.0) -> None:
    """Drop a test database; retry while TimescaleDB's own background worker (not ours to end) holds it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(admin_dsn, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except (psycopg.errors.InsufficientPrivilege, psycopg.errors.ObjectInUse):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture(scope="module")
def vision_dsn(tsdb_admin_dsn: str) -> Iterator[str]:
    """A fresh migrated database for this module: policies are global, so no other test's apply here."""
    from server.db.migrate import migrate

    name = f"yangyi_vision_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(tsdb_admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = tsdb_admin_dsn.rsplit("/", 1)[0] + "/" + name
    migrate(dsn)
    yield dsn
    drop_database(tsdb_admin_dsn, name)
