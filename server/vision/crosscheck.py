"""Camera entries against distinct card check-ins per local day and meal slot; pure, meal slots passed in.

The one definition of "check-ins exceed the camera": `checkins_exceed`. The API (this package) and the
settlement's camera_excess anomaly flag (server.subsidy.anomalies) both call it.

- A meal slot is decided by the local time of a tap or of a count period's START (a CountEvent covers
  [ts, ts + period_s)), through the `meal_of` function the caller gives: the subsidy policy's meal
  windows, as the settlement places taps and camera counts.
- Camera entries are SUMMED over every count event of the slot: a camera restarted within a minute
  sends two events with the same period start, and both count. Several cameras at one point add up
  (one per door).
- A slot with no count event at all has camera entries None (unknown, camera off or absent), never 0,
  and is never flagged.
- Check-ins are the distinct cards tapped in the slot, whatever the edge decided: one card, one person
  said to be at the door. Deliveries are not taps (they never pass the camera).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from firmware_bridge.contract import Meal

DEFAULT_MIN_EXCESS = 2  # [A] check-ins above the camera by more than this many people …
DEFAULT_EXCESS_RATIO = Decimal("0.10")  # [A] … and by more than this share of the camera count

MEAL_ORDER = {m: i for i, m in enumerate(Meal)}


def checkins_exceed(checkins: int, camera_entries: int, min_excess: int = DEFAULT_MIN_EXCESS,
                    ratio: Decimal = DEFAULT_EXCESS_RATIO) -> bool:
    """Whether check-ins exceed the camera's entries by more than min_excess AND more than ratio × entries."""
    excess = checkins - camera_entries
    return excess > min_excess and excess > ratio * camera_entries


class Margin(BaseModel):
    """How far check-ins may exceed the camera's entries before a slot is flagged."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    min_excess: int = Field(default=DEFAULT_MIN_EXCESS, ge=0)
    ratio: Decimal = Field(default=DEFAULT_EXCESS_RATIO, ge=0)

    def exceeded(self, checkins: int, camera_entries: int) -> bool:
        return checkins_exceed(checkins, camera_entries, self.min_excess, self.ratio)


@dataclass(frozen=True, slots=True)
class CardTap:
    time: datetime
    card_id: str


@dataclass(frozen=True, slots=True)
class CountPeriod:
    time: datetime  # period start
    device_id: str
    period_s: int
    entries: int
    exits: int


@dataclass(frozen=True, slots=True)
class MealCheck:
    """One local day and meal slot at a point."""

    day: date
    meal: Meal
    camera_entries: int | None  # None: no count event in the slot
    camera_exits: int | None
    camera_seconds: int  # seconds of the slot the camera reported on (summed over events)
    cameras: tuple[str, ...]
    checkins: int  # distinct cards tapped
    taps: int
    flagged: bool

    @property
    def excess(self) -> int | None:
        return None if self.camera_entries is None else self.checkins - self.camera_entries


@dataclass
class _Slot:
    entries: int = 0
    exits: int = 0
    seconds: int = 0
    periods: int = 0
    cameras: set[str] | None = None
    taps: int = 0
    cards: set[str] | None = None


def cross_check(taps: Iterable[CardTap], periods: Iterable[CountPeriod], meal_of: Callable[[datetime], Meal | None],
                tz: tzinfo, margin: Margin) -> list[MealCheck]:
    """Per local day and meal slot: camera entries, distinct cards tapped and the flag, in time order."""
    slots: dict[tuple[date, Meal], _Slot] = defaultdict(_Slot)
    for p in periods:
        local = p.time.astimezone(tz)
        meal = meal_of(local)
        if meal is None:
            continue
        s = slots[(local.date(), meal)]
        s.entries += p.entries
        s.exits += p.exits
        s.seconds += p.period_s
        s.periods += 1
        s.cameras = (s.cameras or set()) | {p.device_id}
    for t in taps:
        local = t.time.astimezone(tz)
        meal = meal_of(local)
        if meal is None:
            continue
        s = slots[(local.date(), meal)]
        s.taps += 1
        s.cards = (s.cards or set()) | {t.card_id}
    out = []
    for (day, meal), s in sorted(slots.items(), key=lambda kv: (kv[0][0], MEAL_ORDER[kv[0][1]])):
        seen = s.periods > 0
        checkins = len(s.cards or ())
        out.append(MealCheck(
            day=day, meal=meal,
            camera_entries=s.entries if seen else None, camera_exits=s.exits if seen else None,
            camera_seconds=s.seconds, cameras=tuple(sorted(s.cameras or ())),
            checkins=checkins, taps=s.taps,
            flagged=seen and margin.exceeded(checkins, s.entries),
        ))
    return out
