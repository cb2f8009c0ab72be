"""Builders for subsidy tests: valid resident ID numbers, a small county, a two-version policy book."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from firmware_bridge.contract.messages import DinerKind
from firmware_bridge.residentid import check_char
from server.subsidy.eligibility import CategoryGrant, Elder, ElderStatus
from server.subsidy.policy import Category, PolicyBook, parse_policies
from server.subsidy.settlement import CardBinding, CardState, PointPlace, Tap

TZ = ZoneInfo("Asia/Shanghai")

# June 2024: lunch only, general 3.00; from 15 June 2024 also dinner, general 4.00 at lunch.
POLICY_YAML = """
county: 测试县
timezone: Asia/Shanghai
policies:
  - version: v1
    effective_from: 2024-01-01
    meal_windows:
      lunch: {start: "10:30", end: "13:30"}
    amounts:
      tekun: {lunch: "8.00"}
      dibao: {lunch: "6.00"}
      dibao_edge: {lunch: "5.00"}
      disabled: {lunch: "6.00"}
      severe_disability: {lunch: "6.00"}
      family_planning: {lunch: "5.00"}
      youfu: {lunch: "5.00"}
      empty_nest: {lunch: "3.50"}
      general: {lunch: "3.00"}
  - version: v2
    effective_from: 2024-06-15
    max_meals_per_day: 2
    meal_windows:
      lunch: {start: "10:30", end: "13:30"}
      dinner: {start: "16:30", end: "19:00"}
    amounts:
      tekun: {lunch: "10.00", dinner: "9.00"}
      dibao: {lunch: "7.00", dinner: "6.00"}
      dibao_edge: {lunch: "6.00", dinner: "5.00"}
      disabled: {lunch: "7.00", dinner: "6.00"}
      severe_disability: {lunch: "7.00", dinner: "6.00"}
      family_planning: {lunch: "6.00", dinner: "5.00"}
      youfu: {lunch: "6.00", dinner: "5.00"}
      empty_nest: {lunch: "4.50", dinner: "3.50"}
      general: {lunch: "4.00", dinner: "3.00"}
"""


def id_number(born: date, seq: int = 1, region: str = "330127") -> str:
    """A valid GB 11643 number for `born`; seq's parity sets the sex."""
    first17 = f"{region}{born:%Y%m%d}{seq % 1000:03d}"
    return first17 + check_char(first17)


def at(day: date, hh: int, mm: int = 0) -> datetime:
    """A Shanghai-local aware datetime."""
    return datetime.combine(day, time(hh, mm), TZ)


@dataclass
class County:
    """A small county to settle: two townships, three villages, four points, and elders with cards."""

    book: PolicyBook
    points: list[PointPlace] = field(default_factory=list)
    elders: list[Elder] = field(default_factory=list)
    bindings: list[CardBinding] = field(default_factory=list)
    taps: list[Tap] = field(default_factory=list)
    _seq: int = 0

    def elder(
        self,
        elder_id: str,
        born: date,
        *,
        categories: tuple[CategoryGrant, ...] = (),
        hukou_local: bool = True,
        resident_since: date | None = None,
        status: ElderStatus = ElderStatus.ACTIVE,
        status_date: date | None = None,
        card: str | None = None,
        card_state: CardState = CardState.ACTIVE,
        card_state_since: datetime | None = None,
        name: str = "张三明",
        phone: str | None = "13812341234",
    ) -> Elder:
        e = Elder(
            elder_id=elder_id,
            name=name,
            id_number=id_number(born, len(self.elders) + 1),
            hukou_local=hukou_local,
            resident_since=resident_since,
            categories=categories,
            status=status,
            status_date=status_date,
            phone=phone,
            address="浙江省杭州市淳安县千岛湖镇青溪村3组12号",
        )
        self.elders.append(e)
        self.bindings.append(
            CardBinding(
                card or f"EM:{elder_id}",
                elder_id,
                datetime(2020, 1, 1, tzinfo=TZ),
                state=card_state,
                state_since=card_state_since,
            )
        )
        return e

    def tap(self, card: str, when: datetime, point: str = "P1", kind: DinerKind = DinerKind.TAP) -> Tap:
        self._seq += 1
        t = Tap(point, "reader1", self._seq, when, card, kind)
        self.taps.append(t)
        return t

    def settle_args(self) -> dict[str, Any]:
        return {
            "taps": list(self.taps),
            "bindings": list(self.bindings),
            "elders": list(self.elders),
            "points": list(self.points),
            "policies": self.book,
        }


def grant(category: Category, start: date = date(2020, 1, 1), end: date | None = None) -> CategoryGrant:
    return CategoryGrant(category, start, f"evidence-{category}", end)


def make_points() -> list[PointPlace]:
    return [
        PointPlace("P1", "V1", "T1", "青溪助餐点", "青溪村", "千岛湖镇"),
        PointPlace("P2", "V1", "T1", "青溪二组助餐点", "青溪村", "千岛湖镇"),
        PointPlace("P3", "V2", "T1", "桥西助餐点", "桥西村", "千岛湖镇"),
        PointPlace("P4", "V3", "T2", "文昌助餐点", "文昌社区", "文昌镇"),
    ]


@pytest.fixture(scope="session")
def book() -> PolicyBook:
    return parse_policies(POLICY_YAML)


@pytest.fixture
def county(book: PolicyBook) -> County:
    c = County(book)
    c.points.extend(make_points())
    return c


def days_after(start: date, n: int) -> list[date]:
    return [start + timedelta(days=i) for i in range(n)]
