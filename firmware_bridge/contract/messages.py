"""MQTT payloads of contract v1: strict pydantic models shared by edge and server.

Every event (diner, telemetry, safety, count) carries the meal point, the device, a per-device
sequence number that survives reboots, the device's event time and whether its clock was
synchronised. The server drops a redelivered event by (point, device, seq, ts).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from .topics import ID_PATTERN, Channel, PointChannel

CONTRACT_VERSION = 1

PointId = Annotated[str, Field(pattern=ID_PATTERN, description="Meal point id (助餐点编号)")]
DeviceId = Annotated[str, Field(pattern=ID_PATTERN, description="Device id, unique within the point")]
ChannelName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_.]{0,63}$", description="Sensor channel")]
Unit = Annotated[str, Field(max_length=16, description="Unit such as %LEL, ppm, V, A, mA, degC, kWh")]


class Message(BaseModel):
    """Base of every payload: strict, unknown keys rejected, immutable."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    def to_bytes(self) -> bytes:
        """Encode as compact UTF-8 JSON, omitting unset optional fields."""
        return self.model_dump_json(exclude_none=True).encode()


class EventHeader(Message):
    """Fields every edge event carries."""

    v: Literal[1] = 1
    point: PointId
    device: DeviceId
    seq: int = Field(ge=0, description="Per-device sequence number; survives reboots")
    ts: AwareDatetime = Field(description="Device event time")
    clock_synced: bool = Field(description="Whether the device clock was NTP-synchronised at ts")


class Meal(StrEnum):
    BREAKFAST = "breakfast"
    LUNCH = "lunch"
    DINNER = "dinner"


class DinerKind(StrEnum):
    TAP = "tap"  # an elder's own card or ID card at the point
    DELIVERY = "delivery"  # 送餐 / 邻里代送: a meal taken to an elder who cannot come


class CheckinMethod(StrEnum):
    CARD = "card"  # 125 kHz / 13.56 MHz card on a serial reader
    IDCARD = "idcard"  # resident ID card through a SAM reader
    KEYBOARD = "keyboard"  # USB keyboard-style reader
    MANUAL = "manual"  # entered by staff
    SIMULATED = "simulated"


class TapDecision(StrEnum):
    """The edge's own offline decision, shown to the elder; the server re-decides for money."""

    ACCEPTED = "accepted"  # 登记成功
    REPEAT = "repeat"  # 今日已就餐
    UNKNOWN_CARD = "unknown_card"  # 未登记卡
    OUTSIDE_WINDOW = "outside_window"  # 非就餐时段


class DinerEvent(EventHeader):
    kind: DinerKind = DinerKind.TAP
    method: CheckinMethod
    card_id: str = Field(min_length=1, max_length=64, description="Canonical card id")
    meal: Meal | None = None
    decision: TapDecision
    elder_id: str | None = Field(default=None, max_length=64)


class Reading(Message):
    """One channel's value; with min/mean/max/n it is a summary over period_s seconds ending at t."""

    ch: ChannelName
    unit: Unit | None = None
    t: AwareDatetime | None = Field(default=None, description="Sample time; the event's ts if absent")
    v: float = Field(description="The value, or the last value of a summary")
    min: float | None = None
    mean: float | None = None
    max: float | None = None
    n: int | None = Field(default=None, ge=1)
    period_s: int | None = Field(default=None, ge=1, le=86400)

    @model_validator(mode="after")
    def _summary_complete(self) -> Reading:
        parts = (self.min, self.mean, self.max, self.n, self.period_s)
        if any(p is not None for p in parts) and any(p is None for p in parts):
            raise ValueError("a summary needs all of min, mean, max, n and period_s")
        return self


class TelemetryEvent(EventHeader):
    readings: list[Reading] = Field(min_length=1, max_length=5000)


class SafetyLevel(StrEnum):
    NORMAL = "normal"
    WARN = "warn"  # early warning (e.g. residual current 300 mA)
    ALARM = "alarm"  # first alarm level (e.g. 25 %LEL)
    ALARM2 = "alarm2"  # second alarm level (e.g. 50 %LEL): valve closes
    FAULT = "fault"  # the sensor reports a fault: never read as "clear"
    COMM_LOST = "comm_lost"  # no answer from the sensor: never read as "clear"


class SafetyEvent(EventHeader):
    ch: ChannelName
    level: SafetyLevel
    prev_level: SafetyLevel | None = None
    rule: str = Field(max_length=64, description="Rule id, e.g. gas.lel")
    value: float | None = None
    unit: Unit | None = None
    threshold: float | None = None
    latched: bool = False
    actions: list[str] = Field(default_factory=list, max_length=16)
    message: str | None = Field(
        default=None, max_length=256,
        description="Human text. An acknowledgement at the edge is a transition (its level may stay the same)"
                    " whose message is exactly 'acknowledged (<source>)': source 'server:<cmd_id>' for the"
                    " server's ack_alarm, anything else (the button's name) for the local button.")


ACK_PREFIX = "acknowledged ("
SERVER_ACK_SOURCE_PREFIX = "server:"


def ack_message(source: str) -> str:
    """The SafetyEvent message of an acknowledgement at the edge by `source`."""
    return f"{ACK_PREFIX}{source})"


def ack_source(message: str | None) -> str | None:
    """Who acknowledged, if `message` is an acknowledgement's (see SafetyEvent.message); else None."""
    if message is None or not message.startswith(ACK_PREFIX) or not message.endswith(")"):
        return None
    return message[len(ACK_PREFIX):-1] or None


def is_local_ack(source: str) -> bool:
    """Whether an acknowledgement came from the meal point itself (not the echo of the server's ack_alarm)."""
    return not source.startswith(SERVER_ACK_SOURCE_PREFIX)


class CountEvent(EventHeader):
    """Camera counts: entries and exits over a period, optional occupancy snapshot; never images."""

    period_s: int = Field(ge=1, le=86400)
    entries: int = Field(ge=0)
    exits: int = Field(ge=0)
    occupancy: int | None = Field(default=None, ge=0)


class DeviceState(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
    DEGRADED = "degraded"


class DeviceStatus(Message):
    """Retained state of an agent or device; the agent's last will says offline."""

    v: Literal[1] = 1
    point: PointId
    device: DeviceId
    ts: AwareDatetime
    state: DeviceState
    clock_synced: bool = False
    role: Literal["agent", "reader", "sensor", "camera", "actuator"] = "agent"
    heartbeat_s: int | None = Field(default=None, ge=1, le=3600)
    software: str | None = Field(default=None, max_length=64)
    detail: str | None = Field(default=None, max_length=256)
    outbox_depth: int | None = Field(default=None, ge=0)


class CommandName(StrEnum):
    ACK_ALARM = "ack_alarm"  # silences the local buzzer; never reopens a valve
    SYNC_ROSTER = "sync_roster"
    RELOAD_CONFIG = "reload_config"
    PING = "ping"


class Command(Message):
    v: Literal[1] = 1
    cmd_id: str = Field(min_length=1, max_length=64)
    point: PointId
    device: DeviceId | None = None
    cmd: CommandName
    args: dict[str, str | int | float | bool] = Field(default_factory=dict)
    issued_at: AwareDatetime
    expires_at: AwareDatetime | None = None


class PointConfig(Message):
    """Retained server→edge settings; the edge validates `settings` against its own config model."""

    v: Literal[1] = 1
    point: PointId
    version: int = Field(ge=0)
    issued_at: AwareDatetime
    settings: dict[str, Any] = Field(default_factory=dict)


class RosterEntry(Message):
    card_id: str = Field(min_length=1, max_length=64)
    elder_id: str = Field(min_length=1, max_length=64)
    label: str | None = Field(default=None, max_length=32, description="Masked name for feedback")
    eligible: bool = True


class Roster(Message):
    """Retained card → elder list so the edge decides taps offline."""

    v: Literal[1] = 1
    point: PointId
    version: int = Field(ge=0)
    issued_at: AwareDatetime
    entries: list[RosterEntry] = Field(default_factory=list, max_length=20000)


EVENT_MODELS: dict[Channel, type[EventHeader]] = {
    Channel.DINER: DinerEvent,
    Channel.TELEMETRY: TelemetryEvent,
    Channel.SAFETY: SafetyEvent,
    Channel.COUNT: CountEvent,
}

MODELS: dict[Channel | PointChannel, type[Message]] = {
    Channel.DINER: DinerEvent,
    Channel.TELEMETRY: TelemetryEvent,
    Channel.SAFETY: SafetyEvent,
    Channel.COUNT: CountEvent,
    Channel.STATUS: DeviceStatus,
    PointChannel.CONFIG: PointConfig,
    PointChannel.ROSTER: Roster,
    PointChannel.CMD: Command,
}

_ADAPTERS: dict[Channel | PointChannel, TypeAdapter[Any]] = {k: TypeAdapter(m) for k, m in MODELS.items()}


def decode(channel: Channel | PointChannel, payload: bytes | str) -> Message:
    """Validate a payload for its channel; raises pydantic.ValidationError on bad input."""
    result: Message = _ADAPTERS[channel].validate_json(payload)
    return result


