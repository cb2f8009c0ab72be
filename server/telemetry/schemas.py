"""HTTP shapes of telemetry."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

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


class BucketOut(BaseModel):
    """One time bucket of a channel: extremes and sample-weighted mean of the summaries in it."""

    model_config = ConfigDict(frozen=True)

    time: datetime  # start of the bucket
    min: float
    mean: float
    max: float
    last: float
    n: int  # samples behind the bucket (a summary without n counts as one)


class ThresholdOut(BaseModel):
    """A line to draw: from the edge's own safety events, the device's set point, or the default."""

    model_config = ConfigDict(frozen=True)

    source: Literal["edge", "device", "default"]
    level: str | None
    value: float
    direction: Literal["high", "low"]
    name: str | None = None


class SeriesOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    point_id: str
    device_id: str
    channel: str
    unit: str | None
    start: datetime
    end: datetime
    bucket_s: int
    points: list[BucketOut]
    thresholds: list[ThresholdOut]
