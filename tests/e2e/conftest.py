"""End-to-end fixtures: a real ingest worker process, real agent processes, the API in-process.

Everything here runs the real pieces: `python -m server.ingest.worker` (restricted to the test's
point with YANGYI_MQTT_SUBSCRIBE_POINT) against the session's migrated `tsdb_dsn`, and
`python -m edge.agent` from a config dict. Use them together::

    def test_x(e2e_point, ingest_factory, agent_factory, api_factory, tmp_path):
        ingest_factory()                                   # waits until the worker has subscribed
        agent = agent_factory({"inputs": [...], "checkin": {...}})   # mqtt/outbox filled in
        api = api_factory()                                # TestClient, bureau_viewer token
        wait_until(lambda: db_rows(...), what="...")

Pass `account=private_broker.account(e2e_point.account)` (and, for the worker, the server account
on the private broker) to run against a broker the test may stop. Processes still running at the
end of the test are killed; the worker's persistent session is deleted from the broker.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ..conftest import query as db_query  # noqa: F401 - re-exported under the e2e tests' names
from ..conftest import wait_for as wait_until  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
POLL_SECONDS = 0.05
AGENT_ONLINE = "connected (session present"  # edge.publisher's log line on each connection


def delete_session(account: Any, client_id: str) -> None:
    """Connect as client_id with session expiry 0 so the broker drops that persistent session."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.username_pw_set(account.username, account.password)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0
    connected = threading.Event()
    client.on_connect = lambda *a: connected.set()
    try:
        client.connect(account.host, account.port, clean_start=True, properties=props)
    except OSError:
        return  # broker gone (a stopped private broker): nothing to clean
    client.loop_start()
    connected.wait(5)
    client.disconnect()
    client.loop_stop()


@dataclass
class Proc:
    """A child process writing its output to a log file, with helpers to wait on that log."""

    argv: list[str]
    log: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env})
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""

    def wait_log(self, needle: str, timeout: float = 30.0, count: int = 1) -> None:
        """Wait until `needle` appears `count` times in the log; fail early if the process died."""
        deadline = time.monotonic() + timeout
        while self.log_text().count(needle) < count:
            if not self.running:
                pytest.fail(f"{self.argv[2]} exited ({self.proc and self.proc.returncode}) before logging "
                            f"{needle!r}:\n{self.log_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {needle!r} in {self.log}:\n{self.log_text()[-3000:]}")
            time.sleep(POLL_SECONDS)

    def terminate(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def stop(self) -> None:
        """SIGTERM (a clean stop), then SIGKILL if it does not exit within 10 s."""
        try:
            self.terminate(10)
        except (subprocess.TimeoutExpired, AssertionError):
            self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@dataclass(frozen=True)
class E2EPoint:
    """The test's meal point: its id and its agent's broker account on the shared broker."""

    id: str
    account: Any


def clear_retained(account: Any, topics: list[str]) -> None:
    """Delete retained messages (an empty retained publish) so finished tests leave none behind."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"e2e-clean-{uuid.uuid4().hex[:8]}",
                         protocol=mqtt.MQTTv5)
    client.username_pw_set(account.username, account.password)
    try:
        client.connect(account.host, account.port)
    except OSError:
        return
    client.loop_start()
    for topic in topics:
        client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


@pytest.fixture
def e2e_point(unique_point_id: str, mqtt_account_factory: Callable[[str], Any], mqtt_server_account: Any
              ) -> Iterator[E2EPoint]:
    """The test's meal point and its agent's account; its retained roster and statuses are cleared after."""
    yield E2EPoint(unique_point_id, mqtt_account_factory(unique_point_id))
    clear_retained(mqtt_server_account, [f"yangyi/v1/{unique_point_id}/roster",
                                         f"yangyi/v1/{unique_point_id}/agent/status"])


@dataclass
class IngestProc(Proc):
    client_id: str = ""
    account: Any = None


@pytest.fixture
def ingest_factory(tsdb_dsn: str, mqtt_server_account: Any, e2e_point: E2EPoint, tmp_path: Path
                   ) -> Iterator[Callable[..., IngestProc]]:
    """Start `python -m server.ingest.worker` for the test's point; returns after it has subscribed.

    make(account=None, dsn=None, wait=True, **env) — account: the server account to use (default the
    shared broker's); extra keyword arguments become environment variables (e.g.
    YANGYI_INGEST_WRITER="thread").
    """
    started: list[IngestProc] = []

    def make(account: Any = None, dsn: str | None = None, wait: bool = True, **env: str) -> IngestProc:
        acct = account or mqtt_server_account
        client_id = f"e2e-ingest-{uuid.uuid4().hex[:8]}"
        proc = IngestProc(
            argv=[sys.executable, "-m", "server.ingest.worker", "--client-id", client_id],
            log=tmp_path / f"ingest-{len(started)}.log",
            env={"YANGYI_DB_DSN": dsn or tsdb_dsn, "YANGYI_MQTT_HOST": acct.host,
                 "YANGYI_MQTT_PORT": str(acct.port), "YANGYI_MQTT_USERNAME": acct.username,
                 "YANGYI_MQTT_PASSWORD": acct.password, "YANGYI_MQTT_SUBSCRIBE_POINT": e2e_point.id,
                 "YANGYI_MQTT_SESSION_EXPIRY_S": "300", "YANGYI_INGEST_BATCH_LATENCY_S": "0.05",
                 "YANGYI_INGEST_RETRY_INITIAL_S": "0.1", "YANGYI_INGEST_RETRY_MAX_S": "0.5", **env},
            client_id=client_id, account=acct,
        )
        started.append(proc.start())
        if wait:
            proc.wait_log("subscribed to", timeout=30)  # generous: the shared machine is often loaded
        return proc

    yield make
    for proc in started:
        proc.stop()
        delete_session(proc.account, proc.client_id)


@dataclass
class AgentProc(Proc):
    config: dict[str, Any] = field(default_factory=dict)
    directory: Path = Path()

    @property
    def outbox_path(self) -> Path:
        return Path(self.config["outbox"]["path"])


def agent_config(point: str, account: Any, directory: Path, **sections: Any) -> dict[str, Any]:
    """A full agent config: point, mqtt (password in a 0600 file), outbox under `directory`, plus sections."""
    directory.mkdir(parents=True, exist_ok=True)
    secret = directory / "mqtt_password"
    secret.write_text(account.password + "\n")
    secret.chmod(0o600)
    cfg: dict[str, Any] = {
        "point": {"id": point},
        "mqtt": {"host": account.host, "port": account.port, "username": account.username,
                 "password_file": str(secret), "reconnect_min_s": 1, "reconnect_max_s": 2},
        "outbox": {"path": str(directory / "outbox.db")},
        "heartbeat_s": 30,
        "clock": {"assume_synced": True},
        "inputs": [],
    }
    cfg.update(sections)
    return cfg


@pytest.fixture
def agent_factory(e2e_point: E2EPoint, tmp_path: Path) -> Iterator[Callable[..., AgentProc]]:
    """Start `python -m edge.agent` from a config dict (see agent_config; sections override defaults).

    make(sections, account=None, name="agent", wait_online=True) — `account` defaults to the point's
    account on the shared broker; the agent's files live in tmp_path/name (same name = same outbox and
    check-in state, for restarts). With wait_online, returns once the agent logged its connection.
    """
    started: list[AgentProc] = []

    def make(sections: dict[str, Any] | None = None, account: Any = None, name: str = "agent",
             wait_online: bool = True) -> AgentProc:
        directory = tmp_path / name
        cfg = agent_config(e2e_point.id, account or e2e_point.account, directory, **(sections or {}))
        path = directory / "agent.yaml"
        path.write_text(yaml.safe_dump(cfg, allow_unicode=True))
        proc = AgentProc(argv=[sys.executable, "-m", "edge.agent", "--config", str(path), "--flush-timeout", "8"],
                         log=directory / "agent.log", env={}, config=cfg, directory=directory)
        before = proc.log_text().count(AGENT_ONLINE)
        started.append(proc.start())
        if wait_online:
            proc.wait_log(AGENT_ONLINE, timeout=30, count=before + 1)
        return proc

    yield make
    for proc in started:
        proc.kill()


def bearer_headers(dsn: str, role: str = "bureau_viewer", **binding: Any) -> dict[str, str]:
    """Headers with a fresh integration token of this role and binding."""
    from datetime import UTC, datetime

    from server.auth.schemas import TokenCreate
    from server.auth.service import AuthService
    from server.auth.settings import AuthSettings

    spec = TokenCreate.model_validate({"name": f"e2e-{role}", "role": role, **binding})
    with psycopg.connect(dsn) as conn:
        token = AuthService(AuthSettings()).create_token(conn, spec, "tests", datetime.now(UTC))
        conn.commit()
    return {"Authorization": f"Bearer {token.secret}"}


@pytest.fixture
def api_factory(tsdb_dsn: str, mqtt_server_account: Any) -> Iterator[Callable[..., Any]]:
    """An in-process API client (FastAPI TestClient) with a fresh integration token.

    make(role="bureau_viewer", dsn=None, **binding) — binding as for tokens (township_id, village_id,
    point_ids). The app's MQTT settings name the shared broker's server account.
    """
    from fastapi.testclient import TestClient
    from pydantic import SecretStr

    from server.app import create_app
    from server.settings import DbSettings, MqttSettings, Settings

    with ExitStack() as stack:

        def make(role: str = "bureau_viewer", dsn: str | None = None, mqtt_account: Any = None,
                 **binding: Any) -> TestClient:
            db = dsn or tsdb_dsn
            acct = mqtt_account or mqtt_server_account
            settings = Settings(db=DbSettings(dsn=SecretStr(db)),
                                mqtt=MqttSettings(host=acct.host, port=acct.port, username=acct.username,
                                                  password=SecretStr(acct.password)))
            client = TestClient(create_app(settings), headers=bearer_headers(db, role=role, **binding))
            return stack.enter_context(client)

        yield make
