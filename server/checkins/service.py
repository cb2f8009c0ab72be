"""Check-in queries: a day's diner events, distinct elders served per meal, deliveries recorded by staff."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from firmware_bridge.contract import CheckinMethod, DinerKind, TapDecision
from server.errors import NotFoundError, ServerError
from server.registry import repository as registry
from server.subsidy.masking import mask_name

from . import repository
from .schemas import DeliveryIn, DeliveryOut, DinerEventOut, DinersOut, MealCount, ServedElder, ServedMeal, ServedOut

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


SERVER_DELIVERY_DEVICE = "api-delivery"  # device id of deliveries recorded through the API
MAX_RANGE_DAYS = 93


class DeliveryRefusedError(ServerError):
    """The elder cannot be recorded as served (unknown here, moved or deceased on that date)."""


def served(conn: psycopg.Connection[Any], point_id: str, start: date, end: date, timezone: str,
           with_elders: bool) -> ServedOut:
    """Distinct elders served per local day and meal over [start, end] (inclusive days)."""
    if registry.get_point(conn, point_id) is None:
        raise NotFoundError(f"no meal point {point_id!r}")
    if end < start or (end - start).days >= MAX_RANGE_DAYS:
        raise ValueError(f"the range must be 1 to {MAX_RANGE_DAYS} days")
    zone = ZoneInfo(timezone)
    lo, hi = day_bounds(start, zone)[0], day_bounds(end, zone)[1]
    meals = sorted((ServedMeal(**r) for r in repository.served(conn, point_id, lo, hi, timezone)),
                   key=lambda m: (m.day, _MEAL_ORDER.get(m.meal, len(_MEAL_ORDER))))
    elders = None
    if with_elders:
        elders = [ServedElder(day=r["day"], meal=r["meal"], elder_id=r["elder_id"], label=mask_name(r["name"]),
                              first_at=r["first_at"], events=r["events"], at_point=r["at_point"],
                              delivered=r["delivered"])
                  for r in repository.served_elders(conn, point_id, lo, hi, timezone)]
    return ServedOut(point_id=point_id, start=start, end=end, timezone=timezone, meals=meals, elders=elders)


def record_delivery(conn: psycopg.Connection[Any], point_id: str, spec: DeliveryIn, now: datetime,
                    timezone: str) -> DeliveryOut:
    """Store a delivery as a diner event of the point (kind delivery, method manual, the elder's ID card).

    The decision is `repeat` when the elder already had this meal that local day anywhere: the event is
    kept (it happened) and the settlement counts the meal once.
    """
    if registry.get_point(conn, point_id) is None:
        raise NotFoundError(f"no meal point {point_id!r}")
    elder = repository.elder_for_delivery(conn, spec.elder_id)
    if elder is None:
        raise NotFoundError(f"no elder {spec.elder_id!r}")
    at = spec.at or now
    if at > now + timedelta(minutes=5):
        raise DeliveryRefusedError("a delivery cannot be recorded in the future")
    zone = ZoneInfo(timezone)
    day = at.astimezone(zone).date()
    if elder["status"] != "active" and elder["status_date"] is not None and day >= elder["status_date"]:
        raise DeliveryRefusedError(f"elder {spec.elder_id!r} is {elder['status']} since {elder['status_date']}")
    lo, hi = day_bounds(day, zone)
    # One delivery at a time per elder: a concurrent second one must see the first as a repeat.
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('yangyi-delivery'), hashtext(%s))", (spec.elder_id,))
    repeat = repository.already_served(conn, spec.elder_id, elder["id_number"], spec.meal.value, lo, hi)
    body = {"kind": DinerKind.DELIVERY.value, "method": CheckinMethod.MANUAL.value,
            "card_id": "ID:" + elder["id_number"], "meal": spec.meal.value,
            "decision": (TapDecision.REPEAT if repeat else TapDecision.ACCEPTED).value, "elder_id": spec.elder_id}
    seq = repository.insert_server_event(conn, point_id, SERVER_DELIVERY_DEVICE, at, body, now)
    return DeliveryOut(point_id=point_id, device_id=SERVER_DELIVERY_DEVICE, seq=seq, time=at,
                       elder_id=spec.elder_id, meal=spec.meal, kind=body["kind"], method=body["method"],
                       decision=body["decision"])
