"""The publisher in-process against the real broker: server→edge messages, offline queueing, outages."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.clock import SystemClock
from edge.config import AgentConfig, parse_config
from edge.outbox import Outbox
from edge.publisher import Publisher
from firmware_bridge.contract import Channel, Command, CommandName, Message, PointChannel, Roster

from .conftest import Collector

pytestmark = pytest.mark.integration


def config(tmp_path: Path, point: str, host: str, port: int, password: str) -> AgentConfig:
    return parse_config({
        "point": {"id": point},
        "mqtt": {"host": host, "port": port, "username": point, "password": password,
                 "reconnect_min_s": 1, "reconnect_max_s": 1},
        "outbox": {"path": str(tmp_path / "outbox.db")},
        "clock": {"assume_synced": True},
    })


def server_publish(account: Any, topic: str, payloads: list[bytes], retain: bool = False) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set(account.username, account.password)
    client.connect(account.host, account.port)
    client.loop_start()
    try:
        for payload in payloads:
            client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


def wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_server_messages_reach_handlers_and_bad_ones_are_skipped(tmp_path, unique_point_id, mqtt_account_factory,
                                                                  mqtt_server_account):
    acct = mqtt_account_factory(unique_point_id)
    cfg = config(tmp_path, unique_point_id, acct.host, acct.port, acct.password)
    now = datetime.now(UTC)
    cmd = Command(cmd_id="c1", point=unique_point_id, cmd=CommandName.PING, issued_at=now)
    roster = Roster(point=unique_point_id, version=3, issued_at=now)
    got: list[Message] = []
    lock = threading.Lock()

    def record(message: Message) -> None:
        with lock:
            got.append(message)

    def explode(_message: Message) -> None:
        raise RuntimeError("a broken plug-in")

    # First run: connect once so the broker holds a persistent session, then go offline.
    ob = Outbox(tmp_path / "outbox.db", unique_point_id)
    first = Publisher(cfg, ob, SystemClock(assume_synced=True))
    first.start()
    assert first.wait_connected(10)
    time.sleep(0.3)  # let the SUBSCRIBE complete before leaving
    first.stop(1)

    # While the agent is away the server sends a command, a bad payload and a retained roster.
    cmd_topic = f"yangyi/v1/{unique_point_id}/cmd"
    server_publish(mqtt_server_account, cmd_topic, [b"{not json", cmd.to_bytes()])
    server_publish(mqtt_server_account, f"yangyi/v1/{unique_point_id}/roster", [roster.to_bytes()], retain=True)

    second = Publisher(cfg, ob, SystemClock(assume_synced=True))
    second.on(PointChannel.CMD, explode)
    second.on(PointChannel.CMD, record)
    second.on(PointChannel.ROSTER, record)
    second.start()
    try:
        wait(lambda: len(got) >= 2, 10, "the queued command and the retained roster")
        time.sleep(0.3)
        with lock:
            assert sorted(type(m).__name__ for m in got) == ["Command", "Roster"]
            assert cmd in got and roster in got
        # A brand-new session (another client id) is given the retained roster on subscribing.
        fresh_mqtt = cfg.mqtt.model_copy(update={"client_id": f"edge-fresh-{unique_point_id}"})
        fresh_cfg = cfg.model_copy(update={"mqtt": fresh_mqtt})
        fresh_cfg.mqtt._password = cfg.mqtt.secret()
        fresh = Publisher(fresh_cfg, ob, SystemClock(assume_synced=True))
        fresh_got: list[Message] = []
        fresh.on(PointChannel.ROSTER, fresh_got.append)
        fresh.start()
        try:
            wait(lambda: fresh_got == [roster], 10, "the retained roster on a new session")
        finally:
            fresh.stop(1)
    finally:
        second.stop(1)
        ob.close()
        server_publish(mqtt_server_account, f"yangyi/v1/{unique_point_id}/roster", [b""], retain=True)


def test_events_wait_in_the_outbox_until_the_broker_is_back(tmp_path, unique_point_id, private_broker,
                                                            mqtt_account_factory, mqtt_server_account):
    acct = private_broker.account(mqtt_account_factory(unique_point_id))
    private_broker.reload()
    server = private_broker.account(mqtt_server_account)
    sub = Collector(server.host, server.port, server.username, server.password,
                    f"yangyi/v1/{unique_point_id}/+/diner").start()
    private_broker.stop()
    ob = Outbox(tmp_path / "outbox.db", unique_point_id)
    pub = Publisher(config(tmp_path, unique_point_id, acct.host, acct.port, acct.password), ob,
                    SystemClock(assume_synced=True))
    pub.start()
    try:
        for i in range(300):
            ob.append(Channel.DINER, "r1", {"method": "card", "card_id": f"C{i}", "decision": "accepted"},
                      ts=datetime.now(UTC), clock_synced=True)
        time.sleep(1.0)  # the publisher retries meanwhile; nothing may leave the outbox
        assert not pub.connected
        assert ob.depth() == 300
        private_broker.start()
        wait(lambda: ob.depth() == 0, 10, "the outbox to drain")
        sub.wait_for(lambda c: len(c.events()) >= 300, 10, "300 events at the subscriber")
        seqs = [m.body["seq"] for m in sub.events()]
        assert seqs == list(range(300))
        assert pub.published == 300
    finally:
        pub.stop(1)
        ob.close()
        sub.stop()


def test_rows_the_broker_refuses_go_to_dead_letters_not_away(tmp_path, unique_point_id, mqtt_account_factory):
    # Logged in as another point's account, the ACL refuses our topics: PUBACK "Not authorized".
    # Mosquitto 2.0.11 then drops the connection, so each refused row costs a reconnect (1 s here).
    other = mqtt_account_factory(f"{unique_point_id}x")
    cfg = parse_config({
        "point": {"id": unique_point_id},
        "mqtt": {"host": other.host, "port": other.port, "username": other.username, "password": other.password},
        "outbox": {"path": str(tmp_path / "outbox.db")},
        "clock": {"assume_synced": True},
    })
    ob = Outbox(tmp_path / "outbox.db", unique_point_id)
    for i in range(2):
        ob.append(Channel.DINER, "r1", {"method": "card", "card_id": f"C{i}", "decision": "accepted"},
                  ts=datetime.now(UTC), clock_synced=True)
    pub = Publisher(cfg, ob, SystemClock(assume_synced=True))
    pub.start()
    try:
        wait(lambda: ob.dead_count() == 2, 15, "two dead letters")
        assert ob.depth() == 0
        assert pub.published == 0
    finally:
        pub.stop(1)
        ob.close()
