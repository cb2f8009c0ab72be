"""HTTP shapes of check-ins."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, ConfigDict


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
