"""HTTP shapes of telemetry."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict


class ReadingOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    device_id: str
    channel: str
    unit: str | None
    value: float
    time: datetime
    vmin: float | None
    vmean: float | None
    vmax: float | None
    n: int | None
    period_s: int | None
