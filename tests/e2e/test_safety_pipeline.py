"""Safety end to end through the real pieces: scenario → pty → agent process → local actuator, and →
broker → ingest process → TimescaleDB → API. With the network down during a leak the valve still
closes, and every event arrives after reconnection, in order, the safety lane first.

The agent's outputs are `file` actuators: each call is a line "<unix time> on|off" the test reads.
The gas valve is energised to stay open, so closing it is an "off".
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from firmware_bridge.contract import Command, CommandName, PointChannel, point_topic
from firmware_bridge.sim import scenarios as sc
from firmware_bridge.sim.modbus import ModbusBusSimulator
from firmware_bridge.sim.scenarios.player import ScenarioPlayer

from .conftest import E2EPoint, db_query, delete_session, wait_until

pytestmark = pytest.mark.integration

SPEED = 10.0  # sudden_leak: the hose slips off 30 scenario seconds in, 3 s of wall time


def outputs(directory: Path) -> dict[str, dict[str, Any]]:
    return {name: {"type": "file", "path": str(directory / f"{name}.log")} for name in ("buzzer", "fan", "valve")}


def actuator_calls(directory: Path, name: str) -> list[tuple[float, str]]:
    path = directory / f"{name}.log"
    if not path.exists():
        return []
    return [(float(t), state) for t, state in (line.split() for line in path.read_text().splitlines())]


def bus_sections(port: str, directory: Path) -> dict[str, Any]:
    return {
        "panel": outputs(directory),
        "inputs": [{"type": "rs485_bus", "name": "bus0", "port": port, "summary_period_s": 1, "devices": [
            {"type": "modbus", "id": "gas1", "unit": 1, "profile": "gas_generic", "interval_s": 0.2,
             "timeout_s": 0.3}]}],
    }


@dataclass
class Line:
    sim: ModbusBusSimulator
    player: ScenarioPlayer
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def play(self) -> float:
        """Start the scenario now; returns the wall time the leak starts."""
        self.thread = threading.Thread(target=self.player.run, args=(self.stop,), daemon=True)
        self.thread.start()
        return time.time() + 30 / SPEED


@pytest.fixture
def leak_line(tmp_path: Path) -> Iterator[Line]:
    scenario = sc.load_scenario("sudden_leak")
    with ModbusBusSimulator(sc.modbus_units(scenario), link=tmp_path / "bus0") as sim:
        player = ScenarioPlayer(scenario, sim, SPEED)
        player.apply(0.0)  # background gas until the scenario starts
        line = Line(sim, player)
        yield line
        line.stop.set()
        if line.thread is not None:
            line.thread.join(5)


def send_command(account: Any, point: str, cmd: CommandName) -> str:
    cmd_id = uuid.uuid4().hex[:12]
    body = Command(cmd_id=cmd_id, point=point, cmd=cmd, issued_at=datetime.now(UTC))
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"e2e-cmd-{cmd_id}", protocol=mqtt.MQTTv5)
    client.username_pw_set(account.username, account.password)
    client.connect(account.host, account.port)
    client.loop_start()
    try:
        info = client.publish(point_topic(point, PointChannel.CMD), body.model_dump_json(), qos=1)
        info.wait_for_publish(10)
        assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()
    return cmd_id


def test_sudden_leak_closes_valve_and_reaches_the_api(
    e2e_point: E2EPoint, leak_line: Line, ingest_factory: Callable[..., Any], agent_factory: Callable[..., Any],
    api_factory: Callable[..., Any], tsdb_dsn: str, mqtt_server_account: Any, tmp_path: Path,
) -> None:
    point = e2e_point.id
    ingest_factory()
    agent = agent_factory(bus_sections(str(tmp_path / "bus0"), tmp_path))
    wait_until(lambda: db_query(tsdb_dsn, "SELECT 1 FROM telemetry WHERE point_id = %s AND device_id = 'gas1'"
                                " AND channel = 'lel'", point), timeout=15, what="gas telemetry in the database")
    assert actuator_calls(tmp_path, "valve") == []

    leak_at = leak_line.play()
    wait_until(lambda: ("off" in [s for _, s in actuator_calls(tmp_path, "valve")]), timeout=10,
               what="the valve to close")
    closed_at = next(t for t, s in actuator_calls(tmp_path, "valve") if s == "off")
    assert closed_at >= leak_at - 0.5  # closed by the leak, not before it
    assert actuator_calls(tmp_path, "buzzer")[-1][1] == "on" and actuator_calls(tmp_path, "fan")[-1][1] == "on"

    rows = wait_until(lambda: db_query(
        tsdb_dsn, "SELECT level, prev_level, rule, value, threshold, latched, actions FROM safety_events"
        " WHERE point_id = %s AND device_id = 'gas1' AND channel = 'lel' ORDER BY time", point),
        timeout=10, what="the alarm in the database")
    level, prev, rule, value, threshold, latched, actions = rows[0]
    assert (level, prev, rule, value, threshold, latched) == ("alarm2", "normal", "gas.lel", 65.0, 50.0, True)
    assert {"valve.close", "buzzer.on", "fan.on"} <= set(actions)

    api = api_factory()
    state = api.get(f"/api/v1/points/{point}/safety/state").json()
    assert state["level"] == "alarm2" and state["alarms"] == 1
    (gas,) = [d for d in state["devices"] if d["device_id"] == "gas1"]
    assert gas["channels"][0]["latched"] is True
    alarms = api.get(f"/api/v1/points/{point}/safety/events", params={"level": "alarm2"}).json()
    assert [e["device_id"] for e in alarms] == ["gas1"]
    wait_until(lambda: any(p["max"] >= 65.0 for p in api.get(
        f"/api/v1/points/{point}/devices/gas1/channels/lel/series", params={"bucket_s": 60}).json()["points"]),
        timeout=10, what="the leak in the series")
    series = api.get(f"/api/v1/points/{point}/devices/gas1/channels/lel/series").json()
    edge_alarm2 = {"source": "edge", "level": "alarm2", "value": 50.0, "direction": "high", "name": None}
    assert edge_alarm2 in series["thresholds"]

    # The county acknowledges: the buzzer stops, the valve stays closed, the server learns of the ack.
    cmd_id = send_command(mqtt_server_account, point, CommandName.ACK_ALARM)
    wait_until(lambda: actuator_calls(tmp_path, "buzzer")[-1][1] == "off", timeout=10, what="the buzzer silenced")
    acked = wait_until(lambda: db_query(
        tsdb_dsn, "SELECT level, latched FROM safety_events WHERE point_id = %s AND message = %s", point,
        f"acknowledged (server:{cmd_id})"), timeout=10, what="the acknowledgement in the database")
    assert acked == [("alarm2", False)]  # still 65 %LEL: the level stays, the latch is released
    assert [s for _, s in actuator_calls(tmp_path, "valve")] == ["off"]  # nothing reopened it
    assert agent.running


@dataclass
class Collector:
    """Records every event message of a point in arrival order (persistent session, QoS 1)."""

    account: Any
    point: str
    messages: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    subscribed: threading.Event = field(default_factory=threading.Event)
    client_id: str = field(default_factory=lambda: f"e2e-sub-{uuid.uuid4().hex[:8]}")

    def start(self) -> Collector:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5)
        self.client.username_pw_set(self.account.username, self.account.password)
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = lambda c, *_a: c.subscribe(f"yangyi/v1/{self.point}/+/+", qos=1)
        self.client.on_subscribe = lambda *_a: self.subscribed.set()
        self.client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 300
        self.client.connect_async(self.account.host, self.account.port, 30, clean_start=False, properties=props)
        self.client.loop_start()
        assert self.subscribed.wait(10)
        return self

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        channel = msg.topic.rsplit("/", 1)[1]
        if channel in ("telemetry", "safety"):
            with self.lock:
                self.messages.append((channel, json.loads(msg.payload)))

    def snapshot(self) -> list[tuple[str, dict[str, Any]]]:
        with self.lock:
            return list(self.messages)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def outbox_rows(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return dict(conn.execute("SELECT channel, count(*) FROM rows GROUP BY channel").fetchall())
    except sqlite3.OperationalError:
        return {}
    finally:
        conn.close()


def test_network_down_during_a_leak(
    e2e_point: E2EPoint, leak_line: Line, private_broker: Any, ingest_factory: Callable[..., Any],
    agent_factory: Callable[..., Any], tsdb_dsn: str, mqtt_server_account: Any, tmp_path: Path,
) -> None:
    point = e2e_point.id
    private_broker.reload()  # the point's account was added after this broker started
    server = private_broker.account(mqtt_server_account)
    collector = Collector(server, point).start()
    try:
        ingest_factory(account=server)
        agent = agent_factory(bus_sections(str(tmp_path / "bus0"), tmp_path),
                              account=private_broker.account(e2e_point.account))
        wait_until(lambda: collector.snapshot(), timeout=15, what="telemetry while online")

        private_broker.stop()
        down_at = datetime.now(UTC)
        leak_line.play()
        wait_until(lambda: "off" in [s for _, s in actuator_calls(tmp_path, "valve")], timeout=10,
                   what="the valve to close with the network down")
        assert private_broker.proc.poll() is not None
        # Offline: the alarm and a few summaries wait in the outbox.
        wait_until(lambda: outbox_rows(agent.outbox_path).get("safety", 0) >= 1
                   and outbox_rows(agent.outbox_path).get("telemetry", 0) >= 3, timeout=10,
                   what="events queued in the outbox")
        before = len(collector.snapshot())

        private_broker.start()
        up_at = datetime.now(UTC)
        wait_until(lambda: any(c == "safety" for c, _ in collector.snapshot()[before:]), timeout=15,
                   what="the alarm after reconnection")
        wait_until(lambda: any(c == "telemetry" and datetime.fromisoformat(b["ts"]) > up_at
                               for c, b in collector.snapshot()), timeout=15, what="the backlog drained")
    finally:
        collector.stop()
        delete_session(server, collector.client_id)

    received = collector.snapshot()
    # Every event arrives: one device, one sequence, no gaps (duplicates allowed, QoS 1).
    seqs = sorted({b["seq"] for _, b in received})
    assert seqs == list(range(seqs[0], seqs[-1] + 1))
    # In order within each lane.
    for lane in ("safety", "telemetry"):
        order = [b["seq"] for c, b in received if c == lane]
        assert order == sorted(order), (lane, order)
    # Made during the outage: the safety events overtake the telemetry queued before them.
    offline = [(i, c) for i, (c, b) in enumerate(received) if down_at <= datetime.fromisoformat(b["ts"]) < up_at]
    safety_at = [i for i, c in offline if c == "safety"]
    telemetry_at = [i for i, c in offline if c == "telemetry"]
    assert safety_at and len(telemetry_at) >= 3
    assert max(safety_at) < min(telemetry_at)
    alarm = next(b for c, b in received if c == "safety")
    assert alarm["level"] == "alarm2" and "valve.close" in alarm["actions"]
    # And the ingest worker stored it once the broker was back.
    wait_until(lambda: db_query(tsdb_dsn, "SELECT level FROM safety_events WHERE point_id = %s", point),
               timeout=10, what="the alarm in the database")
    assert [s for _, s in actuator_calls(tmp_path, "valve")] == ["off"]
