"""Default alarm thresholds by unit, for drawing when the edge has not reported its own.

The same defaults as the edge's SafetyConfig (edge/safety.py), from ../shared/DOMAIN.md: gas 25 and
50 %LEL (GB/T 50493-2019), residual current 300/500 mA (GB 50116), line temperature 60/75 °C [A],
supply 198–235.4 V (GB/T 12325). CO has no fixed threshold: the edge applies the EN 50291 dose
curve, so nothing is drawn for ppm.
"""

from __future__ import annotations

from typing import Literal

Direction = Literal["high", "low"]

# unit → [(level, value, direction)]
DEFAULTS: dict[str, list[tuple[str, float, Direction]]] = {
    "%LEL": [("alarm", 25.0, "high"), ("alarm2", 50.0, "high")],
    "mA": [("warn", 300.0, "high"), ("alarm", 500.0, "high")],
    "degC": [("warn", 60.0, "high"), ("alarm", 75.0, "high")],
    "°C": [("warn", 60.0, "high"), ("alarm", 75.0, "high")],
    "V": [("warn", 198.0, "low"), ("warn", 235.4, "high")],
}

# Severity for "the worst level" of a device or a point: an alarm outranks a lost sensor, which
# outranks a warning; a lost or faulty sensor is never "normal".
LEVEL_RANK = {"normal": 0, "warn": 1, "fault": 2, "comm_lost": 3, "alarm": 4, "alarm2": 5}


def worst(levels: list[str]) -> str:
    """The most severe of `levels` ("normal" for none)."""
    return max(levels, key=lambda lv: LEVEL_RANK.get(lv, 0), default="normal")
