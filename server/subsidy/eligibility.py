"""Who may have a subsidised meal on a given date, and under which category.

The order of the checks is fixed, so an elder who fails several gets the first reason:
status (moved, deceased) → residence (local, long-term resident, or allowed non-local) → age and
categories. Age is the elder's age on the MEAL date from the birth date in the resident ID number
(a 29 February birthday counts on 1 March in common years). Registered categories count only
while their validity covers the meal date and they carry evidence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum

from firmware_bridge import residentid
from firmware_bridge.errors import ResidentIdError
from server.subsidy.errors import SettlementInputError
from server.subsidy.policy import Category, SubsidyPolicy


class ElderStatus(StrEnum):
    ACTIVE = "active"
    MOVED = "moved"  # moved away: no longer served from status_date
    DECEASED = "deceased"  # from status_date (the date of death) no meal is subsidised


class Ineligibility(StrEnum):
    MOVED = "moved"
    DECEASED = "deceased"
    NON_LOCAL = "non_local"
    NO_CATEGORY = "no_category"  # under the age bands and no valid special-group category


@dataclass(frozen=True, slots=True)
class CategoryGrant:
    """A registered category, backed by evidence (证明材料), valid over an inclusive date range."""

    category: Category
    valid_from: date
    evidence: str
    valid_to: date | None = None

    def __post_init__(self) -> None:
        if not self.evidence.strip():
            raise SettlementInputError(f"category {self.category} needs evidence")
        if self.valid_to is not None and self.valid_to < self.valid_from:
            raise SettlementInputError(f"category {self.category} ends before it starts")

    def covers(self, day: date) -> bool:
        return self.valid_from <= day and (self.valid_to is None or day <= self.valid_to)


@dataclass(frozen=True, slots=True)
class Elder:
    """An elder as the settlement sees one; the ID number must pass the GB 11643 check."""

    elder_id: str
    name: str
    id_number: str
    hukou_local: bool
    resident_since: date | None = None  # non-local hukou: living in the county since this date
    categories: tuple[CategoryGrant, ...] = ()
    status: ElderStatus = ElderStatus.ACTIVE
    status_date: date | None = None  # first day the status applies
    phone: str | None = None
    address: str | None = None
    resident: residentid.ResidentId = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            parsed = residentid.parse(self.id_number)
        except ResidentIdError as exc:
            raise SettlementInputError(f"elder {self.elder_id}: {exc}") from exc
        object.__setattr__(self, "resident", parsed)
        if self.status is not ElderStatus.ACTIVE and self.status_date is None:
            raise SettlementInputError(f"elder {self.elder_id}: status {self.status} needs a status_date")

    @property
    def birth_date(self) -> date:
        return self.resident.birth_date

    def age_on(self, day: date) -> int:
        return self.resident.age_on(day)


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome for one elder on one date under one policy."""

    age: int
    category: Category | None
    reason: Ineligibility | None
    detail: str = ""

    @property
    def eligible(self) -> bool:
        return self.category is not None


def _whole_years(since: date, day: date) -> int:
    before = (day.month, day.day) < (since.month, since.day)
    return day.year - since.year - int(before)


def counts_as_local(elder: Elder, policy: SubsidyPolicy, day: date) -> bool:
    """Local hukou, or a long-term resident of enough years, or any non-local if the policy allows."""
    if elder.hukou_local or policy.allow_non_local:
        return True
    if elder.resident_since is None or elder.resident_since > day:
        return False
    return _whole_years(elder.resident_since, day) >= policy.long_term_min_years


def applicable_categories(elder: Elder, policy: SubsidyPolicy, day: date) -> frozenset[Category]:
    """Priced categories the elder holds on `day`: age bands reached plus valid registered ones."""
    age = elder.age_on(day)
    held = {b.category for b in policy.age_bands if age >= b.min_age}
    registered = {g.category for g in elder.categories if g.covers(day) and g.category in policy.amounts}
    if held:
        held |= registered
    elif age >= policy.special_min_age:
        held = {c for c in registered if c in policy.special_groups}
    return frozenset(held)


def decide(elder: Elder, policy: SubsidyPolicy, day: date) -> Decision:
    """Whether `elder` is subsidised on `day` under `policy`, and under which category."""
    age = elder.age_on(day)
    if elder.status is not ElderStatus.ACTIVE and elder.status_date is not None and day >= elder.status_date:
        reason = Ineligibility.MOVED if elder.status is ElderStatus.MOVED else Ineligibility.DECEASED
        return Decision(age, None, reason, f"{elder.status} since {elder.status_date.isoformat()}")
    if not counts_as_local(elder, policy, day):
        since = elder.resident_since.isoformat() if elder.resident_since else "no residence date"
        return Decision(age, None, Ineligibility.NON_LOCAL, f"non-local hukou ({since})")
    best = policy.best(applicable_categories(elder, policy, day))
    if best is None:
        return Decision(
            age, None, Ineligibility.NO_CATEGORY, f"age {age}, under {policy.lowest_band_age}, no valid special group"
        )
    return Decision(age, best, None)
