"""Play a scenario onto a simulated line: wall time × speed → scenario time → device states.

The player only pushes changes: a device's values, status bits or silence are sent to the
simulator when they differ from what was last sent. Clock and target are injected, so tests step
it by hand.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from firmware_bridge.errors import SimulatorError

from . import DeviceState, Noise, Scenario, ScenarioDevice, state_at

log = logging.getLogger(__name__)

TICK_SECONDS = 0.05


class LineTarget(Protocol):
    """A simulator a scenario can drive."""

    def apply_device(self, device: ScenarioDevice, state: DeviceState) -> None: ...

    def apply_noise(self, noise: Noise | None) -> None: ...


class ScenarioPlayer:
    """Drive `target` through `scenario`, `speed` scenario seconds per wall second."""

    def __init__(
        self,
        scenario: Scenario,
        target: LineTarget,
        speed: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if speed <= 0:
            raise SimulatorError("speed must be positive")
        self.scenario = scenario
        self.target = target
        self.speed = speed
        self._monotonic = monotonic
        self._start: float | None = None
        self._sent: dict[str, DeviceState] = {}
        self._noise: Noise | None = None
        self._noise_sent = False

    def start(self) -> None:
        """Scenario time 0 is now; the initial state is applied at once."""
        self._start = self._monotonic()
        self.apply(0.0)

    def scenario_time(self) -> float:
        if self._start is None:
            raise SimulatorError("player not started")
        return (self._monotonic() - self._start) * self.speed

    @property
    def finished(self) -> bool:
        return self._start is not None and self.scenario_time() >= self.scenario.duration_s

    def apply(self, t: float) -> None:
        """Push the state at scenario time `t` (only what changed)."""
        line = state_at(self.scenario, min(t, self.scenario.duration_s))
        for device in self.scenario.devices:
            state = line.devices[device.id]
            if self._sent.get(device.id) != state:
                self.target.apply_device(device, state)
                self._sent[device.id] = state
        if not self._noise_sent or line.noise != self._noise:
            self.target.apply_noise(line.noise)
            self._noise, self._noise_sent = line.noise, True

    def step(self) -> None:
        """Apply the state for the current wall time."""
        self.apply(self.scenario_time())

    def run(self, stop: threading.Event, loop: bool = False, tick_s: float = TICK_SECONDS) -> None:
        """Play until the scenario ends (or forever, restarting, with `loop`) or `stop` is set."""
        self.start()
        log.info("scenario %s: %.0f s at speed %g", self.scenario.name, self.scenario.duration_s, self.speed)
        while not stop.wait(tick_s):
            self.step()
            if self.finished:
                if not loop:
                    log.info("scenario %s finished", self.scenario.name)
                    return
                self._sent.clear()
                self.start()
