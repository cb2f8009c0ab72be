"""The alert API on the real database: list and filter, detail with timeline, acknowledge, resolve with
on-site confirmation, scope, contacts CRUD, the signed link, and server-sent events across processes."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from pydantic import SecretStr

from firmware_bridge.contract import SafetyLevel
from server.alerts.links import AckLinks
from server.alerts.router import AlertApi
from server.alerts.service import AlertActions, AlertEngine
from server.alerts.settings import AlertConfig
from server.app import create_app
from server.settings import DbSettings, Settings

from .dbkit import bearer_headers, db, feed, leak, place_point

pytestmark = pytest.mark.integration

KEY = b"0123456789abcdef-test-key"
BASE = "https://yangyi.example/api/v1/alert-ack"


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def links() -> AckLinks:
    return AckLinks({"k1": KEY}, "k1", BASE, ttl_s=3600)


def make_app(dsn: str, clock: Clock, links: AckLinks) -> Any:
    app = create_app(Settings(db=DbSettings(dsn=SecretStr(dsn))), clock=clock)
    app.state.alert_api = AlertApi(AlertConfig(), AlertActions(), links, dsn)
    return app


@pytest.fixture
def app(tsdb_dsn: str, clock: Clock, links: AckLinks) -> Any:
    return make_app(tsdb_dsn, clock, links)


def open_leak(dsn: str, point: str, at: datetime) -> str:
    engine = AlertEngine(AlertConfig(), point)
    with db(dsn) as conn:
        engine.load(conn, at)
        return feed(engine, conn, leak(point, at))[0].alert.id


def test_list_detail_ack_and_resolve_with_on_site_confirmation(tsdb_dsn: str, app: Any, point: dict[str, Any],
                                                               clock: Clock) -> None:
    alert_id = open_leak(tsdb_dsn, point["id"], clock.now)
    p = point["id"]
    with TestClient(app, headers=bearer_headers(tsdb_dsn, role="bureau_admin")) as api:
        listed = api.get("/api/v1/alerts", params={"point_id": p, "state": "open", "hazard": "gas"}).json()
        assert [a["id"] for a in listed] == [alert_id]
        assert listed[0]["needs_on_site_confirmation"] is True and listed[0]["severity"] == "alarm"
        assert api.get("/api/v1/alerts", params={"point_id": p, "hazard": "electric"}).json() == []
        assert api.get(f"/api/v1/points/{p}/alerts", params={"min_severity": "critical"}).json() == []

        r = api.post(f"/api/v1/points/{p}/alerts/{alert_id}/resolve", json={"note": "好了"})
        assert r.status_code == 422 and "on-site" in r.json()["detail"]

        clock.now += timedelta(minutes=2)
        r = api.post(f"/api/v1/points/{p}/alerts/{alert_id}/ack")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["events"] == ["acknowledged"] and body["command_id"]
        assert body["alert"]["acknowledged_via"] == "web" and body["alert"]["acknowledged_by"].startswith("token:")
        again = api.post(f"/api/v1/points/{p}/alerts/{alert_id}/ack").json()
        assert again["events"] == [] and again["command_id"] is None

        note = {"on_site": True, "note": "更换软管，复测正常"}
        r = api.post(f"/api/v1/points/{p}/alerts/{alert_id}/resolve", json=note)
        assert r.status_code == 200 and r.json()["events"] == ["confirmed"]
        assert r.json()["alert"]["state"] == "acknowledged"  # the edge still reports the leak

        detail = api.get(f"/api/v1/points/{p}/alerts/{alert_id}").json()
        assert [t["kind"] for t in detail["timeline"]] == ["opened", "acknowledged", "confirmed"]
        assert detail["rectification_note"] == "更换软管，复测正常"
        assert api.get(f"/api/v1/points/{p}/alerts/nope").status_code == 404
        assert api.post(f"/api/v1/points/{p}/alerts/nope/ack").status_code == 404


def test_viewers_may_not_act_and_other_places_see_nothing(tsdb_dsn: str, app: Any, point: dict[str, Any],
                                                          clock: Clock, unique_point_id: str) -> None:
    alert_id = open_leak(tsdb_dsn, point["id"], clock.now)
    p = point["id"]
    _, other_village = place_point(tsdb_dsn, unique_point_id + "x")
    viewer = bearer_headers(tsdb_dsn, role="bureau_viewer")
    stranger = bearer_headers(tsdb_dsn, role="village_officer", village_id=other_village)
    officer = bearer_headers(tsdb_dsn, role="village_officer", village_id=point["village_id"])
    with TestClient(app) as api:
        assert api.post(f"/api/v1/points/{p}/alerts/{alert_id}/ack", headers=viewer).status_code == 403
        assert api.get(f"/api/v1/points/{p}/alerts", headers=stranger).status_code == 404
        assert api.post(f"/api/v1/points/{p}/alerts/{alert_id}/ack", headers=stranger).status_code == 404
        # The county-wide list is scope-aware: each village sees its own alerts only.
        assert alert_id not in [a["id"] for a in api.get("/api/v1/alerts", headers=stranger).json()]
        assert alert_id in [a["id"] for a in api.get("/api/v1/alerts", headers=officer).json()]
        assert [a["id"] for a in api.get(f"/api/v1/points/{p}/alerts", headers=officer).json()] == [alert_id]
        assert api.post(f"/api/v1/points/{p}/alerts/{alert_id}/ack", headers=officer).status_code == 200


def test_contacts_crud_and_the_chain_for_a_point(tsdb_dsn: str, app: Any, point: dict[str, Any]) -> None:
    p = point["id"]
    with TestClient(app, headers=bearer_headers(tsdb_dsn, role="bureau_admin")) as api:
        chain = api.get(f"/api/v1/points/{p}/alert-contacts").json()
        assert sorted(c["role"] for c in chain) == ["caregiver", "township_leader", "village_officer"]
        bad = api.post("/api/v1/alert-contacts", json={"name": "x", "role": "village_officer", "point_ids": [p]})
        assert bad.status_code == 422
        r = api.post("/api/v1/alert-contacts", json={
            "name": "李师傅", "role": "caregiver", "point_ids": [p], "mobile": "13600000004",
            "endpoints": [{"channel": "inapp", "address": "me"}, {"channel": "sms", "address": "13600000004"}],
            "quiet_hours": False})
        assert r.status_code == 201, r.text
        cid = r.json()["id"]
        assert r.json()["point_ids"] == [p] and r.json()["endpoints"][0]["channel"] == "inapp"
        assert len(api.get(f"/api/v1/points/{p}/alert-contacts").json()) == 4
        r = api.patch(f"/api/v1/alert-contacts/{cid}", json={"active": False, "name": "李师傅（休假）"})
        assert r.status_code == 200 and r.json()["active"] is False
        assert len(api.get(f"/api/v1/points/{p}/alert-contacts").json()) == 3  # inactive people are not told
        assert api.post("/api/v1/alert-contacts", json={"name": "y", "role": "caregiver",
                                                        "point_ids": ["no-such-point"]}).status_code == 422
        assert api.delete(f"/api/v1/alert-contacts/{cid}").status_code == 204
        assert api.get(f"/api/v1/alert-contacts/{cid}").status_code == 404
        viewer = bearer_headers(tsdb_dsn, role="bureau_viewer")
        assert api.post("/api/v1/alert-contacts", headers=viewer, json={
            "name": "z", "role": "township_leader", "township_id": point["township_id"]}).status_code == 403


def test_signed_link_page_then_acknowledge_as_that_person(tsdb_dsn: str, app: Any, point: dict[str, Any],
                                                          clock: Clock, links: AckLinks) -> None:
    alert_id = open_leak(tsdb_dsn, point["id"], clock.now)
    url = links.url(alert_id, point["village_officer"], clock.now)
    path = urlsplit(url).path + "?" + urlsplit(url).query
    with TestClient(app) as anon:  # no login: the link is the credential
        page = anon.get(path)
        assert page.status_code == 200 and "<form method=post" in page.text
        assert anon.get(f"/api/v1/points/{point['id']}/alerts/{alert_id}").status_code == 401
        tampered = path.replace(f"p={point['village_officer']}", f"p={point['caregiver']}")
        assert anon.post(tampered).status_code == 403
        r = anon.post(path, headers={"Accept": "application/json"})
        assert r.status_code == 200, r.text
        alert = r.json()["alert"]
        assert alert["state"] == "acknowledged" and alert["acknowledged_via"] == "link"
        assert alert["acknowledged_by"] == f"contact:{point['village_officer']}:张安全员"
        assert r.json()["command_id"]
        assert "已有人确认" in anon.post(path).text
        clock.now += timedelta(hours=2)
        assert anon.post(path).status_code == 410


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(app: Any) -> Iterator[str]:
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
    feed = app.state.alert_api.feed
    if feed is not None:
        feed.stop()


def test_server_sent_events_carry_changes_written_by_another_process(tsdb_dsn: str, served: str,
                                                                      point: dict[str, Any], clock: Clock) -> None:
    p = point["id"]
    headers = bearer_headers(tsdb_dsn, role="bureau_admin")
    seen: list[str] = []
    ready = threading.Event()

    def read() -> None:
        with httpx.stream("GET", f"{served}/api/v1/points/{p}/alerts/stream", headers=headers, timeout=15) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            for line in r.iter_lines():
                if line.startswith(": connected"):
                    ready.set()
                if line.startswith("data: "):
                    seen.append(line[6:])
                    if len(seen) >= 2:
                        return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert ready.wait(10), "stream did not open"
    # The "worker" here is another connection writing through the engine: only NOTIFY links them.
    engine = AlertEngine(AlertConfig(), p)
    with db(tsdb_dsn) as conn:
        engine.load(conn, clock.now)
        feed(engine, conn, leak(p, clock.now))
        feed(engine, conn, leak(p, clock.now + timedelta(seconds=5), seq=2, level=SafetyLevel.ALARM2, value=55.0))
    reader.join(10)
    assert len(seen) == 2, seen
    assert '"events":["opened"]' in seen[0] and f'"point_id":"{p}"' in seen[0]
    assert '"severity":"critical"' in seen[1]


def test_an_open_stream_makes_its_user_present_and_closing_it_ends_that(tsdb_dsn: str, served: str,
                                                                        point: dict[str, Any]) -> None:
    """The in-app channel counts a person reachable only while one of their streams is open; the
    presence row must go when the client goes (the stream ends by cancellation then)."""
    from server.auth.schemas import UserCreate
    from server.auth.service import AuthService
    from server.auth.settings import AuthSettings

    p = point["id"]
    name = f"carer{p[-6:]}"
    with db(tsdb_dsn) as conn:
        user = AuthService(AuthSettings()).create_user(conn, UserCreate.model_validate(
            {"username": name, "password": "长城长城长城2026", "display_name": "护理员", "role": "caregiver",
             "point_ids": [p]}), "tests", datetime.now(UTC))  # the new user id
        row = conn.execute("INSERT INTO alert_contacts (name, role, user_id) VALUES ('护理员', 'caregiver', %s)"
                           " RETURNING id", (user,)).fetchone()
        conn.commit()
    assert row is not None
    person = str(row[0])

    def sessions() -> int:
        with db(tsdb_dsn) as conn:
            found = conn.execute("SELECT count(*) FROM alert_inapp_sessions WHERE person_id = %s", (person,)).fetchone()
        return int(found[0]) if found else 0

    ready, stop = threading.Event(), threading.Event()

    def read() -> None:
        with httpx.Client(base_url=served, timeout=15) as web:
            r = web.post("/api/v1/auth/login", json={"username": name, "password": "长城长城长城2026"})
            assert r.status_code == 200, r.text
            with web.stream("GET", f"/api/v1/points/{p}/alerts/stream") as s:
                for line in s.iter_lines():
                    if line.startswith(": connected"):
                        ready.set()
                        stop.wait(10)
                        return  # closes the stream and the connection

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert ready.wait(10), "stream did not open"
    assert sessions() == 1
    stop.set()
    reader.join(10)
    deadline = time.monotonic() + 10
    while sessions() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sessions() == 0, "the closed stream still counts as present"
