"""Edge test helpers: a persistent-session subscriber and real agent processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool

    @property
    def body(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.payload)
        return data


@dataclass
class Collector:
    """Subscribes with a persistent session (QoS 1) and records every message in arrival order."""

    host: str
    port: int
    username: str
    password: str
    topic: str | list[str]
    messages: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    subscribed: threading.Event = field(default_factory=threading.Event)

    def start(self, timeout: float = 10.0) -> Collector:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"test-sub-{uuid.uuid4().hex[:10]}", protocol=mqtt.MQTTv5
        )
        self.client.username_pw_set(self.username, self.password)
        self.client.reconnect_delay_set(1, 2)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_a: self.subscribed.set()
        self.client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 300
        self.client.connect_async(self.host, self.port, 30, clean_start=False, properties=props)
        self.client.loop_start()
        assert self.subscribed.wait(timeout), "subscriber did not subscribe"
        return self

    def _on_connect(self, client: mqtt.Client, *_a: Any) -> None:
        topics = [self.topic] if isinstance(self.topic, str) else self.topic
        client.subscribe([(t, 1) for t in topics])

    def _on_message(self, _c: mqtt.Client, _ud: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append(Received(msg.topic, bytes(msg.payload), bool(msg.retain)))

    def snapshot(self) -> list[Received]:
        with self.lock:
            return list(self.messages)

    def events(self) -> list[Received]:
        return [m for m in self.snapshot() if not m.topic.endswith("/status")]

    def statuses(self) -> list[dict[str, Any]]:
        return [m.body for m in self.snapshot() if m.topic.endswith("/status")]

    def wait_for(self, predicate: Callable[[Collector], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            time.sleep(0.05)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class AgentProc:
    """A real `python -m edge.agent` process."""

    config: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> AgentProc:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "edge.agent", "--config", str(self.config), "--flush-timeout", "8"],
                stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        return self

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def ensure_dead(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def write_agent_config(
    directory: Path, point_id: str, host: str, port: int, password: str, **sim: Any
) -> Path:
    """An agent config whose simulated input taps all day long, at the given rates."""
    directory.mkdir(parents=True, exist_ok=True)
    secret = directory / "mqtt_password"
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    cfg = {
        "point": {"id": point_id},
        "mqtt": {"host": host, "port": port, "username": point_id, "password_file": str(secret),
                 "reconnect_min_s": 1, "reconnect_max_s": 2, "inflight_window": 50},
        "outbox": {"path": str(directory / "outbox.db")},
        "heartbeat_s": 30,
        "clock": {"assume_synced": True},
        "inputs": [{
            "type": "simulated", "seed": 1,
            "meals": [{"meal": "lunch", "start": "00:00:00", "end": "23:59:59.999999"}],
            **sim,
        }],
    }
    path = directory / "agent.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture
def agents() -> Iterator[list[AgentProc]]:
    """Agent processes started by a test; any still running at the end are killed."""
    started: list[AgentProc] = []
    yield started
    for agent in started:
        agent.ensure_dead()
