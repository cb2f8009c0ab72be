"""Local safety outputs: buzzer/siren, gas shut-off valve, exhaust fan, and the hub that drives them.

Each output is one small injected interface (Actuator): a GPIO pin through gpiozero or lgpio
(imported only when a GPIO actuator is built, so this module imports anywhere), a logging one, or
a file one that appends each call as a line (for tests and benchmarks to watch a real agent).
The panel applies the safety engine's action strings. Rules of the panel (GB 50028 §10.8):

- the valve closes on `valve.close` and is reopened ONLY by `reopen_valve_on_site()`, which takes
  a LocalButton — an input wired at the meal point. No action string, command or config opens it;
  `valve.open` is refused wherever it comes from;
- an acknowledgement (local button or the server's ack_alarm command) silences the buzzer and
  releases latches; it never reopens the valve.

SafetyHub ties the engine, the panel and the outbox together: every transition's actions go to
the panel at once (offline too) and its SafetyEvent body into the outbox's safety lane.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from edge.events import Emitter, Lane
from edge.safety import SafetyEngine, Transition
from firmware_bridge.contract import Channel, Command, CommandName

log = logging.getLogger(__name__)


class ActuatorError(Exception):
    """An actuator could not be driven, or was asked to do something it must not."""


class RemoteValveOpenRefused(ActuatorError):
    """Someone tried to open the gas valve other than by hand on site."""


class Actuator(Protocol):
    name: str

    def set(self, on: bool) -> None:
        """Energise (True) or release (False) the output."""
        ...

    @property
    def state(self) -> bool: ...


class LoggingActuator:
    """An output that only logs and remembers its state (no hardware, tests, dry runs)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._state = False
        self.history: list[bool] = []

    def set(self, on: bool) -> None:
        if on != self._state:
            log.info("actuator %s -> %s", self.name, "on" if on else "off")
        self._state = on
        self.history.append(on)

    @property
    def state(self) -> bool:
        return self._state


class FileActuator:
    """An output that appends "<unix time> on|off" to a file on every call (tests, benchmarks)."""

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path
        self._state = False

    def set(self, on: bool) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(f"{time.time():.6f} {'on' if on else 'off'}\n")
        self._state = on

    @property
    def state(self) -> bool:
        return self._state


class GpioActuator:
    """A relay or buzzer on a Raspberry Pi GPIO pin (BCM numbering), via gpiozero, else lgpio."""

    def __init__(self, name: str, pin: int, active_high: bool = True, chip: int = 0) -> None:
        self.name = name
        self.pin = pin
        self.active_high = active_high
        self._state = False
        self._write: Callable[[bool], None]
        try:
            gpiozero = importlib.import_module("gpiozero")
            device = gpiozero.OutputDevice(pin, active_high=active_high, initial_value=False)
            self._write = lambda on: device.on() if on else device.off()
        except ImportError:
            try:
                lgpio = importlib.import_module("lgpio")
            except ImportError as exc:
                raise ActuatorError(f"{name}: neither gpiozero nor lgpio is installed") from exc
            handle = lgpio.gpiochip_open(chip)
            lgpio.gpio_claim_output(handle, pin, 0 if active_high else 1)
            self._write = lambda on: lgpio.gpio_write(handle, pin, int(on == active_high))

    def set(self, on: bool) -> None:
        self._write(on)
        self._state = on

    @property
    def state(self) -> bool:
        return self._state


class LocalButton:
    """A push button wired at the meal point; only code holding one may reopen the valve."""

    def __init__(self, name: str = "reset") -> None:
        self.name = name


class ActuatorConfig(BaseModel):
    """One output: `gpio` (BCM pin), `log`, or `file` (a line per call appended to `path`)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    type: Literal["gpio", "log", "file"] = "log"
    pin: int | None = Field(default=None, ge=0, le=53)
    active_high: bool = True
    path: Path | None = Field(default=None, strict=False)


class PanelConfig(BaseModel):
    """The point's local outputs; any may be absent."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    buzzer: ActuatorConfig | None = ActuatorConfig()
    fan: ActuatorConfig | None = None
    # For a normally-closed solenoid valve the relay is energised to keep gas flowing: closing = off.
    valve: ActuatorConfig | None = None
    valve_energised_open: bool = True


def build_actuator(name: str, config: ActuatorConfig) -> Actuator:
    if config.type == "gpio":
        if config.pin is None:
            raise ActuatorError(f"{name}: a gpio actuator needs a pin")
        return GpioActuator(name, config.pin, config.active_high)
    if config.type == "file":
        if config.path is None:
            raise ActuatorError(f"{name}: a file actuator needs a path")
        return FileActuator(name, config.path)
    return LoggingActuator(name)


class AlarmPanel:
    """Applies action strings to the outputs; keeps the valve closed until reopened by hand."""

    def __init__(
        self,
        buzzer: Actuator | None = None,
        fan: Actuator | None = None,
        valve: Actuator | None = None,
        valve_energised_open: bool = True,
    ) -> None:
        self.buzzer = buzzer
        self.fan = fan
        self.valve = valve
        self.valve_energised_open = valve_energised_open
        self.valve_closed = False
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: PanelConfig) -> AlarmPanel:
        def make(name: str, c: ActuatorConfig | None) -> Actuator | None:
            return build_actuator(name, c) if c is not None else None

        return cls(make("buzzer", config.buzzer), make("fan", config.fan), make("valve", config.valve),
                   config.valve_energised_open)

    def apply(self, actions: Iterable[str], source: str = "rules") -> None:
        """Carry out action strings; `valve.open` is refused (raises) whatever the source."""
        with self._lock:
            for action in actions:
                if action == "valve.open":
                    raise RemoteValveOpenRefused(f"valve.open from {source} refused: reopen by hand on site")
                if action == "valve.close":
                    self.valve_closed = True
                    self._drive(self.valve, not self.valve_energised_open)
                elif action in ("buzzer.on", "buzzer.off"):
                    self._drive(self.buzzer, action.endswith(".on"))
                elif action in ("fan.on", "fan.off"):
                    self._drive(self.fan, action.endswith(".on"))
                else:
                    log.warning("unknown action %r from %s ignored", action, source)

    def _drive(self, actuator: Actuator | None, on: bool) -> None:
        if actuator is None:
            return
        try:
            actuator.set(on)
        except Exception:  # a failing output must not stop the others (the buzzer when the fan fails)
            log.exception("actuator %s failed", actuator.name)

    def reopen_valve_on_site(self, button: LocalButton) -> None:
        """Reopen the valve: only from a physical button at the point."""
        if not isinstance(button, LocalButton):
            raise RemoteValveOpenRefused("the valve is reopened only by a person on site")
        with self._lock:
            log.info("gas valve reopened on site (%s)", button.name)
            self.valve_closed = False
            self._drive(self.valve, self.valve_energised_open)


class SafetyHub:
    """The one owner of the engine: sends transitions to the panel and the outbox, takes acks."""

    def __init__(self, engine: SafetyEngine, panel: AlarmPanel, device_id: str = "safety") -> None:
        self.engine = engine
        self.panel = panel
        self.device_id = device_id
        self._lock = threading.RLock()
        self.lock = self._lock  # for callers that must touch the engine directly
        self._emitter: Emitter | None = None
        self._unsent: list[Transition] = []

    def attach(self, emitter: Emitter) -> None:
        """The emitter to use for acks that do not come through an input (server commands)."""
        with self._lock:
            self._emitter = emitter

    def run(self, fn: Callable[[SafetyEngine], list[Transition]], emitter: Emitter | None = None) -> list[Transition]:
        """Call the engine under the hub's lock, then act on and record what it returned."""
        with self._lock:
            transitions = fn(self.engine)
            self.publish(transitions, emitter)
            return transitions

    def publish(self, transitions: list[Transition], emitter: Emitter | None = None) -> None:
        with self._lock:
            for t in transitions:
                # Outputs first: the local alarm must not wait for the outbox's disk write.
                self.panel.apply(t.actions, source=t.rule)
            emitter = emitter or self._emitter
            pending = self._unsent + transitions
            self._unsent = []
            for i, t in enumerate(pending):
                if emitter is None:
                    self._unsent = pending[i:]
                    return
                try:
                    emitter.emit(Channel.SAFETY, t.device_id or self.device_id, t.body(), lane=Lane.SAFETY,
                                 ts=t.at)
                except Exception:
                    log.exception("safety event could not be stored; kept for the next try")
                    self._unsent = pending[i:]
                    return

    def acknowledge(self, source: str, emitter: Emitter | None = None) -> list[Transition]:
        """Local button or server: silence, release latches. Never reopens the valve."""
        return self.run(lambda e: e.acknowledge(source), emitter)

    def handle_command(self, command: Command, emitter: Emitter | None = None) -> bool:
        """Handle a server command if it is the hub's; returns whether it was."""
        if command.cmd != CommandName.ACK_ALARM:
            return False
        self.acknowledge(f"server:{command.cmd_id}", emitter)
        return True

    def reopen_valve_on_site(self, button: LocalButton) -> None:
        """Reopen by hand, once the gas alarm is gone and acknowledged; raises ActuatorError before."""
        with self._lock:
            if not self.engine.valve_may_open():
                raise ActuatorError("gas alarm still active or not acknowledged: the valve stays closed")
            self.panel.reopen_valve_on_site(button)
            self.engine.valve_reopened_on_site()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"outputs": self.engine.outputs(), "valve_closed": self.panel.valve_closed}
