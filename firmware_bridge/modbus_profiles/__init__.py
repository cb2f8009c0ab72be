"""Modbus RTU device profiles as data: register tables in YAML, a strict loader and a pure decoder.

A profile says, per channel: register address, function code (3 holding / 4 input), type (u16,
s16, u32, s32, f32), word order of 32-bit values (big = high word first), scale (value = raw ×
scale + offset), unit, and what the value measures (`quantity`, which the safety rules key on).
Status words name their bits: alarm levels (warn, alarm, alarm2), faults, or plain information.
Device thresholds the instrument reports (its own alarm set points) are channels with
`role: threshold`. The shipped profiles live next to this file; `load_profile("chint_ddsu666")`
finds one by name, `load_profile(path)` reads any file.

Register blocks: `read_plan()` merges a profile's registers into as few reads as possible (same
function code, gaps of at most `max_gap` registers, at most 125 registers a read), and `decode()`
turns the registers those reads returned into readings and status flags. No I/O here.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from firmware_bridge.datafiles import key_path_errors, read_yaml, shipped_names
from firmware_bridge.errors import FirmwareBridgeError, FrameError

MAX_REGISTERS_PER_READ = 125
ChannelName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_.]{0,63}$")]
RegisterType = Literal["u16", "s16", "u32", "s32", "f32"]
FunctionCode = Literal[3, 4]

_WIDTH = {"u16": 1, "s16": 1, "u32": 2, "s32": 2, "f32": 2}


class ProfileError(FirmwareBridgeError, ValueError):
    """A profile file that cannot be read or does not validate."""


class Quantity(StrEnum):
    """What a channel measures; safety rules are chosen by quantity."""

    GAS_LEL = "gas_lel"  # combustible gas, %LEL
    CO_PPM = "co_ppm"  # carbon monoxide, ppm
    RESIDUAL_CURRENT_MA = "residual_current_ma"  # leakage current, mA
    TEMPERATURE_C = "temperature_c"  # line / cable temperature, °C
    VOLTAGE_V = "voltage_v"
    CURRENT_A = "current_a"
    POWER_KW = "power_kw"
    ENERGY_KWH = "energy_kwh"
    FREQUENCY_HZ = "frequency_hz"
    POWER_FACTOR = "power_factor"
    OTHER = "other"


class BitMeaning(StrEnum):
    WARN = "warn"
    ALARM = "alarm"  # the device's first alarm level
    ALARM2 = "alarm2"  # the device's second alarm level
    FAULT = "fault"  # sensor fault: never read as "clear"
    INFO = "info"


class Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, populate_by_name=True)


class SerialDefaults(Strict):
    baudrate: int = Field(default=9600, gt=0)
    parity: Literal["N", "E", "O"] = "N"
    bytesize: Literal[7, 8] = 8
    stopbits: Literal[1, 2] = 1


class ChannelSpec(Strict):
    name: ChannelName
    address: int = Field(alias="register", ge=0, le=0xFFFF)
    function_code: FunctionCode | None = None  # the profile's default when absent
    type: RegisterType = "u16"
    word_order: Literal["big", "little"] | None = None  # of 32-bit values; the profile's default when absent
    scale: float = 1.0
    offset: float = 0.0
    unit: str | None = Field(default=None, max_length=16)
    # Enums from YAML arrive as strings: lax for these two fields only.
    quantity: Quantity = Field(default=Quantity.OTHER, strict=False)
    role: Literal["measurement", "threshold"] = "measurement"
    description: str | None = None


class StatusBit(Strict):
    bit: int = Field(ge=0, le=15)
    name: ChannelName
    meaning: BitMeaning = Field(strict=False)
    channel: ChannelName | None = None  # the measurement this bit is about, if one


class StatusWord(Strict):
    name: ChannelName
    address: int = Field(alias="register", ge=0, le=0xFFFF)
    function_code: FunctionCode | None = None
    bits: list[StatusBit] = Field(min_length=1)


class Profile(Strict):
    """One device model's register table."""

    name: str = Field(pattern=r"^[a-z0-9_]{1,64}$")
    model: str
    vendor: str | None = None
    description: str | None = None
    source: str | None = Field(default=None, description="Where the register table comes from")
    serial: SerialDefaults = SerialDefaults()
    function_code: FunctionCode = 3
    word_order: Literal["big", "little"] = "big"
    channels: list[ChannelSpec] = Field(min_length=1)
    status_words: list[StatusWord] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> Profile:
        names = [c.name for c in self.channels] + [s.name for s in self.status_words]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"duplicate channel/status names: {sorted(dupes)}")
        used: dict[tuple[int, int], str] = {}
        for name, fc, start, width in self._registers():
            for reg in range(start, start + width):
                if (fc, reg) in used:
                    raise ValueError(f"register {reg:#06x} (FC {fc}) used by {used[(fc, reg)]} and {name}")
                used[(fc, reg)] = name
        measured = {c.name for c in self.channels}
        for word in self.status_words:
            for bit in word.bits:
                if bit.channel is not None and bit.channel not in measured:
                    raise ValueError(f"status bit {bit.name} refers to unknown channel {bit.channel}")
        return self

    def fc(self, spec: ChannelSpec | StatusWord) -> int:
        return spec.function_code or self.function_code

    def _registers(self) -> list[tuple[str, int, int, int]]:
        out = [(c.name, self.fc(c), c.address, _WIDTH[c.type]) for c in self.channels]
        out += [(s.name, self.fc(s), s.address, 1) for s in self.status_words]
        return out

    def channel(self, name: str) -> ChannelSpec:
        for c in self.channels:
            if c.name == name:
                return c
        raise KeyError(name)


@dataclass(frozen=True, slots=True)
class ReadBlock:
    function_code: int
    start: int
    count: int


@dataclass(frozen=True, slots=True)
class ChannelValue:
    channel: str
    value: float
    unit: str | None
    quantity: Quantity
    role: str = "measurement"


@dataclass(frozen=True, slots=True)
class StatusFlag:
    name: str
    meaning: BitMeaning
    channel: str | None


@dataclass(frozen=True, slots=True)
class DecodedSample:
    """One poll of one device: its values and the status bits that were set."""

    values: list[ChannelValue] = field(default_factory=list)
    flags: list[StatusFlag] = field(default_factory=list)

    def value(self, channel: str) -> float:
        for v in self.values:
            if v.channel == channel:
                return v.value
        raise KeyError(channel)


Registers = Mapping[tuple[int, int], int]  # (function code, address) → 16-bit register


def read_plan(profile: Profile, max_gap: int = 8) -> list[ReadBlock]:
    """The fewest reads covering every register of the profile."""
    wanted: dict[int, set[int]] = {}
    for _name, fc, start, width in profile._registers():
        wanted.setdefault(fc, set()).update(range(start, start + width))
    blocks: list[ReadBlock] = []
    for fc in sorted(wanted):
        regs = sorted(wanted[fc])
        start = prev = regs[0]
        for reg in regs[1:]:
            if reg - prev > max_gap + 1 or reg - start + 1 > MAX_REGISTERS_PER_READ:
                blocks.append(ReadBlock(fc, start, prev - start + 1))
                start = reg
            prev = reg
        blocks.append(ReadBlock(fc, start, prev - start + 1))
    return blocks


def registers_from_blocks(blocks: Mapping[ReadBlock, list[int]]) -> dict[tuple[int, int], int]:
    """Flatten what each read returned into (function code, address) → register."""
    out: dict[tuple[int, int], int] = {}
    for block, values in blocks.items():
        if len(values) != block.count:
            raise FrameError(f"read of {block.count} registers at {block.start:#06x} returned {len(values)}")
        for i, value in enumerate(values):
            out[(block.function_code, block.start + i)] = value
    return out


def _words(regs: Registers, fc: int, start: int, width: int) -> list[int]:
    try:
        return [regs[(fc, start + i)] & 0xFFFF for i in range(width)]
    except KeyError as exc:
        raise FrameError(f"register {exc.args[0][1]:#06x} (FC {fc}) was not read") from exc


def _raw_value(spec: ChannelSpec, words: list[int], word_order: str) -> float:
    if spec.type == "u16":
        return float(words[0])
    if spec.type == "s16":
        return float(struct.unpack(">h", words[0].to_bytes(2, "big"))[0])
    hi, lo = (words[0], words[1]) if word_order == "big" else (words[1], words[0])
    raw = hi.to_bytes(2, "big") + lo.to_bytes(2, "big")
    fmt = {"u32": ">I", "s32": ">i", "f32": ">f"}[spec.type]
    return float(struct.unpack(fmt, raw)[0])


def decode(profile: Profile, regs: Registers) -> DecodedSample:
    """Registers → scaled channel values and set status bits. NaN/inf floats are a FrameError."""
    values: list[ChannelValue] = []
    for spec in profile.channels:
        word_order = spec.word_order or profile.word_order
        raw = _raw_value(spec, _words(regs, profile.fc(spec), spec.address, _WIDTH[spec.type]), word_order)
        if raw != raw or raw in (float("inf"), float("-inf")):
            raise FrameError(f"{profile.name}.{spec.name}: not a number")
        values.append(ChannelValue(spec.name, raw * spec.scale + spec.offset, spec.unit, spec.quantity, spec.role))
    flags: list[StatusFlag] = []
    for word in profile.status_words:
        (bits,) = _words(regs, profile.fc(word), word.address, 1)
        flags += [StatusFlag(b.name, b.meaning, b.channel) for b in word.bits if bits >> b.bit & 1]
    return DecodedSample(values, flags)


def encode(
    profile: Profile, values: Mapping[str, float], flags: set[str] | frozenset[str] = frozenset()
) -> dict[tuple[int, int], int]:
    """The inverse of decode(): channel values and set flag names → registers (for simulators)."""
    regs: dict[tuple[int, int], int] = {}
    for spec in profile.channels:
        value = values.get(spec.name, 0.0)
        raw = (value - spec.offset) / spec.scale if spec.scale else 0.0
        if spec.type == "f32":
            packed = struct.pack(">f", raw)
        elif spec.type in ("u16", "s16"):
            packed = struct.pack(">H" if spec.type == "u16" else ">h", round(raw))
        else:
            packed = struct.pack(">I" if spec.type == "u32" else ">i", round(raw))
        words = [int.from_bytes(packed[i : i + 2], "big") for i in range(0, len(packed), 2)]
        if len(words) == 2 and (spec.word_order or profile.word_order) == "little":
            words.reverse()
        for i, w in enumerate(words):
            regs[(profile.fc(spec), spec.address + i)] = w
    known = {b.name for w in profile.status_words for b in w.bits}
    unknown = set(flags) - known
    if unknown:
        raise KeyError(f"unknown status bits for {profile.name}: {sorted(unknown)}")
    for word in profile.status_words:
        regs[(profile.fc(word), word.address)] = sum(1 << b.bit for b in word.bits if b.name in flags)
    return regs


def available_profiles() -> list[str]:
    """Names of the profiles shipped with Yangyi."""
    return shipped_names(__name__)


def load_profile(name_or_path: str | Path) -> Profile:
    """A shipped profile by name, or any profile file by path; ProfileError if it does not validate."""
    data, source = read_yaml(name_or_path, __name__, ProfileError, "profile")
    return parse_profile(data, source)


def parse_profile(data: object, source: str = "<data>") -> Profile:
    """Validate profile data (as loaded from YAML); errors name the key path."""
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        raise ProfileError(f"invalid profile {source}:\n  {key_path_errors(exc)}") from exc
