"""HTTP shapes of camera counts."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from pydantic import BaseModel, ConfigDict

from firmware_bridge.contract import Meal


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class MarginOut(_Out):
    min_excess: int
    ratio: Decimal


class MealCheckOut(_Out):
    """One local day and meal slot: what the door camera saw against the cards tapped."""

    day: date
    meal: Meal
    camera_entries: int | None  # None: the camera sent no count for this slot (unknown, not zero)
    camera_exits: int | None
    camera_minutes: float  # minutes of the slot the camera reported on
    cameras: list[str]
    checkins: int  # distinct cards tapped at the point in the slot
    taps: int
    excess: int | None  # checkins − camera_entries
    flagged: bool  # check-ins exceed the camera by more than the margin


class CameraMealsOut(_Out):
    point_id: str
    start: date
    end: date
    timezone: str
    windows: str  # where the meal slots came from: "policy <version>[, …]" or "check-in defaults"
    margin: MarginOut
    meals: list[MealCheckOut]


class OccupancyOut(_Out):
    time: datetime  # start of the count period the snapshot was taken in
    device_id: str
    occupancy: int


class OccupancyDayOut(_Out):
    point_id: str
    day: date
    timezone: str
    snapshots: list[OccupancyOut]


class CameraHealthOut(_Out):
    device_id: str
    online: bool | None  # latest camera.online reading; None: no health reading in the look-back
    online_at: datetime | None  # when that reading was taken
    fps: float | None
    reconnects: int | None  # since the agent started
    counted_until: datetime | None  # end of the latest count period received
    count_events: int  # count events in the look-back


class CameraHealthListOut(_Out):
    point_id: str
    since: datetime
    cameras: list[CameraHealthOut]
