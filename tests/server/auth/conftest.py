"""Fixtures for auth tests: an app with the auth router and the point routers behind the guard, a
fake clock, test clients with their own addresses, and a small county of two townships."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import psycopg
import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi.testclient import TestClient
from psycopg import sql
from pydantic import SecretStr

from server.app import GUARDED_ROUTERS, OPEN_ROUTERS, SCOPE_AWARE_ROUTES, add_error_handlers
from server.auth import repository
from server.auth.deps import Auditor, Conn, CurrentScope, auditor, guard_points
from server.auth.schemas import UserCreate
from server.auth.scopes import Role
from server.auth.service import AuthService
from server.auth.settings import AuthSettings
from server.db.pool import make_pool
from server.settings import DbSettings, Settings

PASSWORD = "meal-point-2026!"
# Cheap argon2 so tests run fast; the parameters themselves are tested in test_auth_pure.
FAST = {"argon2_time_cost": 1, "argon2_memory_kib": 8, "argon2_parallelism": 1}


def auth_settings(**overrides: Any) -> AuthSettings:
    values: dict[str, Any] = {**FAST, "login_window_s": 60, "login_max_per_account": 3, "login_max_per_ip": 6,
                              "session_idle_minutes": 30, "session_max_hours": 8, **overrides}
    return AuthSettings(**values)


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime.now(UTC).replace(microsecond=0))


# The list pattern for scoped routers: a list route filters with scope.sql_filter and is named in
# guard_points(scope_aware=...); this is what the registry's list_points should become.
pattern_router = APIRouter(prefix="/api/v1/pattern", tags=["pattern"])


@pattern_router.get("/devices")
def scoped_devices(conn: Conn, scope: CurrentScope) -> list[dict[str, str]]:
    where = scope.sql_filter("point_id")
    rows = conn.execute(sql.SQL("SELECT point_id, device_id FROM devices WHERE {} ORDER BY point_id, device_id")
                        .format(where.sql), where.params).fetchall()
    return [{"point_id": r[0], "device_id": r[1]} for r in rows]


@pattern_router.post("/points/{point_id}/ack")
def acknowledge(point_id: str, conn: Conn, audit: Annotated[Auditor, Depends(auditor)]) -> dict[str, int]:
    """How another domain records a privileged action: in its own transaction, committed before answering."""
    entry = audit("pattern.ack", f"point:{point_id}", note="checked on site")
    conn.commit()
    return {"audit_id": entry}


@pattern_router.get("/unfiltered")
def unfiltered_devices(conn: Conn) -> list[str]:
    return [r[0] for r in conn.execute("SELECT DISTINCT point_id FROM devices").fetchall()]


def build_app(dsn: str, clock: Callable[[], datetime], settings: AuthSettings) -> FastAPI:
    """The production app's open routers, and its guarded routers behind guard_points."""
    app = FastAPI()
    app.state.settings = Settings(db=DbSettings(dsn=SecretStr(dsn), pool_min=1, pool_max=4))
    app.state.clock = clock
    app.state.auth_settings = settings
    add_error_handlers(app)
    # The production app's own router lists, so every router added later is covered by these tests.
    for router in OPEN_ROUTERS:
        app.include_router(router)
    guard = Depends(guard_points(scope_aware=SCOPE_AWARE_ROUTES))
    for router in GUARDED_ROUTERS:
        app.include_router(router, dependencies=[guard])
    app.include_router(pattern_router, dependencies=[Depends(guard_points(scope_aware={"scoped_devices"}))])
    return app


@dataclass
class Apps:
    dsn: str
    clock: FakeClock
    pools: list[Any] = field(default_factory=list)
    clients: list[TestClient] = field(default_factory=list)

    def app(self, **settings: Any) -> FastAPI:
        app = build_app(self.dsn, self.clock, auth_settings(**settings))
        app.state.pool = make_pool(app.state.settings.db)
        app.state.pool.open(wait=True)
        self.pools.append(app.state.pool)
        return app

    def client(self, app: FastAPI | None = None, ip: str | None = None, https: bool = True) -> TestClient:
        """A client from its own address (the rate limit counts per address)."""
        peer = ip or f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250 + 1}"
        client = TestClient(app or self.app(), base_url="https://testserver" if https else "http://testserver",
                            client=(peer, 50000))
        self.clients.append(client)
        return client


@pytest.fixture
def apps(tsdb_dsn: str, clock: FakeClock) -> Iterator[Apps]:
    made = Apps(tsdb_dsn, clock)
    yield made
    for client in made.clients:
        client.close()
    for pool in made.pools:
        pool.close()


def login(client: TestClient, username: str, password: str = PASSWORD) -> str:
    """Sign in; return the CSRF token."""
    resp = client.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert resp.status_code == 200, resp.text
    return str(resp.json()["csrf_token"])


@dataclass
class County:
    """Two townships A and B, villages a1, a2, b1, five points (one unplaced), users of every role."""

    uid: str
    points: dict[str, str]  # key (a1, a2, a0, b1, x) -> point id
    township_ids: dict[str, int]
    township_names: dict[str, str]
    village_ids: dict[str, int]
    village_names: dict[str, str]
    users: dict[str, str]  # key -> username
    user_ids: dict[str, int]

    @property
    def all_points(self) -> set[str]:
        return set(self.points.values())

    def pts(self, *keys: str) -> set[str]:
        return {self.points[k] for k in keys}


def make_county(dsn: str, service: AuthService, at: datetime) -> County:
    uid = uuid.uuid4().hex[:8]
    towns = {"A": f"甲镇{uid}", "B": f"乙乡{uid}"}
    villages = {"a1": ("A", f"东村{uid}"), "a2": ("A", f"西村{uid}"), "b1": ("B", f"东村{uid}")}
    points = {"a1": f"{uid}-pa1", "a2": f"{uid}-pa2", "a0": f"{uid}-pa0", "b1": f"{uid}-pb1", "x": f"{uid}-px"}
    with psycopg.connect(dsn) as conn:
        for key, pid in points.items():
            town = towns.get(key[0].upper()) if key != "x" else None
            village = villages[key][1] if key in villages else None
            conn.execute("INSERT INTO meal_points (id, name, township, village) VALUES (%s, %s, %s, %s)",
                         (pid, f"助餐点 {key}", town, village))
            for device in ("reader1", "gas1"):
                conn.execute("INSERT INTO devices (point_id, device_id, state, last_seen, heartbeat_s)"
                             " VALUES (%s, %s, 'online', %s, 60)", (pid, device, at))
        township_ids = {k: repository.township_id_by_name(conn, n) for k, n in towns.items()}
        village_ids = {k: repository.village_id_by_name(conn, towns[t], n) for k, (t, n) in villages.items()}
        assert None not in township_ids.values() and None not in village_ids.values(), "trigger made no places"
        bindings: dict[str, dict[str, Any]] = {
            "admin": {"role": Role.BUREAU_ADMIN},
            "viewer": {"role": Role.BUREAU_VIEWER},
            "officer_a": {"role": Role.TOWNSHIP_OFFICER, "township_id": township_ids["A"]},
            "officer_b": {"role": Role.TOWNSHIP_OFFICER, "township_id": township_ids["B"]},
            "village_a1": {"role": Role.VILLAGE_OFFICER, "village_id": village_ids["a1"]},
            "caregiver": {"role": Role.CAREGIVER, "point_ids": [points["a2"], points["b1"]]},
        }
        users: dict[str, str] = {}
        user_ids: dict[str, int] = {}
        for key, binding in bindings.items():
            username = f"{key.replace('_', '.')}.{uid}"
            user_ids[key] = service.create_user(conn, UserCreate(username=username, password=SecretStr(PASSWORD),
                                                                 display_name=key, **binding), "test", at)
            users[key] = username
        conn.commit()
    return County(uid, points, {k: int(v or 0) for k, v in township_ids.items()}, towns,
                  {k: int(v or 0) for k, v in village_ids.items()}, {k: v[1] for k, v in villages.items()},
                  users, user_ids)


@pytest.fixture
def county(tsdb_dsn: str, clock: FakeClock) -> County:
    return make_county(tsdb_dsn, AuthService(auth_settings()), clock())


def rows(dsn: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, params).fetchall()
