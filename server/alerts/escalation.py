"""Escalation: who must be told about an alert now, through which channel; a pure planner plus one loop.

`plan(alert, contacts, policy, history, now)` looks at an unacknowledged alert, the meal point's
contacts by role, the policy and every earlier attempt, and returns what is due now:

- steps by role, each after its own minutes from the alert's opening (defaults [A]: caregivers of
  the point at once, the village safety officer after 5 min, the township leader after 15 min);
  earlier roles stay on the list, so everybody reached keeps being reminded;
- a person is told once per round; a round succeeds on the first channel that takes the message.
  A failing channel falls through to the person's next channel at once; when all failed, the
  round is retried after `retry_min`;
- after a successful round, a reminder round every `reminder_min` until someone acknowledges;
- a person gets at most `max_per_person_per_hour` successful messages an hour over all alerts
  (rate limit), except the first message of a gas or electric alert;
- quiet hours (default 22:00–06:00 Asia/Shanghai [A]) hold alerts of severity warning or below
  that are not gas or electric, and their step clock stops while held. Gas and electric alerts
  are never muted.

Nothing is sent here: `escalate()` is the one loop that sends what `plan` says through the channel
plug-ins and returns every attempt (success or failure) as an `Attempt` record to be stored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from .channels.base import Channel, Notification, SendResult, send_safely
from .lifecycle import Alert, AlertState
from .rules import HAZARD_ZH, SEVERITY_ZH, Hazard, Severity

log = logging.getLogger(__name__)

BRAND = "【养怡】"


class Role(StrEnum):
    CAREGIVER = "caregiver"  # 护理员 of the meal point
    VILLAGE_OFFICER = "village_officer"  # 村安全员
    TOWNSHIP_LEADER = "township_leader"  # 乡镇分管领导


ROLE_ZH = {Role.CAREGIVER: "护理员", Role.VILLAGE_OFFICER: "村安全员", Role.TOWNSHIP_LEADER: "乡镇分管领导"}


class NoticeKind(StrEnum):
    FIRST = "first"
    REMINDER = "reminder"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One way to reach a person: a channel plug-in's name and its address (URL, phone, user id)."""

    channel: str
    address: str


@dataclass(frozen=True, slots=True)
class Contact:
    person_id: str
    name: str
    role: Role
    endpoints: tuple[Endpoint, ...]  # in order of preference
    mobile: str | None = None


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class Step(_Strict):
    role: Role
    after_min: float = Field(ge=0)


class QuietHours(_Strict):
    start: time = time(22, 0)
    end: time = time(6, 0)
    tz: str = "Asia/Shanghai"

    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    def contains(self, at: datetime) -> bool:
        t = at.astimezone(self.zone()).time()
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end

    def windows(self, start: datetime, end: datetime) -> Iterable[tuple[datetime, datetime]]:
        """Quiet windows (UTC) that may overlap [start, end)."""
        if self.start == self.end:
            return
        zone = self.zone()
        day = start.astimezone(zone).date() - timedelta(days=1)
        last = end.astimezone(zone).date()
        while day <= last:
            w0 = datetime.combine(day, self.start, zone)
            end_day = day if self.start < self.end else day + timedelta(days=1)
            w1 = datetime.combine(end_day, self.end, zone)
            yield w0.astimezone(UTC), w1.astimezone(UTC)
            day += timedelta(days=1)

    def quiet_seconds(self, start: datetime, end: datetime) -> float:
        total = 0.0
        for w0, w1 in self.windows(start, end):
            lo, hi = max(w0, start), min(w1, end)
            if hi > lo:
                total += (hi - lo).total_seconds()
        return total

    def ends_after(self, at: datetime) -> datetime:
        """When the quiet period holding `at` ends (UTC)."""
        for w0, w1 in self.windows(at, at + timedelta(days=2)):
            if w0 <= at < w1:
                return w1
        return at


def _default_steps() -> tuple[Step, ...]:
    return (
        Step(role=Role.CAREGIVER, after_min=0),
        Step(role=Role.VILLAGE_OFFICER, after_min=5),
        Step(role=Role.TOWNSHIP_LEADER, after_min=15),
    )


class EscalationPolicy(_Strict):
    """Escalation settings (the county's to change); defaults [A] in the module docstring."""

    steps: tuple[Step, ...] = Field(default_factory=_default_steps, min_length=1)
    reminder_min: float = Field(default=5.0, gt=0)
    retry_min: float = Field(default=1.0, gt=0)
    max_per_person_per_hour: int = Field(default=12, ge=1)
    quiet_hours: QuietHours | None = Field(default_factory=QuietHours)
    never_mute: frozenset[Hazard] = frozenset({Hazard.GAS, Hazard.ELECTRIC})
    quiet_max_severity: Severity = Severity.WARNING

    def mutable(self, alert: Alert) -> bool:
        """Whether quiet hours may hold this alert."""
        return alert.hazard not in self.never_mute and alert.severity.rank <= self.quiet_max_severity.rank


@dataclass(frozen=True, slots=True)
class Due:
    """One message to send now."""

    alert_id: str
    person_id: str
    role: Role
    channel: str
    address: str
    kind: NoticeKind
    round: int  # 0 for the first message, then one per reminder (or retry of a wholly failed round)
    attempt: int  # 0 on the person's first channel; each fall-through adds one
    at: datetime


@dataclass(frozen=True, slots=True)
class Attempt:
    """The record of one send (stored for the ledger; the planner's memory)."""

    alert_id: str
    person_id: str
    role: Role
    channel: str
    address: str
    kind: NoticeKind
    round: int
    attempt: int
    at: datetime
    ok: bool
    status: int | None = None
    response: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    due: tuple[Due, ...] = ()
    held_until: datetime | None = None  # quiet hours hold the alert until then
    missing_roles: tuple[Role, ...] = ()  # a step is reached but nobody holds that role
    unreachable: tuple[str, ...] = ()  # people without any endpoint
    rate_limited: tuple[str, ...] = ()


def record(due: Due, result: SendResult, at: datetime | None = None) -> Attempt:
    """Turn a send result into the attempt record to store."""
    return Attempt(
        due.alert_id, due.person_id, due.role, due.channel, due.address, due.kind, due.round, due.attempt,
        at or due.at, result.ok, result.status, result.response, result.error,
    )


def plan(
    alert: Alert, contacts: Sequence[Contact], policy: EscalationPolicy, history: Sequence[Attempt],
    now: datetime,
) -> Plan:
    """What to send now for one alert; `history` holds earlier attempts (for the rate limit, of all alerts)."""
    if alert.state != AlertState.OPEN:
        return Plan()
    mutable = policy.mutable(alert)
    elapsed = (now - alert.opened_at).total_seconds()
    if mutable and policy.quiet_hours is not None:
        if policy.quiet_hours.contains(now):
            return Plan(held_until=policy.quiet_hours.ends_after(now))
        elapsed -= policy.quiet_hours.quiet_seconds(alert.opened_at, now)
    roles: list[Role] = []
    for step in policy.steps:
        if elapsed >= step.after_min * 60 and step.role not in roles:
            roles.append(step.role)
    due: list[Due] = []
    missing: list[Role] = []
    unreachable: list[str] = []
    limited: list[str] = []
    for role in roles:
        people = [c for c in contacts if c.role == role]
        if not people:
            missing.append(role)
        for person in people:
            if not person.endpoints:
                unreachable.append(person.person_id)
                continue
            mine = [a for a in history if a.alert_id == alert.id and a.person_id == person.person_id]
            d = _next_for(alert, person, role, mine, policy, now)
            if d is None:
                continue
            exempt = d.kind == NoticeKind.FIRST and alert.hazard in policy.never_mute
            if not exempt and _sent_last_hour(history, person.person_id, now) >= policy.max_per_person_per_hour:
                limited.append(person.person_id)
                continue
            due.append(d)
    return Plan(tuple(due), None, tuple(missing), tuple(unreachable), tuple(limited))


def _sent_last_hour(history: Sequence[Attempt], person_id: str, now: datetime) -> int:
    since = now - timedelta(hours=1)
    return sum(1 for a in history if a.person_id == person_id and a.ok and since < a.at <= now)


def _next_for(
    alert: Alert, person: Contact, role: Role, attempts: Sequence[Attempt], policy: EscalationPolicy, now: datetime,
) -> Due | None:
    def due(endpoint: Endpoint, kind: NoticeKind, rnd: int, attempt: int) -> Due:
        return Due(alert.id, person.person_id, role, endpoint.channel, endpoint.address, kind, rnd, attempt, now)

    first = person.endpoints[0]
    if not attempts:
        return due(first, NoticeKind.FIRST, 0, 0)
    ever_ok = any(a.ok for a in attempts)
    rnd = max(a.round for a in attempts)
    in_round = [a for a in attempts if a.round == rnd]
    ok = [a for a in in_round if a.ok]
    if ok:
        if now - min(a.at for a in ok) >= timedelta(minutes=policy.reminder_min):
            return due(first, NoticeKind.REMINDER, rnd + 1, 0)
        return None
    tried = {(a.channel, a.address) for a in in_round}
    kind = in_round[0].kind
    for endpoint in person.endpoints:
        if (endpoint.channel, endpoint.address) not in tried:
            return due(endpoint, kind, rnd, len(in_round))
    if now - max(a.at for a in in_round) >= timedelta(minutes=policy.retry_min):
        return due(first, NoticeKind.REMINDER if ever_ok else NoticeKind.FIRST, rnd + 1, 0)
    return None


# --- messages ------------------------------------------------------------------------------------


def compose(
    alert: Alert, due: Due, *, point_name: str, link: str | None, tz: str = "Asia/Shanghai",
    mobile: str | None = None, waited_min: float | None = None,
) -> Notification:
    """The message for one due send, Chinese first, with the acknowledge link."""
    kind = f"{HAZARD_ZH[alert.hazard]}{SEVERITY_ZH[alert.severity]}"
    title = f"{BRAND}{kind}"
    if due.kind == NoticeKind.REMINDER:
        title += f"（第{due.round}次提醒）"
    when = alert.opened_at.astimezone(ZoneInfo(tz)).strftime("%m-%d %H:%M")
    lines = [f"{title}：{point_name}（设备 {alert.key.device}）{alert.message}。发生时间 {when}。"]
    if due.role != Role.CAREGIVER:
        waited = f"{waited_min:.0f} 分钟" if waited_min is not None else ""
        lines.append(f"护理员{waited}未确认，现上报{ROLE_ZH[due.role]}。")
    if link:
        lines.append(f"请立即处理并点击确认：{link}")
    text = "".join(lines)
    markdown = "\n".join([
        f"### {title}",
        f"> 助餐点：**{point_name}**",
        f"> 设备：{alert.key.device}",
        f"> 情况：{alert.message}",
        f"> 时间：{when}",
        *([f"> 护理员未确认，已上报{ROLE_ZH[due.role]}"] if due.role != Role.CAREGIVER else []),
        *([f"[点击确认收到]({link})"] if link else []),
    ])
    params = {
        "kind": kind, "point": point_name[:20], "device": alert.key.device[:20], "time": when,
        "link": link or "",
    }
    return Notification(
        alert_id=alert.id, person_id=due.person_id, address=due.address, title=title, text=text,
        markdown=markdown, link=link, severity=alert.severity.value, hazard=alert.hazard.value, mobile=mobile,
        params=params,
    )


def escalate(
    alert: Alert, contacts: Sequence[Contact], policy: EscalationPolicy, history: Sequence[Attempt], now: datetime,
    channels: Mapping[str, Channel], render: Callable[[Due], Notification],
) -> tuple[Plan, list[Attempt]]:
    """Send everything due now, falling through failing channels; return the first plan and every attempt."""
    attempts: list[Attempt] = []
    first: Plan | None = None
    budget = 1 + sum(len(c.endpoints) for c in contacts)
    while budget > 0:
        p = plan(alert, contacts, policy, [*history, *attempts], now)
        first = first or p
        if not p.due:
            break
        for d in p.due:
            channel = channels.get(d.channel)
            if channel is None:
                result = SendResult(False, d.channel, error=f"no channel plug-in named {d.channel!r}")
            else:
                result = send_safely(channel, render(d))
            if not result.ok:
                log.warning("alert %s to %s via %s failed: %s", d.alert_id, d.person_id, d.channel, result.error)
            attempts.append(record(d, result, now))
        budget -= 1
    return first or Plan(), attempts
