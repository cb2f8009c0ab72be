"""Policy files: strict loading, choice by effective date, amounts, meal windows."""

from __future__ import annotations

from datetime import date, time
from decimal import Decimal

import pytest

from firmware_bridge.contract.messages import DinerKind, Meal
from server.subsidy.errors import PolicyError
from server.subsidy.policy import (
    DEFAULT_RANKING,
    EXAMPLE_POLICY_FILE,
    Category,
    PolicyBook,
    load_policies,
    parse_policies,
)

from .conftest import POLICY_YAML

MINIMAL = """
county: 测试县
policies:
  - version: v1
    effective_from: 2024-06-01
    meal_windows:
      lunch: {start: "10:30", end: "13:30"}
    amounts:
      general: {lunch: "3.00"}
"""


def test_example_county_file_loads_and_chooses_by_date() -> None:
    book = load_policies(EXAMPLE_POLICY_FILE)
    assert book.county == "示例县"
    assert book.in_force(date(2024, 5, 31)) is None
    assert book.in_force(date(2024, 6, 1)).version == "2024-06"  # type: ignore[union-attr]
    assert book.in_force(date(2024, 12, 31)).version == "2024-06"  # type: ignore[union-attr]
    p2025 = book.in_force(date(2025, 1, 1))
    assert p2025 is not None and p2025.version == "2025-01"
    # 10-yuan lunch, 2 yuan minimum self-pay: the 10-yuan 特困 amount is capped at 8.
    assert p2025.amount(Category.TEKUN, Meal.LUNCH) == Decimal("8.00")
    assert p2025.amount(Category.GENERAL, Meal.LUNCH) == Decimal("4.00")
    assert p2025.amount(Category.TEKUN, Meal.DINNER) == Decimal("6.00")


def test_defaults_are_the_documented_ones() -> None:
    p = parse_policies(MINIMAL).policies[0]
    assert [(b.min_age, b.category) for b in p.age_bands] == [(70, Category.GENERAL)]
    assert p.max_meals_per_day == 1
    assert p.special_min_age == 60
    assert p.allow_non_local is False
    assert p.long_term_min_years == 2
    assert p.category_ranking == DEFAULT_RANKING
    assert DEFAULT_RANKING[:3] == (Category.TEKUN, Category.DIBAO, Category.SEVERE_DISABILITY)
    assert DEFAULT_RANKING[-1] is Category.GENERAL


def test_ranking_picks_the_first_listed_category() -> None:
    p = parse_policies(POLICY_YAML).policies[0]
    assert p.best({Category.GENERAL, Category.DIBAO, Category.EMPTY_NEST}) is Category.DIBAO
    assert p.best({Category.TEKUN, Category.DIBAO}) is Category.TEKUN
    # An unpriced category (advanced_age is not in this policy) never wins.
    assert p.best({Category.ADVANCED_AGE}) is None


@pytest.mark.parametrize(
    ("local", "kind", "meal"),
    [
        (time(10, 29, 59), DinerKind.TAP, None),
        (time(10, 30), DinerKind.TAP, Meal.LUNCH),
        (time(13, 29, 59), DinerKind.TAP, Meal.LUNCH),
        (time(13, 30), DinerKind.TAP, None),
        (time(13, 30), DinerKind.DELIVERY, Meal.LUNCH),
        (time(14, 29), DinerKind.DELIVERY, Meal.LUNCH),
        (time(14, 30), DinerKind.DELIVERY, None),
        (time(16, 30), DinerKind.TAP, Meal.DINNER),
        (time(19, 30), DinerKind.DELIVERY, Meal.DINNER),
    ],
)
def test_meal_windows(local: time, kind: DinerKind, meal: Meal | None) -> None:
    p = parse_policies(POLICY_YAML).policies[1]
    assert p.meal_at(local, kind) == meal


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("county: 测试县", "county: 测试县\nsurprise: 1"), "surprise"),
        (('{lunch: "3.00"}', "{lunch: 3.5}"), "never a float"),
        (('{lunch: "3.00"}', '{lunch: "3.005"}'), "two decimal places"),
        (('{lunch: "3.00"}', '{lunch: "-1"}'), "negative"),
        (('{lunch: "3.00"}', '{lunch: "0"}'), "above zero"),
        (('start: "10:30"', "start: 10:30"), "quote times"),
        (('end: "13:30"', 'end: "10:00"'), "not before its end"),
        (('general: {lunch: "3.00"}', 'general: {dinner: "3.00"}'), "exactly the meal slots"),
        (('general: {lunch: "3.00"}', 'dibao: {lunch: "3.00"}'), "no amounts"),
        (("version: v1", "version: v 1"), "version"),
        (("effective_from: 2024-06-01", "effective_from: someday"), "effective_from"),
        (("county: 测试县", "county: 测试县\ntimezone: Mars/Olympus"), "time zone"),
    ],
)
def test_bad_policy_files_are_refused_with_the_key_path(change: tuple[str, str], message: str) -> None:
    old, new = change
    assert old in MINIMAL
    with pytest.raises(PolicyError, match=message):
        parse_policies(MINIMAL.replace(old, new, 1))


def test_overlapping_windows_and_unsorted_versions_are_refused() -> None:
    overlapping = MINIMAL.replace(
        'lunch: {start: "10:30", end: "13:30"}',
        'lunch: {start: "10:30", end: "13:30"}\n      dinner: {start: "13:00", end: "18:00"}',
    ).replace('{lunch: "3.00"}', '{lunch: "3.00", dinner: "2.00"}')
    with pytest.raises(PolicyError, match="overlap"):
        parse_policies(overlapping)
    swapped = POLICY_YAML.replace("2024-01-01", "2024-07-01")
    with pytest.raises(PolicyError, match="order of effective_from"):
        parse_policies(swapped)


def test_min_meal_price_caps_the_subsidy_and_needs_prices() -> None:
    capped = MINIMAL + '    meal_prices: {lunch: "5.00"}\n    min_meal_price: "3.00"\n'
    p = parse_policies(capped).policies[0]
    assert p.amount(Category.GENERAL, Meal.LUNCH) == Decimal("2.00")
    with pytest.raises(PolicyError, match="go together"):
        parse_policies(MINIMAL + '    min_meal_price: "3.00"\n')
    with pytest.raises(PolicyError, match="not above"):
        parse_policies(MINIMAL + '    meal_prices: {lunch: "3.00"}\n    min_meal_price: "3.00"\n')


def test_policy_hash_follows_content() -> None:
    a = parse_policies(MINIMAL).policies[0]
    b = parse_policies(MINIMAL).policies[0]
    c = parse_policies(MINIMAL.replace('"3.00"', '"3.50"')).policies[0]
    assert a.content_hash == b.content_hash
    assert a.content_hash != c.content_hash


def test_book_is_a_strict_model() -> None:
    book = parse_policies(MINIMAL)
    assert isinstance(book, PolicyBook)
    with pytest.raises(PolicyError, match="mapping"):
        parse_policies("- just a list")
    with pytest.raises(PolicyError, match="YAML"):
        parse_policies("county: [unclosed")
