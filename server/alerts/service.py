"""The alert service around the pure core: rules and lifecycle kept in the database, escalation through
the real channels, and the people's actions (acknowledge, confirm on site, resolve).

Three parts, each with the clock passed in:
- AlertEngine (worker): contract messages → RuleEngine → AlertBook → rows, timeline and NOTIFY.
  Rebuilt from the database on start (unresolved alerts, the last resolved one per condition, the
  devices' liveness). Writes carry the version they read; a write that lost a race with the API or
  another worker reloads the row and applies its observations again, so nothing is overwritten.
- Escalator (worker): reads the unacknowledged alerts, their contacts and every earlier attempt from
  the database, sends what `escalation.plan` says is due and stores every attempt. It keeps no state
  of its own, so a restarted worker carries on exactly where the stored attempts say.
- AlertActions (API): acknowledge / confirm / resolve under a row lock, timeline rows, NOTIFY, and an
  ack_alarm command for the edge in the same transaction (the worker publishes it).
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg

from firmware_bridge.contract import (
    Channel as Topic,
)
from firmware_bridge.contract import (
    Command,
    CommandName,
    CountEvent,
    DeviceState,
    DeviceStatus,
    DinerEvent,
    Message,
    SafetyEvent,
    TapDecision,
    TelemetryEvent,
)

from . import repository as repo
from .channels.base import Channel, Notification, SendResult
from .channels.dingtalk import DingTalkRobot, DingTalkRobotChannel
from .channels.sms import AliyunSms, SmsChannel
from .channels.webhook import SignedWebhookChannel
from .channels.wecom import WeComRobotChannel
from .errors import AlertStateError, UnknownAlertError
from .escalation import Attempt, Due, EscalationPolicy, compose, escalate
from .lifecycle import Alert, AlertBook, AlertState, Change, EventKind, LifecyclePolicy, TimelineEvent
from .links import AckLinks
from .rules import ConditionKey, Hazard, Observation, RuleEngine, camera_card_check
from .settings import AlertConfig, read_secret

log = logging.getLogger(__name__)

RESOLVED_MEMORY_DAYS = 30
MAX_WRITE_ROUNDS = 3
TAPS_MEMORY_SECONDS = 24 * 3600
LOUD_EVENTS = frozenset({EventKind.OPENED, EventKind.RECURRED, EventKind.SEVERITY_CHANGED})
Conn = psycopg.Connection[Any]


def new_alert_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class Inbound:
    """One contract message as the worker received it."""

    channel: Topic
    message: Message
    received_at: datetime


@dataclass(frozen=True, slots=True)
class Saved:
    """An alert as written, with its new version and the timeline events of this write."""

    alert: Alert
    version: int
    events: tuple[TimelineEvent, ...]

    @property
    def loud(self) -> bool:
        """Whether people may need telling now (opened, came back, got worse)."""
        return any(e.kind in LOUD_EVENTS for e in self.events)


# ---- worker: rules and lifecycle ------------------------------------------------------------------


class AlertEngine:
    """Messages and ticks in, alert rows out; one per worker process (restricted to `point`, or all)."""

    def __init__(self, config: AlertConfig, point: str = "+", new_id: Callable[[], str] = new_alert_id) -> None:
        self.config = config
        self.point = point
        self._new_id = new_id
        self.rules = RuleEngine(config.rules)
        self.book = AlertBook(config.lifecycle, new_id=new_id)
        self.versions: dict[str, int] = {}
        self._taps: dict[str, deque[datetime]] = defaultdict(deque)
        self._entries: dict[tuple[str, str], deque[tuple[datetime, int]]] = defaultdict(deque)

    # -- start-up and refresh -----------------------------------------------------------------------

    def load(self, conn: Conn, now: datetime) -> int:
        """Rebuild the book and the liveness memory from the database; return the unresolved count."""
        self.book = AlertBook(self.config.lifecycle, new_id=self._new_id)
        self.versions.clear()
        for a, _ in repo.last_resolved(conn, now - timedelta(days=RESOLVED_MEMORY_DAYS), self.point):
            self.book.put(a)
        stored = repo.unresolved(conn, self.point)
        for a, v in stored:
            self.book.put(a)
            self.versions[a.id] = v
        for point, device, role, state, hb, seen in repo.known_devices(conn, self.point):
            self.rules.seed_device(point, device, role=role, state=DeviceState(state) if state else None,
                                   heartbeat_s=float(hb) if hb else None, last_seen=seen)
        conn.commit()
        return len(stored)

    def refresh(self, conn: Conn) -> int:
        """Take alerts changed by others (the API, another worker) from the database; return how many."""
        stored = repo.unresolved_versions(conn, self.point)
        changed = 0
        for alert_id in set(self.versions) - set(stored):
            row = repo.get_alert(conn, alert_id)  # resolved elsewhere
            if row is not None:
                self._take(*row)
                changed += 1
        for alert_id, version in stored.items():
            if self.versions.get(alert_id) != version:
                row = repo.get_alert(conn, alert_id)
                if row is not None:
                    self._take(*row)
                    changed += 1
        conn.commit()
        return changed

    def _take(self, alert: Alert, version: int) -> None:
        self.book.put(alert)
        if alert.state == AlertState.RESOLVED:
            self.versions.pop(alert.id, None)
        else:
            self.versions[alert.id] = version

    # -- inputs -------------------------------------------------------------------------------------

    def observations(self, items: Iterable[Inbound]) -> list[Observation]:
        """Run the rules over messages (pure apart from the rules' own memory)."""
        out: list[Observation] = []
        for item in items:
            m, at = item.message, item.received_at
            if isinstance(m, SafetyEvent):
                out += self.rules.on_safety(m, at)
            elif isinstance(m, TelemetryEvent):
                out += self.rules.on_seen(m.point, m.device, at)
                for r in m.readings:
                    out += self.rules.on_reading(m.point, m.device, r.ch, r.t or m.ts, r.v, r.unit, r.min, r.max)
            elif isinstance(m, DeviceStatus):
                out += self.rules.on_status(m, at)
            elif isinstance(m, DinerEvent):
                out += self.rules.on_seen(m.point, m.device, at)
                if m.decision == TapDecision.ACCEPTED:
                    self._remember_tap(m.point, m.ts)
            elif isinstance(m, CountEvent):
                out += self.rules.on_seen(m.point, m.device, at)
                obs = self._camera_card(m)
                if obs is not None:
                    out.append(obs)
        return out

    def _remember_tap(self, point: str, ts: datetime) -> None:
        taps = self._taps[point]
        taps.append(ts)
        while taps and (taps[-1] - taps[0]).total_seconds() > TAPS_MEMORY_SECONDS:
            taps.popleft()

    def _camera_card(self, m: CountEvent) -> Observation | None:
        window = timedelta(seconds=self.config.camera_card_window_s)
        entries = self._entries[(m.point, m.device)]
        entries.append((m.ts, m.entries))
        while entries and entries[0][0] <= m.ts - window:
            entries.popleft()
        start = m.ts - window
        taps = sum(1 for t in self._taps.get(m.point, ()) if start < t <= m.ts)
        seen = sum(n for _, n in entries)
        return camera_card_check(m.point, m.device, m.ts, taps, seen, self.config.rules.camera_card)

    def handle(self, conn: Conn, observations: Sequence[Observation]) -> list[Saved]:
        """Apply observations to the book and store the changed alerts (commits)."""
        return self._apply(conn, list(observations), [])

    def tick(self, conn: Conn, now: datetime) -> list[Saved]:
        """Liveness rules and clear hold times (commits)."""
        return self._apply(conn, self.rules.tick(now), self.book.tick(now))

    # -- storage ------------------------------------------------------------------------------------

    def _apply(self, conn: Conn, pending: list[Observation], extra: list[Change]) -> list[Saved]:
        saved: list[Saved] = []
        for _ in range(MAX_WRITE_ROUNDS):
            changes: dict[str, list[Change]] = defaultdict(list)
            keys: dict[str, ConditionKey] = {}
            for change in extra:
                changes[change.alert.id].append(change)
            for obs in pending:
                observed = self.book.observe(obs)
                if observed is not None:
                    changes[observed.alert.id].append(observed)
                    keys[observed.alert.id] = obs.key
            extra = []
            lost = self._write(conn, changes, saved)
            conn.commit()
            if not lost:
                return saved
            for alert_id in lost:
                self._reload(conn, alert_id, keys.get(alert_id) or changes[alert_id][-1].alert.key)
            conn.commit()
            lost_keys = {keys.get(a) or changes[a][-1].alert.key for a in lost}
            pending = [o for o in pending if o.key in lost_keys]
        log.warning("gave up writing %d observations after %d rounds of conflicts", len(pending), MAX_WRITE_ROUNDS)
        return saved

    def _write(self, conn: Conn, changes: Mapping[str, list[Change]], saved: list[Saved]) -> list[str]:
        """Write each changed alert; return the ids whose write lost a race."""
        lost: list[str] = []
        done: list[Saved] = []
        for alert_id, chs in changes.items():
            snap = chs[-1].alert
            events = tuple(e for c in chs for e in c.events)
            if alert_id in self.versions:
                version = repo.update_alert(conn, snap, self.versions[alert_id])
            else:
                version = 1 if repo.insert_alert(conn, snap) else None
            if version is None:
                lost.append(alert_id)
                continue
            repo.insert_events(conn, events)
            if events:
                repo.notify(conn, repo.alert_notice(snap, version, events))
            done.append(Saved(snap, version, events))
        for s in done:
            if s.alert.state == AlertState.RESOLVED:
                self.versions.pop(s.alert.id, None)
            else:
                self.versions[s.alert.id] = s.version
        saved += done
        return lost

    def _reload(self, conn: Conn, alert_id: str, key: ConditionKey) -> None:
        if alert_id not in self.versions:
            self.book.forget(alert_id)  # our new alert lost to one stored by someone else
        else:
            row = repo.get_alert(conn, alert_id)
            if row is not None:
                self._take(*row)
        current = repo.active_alert(conn, key)
        if current is not None:
            self._take(*current)


# ---- worker: escalation ------------------------------------------------------------------------------


class Escalator:
    """Sends what is due for every unacknowledged alert and stores every attempt; stateless between runs."""

    def __init__(
        self, policy: EscalationPolicy, channels: Mapping[str, Channel], links: AckLinks | None = None,
        tz: str = "Asia/Shanghai", point: str = "+",
    ) -> None:
        self.policy = policy
        self.night_owls = policy.model_copy(update={"quiet_hours": None})
        self.channels = dict(channels)
        self.links = links
        self.tz = tz
        self.point = point
        self._warned: set[str] = set()

    def run(self, conn: Conn, now: datetime) -> list[Attempt]:
        """One pass over the open alerts; commits after each alert's attempts."""
        alerts = repo.open_alerts(conn, self.point)
        if not alerts:
            conn.commit()
            return []
        points = sorted({a.key.point for a in alerts})
        contacts = repo.contacts_for_points(conn, points)
        names = repo.point_names(conn, points)
        people = sorted({c.contact.person_id for cs in contacts.values() for c in cs})
        history = repo.attempts(conn, [a.id for a in alerts], people, now - timedelta(hours=1))
        conn.commit()  # no transaction stays open while providers answer
        sent: list[Attempt] = []
        for alert in alerts:
            stored = contacts.get(alert.key.point, [])
            if not stored and alert.id not in self._warned:
                self._warned.add(alert.id)
                log.warning("alert %s at %s: nobody to notify (no contacts for the point, village or township)",
                            alert.id, alert.key.point)
            mobiles = {c.contact.person_id: c.contact.mobile for c in stored}
            render = self._renderer(alert, names.get(alert.key.point, alert.key.point), mobiles, now)
            mine: list[Attempt] = []
            for group, policy in (([c.contact for c in stored if c.quiet_hours], self.policy),
                                  ([c.contact for c in stored if not c.quiet_hours], self.night_owls)):
                if group:
                    _, attempts = escalate(alert, group, policy, [*history, *mine], now, self.channels, render)
                    mine += attempts
            if mine:
                repo.insert_attempts(conn, mine)
                conn.commit()
                history += mine
                sent += mine
        return sent

    def _renderer(self, alert: Alert, point_name: str, mobiles: Mapping[str, str | None],
                  now: datetime) -> Callable[[Due], Notification]:
        def render(d: Due) -> Notification:
            link = self.links.url(alert.id, d.person_id, now) if self.links else None
            waited = (now - alert.opened_at).total_seconds() / 60.0
            return compose(alert, d, point_name=point_name, link=link, tz=self.tz, mobile=mobiles.get(d.person_id),
                           waited_min=waited)
        return render


class PgInAppChannel:
    """In-app messages across processes: delivered through NOTIFY to the API's event streams, and
    counted as delivered only while one of the person's dashboard streams is open (presence rows)."""

    name = "inapp"

    def __init__(self, dsn: str, clock: Callable[[], datetime], presence_s: float = 60.0) -> None:
        self._dsn = dsn
        self._clock = clock
        self._presence = timedelta(seconds=presence_s)

    def send(self, notification: Notification) -> SendResult:
        n = notification
        try:
            with psycopg.connect(self._dsn, connect_timeout=5) as conn:
                open_streams = repo.present(conn, n.address, self._clock() - self._presence)
                if not open_streams:
                    return SendResult(False, self.name, error=f"no open in-app session for {n.address!r}")
                repo.notify(conn, {"type": "inapp", "person_id": n.address, "alert_id": n.alert_id,
                                   "title": n.title, "text": n.text, "link": n.link, "severity": n.severity,
                                   "hazard": n.hazard})
        except psycopg.Error as exc:
            return SendResult(False, self.name, error=f"{type(exc).__name__}: {exc}")
        return SendResult(True, self.name, response=f"{open_streams} open sessions")


def build_channels(config: AlertConfig, dsn: str, clock: Callable[[], datetime]) -> dict[str, Channel]:
    """The channel plug-ins the policy configures, by the names contacts use."""
    c = config.channels
    out: dict[str, Channel] = {}
    if c.wecom is not None:
        out["wecom"] = WeComRobotChannel(c.wecom.robots, msgtype=c.wecom.msgtype, timeout_s=c.wecom.timeout_s)
    if c.dingtalk is not None:
        robots = {k: DingTalkRobot(r.url, r.secret, r.keywords) for k, r in c.dingtalk.robots.items()}
        out["dingtalk"] = DingTalkRobotChannel(robots, msgtype=c.dingtalk.msgtype, timeout_s=c.dingtalk.timeout_s)
    if c.webhook is not None:
        secret = read_secret(c.webhook.secret_file, "the webhook secret").encode()
        out["webhook"] = SignedWebhookChannel(secret, key_id=c.webhook.key_id, timeout_s=c.webhook.timeout_s)
    if c.sms is not None:
        provider = AliyunSms(c.sms.access_key_id, read_secret(c.sms.access_key_secret_file, "the SMS secret"),
                             c.sms.sign_name, endpoint=c.sms.endpoint, region=c.sms.region, timeout_s=c.sms.timeout_s)
        out["sms"] = SmsChannel(provider, c.sms.template_code)
    if c.inapp.enabled:
        out["inapp"] = PgInAppChannel(dsn, clock, c.inapp.presence_s)
    return out


# ---- API: people's actions ------------------------------------------------------------------------------


@dataclass(slots=True)
class ActionResult:
    alert: Alert
    version: int
    events: tuple[TimelineEvent, ...] = field(default=())
    command_id: str | None = None


class AlertActions:
    """Acknowledge, confirm on site and resolve, in the caller's transaction (the caller commits)."""

    def __init__(self, policy: LifecyclePolicy | None = None, command_ttl_s: float = 600.0) -> None:
        self.policy = policy or LifecyclePolicy()
        self.command_ttl = timedelta(seconds=command_ttl_s)

    def _locked(self, conn: Conn, alert_id: str, point_id: str | None) -> tuple[AlertBook, int]:
        row = repo.get_alert(conn, alert_id, for_update=True)
        if row is None or (point_id is not None and row[0].key.point != point_id):
            raise UnknownAlertError(alert_id)
        return AlertBook(self.policy, alerts=[row[0]]), row[1]

    def _store(self, conn: Conn, change: Change, version: int) -> ActionResult:
        if not change.events:
            return ActionResult(change.alert, version)
        new_version = repo.update_alert(conn, change.alert, version)
        if new_version is None:  # cannot happen under the row lock; kept as a guard
            raise AlertStateError(f"alert {change.alert.id} changed while it was locked")
        repo.insert_events(conn, change.events)
        repo.notify(conn, repo.alert_notice(change.alert, new_version, change.events))
        return ActionResult(change.alert, new_version, change.events)

    def acknowledge(self, conn: Conn, alert_id: str, by: str, channel: str, at: datetime,
                    point_id: str | None = None) -> ActionResult:
        """Someone owns the alert; the edge is told to silence its buzzer (never to reopen a valve)."""
        book, version = self._locked(conn, alert_id, point_id)
        result = self._store(conn, book.acknowledge(alert_id, by, at, channel), version)
        if result.events:
            result.command_id = self._ack_alarm(conn, result.alert, by, at)
        return result

    def resolve(self, conn: Conn, alert_id: str, by: str, at: datetime, note: str | None, on_site: bool,
                point_id: str | None = None) -> ActionResult:
        """On site with a note: confirm (resolves once the condition is gone); otherwise a plain resolve."""
        book, version = self._locked(conn, alert_id, point_id)
        alert = book.get(alert_id)
        if on_site:
            was_open = alert.state == AlertState.OPEN
            result = self._store(conn, book.confirm(alert_id, by, at, note or ""), version)
            if was_open:
                result.command_id = self._ack_alarm(conn, result.alert, by, at)
            return result
        return self._store(conn, book.resolve(alert_id, by, at, note), version)

    def _ack_alarm(self, conn: Conn, alert: Alert, by: str, at: datetime) -> str | None:
        if alert.source != "edge" and alert.hazard not in (Hazard.GAS, Hazard.ELECTRIC):
            return None  # nothing sounds on site for it
        cmd_id = f"ack-{uuid.uuid4().hex[:16]}"
        command = Command(cmd_id=cmd_id, point=alert.key.point, cmd=CommandName.ACK_ALARM,
                          args={"alert_id": alert.id, "condition": alert.key.condition, "by": by[:64]},
                          issued_at=at, expires_at=at + self.command_ttl)
        repo.enqueue_command(conn, cmd_id, alert.id, alert.key.point, command.to_bytes(), at)
        repo.notify(conn, {"type": "command", "point_id": alert.key.point, "cmd_id": cmd_id})
        return cmd_id
