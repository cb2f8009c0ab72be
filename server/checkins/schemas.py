"""HTTP shapes of check-ins."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from firmware_bridge.contract import Meal


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class DinerEventOut(_Out):
    time: datetime
    device_id: str
    seq: int
    kind: str
    method: str
    card_id: str
    meal: str | None
    decision: str
    elder_id: str | None
    clock_synced: bool


class MealCount(_Out):
    meal: str  # breakfast, lunch, dinner, or "unassigned" when the edge gave none
    events: int
    distinct_cards: int
    distinct_accepted_cards: int  # cards with at least one tap the edge accepted
    deliveries: int


class DinersOut(_Out):
    point_id: str
    day: date
    timezone: str
    meals: list[MealCount]
    events: list[DinerEventOut]


class ServedMeal(_Out):
    """One local day and meal at a point; an elder counts once however many taps and deliveries."""

    day: date
    meal: str  # breakfast, lunch, dinner; "unassigned" for events outside every meal window
    elders: int  # distinct elders served (0 for "unassigned": outside a window is not a meal)
    at_point: int  # of them, with a tap at the point
    delivered: int  # of them, with a delivery (an elder with both counts in each)
    events: int
    unknown_card_events: int  # taps of cards no binding covered at the tap time
    lost_card_events: int  # taps of cards reported lost or replaced before the tap


class ServedElder(_Out):
    day: date
    meal: str
    elder_id: str
    label: str  # masked name
    first_at: datetime
    events: int
    at_point: bool
    delivered: bool


class ServedOut(_Out):
    point_id: str
    start: date
    end: date
    timezone: str
    meals: list[ServedMeal]
    elders: list[ServedElder] | None = None


class DeliveryIn(BaseModel):
    """A meal delivered to an elder who could not come (送餐 / 邻里代送), recorded by staff."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    elder_id: str = Field(min_length=1, max_length=64)
    meal: Annotated[Meal, Field(strict=False)]
    at: Annotated[AwareDatetime | None, Field(strict=False)] = Field(
        default=None, description="When it was delivered; now when absent")
    note: str | None = Field(default=None, max_length=200)


class DeliveryOut(_Out):
    point_id: str
    device_id: str
    seq: int
    time: datetime
    elder_id: str
    meal: Meal
    kind: str
    method: str
    decision: str  # accepted, or repeat when the elder already had this meal that day
