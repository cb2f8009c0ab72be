"""Actuators: the gas valve closes at the second level and is never reopened remotely."""

from __future__ import annotations

from typing import Any

import pytest

from edge.actuators import AlarmPanel, LocalButton, LoggingActuator, PanelConfig, RemoteValveOpenRefused, SafetyHub
from edge.clock import FakeClock
from edge.events import Lane
from edge.safety import SafetyConfig, SafetyEngine
from firmware_bridge.contract import Channel, Command, CommandName, SafetyEvent
from firmware_bridge.modbus_profiles import Quantity


class RecordingEmitter:
    def __init__(self) -> None:
        self.events: list[tuple[Channel, str, dict[str, Any], Lane]] = []
        self.fail = False

    def emit(self, channel: Channel, device_id: str, body: dict[str, Any], *, lane: Lane = Lane.NORMAL,
             ts: Any = None) -> int:
        if self.fail:
            raise OSError("disk full")
        SafetyEvent(point="p", device=device_id, seq=len(self.events), ts=ts, clock_synced=True, **body)
        self.events.append((channel, device_id, body, lane))
        return len(self.events)


def make() -> tuple[SafetyHub, AlarmPanel, dict[str, LoggingActuator], FakeClock, RecordingEmitter]:
    clock = FakeClock()
    outs = {n: LoggingActuator(n) for n in ("buzzer", "fan", "valve")}
    panel = AlarmPanel(outs["buzzer"], outs["fan"], outs["valve"], valve_energised_open=True)
    outs["valve"].set(True)  # gas flowing
    hub = SafetyHub(SafetyEngine(SafetyConfig(), clock), panel)
    emitter = RecordingEmitter()
    hub.attach(emitter)
    return hub, panel, outs, clock, emitter


def leak(hub: SafetyHub, lel: float) -> None:
    hub.run(lambda e: e.observe("gas1", "lel", Quantity.GAS_LEL, lel, "%LEL"))


def test_second_level_closes_valve_and_events_go_to_safety_lane() -> None:
    hub, panel, outs, _clock, emitter = make()
    leak(hub, 30)
    assert outs["buzzer"].state and outs["fan"].state and outs["valve"].state  # first level: valve open
    leak(hub, 55)
    assert panel.valve_closed and outs["valve"].state is False
    assert [(c, lane, b["level"]) for c, _d, b, lane in emitter.events] == [
        (Channel.SAFETY, Lane.SAFETY, "alarm"), (Channel.SAFETY, Lane.SAFETY, "alarm2")]


def test_no_command_or_action_reopens_the_valve() -> None:
    hub, panel, outs, clock, _emitter = make()
    leak(hub, 60)
    for name in CommandName:
        cmd = Command(cmd_id=f"c-{name}", point="p", cmd=name, issued_at=clock.now(),
                      args={"valve": "open", "action": "valve.open"})
        hub.handle_command(cmd)
    assert not outs["buzzer"].state  # ack_alarm silenced the buzzer ...
    assert panel.valve_closed and outs["valve"].state is False  # ... and left the valve shut
    with pytest.raises(RemoteValveOpenRefused):
        panel.apply(["valve.open"], source="server")
    with pytest.raises(RemoteValveOpenRefused):
        panel.reopen_valve_on_site("server")  # type: ignore[arg-type]
    assert outs["valve"].state is False
    # The gas clears, the alarm is acknowledged: the valve still stays closed.
    for _ in range(40):
        leak(hub, 0)
        clock.advance(1)
    hub.acknowledge("button")
    assert panel.valve_closed and outs["valve"].state is False
    assert True not in outs["valve"].history[1:]


def test_person_on_site_reopens_valve() -> None:
    hub, panel, outs, clock, _ = make()
    leak(hub, 60)
    hub.acknowledge("button")
    for _ in range(40):
        leak(hub, 0)
        clock.advance(1)
    hub.reopen_valve_on_site(LocalButton())
    assert not panel.valve_closed and outs["valve"].state
    leak(hub, 70)  # a new leak closes it again
    assert panel.valve_closed and outs["valve"].state is False


def test_reopen_refused_on_site_while_gas_alarm_stands() -> None:
    from edge.actuators import ActuatorError

    hub, panel, outs, _clock, _ = make()
    leak(hub, 60)
    with pytest.raises(ActuatorError):
        hub.reopen_valve_on_site(LocalButton())  # latched and measured
    hub.acknowledge("button")
    with pytest.raises(ActuatorError):
        hub.reopen_valve_on_site(LocalButton())  # acknowledged, but the gas is still there
    assert panel.valve_closed and outs["valve"].state is False


def test_events_kept_when_outbox_fails_and_local_alarm_still_sounds() -> None:
    hub, _panel, outs, _clock, emitter = make()
    emitter.fail = True
    leak(hub, 30)
    assert outs["buzzer"].state
    assert emitter.events == []
    emitter.fail = False
    leak(hub, 55)
    assert [b["level"] for _c, _d, b, _l in emitter.events] == ["alarm", "alarm2"]


def test_failing_actuator_does_not_stop_others() -> None:
    class Broken(LoggingActuator):
        def set(self, on: bool) -> None:
            raise OSError("relay gone")

    buzzer = LoggingActuator("buzzer")
    panel = AlarmPanel(buzzer=buzzer, fan=Broken("fan"))
    panel.apply(["fan.on", "buzzer.on"])
    assert buzzer.state


def test_panel_from_config_without_gpio_libraries() -> None:
    panel = AlarmPanel.from_config(PanelConfig.model_validate({"fan": {"type": "log"}}))
    panel.apply(["buzzer.on", "fan.on"])
    assert panel.buzzer is not None and panel.buzzer.state
    from edge.actuators import ActuatorError, GpioActuator

    with pytest.raises(ActuatorError):
        GpioActuator("buzzer", 17)  # neither gpiozero nor lgpio here
