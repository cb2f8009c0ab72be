"""The alert lifecycle: observations and people's actions in, alert changes and timeline events out.

States: OPEN → ACKNOWLEDGED (who, when, through which channel) → RESOLVED. An alert resolves when
its condition has cleared and, for gas and electric alarms (hazard gas/electric, peak severity
alarm or above), a person has confirmed on site with a rectification note (整改说明); other alerts
resolve by themselves once cleared (unless `auto_resolve` is off: then by a person). OPEN →
RESOLVED happens for a condition that clears before anyone acknowledged and needs no
confirmation (a device back online).

Rules:
- One active (unresolved) alert per (point, device, condition); a repeated observation updates it
  (count, last value, last seen, severity) instead of opening another.
- A clear is taken only after it has held for `clear_hold_s` without the condition coming back,
  so a value wobbling at a threshold gives one alert, not a stream (no flapping).
- A condition that clears and comes back while its alert is unresolved reopens the same alert
  (RECURRED); after the alert was resolved it opens a new one
  that names the old one as `previous_id`.
- Every transition yields a TimelineEvent for the safety ledger (台账); plain repeats do not.
- An edge event saying a person acknowledged the alarm with the local button (`acknowledged_by`)
  acknowledges the open edge alert through channel `edge`.
- The edge is authoritative for local alarms: while the edge's own alarm on a channel (`<ch>:edge`)
  is active, the server's threshold rule on the same point, device and channel (`<ch>:threshold`)
  opens no second alert; its first verdict is recorded on the edge alert's timeline (CORROBORATED).
  When the edge is silent (no alarm, or its alarm has cleared), the server rule opens its own alert.

Pure: no clock and no storage here. The caller persists `Change.alert` and `Change.events` and can
rebuild an AlertBook from stored unresolved alerts after a restart.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from .errors import AlertStateError, ConfirmationRequiredError, UnknownAlertError
from .rules import ConditionKey, Hazard, Observation, Severity

SYSTEM_ACTOR = "system"
ON_SITE_CHANNEL = "on_site"
EDGE_CHANNEL = "edge"  # acknowledged with the local button at the meal point


class AlertState(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class EventKind(StrEnum):
    OPENED = "opened"
    SEVERITY_CHANGED = "severity_changed"
    ACKNOWLEDGED = "acknowledged"
    CLEARED = "cleared"  # the condition went away (after the hold time)
    RECURRED = "recurred"  # it came back before the alert was resolved
    CONFIRMED = "confirmed"  # a person confirmed on site, with a rectification note
    RESOLVED = "resolved"
    CORROBORATED = "corroborated"  # the server's own rule saw the edge's alarm too (no second alert)


class LifecyclePolicy(BaseModel):
    """Lifecycle settings; every default documented here is the county's to change."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    clear_hold_s: float = Field(default=120.0, ge=0, description="A clear must hold this long [A]")
    clear_hold_s_by_hazard: dict[Hazard, float] = Field(default_factory=dict)
    confirm_hazards: frozenset[Hazard] = Field(default=frozenset({Hazard.GAS, Hazard.ELECTRIC}))
    confirm_min_severity: Severity = Severity.ALARM
    # Off: every alert waits for a person to resolve it (resolve()), not only gas and electric alarms.
    auto_resolve: bool = True

    def hold_s(self, hazard: Hazard) -> float:
        return self.clear_hold_s_by_hazard.get(hazard, self.clear_hold_s)


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    by: str
    at: datetime
    channel: str


@dataclass(frozen=True, slots=True)
class Confirmation:
    by: str
    at: datetime
    note: str


@dataclass(slots=True)
class Alert:
    """One alert's current state (the row the storage layer will keep)."""

    id: str
    key: ConditionKey
    hazard: Hazard
    severity: Severity
    peak_severity: Severity
    opened_at: datetime
    last_seen: datetime
    state: AlertState = AlertState.OPEN
    source: str = "rule"
    count: int = 1
    last_value: float | None = None
    unit: str | None = None
    threshold: float | None = None
    message: str = ""
    active: bool = True  # the condition is present now
    clear_pending_since: datetime | None = None
    cleared_at: datetime | None = None
    ack: Acknowledgement | None = None
    confirmation: Confirmation | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    previous_id: str | None = None
    corroborated_at: datetime | None = None  # first time a server rule saw this edge alarm too


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    alert_id: str
    at: datetime
    kind: EventKind
    actor: str = SYSTEM_ACTOR
    channel: str | None = None
    detail: Mapping[str, str | float | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Change:
    """A snapshot of the alert after the change, and the timeline events it produced (maybe none)."""

    alert: Alert
    events: tuple[TimelineEvent, ...] = ()


def _new_id() -> str:
    return uuid.uuid4().hex


def edge_twin(key: ConditionKey) -> ConditionKey | None:
    """The edge alarm a server threshold condition duplicates (same point, device, channel), if any."""
    channel, sep, kind = key.condition.rpartition(":")
    return ConditionKey(key.point, key.device, f"{channel}:edge") if sep and kind == "threshold" else None


class AlertBook:
    """The set of alerts and the rules that move them; one per server process (or per shard)."""

    def __init__(
        self, policy: LifecyclePolicy | None = None, *, alerts: Iterable[Alert] = (),
        new_id: Callable[[], str] = _new_id,
    ) -> None:
        self.policy = policy or LifecyclePolicy()
        self._new_id = new_id
        self._by_id: dict[str, Alert] = {}
        self._active: dict[ConditionKey, Alert] = {}
        self._last_resolved: dict[ConditionKey, str] = {}
        for a in alerts:
            self._by_id[a.id] = a
            if a.state != AlertState.RESOLVED:
                self._active[a.key] = a
            else:
                self._last_resolved[a.key] = a.id

    def put(self, alert: Alert) -> None:
        """Take a stored alert as it is now (after a restart, or after another process changed it)."""
        old = self._by_id.get(alert.id)
        if old is not None and self._active.get(old.key) is old:
            del self._active[old.key]
        current = self._active.get(alert.key)
        if current is not None and current.id != alert.id and alert.state != AlertState.RESOLVED:
            del self._by_id[current.id]  # a newer row for the same condition replaces ours
        self._by_id[alert.id] = alert
        if alert.state != AlertState.RESOLVED:
            self._active[alert.key] = alert
        else:
            self._last_resolved[alert.key] = alert.id

    def forget(self, alert_id: str) -> None:
        """Drop an alert that was never stored (its insert lost a race to another process)."""
        a = self._by_id.pop(alert_id, None)
        if a is not None and self._active.get(a.key) is a:
            del self._active[a.key]

    # -- queries ----------------------------------------------------------------------------------

    def get(self, alert_id: str) -> Alert:
        try:
            return self._by_id[alert_id]
        except KeyError:
            raise UnknownAlertError(alert_id) from None

    def active(self, key: ConditionKey) -> Alert | None:
        return self._active.get(key)

    def unresolved(self) -> list[Alert]:
        return sorted(self._active.values(), key=lambda a: a.opened_at)

    def needs_confirmation(self, alert: Alert) -> bool:
        """Gas and electric alarms resolve only with an on-site confirmation."""
        return (alert.hazard in self.policy.confirm_hazards
                and alert.peak_severity.rank >= self.policy.confirm_min_severity.rank)

    # -- inputs -----------------------------------------------------------------------------------

    def observe(self, obs: Observation) -> Change | None:
        """Apply one rule observation; None when it changes nothing (a clear for no alert)."""
        change = self._observe(obs)
        a = self._active.get(obs.key)
        if obs.acknowledged_by is None or a is None or a.state != AlertState.OPEN:
            return change
        # Acknowledged at the point (the edge's local button): the person there owns it now.
        event = self._ack(a, obs.acknowledged_by, obs.at, EDGE_CHANNEL)
        return Change(replace(a), (change.events if change is not None else ()) + (event,))

    def _observe(self, obs: Observation) -> Change | None:
        a = self._active.get(obs.key)
        if obs.raised:
            if a is not None:
                return self._repeat(a, obs)
            edge = self._covering_edge_alarm(obs)
            return self._open(obs) if edge is None else self._corroborate(edge, obs)
        if a is None or not a.active:
            return None
        if a.clear_pending_since is None:
            a.clear_pending_since = obs.at
        events = self._settle(a, obs.at)
        return Change(replace(a), tuple(events))

    def tick(self, now: datetime) -> list[Change]:
        """Take the clears whose hold time has passed."""
        changes = []
        for a in list(self._active.values()):
            if a.clear_pending_since is not None:
                events = self._settle(a, now)
                if events:
                    changes.append(Change(replace(a), tuple(events)))
        return changes

    def acknowledge(self, alert_id: str, by: str, at: datetime, channel: str) -> Change:
        """Someone owns the alert now; acknowledging twice is harmless, a resolved alert refuses."""
        a = self.get(alert_id)
        if a.state == AlertState.RESOLVED:
            raise AlertStateError(f"alert {alert_id} is already resolved")
        if a.state == AlertState.ACKNOWLEDGED:
            return Change(replace(a))
        event = self._ack(a, by, at, channel)
        return Change(replace(a), (event,))

    def confirm(self, alert_id: str, by: str, at: datetime, note: str) -> Change:
        """Record an on-site confirmation with a rectification note; resolves if the condition is gone."""
        a = self.get(alert_id)
        if a.state == AlertState.RESOLVED:
            raise AlertStateError(f"alert {alert_id} is already resolved")
        note = note.strip()
        if not note:
            raise ConfirmationRequiredError("an on-site confirmation needs a rectification note (整改说明)")
        events: list[TimelineEvent] = []
        if a.state == AlertState.OPEN:
            events.append(self._ack(a, by, at, ON_SITE_CHANNEL))
        a.confirmation = Confirmation(by, at, note)
        events.append(TimelineEvent(a.id, at, EventKind.CONFIRMED, by, ON_SITE_CHANNEL, {"note": note}))
        if not a.active:
            events.append(self._resolve(a, at, by))
        return Change(replace(a), tuple(events))

    def resolve(self, alert_id: str, by: str, at: datetime, note: str | None = None) -> Change:
        """Close a cleared alert by hand; gas and electric alarms need confirm() instead."""
        a = self.get(alert_id)
        if a.state == AlertState.RESOLVED:
            return Change(replace(a))
        if self.needs_confirmation(a) and a.confirmation is None:
            raise ConfirmationRequiredError(
                f"alert {alert_id} ({a.hazard} {a.peak_severity}) needs an on-site confirmation with a note"
            )
        if a.active:
            raise AlertStateError(f"alert {alert_id}: the condition is still present")
        event = self._resolve(a, at, by, note)
        return Change(replace(a), (event,))

    # -- internals --------------------------------------------------------------------------------

    def _covering_edge_alarm(self, obs: Observation) -> Alert | None:
        """The edge's own active alarm that a server rule's verdict duplicates, if there is one."""
        twin = edge_twin(obs.key) if obs.source == "rule" else None
        edge = self._active.get(twin) if twin is not None else None
        return edge if edge is not None and edge.active else None

    def _corroborate(self, edge: Alert, obs: Observation) -> Change | None:
        """Note the server rule's agreement on the edge alert, once; no alert, no notification."""
        if edge.corroborated_at is not None:
            return None
        edge.corroborated_at = obs.at
        detail: dict[str, str | float | None] = {
            "condition": obs.key.condition, "severity": obs.severity.value, "value": obs.value,
            "threshold": obs.threshold, "message": obs.message,
        }
        return Change(replace(edge), (TimelineEvent(edge.id, obs.at, EventKind.CORROBORATED, detail=detail),))

    def _open(self, obs: Observation) -> Change:
        a = Alert(
            id=self._new_id(), key=obs.key, hazard=obs.hazard, severity=obs.severity, peak_severity=obs.severity,
            opened_at=obs.at, last_seen=obs.at, source=obs.source, last_value=obs.value, unit=obs.unit,
            threshold=obs.threshold, message=obs.message, previous_id=self._last_resolved.get(obs.key),
        )
        self._by_id[a.id] = a
        self._active[a.key] = a
        detail: dict[str, str | float | None] = {
            "severity": a.severity.value, "value": a.last_value, "message": a.message,
        }
        if a.previous_id:
            detail["previous_id"] = a.previous_id
        return Change(replace(a), (TimelineEvent(a.id, obs.at, EventKind.OPENED, detail=detail),))

    def _repeat(self, a: Alert, obs: Observation) -> Change:
        events: list[TimelineEvent] = []
        a.count += 1
        if obs.at >= a.last_seen:
            a.last_seen = obs.at
            a.last_value, a.unit, a.message = obs.value, obs.unit, obs.message or a.message
            if obs.threshold is not None:
                a.threshold = obs.threshold
        if a.clear_pending_since is not None and obs.at >= a.clear_pending_since:
            a.clear_pending_since = None  # a wobble: the clear did not hold
        if not a.active and (a.cleared_at is None or obs.at >= a.cleared_at):
            a.active = True
            a.cleared_at = None
            events.append(TimelineEvent(a.id, obs.at, EventKind.RECURRED, detail={"value": obs.value}))
        if obs.severity != a.severity and obs.at >= a.last_seen:
            events.append(TimelineEvent(a.id, obs.at, EventKind.SEVERITY_CHANGED, detail={
                "from": a.severity.value, "to": obs.severity.value, "value": obs.value,
            }))
            a.severity = obs.severity
            if obs.severity.rank > a.peak_severity.rank:
                a.peak_severity = obs.severity
        return Change(replace(a), tuple(events))

    def _settle(self, a: Alert, now: datetime) -> list[TimelineEvent]:
        since = a.clear_pending_since
        if since is None or (now - since).total_seconds() < self.policy.hold_s(a.hazard):
            return []
        a.active = False
        a.clear_pending_since = None
        a.cleared_at = since
        events = [TimelineEvent(a.id, since, EventKind.CLEARED, detail={"value": a.last_value})]
        if not self.needs_confirmation(a) and self.policy.auto_resolve:
            events.append(self._resolve(a, now, SYSTEM_ACTOR))
        elif a.confirmation is not None:
            events.append(self._resolve(a, now, a.confirmation.by))
        return events

    def _ack(self, a: Alert, by: str, at: datetime, channel: str) -> TimelineEvent:
        a.state = AlertState.ACKNOWLEDGED
        a.ack = Acknowledgement(by, at, channel)
        return TimelineEvent(a.id, at, EventKind.ACKNOWLEDGED, by, channel)

    def _resolve(self, a: Alert, at: datetime, by: str, note: str | None = None) -> TimelineEvent:
        a.state = AlertState.RESOLVED
        a.resolved_at = at
        a.resolved_by = by
        self._active.pop(a.key, None)
        self._last_resolved[a.key] = a.id
        detail: dict[str, str | float | None] = {}
        if note:
            detail["note"] = note
        return TimelineEvent(a.id, at, EventKind.RESOLVED, by, detail=detail)
