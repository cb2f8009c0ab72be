"""Shared fixtures: the real broker and the real TimescaleDB started by deploy/native (make services)."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy" / "native"
STATE_DIR = Path(os.environ.get("YANGYI_STATE_DIR", "/var/lib/yangyi"))
MQTT_HOST = os.environ.get("YANGYI_MQTT_HOST", "127.0.0.1")
MQTT_PORT = int(os.environ.get("YANGYI_MQTT_PORT", "18830"))
DB_PORT = int(os.environ.get("YANGYI_DB_PORT", "54329"))


POLL_SECONDS = 0.05


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll until predicate() is truthy; return its value or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(POLL_SECONDS)


def query(dsn: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run one query on its own connection and return every row."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, params).fetchall()


@dataclass(frozen=True)
class MqttAccount:
    host: str
    port: int
    username: str
    password: str


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _require(host: str, port: int, what: str) -> None:
    if not _port_open(host, port):
        pytest.fail(f"{what} is not listening on {host}:{port}; run `make services` (make test does)")


@pytest.fixture(scope="session")
def mqtt_server_account() -> MqttAccount:
    """The server's own broker account (reads and writes all of yangyi/v1)."""
    _require(MQTT_HOST, MQTT_PORT, "the project's Mosquitto")
    password = (STATE_DIR / "secrets" / "mqtt_server_password").read_text().strip()
    return MqttAccount(MQTT_HOST, MQTT_PORT, "yangyi-server", password)


@pytest.fixture(scope="session")
def mqtt_account_factory(mqtt_server_account: MqttAccount) -> Callable[[str], MqttAccount]:
    """Create a broker account for a meal point's agent (user name = point id) and reload the broker."""

    def make(point_id: str) -> MqttAccount:
        password = secrets.token_urlsafe(16)
        subprocess.run(["bash", str(DEPLOY / "mosquitto.sh"), "add-user", point_id, password], check=True)
        subprocess.run(["bash", str(DEPLOY / "mosquitto.sh"), "reload"], check=True)
        time.sleep(0.3)  # SIGHUP is asynchronous; give the broker a moment to re-read the password file
        return MqttAccount(MQTT_HOST, MQTT_PORT, point_id, password)

    return make


@pytest.fixture
def restart_broker() -> Callable[[], None]:
    """Stop the project's broker, then start it again (persistence keeps sessions and queues)."""

    def restart() -> None:
        subprocess.run(["bash", str(DEPLOY / "mosquitto.sh"), "restart"], check=True)

    return restart


@pytest.fixture(scope="session")
def tsdb_admin_dsn() -> str:
    _require("127.0.0.1", DB_PORT, "the project's TimescaleDB")
    out = subprocess.run(
        ["bash", str(DEPLOY / "timescaledb.sh"), "dsn"], check=True, capture_output=True, text=True
    )
    return out.stdout.strip()


@contextmanager
def scratch_database(admin_dsn: str, prefix: str, migrated: bool = True) -> Iterator[str]:
    """A database of its own (timescaledb from template1), migrated to head unless told not to; dropped
    afterwards, retrying while TimescaleDB's own background worker (not ours to end) still holds it."""
    import psycopg

    from server.db.migrate import migrate

    name = f"yangyi_{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = admin_dsn.rsplit("/", 1)[0] + "/" + name
    try:
        if migrated:
            migrate(dsn)
        yield dsn
    finally:
        deadline = time.monotonic() + 10
        while True:
            try:
                with psycopg.connect(admin_dsn, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                break
            except (psycopg.errors.InsufficientPrivilege, psycopg.errors.ObjectInUse):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


@pytest.fixture(scope="session")
def tsdb_dsn(tsdb_admin_dsn: str) -> Iterator[str]:
    """A fresh database for this test session, migrated to head."""
    with scratch_database(tsdb_admin_dsn, "test") as dsn:
        yield dsn


@pytest.fixture
def unique_point_id() -> str:
    """A meal point id no other test uses, so retained messages and sessions do not leak between tests."""
    return f"t{uuid.uuid4().hex[:10]}"


@dataclass
class PrivateBroker:
    """A Mosquitto of the test's own, with the project's accounts and ACL, that a test may restart."""

    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def conf(self) -> Path:
        return self.workdir / "mosquitto.conf"

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        log = open(self.workdir / "mosquitto.log", "ab")  # noqa: SIM115 - kept open for the process
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.conf)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while not _port_open("127.0.0.1", self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"private broker did not start; see {self.workdir / 'mosquitto.log'}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop cleanly (SIGTERM): Mosquitto saves its persistence file on the way out."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def reload(self) -> None:
        """Re-read the password file (accounts added after start)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)
        time.sleep(0.3)

    def account(self, base: MqttAccount) -> MqttAccount:
        """The same credentials, pointed at this broker."""
        return MqttAccount("127.0.0.1", self.port, base.username, base.password)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def private_broker(tmp_path: Path, mqtt_server_account: MqttAccount) -> Iterator[PrivateBroker]:
    """A restartable broker sharing the project broker's password file and ACL (so accounts work)."""
    mq_dir = Path(os.environ.get("YANGYI_MQTT_DIR", STATE_DIR / "mosquitto"))  # the suite's broker (run-tests.sh)
    port = _free_port()
    (tmp_path / "data").mkdir()
    template = (mq_dir / "mosquitto.conf").read_text()
    lines = []
    for line in template.splitlines():
        key = line.split(" ", 1)[0]
        if key in {"listener", "pid_file", "persistence_location", "log_dest"}:
            continue
        lines.append(line)
    lines += [
        f"listener {port} 127.0.0.1",
        f"persistence_location {tmp_path / 'data'}/",
        "log_dest stderr",
        "user root",
    ]
    broker = PrivateBroker(port=port, workdir=tmp_path)
    broker.conf.write_text("\n".join(lines) + "\n")
    broker.start()
    yield broker
    broker.kill()


TEST_POINT_RE = r"^t[a-z]*[0-9a-f]{3,}(-[0-9]{4})?$"  # ids tests make (unique_point_id and friends)


@pytest.fixture(scope="session", autouse=True)
def _clear_retained_test_messages() -> Iterator[None]:
    """After the session, remove retained status/roster/config messages of test points from the shared
    broker, so `make run` on the same machine shows only real meal points."""
    yield
    if not _port_open(MQTT_HOST, MQTT_PORT):
        return
    import re

    import paho.mqtt.client as mqtt

    password_file = STATE_DIR / "secrets" / "mqtt_server_password"
    if not password_file.exists():
        return
    pattern = re.compile(TEST_POINT_RE)
    topics: set[str] = set()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set("yangyi-server", password_file.read_text().strip())

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        parts = msg.topic.split("/")
        if msg.retain and len(parts) > 2 and pattern.match(parts[2]):
            topics.add(msg.topic)

    client.on_message = on_message
    try:
        client.connect(MQTT_HOST, MQTT_PORT)
        client.subscribe("yangyi/v1/#", qos=0)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            client.loop(timeout=0.1)
        for topic in topics:
            client.publish(topic, b"", qos=1, retain=True)
        for _ in range(20):
            client.loop(timeout=0.05)
        client.disconnect()
    except OSError:
        pass
