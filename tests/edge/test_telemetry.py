"""Per-minute telemetry summaries with a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from edge.clock import FakeClock
from edge.telemetry import TelemetryAggregator
from firmware_bridge.contract import TelemetryEvent


def test_minute_summary_min_mean_max_last_n() -> None:
    clock = FakeClock(datetime(2026, 6, 1, 3, 0, 0, tzinfo=UTC))
    agg = TelemetryAggregator(clock, period_s=60)
    out = []
    for i, v in enumerate([1.0, 5.0, 3.0] * 4):  # every 5 s for 60 s
        out += agg.add("gas1", "lel", v, "%LEL")
        agg.add("gas1", "lel2", float(i))
        clock.advance(5)
    assert out == []  # the minute has just ended: nothing yet until the next sample or due()
    (summary,) = agg.due()
    assert summary.device_id == "gas1"
    assert summary.end == datetime(2026, 6, 1, 3, 1, tzinfo=UTC)
    lel = summary.readings[0]
    assert lel == {"ch": "lel", "v": 3.0, "min": 1.0, "mean": 3.0, "max": 5.0, "n": 12, "period_s": 60,
                   "unit": "%LEL"}
    event = TelemetryEvent(point="p", device="gas1", seq=0, ts=summary.end, clock_synced=True, **summary.body())
    assert event.readings[1].n == 12 and event.readings[1].max == 11.0
    assert agg.due() == []


def test_periods_align_to_the_clock_and_sample_goes_to_new_period() -> None:
    clock = FakeClock(datetime(2026, 6, 1, 3, 0, 50, tzinfo=UTC))
    agg = TelemetryAggregator(clock)
    assert agg.add("m", "voltage", 220.0, "V") == []
    clock.advance(15)  # 03:01:05
    (s,) = agg.add("m", "voltage", 230.0, "V")
    assert s.end == datetime(2026, 6, 1, 3, 1, tzinfo=UTC)
    assert s.readings[0]["n"] == 1 and s.readings[0]["v"] == 220.0
    clock.advance(60)
    (s2,) = agg.due()
    assert s2.readings[0]["v"] == 230.0


def test_counters_are_sent_as_plain_values() -> None:
    clock = FakeClock(datetime(2026, 6, 1, 3, 0, 0, tzinfo=UTC))
    agg = TelemetryAggregator(clock, period_s=10)
    agg.set_value("m", "comm.failures", 3)
    clock.advance(10)
    (s,) = agg.due()
    assert s.readings == [{"ch": "comm.failures", "v": 3}]


def test_bad_period() -> None:
    with pytest.raises(ValueError):
        TelemetryAggregator(FakeClock(), period_s=0)
