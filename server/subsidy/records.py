"""Settlement records: the month, taps, card bindings, places, camera counts, lines and exclusions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from firmware_bridge.contract.messages import DinerKind, Meal
from server.subsidy.errors import SettlementInputError
from server.subsidy.policy import Category


@dataclass(frozen=True, slots=True, order=True)
class Month:
    """A calendar month, written 2024-06."""

    year: int
    month: int

    def __post_init__(self) -> None:
        if not 1 <= self.month <= 12 or not 2000 <= self.year <= 2999:
            raise SettlementInputError(f"not a month: {self.year}-{self.month}")

    @classmethod
    def parse(cls, text: str) -> Month:
        try:
            year, month = text.split("-")
            return cls(int(year), int(month))
        except ValueError as exc:
            raise SettlementInputError(f"not a month (YYYY-MM): {text!r}") from exc

    @classmethod
    def of(cls, day: date) -> Month:
        return cls(day.year, day.month)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def last_day(self) -> date:
        return self.next().first_day - timedelta(days=1)

    def next(self) -> Month:
        return Month(self.year + self.month // 12, self.month % 12 + 1)

    def previous(self) -> Month:
        return Month(self.year - (self.month == 1), (self.month - 2) % 12 + 1)

    def days(self) -> list[date]:
        first = self.first_day
        return [first + timedelta(days=i) for i in range((self.last_day - first).days + 1)]

    def __contains__(self, day: object) -> bool:
        return isinstance(day, date) and (day.year, day.month) == (self.year, self.month)


class ExclusionReason(StrEnum):
    UNKNOWN_POINT = "unknown_point"
    UNKNOWN_CARD = "unknown_card"
    CARD_LOST = "card_lost"
    NO_POLICY = "no_policy"
    OUTSIDE_WINDOW = "outside_window"
    ELDER_MOVED = "elder_moved"
    ELDER_DECEASED = "elder_deceased"
    NOT_ELIGIBLE = "not_eligible"
    REPEAT = "repeat"
    OVER_DAILY_LIMIT = "over_daily_limit"


EXCLUSION_LABELS_ZH = {
    ExclusionReason.UNKNOWN_POINT: "未登记助餐点",
    ExclusionReason.UNKNOWN_CARD: "未登记卡",
    ExclusionReason.CARD_LOST: "已挂失或已补办的卡",
    ExclusionReason.NO_POLICY: "无适用补贴政策",
    ExclusionReason.OUTSIDE_WINDOW: "非补贴就餐时段",
    ExclusionReason.ELDER_MOVED: "老人已迁出",
    ExclusionReason.ELDER_DECEASED: "老人已故",
    ExclusionReason.NOT_ELIGIBLE: "当日不符合补贴条件",
    ExclusionReason.REPEAT: "重复刷卡",
    ExclusionReason.OVER_DAILY_LIMIT: "超过每日补贴餐次",
}

TapKey = tuple[str, str, int, datetime]


@dataclass(frozen=True, slots=True)
class Tap:
    """One diner event as stored: a card tap at the point, or a delivery recorded for an elder."""

    point_id: str
    device_id: str
    seq: int
    time: datetime
    card_id: str
    kind: DinerKind = DinerKind.TAP
    meal: Meal | None = None  # the edge's label; informative only

    @property
    def key(self) -> TapKey:
        return (self.point_id, self.device_id, self.seq, self.time)

    def canonical(self) -> dict[str, Any]:
        return {
            "point": self.point_id,
            "device": self.device_id,
            "seq": self.seq,
            "time": self.time,
            "card": self.card_id,
            "kind": self.kind,
            "meal": self.meal,
        }


class CardState(StrEnum):
    ACTIVE = "active"
    LOST = "lost"  # reported lost (挂失) at state_since
    REPLACED = "replaced"  # superseded by a new card at state_since


@dataclass(frozen=True, slots=True)
class CardBinding:
    """A card bound to an elder over [bound_from, bound_to); lost or replaced from state_since."""

    card_id: str
    elder_id: str
    bound_from: datetime
    bound_to: datetime | None = None
    state: CardState = CardState.ACTIVE
    state_since: datetime | None = None

    def __post_init__(self) -> None:
        if self.state is not CardState.ACTIVE and self.state_since is None:
            raise SettlementInputError(f"card {self.card_id}: state {self.state} needs state_since")
        if self.bound_to is not None and self.bound_to <= self.bound_from:
            raise SettlementInputError(f"card {self.card_id}: binding ends before it starts")

    def covers(self, moment: datetime) -> bool:
        return self.bound_from <= moment and (self.bound_to is None or moment < self.bound_to)

    def canonical(self) -> dict[str, Any]:
        return {
            "card": self.card_id,
            "elder": self.elder_id,
            "from": self.bound_from,
            "to": self.bound_to,
            "state": self.state,
            "since": self.state_since,
        }


@dataclass(frozen=True, slots=True)
class PointPlace:
    """A meal point and the village and township that answer for it."""

    point_id: str
    village_id: str
    township_id: str
    point_name: str = ""
    village_name: str = ""
    township_name: str = ""


@dataclass(frozen=True, slots=True)
class CameraCount:
    """People the camera counted entering a point during one meal slot of one day."""

    point_id: str
    day: date
    meal: Meal
    count: int


@dataclass(frozen=True, slots=True)
class MealLine:
    """A subsidised meal, traced to its tap."""

    tap: Tap
    elder_id: str
    day: date
    meal: Meal
    category: Category
    amount: Decimal
    policy_version: str

    def canonical(self) -> dict[str, Any]:
        return {
            "tap": self.tap.canonical(),
            "elder": self.elder_id,
            "day": self.day,
            "meal": self.meal,
            "category": self.category,
            "amount": self.amount,
            "policy": self.policy_version,
        }


@dataclass(frozen=True, slots=True)
class Exclusion:
    """A tap that earns no subsidy, and why."""

    tap: Tap
    reason: ExclusionReason
    detail: str = ""
    elder_id: str | None = None
    day: date | None = None
    meal: Meal | None = None

    def canonical(self) -> dict[str, Any]:
        return {
            "tap": self.tap.canonical(),
            "reason": self.reason,
            "detail": self.detail,
            "elder": self.elder_id,
            "day": self.day,
            "meal": self.meal,
        }


@dataclass(frozen=True, slots=True)
class AdjustmentLine:
    """A correction to an earlier signed month, paid or recovered in a later month."""

    origin_month: Month
    point_id: str
    tap_key: TapKey
    elder_id: str | None
    day: date | None
    meal: Meal | None
    category_before: Category | None
    category_after: Category | None
    amount_before: Decimal
    amount_after: Decimal
    note: str

    @property
    def delta(self) -> Decimal:
        return self.amount_after - self.amount_before

    def canonical(self) -> dict[str, Any]:
        point, device, seq, time = self.tap_key
        return {
            "origin": str(self.origin_month),
            "point": self.point_id,
            "tap": {"point": point, "device": device, "seq": seq, "time": time},
            "elder": self.elder_id,
            "day": self.day,
            "meal": self.meal,
            "before": {"category": self.category_before, "amount": self.amount_before},
            "after": {"category": self.category_after, "amount": self.amount_after},
            "delta": self.delta,
            "note": self.note,
        }
