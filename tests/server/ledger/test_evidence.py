"""Evidence summarising: per-day buckets folded into a period, quantities by unit, the clock."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from server.ledger.calendar import Area, InspectionKind
from server.ledger.evidence import DayAlerts, DayCoverage, DayReading, Evidence, SensorAlarm, fuller, summarise
from server.ledger.schemas import InspectionCreate, parse_month
from server.ledger.settings import LedgerSettings

TZ = ZoneInfo("Asia/Shanghai")
D = date(2026, 6, 15)


def at(day: int, hour: int = 12, minute: int = 0) -> datetime:
    return datetime(2026, 6, day, hour, minute, tzinfo=TZ)


def alarm(day: int, hour: int, peak: str, cleared: datetime | None, point: str = "p1") -> SensorAlarm:
    return SensorAlarm(point_id=point, device_id="gas1", channel="lel", rule="gas.lel", raised_at=at(day, hour),
                       level="warn", peak_level=peak, value=12.0, unit="%LEL", cleared_at=cleared)


READINGS = [
    DayReading("p1", date(2026, 6, 15), "%LEL", 7.5, 0.0, 1440),
    DayReading("p1", date(2026, 6, 16), "%LEL", 31.2, 0.0, 1440),
    DayReading("p1", date(2026, 6, 15), "mA", 120.0, 40.0, 1440),
    DayReading("p1", date(2026, 6, 16), "V", 236.9, 201.5, 1440, out_of_range=3),
    DayReading("p1", date(2026, 6, 15), "V", 229.0, 196.0, 1440, out_of_range=5),
    DayReading("p1", date(2026, 6, 15), "degC", 41.0, 22.0, 1440),
    DayReading("p1", date(2026, 6, 15), "°C", 44.5, 22.0, 10),
    DayReading("p1", date(2026, 6, 16), "ppm", 35.0, 0.0, 1440),
    DayReading("p1", date(2026, 6, 16), "kWh", 9999.0, 0.0, 60),  # counted as rows, no quantity of ours
    DayReading("p2", date(2026, 6, 15), "%LEL", 90.0, 0.0, 1440),  # another point
    DayReading("p1", date(2026, 6, 22), "%LEL", 80.0, 0.0, 1440),  # another week
]
COVERAGE = [DayCoverage("p1", date(2026, 6, 15), 24), DayCoverage("p1", date(2026, 6, 16), 20),
            DayCoverage("p2", date(2026, 6, 15), 24), DayCoverage("p1", date(2026, 6, 22), 24)]


def test_week_summary_takes_extremes_by_unit() -> None:
    alarms = [alarm(16, 11, "alarm", at(16, 11, 20)), alarm(17, 9, "warn", None), alarm(16, 8, "alarm2", None, "p2"),
              alarm(22, 9, "alarm2", None)]
    e = summarise("p1", D, D + timedelta(days=7), tz=TZ, now=at(30), readings=READINGS, coverage=COVERAGE,
                  alarms=alarms)
    assert e.gas_lel_max == 31.2 and e.co_ppm_max == 35.0 and e.residual_current_ma_max == 120.0
    assert e.temperature_c_max == 44.5  # "degC" and "°C" are the same quantity
    assert (e.voltage_min, e.voltage_max, e.voltage_out_of_range) == (196.0, 236.9, 8)
    assert e.readings == 1440 * 7 + 10 + 60
    assert (e.hours_covered, e.hours_elapsed) == (44, 168)
    assert e.alarms == 2 and e.alarms_by_level == {"alarm": 1, "warn": 1} and e.alarms_not_cleared == 1
    assert e.alerts is None and e.alerts_unresolved is None  # no alert tables: unknown, not zero


def test_day_summary_while_the_day_is_running() -> None:
    now = at(16, 9, 30)
    later_clear = alarm(16, 8, "alarm", at(16, 10))  # cleared after `now`: not cleared yet as of now
    e = summarise("p1", date(2026, 6, 16), date(2026, 6, 17), tz=TZ, now=now, readings=READINGS,
                  coverage=COVERAGE, alarms=[later_clear])
    assert e.hours_elapsed == 10 and e.hours_covered == 20
    assert e.alarms_not_cleared == 1
    assert e.gas_lel_max == 31.2 and e.residual_current_ma_max is None
    future = summarise("p1", date(2026, 6, 20), date(2026, 6, 21), tz=TZ, now=now, readings=READINGS,
                       coverage=COVERAGE, alarms=[])
    assert future.hours_elapsed == 0 and future.coverage is None and future.readings == 0


def test_local_day_boundaries_for_alarms() -> None:
    # 23:59 local on the 15th belongs to the 15th even though it is 15:59 UTC.
    late = alarm(15, 23, "warn", None).model_copy(update={"raised_at": at(15, 23, 59)})
    e15 = summarise("p1", date(2026, 6, 15), date(2026, 6, 16), tz=TZ, now=at(30), readings=[], coverage=[],
                    alarms=[late])
    e16 = summarise("p1", date(2026, 6, 16), date(2026, 6, 17), tz=TZ, now=at(30), readings=[], coverage=[],
                    alarms=[late])
    assert (e15.alarms, e16.alarms) == (1, 0)


def test_alert_counts_when_the_tables_exist() -> None:
    alerts = [DayAlerts("p1", date(2026, 6, 15), 3, 1), DayAlerts("p1", date(2026, 6, 18), 2, 0),
              DayAlerts("p2", date(2026, 6, 15), 9, 9), DayAlerts("p1", date(2026, 6, 25), 4, 4)]
    e = summarise("p1", D, D + timedelta(days=7), tz=TZ, now=at(30), readings=[], coverage=[], alarms=[],
                  alerts=alerts)
    assert (e.alerts, e.alerts_unresolved) == (5, 1)
    none = summarise("p3", D, D + timedelta(days=7), tz=TZ, now=at(30), readings=[], coverage=[], alarms=[],
                     alerts=alerts)
    assert (none.alerts, none.alerts_unresolved) == (0, 0)


def test_fuller_keeps_what_retention_dropped_and_takes_late_data() -> None:
    first, stop = D, D + timedelta(days=1)
    stored = Evidence(period_start=first, period_end=stop, readings=1440, gas_lel_max=12.0, alarms=1)
    dropped = Evidence(period_start=first, period_end=stop, readings=0, alarms=1)
    late = Evidence(period_start=first, period_end=stop, readings=1500, gas_lel_max=30.0, alarms=2)
    assert fuller(stored, dropped) is stored
    assert fuller(stored, late) is late
    assert fuller(None, dropped) is dropped
    other_period = Evidence(period_start=first, period_end=stop + timedelta(days=6), readings=5)
    assert fuller(stored, other_period) is other_period
    assert Evidence.model_validate(stored.model_dump(mode="json")) == stored  # survives the jsonb round trip


def body(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "kind": "daily", "inspected_at": "2026-06-15T09:00:00+08:00",
        "items": [{"area": "gas", "item": "燃气软管", "passed": True}, {"area": "electricity", "item": "插座",
                                                                       "passed": True},
                  {"area": "food", "item": "食材", "passed": True}],
        "samples": [{"meal": "lunch", "taken_at": "2026-06-15T11:30:00+08:00"}],
    }
    return {**base, **overrides}


def test_inspection_body_rules() -> None:
    ok = InspectionCreate.model_validate(body())
    assert ok.kind is InspectionKind.DAILY and ok.items[0].area is Area.GAS
    failed = [{"area": "gas", "item": "软管老化", "passed": False, "note": "裂纹"}]
    with pytest.raises(ValidationError, match="failed items need"):
        InspectionCreate.model_validate(body(items=failed))
    with pytest.raises(ValidationError, match="deadline is given exactly"):
        InspectionCreate.model_validate(body(items=failed, problems=[
            {"description": "软管老化", "item_index": 0, "rectification": "deadline"}]))
    with pytest.raises(ValidationError, match="refers to item 5"):
        InspectionCreate.model_validate(body(items=failed, problems=[
            {"description": "软管老化", "item_index": 5, "rectification": "fixed_at_once"}]))
    with pytest.raises(ValidationError, match="daily check"):
        InspectionCreate.model_validate(body(kind="weekly"))
    with pytest.raises(ValidationError):
        InspectionCreate.model_validate(body(inspected_at="2026-06-15T09:00:00"))  # naive time
    with pytest.raises(ValidationError):
        InspectionCreate.model_validate(body(extra_field=1))
    assert parse_month("2026-06") == (2026, 6)
    with pytest.raises(ValueError, match="YYYY-MM"):
        parse_month("2026-13")


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YANGYI_LEDGER_SERVICE_WEEKDAYS", "[1,2,3,4,5]")
    monkeypatch.setenv("YANGYI_LEDGER_REQUIRED_AREAS", '["gas","food"]')
    settings = LedgerSettings()
    assert settings.service_weekdays == frozenset({1, 2, 3, 4, 5})
    assert settings.required_areas == frozenset({Area.GAS, Area.FOOD}) and settings.sample_keep_hours == 48.0
    monkeypatch.setenv("YANGYI_LEDGER_SERVICE_WEEKDAYS", "[0,1]")
    with pytest.raises(ValidationError, match="ISO weekdays"):
        LedgerSettings()
