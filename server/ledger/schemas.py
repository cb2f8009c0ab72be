"""HTTP shapes of the ledger: strict bodies in, frozen views out."""

from __future__ import annotations

import re
from datetime import date, datetime
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from firmware_bridge.contract.messages import Meal

from .calendar import Area, InspectionKind
from .evidence import Evidence, SensorAlarm

MONTH_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])$"
TEXT = 500


def parse_month(value: str) -> tuple[int, int]:
    """(year, month) of "YYYY-MM"; ValueError otherwise."""
    if not re.match(MONTH_PATTERN, value):
        raise ValueError(f"month must be YYYY-MM, not {value!r}")
    year, month = value.split("-")
    return int(year), int(month)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class Rectification(StrEnum):
    FIXED_AT_ONCE = "fixed_at_once"  # 立即整改
    DEADLINE = "deadline"  # 限期整改


class ItemIn(_In):
    area: Area
    item: str = Field(min_length=1, max_length=100, description="What was checked, e.g. 燃气软管无老化")
    passed: bool
    note: str | None = Field(default=None, max_length=TEXT)


class ProblemIn(_In):
    description: str = Field(min_length=1, max_length=TEXT)
    item_index: int | None = Field(default=None, ge=0, description="Index of the failed item in `items`")
    rectification: Rectification
    deadline: date | None = None
    note: str | None = Field(default=None, max_length=TEXT)

    @model_validator(mode="after")
    def _deadline_matches(self) -> ProblemIn:
        if (self.rectification is Rectification.DEADLINE) != (self.deadline is not None):
            raise ValueError("a deadline is given exactly when the rectification is 'deadline'")
        return self


class SampleIn(_In):
    meal: Meal
    taken_at: AwareDatetime
    dishes: str | None = Field(default=None, max_length=200)


class InspectionCreate(_In):
    """One routine inspection as the inspector reports it."""

    kind: InspectionKind
    inspected_at: AwareDatetime
    inspector_name: str | None = Field(default=None, max_length=64, description="Defaults to the account's name")
    items: list[ItemIn] = Field(min_length=1, max_length=100)
    problems: list[ProblemIn] = Field(default_factory=list, max_length=100)
    samples: list[SampleIn] = Field(default_factory=list, max_length=10)
    note: str | None = Field(default=None, max_length=TEXT)

    @model_validator(mode="after")
    def _consistent(self) -> InspectionCreate:
        for p in self.problems:
            if p.item_index is not None and p.item_index >= len(self.items):
                raise ValueError(f"problem refers to item {p.item_index}, but there are {len(self.items)} items")
        failed = {i for i, item in enumerate(self.items) if not item.passed}
        if failed and not self.problems:
            raise ValueError("failed items need at least one problem with its rectification")
        if self.samples and self.kind is not InspectionKind.DAILY:
            raise ValueError("meal samples are recorded at the daily check")
        return self


class ProblemDone(_In):
    done_at: AwareDatetime
    note: str = Field(min_length=1, max_length=TEXT, description="What was done (整改情况)")


class SampleDisposal(_In):
    disposed_at: AwareDatetime


class ClosureIn(_In):
    day: date
    reason: str = Field(min_length=1, max_length=200)


class ItemOut(_Out):
    position: int
    area: Area
    item: str
    passed: bool
    note: str | None


class ProblemOut(_Out):
    id: int
    inspection_id: int
    point_id: str
    item_position: int | None
    description: str
    rectification: Rectification
    deadline: date | None
    done_at: datetime | None
    done_by: str | None
    done_note: str | None
    overdue: bool = False


class SampleOut(_Out):
    id: int
    inspection_id: int
    point_id: str
    meal: Meal
    dishes: str | None
    taken_at: datetime
    disposed_at: datetime | None
    disposed_by: str | None
    kept_hours: float | None = Field(description="Hours from sampling to disposal")
    kept_long_enough: bool | None = Field(description="Kept for the required hours (None: not disposed yet)")


class InspectionOut(_Out):
    id: int
    point_id: str
    kind: InspectionKind
    period_start: date
    period_end: date
    inspected_at: datetime
    recorded_at: datetime
    inspector: str
    inspector_name: str | None
    inspector_role: str
    note: str | None
    items: list[ItemOut]
    problems: list[ProblemOut]
    samples: list[SampleOut]
    evidence: Evidence


class MissingOut(_Out):
    point_id: str
    point_name: str | None
    village: str | None
    township: str | None
    kind: InspectionKind
    period_start: date
    period_end: date
    responsible_role: str


class ClosureOut(_Out):
    point_id: str
    day: date
    reason: str
    recorded_by: str
    recorded_at: datetime


class AlertClosure(_Out):
    """An alert of the period and how it was closed: acknowledged, confirmed on site, resolved."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    device_id: str
    condition: str
    hazard: str
    peak_severity: str
    state: str
    opened_at: datetime
    cleared_at: datetime | None
    ack_by: str | None
    ack_at: datetime | None
    ack_channel: str | None
    confirmed_by: str | None
    confirmed_at: datetime | None
    confirm_note: str | None
    resolved_at: datetime | None
    resolved_by: str | None


class EvidenceDetail(_Out):
    evidence: Evidence
    sensor_alarms: list[SensorAlarm]
    alerts: list[AlertClosure] | None = Field(description="None: this server has no alert tables yet")
