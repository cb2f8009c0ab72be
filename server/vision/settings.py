"""Camera cross-check settings from the environment (YANGYI_VISION_*).

    YANGYI_VISION_MIN_EXCESS     check-ins above camera entries by more than this … (2)
    YANGYI_VISION_EXCESS_RATIO   … and by more than this share of the entries (0.10)
    YANGYI_VISION_HEALTH_HOURS   how far back camera health looks (24)

Keep the first two equal to the settlement's AnomalySettings.camera_excess_min/ratio so the API and
the monthly anomaly flags agree; both default to server.vision.crosscheck's defaults.
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .crosscheck import DEFAULT_EXCESS_RATIO, DEFAULT_MIN_EXCESS, Margin


class VisionSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="YANGYI_VISION_", extra="forbid")

    min_excess: int = Field(default=DEFAULT_MIN_EXCESS, ge=0)
    excess_ratio: Decimal = Field(default=DEFAULT_EXCESS_RATIO, ge=0)
    health_hours: int = Field(default=24, ge=1, le=24 * 31)

    def margin(self) -> Margin:
        return Margin(min_excess=self.min_excess, ratio=self.excess_ratio)
