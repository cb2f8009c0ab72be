"""Server-side alert rules: telemetry, edge safety events and device status in, observations out.

The edge is authoritative for local alarms; these rules are the second line and watch what the
edge cannot: slow trends, stuck or impossible values, silent devices, cards outnumbering heads.
Everything is pure: the caller passes each message with its time (reading time for values, receive
time for liveness) and calls `tick(now)` every few seconds. Output is `Observation`s keyed by
(point, device, condition): `raised` (again and again while the condition holds, so the alert keeps
its last value) or `cleared` (once, on the change). The lifecycle (lifecycle.py) turns them into
alerts; it also debounces clears, so a rule never needs to.

Condition names: `<channel>:threshold|trend|stuck|range` for telemetry, `<channel>:edge` and
`<channel>:edge_fault` for edge safety events, `device:offline|stale|degraded` for liveness and
`diners:camera_card` for the camera-versus-card check.

Rules are chosen by quantity, found from the reading's unit (%LEL, ppm, mA, degC, V, A) or a
per-channel override, because channel names differ between device profiles (`lel`, `gas.lel`).
Defaults ([S] standard, [A] assumption; DOMAIN.md), all settings in `RulesConfig`:

- gas %LEL: alarm ≥ 25, critical (second level) ≥ 50, GB/T 50493-2019 [S]; same as the edge.
- CO ppm: the latest times EN 50291 allows [S]: ≥ 50 ppm for 90 min, ≥ 100 ppm for 40 min, ≥ 300 ppm
  for 3 min raise an alarm. The edge's dose model alarms earlier; this catches an edge that did not.
- residual current: warning ≥ 300 mA, alarm ≥ 500 mA [S]+[A]; line temperature: warning ≥ 60 °C,
  alarm ≥ 75 °C [A]; supply voltage outside 198–235.4 V: warning [S].
- trend: gas rising at ≥ 0.3 %LEL/min over 15 min, fitting a line (r² ≥ 0.8), ≥ 3 %LEL in all,
  still below 25 %LEL [A]. CO: ≥ 2 ppm/min, ≥ 20 ppm, below 50 ppm [A].
- stuck: the same value (within a tolerance) for 1 h (voltage), 6 h (residual current), 12 h
  (temperature) or 24 h (gas, CO) [A]; a constant 0 %LEL, 0 ppm or 0 mA is clean air or no
  leakage, not a stuck sensor.
- out of range (a broken sensor or a bad register decode, e.g. 6553.5 %LEL): outside 0–100 %LEL,
  0–2000 ppm, 0–3000 mA, −40–200 °C, 0–500 V, 0–1000 A [A]. An out-of-range reading is not fed to
  the other rules.
- device offline: the agent's last will, or nothing heard for 2 heartbeat intervals [S: issue].
  A device other than the agent that goes silent while its agent is heard is `device:stale`
  (after 2 of its intervals: its heartbeat, else 60 s) [A]; while the agent itself is silent only
  the agent's `device:offline` is raised.
- camera versus card: accepted taps above the camera's entries by more than 10 % + 3, with at
  least 10 taps in the window [A].
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from firmware_bridge.contract import (
    DeviceState,
    DeviceStatus,
    SafetyEvent,
    SafetyLevel,
    TelemetryEvent,
    ack_source,
    is_local_ack,
)
from firmware_bridge.modbus_profiles import Quantity


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"  # 预警: e.g. residual current 300 mA, a device offline
    ALARM = "alarm"  # 报警: first alarm level, e.g. 25 %LEL
    CRITICAL = "critical"  # 严重报警: second level, e.g. 50 %LEL (valve closes on site)

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.ALARM: 2, Severity.CRITICAL: 3}


class Hazard(StrEnum):
    """What an alert is about; gas and electric hazards are never muted and need on-site confirmation."""

    GAS = "gas"
    ELECTRIC = "electric"
    DEVICE = "device"
    DINERS = "diners"
    OTHER = "other"


SEVERITY_ZH = {Severity.INFO: "提示", Severity.WARNING: "预警", Severity.ALARM: "报警", Severity.CRITICAL: "严重报警"}
HAZARD_ZH = {
    Hazard.GAS: "燃气", Hazard.ELECTRIC: "用电", Hazard.DEVICE: "设备", Hazard.DINERS: "就餐", Hazard.OTHER: "其他",
}
QUANTITY_ZH = {
    Quantity.GAS_LEL: "可燃气体浓度",
    Quantity.CO_PPM: "一氧化碳浓度",
    Quantity.RESIDUAL_CURRENT_MA: "剩余电流",
    Quantity.TEMPERATURE_C: "线缆温度",
    Quantity.VOLTAGE_V: "供电电压",
    Quantity.CURRENT_A: "负载电流",
}

QUANTITY_BY_UNIT: dict[str, Quantity] = {
    "%LEL": Quantity.GAS_LEL,
    "ppm": Quantity.CO_PPM,
    "mA": Quantity.RESIDUAL_CURRENT_MA,
    "degC": Quantity.TEMPERATURE_C,
    "°C": Quantity.TEMPERATURE_C,
    "V": Quantity.VOLTAGE_V,
    "A": Quantity.CURRENT_A,
}

_HAZARD_BY_QUANTITY = {
    Quantity.GAS_LEL: Hazard.GAS,
    Quantity.CO_PPM: Hazard.GAS,
    Quantity.RESIDUAL_CURRENT_MA: Hazard.ELECTRIC,
    Quantity.TEMPERATURE_C: Hazard.ELECTRIC,
    Quantity.VOLTAGE_V: Hazard.ELECTRIC,
    Quantity.CURRENT_A: Hazard.ELECTRIC,
}

LOCAL_ACK_ACTOR_PREFIX = "local:"  # who acknowledged at the point: "local:<button name>"

_SEVERITY_BY_LEVEL = {
    SafetyLevel.WARN: Severity.WARNING,
    SafetyLevel.ALARM: Severity.ALARM,
    SafetyLevel.ALARM2: Severity.CRITICAL,
}


def hazard_of(quantity: Quantity | None) -> Hazard:
    """The hazard a quantity belongs to (OTHER when unknown)."""
    return _HAZARD_BY_QUANTITY.get(quantity, Hazard.OTHER) if quantity is not None else Hazard.OTHER


def hazard_of_rule(rule: str, unit: str | None = None) -> Hazard:
    """The hazard of an edge safety rule id (`gas.lel`, `electric.temperature`), else of its unit."""
    head = rule.split(".", 1)[0]
    if head in ("gas", "co"):
        return Hazard.GAS
    if head in ("electric", "elec"):
        return Hazard.ELECTRIC
    return hazard_of(QUANTITY_BY_UNIT.get(unit or ""))


@dataclass(frozen=True, slots=True)
class ConditionKey:
    """One alertable condition: at most one active alert exists per key."""

    point: str
    device: str
    condition: str


@dataclass(frozen=True, slots=True)
class Observation:
    """A rule's verdict on one condition at one time."""

    key: ConditionKey
    raised: bool
    at: datetime
    severity: Severity = Severity.WARNING
    hazard: Hazard = Hazard.OTHER
    source: Literal["edge", "rule", "liveness", "diners"] = "rule"
    value: float | None = None
    unit: str | None = None
    threshold: float | None = None
    message: str = ""
    # Set when the edge says a person acknowledged the alarm at the meal point (its local button).
    acknowledged_by: str | None = None


# --- configuration -------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class ThresholdLevel(_Strict):
    """Raise `severity` once the value has been beyond `value` for `min_duration_s`."""

    severity: Severity
    op: Literal["ge", "le"] = "ge"
    value: float
    min_duration_s: float = Field(default=0.0, ge=0)


class ThresholdRule(_Strict):
    quantity: Quantity
    levels: tuple[ThresholdLevel, ...] = Field(min_length=1)
    # A level is left only when the value is back past its threshold by this much.
    hysteresis: float = Field(default=0.0, ge=0)


class TrendRule(_Strict):
    quantity: Quantity
    window_s: float = Field(default=900.0, gt=0)
    min_samples: int = Field(default=5, ge=3)
    min_slope_per_min: float = Field(gt=0)
    min_rise: float = Field(gt=0)
    min_r2: float = Field(default=0.8, ge=0, le=1)
    below: float | None = Field(default=None, description="Only below this value (the alarm level)")
    severity: Severity = Severity.WARNING


class StuckRule(_Strict):
    quantity: Quantity
    after_s: float = Field(gt=0)
    tolerance: float = Field(default=0.0, ge=0)
    exempt: tuple[float, ...] = Field(default=(), description="Values at which a constant reading is normal")
    severity: Severity = Severity.WARNING


class RangeRule(_Strict):
    quantity: Quantity
    lo: float
    hi: float
    severity: Severity = Severity.WARNING

    @model_validator(mode="after")
    def _ordered(self) -> RangeRule:
        if self.lo >= self.hi:
            raise ValueError("lo must be below hi")
        return self


class LivenessConfig(_Strict):
    offline_after_heartbeats: float = Field(default=2.0, gt=0, le=10)
    default_heartbeat_s: float = Field(default=60.0, gt=0, description="For an agent that never said")
    stale_after_intervals: float = Field(default=2.0, gt=0, le=100)
    default_device_interval_s: float = Field(default=60.0, gt=0, description="Telemetry interval of a device")
    severity: Severity = Severity.WARNING


class CameraCardConfig(_Strict):
    min_taps: int = Field(default=10, ge=1)
    tolerance_ratio: float = Field(default=0.10, ge=0)
    tolerance_abs: int = Field(default=3, ge=0)
    severity: Severity = Severity.WARNING


def _lvl(severity: Severity, value: float, op: Literal["ge", "le"] = "ge", after_s: float = 0.0) -> ThresholdLevel:
    return ThresholdLevel(severity=severity, op=op, value=value, min_duration_s=after_s)


def _default_thresholds() -> tuple[ThresholdRule, ...]:
    q = Quantity
    return (
        ThresholdRule(quantity=q.GAS_LEL, hysteresis=2.0,
                      levels=(_lvl(Severity.ALARM, 25.0), _lvl(Severity.CRITICAL, 50.0))),
        ThresholdRule(quantity=q.CO_PPM, hysteresis=5.0, levels=(
            _lvl(Severity.ALARM, 50.0, after_s=90 * 60), _lvl(Severity.ALARM, 100.0, after_s=40 * 60),
            _lvl(Severity.ALARM, 300.0, after_s=3 * 60),
        )),
        ThresholdRule(quantity=q.RESIDUAL_CURRENT_MA, hysteresis=20.0,
                      levels=(_lvl(Severity.WARNING, 300.0), _lvl(Severity.ALARM, 500.0))),
        ThresholdRule(quantity=q.TEMPERATURE_C, hysteresis=2.0,
                      levels=(_lvl(Severity.WARNING, 60.0), _lvl(Severity.ALARM, 75.0))),
        ThresholdRule(quantity=q.VOLTAGE_V, hysteresis=2.0,
                      levels=(_lvl(Severity.WARNING, 198.0, "le"), _lvl(Severity.WARNING, 235.4))),
    )


def _default_trends() -> tuple[TrendRule, ...]:
    return (
        TrendRule(quantity=Quantity.GAS_LEL, min_slope_per_min=0.3, min_rise=3.0, below=25.0),
        TrendRule(quantity=Quantity.CO_PPM, min_slope_per_min=2.0, min_rise=20.0, below=50.0),
    )


def _default_stuck() -> tuple[StuckRule, ...]:
    q = Quantity
    return (
        StuckRule(quantity=q.VOLTAGE_V, after_s=3600.0),
        StuckRule(quantity=q.RESIDUAL_CURRENT_MA, after_s=6 * 3600.0, exempt=(0.0,)),
        StuckRule(quantity=q.TEMPERATURE_C, after_s=12 * 3600.0),
        StuckRule(quantity=q.GAS_LEL, after_s=24 * 3600.0, exempt=(0.0,)),
        StuckRule(quantity=q.CO_PPM, after_s=24 * 3600.0, exempt=(0.0,)),
    )


def _default_ranges() -> tuple[RangeRule, ...]:
    q = Quantity
    return (
        RangeRule(quantity=q.GAS_LEL, lo=0.0, hi=100.0),
        RangeRule(quantity=q.CO_PPM, lo=0.0, hi=2000.0),
        RangeRule(quantity=q.RESIDUAL_CURRENT_MA, lo=0.0, hi=3000.0),
        RangeRule(quantity=q.TEMPERATURE_C, lo=-40.0, hi=200.0),
        RangeRule(quantity=q.VOLTAGE_V, lo=0.0, hi=500.0),
        RangeRule(quantity=q.CURRENT_A, lo=0.0, hi=1000.0),
    )


class RulesConfig(_Strict):
    """All server-side rule settings (the county's to change); defaults in the module docstring."""

    thresholds: tuple[ThresholdRule, ...] = Field(default_factory=_default_thresholds)
    trends: tuple[TrendRule, ...] = Field(default_factory=_default_trends)
    stuck: tuple[StuckRule, ...] = Field(default_factory=_default_stuck)
    ranges: tuple[RangeRule, ...] = Field(default_factory=_default_ranges)
    liveness: LivenessConfig = Field(default_factory=LivenessConfig)
    camera_card: CameraCardConfig = Field(default_factory=CameraCardConfig)
    # Exact channel name → quantity, for readings whose unit is missing or ambiguous.
    channel_quantities: dict[str, Quantity] = Field(default_factory=dict)


# --- rule state ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _ThresholdState:
    since: list[datetime | None]
    active: Severity | None = None


@dataclass(slots=True)
class _StuckState:
    start: datetime
    lo: float
    hi: float
    raised: bool = False


@dataclass(slots=True)
class _ChannelState:
    quantity: Quantity
    last_t: datetime | None = None
    threshold: _ThresholdState | None = None
    trend: deque[tuple[datetime, float]] = field(default_factory=deque)
    trend_raised: bool = False
    stuck: _StuckState | None = None
    range_raised: bool = False


@dataclass(slots=True)
class _Device:
    last_seen: datetime | None = None
    role: str | None = None
    state: DeviceState | None = None
    heartbeat_s: float | None = None
    offline_raised: bool = False
    stale_raised: bool = False
    degraded_raised: bool = False


def _fmt(v: float | None) -> str:
    if v is None:
        return "?"
    return f"{v:.1f}".rstrip("0").rstrip(".") if abs(v) < 1e6 else f"{v:.3g}"


def _slope_r2(points: Iterable[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares slope of y over x and the fit's r² (0 when y is flat)."""
    xs, ys = zip(*points, strict=True)
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    if sxx == 0:
        return 0.0, 0.0
    slope = sxy / sxx
    r2 = (sxy * sxy) / (sxx * syy) if syy > 0 else 0.0
    return slope, r2


class RuleEngine:
    """Holds the little state the rules need (windows, runs, last seen); no I/O, no clock of its own."""

    def __init__(self, config: RulesConfig | None = None) -> None:
        self.config = config or RulesConfig()
        self._thresholds = {r.quantity: r for r in self.config.thresholds}
        self._trends = {r.quantity: r for r in self.config.trends}
        self._stuck = {r.quantity: r for r in self.config.stuck}
        self._ranges = {r.quantity: r for r in self.config.ranges}
        self._channels: dict[tuple[str, str, str], _ChannelState] = {}
        self._devices: dict[str, dict[str, _Device]] = {}

    # -- telemetry --------------------------------------------------------------------------------

    def quantity_of(self, channel: str, unit: str | None) -> Quantity | None:
        """The quantity a channel measures: the per-channel override, else by its unit."""
        return self.config.channel_quantities.get(channel) or QUANTITY_BY_UNIT.get(unit or "")

    def on_telemetry(self, event: TelemetryEvent, received_at: datetime) -> list[Observation]:
        """Evaluate every reading of a telemetry event; the device counts as heard at received_at."""
        out = self.on_seen(event.point, event.device, received_at)
        for r in sorted(event.readings, key=lambda r: r.t or event.ts):
            lo = r.min if r.min is not None else r.v
            hi = r.max if r.max is not None else r.v
            out += self.on_reading(event.point, event.device, r.ch, r.t or event.ts, r.v, r.unit, lo, hi)
        return out

    def on_reading(
        self, point: str, device: str, channel: str, t: datetime, value: float,
        unit: str | None = None, lo: float | None = None, hi: float | None = None,
    ) -> list[Observation]:
        """Evaluate one reading (lo/hi: a summary's min and max); older-than-seen readings are ignored."""
        quantity = self.quantity_of(channel, unit)
        if quantity is None:
            return []
        ck = (point, device, channel)
        st = self._channels.get(ck)
        if st is None:
            st = self._channels[ck] = _ChannelState(quantity)
        if st.last_t is not None and t <= st.last_t:
            return []  # a replayed or reordered reading; the rules only look forward
        st.last_t = t
        lo = value if lo is None else lo
        hi = value if hi is None else hi
        out: list[Observation] = []
        if self._range(st, point, device, channel, t, value, unit, lo, hi, out):
            return out
        self._threshold(st, point, device, channel, t, value, unit, out)
        self._trend(st, point, device, channel, t, value, unit, out)
        self._stuck_rule(st, point, device, channel, t, value, unit, lo, hi, out)
        return out

    def _obs(
        self, st: _ChannelState, point: str, device: str, condition: str, raised: bool, t: datetime,
        severity: Severity, value: float | None, unit: str | None, threshold: float | None, message: str,
    ) -> Observation:
        return Observation(
            ConditionKey(point, device, condition), raised, t, severity, hazard_of(st.quantity), "rule",
            value, unit, threshold, message,
        )

    def _range(
        self, st: _ChannelState, point: str, device: str, ch: str, t: datetime, value: float,
        unit: str | None, lo: float, hi: float, out: list[Observation],
    ) -> bool:
        rule = self._ranges.get(st.quantity)
        bad = not all(math.isfinite(x) for x in (value, lo, hi))
        if rule is not None and not bad:
            bad = lo < rule.lo or hi > rule.hi
        name = QUANTITY_ZH.get(st.quantity, ch)
        if bad:
            st.range_raised = True
            sev = rule.severity if rule else Severity.WARNING
            msg = f"{name}读数 {_fmt(value)} {unit or ''} 超出量程，传感器可能故障".replace("  ", " ")
            out.append(self._obs(st, point, device, f"{ch}:range", True, t, sev, value, unit, None, msg))
        elif st.range_raised:
            st.range_raised = False
            out.append(self._obs(st, point, device, f"{ch}:range", False, t, Severity.WARNING, value, unit, None,
                                 f"{name}读数恢复正常范围"))
        return bad

    def _threshold(
        self, st: _ChannelState, point: str, device: str, ch: str, t: datetime, value: float,
        unit: str | None, out: list[Observation],
    ) -> None:
        rule = self._thresholds.get(st.quantity)
        if rule is None:
            return
        ts = st.threshold
        if ts is None:
            ts = st.threshold = _ThresholdState([None] * len(rule.levels))
        best: tuple[Severity, ThresholdLevel] | None = None
        for i, level in enumerate(rule.levels):
            beyond = value >= level.value if level.op == "ge" else value <= level.value
            back = (value < level.value - rule.hysteresis if level.op == "ge"
                    else value > level.value + rule.hysteresis)
            if beyond and ts.since[i] is None:
                ts.since[i] = t
            elif back:
                ts.since[i] = None
            since = ts.since[i]
            if since is not None and (t - since).total_seconds() >= level.min_duration_s and (
                best is None or level.severity.rank > best[0].rank
            ):
                best = (level.severity, level)
        name = QUANTITY_ZH.get(st.quantity, ch)
        if best is not None:
            sev, level = best
            word = "低于" if level.op == "le" else "超过"
            msg = f"{name} {_fmt(value)} {unit or ''}，{word}{SEVERITY_ZH[sev]}值 {_fmt(level.value)} {unit or ''}"
            ts.active = sev
            out.append(self._obs(st, point, device, f"{ch}:threshold", True, t, sev, value, unit, level.value,
                                 " ".join(msg.split())))
        elif ts.active is not None:
            ts.active = None
            out.append(self._obs(st, point, device, f"{ch}:threshold", False, t, Severity.INFO, value, unit, None,
                                 f"{name}恢复正常"))

    def _trend(
        self, st: _ChannelState, point: str, device: str, ch: str, t: datetime, value: float,
        unit: str | None, out: list[Observation],
    ) -> None:
        rule = self._trends.get(st.quantity)
        if rule is None:
            return
        win = st.trend
        win.append((t, value))
        horizon = t - timedelta(seconds=rule.window_s)
        while win and win[0][0] < horizon:
            win.popleft()
        rising = False
        slope = 0.0
        span_s = (win[-1][0] - win[0][0]).total_seconds() if win else 0.0
        if len(win) >= rule.min_samples and span_s >= rule.window_s / 2:
            t0 = win[0][0]
            slope, r2 = _slope_r2(((a - t0).total_seconds() / 60.0, v) for a, v in win)
            rising = (
                slope >= rule.min_slope_per_min and r2 >= rule.min_r2
                and slope * span_s / 60.0 >= rule.min_rise
                and (rule.below is None or value < rule.below or st.trend_raised)
            )
            if st.trend_raised and not rising:
                # Once raised, hold it while the rise goes on at half the rate; no flapping on noise.
                rising = slope >= rule.min_slope_per_min / 2
        name = QUANTITY_ZH.get(st.quantity, ch)
        if rising:
            st.trend_raised = True
            msg = f"{name}持续上升，约每分钟 {slope:.2f} {unit or ''}，当前 {_fmt(value)} {unit or ''}"
            out.append(self._obs(st, point, device, f"{ch}:trend", True, t, rule.severity, value, unit,
                                 rule.below, " ".join(msg.split())))
        elif st.trend_raised:
            st.trend_raised = False
            out.append(self._obs(st, point, device, f"{ch}:trend", False, t, Severity.INFO, value, unit, None,
                                 f"{name}不再上升"))

    def _stuck_rule(
        self, st: _ChannelState, point: str, device: str, ch: str, t: datetime, value: float,
        unit: str | None, lo: float, hi: float, out: list[Observation],
    ) -> None:
        rule = self._stuck.get(st.quantity)
        if rule is None:
            return
        run = st.stuck
        was_raised = run.raised if run else False
        if run is None or max(run.hi, hi) - min(run.lo, lo) > rule.tolerance:
            run = st.stuck = _StuckState(t, lo, hi)
        else:
            run.lo, run.hi = min(run.lo, lo), max(run.hi, hi)
        exempt = any(run.lo >= e - rule.tolerance and run.hi <= e + rule.tolerance for e in rule.exempt)
        run.raised = not exempt and (t - run.start).total_seconds() >= rule.after_s
        name = QUANTITY_ZH.get(st.quantity, ch)
        if run.raised:
            hours = (t - run.start).total_seconds() / 3600.0
            msg = f"{name}连续 {hours:.1f} 小时读数不变（{_fmt(value)} {unit or ''}），传感器可能卡死"
            out.append(self._obs(st, point, device, f"{ch}:stuck", True, t, rule.severity, value, unit, None,
                                 " ".join(msg.split())))
        elif was_raised:
            out.append(self._obs(st, point, device, f"{ch}:stuck", False, t, Severity.INFO, value, unit, None,
                                 f"{name}读数恢复变化"))

    # -- edge safety events -----------------------------------------------------------------------

    def on_safety(self, event: SafetyEvent, received_at: datetime) -> list[Observation]:
        """Mirror an edge safety event: alarm levels on `<ch>:edge`, faults on `<ch>:edge_fault`."""
        out = self.on_seen(event.point, event.device, received_at)
        hazard = hazard_of_rule(event.rule, event.unit)
        level_key = ConditionKey(event.point, event.device, f"{event.ch}:edge")
        fault_key = ConditionKey(event.point, event.device, f"{event.ch}:edge_fault")
        acked = ack_source(event.message)
        # The local button at the point acknowledges the alert too; the server's own ack_alarm echoes back.
        by = f"{LOCAL_ACK_ACTOR_PREFIX}{acked}" if acked is not None and is_local_ack(acked) else None
        text = "" if acked is not None else (event.message or "")

        def obs(key: ConditionKey, raised: bool, sev: Severity, msg: str, th: float | None = None) -> Observation:
            return Observation(key, raised, event.ts, sev, hazard, "edge", event.value, event.unit, th, msg,
                               by if key == level_key else None)

        if event.level in _SEVERITY_BY_LEVEL:
            sev = _SEVERITY_BY_LEVEL[event.level]
            reading = f"{event.ch} {_fmt(event.value)} {event.unit or ''}"
            msg = text or f"现场{HAZARD_ZH[hazard]}{SEVERITY_ZH[sev]}：{reading}"
            out.append(obs(level_key, True, sev, msg.strip(), event.threshold))
            if event.prev_level in (SafetyLevel.FAULT, SafetyLevel.COMM_LOST):
                out.append(obs(fault_key, False, Severity.INFO, "传感器恢复通信"))
        elif event.level in (SafetyLevel.FAULT, SafetyLevel.COMM_LOST):
            what = "故障" if event.level == SafetyLevel.FAULT else "通信中断"
            # A fault is never "clear": the alarm condition underneath stays as it was.
            msg = text or f"{HAZARD_ZH[hazard]}传感器{what}（{event.ch}），现场无法监测"
            out.append(obs(fault_key, True, Severity.WARNING, msg))
        else:
            out.append(obs(level_key, False, Severity.INFO, "现场恢复正常"))
            out.append(obs(fault_key, False, Severity.INFO, "现场恢复正常"))
        return out

    # -- liveness ---------------------------------------------------------------------------------

    def _device(self, point: str, device: str) -> _Device:
        return self._devices.setdefault(point, {}).setdefault(device, _Device())

    def _live(self, point: str, device: str, d: _Device, at: datetime, condition: str, raised: bool,
              message: str) -> Observation:
        sev = self.config.liveness.severity if raised else Severity.INFO
        return Observation(ConditionKey(point, device, condition), raised, at, sev, Hazard.DEVICE, "liveness",
                           message=message)

    def on_seen(self, point: str, device: str, at: datetime) -> list[Observation]:
        """A message from the device arrived at `at` (receive time): it is alive."""
        d = self._device(point, device)
        if d.last_seen is None or at > d.last_seen:
            d.last_seen = at
        out: list[Observation] = []
        if d.offline_raised and d.state != DeviceState.OFFLINE:
            d.offline_raised = False
            out.append(self._live(point, device, d, at, "device:offline", False, "设备恢复在线"))
        if d.stale_raised:
            d.stale_raised = False
            out.append(self._live(point, device, d, at, "device:stale", False, "设备恢复上报"))
        return out

    def seed_device(
        self, point: str, device: str, *, role: str | None, state: DeviceState | None, heartbeat_s: float | None,
        last_seen: datetime | None,
    ) -> None:
        """Remember a device known from storage (after a restart) without raising or clearing anything."""
        d = self._device(point, device)
        d.role, d.state, d.heartbeat_s = role, state, heartbeat_s
        if last_seen is not None and (d.last_seen is None or last_seen > d.last_seen):
            d.last_seen = last_seen

    def on_status(self, status: DeviceStatus, received_at: datetime) -> list[Observation]:
        """A retained status or last will: `offline` raises at once, `online` clears."""
        d = self._device(status.point, status.device)
        d.role = status.role
        d.state = status.state
        if status.heartbeat_s is not None:
            d.heartbeat_s = float(status.heartbeat_s)
        out: list[Observation] = []
        p, dev = status.point, status.device
        if status.state == DeviceState.OFFLINE:
            if d.last_seen is None or received_at > d.last_seen:
                d.last_seen = received_at
            if not d.offline_raised:
                d.offline_raised = True
                who = "边缘网关" if status.role == "agent" else "设备"
                out.append(self._live(p, dev, d, received_at, "device:offline", True,
                                      f"{who}离线（{status.detail or '连接中断'}）"))
            return out
        out += self.on_seen(p, dev, received_at)
        if status.state == DeviceState.DEGRADED and not d.degraded_raised:
            d.degraded_raised = True
            out.append(self._live(p, dev, d, received_at, "device:degraded", True,
                                  f"设备运行异常：{status.detail or '降级运行'}"))
        elif status.state == DeviceState.ONLINE and d.degraded_raised:
            d.degraded_raised = False
            out.append(self._live(p, dev, d, received_at, "device:degraded", False, "设备恢复正常运行"))
        return out

    def tick(self, now: datetime) -> list[Observation]:
        """Check for silence: agents past 2 heartbeats are offline; silent devices of live agents are stale."""
        cfg = self.config.liveness
        out: list[Observation] = []
        for point, devices in self._devices.items():
            agents = {k: d for k, d in devices.items() if d.role == "agent"}
            agent_alive = True
            for name, d in agents.items():
                hb = d.heartbeat_s or cfg.default_heartbeat_s
                quiet_s = (now - d.last_seen).total_seconds() if d.last_seen is not None else 0.0
                silent = quiet_s >= hb * cfg.offline_after_heartbeats
                if silent or d.state == DeviceState.OFFLINE:
                    agent_alive = False
                if silent and not d.offline_raised:
                    d.offline_raised = True
                    out.append(self._live(point, name, d, now, "device:offline", True,
                                          f"边缘网关 {quiet_s / 60.0:.0f} 分钟无心跳，已离线"))
            for name, d in devices.items():
                if d.role == "agent" or d.last_seen is None or d.stale_raised or d.state == DeviceState.OFFLINE:
                    continue
                interval = d.heartbeat_s or cfg.default_device_interval_s
                silent = (now - d.last_seen).total_seconds() >= interval * cfg.stale_after_intervals
                if silent and agent_alive:
                    d.stale_raised = True
                    out.append(self._live(point, name, d, now, "device:stale", True,
                                          "网关在线，但该设备已停止上报数据"))
        return out


# --- camera versus card --------------------------------------------------------------------------


def camera_card_check(
    point: str, camera_device: str, at: datetime, taps: int, entries: int | None,
    config: CameraCardConfig | None = None,
) -> Observation | None:
    """Compare a window's accepted card taps with the camera's entries; None when the camera gave none."""
    cfg = config or CameraCardConfig()
    if entries is None:
        return None
    key = ConditionKey(point, camera_device, "diners:camera_card")
    limit = entries * (1 + cfg.tolerance_ratio) + cfg.tolerance_abs
    if taps >= cfg.min_taps and taps > limit:
        msg = f"刷卡 {taps} 人次，摄像头仅计 {entries} 人进入，疑似代刷或虚报"
        return Observation(key, True, at, cfg.severity, Hazard.DINERS, "diners", float(taps), "人次",
                           float(entries), msg)
    return Observation(key, False, at, Severity.INFO, Hazard.DINERS, "diners", float(taps), "人次",
                       float(entries), "刷卡与摄像头计数相符")
