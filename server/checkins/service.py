"""Check-in queries: a local day's diner events and per-meal counts."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from server.errors import NotFoundError
from server.registry import repository as registry

from . import repository
from .schemas import DinerEventOut, DinersOut, MealCount

_MEAL_ORDER = {"breakfast": 0, "lunch": 1, "dinner": 2}


def day_bounds(day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end) of a local calendar day as aware datetimes (handles DST where a zone has it)."""
    start = datetime.combine(day, time(0), tz)
    end = datetime.combine(day + timedelta(days=1), time(0), tz)
    return start, end


def diners(conn: psycopg.Connection[Any], point_id: str, day: date, timezone: str) -> DinersOut:
    if registry.get_point(conn, point_id) is None:
        raise NotFoundError(f"no meal point {point_id!r}")
    start, end = day_bounds(day, ZoneInfo(timezone))
    events = [DinerEventOut(**r) for r in repository.diner_events(conn, point_id, start, end)]
    meals = sorted((MealCount(**r) for r in repository.meal_counts(conn, point_id, start, end)),
                   key=lambda m: _MEAL_ORDER.get(m.meal, len(_MEAL_ORDER)))
    return DinersOut(point_id=point_id, day=day, timezone=timezone, meals=meals, events=events)
