"""Sensor evidence of an inspection period: per-day SQL buckets in, one summary out (pure).

The repository reads the telemetry and safety_events hypertables with time_bucket into
    DayReading    one (point, local day, unit) bucket: highest and lowest value (summary max/min
                  where the edge sent summaries), rows, rows outside the supply voltage range
    DayCoverage   one (point, local day): hours of that day with any telemetry
    SensorAlarm   one alarm raised at the edge (a safety event leaving `normal`), its peak level and
                  when the channel was back to normal, if it was
and `summarise` folds the days of one period into an Evidence: max gas %LEL, max CO ppm, max
residual current mA, max line temperature, the voltage range, alarms by level and how many were
still not cleared, hours covered out of hours elapsed. Quantities are found by unit, as the alert
rules do (server.alerts.rules.QUANTITY_BY_UNIT), because channel names differ between devices.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict

from server.alerts.rules import QUANTITY_BY_UNIT, Quantity

HOUR = timedelta(hours=1)
# Levels a safety event can raise, lowest first; fault and comm_lost are not "clear" either.
ALARM_LEVELS = ("warn", "alarm", "alarm2", "fault", "comm_lost")
LEVEL_ZH = {"warn": "预警", "alarm": "一级报警", "alarm2": "二级报警", "fault": "故障", "comm_lost": "通信中断",
            "normal": "正常"}


@dataclass(frozen=True, slots=True)
class DayReading:
    point_id: str
    day: date
    unit: str | None
    vmax: float
    vmin: float
    rows: int
    out_of_range: int = 0


@dataclass(frozen=True, slots=True)
class DayCoverage:
    point_id: str
    day: date
    hours: int


@dataclass(frozen=True, slots=True)
class DayAlerts:
    """One (point, local day) of the alerts table: alerts opened, of which not resolved."""

    point_id: str
    day: date
    opened: int
    unresolved: int


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SensorAlarm(_Frozen):
    """An alarm raised at the edge and how it ended (cleared_at None: not back to normal)."""

    point_id: str
    device_id: str
    channel: str
    rule: str
    raised_at: datetime
    level: str
    peak_level: str
    value: float | None = None
    unit: str | None = None
    threshold: float | None = None
    latched: bool = False
    actions: list[str] = []
    cleared_at: datetime | None = None


class Evidence(_Frozen):
    """What the sensors recorded at one point over one inspection period."""

    period_start: date
    period_end: date  # exclusive
    readings: int = 0
    hours_covered: int = 0
    hours_elapsed: int = 0
    gas_lel_max: float | None = None
    co_ppm_max: float | None = None
    residual_current_ma_max: float | None = None
    temperature_c_max: float | None = None
    voltage_min: float | None = None
    voltage_max: float | None = None
    voltage_out_of_range: int = 0
    alarms: int = 0
    alarms_by_level: dict[str, int] = {}
    alarms_not_cleared: int = 0
    # None: the alert tables do not exist on this server yet.
    alerts: int | None = None
    alerts_unresolved: int | None = None

    @property
    def coverage(self) -> float | None:
        """Share of elapsed hours with telemetry (None before the period began)."""
        return self.hours_covered / self.hours_elapsed if self.hours_elapsed else None


_MAX_FIELD = {
    Quantity.GAS_LEL: "gas_lel_max",
    Quantity.CO_PPM: "co_ppm_max",
    Quantity.RESIDUAL_CURRENT_MA: "residual_current_ma_max",
    Quantity.TEMPERATURE_C: "temperature_c_max",
}


def _max(a: float | None, b: float) -> float:
    return b if a is None else max(a, b)


def _min(a: float | None, b: float) -> float:
    return b if a is None else min(a, b)


def hours_elapsed(first: date, stop: date, tz: ZoneInfo, now: datetime) -> int:
    """Whole or started hours of [first, stop) that have passed by `now`."""
    start = datetime.combine(first, time(0), tz)
    end = min(datetime.combine(stop, time(0), tz), now)
    return max(0, math.ceil((end - start) / HOUR))


def summarise(
    point_id: str, first: date, stop: date, *, tz: ZoneInfo, now: datetime,
    readings: Iterable[DayReading], coverage: Iterable[DayCoverage], alarms: Iterable[SensorAlarm],
    alerts: Iterable[DayAlerts] | None = None,
) -> Evidence:
    """The evidence of one point over the days [first, stop); rows of other points or days are ignored.

    `alerts` is None when the server has no alert tables: the evidence then says "unknown", not 0.
    """
    values: dict[str, float | None] = dict.fromkeys(
        ("gas_lel_max", "co_ppm_max", "residual_current_ma_max", "temperature_c_max", "voltage_min", "voltage_max"))
    rows = out_of_range = 0
    for r in readings:
        if r.point_id != point_id or not first <= r.day < stop:
            continue
        rows += r.rows
        quantity = QUANTITY_BY_UNIT.get(r.unit or "")
        if quantity is Quantity.VOLTAGE_V:
            values["voltage_min"] = _min(values["voltage_min"], r.vmin)
            values["voltage_max"] = _max(values["voltage_max"], r.vmax)
            out_of_range += r.out_of_range
        elif quantity in _MAX_FIELD:
            name = _MAX_FIELD[quantity]
            values[name] = _max(values[name], r.vmax)
    hours = sum(c.hours for c in coverage if c.point_id == point_id and first <= c.day < stop)
    start = datetime.combine(first, time(0), tz)
    end = datetime.combine(stop, time(0), tz)
    raised = [a for a in alarms if a.point_id == point_id and start <= a.raised_at < end]
    opened = unresolved = None
    if alerts is not None:
        mine = [a for a in alerts if a.point_id == point_id and first <= a.day < stop]
        opened, unresolved = sum(a.opened for a in mine), sum(a.unresolved for a in mine)
    return Evidence(
        period_start=first, period_end=stop, readings=rows, hours_covered=hours,
        hours_elapsed=hours_elapsed(first, stop, tz, now), voltage_out_of_range=out_of_range,
        alarms=len(raised), alarms_by_level=dict(sorted(Counter(a.peak_level for a in raised).items())),
        alarms_not_cleared=sum(1 for a in raised if a.cleared_at is None or a.cleared_at > now),
        alerts=opened, alerts_unresolved=unresolved,
        **{k: round(v, 3) if v is not None else None for k, v in values.items()},
    )


def fuller(stored: Evidence | None, fresh: Evidence) -> Evidence:
    """The evidence to show: the fresh one, unless the stored one saw more (telemetry dropped by retention).

    Late data (an edge back online after a day) only adds rows, so fresh wins; retention only removes
    rows, so a stored summary with more readings or alarms than the fresh one is the better record.
    """
    if stored is None or (stored.period_start, stored.period_end) != (fresh.period_start, fresh.period_end):
        return fresh
    if stored.readings > fresh.readings or stored.alarms > fresh.alarms:
        return stored
    return fresh
