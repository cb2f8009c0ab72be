"""The escalation timeline with a controlled clock: roles by step, reminders, rate limit, quiet hours, fall-through."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta

from server.alerts.channels.base import Notification, SendResult
from server.alerts.escalation import (
    Attempt,
    Contact,
    Due,
    Endpoint,
    EscalationPolicy,
    NoticeKind,
    QuietHours,
    Role,
    Step,
    compose,
    escalate,
    plan,
)
from server.alerts.lifecycle import Alert, AlertState
from server.alerts.rules import ConditionKey, Hazard, Severity

DAY = datetime(2026, 6, 1, 3, 0, tzinfo=UTC)  # 11:00 in the county (Asia/Shanghai)
NIGHT = datetime(2026, 6, 1, 15, 0, tzinfo=UTC)  # 23:00 in the county

CAREGIVER = Contact("c1", "王阿姨", Role.CAREGIVER, (Endpoint("wecom", "pt-001-group"), Endpoint("sms", "13800000001")),
                    mobile="13800000001")
CAREGIVER2 = Contact("c2", "李师傅", Role.CAREGIVER, (Endpoint("inapp", "c2"),))
VILLAGE = Contact("v1", "张安全员", Role.VILLAGE_OFFICER, (Endpoint("sms", "13900000002"),))
TOWNSHIP = Contact("t1", "赵镇长", Role.TOWNSHIP_LEADER, (Endpoint("sms", "13700000003"),))
CONTACTS = (CAREGIVER, CAREGIVER2, VILLAGE, TOWNSHIP)


def make_alert(opened: datetime, hazard: Hazard = Hazard.GAS, severity: Severity = Severity.ALARM,
               alert_id: str = "A1") -> Alert:
    return Alert(id=alert_id, key=ConditionKey("pt-001", "gas-1", "lel:threshold"), hazard=hazard,
                 severity=severity, peak_severity=severity, opened_at=opened, last_seen=opened,
                 message="可燃气体浓度 27 %LEL，超过报警值 25 %LEL")


class FakeChannel:
    """The one faked seam: a channel that succeeds or fails as told and remembers what it got."""

    def __init__(self, name: str, fail: set[str] | None = None, raises: bool = False) -> None:
        self.name = name
        self.fail = fail or set()
        self.raises = raises
        self.sent: list[Notification] = []

    def send(self, notification: Notification) -> SendResult:
        if self.raises:
            raise RuntimeError("plug-in bug")
        self.sent.append(notification)
        if notification.address in self.fail:
            return SendResult(False, self.name, 500, "down", "HTTP 500")
        return SendResult(True, self.name, 200, "ok")


def render(alert: Alert) -> Callable[[Due], Notification]:
    def r(d: Due) -> Notification:
        return compose(alert, d, point_name="城关镇幸福村助餐点", link=f"https://yy.example/ack?a={d.alert_id}")
    return r


def run(alert: Alert, minutes: Sequence[float], channels: dict[str, FakeChannel],
        contacts: Sequence[Contact] = CONTACTS, policy: EscalationPolicy | None = None,
        history: list[Attempt] | None = None) -> list[Attempt]:
    pol = policy or EscalationPolicy()
    hist = history if history is not None else []
    for m in minutes:
        now = alert.opened_at + timedelta(minutes=m)
        _, attempts = escalate(alert, contacts, pol, hist, now, channels, render(alert))
        hist += attempts
    return hist


def ok_channels(**fail: set[str]) -> dict[str, FakeChannel]:
    return {n: FakeChannel(n, fail.get(n)) for n in ("wecom", "sms", "inapp", "dingtalk")}


def timeline(attempts: Sequence[Attempt], start: datetime) -> dict[str, list[tuple[float, str, int]]]:
    out: dict[str, list[tuple[float, str, int]]] = defaultdict(list)
    for a in attempts:
        out[a.person_id].append(((a.at - start).total_seconds() / 60, a.kind.value, a.round))
    return dict(out)


def test_caregivers_then_village_then_township_with_reminders() -> None:
    alert = make_alert(DAY)
    attempts = run(alert, range(21), ok_channels())
    tl = timeline(attempts, DAY)
    care = [(0.0, "first", 0), (5.0, "reminder", 1), (10.0, "reminder", 2), (15.0, "reminder", 3),
            (20.0, "reminder", 4)]
    assert tl["c1"] == care and tl["c2"] == care
    assert tl["v1"] == [(5.0, "first", 0), (10.0, "reminder", 1), (15.0, "reminder", 2), (20.0, "reminder", 3)]
    assert tl["t1"] == [(15.0, "first", 0), (20.0, "reminder", 1)]
    assert all(a.ok for a in attempts)
    assert {a.role for a in attempts if a.person_id == "v1"} == {Role.VILLAGE_OFFICER}


def test_acknowledgement_stops_escalation_and_reminders() -> None:
    alert = make_alert(DAY)
    hist = run(alert, range(3), ok_channels())
    alert.state = AlertState.ACKNOWLEDGED
    more = run(alert, range(3, 30), ok_channels(), history=list(hist))
    assert more == hist  # nothing new after the acknowledgement
    assert plan(alert, CONTACTS, EscalationPolicy(), hist, DAY + timedelta(minutes=30)).due == ()


def test_configurable_step_minutes() -> None:
    pol = EscalationPolicy(steps=(Step(role=Role.CAREGIVER, after_min=0), Step(role=Role.VILLAGE_OFFICER, after_min=2),
                                  Step(role=Role.TOWNSHIP_LEADER, after_min=3)), reminder_min=10)
    tl = timeline(run(make_alert(DAY), range(5), ok_channels(), policy=pol), DAY)
    assert tl["v1"][0][0] == 2.0 and tl["t1"][0][0] == 3.0


def test_reminders_are_rate_limited_per_person() -> None:
    pol = EscalationPolicy(reminder_min=1, max_per_person_per_hour=5)
    alert = make_alert(DAY, Hazard.DEVICE, Severity.WARNING)
    attempts = run(alert, range(0, 66), ok_channels(), contacts=(CAREGIVER2,), policy=pol)
    minutes = [m for m, _, _ in timeline(attempts, DAY)["c2"]]
    assert minutes[:5] == [0, 1, 2, 3, 4]
    assert 5 not in minutes and 30 not in minutes
    for m in range(66):  # never more than 5 in any hour
        assert sum(1 for x in minutes if m - 60 < x <= m) <= 5
    now = DAY + timedelta(minutes=30)
    p = plan(alert, (CAREGIVER2,), pol, [a for a in attempts if a.at <= now], now)
    assert p.rate_limited == ("c2",) and p.due == ()


def test_first_gas_message_is_not_rate_limited() -> None:
    pol = EscalationPolicy(reminder_min=1, max_per_person_per_hour=3)
    noisy = make_alert(DAY, Hazard.DEVICE, Severity.WARNING, alert_id="noisy")
    hist = run(noisy, range(5), ok_channels(), contacts=(CAREGIVER2,), policy=pol)
    assert sum(1 for a in hist if a.ok) == 3
    gas = make_alert(DAY + timedelta(minutes=5), alert_id="gas")
    p = plan(gas, (CAREGIVER2,), pol, hist, DAY + timedelta(minutes=5))
    assert [(d.alert_id, d.kind) for d in p.due] == [("gas", NoticeKind.FIRST)]
    device = make_alert(DAY + timedelta(minutes=5), Hazard.DEVICE, Severity.WARNING, alert_id="dev2")
    assert plan(device, (CAREGIVER2,), pol, hist, DAY + timedelta(minutes=5)).rate_limited == ("c2",)


def test_quiet_hours_hold_minor_alerts_and_stop_their_step_clock() -> None:
    alert = make_alert(NIGHT, Hazard.DEVICE, Severity.WARNING)
    p = plan(alert, CONTACTS, EscalationPolicy(), [], NIGHT)
    assert p.due == () and p.held_until == datetime(2026, 6, 1, 22, 0, tzinfo=UTC)  # 06:00 local
    attempts = run(alert, range(0, 7 * 60 + 11), ok_channels())
    tl = timeline(attempts, NIGHT)
    assert tl["c1"][0] == (7 * 60, "first", 0)  # 06:00 local
    assert tl["v1"][0] == (7 * 60 + 5, "first", 0)  # 5 minutes of daytime later, not at once
    assert "t1" not in tl


def test_gas_and_electric_alarms_are_never_muted() -> None:
    for hazard, severity in ((Hazard.GAS, Severity.ALARM), (Hazard.ELECTRIC, Severity.WARNING)):
        alert = make_alert(NIGHT, hazard, severity)
        tl = timeline(run(alert, range(0, 16), ok_channels()), NIGHT)
        assert tl["c1"][0] == (0.0, "first", 0)
        assert tl["v1"][0][0] == 5.0 and tl["t1"][0][0] == 15.0


def test_a_failing_channel_falls_through_to_the_next_for_the_same_person() -> None:
    channels = ok_channels(wecom={"pt-001-group"})
    alert = make_alert(DAY)
    attempts = run(alert, [0], channels, contacts=(CAREGIVER,))
    assert [(a.channel, a.attempt, a.round, a.ok, a.error) for a in attempts] == [
        ("wecom", 0, 0, False, "HTTP 500"), ("sms", 1, 0, True, None)]
    assert all(a.at == DAY for a in attempts)  # at once, not after a step
    assert channels["sms"].sent[0].address == "13800000001"
    # The reminder round starts again from the preferred channel.
    more = run(alert, [1, 5], channels, contacts=(CAREGIVER,), history=list(attempts))[len(attempts):]
    assert [(a.channel, a.round, a.ok) for a in more] == [("wecom", 1, False), ("sms", 1, True)]


def test_when_every_channel_fails_the_round_is_retried_later() -> None:
    channels = ok_channels(wecom={"pt-001-group"}, sms={"13800000001"})
    alert = make_alert(DAY)
    attempts = run(alert, [0, 0.5, 1], channels, contacts=(CAREGIVER,))
    assert [(a.at - DAY, a.channel, a.round, a.kind) for a in attempts] == [
        (timedelta(0), "wecom", 0, NoticeKind.FIRST), (timedelta(0), "sms", 0, NoticeKind.FIRST),
        (timedelta(minutes=1), "wecom", 1, NoticeKind.FIRST), (timedelta(minutes=1), "sms", 1, NoticeKind.FIRST),
    ]
    assert not any(a.ok for a in attempts)


def test_broken_or_missing_plug_in_is_a_failed_attempt_not_a_crash() -> None:
    channels = {"wecom": FakeChannel("wecom", raises=True), "inapp": FakeChannel("inapp")}
    person = Contact("c9", "x", Role.CAREGIVER, (Endpoint("wecom", "g"), Endpoint("fax", "1"), Endpoint("inapp", "c9")))
    attempts = run(make_alert(DAY), [0], channels, contacts=(person,))
    assert [(a.channel, a.ok) for a in attempts] == [("wecom", False), ("fax", False), ("inapp", True)]
    assert attempts[0].error == "RuntimeError: plug-in bug"
    assert attempts[1].error is not None and "no channel plug-in" in attempts[1].error


def test_missing_roles_and_unreachable_people_are_reported() -> None:
    nobody = Contact("c0", "无联系方式", Role.CAREGIVER, ())
    p = plan(make_alert(DAY), (nobody, CAREGIVER), EscalationPolicy(), [], DAY + timedelta(minutes=16))
    assert p.missing_roles == (Role.VILLAGE_OFFICER, Role.TOWNSHIP_LEADER)
    assert p.unreachable == ("c0",)
    assert [d.person_id for d in p.due] == ["c1"]


def test_messages_are_chinese_first_with_the_ack_link() -> None:
    alert = make_alert(DAY)
    channels = ok_channels()
    run(alert, [0, 5], channels, contacts=(CAREGIVER, VILLAGE))
    first = channels["wecom"].sent[0]
    assert first.text.startswith("【养怡】燃气报警：城关镇幸福村助餐点")
    assert "https://yy.example/ack?a=A1" in first.text and first.link == "https://yy.example/ack?a=A1"
    assert "11:00" in first.text  # local time of the county
    to_village = next(n for n in channels["sms"].sent if n.person_id == "v1")
    assert "上报村安全员" in to_village.text
    reminder = [n for n in channels["wecom"].sent if n.person_id == "c1"][1]
    assert reminder.title == "【养怡】燃气报警（第1次提醒）"
    assert first.params["kind"] == "燃气报警" and first.params["link"] == first.link


def test_a_restart_mid_escalation_carries_on_from_stored_attempts() -> None:
    straight = run(make_alert(DAY), range(0, 17), ok_channels())
    before = run(make_alert(DAY), range(0, 8), ok_channels())
    stored = [replace(a) for a in before]  # what the attempts table would hold
    after = run(make_alert(DAY), range(8, 17), ok_channels(), history=stored)  # new process, new channels
    assert timeline(after, DAY) == timeline(straight, DAY)


def test_quiet_hours_arithmetic() -> None:
    night = QuietHours()  # 22:00–06:00 Asia/Shanghai
    assert night.contains(NIGHT) and not night.contains(DAY)
    assert night.contains(datetime(2026, 6, 1, 21, 59, tzinfo=UTC))  # 05:59 local
    assert not night.contains(datetime(2026, 6, 1, 22, 0, tzinfo=UTC))  # 06:00 local
    # 20:00 local → 08:00 local next day holds 8 quiet hours.
    evening, morning = datetime(2026, 6, 1, 12, 0, tzinfo=UTC), datetime(2026, 6, 2, 0, 0, tzinfo=UTC)
    assert night.quiet_seconds(evening, morning) == 8 * 3600
    nap = QuietHours(start=time(12, 0), end=time(14, 0))  # a daytime window works too
    assert nap.contains(datetime(2026, 6, 1, 5, 0, tzinfo=UTC)) and not nap.contains(DAY)
    assert nap.ends_after(datetime(2026, 6, 1, 5, 0, tzinfo=UTC)) == datetime(2026, 6, 1, 6, 0, tzinfo=UTC)
    off = QuietHours(start=time(0, 0), end=time(0, 0))
    assert not off.contains(NIGHT) and off.quiet_seconds(DAY, DAY + timedelta(days=2)) == 0
