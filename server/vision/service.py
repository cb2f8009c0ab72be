"""Camera queries: entries per meal against card check-ins, occupancy snapshots, camera health."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from edge.checkin import DEFAULT_WINDOWS
from firmware_bridge.contract import Meal
from server.errors import NotFoundError
from server.registry import repository as registry
from server.subsidy import canonical
from server.subsidy.policy import PolicyBook, SubsidyPolicy

from . import repository
from .crosscheck import Margin, cross_check
from .schemas import (
    CameraHealthListOut,
    CameraHealthOut,
    CameraMealsOut,
    MarginOut,
    MealCheckOut,
    OccupancyDayOut,
    OccupancyOut,
)

MAX_RANGE_DAYS = 31
DEFAULTS_LABEL = "check-in defaults"


def _day_bounds(start: date, end: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    return datetime.combine(start, time(0), tz), datetime.combine(end + timedelta(days=1), time(0), tz)


def _require_point(conn: psycopg.Connection[Any], point_id: str) -> None:
    if registry.get_point(conn, point_id) is None:
        raise NotFoundError(f"no meal point {point_id!r}")


def load_book(conn: psycopg.Connection[Any]) -> PolicyBook | None:
    """The stored subsidy policies as one book, parsed as the settlement parses them; None if none."""
    rows = repository.policy_contents(conn)
    if not rows:
        return None
    policies = tuple(SubsidyPolicy.model_validate_json(canonical.dumps(r["content"])) for r in rows)
    return PolicyBook(county=rows[-1]["county"], timezone=rows[-1]["timezone"], policies=policies)


def meal_slots(book: PolicyBook | None) -> tuple[Callable[[datetime], Meal | None], Callable[[date], str]]:
    """The meal slot of a local moment and the label of the windows used on a day.

    The subsidy policy in force that day decides (SubsidyPolicy.meal_at, as the settlement places taps);
    before any stored policy, the agents' default check-in windows (edge.checkin.DEFAULT_WINDOWS).
    """

    def policy_of(day: date) -> SubsidyPolicy | None:
        return book.in_force(day) if book is not None else None

    def meal_of(local: datetime) -> Meal | None:
        policy = policy_of(local.date())
        if policy is not None:
            return policy.meal_at(local.time())
        return next((w.meal for w in DEFAULT_WINDOWS if w.contains(local.time())), None)

    def label(day: date) -> str:
        policy = policy_of(day)
        return f"policy {policy.version}" if policy is not None else DEFAULTS_LABEL

    return meal_of, label


def camera_meals(conn: psycopg.Connection[Any], point_id: str, start: date, end: date, default_tz: str,
                 margin: Margin) -> CameraMealsOut:
    """Camera entries against distinct cards tapped per local day and meal slot over [start, end]."""
    _require_point(conn, point_id)
    if end < start or (end - start).days >= MAX_RANGE_DAYS:
        raise ValueError(f"the range must be 1 to {MAX_RANGE_DAYS} days")
    book = load_book(conn)
    tz_name = book.timezone if book is not None else default_tz
    tz = ZoneInfo(tz_name)
    lo, hi = _day_bounds(start, end, tz)
    meal_of, label = meal_slots(book)
    checks = cross_check(repository.card_taps(conn, point_id, lo, hi),
                         repository.count_periods(conn, point_id, lo, hi), meal_of, tz, margin)
    labels = list(dict.fromkeys(label(start + timedelta(days=i)) for i in range((end - start).days + 1)))
    meals = [MealCheckOut(day=c.day, meal=c.meal, camera_entries=c.camera_entries, camera_exits=c.camera_exits,
                          camera_minutes=c.camera_seconds / 60, cameras=list(c.cameras), checkins=c.checkins,
                          taps=c.taps, excess=c.excess, flagged=c.flagged) for c in checks]
    return CameraMealsOut(point_id=point_id, start=start, end=end, timezone=tz_name, windows=", ".join(labels),
                          margin=MarginOut(min_excess=margin.min_excess, ratio=margin.ratio), meals=meals)


def occupancy(conn: psycopg.Connection[Any], point_id: str, day: date, timezone: str) -> OccupancyDayOut:
    """A local day's seated head-count snapshots, in time order."""
    _require_point(conn, point_id)
    lo, hi = _day_bounds(day, day, ZoneInfo(timezone))
    snaps = [OccupancyOut(**r) for r in repository.occupancy(conn, point_id, lo, hi)]
    return OccupancyDayOut(point_id=point_id, day=day, timezone=timezone, snapshots=snaps)


def health(conn: psycopg.Connection[Any], point_id: str, now: datetime, hours: int) -> CameraHealthListOut:
    """Each camera's latest health readings (online, fps, reconnects) and how far its counts reach."""
    _require_point(conn, point_id)
    since = now - timedelta(hours=hours)
    cams = []
    for r in repository.camera_health(conn, point_id, since):
        cams.append(CameraHealthOut(
            device_id=r["device_id"], online=None if r["online"] is None else r["online"] >= 0.5,
            online_at=r["online_at"], fps=r["fps"],
            reconnects=None if r["reconnects"] is None else int(r["reconnects"]),
            counted_until=r["counted_until"], count_events=r["count_events"]))
    return CameraHealthListOut(point_id=point_id, since=since, cameras=cams)
