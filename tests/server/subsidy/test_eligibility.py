"""Eligibility on a meal date: age on the birthday, categories and their validity, residence, status."""

from __future__ import annotations

from datetime import date

import pytest

from server.subsidy.eligibility import (
    CategoryGrant,
    Elder,
    ElderStatus,
    Ineligibility,
    applicable_categories,
    decide,
)
from server.subsidy.errors import SettlementInputError
from server.subsidy.policy import Category, PolicyBook, parse_policies

from .conftest import POLICY_YAML, grant, id_number

C = Category
I = Ineligibility  # noqa: E741

MEAL_DAY = date(2024, 6, 10)


def elder(born: date, **kw: object) -> Elder:
    fields: dict[str, object] = {"elder_id": "E1", "name": "李四", "id_number": id_number(born), "hukou_local": True}
    fields.update(kw)
    return Elder(**fields)  # type: ignore[arg-type]


CASES = [
    # (label, birth date, extra fields, meal date, expected category, expected reason)
    ("70th birthday is the first eligible day", date(1954, 6, 10), {}, MEAL_DAY, C.GENERAL, None),
    ("the day before the 70th birthday", date(1954, 6, 11), {}, MEAL_DAY, None, I.NO_CATEGORY),
    ("well over 70", date(1930, 1, 1), {}, MEAL_DAY, C.GENERAL, None),
    ("29 Feb birthday counts on 1 March", date(1952, 2, 29), {}, date(2022, 3, 1), C.GENERAL, None),
    ("29 Feb birthday not yet on 28 Feb", date(1952, 2, 29), {}, date(2022, 2, 28), None, I.NO_CATEGORY),
    ("低保 at 65 is a special group", date(1959, 1, 1), {"categories": (grant(C.DIBAO),)}, MEAL_DAY, C.DIBAO, None),
    (
        "低保 expired the day before",
        date(1959, 1, 1),
        {"categories": (grant(C.DIBAO, date(2020, 1, 1), date(2024, 6, 9)),)},
        MEAL_DAY,
        None,
        I.NO_CATEGORY,
    ),
    (
        "低保 valid through the meal date (inclusive end)",
        date(1959, 1, 1),
        {"categories": (grant(C.DIBAO, date(2020, 1, 1), MEAL_DAY),)},
        MEAL_DAY,
        C.DIBAO,
        None,
    ),
    (
        "低保 starting the day after",
        date(1959, 1, 1),
        {"categories": (grant(C.DIBAO, date(2024, 6, 11)),)},
        MEAL_DAY,
        None,
        I.NO_CATEGORY,
    ),
    (
        "special group under 60 is not covered",
        date(1970, 1, 1),
        {"categories": (grant(C.TEKUN),)},
        MEAL_DAY,
        None,
        I.NO_CATEGORY,
    ),
    (
        "空巢 is not a special group under 70",
        date(1959, 1, 1),
        {"categories": (grant(C.EMPTY_NEST),)},
        MEAL_DAY,
        None,
        I.NO_CATEGORY,
    ),
    (
        "空巢 over 70 outranks general",
        date(1950, 1, 1),
        {"categories": (grant(C.EMPTY_NEST),)},
        MEAL_DAY,
        C.EMPTY_NEST,
        None,
    ),
    (
        "highest category wins: 特困 over 低保 over 空巢",
        date(1940, 1, 1),
        {"categories": (grant(C.EMPTY_NEST), grant(C.DIBAO), grant(C.TEKUN))},
        MEAL_DAY,
        C.TEKUN,
        None,
    ),
    (
        "an expired higher category does not win",
        date(1940, 1, 1),
        {"categories": (grant(C.TEKUN, date(2020, 1, 1), date(2023, 12, 31)), grant(C.DIBAO))},
        MEAL_DAY,
        C.DIBAO,
        None,
    ),
    ("non-local without residence date", date(1940, 1, 1), {"hukou_local": False}, MEAL_DAY, None, I.NON_LOCAL),
    (
        "long-term resident: exactly 2 years on the meal date",
        date(1940, 1, 1),
        {"hukou_local": False, "resident_since": date(2022, 6, 10)},
        MEAL_DAY,
        C.GENERAL,
        None,
    ),
    (
        "long-term resident: one day short of 2 years",
        date(1940, 1, 1),
        {"hukou_local": False, "resident_since": date(2022, 6, 11)},
        MEAL_DAY,
        None,
        I.NON_LOCAL,
    ),
    (
        "moved away before the meal date",
        date(1940, 1, 1),
        {"status": ElderStatus.MOVED, "status_date": date(2024, 6, 1)},
        MEAL_DAY,
        None,
        I.MOVED,
    ),
    (
        "moving later in the month does not affect earlier meals",
        date(1940, 1, 1),
        {"status": ElderStatus.MOVED, "status_date": date(2024, 6, 11)},
        MEAL_DAY,
        C.GENERAL,
        None,
    ),
    (
        "deceased on the meal date",
        date(1940, 1, 1),
        {"status": ElderStatus.DECEASED, "status_date": MEAL_DAY},
        MEAL_DAY,
        None,
        I.DECEASED,
    ),
    (
        "status is checked before residence",
        date(1940, 1, 1),
        {"hukou_local": False, "status": ElderStatus.DECEASED, "status_date": date(2024, 1, 1)},
        MEAL_DAY,
        None,
        I.DECEASED,
    ),
]


@pytest.mark.parametrize(("label", "born", "extra", "day", "category", "reason"), CASES, ids=[c[0] for c in CASES])
def test_eligibility_table(
    book: PolicyBook,
    label: str,
    born: date,
    extra: dict[str, object],
    day: date,
    category: Category | None,
    reason: Ineligibility | None,
) -> None:
    # The policy of the meal date, or the first version for dates before it (the age rule is the same).
    policy = book.in_force(day) or book.policies[0]
    decision = decide(elder(born, **extra), policy, day)
    assert (decision.category, decision.reason) == (category, reason), decision.detail
    assert decision.eligible is (category is not None)


def test_non_locals_allowed_when_the_policy_says_so() -> None:
    open_book = parse_policies(
        POLICY_YAML.replace(
            "    effective_from: 2024-01-01\n", "    effective_from: 2024-01-01\n    allow_non_local: true\n"
        )
    )
    policy = open_book.in_force(MEAL_DAY)
    assert policy is not None and policy.allow_non_local
    assert decide(elder(date(1940, 1, 1), hukou_local=False), policy, MEAL_DAY).category is C.GENERAL


def test_age_bands_add_categories_without_evidence() -> None:
    text = POLICY_YAML.replace(
        "    effective_from: 2024-01-01\n",
        "    effective_from: 2024-01-01\n    age_bands: [{min_age: 70, category: general}, "
        "{min_age: 80, category: advanced_age}]\n",
    ).replace(
        '      general: {lunch: "3.00"}', '      general: {lunch: "3.00"}\n      advanced_age: {lunch: "4.00"}', 1
    )
    policy = parse_policies(text).in_force(MEAL_DAY)
    assert policy is not None
    assert applicable_categories(elder(date(1944, 6, 10)), policy, MEAL_DAY) == {C.GENERAL, C.ADVANCED_AGE}
    assert decide(elder(date(1944, 6, 10)), policy, MEAL_DAY).category is C.ADVANCED_AGE
    assert decide(elder(date(1944, 6, 11)), policy, MEAL_DAY).category is C.GENERAL


def test_age_comes_from_the_id_number() -> None:
    e = elder(date(1950, 3, 15))
    assert e.birth_date == date(1950, 3, 15)
    assert e.age_on(date(2020, 3, 14)) == 69
    assert e.age_on(date(2020, 3, 15)) == 70


@pytest.mark.parametrize(
    "bad",
    [
        {"id_number": "330127195003150011"},  # wrong check character
        {"id_number": "33012719500315001"},  # 17 characters
        {"status": ElderStatus.DECEASED},  # no status date
    ],
)
def test_bad_elder_records_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(SettlementInputError):
        elder(date(1950, 3, 15), **bad)


def test_a_category_needs_evidence_and_a_sane_range() -> None:
    with pytest.raises(SettlementInputError, match="evidence"):
        CategoryGrant(C.DIBAO, date(2024, 1, 1), "  ")
    with pytest.raises(SettlementInputError, match="before it starts"):
        CategoryGrant(C.DIBAO, date(2024, 1, 1), "民政证明 2024-17", date(2023, 1, 1))
