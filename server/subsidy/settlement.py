"""The monthly settlement: a pure calculation from taps, cards, elders, points and policies to money.

Every tap of the month lands in exactly one place: a subsidised `MealLine` or an `Exclusion` with
its reason. Taps are taken in time order (ties by point, device, seq), and each goes through these
checks, the first failing one giving the reason:

    1. unknown_point     the tap's meal point is not in the registry
    2. unknown_card      no binding covers the card at the tap's time
    3. card_lost         the binding was reported lost or replaced before the tap
    4. no_policy         no policy version is in force on the meal date
    5. outside_window    the local time falls in no subsidised meal window
    6. elder_moved / elder_deceased   the elder's status applies on the meal date
    7. not_eligible      non-local, or under the age bands without a valid special group
    8. repeat            the elder already had a tap accepted for this date and meal slot
    9. over_daily_limit  the elder already had max_meals_per_day subsidised meals that date
   10. → subsidised at the amount of the elder's highest-ranked category on the meal date

The meal date and slot come from the tap's time in the county's time zone; the edge's own `meal`
label is a hint and is not trusted for money. Amounts are Decimal yuan with two places. Totals are
kept per meal point, village, township and the county; adjustments carried from an earlier signed
month are added to the amount due, never mixed into the month's meals.
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from firmware_bridge.contract.messages import Meal
from server.subsidy import canonical
from server.subsidy.anomalies import AnomalyFlag, AnomalySettings, find_anomalies
from server.subsidy.eligibility import Decision, Elder, Ineligibility, decide
from server.subsidy.errors import ReconciliationError, SettlementInputError
from server.subsidy.policy import Category, PolicyBook, SubsidyPolicy
from server.subsidy.records import (
    EXCLUSION_LABELS_ZH,
    AdjustmentLine,
    CameraCount,
    CardBinding,
    CardState,
    Exclusion,
    ExclusionReason,
    MealLine,
    Month,
    PointPlace,
    Tap,
    TapKey,
)

__all__ = [
    "EXCLUSION_LABELS_ZH",
    "AdjustmentLine",
    "CameraCount",
    "CardBinding",
    "CardState",
    "CategoryTotal",
    "Exclusion",
    "ExclusionReason",
    "Level",
    "MealLine",
    "Month",
    "PointPlace",
    "Settlement",
    "Tap",
    "TapKey",
    "Total",
    "settle",
]

logger = logging.getLogger(__name__)

ZERO = Decimal("0.00")
MEAL_ORDER = {m: i for i, m in enumerate(Meal)}
CATEGORY_ORDER = {c: i for i, c in enumerate(Category)}


_INELIGIBILITY_REASON = {
    Ineligibility.MOVED: ExclusionReason.ELDER_MOVED,
    Ineligibility.DECEASED: ExclusionReason.ELDER_DECEASED,
    Ineligibility.NON_LOCAL: ExclusionReason.NOT_ELIGIBLE,
    Ineligibility.NO_CATEGORY: ExclusionReason.NOT_ELIGIBLE,
}


class Level(StrEnum):
    POINT = "point"
    VILLAGE = "village"
    TOWNSHIP = "township"
    COUNTY = "county"


LEVEL_ORDER = {lv: i for i, lv in enumerate(Level)}


@dataclass(frozen=True, slots=True)
class CategoryTotal:
    category: Category
    meals: int
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Total:
    """Sums for one meal point, village, township or the county."""

    level: Level
    unit_id: str
    name: str
    township_id: str | None
    village_id: str | None
    by_category: tuple[CategoryTotal, ...]
    meals: int
    amount: Decimal
    adjustments: Decimal
    excluded: tuple[tuple[ExclusionReason, int], ...]
    taps: int

    @property
    def amount_due(self) -> Decimal:
        return self.amount + self.adjustments

    @property
    def excluded_taps(self) -> int:
        return sum(n for _, n in self.excluded)

    def canonical(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "id": self.unit_id,
            "name": self.name,
            "township": self.township_id,
            "village": self.village_id,
            "by_category": [{"category": c.category, "meals": c.meals, "amount": c.amount} for c in self.by_category],
            "meals": self.meals,
            "amount": self.amount,
            "adjustments": self.adjustments,
            "due": self.amount_due,
            "excluded": [{"reason": r, "taps": n} for r, n in self.excluded],
            "taps": self.taps,
        }


@dataclass(frozen=True, slots=True)
class InputsIdentity:
    """What the settlement was computed from: counts and a sha256 of each input set."""

    taps: int
    taps_sha256: str
    bindings_sha256: str
    elders_sha256: str
    points_sha256: str
    camera_sha256: str
    adjustments_sha256: str

    def canonical(self) -> dict[str, Any]:
        return {
            "taps": self.taps,
            "taps_sha256": self.taps_sha256,
            "bindings_sha256": self.bindings_sha256,
            "elders_sha256": self.elders_sha256,
            "points_sha256": self.points_sha256,
            "camera_sha256": self.camera_sha256,
            "adjustments_sha256": self.adjustments_sha256,
        }


@dataclass(frozen=True, slots=True)
class Settlement:
    """The month's result: lines, exclusions, adjustments carried in, totals and anomaly flags."""

    month: Month
    policies: tuple[SubsidyPolicy, ...]
    inputs: InputsIdentity
    lines: tuple[MealLine, ...]
    exclusions: tuple[Exclusion, ...]
    adjustments: tuple[AdjustmentLine, ...]
    totals: tuple[Total, ...]
    anomalies: tuple[AnomalyFlag, ...]
    _by_unit: dict[tuple[Level, str], Total] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_unit.update({(t.level, t.unit_id): t for t in self.totals})

    def total(self, level: Level, unit_id: str = "county") -> Total:
        """The total for one unit (the county's unit id is "county")."""
        return self._by_unit[(level, unit_id)]

    @property
    def county(self) -> Total:
        return self.total(Level.COUNTY)

    def reconcile(self) -> list[str]:
        """Check that every tap is counted once and every level sums to the next; return the problems."""
        problems: list[str] = []
        keys = [ln.tap.key for ln in self.lines] + [ex.tap.key for ex in self.exclusions]
        if len(keys) != self.inputs.taps:
            problems.append(f"{len(keys)} taps placed, {self.inputs.taps} given")
        if len(set(keys)) != len(keys):
            problems.append("a tap is placed twice")
        county = self.county
        line_sum = sum((ln.amount for ln in self.lines), ZERO)
        adj_sum = sum((a.delta for a in self.adjustments), ZERO)
        if (county.amount, county.meals, county.adjustments) != (line_sum, len(self.lines), adj_sum):
            problems.append("county totals differ from the lines")
        if county.excluded_taps != len(self.exclusions) or county.taps != self.inputs.taps:
            problems.append("county exclusion counts differ from the exclusions")
        for level, parent_attr in ((Level.POINT, "village_id"), (Level.VILLAGE, "township_id")):
            children: dict[str | None, list[Total]] = defaultdict(list)
            for t in self.totals:
                if t.level is level:
                    children[getattr(t, parent_attr)].append(t)
            parent_level = Level.VILLAGE if level is Level.POINT else Level.TOWNSHIP
            for parent in (t for t in self.totals if t.level is parent_level):
                kids = children.get(parent.unit_id, [])
                if (
                    sum((k.amount for k in kids), ZERO) != parent.amount
                    or sum(k.meals for k in kids) != parent.meals
                    or sum((k.adjustments for k in kids), ZERO) != parent.adjustments
                    or sum(k.taps for k in kids) != parent.taps
                ):
                    problems.append(f"{parent_level} {parent.unit_id} differs from its {level}s")
        townships = [t for t in self.totals if t.level is Level.TOWNSHIP]
        if sum((t.amount_due for t in townships), ZERO) != county.amount_due:
            problems.append("townships do not sum to the county")
        for t in self.totals:
            if (
                sum(c.meals for c in t.by_category) != t.meals
                or sum((c.amount for c in t.by_category), ZERO) != t.amount
            ):
                problems.append(f"{t.level} {t.unit_id}: categories do not sum to the total")
        return problems

    def check(self) -> None:
        """Raise ReconciliationError if reconcile() finds anything."""
        problems = self.reconcile()
        if problems:
            raise ReconciliationError("; ".join(problems))

    def canonical(self) -> dict[str, Any]:
        """The whole result as JSON-ready data (what the sign-off hash covers)."""
        return {
            "month": str(self.month),
            "policies": [
                {"version": p.version, "sha256": p.content_hash, "content": p.canonical()} for p in self.policies
            ],
            "inputs": self.inputs.canonical(),
            "lines": [ln.canonical() for ln in self.lines],
            "exclusions": [ex.canonical() for ex in self.exclusions],
            "adjustments": [a.canonical() for a in self.adjustments],
            "totals": [t.canonical() for t in self.totals],
            "anomalies": [a.canonical() for a in self.anomalies],
        }


def _tap_order(tap: Tap) -> tuple[datetime, str, str, int, str]:
    return (tap.time, tap.point_id, tap.device_id, tap.seq, tap.card_id)


def _place_order(tap: Tap) -> tuple[str, datetime, str, int]:
    return (tap.point_id, tap.time, tap.device_id, tap.seq)


class _Cards:
    """Bindings indexed by card, newest first, to find the one covering a moment."""

    def __init__(self, bindings: Iterable[CardBinding]) -> None:
        self._by_card: dict[str, list[CardBinding]] = defaultdict(list)
        for b in bindings:
            self._by_card[b.card_id].append(b)
        for card, found in self._by_card.items():
            found.sort(key=lambda b: b.bound_from, reverse=True)
            for newer, older in itertools.pairwise(found):
                if older.bound_to is None or older.bound_to > newer.bound_from:
                    raise SettlementInputError(f"card {card} has overlapping bindings")

    def at(self, card_id: str, moment: datetime) -> CardBinding | None:
        for b in self._by_card.get(card_id, ()):
            if b.covers(moment):
                return b
        return None


def _check_inputs(
    month: Month,
    taps: Sequence[Tap],
    bindings: Sequence[CardBinding],
    elders: dict[str, Elder],
    points: dict[str, PointPlace],
    book: PolicyBook,
    adjustments: Sequence[AdjustmentLine],
) -> None:
    seen: set[TapKey] = set()
    for tap in taps:
        if book.local(tap.time).date() not in month:
            raise SettlementInputError(f"tap {tap.key} falls outside {month}")
        if tap.key in seen:
            raise SettlementInputError(f"tap {tap.key} given twice")
        seen.add(tap.key)
    for b in bindings:
        if b.elder_id not in elders:
            raise SettlementInputError(f"card {b.card_id} is bound to unknown elder {b.elder_id}")
        for moment in (b.bound_from, b.bound_to, b.state_since):
            if moment is not None and moment.tzinfo is None:
                raise SettlementInputError(f"card {b.card_id} has a naive time")
    for a in adjustments:
        if a.point_id not in points:
            raise SettlementInputError(f"adjustment for unknown point {a.point_id}")
        if a.origin_month >= month:
            raise SettlementInputError(f"adjustment from {a.origin_month} cannot be paid in {month}")


class _Acc:
    __slots__ = ("adjustments", "amount", "by_cat", "excluded", "meals", "taps")

    def __init__(self) -> None:
        self.by_cat: dict[Category, list[Any]] = {}
        self.meals = 0
        self.amount = ZERO
        self.adjustments = ZERO
        self.excluded: Counter[ExclusionReason] = Counter()
        self.taps = 0

    def add_line(self, line: MealLine) -> None:
        slot = self.by_cat.setdefault(line.category, [0, ZERO])
        slot[0] += 1
        slot[1] += line.amount
        self.meals += 1
        self.amount += line.amount
        self.taps += 1

    def add_exclusion(self, reason: ExclusionReason) -> None:
        self.excluded[reason] += 1
        self.taps += 1

    def freeze(self, level: Level, unit_id: str, name: str, township: str | None, village: str | None) -> Total:
        cats = tuple(
            CategoryTotal(c, n, amt)
            for c, (n, amt) in sorted(self.by_cat.items(), key=lambda kv: CATEGORY_ORDER[kv[0]])
        )
        excluded = tuple(sorted(self.excluded.items(), key=lambda kv: list(ExclusionReason).index(kv[0])))
        return Total(
            level,
            unit_id,
            name,
            township,
            village,
            cats,
            self.meals,
            self.amount,
            self.adjustments,
            excluded,
            self.taps,
        )


def _totals(
    lines: Sequence[MealLine],
    exclusions: Sequence[Exclusion],
    adjustments: Sequence[AdjustmentLine],
    points: dict[str, PointPlace],
) -> tuple[Total, ...]:
    acc: dict[tuple[Level, str], _Acc] = defaultdict(_Acc)
    unknown: dict[str, str] = {}

    def units(point_id: str) -> list[tuple[Level, str]]:
        place = points.get(point_id)
        if place is None:
            # Taps from a point missing from the registry still count in the county's tap total.
            unknown[point_id] = point_id
            return [(Level.COUNTY, "county")]
        return [
            (Level.POINT, place.point_id),
            (Level.VILLAGE, place.village_id),
            (Level.TOWNSHIP, place.township_id),
            (Level.COUNTY, "county"),
        ]

    for line in lines:
        for unit in units(line.tap.point_id):
            acc[unit].add_line(line)
    for ex in exclusions:
        for unit in units(ex.tap.point_id):
            acc[unit].add_exclusion(ex.reason)
    for adj in adjustments:
        for unit in units(adj.point_id):
            acc[unit].adjustments += adj.delta
    acc[(Level.COUNTY, "county")]  # the county total exists even for an empty month

    villages = {p.village_id: p for p in points.values()}
    townships = {p.township_id: p for p in points.values()}
    out: list[Total] = []
    for (level, unit_id), a in acc.items():
        if level is Level.POINT:
            p = points[unit_id]
            out.append(a.freeze(level, unit_id, p.point_name, p.township_id, p.village_id))
        elif level is Level.VILLAGE:
            p = villages[unit_id]
            out.append(a.freeze(level, unit_id, p.village_name, p.township_id, None))
        elif level is Level.TOWNSHIP:
            p = townships[unit_id]
            out.append(a.freeze(level, unit_id, p.township_name, None, None))
        else:
            out.append(a.freeze(level, unit_id, "", None, None))
    out.sort(key=lambda t: (LEVEL_ORDER[t.level], t.township_id or "", t.village_id or "", t.unit_id))
    return tuple(out)


def settle(
    month: Month,
    *,
    taps: Iterable[Tap],
    bindings: Iterable[CardBinding],
    elders: Iterable[Elder],
    points: Iterable[PointPlace],
    policies: PolicyBook,
    camera_counts: Iterable[CameraCount] = (),
    adjustments: Iterable[AdjustmentLine] = (),
    anomaly_settings: AnomalySettings | None = None,
) -> Settlement:
    """Settle one month: place every tap, sum per point, village, township and county, flag anomalies."""
    tap_list = list(taps)
    for tap in tap_list:
        if tap.time.tzinfo is None:
            raise SettlementInputError(f"tap {tap.key} has a naive time")
    tap_list.sort(key=_tap_order)
    binding_list = list(bindings)
    elder_map: dict[str, Elder] = {}
    for elder in elders:
        if elder.elder_id in elder_map:
            raise SettlementInputError(f"elder {elder.elder_id} given twice")
        elder_map[elder.elder_id] = elder
    point_map: dict[str, PointPlace] = {}
    for place in points:
        if place.point_id in point_map:
            raise SettlementInputError(f"point {place.point_id} given twice")
        point_map[place.point_id] = place
    camera_list = sorted(camera_counts, key=lambda c: (c.point_id, c.day, MEAL_ORDER[c.meal]))
    adjustment_list = sorted(adjustments, key=lambda a: (a.point_id, a.origin_month, a.tap_key))
    _check_inputs(month, tap_list, binding_list, elder_map, point_map, policies, adjustment_list)
    cards = _Cards(binding_list)

    lines: list[MealLine] = []
    exclusions: list[Exclusion] = []
    decisions: dict[tuple[str, date, str], Decision] = {}
    accepted_slots: set[tuple[str, date, Meal]] = set()
    meals_per_day: Counter[tuple[str, date]] = Counter()
    used_policies: dict[str, SubsidyPolicy] = {}

    for tap in tap_list:
        day = policies.local(tap.time).date()
        if tap.point_id not in point_map:
            exclusions.append(Exclusion(tap, ExclusionReason.UNKNOWN_POINT, day=day))
            continue
        binding = cards.at(tap.card_id, tap.time)
        if binding is None:
            exclusions.append(Exclusion(tap, ExclusionReason.UNKNOWN_CARD, "no binding at that time", day=day))
            continue
        elder_id = binding.elder_id
        if (
            binding.state is not CardState.ACTIVE
            and binding.state_since is not None
            and tap.time >= binding.state_since
        ):
            detail = f"{binding.state} since {canonical.instant(binding.state_since)}"
            exclusions.append(Exclusion(tap, ExclusionReason.CARD_LOST, detail, elder_id, day))
            continue
        policy = policies.in_force(day)
        if policy is None:
            exclusions.append(Exclusion(tap, ExclusionReason.NO_POLICY, "", elder_id, day))
            continue
        meal = policy.meal_at(policies.local(tap.time).time(), tap.kind)
        if meal is None:
            exclusions.append(Exclusion(tap, ExclusionReason.OUTSIDE_WINDOW, f"policy {policy.version}", elder_id, day))
            continue
        key = (elder_id, day, policy.version)
        decision = decisions.get(key)
        if decision is None:
            decision = decide(elder_map[elder_id], policy, day)
            decisions[key] = decision
        if decision.category is None:
            reason = _INELIGIBILITY_REASON[decision.reason or Ineligibility.NO_CATEGORY]
            exclusions.append(Exclusion(tap, reason, decision.detail, elder_id, day, meal))
            continue
        if (elder_id, day, meal) in accepted_slots:
            exclusions.append(Exclusion(tap, ExclusionReason.REPEAT, "", elder_id, day, meal))
            continue
        accepted_slots.add((elder_id, day, meal))
        if meals_per_day[(elder_id, day)] >= policy.max_meals_per_day:
            detail = f"limit {policy.max_meals_per_day} per day"
            exclusions.append(Exclusion(tap, ExclusionReason.OVER_DAILY_LIMIT, detail, elder_id, day, meal))
            continue
        meals_per_day[(elder_id, day)] += 1
        used_policies[policy.version] = policy
        amount = policy.amount(decision.category, meal)
        lines.append(MealLine(tap, elder_id, day, meal, decision.category, amount, policy.version))

    lines.sort(key=lambda ln: _place_order(ln.tap))
    exclusions.sort(key=lambda ex: _place_order(ex.tap))
    for d in month.days():
        in_force = policies.in_force(d)
        if in_force is not None:
            used_policies[in_force.version] = in_force
    applied = tuple(sorted(used_policies.values(), key=lambda p: p.effective_from))
    identity = InputsIdentity(
        taps=len(tap_list),
        taps_sha256=canonical.sha256_records(t.canonical() for t in tap_list),
        bindings_sha256=canonical.sha256_records(
            b.canonical() for b in sorted(binding_list, key=lambda b: (b.card_id, b.bound_from))
        ),
        elders_sha256=canonical.sha256_records(_elder_canonical(elder_map[k]) for k in sorted(elder_map)),
        points_sha256=canonical.sha256_records(_point_canonical(point_map[k]) for k in sorted(point_map)),
        camera_sha256=canonical.sha256_records(
            {"point": c.point_id, "day": c.day, "meal": c.meal, "count": c.count} for c in camera_list
        ),
        adjustments_sha256=canonical.sha256_records(a.canonical() for a in adjustment_list),
    )
    flags = find_anomalies(
        tap_list,
        lines,
        exclusions,
        camera_list,
        tz=policies.tz,
        month_last_day=month.last_day,
        settings=anomaly_settings or AnomalySettings(),
    )
    result = Settlement(
        month=month,
        policies=applied,
        inputs=identity,
        lines=tuple(lines),
        exclusions=tuple(exclusions),
        adjustments=tuple(adjustment_list),
        totals=_totals(lines, exclusions, adjustment_list, point_map),
        anomalies=flags,
    )
    logger.info(
        "settled %s: %d taps, %d subsidised meals, %s yuan, %d excluded, %d flags",
        month,
        len(tap_list),
        len(lines),
        result.county.amount_due,
        len(exclusions),
        len(flags),
    )
    return result


def _elder_canonical(e: Elder) -> dict[str, Any]:
    return {
        "id": e.elder_id,
        "name": e.name,
        "id_number": e.id_number,
        "hukou_local": e.hukou_local,
        "resident_since": e.resident_since,
        "categories": [
            {"category": g.category, "from": g.valid_from, "to": g.valid_to, "evidence": g.evidence}
            for g in sorted(e.categories, key=lambda g: (g.category, g.valid_from))
        ],
        "status": e.status,
        "status_date": e.status_date,
    }


def _point_canonical(p: PointPlace) -> dict[str, Any]:
    return {
        "point": p.point_id,
        "village": p.village_id,
        "township": p.township_id,
        "names": [p.point_name, p.village_name, p.township_name],
    }
