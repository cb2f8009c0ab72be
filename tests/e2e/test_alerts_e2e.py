"""Alerts end to end through the real pieces: a gas leak played on a Modbus sensor simulator (pty) →
agent process → broker → `yangyi-alerts` process → a request at the local stand-in for the WeCom robot;
then the caregiver taps the signed link in that message → API → the worker publishes ack_alarm →
the agent silences its buzzer and leaves the valve closed. And the other way: the caregiver presses
the local acknowledge button at the point → the agent silences its buzzer → the alert is acknowledged
through channel "edge"."""

from __future__ import annotations

import json
import re
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
import yaml

from edge.agent import Agent
from edge.config import load_config
from firmware_bridge.modbus_profiles import Quantity
from firmware_bridge.sim import scenarios as sc
from firmware_bridge.sim.modbus import ModbusBusSimulator
from firmware_bridge.sim.scenarios.player import ScenarioPlayer
from server.alerts.settings import load_alert_config

from .conftest import E2EPoint, Proc, agent_config, db_query, delete_session, wait_until

pytestmark = pytest.mark.integration

SPEED = 10.0  # sudden_leak: the hose slips off 30 scenario seconds in, 3 s of wall time
ROBOT_KEY = "e2e-robot-key"


@dataclass
class WeComStandIn:
    """A local HTTP server answering like the WeCom group robot and keeping every request body."""

    bodies: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    def __post_init__(self) -> None:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                ok = self.path == f"/cgi-bin/webhook/send?key={ROBOT_KEY}"
                if ok:
                    stand_in.bodies.append(json.loads(body))
                raw = json.dumps({"errcode": 0 if ok else 93000, "errmsg": "ok" if ok else "invalid"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/cgi-bin/webhook/send?key={ROBOT_KEY}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def wecom() -> Iterator[WeComStandIn]:
    stand_in = WeComStandIn()
    yield stand_in
    stand_in.close()


def actuator_calls(directory: Path, name: str) -> list[str]:
    path = directory / f"{name}.log"
    return [line.split()[1] for line in path.read_text().splitlines()] if path.exists() else []


def agent_sections(port: str, directory: Path) -> dict[str, Any]:
    panel = {name: {"type": "file", "path": str(directory / f"{name}.log")} for name in ("buzzer", "fan", "valve")}
    return {"panel": panel, "inputs": [{"type": "rs485_bus", "name": "bus0", "port": port, "summary_period_s": 1,
                                        "devices": [{"type": "modbus", "id": "gas1", "unit": 1,
                                                     "profile": "gas_generic", "interval_s": 0.2,
                                                     "timeout_s": 0.3}]}]}


def place_point_with_caregiver(dsn: str, point: str) -> str:
    with psycopg.connect(dsn) as conn:
        conn.execute("INSERT INTO meal_points (id, name, township, village) VALUES (%s, %s, %s, %s)",
                     (point, "幸福村助餐点", f"镇-{point}", f"村-{point}"))
        row = conn.execute(
            "INSERT INTO alert_contacts (name, role, mobile, endpoints) VALUES ('王阿姨', 'caregiver', '13800000001',"
            " '[{\"channel\": \"wecom\", \"address\": \"point-group\"}]') RETURNING id").fetchone()
        assert row is not None
        conn.execute("INSERT INTO alert_contact_points (contact_id, point_id) VALUES (%s, %s)", (row[0], point))
        conn.commit()
    return str(row[0])


def alert_config(tmp_path: Path, robot_url: str) -> Path:
    keys = tmp_path / "ack_link_keys"
    keys.write_text(f"k1 {uuid.uuid4().hex}\n")
    path = tmp_path / "alerts.yaml"
    path.write_text(yaml.safe_dump({
        "channels": {"wecom": {"robots": {"point-group": robot_url}}},
        "links": {"base_url": "http://testserver/api/v1/alert-ack", "keys_file": str(keys), "ttl_s": 3600},
    }))
    return path


def test_leak_reaches_the_caregiver_and_the_link_silences_the_buzzer(
    e2e_point: E2EPoint, wecom: WeComStandIn, agent_factory: Callable[..., Any], api_factory: Callable[..., Any],
    tsdb_dsn: str, mqtt_server_account: Any, tmp_path: Path,
) -> None:
    point = e2e_point.id
    caregiver = place_point_with_caregiver(tsdb_dsn, point)
    config_path = alert_config(tmp_path, wecom.url)
    client_id = f"e2e-alerts-{uuid.uuid4().hex[:8]}"
    acct = mqtt_server_account
    worker = Proc(argv=[sys.executable, "-m", "server.alerts.worker", "--config", str(config_path)],
                  log=tmp_path / "alerts.log",
                  env={"YANGYI_DB_DSN": tsdb_dsn, "YANGYI_MQTT_HOST": acct.host, "YANGYI_MQTT_PORT": str(acct.port),
                       "YANGYI_MQTT_USERNAME": acct.username, "YANGYI_MQTT_PASSWORD": acct.password,
                       "YANGYI_MQTT_SESSION_EXPIRY_S": "300", "YANGYI_ALERTS_SUBSCRIBE_POINT": point,
                       "YANGYI_ALERTS_CLIENT_ID": client_id, "YANGYI_ALERTS_SHARE_GROUP": client_id})
    scenario = sc.load_scenario("sudden_leak")
    try:
        worker.start()
        worker.wait_log("subscribed to", timeout=30)
        with ModbusBusSimulator(sc.modbus_units(scenario), link=tmp_path / "bus0") as sim:
            player = ScenarioPlayer(scenario, sim, SPEED)
            player.apply(0.0)
            stop = threading.Event()
            agent_factory(agent_sections(str(tmp_path / "bus0"), tmp_path))
            threading.Thread(target=player.run, args=(stop,), daemon=True).start()
            try:
                edge = wait_until(lambda: db_query(tsdb_dsn, "SELECT id, severity, source FROM alerts"
                                                   " WHERE point_id = %s AND condition = 'lel:edge'", point),
                                  timeout=20, what="the edge's own alarm as an alert")
                edge_id, severity, source = edge[0]
                assert (severity, source) == ("critical", "edge")

                def edge_message() -> str | None:
                    texts = [b["text"]["content"] for b in list(wecom.bodies)]
                    return next((t for t in texts if f"a={edge_id}" in t), None)

                text = wait_until(edge_message, timeout=10, what="the WeCom robot request for the edge alarm")
                assert text.startswith("【养怡】燃气严重报警") and "幸福村助餐点" in text
                assert wecom.bodies[0]["text"]["mentioned_mobile_list"] == ["13800000001"]
                assert "off" in actuator_calls(tmp_path, "valve") and actuator_calls(tmp_path, "buzzer")[-1] == "on"

                link = re.search(r"http://testserver/api/v1/alert-ack\?\S+", text)
                assert link is not None
                api = api_factory()
                api.app.state.alert_config = load_alert_config(config_path)
                target = urlsplit(link.group(0))
                r = api.post(f"{target.path}?{target.query}", headers={"Accept": "application/json"})
                assert r.status_code == 200, r.text
                assert r.json()["alert"]["acknowledged_by"] == f"contact:{caregiver}:王阿姨"

                wait_until(lambda: actuator_calls(tmp_path, "buzzer")[-1] == "off", timeout=15,
                           what="the buzzer silenced by the ack_alarm command")
                assert actuator_calls(tmp_path, "valve") == ["off"]  # never reopened from afar
                rows = db_query(tsdb_dsn, "SELECT a.state, a.ack_channel, n.channel, n.ok FROM alerts a"
                                " JOIN alert_notifications n ON n.alert_id = a.id WHERE a.id = %s", edge_id)
                assert rows[0] == ("acknowledged", "link", "wecom", True)
                sent = db_query(tsdb_dsn, "SELECT sent_at IS NOT NULL FROM alert_commands WHERE point_id = %s", point)
                assert sent == [(True,)]
            finally:
                stop.set()
    finally:
        worker.stop()
        delete_session(acct, client_id)


def test_local_button_acknowledges_the_alert_through_channel_edge(
    e2e_point: E2EPoint, wecom: WeComStandIn, tsdb_dsn: str, mqtt_server_account: Any, tmp_path: Path,
) -> None:
    point = e2e_point.id
    place_point_with_caregiver(tsdb_dsn, point)
    client_id = f"e2e-alerts-{uuid.uuid4().hex[:8]}"
    acct = mqtt_server_account
    worker = Proc(argv=[sys.executable, "-m", "server.alerts.worker", "--config",
                        str(alert_config(tmp_path, wecom.url))],
                  log=tmp_path / "alerts.log",
                  env={"YANGYI_DB_DSN": tsdb_dsn, "YANGYI_MQTT_HOST": acct.host, "YANGYI_MQTT_PORT": str(acct.port),
                       "YANGYI_MQTT_USERNAME": acct.username, "YANGYI_MQTT_PASSWORD": acct.password,
                       "YANGYI_MQTT_SESSION_EXPIRY_S": "300", "YANGYI_ALERTS_SUBSCRIBE_POINT": point,
                       "YANGYI_ALERTS_CLIENT_ID": client_id, "YANGYI_ALERTS_SHARE_GROUP": client_id})
    # The agent runs in this process (its real outbox and publisher on the real broker) so the test can
    # press its local button: SafetyHub.acknowledge is what the button does at the meal point.
    directory = tmp_path / "agent"
    panel = {name: {"type": "file", "path": str(tmp_path / f"{name}.log")} for name in ("buzzer", "fan", "valve")}
    cfg_path = directory / "agent.yaml"
    cfg = agent_config(point, e2e_point.account, directory, panel=panel)
    cfg_path.write_text(yaml.safe_dump(cfg))
    agent = Agent(load_config(cfg_path))
    try:
        worker.start()
        worker.wait_log("subscribed to", timeout=30)
        agent.start()
        agent.safety_hub.run(lambda e: e.observe("gas1", "lel", Quantity.GAS_LEL, 31.0, "%LEL"))
        rows = wait_until(lambda: db_query(tsdb_dsn, "SELECT id FROM alerts WHERE point_id = %s"
                                           " AND condition = 'lel:edge'", point), timeout=20, what="the edge alert")
        alert_id = rows[0][0]
        wait_until(lambda: any(f"a={alert_id}" in b["text"]["content"] for b in list(wecom.bodies)), timeout=10,
                   what="the caregiver's notification")
        assert actuator_calls(tmp_path, "buzzer")[-1] == "on"

        agent.safety_hub.acknowledge("button")
        assert actuator_calls(tmp_path, "buzzer")[-1] == "off"  # silenced at once, on site
        acked = wait_until(lambda: db_query(tsdb_dsn, "SELECT state, ack_channel, ack_by FROM alerts WHERE id = %s"
                                            " AND state = 'acknowledged'", alert_id), timeout=15,
                           what="the alert acknowledged by the local button")
        assert acked == [("acknowledged", "edge", "local:button")]
        timeline = db_query(tsdb_dsn, "SELECT kind, actor, channel FROM alert_events WHERE alert_id = %s"
                            " ORDER BY time, id", alert_id)
        assert timeline == [("opened", "system", None), ("acknowledged", "local:button", "edge")]
        # The buzzer is already silent: no ack_alarm goes back to the point, and the valve stays as it was.
        assert db_query(tsdb_dsn, "SELECT cmd_id FROM alert_commands WHERE point_id = %s", point) == []
        notices = db_query(tsdb_dsn, "SELECT kind FROM alert_notifications WHERE alert_id = %s", alert_id)
        assert notices == [("first",)]
    finally:
        agent.stop(2.0)
        worker.stop()
        delete_session(acct, client_id)
