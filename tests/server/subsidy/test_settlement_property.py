"""Property (hypothesis): over random months the settlement equals a small reference and every tap lands once.

The months come from months.py: random elders around the age boundaries, categories starting and
ending mid-month, non-locals, moves and deaths, lost and replaced cards, resident ID cards, unknown
cards and points, repeats, deliveries, taps outside the windows, and the policy change of 15 June.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_bridge.contract.messages import DinerKind, Meal
from server.subsidy.eligibility import Elder, ElderStatus
from server.subsidy.policy import Category, PolicyBook, parse_policies
from server.subsidy.settlement import CardBinding, CardState, Level, Month, PointPlace, Tap, settle

from .conftest import POLICY_YAML, TZ
from .months import RandomMonth, months

JUNE = Month(2024, 6)


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


BOOKS = [parse_policies(POLICY_YAML), parse_policies(POLICY_YAML.replace("    max_meals_per_day: 2\n", ""))]


def check_against_reference(month: RandomMonth, book: PolicyBook) -> None:
    """Settle `month` and compare it with the reference tap by tap and level by level."""
    taps, bindings, elders, points = month.taps, month.bindings, month.elders, month.points
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


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(month=months(), one_meal_a_day=st.booleans())
def test_settlement_matches_the_reference_and_reconciles(month: RandomMonth, one_meal_a_day: bool) -> None:
    check_against_reference(month, BOOKS[int(one_meal_a_day)])


def test_the_random_months_reach_every_reason() -> None:
    """The generator is not vacuous: a fixed run of it reaches every exclusion reason and subsidised meals."""
    seen: Counter[str] = Counter()

    @settings(max_examples=150, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(months())
    def collect(month: RandomMonth) -> None:
        for book in BOOKS:
            seen.update(r for r, _, _ in reference(month.taps, month.bindings, month.elders, month.points,
                                                   book).values())

    collect()
    expected = {"counted", "unknown_point", "unknown_card", "card_lost", "outside_window", "elder_moved",
                "elder_deceased", "not_eligible", "repeat", "over_daily_limit"}
    assert expected <= set(seen), seen
