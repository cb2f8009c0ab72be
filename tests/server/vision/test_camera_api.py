"""Camera API on the real TimescaleDB: meals against check-ins, the flag, windows, occupancy, health, scope."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from server.app import create_app
from server.settings import DbSettings, MqttSettings, Settings

from ..conftest import bearer_headers
from .conftest import store_policy

pytestmark = pytest.mark.integration

TZ = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 6, 3)
OLD_DAY = date(2025, 12, 31)  # before the stored policy: the check-in default windows apply
NOW = datetime.combine(DAY, time(20), TZ).astimezone(UTC)


def at(hh: int, mm: int, day: date = DAY, ss: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm, ss), TZ)


@pytest.fixture(scope="module")
def policy_db(vision_dsn: str) -> str:
    store_policy(vision_dsn, "vision-2026", date(2026, 1, 1),
                 {"lunch": ("11:00", "13:00"), "dinner": ("17:00", "19:00")})
    return vision_dsn


def client(dsn: str, account: Any, **binding: Any) -> TestClient:
    settings = Settings(db=DbSettings(dsn=SecretStr(dsn)),
                        mqtt=MqttSettings(host=account.host, port=account.port, username=account.username,
                                          password=SecretStr(account.password)))
    headers = bearer_headers(dsn, **binding)
    return TestClient(create_app(settings, clock=lambda: NOW), headers=headers)


@pytest.fixture
def api(policy_db: str, mqtt_server_account: Any) -> Iterator[TestClient]:
    with client(policy_db, mqtt_server_account) as c:
        yield c


def seed(dsn: str, point: str, counts: Sequence[tuple[Any, ...]] = (), taps: Sequence[tuple[datetime, str]] = (),
         deliveries: Sequence[tuple[datetime, str]] = (), telemetry: Sequence[tuple[Any, ...]] = ()) -> None:
    """Rows as ingest writes them: counts (time, device, entries, exits[, occupancy]), taps (time, card),
    telemetry (time, device, channel, value)."""
    with psycopg.connect(dsn) as conn:
        conn.execute("INSERT INTO meal_points (id, auto_registered) VALUES (%s, true) ON CONFLICT DO NOTHING",
                     (point,))
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO count_events (time, point_id, device_id, seq, period_s, entries, exits, occupancy)"
                " VALUES (%s, %s, %s, %s, 60, %s, %s, %s)",
                [(c[0], point, c[1], i, c[2], c[3], c[4] if len(c) > 4 else None) for i, c in enumerate(counts)])
            events = [(t, c, "tap") for t, c in taps] + [(t, c, "delivery") for t, c in deliveries]
            cur.executemany(
                "INSERT INTO diner_events (time, point_id, device_id, seq, kind, method, card_id, meal, decision,"
                " clock_synced) VALUES (%s, %s, 'reader1', %s, %s, 'card', %s, 'lunch', 'accepted', true)",
                [(t, point, i, kind, c) for i, (t, c, kind) in enumerate(events)])
            cur.executemany(
                "INSERT INTO telemetry (time, point_id, device_id, seq, channel, value)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                [(r[0], point, r[1], i, r[2], r[3]) for i, r in enumerate(telemetry)])


def cards(n: int, start: datetime) -> list[tuple[datetime, str]]:
    return [(start + timedelta(seconds=7 * i), f"EM:{i:010X}") for i in range(n)]


def meals(api: TestClient, point: str, **params: Any) -> dict[str, Any]:
    r = api.get(f"/api/v1/points/{point}/camera/meals", params={"from": DAY.isoformat(), **params})
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def test_entries_against_distinct_cards_with_the_flag(api, policy_db, unique_point_id):
    point = unique_point_id
    seed(policy_db, point,
         # lunch: 6 in (two events share 12:01: a restart, both count); dinner: 4 in; 10:59 is before lunch
         counts=[(at(10, 59), "cam1", 5, 0), (at(12, 0), "cam1", 3, 1), (at(12, 1), "cam1", 1, 0),
                 (at(12, 1), "cam1", 2, 0), (at(17, 30), "cam1", 4, 0)],
         taps=[*cards(8, at(12, 0)), (at(12, 20), "EM:0000000000"),  # 8 cards, one tapped twice
               *cards(7, at(17, 30)), (at(10, 50), "EM:FFFFFFFFFF")],
         deliveries=[(at(12, 30), "ID:110101194501010011")] * 3)
    out = meals(api, point)
    assert out["windows"] == "policy vision-2026" and out["timezone"] == "Asia/Shanghai"
    assert out["margin"] == {"min_excess": 2, "ratio": "0.10"}
    got = [(m["meal"], m["camera_entries"], m["camera_exits"], m["camera_minutes"], m["checkins"], m["taps"],
            m["excess"], m["flagged"]) for m in out["meals"]]
    assert got == [("lunch", 6, 1, 3.0, 8, 9, 2, False),   # 2 more: within the margin
                   ("dinner", 4, 0, 1.0, 7, 7, 3, True)]   # 3 more (> 2, > 10 %): flagged
    # A stricter margin, asked for in the query, flags lunch too.
    strict = meals(api, point, min_excess=1, ratio="0")
    assert [m["flagged"] for m in strict["meals"]] == [True, True]


def test_no_camera_count_is_unknown_and_not_flagged(api, policy_db, unique_point_id):
    seed(policy_db, unique_point_id, taps=cards(12, at(11, 30)))
    [lunch] = meals(api, unique_point_id)["meals"]
    assert (lunch["camera_entries"], lunch["excess"], lunch["checkins"], lunch["flagged"]) == (None, None, 12, False)


def test_days_before_any_policy_use_the_check_in_defaults(api, policy_db, unique_point_id):
    # 10:45 is lunch under the defaults (10:30–13:30), not under the 2026 policy (11:00–13:00).
    first = date(2026, 1, 1)
    seed(policy_db, unique_point_id, counts=[(at(10, 45, OLD_DAY), "cam1", 2, 0), (at(10, 45, first), "cam1", 9, 0)],
         taps=cards(5, at(10, 45, OLD_DAY)))
    out = meals(api, unique_point_id, **{"from": OLD_DAY.isoformat(), "to": first.isoformat()})
    assert out["windows"] == "check-in defaults, policy vision-2026"
    assert [(m["day"], m["meal"], m["camera_entries"], m["checkins"], m["flagged"]) for m in out["meals"]] == [
        (OLD_DAY.isoformat(), "lunch", 2, 5, True)]


def test_occupancy_snapshots_and_camera_health(api, policy_db, unique_point_id):
    point = unique_point_id
    seed(policy_db, point,
         counts=[(at(11, 0), "cam1", 1, 0), (at(11, 5), "cam1", 0, 0, 14), (at(11, 10), "cam-hall", 0, 0, 22),
                 (at(12, 0, DAY - timedelta(days=1)), "cam1", 0, 0, 30)],
         telemetry=[(at(19, 0), "cam1", "camera.online", 1.0), (at(19, 0), "cam1", "camera.fps", 14.8),
                    (at(19, 0), "cam1", "camera.reconnects", 0.0),
                    (at(19, 30), "cam1", "camera.online", 0.0), (at(19, 30), "cam1", "camera.fps", 0.0),
                    (at(19, 30), "cam1", "camera.reconnects", 2.0),
                    (at(19, 0), "gas1", "gas.lel", 0.0)])
    r = api.get(f"/api/v1/points/{point}/camera/occupancy", params={"day": DAY.isoformat()})
    assert r.status_code == 200, r.text
    assert [(s["device_id"], s["occupancy"]) for s in r.json()["snapshots"]] == [("cam1", 14), ("cam-hall", 22)]
    r = api.get(f"/api/v1/points/{point}/camera/health")
    assert r.status_code == 200, r.text
    cams = {c["device_id"]: c for c in r.json()["cameras"]}
    assert set(cams) == {"cam1", "cam-hall"}  # gas1 has no camera readings and no counts
    cam1 = cams["cam1"]
    assert (cam1["online"], cam1["fps"], cam1["reconnects"], cam1["count_events"]) == (False, 0.0, 2, 2)
    assert datetime.fromisoformat(cam1["online_at"]) == at(19, 30)
    assert datetime.fromisoformat(cam1["counted_until"]) == at(11, 6)
    hall = cams["cam-hall"]
    assert (hall["online"], hall["fps"], hall["reconnects"], hall["count_events"]) == (None, None, None, 1)


def test_unknown_point_bad_range_and_scope(api, policy_db, unique_point_id, mqtt_server_account):
    assert api.get("/api/v1/points/tnosuchpoint/camera/meals", params={"from": "2026-06-03"}).status_code == 404
    seed(policy_db, unique_point_id)
    r = api.get(f"/api/v1/points/{unique_point_id}/camera/meals", params={"from": "2026-06-03", "to": "2026-06-01"})
    assert r.status_code == 422
    other_point = unique_point_id + "x"
    seed(policy_db, other_point)
    with client(policy_db, mqtt_server_account, role="caregiver", point_ids=[other_point]) as other:
        for path in ("meals?from=2026-06-03", "occupancy?day=2026-06-03", "health"):
            r = other.get(f"/api/v1/points/{unique_point_id}/camera/{path}")
            assert r.status_code in (403, 404), (path, r.status_code)
