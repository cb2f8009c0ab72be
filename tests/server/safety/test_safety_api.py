"""Safety events with filters and the current safety state per point, device and channel."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from server.safety.thresholds import worst

from .conftest import NOW

pytestmark = pytest.mark.integration


def t(minutes_ago: float) -> Any:
    return NOW - timedelta(minutes=minutes_ago)


# (time, device, seq, channel, level, prev_level, rule, value, unit, threshold, latched)
EVENTS = [
    (t(90), "gas1", 1, "lel", "alarm", "normal", "gas.lel", 26.0, "%LEL", 25.0, True),
    (t(80), "gas1", 2, "lel", "alarm2", "alarm", "gas.lel", 52.0, "%LEL", 50.0, True),
    (t(70), "efire1", 1, "temp1", "warn", "normal", "electric.temperature", 61.0, "degC", 60.0, False),
    (t(60), "efire1", 2, "temp1", "normal", "warn", "electric.temperature", 55.0, "degC", 60.0, False),
    (t(50), "co1", 1, "co", "comm_lost", "normal", "gas.co", None, "ppm", None, False),
    (t(60 * 24 * 10), "gas1", 0, "lel", "warn", "normal", "gas.lel", 20.0, "%LEL", 20.0, False),  # 10 days ago
]


def test_events_newest_first_with_filters(api: TestClient, seeder: Callable[..., str]) -> None:
    point = seeder(safety=EVENTS)
    url = f"/api/v1/points/{point}/safety/events"
    got = api.get(url)
    assert got.status_code == 200, got.text
    recent = got.json()  # default: the last 7 days
    assert [(e["device_id"], e["seq"]) for e in recent] == [("co1", 1), ("efire1", 2), ("efire1", 1),
                                                          ("gas1", 2), ("gas1", 1)]
    assert recent[3]["level"] == "alarm2" and recent[3]["prev_level"] == "alarm" and recent[3]["latched"] is True

    alarms = api.get(url, params=[("level", "alarm"), ("level", "alarm2")]).json()
    assert [e["level"] for e in alarms] == ["alarm2", "alarm"]
    by_device = api.get(url, params={"device_id": "efire1"}).json()
    assert {e["device_id"] for e in by_device} == {"efire1"} and len(by_device) == 2
    window = api.get(url, params={"start": t(75).isoformat(), "end": t(50).isoformat()}).json()
    assert [e["seq"] for e in window] == [2, 1]  # efire1 at 60 and 70 min ago; co1 at exactly `end` is out
    old = api.get(url, params={"start": t(60 * 24 * 30).isoformat()}).json()
    assert len(old) == 6
    assert len(api.get(url, params={"limit": 2}).json()) == 2
    assert api.get(url, params={"level": "panic"}).status_code == 422
    assert api.get("/api/v1/points/nope/safety/events").status_code == 404


def test_state_per_point_device_and_channel(api: TestClient, seeder: Callable[..., str]) -> None:
    point = seeder(
        safety=EVENTS,
        telemetry=[(t(1), "meter1", "voltage", "V", 221.0, 220.0, 221.0, 222.0, 30, 60),
                   (t(1), "gas1", "lel", "%LEL", 3.0, 2.0, 3.0, 4.0, 30, 60)],
        devices=[("gas1", "online"), ("agent", "online")],
    )
    got = api.get(f"/api/v1/points/{point}/safety/state")
    assert got.status_code == 200, got.text
    state = got.json()
    assert state["point_id"] == point and state["level"] == "alarm2" and state["alarms"] == 1
    devices = {d["device_id"]: d for d in state["devices"]}
    assert sorted(devices) == ["co1", "efire1", "gas1", "meter1"]  # the agent is not a sensor
    gas = devices["gas1"]
    assert gas["level"] == "alarm2" and gas["state"] == "online"
    (lel,) = gas["channels"]
    assert lel["level"] == "alarm2" and lel["latched"] is True and lel["since"].startswith("2026-06-03T02:40")
    assert devices["efire1"]["level"] == "normal"
    assert devices["co1"]["level"] == "comm_lost"  # a lost sensor is never "normal"
    assert devices["meter1"] == {"device_id": "meter1", "level": "normal", "state": None, "last_seen": None,
                                 "channels": []}


def test_acknowledged_alarm_ends_in_state(api: TestClient, seeder: Callable[..., str]) -> None:
    ack = (t(10), "gas1", 3, "lel", "normal", "alarm2", "gas.lel", 1.0, "%LEL", 50.0, False)
    point = seeder(safety=[*EVENTS[:2], ack])
    state = api.get(f"/api/v1/points/{point}/safety/state").json()
    assert state["level"] == "normal" and state["alarms"] == 0


def test_empty_point_is_normal(api: TestClient, seeder: Callable[..., str]) -> None:
    point = seeder()
    assert api.get(f"/api/v1/points/{point}/safety/state").json() == {
        "point_id": point, "level": "normal", "alarms": 0, "devices": []}
    assert api.get("/api/v1/points/nope/safety/state").status_code == 404
    assert api.get(f"/api/v1/points/{point}/safety/state", headers={"Authorization": ""}).status_code == 401


def test_worst_level_order() -> None:
    assert worst([]) == "normal"
    assert worst(["warn", "fault"]) == "fault"
    assert worst(["comm_lost", "warn", "normal"]) == "comm_lost"
    assert worst(["comm_lost", "alarm"]) == "alarm"
    assert worst(["alarm", "alarm2", "warn"]) == "alarm2"
