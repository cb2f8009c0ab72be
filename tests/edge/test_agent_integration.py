"""Real agent processes against the real Mosquitto: delivery, kill -9, broker restart, last will."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge.agent import EXIT_OK
from edge.outbox import Outbox
from firmware_bridge.contract import Channel

from .conftest import AgentProc, Collector, Received, write_agent_config

pytestmark = pytest.mark.integration

BACKLOG = 3000
FAST = {"rate_per_min": 6000, "telemetry_interval_s": 0.02}  # about 150 events a second


def check_delivery(events: list[Received], expected: dict[str, int]) -> int:
    """Every seq below expected[device] arrived, first copies in seq order; return the duplicate count."""
    by_device: dict[str, list[Received]] = defaultdict(list)
    for m in events:
        by_device[m.body["device"]].append(m)
    assert set(by_device) == set(expected)
    duplicates = 0
    for device, count in expected.items():
        first: dict[int, bytes] = {}
        order: list[int] = []
        for m in by_device[device]:
            seq = m.body["seq"]
            if seq in first:
                assert m.payload == first[seq], f"{device} seq {seq} redelivered with a different payload"
                duplicates += 1
            else:
                first[seq] = m.payload
                order.append(seq)
        missing = sorted(set(range(count)) - set(order))
        assert not missing, f"{device}: {len(missing)} events missing, first {missing[:10]}"
        assert order == list(range(count)), f"{device}: events reordered"
    return duplicates


def all_arrived(expected: dict[str, int]) -> Callable[[Collector], bool]:
    def done(c: Collector) -> bool:
        seen: dict[str, set[int]] = defaultdict(set)
        for m in c.events():
            seen[m.body["device"]].add(m.body["seq"])
        return all(len(seen[d]) >= n for d, n in expected.items())

    return done


def outbox_state(config_dir: Path, point_id: str) -> tuple[dict[str, int], int]:
    ob = Outbox(config_dir / "outbox.db", point_id)
    try:
        return ob.next_seqs(), ob.depth()
    finally:
        ob.close()


def test_agent_publishes_every_event_in_order(tmp_path, unique_point_id, mqtt_account_factory,
                                              mqtt_server_account, agents):
    acct = mqtt_account_factory(unique_point_id)
    sub = Collector(acct.host, acct.port, mqtt_server_account.username, mqtt_server_account.password,
                    f"yangyi/v1/{unique_point_id}/#").start()
    try:
        cfg = write_agent_config(tmp_path, unique_point_id, acct.host, acct.port, acct.password,
                                 rate_per_min=1200, telemetry_interval_s=0.1)
        agent = AgentProc(cfg, tmp_path / "agent.log").start()
        agents.append(agent)
        sub.wait_for(lambda c: len(c.events()) >= 60, 10, "60 events")
        assert agent.terminate() == EXIT_OK
        expected, depth = outbox_state(tmp_path, unique_point_id)
        assert depth == 0, "a clean stop flushes the outbox"
        assert set(expected) == {"sim-reader", "sim-sensor"}
        sub.wait_for(all_arrived(expected), 10, f"all of {expected}")
        assert check_delivery(sub.events(), expected) == 0  # no disruption, no duplicates
        statuses = sub.statuses()
        assert statuses[0]["state"] == "online"
        assert statuses[-1]["state"] == "offline"
        assert statuses[-1]["detail"] == "stopped"
        assert statuses[-1]["outbox_depth"] == 0
    finally:
        sub.stop()


def test_kill_9_mid_stream_loses_and_reorders_nothing(tmp_path, unique_point_id, mqtt_account_factory,
                                                      mqtt_server_account, agents):
    acct = mqtt_account_factory(unique_point_id)
    sub = Collector(acct.host, acct.port, mqtt_server_account.username, mqtt_server_account.password,
                    f"yangyi/v1/{unique_point_id}/#").start()
    try:
        cfg = write_agent_config(tmp_path, unique_point_id, acct.host, acct.port, acct.password, **FAST)
        # A backlog (as after a day offline), so the kill lands while rows are in flight and unsent.
        backlog = Outbox(tmp_path / "outbox.db", unique_point_id)
        ts = datetime.now(UTC)
        for i in range(BACKLOG):
            backlog.append(Channel.DINER, "backlog", {"method": "card", "card_id": f"{i:010d}", "decision": "accepted"},
                           ts=ts, clock_synced=True)
        backlog.close()
        first = AgentProc(cfg, tmp_path / "agent.log").start()
        agents.append(first)
        sub.wait_for(lambda c: len(c.events()) >= 200, 10, "200 events before the kill")
        first.kill9()
        at_kill, left_at_kill = outbox_state(tmp_path, unique_point_id)
        assert left_at_kill > 0, "the kill should land mid-stream"
        sub.wait_for(lambda c: c.statuses()[-1]["state"] == "offline", 5, "the last will")
        assert sub.statuses()[-1]["detail"] == "connection lost (last will)"

        second = AgentProc(cfg, tmp_path / "agent.log").start()
        agents.append(second)
        sub.wait_for(lambda c: len(c.events()) >= sum(at_kill.values()) + 100, 10, "events after the restart")
        assert second.terminate() == EXIT_OK
        expected, depth = outbox_state(tmp_path, unique_point_id)
        assert depth == 0
        assert expected["backlog"] == BACKLOG
        assert all(expected[d] > at_kill[d] for d in at_kill if d != "backlog")
        sub.wait_for(all_arrived(expected), 10, f"all of {expected}")
        duplicates = check_delivery(sub.events(), expected)
        print(f"at kill: seqs {at_kill}, {left_at_kill} unsent rows; final {expected}; {duplicates} duplicates")
    finally:
        sub.stop()


def test_kill_9_leaves_a_retained_offline_status(tmp_path, unique_point_id, mqtt_account_factory,
                                                 mqtt_server_account, agents):
    acct = mqtt_account_factory(unique_point_id)
    cfg = write_agent_config(tmp_path, unique_point_id, acct.host, acct.port, acct.password,
                             rate_per_min=60, telemetry_interval_s=None)
    status_topic = f"yangyi/v1/{unique_point_id}/agent/status"
    watcher = Collector(acct.host, acct.port, mqtt_server_account.username, mqtt_server_account.password,
                        status_topic).start()
    try:
        agent = AgentProc(cfg, tmp_path / "agent.log").start()
        agents.append(agent)
        watcher.wait_for(lambda c: any(s["state"] == "online" for s in c.statuses()), 10, "online status")
        agent.kill9()
        watcher.wait_for(lambda c: c.statuses()[-1]["state"] == "offline", 5, "the last will")
    finally:
        watcher.stop()
    # A newcomer subscribing later is told at once, from the retained message.
    late = Collector(acct.host, acct.port, mqtt_server_account.username, mqtt_server_account.password,
                     status_topic).start()
    try:
        late.wait_for(lambda c: bool(c.snapshot()), 5, "the retained status")
        (msg,) = late.snapshot()
        assert msg.retain
        assert msg.body["state"] == "offline"
        assert msg.body["point"] == unique_point_id
    finally:
        late.stop()


def test_broker_restart_while_publishing_loses_nothing(tmp_path, unique_point_id, private_broker,
                                                       mqtt_account_factory, mqtt_server_account, agents):
    acct = private_broker.account(mqtt_account_factory(unique_point_id))
    private_broker.reload()
    server = private_broker.account(mqtt_server_account)
    sub = Collector(server.host, server.port, server.username, server.password,
                    f"yangyi/v1/{unique_point_id}/#").start()
    try:
        cfg = write_agent_config(tmp_path, unique_point_id, acct.host, acct.port, acct.password, **FAST)
        agent = AgentProc(cfg, tmp_path / "agent.log").start()
        agents.append(agent)
        sub.wait_for(lambda c: len(c.events()) >= 200, 10, "200 events before the restart")
        private_broker.restart()
        before = len(sub.events())
        sub.wait_for(lambda c: len(c.events()) >= before + 200, 12, "events after the broker restart")
        assert agent.terminate() == EXIT_OK
        expected, depth = outbox_state(tmp_path, unique_point_id)
        assert depth == 0
        sub.wait_for(all_arrived(expected), 10, f"all of {expected}")
        duplicates = check_delivery(sub.events(), expected)
        print(f"delivered {expected} across a broker restart with {duplicates} duplicates")
    finally:
        sub.stop()
