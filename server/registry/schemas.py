"""HTTP shapes of the registry."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class PointOut(_Out):
    id: str
    name: str | None
    township: str | None
    village: str | None
    auto_registered: bool
    created_at: datetime


class PointDetail(PointOut):
    devices: int
    devices_online: int
    last_seen: datetime | None


class DeviceOut(_Out):
    device_id: str
    role: str | None
    reported_state: str | None
    online: bool
    last_seen: datetime | None
    status_ts: datetime | None
    heartbeat_s: int | None
    software: str | None
    detail: str | None
    outbox_depth: int | None
