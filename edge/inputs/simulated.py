"""The `simulated` input: diner taps in meal windows and plausible safety telemetry, from a seeded RNG.

The pure part, SimulatedSource.due(now), returns the events whose time has come; the Input around it
only emits them and waits. Taps arrive as a Poisson process (rate_per_min) inside the configured
local meal windows; a card's second tap in the same meal is a REPEAT, a card outside the pool is an
UNKNOWN_CARD. Telemetry is a TelemetryEvent every telemetry_interval_s with gas %LEL near 0, supply
voltage near 220 V, load current (higher around meals), residual current in mA and line temperature.
"""

from __future__ import annotations

import logging
import random
import threading
import zlib
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from firmware_bridge.contract import Channel, CheckinMethod, DinerKind, Meal, TapDecision

from ..config import MealWindow, SimulatedInputConfig, input_name
from ..events import Emitter, Input, Lane
from . import InputContext

log = logging.getLogger(__name__)

MAX_CATCH_UP_SECONDS = 60.0  # after a stall, do not replay more than this much simulated history
MAX_WAIT_SECONDS = 1.0
MIN_WAIT_SECONDS = 0.005


@dataclass(frozen=True, slots=True)
class SimEvent:
    channel: Channel
    device: str
    body: dict[str, Any]
    lane: Lane
    ts: datetime


@dataclass
class SimulatedSource:
    """Pure generator of simulated events; time comes only from the `now` it is given."""

    cfg: SimulatedInputConfig
    point_id: str
    start: datetime
    rng: random.Random = field(init=False)
    cards: list[str] = field(init=False)
    next_tap: datetime = field(init=False)
    next_telemetry: datetime | None = field(init=False)
    _seen: set[tuple[date, Meal, str]] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        seed = self.cfg.seed if self.cfg.seed is not None else zlib.crc32(self.point_id.encode())
        self.rng = random.Random(seed)
        base = zlib.crc32(f"cards:{self.point_id}".encode()) << 8
        self.cards = [f"{(base + i) & 0xFFFFFFFFFF:010X}" for i in range(self.cfg.card_pool)]
        self._zone = ZoneInfo(self.cfg.timezone)
        self.next_tap = self.start + self._gap()
        interval = self.cfg.telemetry_interval_s
        self.next_telemetry = self.start if interval is not None else None

    def _gap(self) -> timedelta:
        return timedelta(seconds=self.rng.expovariate(self.cfg.rate_per_min / 60.0))

    def meal_at(self, ts: datetime) -> MealWindow | None:
        """The meal window containing `ts` (local time), if any."""
        local = ts.astimezone(self._zone).time()
        for window in self.cfg.meals:
            if window.start <= local < window.end:
                return window
        return None

    def _next_window_start(self, ts: datetime) -> datetime:
        local = ts.astimezone(self._zone)
        starts = []
        for days in (0, 1):
            day = local.date() + timedelta(days=days)
            for w in self.cfg.meals:
                s = datetime.combine(day, w.start, tzinfo=self._zone)
                if s > local:
                    starts.append(s)
        return min(starts).astimezone(ts.tzinfo) if starts else ts + timedelta(days=1)

    def due(self, now: datetime) -> list[SimEvent]:
        """Every event scheduled at or before `now`, in time order."""
        events: list[SimEvent] = []
        floor = now - timedelta(seconds=MAX_CATCH_UP_SECONDS)
        if self.next_tap < floor:
            self.next_tap = floor
        if self.next_telemetry is not None and self.next_telemetry < floor:
            self.next_telemetry = floor
        while self.next_tap <= now:
            window = self.meal_at(self.next_tap)
            if window is None:
                self.next_tap = self._next_window_start(self.next_tap) + self._gap()
                continue
            events.append(self._tap(self.next_tap, window.meal))
            self.next_tap += self._gap()
        interval = self.cfg.telemetry_interval_s
        while interval is not None and self.next_telemetry is not None and self.next_telemetry <= now:
            events.append(self._telemetry(self.next_telemetry))
            self.next_telemetry += timedelta(seconds=interval)
        events.sort(key=lambda e: e.ts)
        return events

    def seconds_until_next(self, now: datetime) -> float:
        nxt = self.next_tap if self.next_telemetry is None else min(self.next_tap, self.next_telemetry)
        return max(0.0, (nxt - now).total_seconds())

    def _tap(self, ts: datetime, meal: Meal) -> SimEvent:
        if self.rng.random() < self.cfg.unknown_ratio:
            card = f"{self.rng.getrandbits(40) | (1 << 39):010X}"
            decision, elder = TapDecision.UNKNOWN_CARD, None
        else:
            index = self.rng.randrange(len(self.cards))
            card = self.cards[index]
            elder = f"sim-{self.point_id}-{index:05d}"[:64]
            key = (ts.astimezone(self._zone).date(), meal, card)
            decision = TapDecision.REPEAT if key in self._seen else TapDecision.ACCEPTED
            self._seen.add(key)
        body: dict[str, Any] = {
            "kind": DinerKind.TAP, "method": CheckinMethod.SIMULATED, "card_id": card, "meal": meal,
            "decision": decision,
        }
        if elder is not None:
            body["elder_id"] = elder
        return SimEvent(Channel.DINER, self.cfg.reader_device, body, Lane.NORMAL, ts)

    def _telemetry(self, ts: datetime) -> SimEvent:
        g = self.rng.gauss
        cooking = self.meal_at(ts) is not None or self.meal_at(ts + timedelta(hours=1)) is not None
        readings = [
            {"ch": "gas.lel", "unit": "%LEL", "v": round(max(0.0, g(0.4, 0.3)), 2)},
            {"ch": "elec.voltage", "unit": "V", "v": round(g(221.0, 2.0), 1)},
            {"ch": "elec.current", "unit": "A", "v": round(max(0.0, g(9.0 if cooking else 1.5, 0.8)), 2)},
            {"ch": "elec.residual", "unit": "mA", "v": round(max(0.0, g(25.0, 6.0)), 1)},
            {"ch": "temp.line", "unit": "degC", "v": round(g(34.0 if cooking else 27.0, 1.0), 1)},
        ]
        return SimEvent(Channel.TELEMETRY, self.cfg.sensor_device, {"readings": readings}, Lane.BULK, ts)


class SimulatedInput(Input):
    """Runs a SimulatedSource against the agent's clock and emits what falls due."""

    def __init__(self, cfg: SimulatedInputConfig, ctx: InputContext) -> None:
        self.name = input_name(cfg)
        self._clock = ctx.clock
        self.source = SimulatedSource(cfg, ctx.point_id, ctx.clock.now())

    def run(self, emitter: Emitter, stop: threading.Event) -> None:
        log.info("simulated input %s started", self.name)
        while not stop.is_set():
            now = self._clock.now()
            for ev in self.source.due(now):
                emitter.emit(ev.channel, ev.device, ev.body, lane=ev.lane, ts=ev.ts)
            wait = self.source.seconds_until_next(self._clock.now())
            stop.wait(min(MAX_WAIT_SECONDS, max(MIN_WAIT_SECONDS, wait)))
