"""HTTP bodies of the subsidy API: strict inputs, typed outputs (money as decimal strings, never floats)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from server.subsidy.notice import DonationKind, DonorKind, ServiceType
from server.subsidy.snapshot import MIN_REASON_CHARS


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class PolicyUpload(_In):
    yaml: str = Field(min_length=10, max_length=200_000, description="A policy document as in example_county.yaml")


class PolicyOut(_Out):
    version: str
    effective_from: date
    county: str
    timezone: str
    sha256: str
    added_by: str
    added_at: datetime
    content: dict[str, Any]


class PolicyAddedOut(_Out):
    version: str
    status: str


class RunOut(_Out):
    id: int
    month: date
    method: str
    computed_at: datetime
    computed_by: str
    seconds: float | None
    content_hash: str | None
    taps: int
    meals: int
    amount: Decimal
    adjustments: Decimal
    excluded: int
    anomalies: int


class EventOut(_Out):
    action: str
    revision: int
    content_hash: str
    actor: str
    at: datetime
    reason: str


class MonthOut(_Out):
    month: str
    state: str
    revision: int
    runs: list[RunOut]
    events: list[EventOut]


class SignIn(_In):
    run_id: int = Field(ge=1)


class SignedOut(_Out):
    month: str
    revision: int
    run_id: int
    content_hash: str


class ReopenIn(_In):
    reason: str = Field(min_length=MIN_REASON_CHARS, max_length=1000)


class CorrectionsOut(_Out):
    origin: str
    into: str
    lines: int
    delta: Decimal


class CategoryAmount(_Out):
    category: str
    meals: int
    amount: Decimal


class TotalOut(_Out):
    level: str
    unit_id: str
    name: str
    township_id: int | None
    village_id: int | None
    meals: int
    amount: Decimal
    adjustments: Decimal
    due: Decimal
    taps: int
    excluded: dict[str, int]
    by_category: list[CategoryAmount]


class LineOut(_Out):
    point_id: str
    device_id: str
    seq: int
    tap_time: datetime
    card_id: str
    kind: str
    elder_id: str
    day: date
    meal: str
    category: str
    amount: Decimal
    policy_version: str


class ExclusionOut(_Out):
    point_id: str
    device_id: str
    seq: int
    tap_time: datetime
    card_id: str
    kind: str
    reason: str
    detail: str
    elder_id: str | None
    day: date | None
    meal: str | None


class AnomalyOut(_Out):
    kind: str
    point_id: str
    day: date | None
    meal: str | None
    card_id: str | None
    detail: str
    figures: dict[str, Any]


class ServiceIn(_In):
    day: date
    elder_id: str = Field(min_length=1, max_length=64)
    service: ServiceType
    note: str | None = Field(default=None, max_length=200)


class ServiceOut(_Out):
    id: int
    day: date
    elder_id: str
    village_id: int
    service: str
    note: str | None


class DonationIn(_In):
    donor: str = Field(min_length=1, max_length=100)
    donor_kind: DonorKind
    kind: DonationKind
    day: date
    village_id: int
    amount: Decimal | None = Field(default=None, gt=0, max_digits=12, decimal_places=2)
    goods: str | None = Field(default=None, max_length=200)
    publish_name: bool = False
    anonymous: bool = False

    @model_validator(mode="after")
    def _what(self) -> DonationIn:
        if self.kind is DonationKind.MONEY and self.amount is None:
            raise ValueError("a money donation needs an amount")
        if self.kind is DonationKind.GOODS and not (self.goods or "").strip():
            raise ValueError("a goods donation needs a description")
        if self.kind is DonationKind.GOODS and self.amount is not None:
            raise ValueError("a goods donation has no amount")
        return self


class DonationOut(_Out):
    id: int
    donor: str
    donor_kind: str
    kind: str
    day: date
    village_id: int
    amount: Decimal | None
    goods: str | None
    publish_name: bool
    anonymous: bool


class NoticeOut(_Out):
    month: date
    village_id: int
    village: str
    township: str
    drafted_at: datetime | None
    due_on: date
    published_on: date | None
    status: str


class PublishIn(_In):
    published_on: date | None = None
