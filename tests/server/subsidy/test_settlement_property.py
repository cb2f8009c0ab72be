"""Property: over random months the settlement equals a small reference and every tap lands exactly once.

Random months have random elders (ages around the 60 and 70 boundaries, birthdays inside the month,
categories starting and ending mid-month, non-locals with and without long residence, moves and
deaths), lost and replaced cards, unknown cards and points, repeats, deliveries, taps outside the
windows, and the policy change of 15 June. Seeded: each seed is one reproducible month.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from datetime import date, datetime, time, timedelta
from decimal import Decimal

import pytest

from firmware_bridge.contract.messages import DinerKind, Meal
from server.subsidy.eligibility import CategoryGrant, Elder, ElderStatus
from server.subsidy.policy import Category, PolicyBook, parse_policies
from server.subsidy.settlement import CardBinding, CardState, Level, Month, PointPlace, Tap, settle

from .conftest import POLICY_YAML, TZ, id_number, make_points

JUNE = Month(2024, 6)
SEEDS = range(150)


def reference(
    taps: list[Tap],
    bindings: list[CardBinding],
    elders: list[Elder],
    points: list[PointPlace],
    book: PolicyBook,
) -> dict[tuple[str, str, int, datetime], tuple[str, Category | None, Decimal]]:
    """Tap key → (reason or 'counted', category, amount): the rules written out plainly, one tap at a time."""
    by_id = {e.elder_id: e for e in elders}
    point_ids = {p.point_id for p in points}
    accepted: set[tuple[str, date, Meal]] = set()
    counted: Counter[tuple[str, date]] = Counter()
    out: dict[tuple[str, str, int, datetime], tuple[str, Category | None, Decimal]] = {}
    for t in sorted(taps, key=lambda t: (t.time, t.point_id, t.device_id, t.seq, t.card_id)):
        local = t.time.astimezone(TZ)
        day = local.date()

        def put(reason: str, category: Category | None = None, amount: Decimal = Decimal("0.00")) -> None:
            out[t.key] = (reason, category, amount)  # noqa: B023

        if t.point_id not in point_ids:
            put("unknown_point")
            continue
        found = [
            b
            for b in bindings
            if b.card_id == t.card_id and b.bound_from <= t.time and (b.bound_to is None or t.time < b.bound_to)
        ]
        if not found:
            put("unknown_card")
            continue
        b = found[0]
        if b.state is not CardState.ACTIVE and b.state_since is not None and t.time >= b.state_since:
            put("card_lost")
            continue
        versions = [p for p in book.policies if p.effective_from <= day]
        if not versions:
            put("no_policy")
            continue
        policy = versions[-1]
        meal = None
        clock = local.time()
        for m, w in policy.meal_windows.items():
            if w.start <= clock < w.end:
                meal = m
        if meal is None and t.kind is DinerKind.DELIVERY:
            for m, w in policy.meal_windows.items():
                end = datetime.combine(day, w.end)
                if end <= datetime.combine(day, clock) < end + timedelta(minutes=policy.delivery_extra_minutes):
                    meal = m
        if meal is None:
            put("outside_window")
            continue
        e = by_id[b.elder_id]
        if e.status is ElderStatus.MOVED and e.status_date is not None and day >= e.status_date:
            put("elder_moved")
            continue
        if e.status is ElderStatus.DECEASED and e.status_date is not None and day >= e.status_date:
            put("elder_deceased")
            continue
        born = e.birth_date
        age = day.year - born.year - ((day.month, day.day) < (born.month, born.day))
        local_enough = e.hukou_local or (
            e.resident_since is not None
            and e.resident_since <= day
            and day.year
            - e.resident_since.year
            - ((day.month, day.day) < (e.resident_since.month, e.resident_since.day))
            >= policy.long_term_min_years
        )
        if not local_enough:
            put("not_eligible")
            continue
        valid = {g.category for g in e.categories if g.valid_from <= day and (g.valid_to is None or day <= g.valid_to)}
        valid &= set(policy.amounts)
        if age >= 70:
            held = valid | {Category.GENERAL}
        elif age >= 60:
            held = valid & set(policy.special_groups)
        else:
            held = set()
        if not held:
            put("not_eligible")
            continue
        best = sorted(held, key=policy.category_ranking.index)[0]
        if (e.elder_id, day, meal) in accepted:
            put("repeat")
            continue
        accepted.add((e.elder_id, day, meal))
        if counted[(e.elder_id, day)] >= policy.max_meals_per_day:
            put("over_daily_limit")
            continue
        counted[(e.elder_id, day)] += 1
        put("counted", best, policy.amounts[best][meal])
    return out


def random_month(rng: random.Random) -> tuple[list[Tap], list[CardBinding], list[Elder], list[PointPlace]]:
    first = date(2024, 6, 1)
    points = make_points()
    elders: list[Elder] = []
    bindings: list[CardBinding] = []
    for i in range(rng.randint(1, 14)):
        age_on_first = rng.choice([55, 59, 60, 64, 69, 69, 70, 75, 90])
        born = date(2024 - age_on_first, 6, 1) - timedelta(days=rng.randint(0, 364))
        grants = []
        for _ in range(rng.choice([0, 0, 1, 2])):
            start = first + timedelta(days=rng.randint(-40, 25))
            end = None if rng.random() < 0.5 else start + timedelta(days=rng.randint(0, 40))
            grants.append(CategoryGrant(rng.choice(list(Category)), start, "证明", end))
        status, status_date = ElderStatus.ACTIVE, None
        if rng.random() < 0.15:
            status = rng.choice([ElderStatus.MOVED, ElderStatus.DECEASED])
            status_date = first + timedelta(days=rng.randint(0, 29))
        hukou_local = rng.random() < 0.8
        since = None if hukou_local or rng.random() < 0.3 else date(2022, 6, 1) + timedelta(days=rng.randint(-30, 30))
        elders.append(
            Elder(f"E{i}", "王小明", id_number(born, i), hukou_local, since, tuple(grants), status, status_date)
        )
        bound = datetime(2020, 1, 1, tzinfo=TZ)
        if rng.random() < 0.15:
            # Lost mid-month and replaced by a new card the next day.
            lost = datetime.combine(first + timedelta(days=rng.randint(0, 28)), time(rng.randint(0, 23)), TZ)
            bindings.append(CardBinding(f"C{i}", f"E{i}", bound, state=CardState.LOST, state_since=lost))
            bindings.append(CardBinding(f"C{i}b", f"E{i}", lost + timedelta(days=1)))
        else:
            bindings.append(CardBinding(f"C{i}", f"E{i}", bound))
    cards = [b.card_id for b in bindings] + ["UNKNOWN"]
    taps: list[Tap] = []
    for seq in range(rng.randint(0, 300)):
        day = first + timedelta(days=rng.randint(0, 29))
        moment = datetime.combine(
            day, time(rng.choice([9, 10, 11, 12, 13, 14, 16, 17, 18, 19]), rng.randint(0, 59)), TZ
        )
        point = rng.choice(["P1", "P2", "P3", "P4", "P4", "P9"] if rng.random() < 0.05 else ["P1", "P2", "P3", "P4"])
        kind = DinerKind.DELIVERY if rng.random() < 0.1 else DinerKind.TAP
        taps.append(Tap(point, rng.choice(["r1", "r2"]), seq, moment, rng.choice(cards), kind))
        if rng.random() < 0.1:  # a double tap
            taps.append(Tap(point, "r1", 10_000 + seq, moment + timedelta(seconds=20), taps[-1].card_id, kind))
    return taps, bindings, elders, points


@pytest.fixture(scope="module")
def books() -> list[PolicyBook]:
    return [parse_policies(POLICY_YAML), parse_policies(POLICY_YAML.replace("    max_meals_per_day: 2\n", ""))]


@pytest.mark.parametrize("seed", SEEDS)
def test_settlement_matches_the_reference_and_reconciles(seed: int, books: list[PolicyBook]) -> None:
    rng = random.Random(seed)
    book = books[seed % 2]
    taps, bindings, elders, points = random_month(rng)
    result = settle(JUNE, taps=taps, bindings=bindings, elders=elders, points=points, policies=book)

    # Every tap is placed exactly once.
    placed = [ln.tap.key for ln in result.lines] + [ex.tap.key for ex in result.exclusions]
    assert sorted(placed, key=str) == sorted((t.key for t in taps), key=str)
    assert result.reconcile() == []

    # The same decision, category and amount as the reference, tap by tap.
    expected = reference(taps, bindings, elders, points, book)
    got: dict[tuple[str, str, int, datetime], tuple[str, Category | None, Decimal]] = {
        ln.tap.key: ("counted", ln.category, ln.amount) for ln in result.lines
    }
    got.update({ex.tap.key: (str(ex.reason), None, Decimal("0.00")) for ex in result.exclusions})
    assert got == expected

    # Sums match at every level, from the lines up.
    by_point: dict[str, Decimal] = defaultdict(lambda: Decimal("0.00"))
    for ln in result.lines:
        by_point[ln.tap.point_id] += ln.amount
    place = {p.point_id: p for p in points}
    for t in result.totals:
        if t.level is Level.POINT:
            assert t.amount == by_point[t.unit_id]
        elif t.level is Level.VILLAGE:
            assert t.amount == sum((a for p, a in by_point.items() if place[p].village_id == t.unit_id), Decimal())
        elif t.level is Level.TOWNSHIP:
            assert t.amount == sum((a for p, a in by_point.items() if place[p].township_id == t.unit_id), Decimal())
    assert result.county.amount == sum(by_point.values(), Decimal("0.00"))
    assert result.county.taps == len(taps)
    reasons = Counter(ex.reason for ex in result.exclusions)
    assert dict(result.county.excluded) == dict(reasons)


def test_the_random_months_exercise_every_reason(books: list[PolicyBook]) -> None:
    seen: Counter[str] = Counter()
    for seed in SEEDS:
        rng = random.Random(seed)
        taps, bindings, elders, points = random_month(rng)
        book = books[seed % 2]
        seen.update(r for r, _, _ in reference(taps, bindings, elders, points, book).values())
    expected = {
        "counted",
        "unknown_point",
        "unknown_card",
        "card_lost",
        "outside_window",
        "elder_moved",
        "elder_deceased",
        "not_eligible",
        "repeat",
        "over_daily_limit",
    }
    assert expected <= set(seen), seen
