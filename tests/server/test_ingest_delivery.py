"""Ingest delivery guarantees: dedup of redeliveries, dead letters, crash between commit and ack, outages."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from server.db.migrate import migrate
from server.ingest.worker import IngestWorker
from server.ingest.writer import CRASH_AFTER_COMMIT_ENV, CRASH_EXIT_STATUS

from .conftest import Publisher, end_session, query, wait_for

pytestmark = pytest.mark.integration


def telemetry(point: str, device: str, seq: int, ts: datetime, value: float = 1.0) -> bytes:
    return json.dumps({"v": 1, "point": point, "device": device, "seq": seq, "ts": ts.isoformat(),
                       "clock_synced": True, "readings": [{"ch": "elec.v", "unit": "V", "v": value}]}).encode()


def rows(dsn: str, point: str) -> tuple[int, int]:
    r = query(dsn, "SELECT count(*), count(DISTINCT (device_id, seq)) FROM telemetry WHERE point_id = %s", point)
    return int(r[0][0]), int(r[0][1])


def test_redelivered_message_makes_one_row(tsdb_dsn: str, publisher: Publisher,
                                           worker_factory: Callable[..., IngestWorker]) -> None:
    worker = worker_factory()
    point = publisher.point
    ts = datetime.now(UTC)
    payload = telemetry(point, "m1", 7, ts)
    publisher.raw("m1", "telemetry", payload)
    publisher.raw("m1", "telemetry", payload)  # usually in the same batch: deduped in Python
    wait_for(lambda: worker.writer.stats.messages >= 2, what="two messages handled")
    publisher.raw("m1", "telemetry", payload)  # a later batch: deduped by the receipt's unique key
    wait_for(lambda: worker.writer.stats.messages >= 3, what="the third message")
    # Same seq, another ts: a different event (a device whose seq counter restarted), kept.
    publisher.raw("m1", "telemetry", telemetry(point, "m1", 7, ts + timedelta(seconds=1)))
    wait_for(lambda: worker.writer.stats.messages >= 4, what="the fourth message")
    assert query(tsdb_dsn, "SELECT count(*) FROM telemetry WHERE point_id=%s", point)[0][0] == 2
    assert query(tsdb_dsn, "SELECT count(*) FROM message_receipts WHERE point_id=%s", point)[0][0] == 2
    assert worker.writer.stats.duplicates == 2


def test_bad_payloads_become_dead_letters_and_the_worker_goes_on(
        tsdb_dsn: str, publisher: Publisher, worker_factory: Callable[..., IngestWorker]) -> None:
    worker = worker_factory(max_payload_bytes=4096)
    point = publisher.point
    now = datetime.now(UTC)
    publisher.raw("d1", "telemetry", b"\xff\xfe not json")
    publisher.raw("d1", "telemetry", json.dumps({"v": 1, "point": point, "device": "d1", "seq": 1}))
    publisher.raw("d1", "telemetry", telemetry(point, "other-device", 2, now))
    big = json.dumps({"v": 1, "point": point, "device": "d1", "seq": 3, "ts": now.isoformat(),
                      "clock_synced": True, "readings": [{"ch": "x", "v": float(i)} for i in range(200)]})
    assert len(big) > 4096
    publisher.raw("d1", "telemetry", big)
    # Valid by the contract but unstorable: PostgreSQL text cannot hold NUL.
    publisher.event("d1", "diner", 4, now, method="card", card_id="ab\u0000cd", decision="accepted")
    publisher.raw("d1", "telemetry", telemetry(point, "d1", 5, now))  # and a good one after them all
    wait_for(lambda: query(tsdb_dsn, "SELECT 1 FROM telemetry WHERE point_id=%s AND seq=5", point),
             what="the good message")
    wait_for(lambda: len(query(tsdb_dsn, "SELECT 1 FROM dead_letters WHERE topic LIKE %s",
                               f"yangyi/v1/{point}/%")) == 5, what="5 dead letters")
    dead = query(tsdb_dsn, "SELECT reason, payload, error FROM dead_letters WHERE topic LIKE %s ORDER BY id",
                 f"yangyi/v1/{point}/%")
    assert sorted(d[0] for d in dead) == sorted(
        ["invalid_json", "schema", "topic_payload_mismatch", "oversize", "storage_rejected"])
    assert dead[0][1] == b"\xff\xfe not json"  # raw bytes kept
    assert all(d[2] for d in dead)
    assert worker.writer.alive
    assert rows(tsdb_dsn, point) == (1, 1)
    assert query(tsdb_dsn, "SELECT count(*) FROM diner_events WHERE point_id=%s", point)[0][0] == 0


def _worker_env(dsn: str, account: Any, point: str, client_id: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("YANGYI_")}
    env.update({
        "YANGYI_DB_DSN": dsn, "YANGYI_MQTT_HOST": account.host, "YANGYI_MQTT_PORT": str(account.port),
        "YANGYI_MQTT_USERNAME": account.username, "YANGYI_MQTT_PASSWORD": account.password,
        "YANGYI_MQTT_CLIENT_ID": client_id, "YANGYI_MQTT_SUBSCRIBE_POINT": point,
        "YANGYI_MQTT_SESSION_EXPIRY_S": "300", "YANGYI_INGEST_BATCH_LATENCY_S": "0.5",
    })
    return env


class WorkerProcess:
    """`python -m server.ingest.worker` as a child process, its output collected by a thread."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "server.ingest.worker"], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_subscribed(self) -> None:
        wait_for(lambda: "subscribed to" in self.output or self.proc.poll() is not None, what="subscription")
        assert self.proc.poll() is None, self.output

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=15)
        self._reader.join(timeout=5)
        return code


def test_crash_between_commit_and_ack_leaves_one_row_per_event(
        tsdb_dsn: str, mqtt_server_account: Any, publisher: Publisher) -> None:
    point = publisher.point
    client_id = f"test-crash-{uuid.uuid4().hex[:8]}"
    env = _worker_env(tsdb_dsn, mqtt_server_account, point, client_id)
    crashing = WorkerProcess({**env, CRASH_AFTER_COMMIT_ENV: "1"})
    restarted: WorkerProcess | None = None
    try:
        crashing.wait_subscribed()
        start = datetime.now(UTC)
        n = 40
        for seq in range(n):
            publisher.raw("m1", "telemetry", telemetry(point, "m1", seq, start + timedelta(milliseconds=seq)))
        assert crashing.proc.wait(timeout=15) == CRASH_EXIT_STATUS, crashing.output
        committed = rows(tsdb_dsn, point)
        assert committed[0] > 0 and committed[0] == committed[1]  # it did commit before exiting

        restarted = WorkerProcess(env)
        restarted.wait_subscribed()
        publisher.raw("m1", "telemetry", telemetry(point, "m1", n, start + timedelta(seconds=1)))  # sentinel
        wait_for(lambda: rows(tsdb_dsn, point)[1] == n + 1, timeout=15, what="every event stored")
        assert restarted.stop() == 0
        assert rows(tsdb_dsn, point) == (n + 1, n + 1)
        # The broker redelivered the committed-but-unacked batch and the receipts caught every copy.
        stats = re.search(r"'duplicates': (\d+)", restarted.output)
        assert stats, restarted.output
        assert int(stats.group(1)) >= committed[0]
    finally:
        crashing.stop()
        if restarted is not None:
            restarted.stop()
        end_session(mqtt_server_account, client_id)


def test_database_outage_retries_and_loses_nothing(
        tsdb_admin_dsn: str, publisher: Publisher, worker_factory: Callable[..., IngestWorker]) -> None:
    name = f"yangyi_outage_{uuid.uuid4().hex[:8]}"
    dsn = tsdb_admin_dsn.rsplit("/", 1)[0] + "/" + name  # does not exist yet: every connect fails
    worker = worker_factory(dsn=dsn)
    point = publisher.point
    now = datetime.now(UTC)
    for seq in range(20):
        publisher.raw("m1", "telemetry", telemetry(point, "m1", seq, now + timedelta(milliseconds=seq)))
    wait_for(lambda: worker.writer.stats.retries >= 2, what="retries while the database is down")
    assert worker.writer.stats.messages == 0  # nothing committed, nothing acked
    with psycopg.connect(tsdb_admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        migrate(dsn)
        wait_for(lambda: rows(dsn, point) == (20, 20), timeout=15, what="rows after the outage")
        assert worker.writer.stats.messages == 20
    finally:
        worker.writer.stop()
        with psycopg.connect(tsdb_admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_messages_held_during_an_outage_are_not_acked(
        tsdb_dsn: str, tsdb_admin_dsn: str, publisher: Publisher,
        worker_factory: Callable[..., IngestWorker]) -> None:
    missing = tsdb_admin_dsn.rsplit("/", 1)[0] + f"/yangyi_missing_{uuid.uuid4().hex[:8]}"
    client_id = f"test-outage-{uuid.uuid4().hex[:8]}"
    first = worker_factory(dsn=missing, client_id=client_id)
    point = publisher.point
    now = datetime.now(UTC)
    for seq in range(10):
        publisher.raw("m1", "telemetry", telemetry(point, "m1", seq, now + timedelta(milliseconds=seq)))
    wait_for(lambda: first.writer.stats.retries >= 1, what="a retry")
    first.stop()  # gives up without a commit: nothing may have been acked
    worker_factory(client_id=client_id)  # same session, working database
    wait_for(lambda: rows(tsdb_dsn, point) == (10, 10), timeout=15, what="the redelivered messages")


def test_acked_messages_are_not_redelivered(tsdb_dsn: str, publisher: Publisher,
                                          worker_factory: Callable[..., IngestWorker]) -> None:
    client_id = f"test-acks-{uuid.uuid4().hex[:8]}"
    first = worker_factory(client_id=client_id)
    point = publisher.point
    now = datetime.now(UTC)
    for seq in range(300):
        publisher.raw("m1", "telemetry", telemetry(point, "m1", seq, now + timedelta(milliseconds=seq)))
    wait_for(lambda: first.writer.stats.messages == 300, what="300 messages committed")
    first.stop()
    second = worker_factory(client_id=client_id)  # same persistent session
    publisher.raw("m1", "telemetry", telemetry(point, "m1", 300, now + timedelta(seconds=1)))
    wait_for(lambda: second.writer.stats.messages >= 1, what="the next message")
    # Every PUBACK of the batch reached the broker: the new session got the new message only.
    assert second.writer.stats.snapshot()["messages"] == 1 and second.writer.stats.duplicates == 0
    assert rows(tsdb_dsn, point) == (301, 301)


def test_shared_subscription_splits_the_stream_without_loss_or_duplicates(
        tsdb_dsn: str, publisher: Publisher, worker_factory: Callable[..., IngestWorker]) -> None:
    group = f"g{uuid.uuid4().hex[:8]}"
    a = worker_factory(share_group=group)
    b = worker_factory(share_group=group)
    point = publisher.point
    now = datetime.now(UTC)
    for seq in range(200):
        publisher.raw("m1", "telemetry", telemetry(point, "m1", seq, now + timedelta(milliseconds=seq)))
    wait_for(lambda: a.writer.stats.messages + b.writer.stats.messages == 200, what="200 messages")
    assert a.writer.stats.messages > 0 and b.writer.stats.messages > 0
    assert rows(tsdb_dsn, point) == (200, 200)
