"""Per-minute telemetry summaries: samples every few seconds in, one summary per channel per period out.

Pure, clock injected. Periods are aligned to the wall clock (minute boundaries for 60 s), so the
summaries of every device and point line up on the server. A summary is a contract Reading with
v = last value, min, mean, max, n and period_s; its event time is the end of the period.
Safety transitions are not delayed by this: they are emitted at once by the safety hub.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from edge.clock import Clock


@dataclass
class _Acc:
    unit: str | None
    n: int = 0
    total: float = 0.0
    low: float = float("inf")
    high: float = float("-inf")
    last: float = 0.0

    def add(self, value: float) -> None:
        self.n += 1
        self.total += value
        self.low = min(self.low, value)
        self.high = max(self.high, value)
        self.last = value


@dataclass(frozen=True, slots=True)
class Summary:
    """One device's readings over one period, ready for a TelemetryEvent body."""

    device_id: str
    end: datetime
    readings: list[dict[str, Any]] = field(default_factory=list)

    def body(self) -> dict[str, Any]:
        return {"readings": list(self.readings)}


class TelemetryAggregator:
    """Collect samples; hand back finished periods' summaries."""

    def __init__(self, clock: Clock, period_s: int = 60) -> None:
        if not 1 <= period_s <= 86400:
            raise ValueError("period_s must be within 1..86400")
        self.clock = clock
        self.period_s = period_s
        self._period_start: datetime | None = None
        self._acc: dict[str, dict[str, _Acc]] = {}
        self._extra: dict[str, dict[str, tuple[float, str | None]]] = {}

    def _start_of(self, t: datetime) -> datetime:
        epoch = int(t.astimezone(UTC).timestamp())
        return datetime.fromtimestamp(epoch - epoch % self.period_s, UTC)

    def add(self, device_id: str, channel: str, value: float, unit: str | None = None) -> list[Summary]:
        """Record one sample now; returns summaries of periods that ended before it."""
        done = self.due()
        if self._period_start is None:
            self._period_start = self._start_of(self.clock.now())
        acc = self._acc.setdefault(device_id, {}).setdefault(channel, _Acc(unit))
        acc.unit = unit
        acc.add(value)
        return done

    def set_value(self, device_id: str, channel: str, value: float, unit: str | None = None) -> None:
        """A per-period figure that is not a sample (a counter such as comm.failures): sent as is."""
        if self._period_start is None:
            self._period_start = self._start_of(self.clock.now())
        self._extra.setdefault(device_id, {})[channel] = (value, unit)

    def due(self) -> list[Summary]:
        """Summaries of the period that has ended, if it has; empty otherwise."""
        if self._period_start is None:
            return []
        end = self._period_start + timedelta(seconds=self.period_s)
        if self.clock.now() < end:
            return []
        out: list[Summary] = []
        for device_id in sorted(set(self._acc) | set(self._extra)):
            readings: list[dict[str, Any]] = []
            for channel, acc in sorted(self._acc.get(device_id, {}).items()):
                reading: dict[str, Any] = {
                    "ch": channel, "v": acc.last, "min": acc.low, "mean": acc.total / acc.n,
                    "max": acc.high, "n": acc.n, "period_s": self.period_s,
                }
                if acc.unit:
                    reading["unit"] = acc.unit
                readings.append(reading)
            for channel, (value, unit) in sorted(self._extra.get(device_id, {}).items()):
                readings.append({"ch": channel, "v": value, **({"unit": unit} if unit else {})})
            if readings:
                out.append(Summary(device_id, end, readings))
        self._acc.clear()
        self._extra.clear()
        self._period_start = self._start_of(self.clock.now())
        return out
