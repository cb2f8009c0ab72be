"""Inspection periods and missing checks: a pure function of the calendar, the records and today.

Kinds, who does them and their periods (local calendar of the county):
    daily    日检   caregiver          one local day; due on the point's service days only
    weekly   周检   village officer    an ISO week, Monday to Sunday
    monthly  月巡查 township officer   a calendar month
A period is required when the meal point was in service on at least one of its days (from the
day the point was registered, not on closed days, only on service weekdays). It is missing once it
has ended (its last day is before today) with no inspection of its kind recorded for it.

A report window [start, end) of days holds the periods whose LAST day falls inside it, so each
week belongs to exactly one month: a week from Monday 30 June to Sunday 6 July counts in July.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum

from server.auth.scopes import Role


class InspectionKind(StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"


class Area(StrEnum):
    """What an inspection item is about."""

    ELECTRICITY = "electricity"
    GAS = "gas"
    FOOD = "food"
    FIRE = "fire"
    HYGIENE = "hygiene"
    OTHER = "other"


KIND_ORDER = {kind: n for n, kind in enumerate(InspectionKind)}
KIND_ZH = {InspectionKind.DAILY: "日检", InspectionKind.WEEKLY: "周检", InspectionKind.MONTHLY: "月巡查"}
AREA_ZH = {Area.ELECTRICITY: "用电", Area.GAS: "燃气", Area.FOOD: "食品", Area.FIRE: "消防",
           Area.HYGIENE: "卫生", Area.OTHER: "其他"}
# The plan's chain: caregivers daily, the village's safety officer weekly, township leaders monthly.
RESPONSIBLE: Mapping[InspectionKind, Role] = {
    InspectionKind.DAILY: Role.CAREGIVER,
    InspectionKind.WEEKLY: Role.VILLAGE_OFFICER,
    InspectionKind.MONTHLY: Role.TOWNSHIP_OFFICER,
}


def period_start(kind: InspectionKind, day: date) -> date:
    """The first day of the period of this kind that contains `day`."""
    if kind is InspectionKind.DAILY:
        return day
    if kind is InspectionKind.WEEKLY:
        return day - timedelta(days=day.isoweekday() - 1)
    return day.replace(day=1)


def period_end(kind: InspectionKind, start: date) -> date:
    """The day after the period that begins on `start` (exclusive end)."""
    if kind is InspectionKind.DAILY:
        return start + timedelta(days=1)
    if kind is InspectionKind.WEEKLY:
        return start + timedelta(days=7)
    return date(start.year + start.month // 12, start.month % 12 + 1, 1)


def month_bounds(year: int, month: int) -> tuple[date, date]:
    """[first day, first day of the next month)."""
    first = date(year, month, 1)
    return first, period_end(InspectionKind.MONTHLY, first)


def periods(kind: InspectionKind, start: date, end: date) -> Iterator[tuple[date, date]]:
    """(start, end) of each period of this kind whose last day lies in [start, end)."""
    if end <= start:
        return
    first = period_start(kind, start)
    while first < end:
        stop = period_end(kind, first)
        if stop - timedelta(days=1) >= end:
            return
        yield first, stop
        first = stop


@dataclass(frozen=True, slots=True)
class PointSpan:
    """A meal point and the days inspections are due there: from `since` on, closed days excluded."""

    point_id: str
    since: date
    closed: frozenset[date] = frozenset()


@dataclass(frozen=True, slots=True)
class ServiceCalendar:
    """The county's service weekdays (ISO: 1 = Monday … 7 = Sunday)."""

    weekdays: frozenset[int] = frozenset(range(1, 8))

    def serves(self, point: PointSpan, day: date) -> bool:
        return day >= point.since and day.isoweekday() in self.weekdays and day not in point.closed

    def any_service(self, point: PointSpan, start: date, end: date) -> bool:
        day = max(start, point.since)
        while day < end:
            if self.serves(point, day):
                return True
            day += timedelta(days=1)
        return False


@dataclass(frozen=True, slots=True)
class Missing:
    """A required inspection that was not recorded."""

    point_id: str
    kind: InspectionKind
    period_start: date
    period_end: date  # exclusive

    @property
    def last_day(self) -> date:
        return self.period_end - timedelta(days=1)

    @property
    def responsible(self) -> Role:
        return RESPONSIBLE[self.kind]


Record = tuple[str, InspectionKind, date]  # (point_id, kind, period_start)


def missing_inspections(
    points: Iterable[PointSpan], records: Iterable[Record], start: date, end: date, today: date,
    calendar: ServiceCalendar = ServiceCalendar(),
    kinds: Collection[InspectionKind] = tuple(InspectionKind),
) -> list[Missing]:
    """Each required period in [start, end) that ended before `today` with no record of its kind."""
    done = {(p, InspectionKind(k), s) for p, k, s in records}
    found: list[Missing] = []
    for point in points:
        for kind in kinds:
            for first, stop in periods(kind, start, end):
                if stop > today:
                    break  # this period has not ended yet, nor have the later ones
                if (point.point_id, kind, first) in done or not calendar.any_service(point, first, stop):
                    continue
                found.append(Missing(point.point_id, kind, first, stop))
    found.sort(key=lambda m: (m.point_id, KIND_ORDER[m.kind], m.period_start))
    return found
