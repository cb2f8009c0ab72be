"""Anomaly flags: each fires on its pattern and stays quiet just below its threshold."""

from __future__ import annotations

import random
from datetime import date

import pytest

from firmware_bridge.contract.messages import DinerKind, Meal
from server.subsidy.anomalies import AnomalyKind
from server.subsidy.settlement import CameraCount, Month, Settlement, settle

from .conftest import County, at, days_after

JUNE = Month(2024, 6)
OLD = date(1940, 5, 5)


def run(county: County, cameras: list[CameraCount] | None = None) -> Settlement:
    return settle(JUNE, camera_counts=cameras or [], **county.settle_args())


def kinds(result: Settlement) -> list[AnomalyKind]:
    return [f.kind for f in result.anomalies]


def diners(county: County, n: int) -> list[str]:
    cards = []
    for i in range(n):
        county.elder(f"E{i}", OLD, card=f"EM:{i}")
        cards.append(f"EM:{i}")
    return cards


@pytest.mark.parametrize(
    ("taps", "camera", "flagged"),
    [
        (13, 10, True),  # 3 over and 30 %
        (12, 10, False),  # 2 over: not more than 2
        (33, 30, False),  # 3 over but exactly 10 %
        (34, 30, True),  # 4 over and 13 %
        (3, 0, True),  # nobody on camera
    ],
)
def test_taps_above_the_camera_count(county: County, taps: int, camera: int, flagged: bool) -> None:
    cards = diners(county, taps)
    day = date(2024, 6, 5)
    for card in cards:
        county.tap(card, at(day, 11, 30))
    result = run(county, [CameraCount("P1", day, Meal.LUNCH, camera)])
    assert len(result.lines) == taps
    assert kinds(result) == ([AnomalyKind.CAMERA_EXCESS] if flagged else [])
    if flagged:
        flag = result.anomalies[0]
        assert (flag.point_id, flag.day, flag.meal) == ("P1", day, Meal.LUNCH)
        assert dict(flag.figures) == {"camera": str(camera), "taps": str(taps)}


def test_deliveries_do_not_count_against_the_camera(county: County) -> None:
    cards = diners(county, 6)
    day = date(2024, 6, 5)
    for card in cards:
        county.tap(card, at(day, 11, 30), kind=DinerKind.DELIVERY)
    assert kinds(run(county, [CameraCount("P1", day, Meal.LUNCH, 0)])) == []


def test_one_card_at_two_points_on_a_day(county: County) -> None:
    county.elder("E1", OLD)
    county.tap("EM:E1", at(date(2024, 6, 5), 11), point="P1")
    county.tap("EM:E1", at(date(2024, 6, 5), 12), point="P4")
    county.tap("EM:E1", at(date(2024, 6, 6), 11), point="P1")
    county.tap("EM:E1", at(date(2024, 6, 7), 11), point="P4")
    result = run(county)
    assert [(f.kind, f.point_id, f.day, f.card_id) for f in result.anomalies] == [
        (AnomalyKind.TWO_POINTS, "P1", date(2024, 6, 5), "EM:E1"),
        (AnomalyKind.TWO_POINTS, "P4", date(2024, 6, 5), "EM:E1"),
    ]


def test_repeated_taps_from_three_per_meal(county: County) -> None:
    county.elder("E1", OLD)
    county.elder("E2", OLD, card="EM:E2")
    for minute in (0, 1, 2):
        county.tap("EM:E1", at(date(2024, 6, 5), 11, minute))
    for minute in (0, 1):
        county.tap("EM:E2", at(date(2024, 6, 5), 11, minute))
    result = run(county)
    assert [(f.kind, f.card_id) for f in result.anomalies] == [(AnomalyKind.REPEATED_TAPS, "EM:E1")]
    assert dict(result.anomalies[0].figures) == {"taps": "3"}


def test_month_end_spike(county: County) -> None:
    cards = diners(county, 30)
    for day in days_after(date(2024, 6, 1), 30):
        n = 24 if day.day >= 28 else (10 + day.day % 3)  # medians 11, month end 24
        for card in cards[:n]:
            county.tap(card, at(day, 11, 30), point="P2")
    result = run(county)
    spikes = [f for f in result.anomalies if f.kind is AnomalyKind.SPIKE]
    assert [f.day for f in spikes] == [date(2024, 6, 28), date(2024, 6, 29), date(2024, 6, 30)]
    assert all("month end" in f.detail for f in spikes)


def test_no_spike_below_the_factor(county: County) -> None:
    cards = diners(county, 30)
    for day in days_after(date(2024, 6, 1), 30):
        n = 16 if day.day >= 28 else 11  # 16 < 1.5 × 11
        for card in cards[:n]:
            county.tap(card, at(day, 11, 30), point="P2")
    assert AnomalyKind.SPIKE not in kinds(run(county))


def test_the_same_roster_every_day(county: County) -> None:
    cards = diners(county, 8)
    for day in days_after(date(2024, 6, 3), 22):
        for card in cards:
            county.tap(card, at(day, 11, 30), point="P3")
    result = run(county)
    assert kinds(result) == [AnomalyKind.ROSTER_SAME_SET]
    assert dict(result.anomalies[0].figures) == {"days": "22", "serving_days": "22", "elders": "8"}


def test_real_diners_come_and_go(county: County) -> None:
    cards = diners(county, 12)
    rng = random.Random(3)
    for day in days_after(date(2024, 6, 1), 30):
        for card in rng.sample(cards, rng.randint(6, 12)):
            county.tap(card, at(day, 11, 30), point="P3")
    assert kinds(run(county)) == []


def test_near_constant_counts_with_rotating_names(county: County) -> None:
    cards = diners(county, 20)
    for i, day in enumerate(days_after(date(2024, 6, 1), 20)):
        for card in [cards[(i + k) % 20] for k in range(10)]:
            county.tap(card, at(day, 11, 30), point="P3")
    assert kinds(run(county)) == [AnomalyKind.ROSTER_CONSTANT_COUNT]
