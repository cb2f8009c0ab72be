"""End to end: a point's agent publishes through the real broker, the worker stores, the API serves."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from psycopg import connect as psycopg_connect
from pydantic import SecretStr

from server.app import create_app
from server.ingest.worker import IngestWorker
from server.settings import DbSettings, MqttSettings, Settings

from .conftest import Publisher, bearer_headers, query, wait_for

pytestmark = pytest.mark.integration

TZ = ZoneInfo("Asia/Shanghai")


def api_settings(dsn: str, account: Any) -> Settings:
    return Settings(db=DbSettings(dsn=SecretStr(dsn)),
                    mqtt=MqttSettings(host=account.host, port=account.port, username=account.username,
                                      password=SecretStr(account.password)))


@pytest.fixture
def api(tsdb_dsn: str, mqtt_server_account: Any) -> Iterator[TestClient]:
    app = create_app(api_settings(tsdb_dsn, mqtt_server_account))
    with TestClient(app, headers=bearer_headers(tsdb_dsn)) as client:
        yield client


def receipts(dsn: str, point: str) -> int:
    return int(query(dsn, "SELECT count(*) FROM message_receipts WHERE point_id = %s", point)[0][0])


def test_events_flow_from_broker_to_api(tsdb_dsn: str, publisher: Publisher,
                                        worker_factory: Callable[..., IngestWorker], api: TestClient) -> None:
    worker_factory()
    point = publisher.point
    lunch = datetime(2026, 6, 3, 11, 40, tzinfo=TZ)
    publisher.raw("agent", "status", json.dumps({
        "v": 1, "point": point, "device": "agent", "ts": datetime.now(UTC).isoformat(), "state": "online",
        "heartbeat_s": 30, "software": "yangyi-edge 0.1.0"}), retain=True)
    taps = [("card-1", "lunch", "accepted"), ("card-2", "lunch", "accepted"), ("card-1", "lunch", "repeat"),
            ("card-3", "dinner", "accepted")]
    for seq, (card, meal, decision) in enumerate(taps):
        ts = lunch + timedelta(minutes=seq) if meal == "lunch" else lunch.replace(hour=17)
        publisher.event("reader1", "diner", seq, ts, method="card", card_id=card, meal=meal, decision=decision)
    # The previous local day (UTC day boundary differs from the local one): must not be counted.
    publisher.event("reader1", "diner", 10, datetime(2026, 6, 2, 23, 30, tzinfo=TZ), method="card",
                    card_id="card-9", meal="dinner", decision="accepted")
    now = datetime.now(UTC)
    publisher.event("gas1", "telemetry", 0, now - timedelta(seconds=20),
                    readings=[{"ch": "gas.lel", "unit": "%LEL", "v": 3.0}])
    publisher.event("gas1", "telemetry", 1, now - timedelta(seconds=10),
                    readings=[{"ch": "gas.lel", "unit": "%LEL", "v": 4.5},
                              {"ch": "gas.co", "unit": "ppm", "v": 7.0, "min": 5.0, "mean": 6.0, "max": 7.0,
                               "n": 10, "period_s": 60}])
    publisher.event("gas1", "safety", 2, now, ch="gas.lel", level="warn", rule="gas.lel", value=4.5,
                    unit="%LEL", threshold=4.0, actions=["buzzer"])
    publisher.event("cam1", "count", 0, now, period_s=60, entries=5, exits=2, occupancy=3)
    wait_for(lambda: receipts(tsdb_dsn, point) == 9, what="9 receipts")
    wait_for(lambda: query(tsdb_dsn, "SELECT state FROM devices WHERE point_id=%s AND device_id='agent'",
                           point), what="the agent's status")

    points = api.get("/api/v1/points").json()
    mine = [p for p in points if p["id"] == point]
    assert mine and mine[0]["auto_registered"] is True

    detail = api.get(f"/api/v1/points/{point}").json()
    assert detail["devices"] == 4 and detail["devices_online"] == 1

    devices = {d["device_id"]: d for d in api.get(f"/api/v1/points/{point}/devices").json()}
    assert devices["agent"]["online"] is True and devices["agent"]["reported_state"] == "online"
    assert devices["agent"]["heartbeat_s"] == 30 and devices["agent"]["software"] == "yangyi-edge 0.1.0"
    # Event-only devices were heard from but never said "online": not online.
    assert devices["gas1"]["last_seen"] is not None and devices["gas1"]["online"] is False

    latest = {(r["device_id"], r["channel"]): r for r in
              api.get(f"/api/v1/points/{point}/readings/latest").json()}
    assert latest[("gas1", "gas.lel")]["value"] == 4.5
    assert latest[("gas1", "gas.co")]["vmean"] == 6.0 and latest[("gas1", "gas.co")]["n"] == 10

    diners = api.get(f"/api/v1/points/{point}/diners", params={"day": "2026-06-03"}).json()
    assert [e["card_id"] for e in diners["events"]] == ["card-1", "card-2", "card-1", "card-3"]
    meals = {m["meal"]: m for m in diners["meals"]}
    assert meals["lunch"] == {"meal": "lunch", "events": 3, "distinct_cards": 2, "distinct_accepted_cards": 2,
                              "deliveries": 0}
    assert meals["dinner"]["distinct_cards"] == 1 and list(meals) == ["lunch", "dinner"]
    assert api.get(f"/api/v1/points/{point}/diners", params={"day": "2026-06-02"}).json()["meals"][0][
        "distinct_cards"] == 1

    assert query(tsdb_dsn, "SELECT level, actions FROM safety_events WHERE point_id=%s", point) == [
        ("warn", ["buzzer"])]
    assert query(tsdb_dsn, "SELECT entries, exits, occupancy FROM count_events WHERE point_id=%s", point) == [
        (5, 2, 3)]


def test_unknown_point_is_404_and_bad_day_is_422(api: TestClient) -> None:
    assert api.get("/api/v1/points/nosuchpoint").status_code == 404
    assert api.get("/api/v1/points/nosuchpoint/devices").status_code == 404
    assert api.get("/api/v1/points/nosuchpoint/readings/latest").status_code == 404
    assert api.get("/api/v1/points/nosuchpoint/diners", params={"day": "2026-06-03"}).status_code == 404
    assert api.get("/api/v1/points/x/diners", params={"day": "June 3"}).status_code == 422


def test_health_and_openapi_without_cdn_docs(api: TestClient) -> None:
    health = api.get("/health")
    assert health.status_code == 200, health.text
    body = health.json()
    assert body["database"]["ok"] and body["broker"]["ok"] and body["status"] == "ok"
    spec = api.get("/openapi.json").json()
    assert "/api/v1/points/{point_id}/diners" in spec["paths"]
    assert api.get("/docs").status_code == 404


def test_health_reports_broker_down(tsdb_dsn: str, mqtt_server_account: Any) -> None:
    settings = api_settings(tsdb_dsn, mqtt_server_account)
    settings.mqtt.port = 1  # nothing listens there
    with TestClient(create_app(settings)) as client:
        health = client.get("/health")
    assert health.status_code == 503
    assert health.json()["database"]["ok"] is True and health.json()["broker"]["ok"] is False


def test_device_status_online_offline_and_stale(tsdb_dsn: str, mqtt_server_account: Any, publisher: Publisher,
                                               worker_factory: Callable[..., IngestWorker]) -> None:
    worker_factory()
    point = publisher.point
    clock_offset = timedelta()
    app = create_app(api_settings(tsdb_dsn, mqtt_server_account),
                     clock=lambda: datetime.now(UTC) + clock_offset)

    def status(state: str) -> None:
        publisher.raw("agent", "status", json.dumps({
            "v": 1, "point": point, "device": "agent", "ts": datetime.now(UTC).isoformat(), "state": state,
            "heartbeat_s": 5}), retain=True)

    with TestClient(app, headers=bearer_headers(tsdb_dsn)) as api:
        def agent() -> dict[str, Any] | None:
            r = api.get(f"/api/v1/points/{point}/devices")
            return next((d for d in r.json() if d["device_id"] == "agent"), None) if r.status_code == 200 else None

        status("online")
        wait_for(lambda: (a := agent()) and a["online"], what="agent online")
        # Two heartbeats (10 s) without hearing from it: no longer online although it said so.
        clock_offset = timedelta(seconds=11)
        a = agent()
        assert a is not None and a["online"] is False and a["reported_state"] == "online"
        clock_offset = timedelta()
        status("offline")  # what its last will says
        wait_for(lambda: (a := agent()) and a["reported_state"] == "offline", what="agent offline")
        a = agent()
        assert a is not None and a["online"] is False
        status("online")
        wait_for(lambda: (a := agent()) and a["online"], what="agent online again")
    publisher.raw("agent", "status", b"", retain=True)  # clear the retained message


def test_api_needs_a_principal_and_keeps_townships_apart(tsdb_dsn: str, mqtt_server_account: Any) -> None:
    """The production app (not a test app) guards every point route; health stays open for probes."""
    from .conftest import query as q

    with psycopg_connect(tsdb_dsn) as conn:
        conn.execute("INSERT INTO meal_points (id, name, township, village) VALUES "
                     "('guard-a', 'A', '城关镇', '东村'), ('guard-b', 'B', '山口乡', '西村') ON CONFLICT DO NOTHING")
    township_a = q(tsdb_dsn, "SELECT id FROM townships WHERE name = '城关镇'")[0][0]
    with TestClient(create_app(api_settings(tsdb_dsn, mqtt_server_account))) as anonymous:
        assert anonymous.get("/api/v1/points").status_code == 401
        assert anonymous.get("/api/v1/points/guard-a").status_code == 401
        assert anonymous.get("/health").status_code in (200, 503)
    officer_headers = bearer_headers(tsdb_dsn, "township_officer", township_id=township_a)
    with TestClient(create_app(api_settings(tsdb_dsn, mqtt_server_account)), headers=officer_headers) as officer:
        ids = {p["id"] for p in officer.get("/api/v1/points").json()}
        assert "guard-a" in ids and "guard-b" not in ids
        assert officer.get("/api/v1/points/guard-a").status_code == 200
        assert officer.get("/api/v1/points/guard-b").status_code == 404
        assert officer.get("/api/v1/points/guard-b/devices").status_code == 404
