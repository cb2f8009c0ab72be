"""Registry test helpers: meal points in places, valid resident ID numbers, API clients per role, rosters."""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import SecretStr

from firmware_bridge import residentid
from firmware_bridge.contract import Roster
from server.app import create_app
from server.auth.schemas import TokenCreate
from server.auth.service import AuthService
from server.auth.settings import AuthSettings
from server.settings import DbSettings, MqttSettings, Settings

_numbers = itertools.count(1)


def resident_id(birth: str = "19500101", male: bool = True) -> str:
    """A valid, session-unique resident ID number born on `birth` (YYYYMMDD)."""
    n = next(_numbers) + uuid.uuid4().int % 100_000 * 1000
    region = f"{(n // 500) % 1_000_000:06d}"
    seq = (n % 500) * 2 + (1 if male else 0)
    first17 = f"{region}{birth}{seq:03d}"
    return first17 + residentid.check_char(first17)


def make_point(dsn: str, point_id: str, township: str | None = None, village: str | None = None
               ) -> tuple[int | None, int | None]:
    """Create a meal point in a (new, unique) township and village; return their ids."""
    with psycopg.connect(dsn) as conn:
        conn.execute("INSERT INTO meal_points (id, name, township, village) VALUES (%s, %s, %s, %s)",
                     (point_id, f"point {point_id}", township, village))
        row = conn.execute("SELECT township_id, village_id FROM meal_point_places WHERE point_id = %s",
                           (point_id,)).fetchone()
    assert row is not None
    return row[0], row[1]


@dataclass
class FakeClock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime.now(UTC))


@pytest.fixture
def api_as(tsdb_dsn: str, mqtt_server_account: Any, clock: FakeClock) -> Iterator[Callable[..., TestClient]]:
    """make(role, **binding) → a TestClient with a token of that role; the app uses the fake clock."""
    settings = Settings(db=DbSettings(dsn=SecretStr(tsdb_dsn)),
                        mqtt=MqttSettings(host=mqtt_server_account.host, port=mqtt_server_account.port,
                                          username=mqtt_server_account.username,
                                          password=SecretStr(mqtt_server_account.password)))
    app = create_app(settings, clock=clock)
    with ExitStack() as stack:

        def make(role: str = "bureau_admin", **binding: Any) -> TestClient:
            spec = TokenCreate.model_validate({"name": f"t-{role}", "role": role, **binding})
            with psycopg.connect(tsdb_dsn) as conn:
                token = AuthService(AuthSettings()).create_token(conn, spec, "tests", datetime.now(UTC))
                conn.commit()
            client = TestClient(app, headers={"Authorization": f"Bearer {token.secret}"})
            return stack.enter_context(client)

        yield make


@pytest.fixture(autouse=True)
def _clear_rosters(request: pytest.FixtureRequest) -> Iterator[None]:
    """Leave no retained roster of an integration test's points on the shared broker."""
    if "integration" not in request.keywords:
        yield
        return
    unique_point_id: str = request.getfixturevalue("unique_point_id")
    mqtt_server_account: Any = request.getfixturevalue("mqtt_server_account")
    yield
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-clean-{uuid.uuid4().hex[:8]}",
                         protocol=mqtt.MQTTv5)
    client.username_pw_set(mqtt_server_account.username, mqtt_server_account.password)
    client.connect(mqtt_server_account.host, mqtt_server_account.port)
    client.loop_start()
    for point in (unique_point_id, unique_point_id + "x"):
        client.publish(f"yangyi/v1/{point}/roster", b"", qos=1, retain=True).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def retained_roster(account: Any, point_id: str, timeout: float = 5.0) -> Roster | None:
    """The retained roster of a point as a new subscriber gets it (None if there is none)."""
    got: list[bytes] = []
    done = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-roster-{uuid.uuid4().hex[:8]}",
                         protocol=mqtt.MQTTv5)
    client.username_pw_set(account.username, account.password)

    def on_connect(c: mqtt.Client, *_a: Any) -> None:
        c.subscribe(f"yangyi/v1/{point_id}/roster", qos=1)

    def on_subscribe(*_a: Any) -> None:
        threading.Timer(0.5, done.set).start()  # a retained message comes right after the SUBACK

    def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.retain:
            got.append(bytes(msg.payload))
            done.set()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect(account.host, account.port)
    client.loop_start()
    try:
        done.wait(timeout)
    finally:
        client.disconnect()
        client.loop_stop()
    return Roster.model_validate_json(got[-1]) if got else None
