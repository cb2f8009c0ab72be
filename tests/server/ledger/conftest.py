"""Ledger API fixtures: the real app on the session database with a settable clock, a small county
of two townships, a bearer token per role, and row seeding as ingest and the alert worker write them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from server.app import create_app
from server.settings import DbSettings, Settings

from ..conftest import bearer_headers

TZ = ZoneInfo("Asia/Shanghai")
REGISTERED = datetime(2026, 5, 1, tzinfo=TZ)


def local(month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=TZ)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def set(self, now: datetime) -> None:
        self.now = now


@dataclass
class County:
    """Townships A and B; villages a1, a2 (in A) and b1 (in B); one meal point in each village."""

    uid: str
    points: dict[str, str]  # a1, a2, b1 -> point id
    township_ids: dict[str, int]
    village_ids: dict[str, int]
    headers: dict[str, dict[str, str]]  # role key -> bearer headers


def one(conn: psycopg.Connection[Any], query: str, *params: Any) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None, query
    return row[0]


def make_county(dsn: str) -> County:
    uid = uuid.uuid4().hex[:8]
    towns = {"A": f"甲镇{uid}", "B": f"乙乡{uid}"}
    villages = {"a1": ("A", f"东村{uid}"), "a2": ("A", f"西村{uid}"), "b1": ("B", f"南村{uid}")}
    points = {k: f"L{uid}-{k}" for k in villages}
    with psycopg.connect(dsn) as conn:
        for key, (town, village) in villages.items():
            conn.execute("INSERT INTO meal_points (id, name, township, village, created_at)"
                         " VALUES (%s, %s, %s, %s, %s)",
                         (points[key], f"{village}助餐点", towns[town], village, REGISTERED))
        township_ids = {k: one(conn, "SELECT id FROM townships WHERE name = %s", n) for k, n in towns.items()}
        village_ids = {k: one(conn, "SELECT id FROM villages WHERE name = %s", v) for k, (_, v) in villages.items()}
    bindings: dict[str, tuple[str, dict[str, Any]]] = {
        "viewer": ("bureau_viewer", {}),
        "admin": ("bureau_admin", {}),
        "officer_a": ("township_officer", {"township_id": township_ids["A"]}),
        "officer_b": ("township_officer", {"township_id": township_ids["B"]}),
        "village_a1": ("village_officer", {"village_id": village_ids["a1"]}),
        "village_a2": ("village_officer", {"village_id": village_ids["a2"]}),
        "caregiver_a1": ("caregiver", {"point_ids": [points["a1"]]}),
        "caregiver_b1": ("caregiver", {"point_ids": [points["b1"]]}),
    }
    return County(uid, points, township_ids, village_ids, Tokens(dsn, bindings))


class Tokens(dict[str, dict[str, str]]):
    """Bearer headers per role key, each token made on first use (making one takes most of a second)."""

    def __init__(self, dsn: str, bindings: dict[str, tuple[str, dict[str, Any]]]) -> None:
        super().__init__()
        self.dsn = dsn
        self.bindings = bindings

    def __missing__(self, key: str) -> dict[str, str]:
        role, binding = self.bindings[key]
        self[key] = headers = bearer_headers(self.dsn, role, **binding)
        return headers


@pytest.fixture
def county(tsdb_dsn: str) -> County:
    return make_county(tsdb_dsn)


@pytest.fixture
def clock() -> Clock:
    return Clock(local(7, 3, 10))


def app_client(dsn: str, clock: Clock) -> TestClient:
    return TestClient(create_app(Settings(db=DbSettings(dsn=SecretStr(dsn), pool_min=1, pool_max=4)), clock=clock))


@pytest.fixture
def api(tsdb_dsn: str, clock: Clock) -> Iterator[TestClient]:
    with app_client(tsdb_dsn, clock) as client:
        yield client


def seed_telemetry(dsn: str, point: str, rows: Sequence[tuple[datetime, str, str, str | None, float]],
                   summaries: Sequence[tuple[datetime, str, str, str | None, float, float, float]] = ()) -> None:
    """Plain readings (time, device, channel, unit, value) and summaries (..., last, min, max)."""
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO telemetry (time, point_id, device_id, seq, channel, unit, value)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [(t, point, dev, n, ch, unit, v) for n, (t, dev, ch, unit, v) in enumerate(rows)])
        cur.executemany(
            "INSERT INTO telemetry (time, point_id, device_id, seq, channel, unit, value, vmin, vmean, vmax, n,"
            " period_s) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 60, 60)",
            [(t, point, dev, 10_000 + n, ch, unit, v, lo, (lo + hi) / 2, hi)
             for n, (t, dev, ch, unit, v, lo, hi) in enumerate(summaries)])


def seed_safety(dsn: str, point: str, rows: Sequence[tuple[datetime, str, str, str, str | None, float | None]]) -> None:
    """Safety events (time, device, channel, level, prev_level, value) as ingest writes them."""
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO safety_events (time, point_id, device_id, seq, channel, level, prev_level, rule, value,"
            " unit, threshold, latched, actions, message, clock_synced)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, 'gas.lel', %s, '%%LEL', 25, false, %s, NULL, true)",
            [(t, point, dev, n, ch, level, prev, value, ["buzzer"] if level != "normal" else [])
             for n, (t, dev, ch, level, prev, value) in enumerate(rows)])


def seed_alert(dsn: str, point: str, opened: datetime, *, resolved: bool, device: str = "gas1") -> str:
    """An alert with its timeline and two notification attempts, as the alert worker writes them."""
    alert_id = f"al-{uuid.uuid4().hex[:12]}"
    acked, done = opened + timedelta(minutes=2), opened + timedelta(minutes=40)
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO alerts (id, point_id, device_id, condition, hazard, severity, peak_severity, state, source,"
            " opened_at, last_seen, last_value, unit, message, ack_by, ack_at, ack_channel, confirmed_by,"
            " confirmed_at, confirm_note, resolved_at, resolved_by, cleared_at)"
            " VALUES (%s, %s, %s, 'lel:edge', 'gas', 'alarm', 'alarm', %s, 'edge', %s, %s, 31.0, '%%LEL',"
            " '可燃气体浓度 31 %%LEL', 'user:wang', %s, 'wecom', %s, %s, %s, %s, %s, %s)",
            (alert_id, point, device, "resolved" if resolved else "acknowledged", opened, opened + timedelta(minutes=9),
             acked, "user:wang" if resolved else None, done if resolved else None,
             "=阀门已更换" if resolved else None, done if resolved else None, "user:wang" if resolved else None,
             opened + timedelta(minutes=10)))
        events: list[tuple[Any, ...]] = [(opened, "opened", "system", None),
                                         (acked, "acknowledged", "user:wang", "wecom")]
        if resolved:
            events += [(done, "confirmed", "user:wang", "on_site"), (done, "resolved", "user:wang", None)]
        for at, kind, actor, channel in events:
            conn.execute("INSERT INTO alert_events (alert_id, time, kind, actor, channel) VALUES (%s, %s, %s, %s, %s)",
                         (alert_id, at, kind, actor, channel))
        for n, ok in enumerate((False, True)):
            conn.execute(
                "INSERT INTO alert_notifications (alert_id, person_id, role, channel, address, kind, round, attempt,"
                " time, ok, status, error) VALUES (%s, 'c1', 'caregiver', %s, 'x', 'notify', 0, %s, %s, %s, %s, %s)",
                (alert_id, "sms" if not ok else "wecom", n, opened + timedelta(seconds=5 + n), ok,
                 200 if ok else None, None if ok else "timeout"))
    return alert_id
