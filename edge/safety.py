"""Edge safety rules: readings in, level transitions and actuator actions out; pure, clock injected.

Every default below is a setting (SafetyConfig); sources, [S] standard or [A] assumption:

- Combustible gas: first alarm 25 %LEL, second 50 %LEL (GB/T 50493-2019) [S]; the second level
  closes the gas valve, which only a person on site may reopen (GB 50028 §10.8) [S].
- CO: EN 50291 time–concentration behaviour [S] as a dose model [A]: at concentration c above
  `floor_ppm` the dose grows by dt / T(c), T interpolated log–log through (50 ppm, 75 min),
  (100 ppm, 25 min), (300 ppm, 2 min); the alarm sounds at dose 1. So 30 ppm never alarms,
  50 ppm alarms at 75 min (standard: 60–90), 100 ppm at 25 min (10–40), 300 ppm at 2 min (< 3).
  Below the floor the dose decays with a half-life.
- Residual current: warn 300 mA, alarm 500 mA (GB 50116 range 300–500 mA) [S]+[A].
- Line temperature: warn 60 °C, alarm 75 °C [A]; detectors must alarm within 40 s (GB 50166) [S]:
  the 10 s confirmation delay keeps well inside that.
- Supply voltage outside 198–235.4 V (220 V −10 %/+7 %, GB/T 12325) [S]: warn.
- Current above the circuit's rating: warn; above 1.45 × rating (a breaker's conventional
  tripping current, IEC 60898) alarm [A]. Without a rating the rule is off.

Levels go up after `on_delay_s` of continuous evidence and down after `off_delay_s` below the
threshold minus `hysteresis`, so a value wobbling at a threshold gives one event. Gas, CO and
electric alarm levels (alarm, alarm2) latch: they stay reported until acknowledged (local button or
the server's ack_alarm), and then follow the measurement. A sensor fault or lost communication
is its own level (FAULT, COMM_LOST), never "normal"; a latched alarm underneath stays latched.

Actions are strings for the actuator panel: buzzer.on/off, fan.on/off, valve.close. There is no
valve.open: the valve is reopened by hand only (edge.actuators).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from edge.clock import Clock
from firmware_bridge.contract import SafetyLevel, ack_message
from firmware_bridge.modbus_profiles import Quantity

Level = SafetyLevel
_RANK = {Level.NORMAL: 0, Level.WARN: 1, Level.ALARM: 2, Level.ALARM2: 3}
ALARM_LEVELS = (Level.ALARM, Level.ALARM2)
CONDITION_LEVELS = (Level.FAULT, Level.COMM_LOST)


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class ThresholdRule(_Strict):
    """Levels by thresholds: `high` values at or above, `low` values at or below."""

    enabled: bool = True
    warn: float | None = None
    alarm: float | None = None
    alarm2: float | None = None
    low_warn: float | None = None
    low_alarm: float | None = None
    hysteresis: float = Field(default=0.0, ge=0)
    on_delay_s: float = Field(default=0.0, ge=0, le=3600)
    off_delay_s: float = Field(default=0.0, ge=0, le=86400)
    latch: bool = True
    alarm_actions: list[str] = Field(default_factory=lambda: ["buzzer.on"])
    alarm2_actions: list[str] = Field(default_factory=lambda: ["buzzer.on"])

    def high(self) -> list[tuple[Level, float]]:
        pairs = [(Level.WARN, self.warn), (Level.ALARM, self.alarm), (Level.ALARM2, self.alarm2)]
        return [(lv, th) for lv, th in pairs if th is not None]

    def low(self) -> list[tuple[Level, float]]:
        pairs = [(Level.WARN, self.low_warn), (Level.ALARM, self.low_alarm)]
        return [(lv, th) for lv, th in pairs if th is not None]


class CoRule(_Strict):
    """EN 50291-style dose model (see module docstring)."""

    enabled: bool = True
    floor_ppm: float = Field(default=40.0, gt=0)
    curve: list[tuple[float, float]] = Field(
        strict=False,
        default_factory=lambda: [(40.0, 240.0), (50.0, 75.0), (100.0, 25.0), (300.0, 2.0)],
        description="(ppm, minutes to alarm at that constant concentration), ascending ppm",
    )
    min_minutes: float = Field(default=0.25, gt=0)
    decay_half_life_min: float = Field(default=15.0, gt=0)
    clear_dose: float = Field(default=0.5, ge=0, lt=1)
    max_step_s: float = Field(default=60.0, gt=0, description="Longest gap between samples counted")
    latch: bool = True
    alarm_actions: list[str] = Field(default_factory=lambda: ["buzzer.on", "fan.on"])

    def minutes_to_alarm(self, ppm: float) -> float:
        """T(c): minutes of constant exposure at `ppm` until the alarm; inf at or below the floor."""
        if ppm <= self.floor_ppm:
            return math.inf
        pts = sorted(self.curve)
        if ppm <= pts[0][0]:
            return pts[0][1]
        for (c0, t0), (c1, t1) in itertools.pairwise(pts):
            if ppm <= c1:
                k = math.log(t1 / t0) / math.log(c1 / c0)
                return t0 * (ppm / c0) ** k
        (c0, t0), (c1, t1) = pts[-2], pts[-1]
        k = math.log(t1 / t0) / math.log(c1 / c0)
        return max(self.min_minutes, t1 * (ppm / c1) ** k)


def _gas() -> ThresholdRule:
    return ThresholdRule(
        alarm=25.0, alarm2=50.0, hysteresis=2.0, on_delay_s=0.0, off_delay_s=30.0,
        alarm_actions=["buzzer.on", "fan.on"], alarm2_actions=["buzzer.on", "fan.on", "valve.close"],
    )


class CurrentRule(_Strict):
    enabled: bool = True
    warn_factor: float = Field(default=1.0, gt=0)
    alarm_factor: float = Field(default=1.45, gt=0)
    hysteresis_factor: float = Field(default=0.05, ge=0)
    on_delay_s: float = Field(default=30.0, ge=0)
    off_delay_s: float = Field(default=30.0, ge=0)

    def for_rating(self, rated_a: float) -> ThresholdRule:
        return ThresholdRule(
            warn=rated_a * self.warn_factor, alarm=rated_a * self.alarm_factor,
            hysteresis=rated_a * self.hysteresis_factor,
            on_delay_s=self.on_delay_s, off_delay_s=self.off_delay_s,
        )


class SafetyConfig(_Strict):
    """The point's safety settings; every field has a documented default."""

    gas_lel: ThresholdRule = Field(default_factory=_gas)
    co: CoRule = Field(default_factory=CoRule)
    residual_current_ma: ThresholdRule = Field(
        default_factory=lambda: ThresholdRule(
            warn=300.0, alarm=500.0, hysteresis=20.0, on_delay_s=1.0, off_delay_s=10.0
        )
    )
    temperature_c: ThresholdRule = Field(
        default_factory=lambda: ThresholdRule(
            warn=60.0, alarm=75.0, hysteresis=2.0, on_delay_s=10.0, off_delay_s=30.0
        )
    )
    voltage_v: ThresholdRule = Field(
        default_factory=lambda: ThresholdRule(
            warn=235.4, low_warn=198.0, hysteresis=2.0, on_delay_s=10.0, off_delay_s=10.0, latch=False
        )
    )
    current_a: CurrentRule = Field(default_factory=CurrentRule)
    device_alarm_bits: bool = Field(default=True, description="Let a device's own alarm bits raise levels")

    def threshold_rule(self, quantity: Quantity, rated_a: float | None = None) -> tuple[str, ThresholdRule] | None:
        if quantity == Quantity.GAS_LEL:
            return "gas.lel", self.gas_lel
        if quantity == Quantity.RESIDUAL_CURRENT_MA:
            return "electric.residual_current", self.residual_current_ma
        if quantity == Quantity.TEMPERATURE_C:
            return "electric.temperature", self.temperature_c
        if quantity == Quantity.VOLTAGE_V:
            return "electric.voltage", self.voltage_v
        if quantity == Quantity.CURRENT_A and rated_a and self.current_a.enabled:
            return "electric.overcurrent", self.current_a.for_rating(rated_a)
        return None


@dataclass(frozen=True, slots=True)
class Transition:
    """One level change of one channel; body() gives the contract SafetyEvent fields."""

    device_id: str
    channel: str
    rule: str
    level: Level
    prev_level: Level | None
    at: datetime
    value: float | None = None
    unit: str | None = None
    threshold: float | None = None
    latched: bool = False
    actions: tuple[str, ...] = ()
    message: str | None = None

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ch": self.channel, "level": self.level, "rule": self.rule,
            "latched": self.latched, "actions": list(self.actions),
        }
        if self.prev_level is not None:
            body["prev_level"] = self.prev_level
        for key in ("value", "unit", "threshold", "message"):
            if getattr(self, key) is not None:
                body[key] = getattr(self, key)
        return body


@dataclass
class _Channel:
    rule: str
    kind: Literal["threshold", "co"]
    reported: Level = Level.NORMAL
    measured: Level = Level.NORMAL  # confirmed level from the value (after delays)
    device_level: Level = Level.NORMAL  # from the device's own alarm bits
    pending: Level | None = None
    pending_since: float = 0.0
    latched: Level = Level.NORMAL
    acked: Level = Level.NORMAL  # highest level acknowledged while it lasts
    condition: Level | None = None  # FAULT or COMM_LOST
    value: float | None = None
    unit: str | None = None
    threshold: float | None = None
    dose: float = 0.0
    last_mono: float | None = None
    last_ppm: float = 0.0
    actions_for: dict[Level, list[str]] = field(default_factory=dict)
    config: ThresholdRule | None = None


def _max(a: Level, b: Level) -> Level:
    return a if _RANK.get(a, 0) >= _RANK.get(b, 0) else b


class SafetyEngine:
    """The rules for one meal point. Not thread-safe: one owner (edge.actuators.SafetyHub) calls it."""

    def __init__(self, config: SafetyConfig, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self._channels: dict[tuple[str, str], _Channel] = {}
        self._outputs: dict[str, bool] = {"buzzer": False, "fan": False, "valve_closed": False}

    # ---- inputs -------------------------------------------------------------------------------

    def observe(
        self,
        device_id: str,
        channel: str,
        quantity: Quantity | str,
        value: float | None,
        unit: str | None = None,
        *,
        device_level: Level | None = None,
        fault: bool = False,
        rated_a: float | None = None,
    ) -> list[Transition]:
        """One sample of one channel (value None with fault=True for a faulted sensor)."""
        quantity = Quantity(quantity)
        state = self._state(device_id, channel, quantity, rated_a)
        if state is None:
            return []
        state.condition = Level.FAULT if fault else None
        state.unit = unit
        if value is not None and not fault:
            state.value = value
            if state.kind == "co":
                self._co_step(state, value)
            elif state.config is not None:
                self._threshold_step(state, state.config, value)
        if self.config.device_alarm_bits and device_level is not None:
            state.device_level = device_level
        return self._settle(device_id, channel, state)

    def comm_lost(
        self, device_id: str, channels: list[tuple[str, Quantity]] | None = None
    ) -> list[Transition]:
        """No answer from the device: every channel it feeds goes to COMM_LOST.

        `channels` names the device's channels, so one that never answered is reported too.
        """
        for channel, quantity in channels or []:
            self._state(device_id, channel, quantity, None)
        out: list[Transition] = []
        for (dev, ch), state in self._channels.items():
            if dev == device_id:
                state.condition = Level.COMM_LOST
                state.pending = None
                state.last_mono = None
                out += self._settle(dev, ch, state)
        return out

    def comm_restored(self, device_id: str) -> None:
        """Communication is back; the next samples decide the levels."""
        for (dev, _ch), state in self._channels.items():
            if dev == device_id and state.condition == Level.COMM_LOST:
                state.condition = None

    def acknowledge(self, source: str = "local") -> list[Transition]:
        """Silence and release latches; levels then follow the measurements. Never opens a valve.

        Each channel that was in alarm yields a transition (its level may stay the same) saying who
        acknowledged, so the server learns of the acknowledgement too.
        """
        out: list[Transition] = []
        message = ack_message(source)
        for (dev, ch), state in self._channels.items():
            was_alarm = state.reported in ALARM_LEVELS
            state.latched = Level.NORMAL
            live = _max(state.measured, state.device_level)
            if live in ALARM_LEVELS:
                state.acked = _max(state.acked, live)
            changed = self._settle(dev, ch, state, message=message)
            if not changed and was_alarm:
                changed = [self._transition(dev, ch, state, state.reported, message)]
            out += changed
        actions = self._output_actions()
        if actions and out:
            out[0] = replace(out[0], actions=tuple(dict.fromkeys(out[0].actions + tuple(actions))))
        return out

    def tick(self) -> list[Transition]:
        """Re-evaluate pending delays without a new sample."""
        out: list[Transition] = []
        for (dev, ch), state in self._channels.items():
            if state.pending is not None and state.condition is None and state.value is not None:
                if state.kind == "threshold":
                    self._confirm_pending(state, self._delay(state))
                out += self._settle(dev, ch, state)
        return out

    # ---- queries ------------------------------------------------------------------------------

    def level(self, device_id: str, channel: str) -> Level:
        state = self._channels.get((device_id, channel))
        return state.reported if state else Level.NORMAL

    def outputs(self) -> dict[str, bool]:
        return dict(self._outputs)

    # ---- internals ----------------------------------------------------------------------------

    def _state(self, device_id: str, channel: str, quantity: Quantity, rated_a: float | None) -> _Channel | None:
        key = (device_id, channel)
        if key in self._channels:
            return self._channels[key]
        if quantity == Quantity.CO_PPM:
            if not self.config.co.enabled:
                return None
            state = _Channel("gas.co", "co", actions_for={Level.ALARM: list(self.config.co.alarm_actions)})
        else:
            found = self.config.threshold_rule(quantity, rated_a)
            if found is None or not found[1].enabled:
                return None
            name, rule = found
            state = _Channel(
                name, "threshold",
                actions_for={Level.ALARM: list(rule.alarm_actions), Level.ALARM2: list(rule.alarm2_actions)},
                config=rule,
            )
        self._channels[key] = state
        return state

    def _delay(self, state: _Channel) -> tuple[float, float]:
        rule = state.config
        return (rule.on_delay_s, rule.off_delay_s) if rule else (0.0, 0.0)

    def _threshold_step(self, state: _Channel, rule: ThresholdRule, value: float) -> None:
        current = state.measured
        candidate = Level.NORMAL
        threshold: float | None = None
        for level, th in rule.high():
            keep = _RANK[level] <= _RANK.get(current, 0) and value >= th - rule.hysteresis
            if value >= th or keep:
                candidate, threshold = level, th
        for level, th in rule.low():
            keep = _RANK[level] <= _RANK.get(current, 0) and value <= th + rule.hysteresis
            if (value <= th or keep) and _RANK[level] > _RANK[candidate]:
                candidate, threshold = level, th
        if state.rule == "electric.overcurrent":
            state.threshold = rule.warn
        elif threshold is not None:
            state.threshold = threshold
        if candidate == current:
            state.pending = None
            return
        if state.pending != candidate:
            state.pending, state.pending_since = candidate, self.clock.monotonic()
        self._confirm_pending(state, (rule.on_delay_s, rule.off_delay_s))

    def _confirm_pending(self, state: _Channel, delays: tuple[float, float]) -> None:
        if state.pending is None:
            return
        rising = _RANK[state.pending] > _RANK.get(state.measured, 0)
        needed = delays[0] if rising else delays[1]
        if self.clock.monotonic() - state.pending_since >= needed:
            state.measured, state.pending = state.pending, None

    def _co_step(self, state: _Channel, ppm: float) -> None:
        rule = self.config.co
        now = self.clock.monotonic()
        if state.last_mono is not None:
            dt = min(now - state.last_mono, rule.max_step_s)
            minutes = rule.minutes_to_alarm(state.last_ppm)
            if math.isinf(minutes):
                state.dose *= 0.5 ** (dt / 60.0 / rule.decay_half_life_min)
            else:
                state.dose += dt / 60.0 / minutes
        state.last_mono, state.last_ppm = now, ppm
        state.threshold = 1.0
        if state.dose >= 1.0:
            state.measured = Level.ALARM
        elif state.measured == Level.ALARM and state.dose < rule.clear_dose and ppm <= rule.floor_ppm:
            state.measured = Level.NORMAL

    def _latches(self, state: _Channel) -> bool:
        if state.kind == "co":
            return self.config.co.latch
        return state.config.latch if state.config else True

    def _settle(self, device_id: str, channel: str, state: _Channel, message: str | None = None) -> list[Transition]:
        live = _max(state.measured, state.device_level)
        if _RANK.get(live, 0) < _RANK[state.acked]:
            state.acked = live if live in ALARM_LEVELS else Level.NORMAL
        if live in ALARM_LEVELS and self._latches(state) and _RANK[live] > _RANK[state.acked]:
            state.latched = _max(state.latched, live)
        level = state.condition or _max(live, state.latched)
        if level == state.reported:
            return []
        prev, state.reported = state.reported, level
        return [replace(self._transition(device_id, channel, state, prev, message),
                        actions=tuple(self._output_actions()))]

    def _transition(
        self, device_id: str, channel: str, state: _Channel, prev: Level, message: str | None
    ) -> Transition:
        return Transition(
            device_id, channel, state.rule, state.reported, prev, self.clock.now(), state.value, state.unit,
            state.threshold, latched=state.latched in ALARM_LEVELS, message=message,
        )

    def _desired(self) -> dict[str, bool]:
        want = {"buzzer": False, "fan": False, "valve_closed": self._outputs["valve_closed"]}
        for state in self._channels.values():
            alarm = _max(_max(state.measured, state.device_level), state.latched)
            if alarm not in ALARM_LEVELS:
                continue
            actions = state.actions_for.get(alarm, []) + (
                state.actions_for.get(Level.ALARM, []) if alarm == Level.ALARM2 else []
            )
            if "buzzer.on" in actions and _RANK[alarm] > _RANK[state.acked]:
                want["buzzer"] = True
            if "fan.on" in actions:
                want["fan"] = True
            if "valve.close" in actions:
                want["valve_closed"] = True
        return want

    def _output_actions(self) -> list[str]:
        want = self._desired()
        actions: list[str] = []
        if want["valve_closed"] and not self._outputs["valve_closed"]:
            actions.append("valve.close")
        for name in ("buzzer", "fan"):
            if want[name] != self._outputs[name]:
                actions.append(f"{name}.{'on' if want[name] else 'off'}")
        self._outputs = want
        return actions

    def valve_may_open(self) -> bool:
        """Whether no channel (measured or latched) still calls for the valve to be closed."""
        saved = self._outputs["valve_closed"]
        self._outputs["valve_closed"] = False
        try:
            return not self._desired()["valve_closed"]
        finally:
            self._outputs["valve_closed"] = saved

    def valve_reopened_on_site(self) -> None:
        """The panel tells the engine a person reopened the valve by hand."""
        self._outputs["valve_closed"] = False
