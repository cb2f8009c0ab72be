"""The alert service on the real database with a controlled clock: escalation timeline and reminders,
wobble → one alert, clear and recurrence, a restart in the middle of an escalation, fall-through, and
the API and the worker writing the same alert."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from firmware_bridge.contract import Command, CommandName, SafetyLevel
from server.alerts import repository as repo
from server.alerts.escalation import EscalationPolicy
from server.alerts.lifecycle import Alert, AlertState
from server.alerts.service import AlertActions, AlertEngine, Escalator
from server.alerts.settings import AlertConfig
from server.auth.scopes import Scope

from .dbkit import (
    Providers,
    attempts_rows,
    db,
    event_kinds,
    feed,
    gas_reading,
    leak,
    minutes,
)

pytestmark = pytest.mark.integration

T0 = datetime(2026, 6, 1, 3, 0, tzinfo=UTC)  # 11:00 in the county: lunch, no quiet hours


def make(point: str, providers: Providers, config: AlertConfig | None = None) -> tuple[AlertEngine, Escalator]:
    cfg = config or AlertConfig()
    return AlertEngine(cfg, point), Escalator(cfg.escalation, providers.channels(), None, cfg.timezone, point)


def who_when(dsn: str, alert_id: str, people: dict[str, str]) -> list[tuple[float, str, str, str, bool]]:
    role_of = {v: k for k, v in people.items() if k != "id"}
    return [(round((r[7] - T0).total_seconds() / 60, 2), role_of[r[0]], r[2], r[3], r[6])
            for r in attempts_rows(dsn, alert_id)]


def test_leak_escalates_by_role_with_reminders_until_acknowledged(tsdb_dsn: str, point: dict[str, str],
                                                                   providers: Providers) -> None:
    engine, escalator = make(point["id"], providers)
    with db(tsdb_dsn) as conn:
        engine.load(conn, T0)
        saved = feed(engine, conn, leak(point["id"], T0))
        assert [s.loud for s in saved] == [True]
        alert_id = saved[0].alert.id
        for m in (0, 1, 4.9, 5, 6, 10, 15):
            escalator.run(conn, minutes(T0, m))
        AlertActions().acknowledge(conn, alert_id, "user:wang", "web", minutes(T0, 16))
        conn.commit()
        for m in (20, 25, 40):
            escalator.run(conn, minutes(T0, m))
    assert who_when(tsdb_dsn, alert_id, point) == [
        (0.0, "caregiver", "wecom", "first", True),
        (5.0, "caregiver", "wecom", "reminder", True),
        (5.0, "village_officer", "sms", "first", True),
        (10.0, "caregiver", "wecom", "reminder", True),
        (10.0, "village_officer", "sms", "reminder", True),
        (15.0, "caregiver", "wecom", "reminder", True),
        (15.0, "village_officer", "sms", "reminder", True),
        (15.0, "township_leader", "sms", "first", True),
    ]
    first = providers.requests_to("/cgi-bin/webhook/send")[0].json()
    assert first["msgtype"] == "text" and "燃气报警" in first["text"]["content"]
    assert first["text"]["mentioned_mobile_list"] == ["13800000001"]
    sms = providers.requests_to("/sms")
    assert len(sms) == 4 and "PhoneNumbers=13900000002" in sms[0].body.decode()
    assert event_kinds(tsdb_dsn, alert_id) == ["opened", "acknowledged"]
    # The acknowledgement queued an ack_alarm command for the meal point's edge.
    with db(tsdb_dsn) as conn:
        rows = conn.execute("SELECT payload FROM alert_commands WHERE alert_id = %s", (alert_id,)).fetchall()
    command = Command.model_validate_json(bytes(rows[0][0]))
    assert command.cmd == CommandName.ACK_ALARM and command.point == point["id"]


def test_failing_channel_falls_through_and_every_attempt_is_recorded(tsdb_dsn: str, point: dict[str, str],
                                                                     providers: Providers) -> None:
    providers.wecom_down = True
    engine, escalator = make(point["id"], providers)
    with db(tsdb_dsn) as conn:
        engine.load(conn, T0)
        alert_id = feed(engine, conn, leak(point["id"], T0))[0].alert.id
        escalator.run(conn, T0)
        providers.wecom_down = False
        escalator.run(conn, minutes(T0, 5))
    rows = who_when(tsdb_dsn, alert_id, point)
    assert rows[:2] == [(0.0, "caregiver", "wecom", "first", False), (0.0, "caregiver", "sms", "first", True)]
    # The next round starts again with the preferred channel, which works again.
    assert (5.0, "caregiver", "wecom", "reminder", True) in rows
    with db(tsdb_dsn) as conn:
        err = conn.execute("SELECT error FROM alert_notifications WHERE alert_id = %s AND NOT ok",
                           (alert_id,)).fetchone()
    assert err is not None and "45009" in err[0]


def test_restart_in_the_middle_of_an_escalation_carries_on(tsdb_dsn: str, point: dict[str, str],
                                                           providers: Providers) -> None:
    engine, escalator = make(point["id"], providers)
    with db(tsdb_dsn) as conn:
        engine.load(conn, T0)
        alert_id = feed(engine, conn, leak(point["id"], T0))[0].alert.id
        for m in (0, 5, 6):
            escalator.run(conn, minutes(T0, m))
    before = len(attempts_rows(tsdb_dsn, alert_id))
    del engine, escalator  # the worker dies; a new one starts from the database alone
    engine, escalator = make(point["id"], providers)
    with db(tsdb_dsn) as conn:
        assert engine.load(conn, minutes(T0, 7)) == 1
        assert escalator.run(conn, minutes(T0, 7)) == []  # nobody is told twice
        # The same leak, still reported by the edge: the same alert, not a new one.
        again = feed(engine, conn, leak(point["id"], minutes(T0, 8), seq=2, value=31.0))
        assert [s.alert.id for s in again] == [alert_id] and again[0].alert.count == 2
        for m in (10, 15):
            escalator.run(conn, minutes(T0, m))
    rows = who_when(tsdb_dsn, alert_id, point)
    assert len(rows) == before + 5
    assert rows[before:] == [
        (10.0, "caregiver", "wecom", "reminder", True),
        (10.0, "village_officer", "sms", "reminder", True),
        (15.0, "caregiver", "wecom", "reminder", True),
        (15.0, "village_officer", "sms", "reminder", True),
        (15.0, "township_leader", "sms", "first", True),
    ]


def test_wobbling_reading_gives_one_alert_and_a_return_reopens_it(tsdb_dsn: str, point: dict[str, str],
                                                                  providers: Providers) -> None:
    engine, _ = make(point["id"], providers)
    values = [26.0, 22.0, 26.5, 21.0, 25.5, 22.5, 27.0]  # around 25 %LEL, clears never holding 120 s
    with db(tsdb_dsn) as conn:
        engine.load(conn, T0)
        for i, v in enumerate(values):
            feed(engine, conn, gas_reading(point["id"], minutes(T0, i), v, seq=i))
            engine.tick(conn, minutes(T0, i + 0.5))
        rows = _gas_alerts(conn, point["id"])
        assert len(rows) == 1
        alert = rows[0]
        assert alert.key.condition == "lel:threshold" and alert.state == AlertState.OPEN and alert.active
        assert alert.count == 4  # one per reading above the threshold
        # Below for longer than the hold: cleared, but a gas alarm waits for the on-site confirmation.
        feed(engine, conn, gas_reading(point["id"], minutes(T0, 10), 3.0, seq=10))
        engine.tick(conn, minutes(T0, 13))
        row = repo.get_alert(conn, alert.id)
        assert row is not None and not row[0].active and row[0].state == AlertState.OPEN
        # It comes back before anyone resolved it: the same alert recurs.
        feed(engine, conn, gas_reading(point["id"], minutes(T0, 14), 30.0, seq=14))
        assert [a.id for a in _gas_alerts(conn, point["id"])] == [alert.id]
    assert Counter(event_kinds(tsdb_dsn, alert.id)) == Counter({"opened": 1, "cleared": 1, "recurred": 1})


def test_on_site_confirmation_resolves_once_cleared_and_a_new_leak_opens_a_new_alert(
        tsdb_dsn: str, point: dict[str, str], providers: Providers) -> None:
    engine, _ = make(point["id"], providers)
    actions = AlertActions()
    with db(tsdb_dsn) as conn:
        engine.load(conn, T0)
        first = feed(engine, conn, leak(point["id"], T0))[0].alert.id
        result = actions.resolve(conn, first, "user:wang", minutes(T0, 3), "关闭阀门，更换软管", on_site=True)
        conn.commit()
        assert result.alert.state == AlertState.ACKNOWLEDGED and result.command_id is not None
        feed(engine, conn, leak(point["id"], minutes(T0, 4), seq=2, level=SafetyLevel.NORMAL,
                                prev=SafetyLevel.ALARM, value=2.0))
        engine.tick(conn, minutes(T0, 7))
        stored, _ = repo.get_alert(conn, first) or (None, 0)
        assert stored is not None and stored.state == AlertState.RESOLVED and stored.resolved_by == "user:wang"
        saved = feed(engine, conn, leak(point["id"], minutes(T0, 30), seq=3))
        second = next(s.alert for s in saved if s.alert.key.condition == "lel:edge")
        assert second.id != first and second.previous_id == first
    assert event_kinds(tsdb_dsn, first) == ["opened", "acknowledged", "confirmed", "cleared", "resolved"]


def test_api_acknowledgement_is_not_overwritten_by_the_worker(tsdb_dsn: str, point: dict[str, str],
                                                              providers: Providers) -> None:
    engine, escalator = make(point["id"], providers)
    with db(tsdb_dsn) as conn:
        engine.load(conn, T0)
        alert_id = feed(engine, conn, leak(point["id"], T0))[0].alert.id
        # The API acknowledges while the worker's in-memory copy still says open ...
        with db(tsdb_dsn) as api_conn:
            AlertActions().acknowledge(api_conn, alert_id, "user:li", "web", minutes(T0, 1))
            api_conn.commit()
        # ... and the worker writes a repeat: its write loses, it reloads and applies the repeat again.
        saved = feed(engine, conn, leak(point["id"], minutes(T0, 2), seq=2, value=35.0))
        assert saved[0].alert.state == AlertState.ACKNOWLEDGED and saved[0].alert.count == 2
        stored, version = repo.get_alert(conn, alert_id) or (None, 0)
        assert stored is not None and stored.ack is not None and stored.ack.by == "user:li"
        assert stored.last_value == 35.0 and version == 3
        assert escalator.run(conn, minutes(T0, 5)) == []  # acknowledged: no more reminders


def test_quiet_hours_hold_a_device_warning_but_never_a_gas_alarm(tsdb_dsn: str, point: dict[str, str],
                                                                  providers: Providers) -> None:
    night = datetime(2026, 6, 1, 15, 0, tzinfo=UTC)  # 23:00 in the county
    engine, escalator = make(point["id"], providers, AlertConfig(escalation=EscalationPolicy()))
    from firmware_bridge.contract import Channel, DeviceState, DeviceStatus
    from server.alerts.service import Inbound

    status = DeviceStatus(point=point["id"], device="agent", ts=night, state=DeviceState.OFFLINE, role="agent",
                          detail="连接中断")
    with db(tsdb_dsn) as conn:
        engine.load(conn, night)
        offline = engine.handle(conn, engine.observations([Inbound(Channel.STATUS, status, night)]))[0].alert
        gas = feed(engine, conn, leak(point["id"], night))[0].alert
        escalator.run(conn, night)
    assert attempts_rows(tsdb_dsn, offline.id) == []
    assert [r[1] for r in attempts_rows(tsdb_dsn, gas.id)] == ["caregiver"]


def _gas_alerts(conn: Any, point: str) -> list[Alert]:
    """The point's gas threshold alerts (a device silent in the test also, rightly, raises device:stale)."""
    rows = repo.list_alerts(conn, repo.AlertFilter(point_id=point), Scope(county=True))
    return [a for a, _ in rows if a.key.condition == "lel:threshold"]
