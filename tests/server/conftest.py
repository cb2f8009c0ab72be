"""Fixtures for server tests: an ingest worker for one test point, a publisher, the API client."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import SecretStr

from server.ingest.worker import IngestWorker
from server.settings import DbSettings, IngestSettings, MqttSettings, Settings

from ..conftest import query, scratch_database, wait_for  # noqa: F401 - re-exported: the server tests import them from here


def end_session(account: Any, client_id: str) -> None:
    """Delete a persistent session on the broker so it stops queueing for a finished test."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.username_pw_set(account.username, account.password)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0
    connected = threading.Event()
    client.on_connect = lambda *a: connected.set()
    client.connect(account.host, account.port, clean_start=True, properties=props)
    client.loop_start()
    connected.wait(5)
    client.disconnect()
    client.loop_stop()


def worker_settings(dsn: str, account: Any, point: str, client_id: str, **ingest: Any) -> Settings:
    return Settings(
        db=DbSettings(dsn=SecretStr(dsn)),
        mqtt=MqttSettings(host=account.host, port=account.port, username=account.username,
                          password=SecretStr(account.password), client_id=client_id,
                          subscribe_point=point, session_expiry_s=300),
        ingest=IngestSettings(**{"batch_latency_s": 0.05, "retry_initial_s": 0.1, "retry_max_s": 0.5,
                                 **ingest}),
    )


class Publisher:
    """A meal point's agent account publishing QoS 1 and waiting for each PUBACK."""

    def __init__(self, account: Any) -> None:
        self.point = account.username
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv5)
        self.client.username_pw_set(account.username, account.password)
        self.client.connect(account.host, account.port)
        self.client.loop_start()

    def raw(self, device: str, channel: str, payload: bytes | str, retain: bool = False,
            point: str | None = None) -> None:
        topic = f"yangyi/v1/{point or self.point}/{device}/{channel}"
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(10)
        assert info.is_published()

    def event(self, device: str, channel: str, seq: int, ts: datetime | None = None, **fields: Any) -> dict[str, Any]:
        body = {"v": 1, "point": self.point, "device": device, "seq": seq,
                "ts": (ts or datetime.now(UTC)).isoformat(), "clock_synced": True, **fields}
        self.raw(device, channel, json.dumps(body))
        return body

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def point_account(mqtt_account_factory: Callable[[str], Any], unique_point_id: str) -> Any:
    return mqtt_account_factory(unique_point_id)


@pytest.fixture
def publisher(point_account: Any) -> Iterator[Publisher]:
    pub = Publisher(point_account)
    yield pub
    pub.close()


@pytest.fixture
def worker_factory(tsdb_dsn: str, mqtt_server_account: Any, unique_point_id: str
                   ) -> Iterator[Callable[..., IngestWorker]]:
    """Start in-process ingest workers subscribed to the test's point only; stopped and cleaned up after."""
    started: list[IngestWorker] = []

    def make(dsn: str | None = None, client_id: str | None = None, share_group: str | None = None,
             **ingest: Any) -> IngestWorker:
        cid = client_id or f"test-ingest-{uuid.uuid4().hex[:8]}"
        worker = IngestWorker(worker_settings(dsn or tsdb_dsn, mqtt_server_account, unique_point_id, cid,
                                              **ingest), share_group=share_group)
        worker.start()
        started.append(worker)
        wait_for(worker.subscribed.is_set, what="the worker to subscribe")
        return worker

    yield make
    for worker in started:
        worker.stop()
        end_session(mqtt_server_account, worker.client_id)


@pytest.fixture
def private_dsn(tsdb_admin_dsn: str) -> Iterator[str]:
    """A migrated database of this test's own, for tests that delete data across all points."""
    with scratch_database(tsdb_admin_dsn, "priv") as dsn:
        yield dsn


def bearer_headers(dsn: str, role: str = "bureau_viewer", **binding: Any) -> dict[str, str]:
    """Headers with a fresh integration token (county-wide bureau viewer unless told otherwise)."""
    from datetime import UTC, datetime

    from server.auth.schemas import TokenCreate
    from server.auth.service import AuthService
    from server.auth.settings import AuthSettings

    spec = TokenCreate.model_validate({"name": f"tests-{role}", "role": role, **binding})
    with psycopg.connect(dsn) as conn:
        token = AuthService(AuthSettings()).create_token(conn, spec, "tests", datetime.now(UTC))
        conn.commit()
    return {"Authorization": f"Bearer {token.secret}"}
