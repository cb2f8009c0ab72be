"""Pure cross-check: the margin, slots by period start, sums of same-start events, unknown vs zero."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from firmware_bridge.contract import DinerKind, Meal
from server.subsidy.anomalies import AnomalySettings, camera_excess
from server.subsidy.policy import Category
from server.subsidy.records import CameraCount, MealLine, Tap
from server.vision.crosscheck import CardTap, CountPeriod, Margin, checkins_exceed, cross_check

TZ = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 6, 3)


def at(hh: int, mm: int, ss: int = 0, day: date = DAY) -> datetime:
    return datetime.combine(day, time(hh, mm, ss), TZ).astimezone(UTC)


def lunch_only(local: datetime) -> Meal | None:
    if time(11) <= local.time() < time(13):
        return Meal.LUNCH
    if time(17) <= local.time() < time(19):
        return Meal.DINNER
    return None


def period(t: datetime, entries: int, exits: int = 0, device: str = "cam1", period_s: int = 60) -> CountPeriod:
    return CountPeriod(t, device, period_s, entries, exits)


def taps(t: datetime, *cards: str) -> list[CardTap]:
    return [CardTap(t + timedelta(seconds=i), c) for i, c in enumerate(cards)]


@pytest.mark.parametrize(("checkins", "camera", "flagged"), [
    (8, 6, False),    # excess 2: not more than 2
    (9, 6, True),     # excess 3 > 2 and > 0.6
    (3, 0, True),     # no one seen, three cards
    (2, 0, False),
    (110, 100, False),  # excess 10: not more than 10 % of 100
    (111, 100, True),
    (6, 9, False),    # fewer cards than people: not this flag's business
])
def test_default_margin_more_than_two_and_more_than_ten_percent(checkins, camera, flagged):
    assert checkins_exceed(checkins, camera) is flagged
    assert Margin().exceeded(checkins, camera) is flagged


def test_the_margin_is_configurable():
    assert Margin(min_excess=0, ratio=Decimal(0)).exceeded(7, 6)
    assert not Margin(min_excess=5, ratio=Decimal("0.10")).exceeded(11, 6)
    assert not Margin(min_excess=2, ratio=Decimal("0.5")).exceeded(9, 6)  # 3 is not more than 3


def test_settlement_flags_and_the_api_use_one_definition():
    """Over a grid of counts and margins, anomalies.camera_excess flags exactly where checkins_exceed says."""
    for camera, n, (mn, ratio) in itertools.product(range(0, 40, 3), range(0, 45, 2),
                                                    [(2, "0.10"), (0, "0"), (5, "0.25")]):
        settings = AnomalySettings(camera_excess_min=mn, camera_excess_ratio=Decimal(ratio))
        lines = [MealLine(tap=Tap("P1", "r1", i, at(12, 0, i), f"EM:{i}", DinerKind.TAP, Meal.LUNCH),
                          elder_id=f"e{i}", day=DAY, meal=Meal.LUNCH, category=Category.GENERAL,
                          amount=Decimal(3), policy_version="p1")
                 for i in range(n)]
        flags = camera_excess(lines, [CameraCount("P1", DAY, Meal.LUNCH, camera)], settings)
        api = cross_check([CardTap(ln.tap.time, ln.tap.card_id) for ln in lines], [period(at(12, 0), camera)],
                          lunch_only, TZ, Margin(min_excess=mn, ratio=Decimal(ratio)))
        assert bool(flags) is api[0].flagged is checkins_exceed(n, camera, mn, Decimal(ratio)), (camera, n, mn)


def test_entries_summed_per_slot_with_two_events_of_one_period_start():
    # A restart mid-minute: two events for 12:01, both count.
    periods = [period(at(12, 0), 2, 1), period(at(12, 1), 1), period(at(12, 1), 2), period(at(12, 30), 1, 3)]
    [lunch] = cross_check(taps(at(12, 5), "A", "B", "C", "D", "E", "F"), periods, lunch_only, TZ, Margin())
    assert (lunch.day, lunch.meal) == (DAY, Meal.LUNCH)
    assert (lunch.camera_entries, lunch.camera_exits, lunch.camera_seconds) == (6, 4, 240)
    assert (lunch.checkins, lunch.taps, lunch.excess, lunch.flagged) == (6, 6, 0, False)


def test_distinct_cards_not_taps():
    repeated = taps(at(11, 10), "A", "A", "A", "B", "C", "C", "D", "E")
    [lunch] = cross_check(repeated, [period(at(11, 0), 1)], lunch_only, TZ, Margin())
    assert (lunch.checkins, lunch.taps, lunch.excess, lunch.flagged) == (5, 8, 4, True)


def test_slot_follows_the_period_start_and_the_tap_time():
    periods = [period(at(10, 59), 5), period(at(11, 0), 1), period(at(12, 59), 2), period(at(13, 0), 7)]
    checks = cross_check(taps(at(10, 59, 30), "X") + taps(at(12, 59, 50), "Y"), periods, lunch_only, TZ, Margin())
    assert [(c.meal, c.camera_entries, c.checkins) for c in checks] == [(Meal.LUNCH, 3, 1)]


def test_no_count_event_means_unknown_never_zero_and_never_flagged():
    checks = cross_check(taps(at(12, 0), *"ABCDEFGH") + taps(at(17, 30), "A"), [period(at(17, 0), 0)],
                         lunch_only, TZ, Margin())
    lunch, dinner = checks
    assert (lunch.meal, lunch.camera_entries, lunch.excess, lunch.flagged, lunch.checkins) == (
        Meal.LUNCH, None, None, False, 8)
    assert (dinner.meal, dinner.camera_entries, dinner.flagged) == (Meal.DINNER, 0, False)


def test_cameras_add_up_and_days_stay_apart():
    next_day = DAY + timedelta(days=1)
    periods = [period(at(12, 0), 3, device="door-a"), period(at(12, 0), 2, device="door-b"),
               period(at(12, 0, day=next_day), 4, device="door-a")]
    checks = cross_check(taps(at(12, 0), *"ABCDE") + taps(at(12, 0, day=next_day), *"ABCDEFGH"), periods,
                         lunch_only, TZ, Margin())
    assert [(c.day, c.camera_entries, c.cameras, c.checkins, c.flagged) for c in checks] == [
        (DAY, 5, ("door-a", "door-b"), 5, False), (next_day, 4, ("door-a",), 8, True)]


def test_local_day_is_the_meal_points_zone():
    # 17:30 local on DAY is 09:30 UTC; 00:30 local the next day is 16:30 UTC of DAY.
    def evening(local: datetime) -> Meal | None:
        return Meal.DINNER if local.time() >= time(17) or local.time() < time(1) else None
    late = datetime.combine(DAY + timedelta(days=1), time(0, 30), TZ)
    checks = cross_check([], [period(at(17, 30), 1), period(late, 2)], evening, TZ, Margin())
    assert [(c.day, c.camera_entries) for c in checks] == [(DAY, 1), (DAY + timedelta(days=1), 2)]
