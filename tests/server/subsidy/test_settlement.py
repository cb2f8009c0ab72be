"""Settlement: each exclusion reason, daily limit, highest category, mid-month policy change, totals, order."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from firmware_bridge.contract.messages import DinerKind, Meal
from server.subsidy.eligibility import ElderStatus
from server.subsidy.errors import ReconciliationError, SettlementInputError
from server.subsidy.policy import Category, PolicyBook, parse_policies
from server.subsidy.settlement import (
    AdjustmentLine,
    CardBinding,
    CardState,
    ExclusionReason,
    Level,
    Month,
    Settlement,
    Tap,
    settle,
)

from .conftest import POLICY_YAML, TZ, County, at, grant

JUNE = Month(2024, 6)
R = ExclusionReason
OLD = date(1940, 5, 5)  # 84 in June 2024


def run(county: County, month: Month = JUNE, **kw: object) -> Settlement:
    args = county.settle_args()
    args.update(kw)
    result = settle(month, **args)
    result.check()
    return result


def only_exclusion(result: Settlement) -> tuple[ExclusionReason, str]:
    assert result.lines == ()
    assert len(result.exclusions) == 1
    return result.exclusions[0].reason, result.exclusions[0].detail


def _unknown_point(c: County) -> None:
    c.elder("E1", OLD)
    c.tap("EM:E1", at(date(2024, 6, 3), 11), point="P9")


def _unknown_card(c: County) -> None:
    c.elder("E1", OLD)
    c.tap("EM:NOBODY", at(date(2024, 6, 3), 11))


def _card_bound_later(c: County) -> None:
    c.elder("E1", OLD)
    c.bindings[0] = CardBinding("EM:E1", "E1", at(date(2024, 6, 20), 0))
    c.tap("EM:E1", at(date(2024, 6, 3), 11))


def _card_lost(c: County) -> None:
    c.elder("E1", OLD, card_state=CardState.LOST, card_state_since=at(date(2024, 6, 3), 11))
    c.tap("EM:E1", at(date(2024, 6, 3), 11, 5))


def _card_replaced(c: County) -> None:
    c.elder("E1", OLD, card_state=CardState.REPLACED, card_state_since=at(date(2024, 6, 1), 9))
    c.tap("EM:E1", at(date(2024, 6, 3), 11))


def _outside_window(c: County) -> None:
    c.elder("E1", OLD)
    c.tap("EM:E1", at(date(2024, 6, 3), 9, 59))


def _moved(c: County) -> None:
    c.elder("E1", OLD, status=ElderStatus.MOVED, status_date=date(2024, 6, 2))
    c.tap("EM:E1", at(date(2024, 6, 3), 11))


def _deceased(c: County) -> None:
    c.elder("E1", OLD, status=ElderStatus.DECEASED, status_date=date(2024, 6, 3))
    c.tap("EM:E1", at(date(2024, 6, 3), 11))


def _under_age(c: County) -> None:
    c.elder("E1", date(1960, 1, 1))
    c.tap("EM:E1", at(date(2024, 6, 3), 11))


def _non_local(c: County) -> None:
    c.elder("E1", OLD, hukou_local=False, resident_since=date(2023, 1, 1))
    c.tap("EM:E1", at(date(2024, 6, 3), 11))


@pytest.mark.parametrize(
    ("scenario", "reason", "detail"),
    [
        (_unknown_point, R.UNKNOWN_POINT, ""),
        (_unknown_card, R.UNKNOWN_CARD, "no binding"),
        (_card_bound_later, R.UNKNOWN_CARD, "no binding"),
        (_card_lost, R.CARD_LOST, "lost since 2024-06-03T03:00:00Z"),
        (_card_replaced, R.CARD_LOST, "replaced"),
        (_outside_window, R.OUTSIDE_WINDOW, "policy v1"),
        (_moved, R.ELDER_MOVED, "moved since 2024-06-02"),
        (_deceased, R.ELDER_DECEASED, "deceased since 2024-06-03"),
        (_under_age, R.NOT_ELIGIBLE, "age 64"),
        (_non_local, R.NOT_ELIGIBLE, "non-local"),
    ],
    ids=lambda v: getattr(v, "__name__", str(v)),
)
def test_each_exclusion_reason(
    county: County, scenario: Callable[[County], None], reason: ExclusionReason, detail: str
) -> None:
    scenario(county)
    got_reason, got_detail = only_exclusion(run(county))
    assert got_reason is reason
    assert detail in got_detail


def test_a_lost_card_still_counts_before_the_report(county: County) -> None:
    _card_lost(county)
    county.tap("EM:E1", at(date(2024, 6, 2), 11))
    result = run(county)
    assert [ln.day for ln in result.lines] == [date(2024, 6, 2)]
    assert [ex.reason for ex in result.exclusions] == [R.CARD_LOST]


def test_no_policy_before_the_first_version(book: PolicyBook, county: County) -> None:
    county.elder("E1", OLD)
    county.tap("EM:E1", at(date(2023, 12, 5), 11))
    reason, _ = only_exclusion(run(county, Month(2023, 12)))
    assert reason is R.NO_POLICY


def test_repeat_then_the_first_tap_counts(county: County) -> None:
    county.elder("E1", OLD)
    first = county.tap("EM:E1", at(date(2024, 6, 3), 11))
    county.tap("EM:E1", at(date(2024, 6, 3), 11, 1))
    county.tap("EM:E1", at(date(2024, 6, 3), 12), point="P2")  # another point, same meal
    result = run(county)
    assert [ln.tap for ln in result.lines] == [first]
    assert [ex.reason for ex in result.exclusions] == [R.REPEAT, R.REPEAT]


def test_daily_limit_keeps_the_earliest_meals() -> None:
    limited = parse_policies(POLICY_YAML.replace("    max_meals_per_day: 2\n", ""))
    c = County(limited)
    from .conftest import make_points

    c.points.extend(make_points())
    c.elder("E1", OLD)
    lunch = c.tap("EM:E1", at(date(2024, 6, 20), 12))
    c.tap("EM:E1", at(date(2024, 6, 20), 17))
    result = run(c)
    assert [ln.tap for ln in result.lines] == [lunch]
    assert [(ex.reason, ex.meal) for ex in result.exclusions] == [(R.OVER_DAILY_LIMIT, Meal.DINNER)]
    assert "limit 1" in result.exclusions[0].detail


def test_highest_category_sets_the_amount(county: County) -> None:
    county.elder("E1", OLD, categories=(grant(Category.EMPTY_NEST), grant(Category.DIBAO)))
    county.elder("E2", OLD, card="EM:E2", categories=(grant(Category.EMPTY_NEST),))
    county.elder("E3", OLD, card="EM:E3")
    for card in ("EM:E1", "EM:E2", "EM:E3"):
        county.tap(card, at(date(2024, 6, 3), 11))
    result = run(county)
    got = {ln.elder_id: (ln.category, ln.amount) for ln in result.lines}
    assert got == {
        "E1": (Category.DIBAO, Decimal("6.00")),
        "E2": (Category.EMPTY_NEST, Decimal("3.50")),
        "E3": (Category.GENERAL, Decimal("3.00")),
    }


def test_policy_change_mid_month_by_effective_date(county: County) -> None:
    county.elder("E1", OLD)
    county.tap("EM:E1", at(date(2024, 6, 14), 12))  # v1: lunch 3.00
    county.tap("EM:E1", at(date(2024, 6, 14), 17))  # v1 has no dinner window
    county.tap("EM:E1", at(date(2024, 6, 15), 12))  # v2: lunch 4.00
    county.tap("EM:E1", at(date(2024, 6, 15), 17))  # v2: dinner 3.00, two meals a day allowed
    result = run(county)
    assert [(ln.day, ln.meal, ln.amount, ln.policy_version) for ln in result.lines] == [
        (date(2024, 6, 14), Meal.LUNCH, Decimal("3.00"), "v1"),
        (date(2024, 6, 15), Meal.LUNCH, Decimal("4.00"), "v2"),
        (date(2024, 6, 15), Meal.DINNER, Decimal("3.00"), "v2"),
    ]
    assert [(ex.reason, ex.detail) for ex in result.exclusions] == [(R.OUTSIDE_WINDOW, "policy v1")]
    assert [p.version for p in result.policies] == ["v1", "v2"]
    assert result.county.amount == Decimal("10.00")


def test_delivery_after_the_window_counts_a_late_tap_does_not(county: County) -> None:
    county.elder("E1", OLD)
    county.elder("E2", OLD, card="EM:E2")
    county.tap("EM:E1", at(date(2024, 6, 3), 14), kind=DinerKind.DELIVERY)
    county.tap("EM:E2", at(date(2024, 6, 3), 14))
    result = run(county)
    assert [ln.elder_id for ln in result.lines] == ["E1"]
    assert [ex.reason for ex in result.exclusions] == [R.OUTSIDE_WINDOW]


def test_the_edge_meal_label_is_not_trusted(county: County) -> None:
    county.elder("E1", OLD)
    county.taps.append(Tap("P1", "reader1", 99, at(date(2024, 6, 3), 9), "EM:E1", DinerKind.TAP, Meal.LUNCH))
    reason, _ = only_exclusion(run(county))
    assert reason is R.OUTSIDE_WINDOW


def test_local_date_decides_the_month_and_day(county: County) -> None:
    county.elder("E1", OLD)
    # 2024-06-01 03:30 UTC is 11:30 in Shanghai on 1 June; 2024-05-31 16:30 UTC is 00:30 on 1 June.
    county.tap("EM:E1", datetime(2024, 6, 1, 3, 30, tzinfo=UTC))
    county.tap("EM:E1", datetime(2024, 5, 31, 16, 30, tzinfo=UTC))
    result = run(county)
    assert [ln.day for ln in result.lines] == [date(2024, 6, 1)]
    assert [ex.reason for ex in result.exclusions] == [R.OUTSIDE_WINDOW]
    county.tap("EM:E1", datetime(2024, 6, 30, 16, 30, tzinfo=UTC))  # 1 July local
    with pytest.raises(SettlementInputError, match="outside 2024-06"):
        run(county)


def test_totals_per_point_village_township_and_county(county: County) -> None:
    county.elder("E1", OLD, categories=(grant(Category.TEKUN),))
    county.elder("E2", OLD, card="EM:E2")
    county.elder("E3", OLD, card="EM:E3")
    county.tap("EM:E1", at(date(2024, 6, 3), 11), point="P1")  # 8.00
    county.tap("EM:E2", at(date(2024, 6, 3), 11), point="P2")  # 3.00
    county.tap("EM:E3", at(date(2024, 6, 3), 11), point="P3")  # 3.00
    county.tap("EM:E3", at(date(2024, 6, 4), 11), point="P4")  # 3.00
    county.tap("EM:E3", at(date(2024, 6, 4), 11, 30), point="P4")  # repeat
    result = run(county)
    assert result.total(Level.POINT, "P1").amount == Decimal("8.00")
    assert result.total(Level.VILLAGE, "V1").amount == Decimal("11.00")
    assert result.total(Level.VILLAGE, "V1").meals == 2
    assert result.total(Level.TOWNSHIP, "T1").amount == Decimal("14.00")
    assert result.total(Level.TOWNSHIP, "T2").amount == Decimal("3.00")
    assert result.total(Level.TOWNSHIP, "T2").excluded == ((R.REPEAT, 1),)
    assert result.county.amount_due == Decimal("17.00")
    assert result.county.taps == 5
    v1 = result.total(Level.VILLAGE, "V1")
    assert [(c.category, c.meals, c.amount) for c in v1.by_category] == [
        (Category.TEKUN, 1, Decimal("8.00")),
        (Category.GENERAL, 1, Decimal("3.00")),
    ]
    assert (v1.name, v1.township_id) == ("青溪村", "T1")


def test_adjustments_add_to_the_amount_due(county: County) -> None:
    county.elder("E1", OLD)
    county.tap("EM:E1", at(date(2024, 6, 3), 11), point="P1")
    adj = AdjustmentLine(
        origin_month=Month(2024, 5),
        point_id="P3",
        tap_key=("P3", "reader1", 7, at(date(2024, 5, 31), 11)),
        elder_id="E1",
        day=date(2024, 5, 31),
        meal=Meal.LUNCH,
        category_before=None,
        category_after=Category.GENERAL,
        amount_before=Decimal("0.00"),
        amount_after=Decimal("3.00"),
        note="late tap, subsidised",
    )
    result = run(county, adjustments=[adj])
    assert result.total(Level.POINT, "P3").adjustments == Decimal("3.00")
    assert result.total(Level.POINT, "P3").amount == Decimal("0.00")
    assert result.total(Level.TOWNSHIP, "T1").amount_due == Decimal("6.00")
    assert result.county.amount == Decimal("3.00")
    assert result.county.amount_due == Decimal("6.00")
    with pytest.raises(SettlementInputError, match="cannot be paid"):
        run(county, adjustments=[replace(adj, origin_month=JUNE)])


def test_output_does_not_depend_on_input_order(county: County) -> None:
    rng = random.Random(7)
    for i in range(8):
        county.elder(f"E{i}", OLD, card=f"EM:E{i}")
    for d in range(1, 29):
        for i in range(8):
            if rng.random() < 0.7:
                county.tap(
                    f"EM:E{i}", at(date(2024, 6, d), 11, rng.randrange(60)), point=rng.choice(["P1", "P2", "P4"])
                )
    first = run(county)
    args = county.settle_args()
    for key in ("taps", "bindings", "elders", "points"):
        rng.shuffle(args[key])
    second = settle(JUNE, **args)
    assert second.canonical() == first.canonical()
    lines = [(ln.tap.point_id, ln.tap.time) for ln in first.lines]
    assert lines == sorted(lines)


@pytest.mark.parametrize(
    "breaker",
    [
        lambda c: c.taps.append(c.taps[0]),
        lambda c: c.taps.append(Tap("P1", "r", 1, datetime(2024, 6, 3, 11), "EM:E1")),
        lambda c: c.bindings.append(CardBinding("EM:X", "NOBODY", at(date(2024, 1, 1), 0))),
        lambda c: c.bindings.append(CardBinding("EM:E1", "E1", at(date(2024, 1, 1), 0))),
        lambda c: c.elders.append(c.elders[0]),
    ],
    ids=["duplicate tap", "naive time", "binding to unknown elder", "overlapping bindings", "duplicate elder"],
)
def test_inconsistent_inputs_are_refused(county: County, breaker: Callable[[County], None]) -> None:
    county.elder("E1", OLD)
    county.tap("EM:E1", at(date(2024, 6, 3), 11))
    breaker(county)
    with pytest.raises(SettlementInputError):
        run(county)


def test_a_card_rebound_after_replacement_follows_its_bindings(county: County) -> None:
    county.elder("E1", OLD)
    county.elder("E2", OLD, card="EM:E2")
    # EM:E1 belonged to E1 until 10 June, then was reissued to E2.
    county.bindings[0] = CardBinding("EM:E1", "E1", at(date(2020, 1, 1), 0), at(date(2024, 6, 10), 0))
    county.bindings.append(CardBinding("EM:E1", "E2", at(date(2024, 6, 10), 0)))
    county.tap("EM:E1", at(date(2024, 6, 9), 11))
    county.tap("EM:E1", at(date(2024, 6, 10), 11))
    result = run(county)
    assert [ln.elder_id for ln in result.lines] == ["E1", "E2"]


def test_reconcile_catches_a_tampered_total(county: County) -> None:
    county.elder("E1", OLD)
    county.tap("EM:E1", at(date(2024, 6, 3), 11))
    result = run(county)
    bad_totals = tuple(
        replace(t, amount=t.amount + Decimal("1.00")) if t.level is Level.VILLAGE else t for t in result.totals
    )
    tampered = replace(result, totals=bad_totals)
    assert any("village V1" in p for p in tampered.reconcile())
    with pytest.raises(ReconciliationError):
        tampered.check()
    dropped = replace(result, lines=())
    assert any("taps placed" in p for p in dropped.reconcile())


def test_tz_used_is_the_books(county: County) -> None:
    assert county.book.tz == TZ
