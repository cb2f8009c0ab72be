"""Scripted sensor scenarios: what simulated devices read over time, as data files; pure evaluation.

A scenario file (YAML, shipped next to this module or any path) names a protocol (modbus or
dlt645), the devices on the line and timed steps in scenario seconds::

    name: slow_leak
    protocol: modbus
    duration_s: 3600
    devices:
      - {id: gas1, unit: 1, profile: gas_generic}
    steps:
      - {at: 0, device: gas1, set: {lel: 0.0}}
      - {at: 60, device: gas1, ramp: {lel: {per_min: 1.0, to: 60.0}}}
      - {at: 1560, device: gas1, flags: [low_alarm]}
      - {at: 600, noise: {garbage_bytes: 6, corrupt_ratio: 0.2}}

A step may `set` channel values, `ramp` them (per minute from the value they have at `at`,
stopping at `to`), replace the device's set status bits (`flags`), make it stop answering
(`silent: true`) or put noise on the whole line (`noise`, no device). A later set or ramp of a
channel ends the earlier ramp. `state_at(t)` is a pure function of scenario time; the player
(firmware_bridge.sim.scenarios.player) maps wall time to scenario time with a speed factor, so a
one-hour GB 15322 slow leak plays in a minute at speed 60.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from firmware_bridge import dlt645
from firmware_bridge import modbus_profiles as mp
from firmware_bridge.datafiles import key_path_errors, read_yaml, shipped_names
from firmware_bridge.errors import SimulatorError

DLT645_CHANNELS = {d.name: d.di for d in dlt645.DATA_IDS.values()}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScenarioDevice(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    unit: int | None = Field(default=None, ge=1, le=247, description="Modbus slave address")
    profile: str | None = Field(default=None, description="Modbus register profile (name or path)")
    address: str | None = Field(default=None, pattern=r"^[0-9]{12}$", description="DL/T 645 meter number")


class Ramp(_Strict):
    per_min: float = Field(description="Change per scenario minute (negative falls)")
    to: float | None = Field(default=None, description="Stop at this value")


class Noise(_Strict):
    garbage_bytes: int = Field(default=0, ge=0, le=64, description="Random bytes sent before each reply")
    corrupt_ratio: float = Field(default=0.0, ge=0, le=1, description="Share of replies with a bad checksum")
    seed: int = 1


class Step(_Strict):
    at: float = Field(ge=0, description="Scenario seconds from the start")
    device: str | None = None
    set: dict[str, float] = Field(default_factory=dict)
    ramp: dict[str, Ramp] = Field(default_factory=dict)
    flags: list[str] | None = None
    silent: bool | None = None
    noise: Noise | None = None
    note: str | None = None

    @model_validator(mode="after")
    def _target(self) -> Step:
        device_fields = self.set or self.ramp or self.flags is not None or self.silent is not None
        if device_fields and self.device is None:
            raise ValueError("set/ramp/flags/silent need a device")
        if not device_fields and self.noise is None:
            raise ValueError("a step must change something")
        return self


class Scenario(_Strict):
    name: str = Field(pattern=r"^[a-z0-9_]{1,64}$")
    description: str = ""
    protocol: Literal["modbus", "dlt645"]
    duration_s: float = Field(gt=0)
    devices: list[ScenarioDevice] = Field(min_length=1)
    steps: list[Step] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> Scenario:
        ids = [d.id for d in self.devices]
        if len(set(ids)) != len(ids):
            raise ValueError("device ids must be unique")
        channels: dict[str, set[str]] = {}
        bits: dict[str, set[str]] = {}
        for d in self.devices:
            if self.protocol == "modbus":
                if d.unit is None or d.profile is None:
                    raise ValueError(f"modbus device {d.id} needs unit and profile")
                profile = mp.load_profile(d.profile)
                channels[d.id] = {c.name for c in profile.channels}
                bits[d.id] = {b.name for w in profile.status_words for b in w.bits}
            else:
                if d.address is None:
                    raise ValueError(f"dlt645 device {d.id} needs an address")
                channels[d.id], bits[d.id] = set(DLT645_CHANNELS), set()
        last = 0.0
        for i, step in enumerate(self.steps):
            if step.at < last:
                raise ValueError(f"steps[{i}]: steps must be in time order")
            last = step.at
            if step.device is None:
                continue
            if step.device not in channels:
                raise ValueError(f"steps[{i}]: unknown device {step.device}")
            unknown = (set(step.set) | set(step.ramp)) - channels[step.device]
            if unknown:
                raise ValueError(f"steps[{i}]: {step.device} has no channels {sorted(unknown)}")
            bad_bits = set(step.flags or ()) - bits[step.device]
            if bad_bits:
                raise ValueError(f"steps[{i}]: {step.device} has no status bits {sorted(bad_bits)}")
        return self

    def device(self, device_id: str) -> ScenarioDevice:
        for d in self.devices:
            if d.id == device_id:
                return d
        raise KeyError(device_id)


@dataclass(frozen=True, slots=True)
class _Track:
    base: float
    t0: float
    per_min: float = 0.0
    to: float | None = None

    def value(self, t: float) -> float:
        v = self.base + self.per_min * (t - self.t0) / 60.0
        if self.to is not None:
            v = min(v, self.to) if self.per_min >= 0 else max(v, self.to)
        return v


@dataclass(frozen=True, slots=True)
class DeviceState:
    values: dict[str, float]
    flags: frozenset[str] = frozenset()
    silent: bool = False


@dataclass(frozen=True, slots=True)
class LineState:
    devices: dict[str, DeviceState] = field(default_factory=dict)
    noise: Noise | None = None


def state_at(scenario: Scenario, t: float) -> LineState:
    """What every device reads, and the line's noise, at scenario time `t` (seconds)."""
    tracks: dict[str, dict[str, _Track]] = {d.id: {} for d in scenario.devices}
    flags: dict[str, frozenset[str]] = {d.id: frozenset() for d in scenario.devices}
    silent: dict[str, bool] = {d.id: False for d in scenario.devices}
    noise: Noise | None = None
    for step in scenario.steps:
        if step.at > t:
            break
        if step.noise is not None:
            noise = step.noise if (step.noise.garbage_bytes or step.noise.corrupt_ratio) else None
        if step.device is None:
            continue
        dev = tracks[step.device]
        for ch, value in step.set.items():
            dev[ch] = _Track(value, step.at)
        for ch, ramp in step.ramp.items():
            start = dev[ch].value(step.at) if ch in dev else 0.0
            dev[ch] = _Track(start, step.at, ramp.per_min, ramp.to)
        if step.flags is not None:
            flags[step.device] = frozenset(step.flags)
        if step.silent is not None:
            silent[step.device] = step.silent
    devices = {
        d: DeviceState({ch: tr.value(t) for ch, tr in tracks[d].items()}, flags[d], silent[d]) for d in tracks
    }
    return LineState(devices, noise)


def max_rate_per_min(scenario: Scenario, device_id: str, channel: str, step_s: float = 1.0) -> float:
    """The steepest rise of a channel over the scenario, per minute, sampled every `step_s`."""
    worst = 0.0
    prev = state_at(scenario, 0.0).devices[device_id].values.get(channel, 0.0)
    t = step_s
    while t <= scenario.duration_s:
        cur = state_at(scenario, t).devices[device_id].values.get(channel, 0.0)
        worst = max(worst, (cur - prev) * 60.0 / step_s)
        prev, t = cur, t + step_s
    return worst


def available_scenarios() -> list[str]:
    """Names of the scenarios shipped with Yangyi."""
    return shipped_names(__name__)


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A shipped scenario by name, or any scenario file by path; SimulatorError if it does not validate."""
    data, source = read_yaml(name_or_path, __name__, SimulatorError, "scenario")
    return parse_scenario(data, source)


def parse_scenario(data: object, source: str = "<data>") -> Scenario:
    """Validate scenario data; errors name the key path."""
    try:
        return Scenario.model_validate(data)
    except (ValidationError, mp.ProfileError) as exc:
        if isinstance(exc, ValidationError):
            raise SimulatorError(f"invalid scenario {source}:\n  {key_path_errors(exc)}") from exc
        raise SimulatorError(f"invalid scenario {source}: {exc}") from exc


def modbus_units(scenario: Scenario) -> Mapping[int, str]:
    """unit → profile, for ModbusBusSimulator."""
    return {d.unit: d.profile for d in scenario.devices if d.unit is not None and d.profile is not None}
