"""Helpers for alert tests on the real database: a placed meal point, its contacts, contract events,
and channels pointed at the local provider stand-in."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from firmware_bridge.contract import Channel, Reading, SafetyEvent, SafetyLevel, TelemetryEvent
from server.alerts import repository as repo
from server.alerts.channels.base import Channel as AlertChannel
from server.alerts.channels.sms import AliyunSms, SmsChannel
from server.alerts.channels.wecom import WeComRobotChannel
from server.alerts.service import AlertEngine, Inbound, Saved

from .conftest import Reply, Request, Stub

WECOM_KEY = "k-test-robot"


@contextmanager
def db(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(dsn) as conn:
        yield conn


def place_point(dsn: str, point: str) -> tuple[int, int]:
    """Register the point in its own township and village; return (township_id, village_id)."""
    with db(dsn) as conn:
        conn.execute("INSERT INTO meal_points (id, name, township, village) VALUES (%s, %s, %s, %s)",
                     (point, f"{point} 助餐点", f"镇-{point}", f"村-{point}"))
        row = conn.execute("SELECT township_id, village_id FROM meal_point_places WHERE point_id = %s",
                           (point,)).fetchone()
        conn.commit()
    assert row is not None
    return int(row[0]), int(row[1])


def add_contacts(dsn: str, point: str, township_id: int, village_id: int) -> dict[str, str]:
    """A caregiver (WeCom robot, then SMS), a village officer and a township leader (SMS); ids by role."""
    base = {"user_id": None, "quiet_hours": True, "active": True, "township_id": None, "village_id": None}
    with db(dsn) as conn:
        cg = repo.insert_contact(conn, {**base, "name": "王阿姨", "role": "caregiver", "mobile": "13800000001",
                                        "endpoints": [{"channel": "wecom", "address": "grp"},
                                                      {"channel": "sms", "address": "13800000001"}]}, [point])
        vo = repo.insert_contact(conn, {**base, "name": "张安全员", "role": "village_officer", "mobile": "13900000002",
                                        "village_id": village_id,
                                        "endpoints": [{"channel": "sms", "address": "13900000002"}]}, [])
        tl = repo.insert_contact(conn, {**base, "name": "赵镇长", "role": "township_leader", "mobile": "13700000003",
                                        "township_id": township_id,
                                        "endpoints": [{"channel": "sms", "address": "13700000003"}]}, [])
        conn.commit()
    return {"caregiver": str(cg), "village_officer": str(vo), "township_leader": str(tl)}


class Providers:
    """WeCom robot and Aliyun SMS stand-ins on one local server; WeCom can be told to refuse."""

    def __init__(self, stub: Stub) -> None:
        self.stub = stub
        self.wecom_down = False
        stub.respond = self.respond

    def respond(self, req: Request) -> Reply:
        if req.path.startswith("/cgi-bin/webhook/send"):
            if req.query.get("key") != WECOM_KEY:
                return Reply(200, {"errcode": 93000, "errmsg": "invalid webhook url"})
            if self.wecom_down:
                return Reply(200, {"errcode": 45009, "errmsg": "api freq out of limit"})
            return Reply(200, {"errcode": 0, "errmsg": "ok"})
        if req.path == "/sms":
            return Reply(200, {"Code": "OK", "Message": "OK", "BizId": "1", "RequestId": "r"})
        return Reply(404, {"error": "no such path"})

    def channels(self) -> dict[str, AlertChannel]:
        wecom = WeComRobotChannel({"grp": self.stub.url(f"/cgi-bin/webhook/send?key={WECOM_KEY}")})
        sms = SmsChannel(AliyunSms("AKID", "secret", "养怡", endpoint=self.stub.url("/sms")), "SMS_1")
        return {"wecom": wecom, "sms": sms}

    def requests_to(self, path: str) -> list[Request]:
        return [r for r in self.stub.requests if r.path.startswith(path)]


def leak(point: str, at: datetime, seq: int = 1, level: SafetyLevel = SafetyLevel.ALARM,
         prev: SafetyLevel = SafetyLevel.NORMAL, value: float = 27.0) -> SafetyEvent:
    return SafetyEvent(point=point, device="gas-1", seq=seq, ts=at, clock_synced=True, ch="lel", level=level,
                       prev_level=prev, rule="gas.lel", value=value, unit="%LEL", threshold=25.0, latched=True,
                       actions=["buzzer", "valve_close"])


def gas_reading(point: str, at: datetime, value: float, seq: int) -> TelemetryEvent:
    return TelemetryEvent(point=point, device="gas-1", seq=seq, ts=at, clock_synced=True,
                          readings=[Reading(ch="lel", unit="%LEL", v=value)])


def feed(engine: AlertEngine, conn: psycopg.Connection[Any], *messages: SafetyEvent | TelemetryEvent,
         at: datetime | None = None) -> list[Saved]:
    items = [Inbound(Channel.SAFETY if isinstance(m, SafetyEvent) else Channel.TELEMETRY, m, at or m.ts)
             for m in messages]
    return engine.handle(conn, engine.observations(items))


def minutes(t0: datetime, m: float) -> datetime:
    return t0 + timedelta(minutes=m)


def attempts_rows(dsn: str, alert_id: str) -> list[tuple[Any, ...]]:
    with db(dsn) as conn:
        return conn.execute("SELECT person_id, role, channel, kind, round, attempt, ok, time FROM alert_notifications"
                            " WHERE alert_id = %s ORDER BY time, id", (alert_id,)).fetchall()


def event_kinds(dsn: str, alert_id: str) -> list[str]:
    with db(dsn) as conn:
        return [r[0] for r in conn.execute("SELECT kind FROM alert_events WHERE alert_id = %s ORDER BY time, id",
                                           (alert_id,)).fetchall()]


def bearer_headers(dsn: str, role: str = "bureau_viewer", **binding: Any) -> dict[str, str]:
    """Headers with a fresh integration token of this role and binding."""
    from server.auth.schemas import TokenCreate
    from server.auth.service import AuthService
    from server.auth.settings import AuthSettings

    spec = TokenCreate.model_validate({"name": f"tests-{role}", "role": role, **binding})
    with db(dsn) as conn:
        token = AuthService(AuthSettings()).create_token(conn, spec, "tests", datetime.now(UTC))
        conn.commit()
    return {"Authorization": f"Bearer {token.secret}"}
