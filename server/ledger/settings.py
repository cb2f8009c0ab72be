"""Ledger settings from the environment (YANGYI_LEDGER_*); every default documented here.

    YANGYI_LEDGER_SERVICE_WEEKDAYS   ISO weekdays a meal point serves meals, so a daily check is due,
                                     as JSON: [1,2,3,4,5] (1 = Monday … 7 = Sunday; default every day
                                     [A]); closed days (holidays) are recorded per point through the API
    YANGYI_LEDGER_REQUIRED_AREAS     areas every inspection must cover, as JSON (electricity, gas, food: the
                                     county plan's words for the daily check [S]; the same for the
                                     weekly and monthly checks [A])
    YANGYI_LEDGER_DAILY_REQUIRES_SAMPLE  a daily check records at least one meal sample (留样) (true [A])
    YANGYI_LEDGER_SAMPLE_KEEP_HOURS  meal samples are kept this long before disposal (48 [S])
    YANGYI_LEDGER_BACKFILL_DAYS      an inspection may be entered this many days after it took place (7 [A])
    YANGYI_LEDGER_FUTURE_SKEW_S      tolerated clock difference for inspected_at ahead of the server (300)
    YANGYI_LEDGER_VOLTAGE_LOW_V / _HIGH_V   supply voltage range for the evidence: 198 / 235.4 V
                                     (220 V −10 %/+7 %, GB/T 12325 [S])
"""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .calendar import Area


class LedgerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="YANGYI_LEDGER_", extra="forbid")

    service_weekdays: frozenset[int] = Field(default=frozenset(range(1, 8)), min_length=1)
    required_areas: frozenset[Area] = Field(default=frozenset({Area.ELECTRICITY, Area.GAS, Area.FOOD}))
    daily_requires_sample: bool = True
    sample_keep_hours: float = Field(default=48.0, gt=0)
    backfill_days: int = Field(default=7, ge=0)
    future_skew_s: float = Field(default=300.0, ge=0)
    voltage_low_v: float = Field(default=198.0, gt=0)
    voltage_high_v: float = Field(default=235.4, gt=0)

    @field_validator("service_weekdays")
    @classmethod
    def _iso_weekdays(cls, value: frozenset[int]) -> frozenset[int]:
        if not value <= frozenset(range(1, 8)):
            raise ValueError("ISO weekdays are 1 (Monday) to 7 (Sunday)")
        return value
