"""Camera API fixtures: a migrated database of this module's own (its stored policies are its own)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from typing import Any

import psycopg
import pytest

from server.subsidy.policy import EXAMPLE_POLICY_FILE, SubsidyPolicy, load_policies

from ..conftest import scratch_database


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


@pytest.fixture(scope="module")
def vision_dsn(tsdb_admin_dsn: str) -> Iterator[str]:
    """A fresh migrated database for this module: policies are global, so no other test's apply here."""
    with scratch_database(tsdb_admin_dsn, "vision") as dsn:
        yield dsn
