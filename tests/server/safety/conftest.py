"""Safety API fixtures: an API on the session database with a fixed clock, and row seeding."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from server.app import create_app
from server.settings import DbSettings, MqttSettings, Settings

from ..conftest import bearer_headers

NOW = datetime(2026, 6, 3, 4, 0, tzinfo=UTC)


def seed(dsn: str, point: str, telemetry: Sequence[tuple[Any, ...]] = (), safety: Sequence[tuple[Any, ...]] = (),
         devices: Sequence[tuple[str, str]] = ()) -> None:
    """Rows as ingest writes them: telemetry (time, device, channel, unit, value, vmin, vmean, vmax, n,
    period_s), safety (time, device, seq, channel, level, prev_level, rule, value, unit, threshold,
    latched), devices (device_id, state)."""
    with psycopg.connect(dsn) as conn:
        conn.execute("INSERT INTO meal_points (id, auto_registered) VALUES (%s, true) ON CONFLICT DO NOTHING",
                     (point,))
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO telemetry (time, point_id, device_id, seq, channel, unit, value, vmin, vmean, vmax,"
                " n, period_s) VALUES (%s, %s, %s, 0, %s, %s, %s, %s, %s, %s, %s, %s)",
                [(r[0], point, *r[1:]) for r in telemetry])
            cur.executemany(
                "INSERT INTO safety_events (time, point_id, device_id, seq, channel, level, prev_level, rule,"
                " value, unit, threshold, latched, actions, message, clock_synced)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, '{}', NULL, true)",
                [(r[0], point, *r[1:]) for r in safety])
            cur.executemany(
                "INSERT INTO devices (point_id, device_id, state, last_seen) VALUES (%s, %s, %s, %s)",
                [(point, d, st, NOW) for d, st in devices])


@pytest.fixture
def api(tsdb_dsn: str, mqtt_server_account: Any) -> Iterator[TestClient]:
    acct = mqtt_server_account
    settings = Settings(db=DbSettings(dsn=SecretStr(tsdb_dsn)),
                        mqtt=MqttSettings(host=acct.host, port=acct.port, username=acct.username,
                                          password=SecretStr(acct.password)))
    with TestClient(create_app(settings, clock=lambda: NOW), headers=bearer_headers(tsdb_dsn)) as client:
        yield client


@pytest.fixture
def seeder(tsdb_dsn: str, unique_point_id: str) -> Callable[..., str]:
    def make(**rows: Any) -> str:
        seed(tsdb_dsn, unique_point_id, **rows)
        return unique_point_id

    return make
