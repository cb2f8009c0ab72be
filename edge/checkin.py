"""Check-in decisions at a meal point: meal windows, repeats, roster and delivery, clock injected.

The edge decides offline so the elder hears an answer at once; the server re-decides for money.

* Meal windows are local times in the point's time zone (default Asia/Shanghai); a window is
  [start, end). Defaults [A]: breakfast 06:30–09:00, lunch 10:30–13:30, dinner 16:30–19:00.
* Order of the checks: unknown card → UNKNOWN_CARD (still emitted, so it can be registered);
  outside every window → OUTSIDE_WINDOW; the elder already served in this window today →
  REPEAT (still emitted); otherwise ACCEPTED. "Served" is per elder, not per card, and shared by
  taps and deliveries: an elder who had a meal delivered gets REPEAT at the point.
* Delivery (送餐/邻里代送): a reader configured with kind DELIVERY records every tap as a delivery;
  on any reader a caregiver's mode card (`delivery_mode_cards`) switches that reader into
  delivery mode for `delivery_mode_minutes` (tap it again to switch back). Mode cards emit no
  diner event; the mode is kept in memory only (after a restart a reader starts in tap mode).
* The roster (card → elder id, masked label, eligible hint) is replaced whole when a newer
  contract Roster arrives; an older or equal version is ignored.

Durability: `tap()` decides, hands the decision to the emitter (which returns after the outbox
commit), and only then marks the elder served and persists the state (roster and today's served
set) with an atomic file replace. A crash between the outbox commit and the state write can turn
one retap into a second ACCEPTED event, never lose a meal; the server dedupes by elder, day and
meal. The roster is persisted so decisions work offline after a restart.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from firmware_bridge.contract import CheckinMethod, DinerKind, Meal, Roster, RosterEntry, TapDecision

from .clock import Clock

log = logging.getLogger(__name__)

STATE_FORMAT = 1


def _yaml_time(value: Any) -> Any:
    # YAML 1.1 reads an unquoted 11:30 as the base-60 integer 690.
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 24 * 60:
        return time(value // 60, value % 60)
    return value


LocalTime = Annotated[time, BeforeValidator(_yaml_time)]


class MealWindowConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    meal: Meal
    start: LocalTime
    end: LocalTime

    @model_validator(mode="after")
    def _ordered(self) -> MealWindowConfig:
        if self.end <= self.start:
            raise ValueError("end must be after start (windows do not cross midnight)")
        return self

    def contains(self, t: time) -> bool:
        return self.start <= t < self.end


DEFAULT_WINDOWS = (
    MealWindowConfig(meal=Meal.BREAKFAST, start=time(6, 30), end=time(9, 0)),
    MealWindowConfig(meal=Meal.LUNCH, start=time(10, 30), end=time(13, 30)),
    MealWindowConfig(meal=Meal.DINNER, start=time(16, 30), end=time(19, 0)),
)


class CheckinConfig(BaseModel):
    """Check-in settings of one meal point."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timezone: str = "Asia/Shanghai"
    windows: tuple[MealWindowConfig, ...] = DEFAULT_WINDOWS
    delivery_mode_cards: frozenset[str] = Field(
        default=frozenset(), description="Canonical ids of caregivers' cards that toggle delivery mode"
    )
    delivery_mode_minutes: float = Field(default=30.0, gt=0, le=24 * 60)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (KeyError, ValueError, OSError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _no_overlap(self) -> CheckinConfig:
        ordered = sorted(self.windows, key=lambda w: w.start)
        for a, b in itertools.pairwise(ordered):
            if b.start < a.end:
                raise ValueError(f"meal windows {a.meal} and {b.meal} overlap")
        meals = [w.meal for w in self.windows]
        if len(set(meals)) != len(meals):
            raise ValueError("each meal may have one window")
        return self


FEEDBACK_TEXT: dict[TapDecision, tuple[str, str]] = {
    TapDecision.ACCEPTED: ("登记成功", "Checked in"),
    TapDecision.REPEAT: ("今日已就餐", "Already had this meal today"),
    TapDecision.UNKNOWN_CARD: ("未登记卡", "Card not registered"),
    TapDecision.OUTSIDE_WINDOW: ("非就餐时段", "Not a meal time"),
}
DELIVERY_MODE_TEXT = {True: ("送餐模式开启", "Delivery mode on"), False: ("送餐模式关闭", "Delivery mode off")}


@dataclass(frozen=True, slots=True)
class Feedback:
    """What a reader shows or says to the person at it."""

    zh: str
    en: str
    decision: TapDecision | None = None
    kind: DinerKind | None = None
    label: str | None = None  # masked name, e.g. 张*明
    eligible: bool | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """The edge's decision on one tap; `emits` is False for caregivers' mode cards."""

    card_id: str
    method: CheckinMethod
    device_id: str
    at: datetime
    local_date: date
    decision: TapDecision | None
    kind: DinerKind = DinerKind.TAP
    meal: Meal | None = None
    elder_id: str | None = None
    label: str | None = None
    eligible: bool | None = None
    delivery_mode: bool | None = None  # set when the tap was a mode card: the new mode

    @property
    def emits(self) -> bool:
        return self.decision is not None

    def body(self) -> dict[str, Any]:
        """The DinerEvent fields beyond the header, for Emitter.emit."""
        if self.decision is None:
            raise ValueError("a mode-card tap has no diner event")
        body: dict[str, Any] = {
            "kind": self.kind, "method": self.method, "card_id": self.card_id, "decision": self.decision,
        }
        if self.meal is not None:
            body["meal"] = self.meal
        if self.elder_id is not None:
            body["elder_id"] = self.elder_id
        return body

    @property
    def feedback(self) -> Feedback:
        if self.decision is None:
            zh, en = DELIVERY_MODE_TEXT[bool(self.delivery_mode)]
            return Feedback(zh, en)
        zh, en = FEEDBACK_TEXT[self.decision]
        if self.kind is DinerKind.DELIVERY and self.decision is TapDecision.ACCEPTED:
            zh, en = "代送" + zh, "Delivery: " + en.lower()
        return Feedback(zh, en, self.decision, self.kind, self.label, self.eligible)


class StateStore:
    """The check-in state on disk: roster.json and served.json in one directory, replaced atomically."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def _write(self, name: str, data: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        target = self.directory / name
        tmp = target.with_name(f".{name}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
        with contextlib.suppress(OSError):  # make the rename itself durable
            dir_fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def _read(self, name: str) -> bytes | None:
        try:
            return (self.directory / name).read_bytes()
        except FileNotFoundError:
            return None

    def save_roster(self, roster: Roster) -> None:
        self._write("roster.json", roster.to_bytes())

    def load_roster(self) -> Roster | None:
        raw = self._read("roster.json")
        if raw is None:
            return None
        try:
            return Roster.model_validate_json(raw)
        except ValidationError:
            log.warning("ignoring unreadable roster state in %s", self.directory)
            return None

    def save_served(self, served: dict[date, dict[Meal, set[str]]]) -> None:
        doc = {
            "format": STATE_FORMAT,
            "served": {d.isoformat(): {m.value: sorted(s) for m, s in meals.items()} for d, meals in served.items()},
        }
        self._write("served.json", json.dumps(doc, ensure_ascii=False).encode())

    def load_served(self) -> dict[date, dict[Meal, set[str]]]:
        raw = self._read("served.json")
        if raw is None:
            return {}
        try:
            doc = json.loads(raw)
            if doc.get("format") != STATE_FORMAT:
                raise ValueError(f"unknown format {doc.get('format')!r}")
            return {
                date.fromisoformat(d): {Meal(m): set(ids) for m, ids in meals.items()}
                for d, meals in doc["served"].items()
            }
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("ignoring unreadable served state in %s: %s", self.directory, exc)
            return {}


@dataclass
class _Mode:
    until: datetime


@dataclass
class Checkin:
    """Check-in decisions for one meal point; thread-safe through `tap()`."""

    point_id: str
    config: CheckinConfig
    clock: Clock
    store: StateStore | None = None
    _roster: Roster | None = field(init=False, default=None)
    _cards: dict[str, RosterEntry] = field(init=False, default_factory=dict)
    _served: dict[date, dict[Meal, set[str]]] = field(init=False, default_factory=dict)
    _modes: dict[str, _Mode] = field(init=False, default_factory=dict)
    _lock: threading.RLock = field(init=False, default_factory=threading.RLock)
    _dirty: bool = field(init=False, default=False)
    _wake: threading.Event = field(init=False, default_factory=threading.Event)
    _saver: threading.Thread | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self._zone = ZoneInfo(self.config.timezone)
        if self.store is not None:
            roster = self.store.load_roster()
            if roster is not None and roster.point == self.point_id:
                self._set_roster(roster)
            self._served = self.store.load_served()
            log.info("check-in state loaded: roster v%s, %d served today",
                     self.roster_version, sum(len(s) for s in self._served.get(self._today(), {}).values()))

    # -- roster ---------------------------------------------------------------------------------
    @property
    def roster_version(self) -> int | None:
        return self._roster.version if self._roster is not None else None

    def _set_roster(self, roster: Roster) -> None:
        cards = {e.card_id: e for e in roster.entries}
        self._roster, self._cards = roster, cards  # one assignment each: readers never see a mix

    def apply_roster(self, roster: Roster) -> bool:
        """Replace the roster if `roster` is for this point and newer; return whether it was applied."""
        with self._lock:
            if roster.point != self.point_id:
                log.warning("roster for point %s ignored (this is %s)", roster.point, self.point_id)
                return False
            if self._roster is not None and roster.version <= self._roster.version:
                log.info("roster v%d ignored: have v%d", roster.version, self._roster.version)
                return False
            if self.store is not None:
                self.store.save_roster(roster)
            self._set_roster(roster)
            log.info("roster v%d applied: %d cards", roster.version, len(roster.entries))
            return True

    # -- decisions ------------------------------------------------------------------------------
    def _local(self, at: datetime) -> datetime:
        return at.astimezone(self._zone)

    def _today(self) -> date:
        return self._local(self.clock.now()).date()

    def window(self, at: datetime) -> Meal | None:
        """The meal whose window contains `at`, if any."""
        t = self._local(at).time()
        for w in self.config.windows:
            if w.contains(t):
                return w.meal
        return None

    def in_delivery_mode(self, device_id: str, at: datetime) -> bool:
        mode = self._modes.get(device_id)
        return mode is not None and at < mode.until

    def decide(
        self, card_id: str, method: CheckinMethod, device_id: str, *,
        reader_kind: DinerKind = DinerKind.TAP, at: datetime | None = None,
    ) -> Decision:
        """Decide one tap without changing any state."""
        at = at or self.clock.now()
        base = Decision(card_id=card_id, method=method, device_id=device_id, at=at,
                        local_date=self._local(at).date(), decision=None)
        if card_id in self.config.delivery_mode_cards:
            return replace(base, delivery_mode=not self.in_delivery_mode(device_id, at))
        delivery = reader_kind is DinerKind.DELIVERY or self.in_delivery_mode(device_id, at)
        base = replace(base, kind=DinerKind.DELIVERY if delivery else DinerKind.TAP, meal=self.window(at))
        entry = self._cards.get(card_id)
        if entry is None:
            return replace(base, decision=TapDecision.UNKNOWN_CARD)
        base = replace(base, elder_id=entry.elder_id, label=entry.label, eligible=entry.eligible)
        if base.meal is None:
            return replace(base, decision=TapDecision.OUTSIDE_WINDOW)
        if entry.elder_id in self._served.get(base.local_date, {}).get(base.meal, set()):
            return replace(base, decision=TapDecision.REPEAT)
        return replace(base, decision=TapDecision.ACCEPTED)

    def commit(self, decision: Decision, persist: bool = True) -> None:
        """Record a decision after its event is durably stored: served set, delivery mode.

        With persist=False the served set is saved later by persist(): a reader gives feedback first,
        since the outbox row already makes the tap durable (a crash in between can only repeat an
        accepted tap, which the server counts once)."""
        with self._lock:
            if decision.delivery_mode is not None:
                if decision.delivery_mode:
                    until = decision.at + timedelta(minutes=self.config.delivery_mode_minutes)
                    self._modes[decision.device_id] = _Mode(until)
                else:
                    self._modes.pop(decision.device_id, None)
                log.info("reader %s delivery mode %s", decision.device_id, "on" if decision.delivery_mode else "off")
                return
            if decision.decision is not TapDecision.ACCEPTED or decision.meal is None or decision.elder_id is None:
                return
            today = decision.local_date
            # Keep yesterday too: a late commit across midnight must not wipe the day it belongs to.
            self._served = {d: m for d, m in self._served.items() if d >= today - timedelta(days=1)}
            self._served.setdefault(today, {}).setdefault(decision.meal, set()).add(decision.elder_id)
            self._dirty = True
            if persist:
                self.persist()

    def persist(self) -> None:
        """Save the served set if it changed since the last save."""
        with self._lock:
            if self._dirty and self.store is not None:
                self.store.save_served(self._served)
            self._dirty = False

    def persist_soon(self) -> None:
        """Save the served set from a background thread (saves coalesce), so no reader waits on it."""
        with self._lock:
            if self._saver is None:
                self._saver = threading.Thread(target=self._save_loop, name="checkin-state", daemon=True)
                self._saver.start()
        self._wake.set()

    def _save_loop(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            try:
                self.persist()
            except OSError:
                log.exception("check-in state not saved; will try again with the next tap")

    def tap(
        self, card_id: str, method: CheckinMethod, device_id: str, emit: Callable[[Decision], object], *,
        reader_kind: DinerKind = DinerKind.TAP, persist: bool = True,
    ) -> Decision:
        """Decide, emit (durably) and then commit one tap, as one step against other readers."""
        with self._lock:
            decision = self.decide(card_id, method, device_id, reader_kind=reader_kind)
            if decision.emits:
                emit(decision)
            self.commit(decision, persist=persist)
            return decision

    def served_count(self, local_date: date, meal: Meal) -> int:
        return len(self._served.get(local_date, {}).get(meal, set()))


def roster_from_entries(point_id: str, version: int, entries: Iterable[RosterEntry], issued_at: datetime) -> Roster:
    """Build a contract Roster (handy for tests and local enrolment tools)."""
    return Roster(point=point_id, version=version, issued_at=issued_at, entries=list(entries))
