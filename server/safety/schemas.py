"""HTTP shapes of safety."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict


class SafetyEventOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    time: datetime
    device_id: str
    seq: int
    channel: str
    level: str
    prev_level: str | None
    rule: str
    value: float | None
    unit: str | None
    threshold: float | None
    latched: bool
    actions: list[str]
    message: str | None
    clock_synced: bool


class ChannelState(BaseModel):
    model_config = ConfigDict(frozen=True)

    channel: str
    level: str
    rule: str
    latched: bool
    since: datetime
    value: float | None
    unit: str | None
    threshold: float | None
    message: str | None


class DeviceSafety(BaseModel):
    model_config = ConfigDict(frozen=True)

    device_id: str
    level: str
    state: str | None  # the device's own status (online/offline), if it publishes one
    last_seen: datetime | None
    channels: list[ChannelState]


class PointSafety(BaseModel):
    model_config = ConfigDict(frozen=True)

    point_id: str
    level: str
    alarms: int  # channels in alarm or alarm2
    devices: list[DeviceSafety]
