"""The alert lifecycle as tables: ack, resolve with on-site confirmation, no flapping, reopen, restart."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from server.alerts.errors import AlertStateError, ConfirmationRequiredError, UnknownAlertError
from server.alerts.lifecycle import AlertBook, AlertState, EventKind, LifecyclePolicy
from server.alerts.rules import ConditionKey, Hazard, Observation, RuleEngine, Severity

T0 = datetime(2026, 6, 1, 3, 0, tzinfo=UTC)
GAS = ConditionKey("pt-001", "gas-1", "lel:threshold")
OFFLINE = ConditionKey("pt-001", "agent", "device:offline")
HOLD = 120.0


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def book() -> AlertBook:
    ids = itertools.count(1)
    return AlertBook(LifecyclePolicy(clear_hold_s=HOLD), new_id=lambda: f"A{next(ids)}")


def raised(key: ConditionKey, s: float, sev: Severity = Severity.ALARM, hazard: Hazard = Hazard.GAS,
           value: float = 27.0) -> Observation:
    return Observation(key, True, at(s), sev, hazard, value=value, unit="%LEL", message=f"gas {value}")


def cleared(key: ConditionKey, s: float, hazard: Hazard = Hazard.GAS) -> Observation:
    return Observation(key, False, at(s), Severity.INFO, hazard)


def kinds(change: object) -> list[EventKind]:
    return [e.kind for e in getattr(change, "events", ())]


def test_open_then_repeats_update_one_alert() -> None:
    b = book()
    first = b.observe(raised(GAS, 0))
    assert first is not None and kinds(first) == [EventKind.OPENED]
    assert first.alert.id == "A1" and first.alert.state == AlertState.OPEN
    again = b.observe(raised(GAS, 60, value=29.0))
    assert again is not None and kinds(again) == []
    assert (again.alert.id, again.alert.count, again.alert.last_value, again.alert.last_seen) == ("A1", 2, 29.0, at(60))
    worse = b.observe(raised(GAS, 120, Severity.CRITICAL, value=55.0))
    assert worse is not None and kinds(worse) == [EventKind.SEVERITY_CHANGED]
    assert worse.events[0].detail["from"] == "alarm" and worse.events[0].detail["to"] == "critical"
    better = b.observe(raised(GAS, 180, Severity.ALARM, value=30.0))
    assert better is not None and better.alert.severity == Severity.ALARM
    assert better.alert.peak_severity == Severity.CRITICAL
    assert [a.id for a in b.unresolved()] == ["A1"]


def test_acknowledge_records_who_when_and_channel() -> None:
    b = book()
    b.observe(raised(GAS, 0))
    ch = b.acknowledge("A1", "caregiver-7", at(30), "wecom")
    assert kinds(ch) == [EventKind.ACKNOWLEDGED]
    assert ch.alert.state == AlertState.ACKNOWLEDGED
    ack = ch.alert.ack
    assert ack is not None and (ack.by, ack.at, ack.channel) == ("caregiver-7", at(30), "wecom")
    assert ch.events[0].actor == "caregiver-7" and ch.events[0].channel == "wecom"
    twice = b.acknowledge("A1", "officer-2", at(40), "link")
    assert kinds(twice) == [] and twice.alert.ack == ack
    with pytest.raises(UnknownAlertError):
        b.acknowledge("nope", "x", at(50), "api")


@pytest.mark.parametrize(
    ("hazard", "severity", "needs_confirmation"),
    [
        (Hazard.GAS, Severity.ALARM, True),
        (Hazard.GAS, Severity.CRITICAL, True),
        (Hazard.ELECTRIC, Severity.ALARM, True),
        (Hazard.ELECTRIC, Severity.WARNING, False),  # residual current 300 mA: a warning, not an alarm
        (Hazard.DEVICE, Severity.WARNING, False),
        (Hazard.DINERS, Severity.WARNING, False),
    ],
)
def test_which_alerts_need_on_site_confirmation(hazard: Hazard, severity: Severity, needs_confirmation: bool) -> None:
    b = book()
    key = ConditionKey("pt-001", "dev", "x")
    b.observe(raised(key, 0, severity, hazard))
    b.observe(cleared(key, 60, hazard))
    changes = b.tick(at(60 + HOLD))
    assert [e.kind for c in changes for e in c.events] == (
        [EventKind.CLEARED] if needs_confirmation else [EventKind.CLEARED, EventKind.RESOLVED]
    )
    alert = b.get("A1")
    assert (alert.state == AlertState.RESOLVED) is (not needs_confirmation)
    assert alert.cleared_at == at(60)


def test_gas_alarm_resolves_only_with_confirmation_and_a_note() -> None:
    b = book()
    b.observe(raised(GAS, 0))
    b.acknowledge("A1", "caregiver-7", at(20), "sms")
    b.observe(cleared(GAS, 300))
    assert kinds(b.tick(at(300 + HOLD))[0]) == [EventKind.CLEARED]
    with pytest.raises(ConfirmationRequiredError):
        b.resolve("A1", "officer-2", at(500))
    with pytest.raises(ConfirmationRequiredError):
        b.confirm("A1", "caregiver-7", at(510), "   ")
    done = b.confirm("A1", "caregiver-7", at(520), "关闭阀门，通风，更换软管")
    assert kinds(done) == [EventKind.CONFIRMED, EventKind.RESOLVED]
    assert done.alert.state == AlertState.RESOLVED and done.alert.resolved_by == "caregiver-7"
    assert done.alert.confirmation is not None and done.alert.confirmation.note == "关闭阀门，通风，更换软管"
    with pytest.raises(AlertStateError):
        b.acknowledge("A1", "x", at(600), "api")


def test_confirmation_before_the_clear_resolves_when_it_clears() -> None:
    b = book()
    b.observe(raised(GAS, 0))
    conf = b.confirm("A1", "officer-2", at(60), "已到场，关闭总阀，开窗通风")
    assert kinds(conf) == [EventKind.ACKNOWLEDGED, EventKind.CONFIRMED]  # confirming on site also owns it
    assert conf.alert.ack is not None and conf.alert.ack.channel == "on_site"
    assert conf.alert.state == AlertState.ACKNOWLEDGED
    b.observe(cleared(GAS, 200))
    resolved = b.tick(at(200 + HOLD))
    assert kinds(resolved[0]) == [EventKind.CLEARED, EventKind.RESOLVED]
    assert resolved[0].alert.resolved_by == "officer-2"


def test_manual_resolve_refuses_while_the_condition_is_present() -> None:
    b = book()
    b.observe(raised(OFFLINE, 0, Severity.WARNING, Hazard.DEVICE))
    with pytest.raises(AlertStateError):
        b.resolve("A1", "officer-2", at(10))


def test_without_auto_resolve_a_person_closes_cleared_alerts() -> None:
    b = AlertBook(LifecyclePolicy(clear_hold_s=HOLD, auto_resolve=False), new_id=lambda: "A1")
    b.observe(raised(OFFLINE, 0, Severity.WARNING, Hazard.DEVICE))
    b.observe(cleared(OFFLINE, 60, Hazard.DEVICE))
    assert [k for c in b.tick(at(60 + HOLD)) for k in kinds(c)] == [EventKind.CLEARED]
    done = b.resolve("A1", "officer-2", at(400), "网关断电，已恢复供电")
    assert kinds(done) == [EventKind.RESOLVED] and done.alert.resolved_by == "officer-2"
    assert done.events[0].detail["note"] == "网关断电，已恢复供电"
    assert kinds(b.resolve("A1", "officer-2", at(500))) == []  # already resolved: harmless


def test_wobbling_condition_gives_one_alert_and_one_clear() -> None:
    b = book()
    events: list[EventKind] = []
    for i in range(20):  # on and off every 30 s for 10 minutes: shorter than the hold time
        c = b.observe(raised(OFFLINE, i * 60, Severity.WARNING, Hazard.DEVICE))
        events += kinds(c)
        c = b.observe(cleared(OFFLINE, i * 60 + 30, Hazard.DEVICE))
        events += kinds(c)
        for ch in b.tick(at(i * 60 + 59)):
            events += kinds(ch)
    assert events == [EventKind.OPENED]
    assert b.get("A1").count == 20
    final = b.tick(at(19 * 60 + 30 + HOLD))
    assert [k for c in final for k in kinds(c)] == [EventKind.CLEARED, EventKind.RESOLVED]
    assert b.get("A1").cleared_at == at(19 * 60 + 30)


def test_wobbling_reading_through_rules_and_lifecycle_gives_one_alert() -> None:
    engine = RuleEngine()
    b = book()
    opened = 0
    for i in range(60):  # 24.2 / 25.4 %LEL alternating: inside the 2 %LEL hysteresis band
        for obs in engine.on_reading("pt-001", "gas-1", "lel", at(i * 10), 25.4 if i % 2 else 24.2, "%LEL"):
            c = b.observe(obs)
            opened += kinds(c).count(EventKind.OPENED)
    assert opened == 1


def test_recurrence_before_resolution_reopens_the_same_alert() -> None:
    b = book()
    b.observe(raised(GAS, 0))
    b.observe(cleared(GAS, 60))
    assert kinds(b.tick(at(60 + HOLD))[0]) == [EventKind.CLEARED]  # cleared, waiting for a confirmation
    back = b.observe(raised(GAS, 400, value=31.0))
    assert back is not None and kinds(back) == [EventKind.RECURRED]
    assert back.alert.id == "A1" and back.alert.active and back.alert.count == 2
    assert back.alert.cleared_at is None and back.alert.state == AlertState.OPEN


def test_confirmation_while_present_waits_for_a_clear_that_holds() -> None:
    b = book()
    b.observe(raised(GAS, 0))
    b.confirm("A1", "caregiver-7", at(30), "拧紧接头")
    b.observe(cleared(GAS, 60))
    b.observe(raised(GAS, 90))  # back within the hold time: a wobble, not a clear
    assert b.tick(at(60 + HOLD)) == []
    assert b.get("A1").state == AlertState.ACKNOWLEDGED and b.get("A1").active


def test_after_resolution_the_condition_opens_a_new_alert_linked_to_the_old() -> None:
    b = book()
    b.observe(raised(OFFLINE, 0, Severity.WARNING, Hazard.DEVICE))
    b.observe(cleared(OFFLINE, 60, Hazard.DEVICE))
    b.tick(at(60 + HOLD))
    assert b.get("A1").state == AlertState.RESOLVED and b.active(OFFLINE) is None
    again = b.observe(raised(OFFLINE, 1000, Severity.WARNING, Hazard.DEVICE))
    assert again is not None and kinds(again) == [EventKind.OPENED]
    assert again.alert.id == "A2" and again.alert.previous_id == "A1"
    assert again.events[0].detail["previous_id"] == "A1"


def test_a_clear_for_no_alert_changes_nothing() -> None:
    b = book()
    assert b.observe(cleared(GAS, 0)) is None
    assert b.tick(at(1000)) == []


def test_restart_rebuilds_from_stored_alerts() -> None:
    b = book()
    b.observe(raised(GAS, 0))
    b.acknowledge("A1", "caregiver-7", at(10), "wecom")
    b.observe(cleared(GAS, 50))  # clear pending when the process stops
    stored = [replace(a) for a in b.unresolved()]
    ids = itertools.count(100)
    restarted = AlertBook(LifecyclePolicy(clear_hold_s=HOLD), alerts=stored, new_id=lambda: f"A{next(ids)}")
    again = restarted.observe(raised(GAS, 100))
    assert again is not None and again.alert.id == "A1" and again.alert.count == 2
    assert again.alert.state == AlertState.ACKNOWLEDGED and again.alert.clear_pending_since is None


EDGE = ConditionKey("pt-001", "gas-1", "lel:edge")


def test_server_threshold_corroborates_an_active_edge_alarm_instead_of_opening_a_second() -> None:
    b = book()
    edge = b.observe(replace(raised(EDGE, 0), source="edge"))
    assert edge is not None and kinds(edge) == [EventKind.OPENED]
    first = b.observe(raised(GAS, 30, value=31.0))
    assert first is not None and first.alert.id == "A1" and kinds(first) == [EventKind.CORROBORATED]
    assert first.alert.corroborated_at == at(30) and first.events[0].detail["condition"] == "lel:threshold"
    assert b.observe(raised(GAS, 90, Severity.CRITICAL, value=55.0)) is None  # once per edge alert
    assert b.active(GAS) is None and b.observe(cleared(GAS, 120)) is None
    # Another channel, or a rule that is not a threshold, still alerts on its own.
    other = b.observe(raised(ConditionKey("pt-001", "gas-1", "lel:trend"), 130))
    assert other is not None and kinds(other) == [EventKind.OPENED]


def test_server_threshold_opens_its_own_alert_once_the_edge_alarm_has_cleared() -> None:
    b = book()
    b.observe(replace(raised(EDGE, 0), source="edge"))
    b.observe(replace(cleared(EDGE, 10), source="edge"))
    assert b.tick(at(10 + HOLD))  # the edge's clear held: its alarm is no longer active
    own = b.observe(raised(GAS, 200))
    assert own is not None and kinds(own) == [EventKind.OPENED] and own.alert.key == GAS


def test_the_local_button_acknowledges_an_open_edge_alert_through_channel_edge() -> None:
    b = book()
    b.observe(replace(raised(EDGE, 0), source="edge"))
    change = b.observe(replace(raised(EDGE, 20), source="edge", acknowledged_by="local:button"))
    assert change is not None and kinds(change) == [EventKind.ACKNOWLEDGED]
    assert change.alert.state == AlertState.ACKNOWLEDGED and change.events[0].channel == "edge"
    assert change.alert.ack is not None and (change.alert.ack.by, change.alert.ack.at) == ("local:button", at(20))
    # Pressed again, or after someone else acknowledged: nothing new.
    again = b.observe(replace(raised(EDGE, 30), source="edge", acknowledged_by="local:button"))
    assert again is not None and kinds(again) == []
    # A latched alarm whose gas is gone: the acknowledgement arrives with the clear and both are kept.
    b2 = book()
    b2.observe(replace(raised(EDGE, 0), source="edge"))
    both = b2.observe(replace(cleared(EDGE, 40), source="edge", acknowledged_by="local:reset"))
    assert both is not None and kinds(both) == [EventKind.ACKNOWLEDGED]
    assert both.alert.clear_pending_since == at(40) and both.alert.ack is not None
