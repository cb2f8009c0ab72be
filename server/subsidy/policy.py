"""Versioned meal-subsidy policies with effective dates, loaded from strict YAML.

A policy file (see example_county.yaml next to this module) holds the county's name, its time zone
and one or more policy versions. The version in force on a meal date is the one with the latest
`effective_from` on or before that date; a settlement records the versions it used, with their
content and hash, so editing a policy later never changes a signed month.

Rules a policy version encodes, each a setting (defaults and their standing, [S] stated by a rule,
[A] our assumption — the county's to change):

- age_bands: elders at or above `min_age` on the meal date hold the band's category without
  evidence (the ID number is the evidence). Default one band, 70 → general. [S: county plan]
- special_groups: registered categories that admit elders under the lowest band, from
  `special_min_age` (default 60, the statutory 老年人 age); a group admits only if it is priced.
  Default 特困, 低保, 低保边缘, 失能, 重残, 计生特扶/失独, 优抚 — not 空巢/独居 or 高龄/百岁, which
  need the age band anyway. [A]
- locals only unless `allow_non_local`; a non-local registered as living in the county since a date
  counts as local after `long_term_min_years` whole years (default 2). [S: county plan; years A]
- amounts: yuan per meal for each category and each subsidised meal slot (every category listed
  must price every slot in meal_windows). [A: amounts]
- category_ranking: when an elder holds several categories, the first in this list wins and sets
  the amount. Default (hardship first, then care need, then merit groups, then age and living
  situation) [A]: 特困/三无 > 低保 > 重残 > 失能 > 低保边缘 > 计生特扶/失独 > 优抚 > 高龄/百岁 >
  空巢/独居 > general.
- meal_windows: local start (inclusive) and end (exclusive) of each subsidised meal slot; a tap
  outside every window is not subsidised. Deliveries may be recorded up to `delivery_extra_minutes`
  (default 60) after a window closes. [A]
- max_meals_per_day: subsidised meals per elder per day, the earliest taps first (default 1). [S]
- meal_prices and min_meal_price (optional, together): the elder always pays at least
  min_meal_price, so a meal's subsidy is capped at meal_price − min_meal_price. [A: reading]

Times in YAML must be quoted ("10:30"): YAML 1.1 reads 10:30 as the number 630. Money is written
as a string or an integer ("5.00", 5), never a float, and has at most two decimal places.
"""

from __future__ import annotations

import itertools
import json
from bisect import bisect_right
from collections.abc import Mapping
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from firmware_bridge.contract.messages import DinerKind, Meal
from server.subsidy import canonical
from server.subsidy.errors import PolicyError

CENT = Decimal("0.01")
EXAMPLE_POLICY_FILE = Path(__file__).with_name("example_county.yaml")


class Category(StrEnum):
    """Groups of elders a policy may subsidise; the declaration order is the default ranking."""

    TEKUN = "tekun"  # 特困 / 三无
    DIBAO = "dibao"  # 低保
    SEVERE_DISABILITY = "severe_disability"  # 重残
    DISABLED = "disabled"  # 失能
    DIBAO_EDGE = "dibao_edge"  # 低保边缘
    FAMILY_PLANNING = "family_planning"  # 计生特扶 / 失独
    YOUFU = "youfu"  # 优抚
    ADVANCED_AGE = "advanced_age"  # 高龄 / 百岁
    EMPTY_NEST = "empty_nest"  # 空巢 / 独居
    GENERAL = "general"  # age alone


CATEGORY_LABELS_ZH: Mapping[Category, str] = {
    Category.TEKUN: "特困/三无",
    Category.DIBAO: "低保",
    Category.SEVERE_DISABILITY: "重残",
    Category.DISABLED: "失能",
    Category.DIBAO_EDGE: "低保边缘",
    Category.FAMILY_PLANNING: "计生特扶/失独",
    Category.YOUFU: "优抚",
    Category.ADVANCED_AGE: "高龄/百岁",
    Category.EMPTY_NEST: "空巢/独居",
    Category.GENERAL: "普通老年人",
}

DEFAULT_RANKING: tuple[Category, ...] = tuple(Category)
DEFAULT_SPECIAL_GROUPS: tuple[Category, ...] = (
    Category.TEKUN,
    Category.DIBAO,
    Category.DIBAO_EDGE,
    Category.DISABLED,
    Category.SEVERE_DISABILITY,
    Category.FAMILY_PLANNING,
    Category.YOUFU,
)


def _money(value: Any) -> Decimal:
    if isinstance(value, (float, bool)):
        raise ValueError("write money as a string or an integer ('5.00'), never a float")
    if isinstance(value, int):
        value = Decimal(value)
    if isinstance(value, str):
        try:
            value = Decimal(value.strip())
        except InvalidOperation as exc:
            raise ValueError(f"not an amount: {value!r}") from exc
    if not isinstance(value, Decimal) or not value.is_finite():
        raise ValueError(f"not an amount: {value!r}")
    if value != value.quantize(CENT):
        raise ValueError(f"at most two decimal places: {value}")
    if value < 0:
        raise ValueError(f"negative amount: {value}")
    return value.quantize(CENT)


def _local_time(value: Any) -> time:
    if isinstance(value, time):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError("quote times in YAML ('10:30'): unquoted, YAML reads 10:30 as a number")
    if isinstance(value, str):
        try:
            return time.fromisoformat(value.strip())
        except ValueError as exc:
            raise ValueError(f"not a time of day: {value!r}") from exc
    raise ValueError(f"not a time of day: {value!r}")


Money = Annotated[Decimal, BeforeValidator(_money)]
LocalTime = Annotated[time, BeforeValidator(_local_time)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class MealWindow(_Strict):
    start: LocalTime
    end: LocalTime = Field(description="Exclusive")

    @model_validator(mode="after")
    def _ordered(self) -> MealWindow:
        if self.start >= self.end:
            raise ValueError(f"window start {self.start} is not before its end {self.end}")
        return self


class AgeBand(_Strict):
    min_age: int = Field(ge=0, le=150)
    category: Category


def _minutes(t: time) -> int:
    return t.hour * 60 + t.minute


class SubsidyPolicy(_Strict):
    """One version of the county's meal-subsidy rules, in force from `effective_from`."""

    version: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    effective_from: date
    title: str = Field(default="", max_length=200)
    age_bands: tuple[AgeBand, ...] = Field(default=(AgeBand(min_age=70, category=Category.GENERAL),), min_length=1)
    special_groups: tuple[Category, ...] = DEFAULT_SPECIAL_GROUPS
    special_min_age: int = Field(default=60, ge=0, le=150)
    allow_non_local: bool = False
    long_term_min_years: int = Field(default=2, ge=0, le=100)
    category_ranking: tuple[Category, ...] = DEFAULT_RANKING
    meal_windows: dict[Meal, MealWindow] = Field(min_length=1)
    delivery_extra_minutes: int = Field(default=60, ge=0, le=720)
    amounts: dict[Category, dict[Meal, Money]] = Field(min_length=1)
    max_meals_per_day: int = Field(default=1, ge=1, le=3)
    meal_prices: dict[Meal, Money] | None = None
    min_meal_price: Money | None = None

    @model_validator(mode="after")
    def _consistent(self) -> SubsidyPolicy:
        if len(set(self.category_ranking)) != len(self.category_ranking):
            raise ValueError("category_ranking lists a category twice")
        unranked = set(self.amounts) - set(self.category_ranking)
        if unranked:
            raise ValueError(f"categories with amounts but no rank: {sorted(str(c) for c in unranked)}")
        slots = set(self.meal_windows)
        for category, by_meal in self.amounts.items():
            if set(by_meal) != slots:
                raise ValueError(f"amounts for {category} must price exactly the meal slots {sorted(map(str, slots))}")
            if any(a <= 0 for a in by_meal.values()):
                raise ValueError(f"amounts for {category} must be above zero (leave a slot out instead)")
        for band in self.age_bands:
            if band.category not in self.amounts:
                raise ValueError(f"age band {band.min_age}+ names {band.category}, which has no amounts")
        windows = sorted(self.meal_windows.values(), key=lambda w: w.start)
        for a, b in itertools.pairwise(windows):
            if a.end > b.start:
                raise ValueError(f"meal windows overlap: {a.start}-{a.end} and {b.start}-{b.end}")
        if (self.meal_prices is None) != (self.min_meal_price is None):
            raise ValueError("meal_prices and min_meal_price go together")
        if self.meal_prices is not None and self.min_meal_price is not None:
            if set(self.meal_prices) != slots:
                raise ValueError(f"meal_prices must price exactly the meal slots {sorted(map(str, slots))}")
            for meal, price in self.meal_prices.items():
                if price <= self.min_meal_price:
                    raise ValueError(f"meal price for {meal} is not above min_meal_price")
        return self

    @cached_property
    def lowest_band_age(self) -> int:
        return min(b.min_age for b in self.age_bands)

    @cached_property
    def _rank(self) -> dict[Category, int]:
        return {c: i for i, c in enumerate(self.category_ranking)}

    def rank(self, category: Category) -> int:
        """Position of `category` in the ranking (0 is the highest)."""
        return self._rank[category]

    def best(self, categories: set[Category] | frozenset[Category]) -> Category | None:
        """The highest-ranked subsidised category among `categories`."""
        priced = [c for c in categories if c in self.amounts]
        return min(priced, key=self.rank) if priced else None

    def amount(self, category: Category, meal: Meal) -> Decimal:
        """Subsidy in yuan for one meal of `category` in slot `meal`, after the minimum-price cap."""
        amount = self.amounts[category][meal]
        if self.meal_prices is not None and self.min_meal_price is not None:
            amount = min(amount, self.meal_prices[meal] - self.min_meal_price)
        return amount

    def meal_at(self, local: time, kind: DinerKind = DinerKind.TAP) -> Meal | None:
        """The subsidised meal slot a tap at local time `local` belongs to, or None."""
        minute = _minutes(local) + local.second / 60
        for meal, window in self.meal_windows.items():
            if _minutes(window.start) <= minute < _minutes(window.end):
                return meal
        if kind is DinerKind.DELIVERY and self.delivery_extra_minutes:
            # Deliveries are often recorded after the window, when the meal reaches the door.
            for meal, window in sorted(self.meal_windows.items(), key=lambda kv: kv[1].start, reverse=True):
                end = _minutes(window.end)
                if end <= minute < end + self.delivery_extra_minutes:
                    return meal
        return None

    def canonical(self) -> dict[str, Any]:
        """The policy's content as plain JSON-ready data (what a snapshot stores)."""
        data: dict[str, Any] = self.model_dump(mode="json")
        return data

    @cached_property
    def content_hash(self) -> str:
        return canonical.sha256_hex(self.canonical())


class PolicyBook(_Strict):
    """A county's policy versions; `in_force(day)` chooses by effective date."""

    county: str = Field(min_length=1, max_length=100)
    timezone: str = "Asia/Shanghai"
    policies: tuple[SubsidyPolicy, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _ordered(self) -> PolicyBook:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {self.timezone!r}") from exc
        versions = [p.version for p in self.policies]
        if len(set(versions)) != len(versions):
            raise ValueError("two policies share a version name")
        starts = [p.effective_from for p in self.policies]
        if len(set(starts)) != len(starts):
            raise ValueError("two policies share an effective_from date")
        if starts != sorted(starts):
            raise ValueError("list policies in order of effective_from")
        return self

    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @cached_property
    def _starts(self) -> list[date]:
        return [p.effective_from for p in self.policies]

    def in_force(self, day: date) -> SubsidyPolicy | None:
        """The policy version in force on `day`, or None before the first one."""
        i = bisect_right(self._starts, day)
        return self.policies[i - 1] if i else None

    def local(self, moment: datetime) -> datetime:
        """`moment` (timezone-aware) in the county's local time."""
        return moment.astimezone(self.tz)

    def next_change_after(self, day: date) -> date | None:
        """The first effective date after `day`, if any (useful to split a month)."""
        i = bisect_right(self._starts, day)
        return self._starts[i] if i < len(self._starts) else None


def _format_errors(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"]) or "(top)"
        lines.append(f"{path}: {err['msg']}")
    return "; ".join(lines)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, date | time | datetime):
        return obj.isoformat()
    raise TypeError(f"cannot read {type(obj).__name__} in a policy file")


def parse_policies(text: str, source: str = "<policy>") -> PolicyBook:
    """Parse and validate policy YAML text; raise PolicyError naming each bad key path."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise PolicyError(f"{source}: the top level must be a mapping")
    try:
        # Through JSON so strict mode reads enums and dates from their text, as in an HTTP body.
        payload = json.dumps(data, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise PolicyError(f"{source}: {exc}") from exc
    try:
        return PolicyBook.model_validate_json(payload)
    except ValidationError as exc:
        raise PolicyError(f"{source}: {_format_errors(exc)}") from exc


def load_policies(path: Path | str) -> PolicyBook:
    """Read and validate a policy file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"cannot read {path}: {exc}") from exc
    return parse_policies(text, str(path))
