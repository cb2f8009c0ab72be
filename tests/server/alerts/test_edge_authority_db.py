"""The edge is authoritative for local alarms, on the real database: one leak seen by the edge and by
the server's threshold rule gives one alert and one notification (the rule's verdict corroborates the
edge alert on its timeline); the server rule alone still alerts when the edge is silent or has cleared."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from firmware_bridge.contract import SafetyLevel
from server.alerts import repository as repo
from server.alerts.lifecycle import Alert, AlertState
from server.alerts.service import AlertEngine, Escalator
from server.alerts.settings import AlertConfig
from server.auth.scopes import Scope

from .dbkit import Providers, db, event_kinds, feed, gas_reading, leak, minutes

pytestmark = pytest.mark.integration

T0 = datetime(2026, 6, 1, 3, 0, tzinfo=UTC)  # 11:00 in the county: no quiet hours


def make(point: str, providers: Providers) -> tuple[AlertEngine, Escalator]:
    cfg = AlertConfig()
    return AlertEngine(cfg, point), Escalator(cfg.escalation, providers.channels(), None, cfg.timezone, point)


def gas_alerts(conn: Any, point: str) -> list[Alert]:
    rows = repo.list_alerts(conn, repo.AlertFilter(point_id=point), Scope(county=True))
    return sorted((a for a, _ in rows if a.key.condition.startswith("lel:")), key=lambda a: a.opened_at)


def test_one_leak_seen_by_edge_and_server_rule_gives_one_alert_and_one_notification(
        tsdb_dsn: str, point: dict[str, str], providers: Providers) -> None:
    engine, escalator = make(point["id"], providers)
    p = point["id"]
    with db(tsdb_dsn) as conn:
        engine.load(conn, T0)
        feed(engine, conn, leak(p, T0))
        escalator.run(conn, T0)
        # The same leak in the telemetry, minutes of it, above the server's 25 %LEL alarm level.
        for i, v in enumerate((27.0, 31.0, 55.0, 40.0)):
            feed(engine, conn, gas_reading(p, minutes(T0, 0.5 + i), v, seq=i + 1))
            engine.tick(conn, minutes(T0, 0.7 + i))
            escalator.run(conn, minutes(T0, 0.7 + i))
        alerts = gas_alerts(conn, p)
        assert [a.key.condition for a in alerts] == ["lel:edge"]
        edge = alerts[0]
        assert edge.source == "edge" and edge.corroborated_at == minutes(T0, 0.5)
        with db(tsdb_dsn) as c2:
            detail = c2.execute("SELECT detail FROM alert_events WHERE alert_id = %s AND kind = 'corroborated'",
                                (edge.id,)).fetchone()
        assert detail is not None and detail[0]["condition"] == "lel:threshold" and detail[0]["value"] == 27.0
        # A restarted worker remembers the corroboration: no second timeline row, still no second alert.
        engine2, _ = make(p, providers)
        engine2.load(conn, minutes(T0, 5))
        feed(engine2, conn, gas_reading(p, minutes(T0, 5), 33.0, seq=10))
        assert [a.key.condition for a in gas_alerts(conn, p)] == ["lel:edge"]
    assert event_kinds(tsdb_dsn, edge.id) == ["opened", "corroborated"]
    wecom = providers.requests_to("/cgi-bin/webhook/send")
    assert len(wecom) == 1 and "燃气报警" in wecom[0].json()["text"]["content"]


def test_server_rule_alone_still_alerts_when_the_edge_is_silent_or_has_cleared(
        tsdb_dsn: str, point: dict[str, str], providers: Providers) -> None:
    engine, escalator = make(point["id"], providers)
    p = point["id"]
    with db(tsdb_dsn) as conn:
        engine.load(conn, T0)
        # Edge silent (its rules misconfigured): the second line opens and notifies.
        saved = feed(engine, conn, gas_reading(p, T0, 30.0, seq=1))
        assert [(s.alert.key.condition, s.loud) for s in saved] == [("lel:threshold", True)]
        escalator.run(conn, T0)
        assert len(providers.requests_to("/cgi-bin/webhook/send")) == 1
        # Another sensor: the edge alarmed, then reported normal and its alarm cleared (hold passed)
        # while the server still reads an alarm level, so the server rule opens its own alert.
        dev = "gas-2"
        alarm = leak(p, minutes(T0, 10)).model_copy(update={"device": dev})
        feed(engine, conn, alarm)
        feed(engine, conn, alarm.model_copy(update={"seq": 2, "ts": minutes(T0, 11), "level": SafetyLevel.NORMAL,
                                                    "prev_level": SafetyLevel.ALARM, "value": 3.0}))
        engine.tick(conn, minutes(T0, 14))
        reading = gas_reading(p, minutes(T0, 15), 29.0, seq=5).model_copy(update={"device": dev})
        saved = feed(engine, conn, reading)
        assert [(s.alert.key.condition, s.loud) for s in saved if s.alert.key.condition.startswith("lel:")] == [
            ("lel:threshold", True)]
        rows = [a for a in gas_alerts(conn, p) if a.key.device == dev]
        assert [(a.key.condition, a.active) for a in rows] == [("lel:edge", False), ("lel:threshold", True)]
        assert rows[0].state == AlertState.OPEN and rows[0].corroborated_at is None
