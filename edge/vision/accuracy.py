"""Accuracy harness: run the entrance counter over synthetic scenes and compare with their truth."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from .counter import CounterConfig, PeopleCounter
from .synth import Scenario

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ScenarioResult:
    name: str
    true_entries: int
    true_exits: int
    entries: int
    exits: int
    frames: int
    seconds: float  # wall time spent rendering and counting

    @property
    def errors(self) -> int:
        return abs(self.entries - self.true_entries) + abs(self.exits - self.true_exits)

    @property
    def error_pct(self) -> float:
        """|counted - true| over entries and exits, as a percentage of the true crossings."""
        true = self.true_entries + self.true_exits
        return 100.0 * self.errors / true if true else (0.0 if self.errors == 0 else 100.0)

    def row(self) -> dict[str, Any]:
        d = asdict(self)
        d["error_pct"] = round(self.error_pct, 2)
        d["seconds"] = round(self.seconds, 2)
        return d


def run_scenario(scenario: Scenario, config: CounterConfig | None = None, width: int = 320,
                 height: int = 240) -> ScenarioResult:
    """Render the scene at width x height and count it with `config` (default: the scene's line)."""
    counter = PeopleCounter(config or scenario.counter_config())
    started = time.perf_counter()
    frames = 0
    for t, frame in scenario.frames(width, height):
        counter.process(frame, t)
        frames += 1
    return ScenarioResult(scenario.name, scenario.true_entries, scenario.true_exits, counter.entries,
                          counter.exits, frames, time.perf_counter() - started)


def evaluate(scenarios: Iterable[Scenario], config_for: Callable[[Scenario], CounterConfig] | None = None,
             width: int = 320, height: int = 240) -> list[ScenarioResult]:
    """Run every scene; log one line per scene."""
    results = []
    for sc in scenarios:
        res = run_scenario(sc, config_for(sc) if config_for else None, width, height)
        log.info("%-18s true in/out %2d/%2d  counted %2d/%2d  error %.1f%%", res.name, res.true_entries,
                 res.true_exits, res.entries, res.exits, res.error_pct)
        results.append(res)
    return results


def overall_error_pct(results: Iterable[ScenarioResult]) -> float:
    """Sum of |counted - true| over all scenes and both directions, over all true crossings."""
    rs = list(results)
    true = sum(r.true_entries + r.true_exits for r in rs)
    return 100.0 * sum(r.errors for r in rs) / true if true else 0.0
