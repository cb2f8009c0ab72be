"""RS-485 bus input over real ptys: a dead device does not stall a live one; unplug and replug."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.actuators import AlarmPanel, LoggingActuator, SafetyHub
from edge.clock import SystemClock
from edge.events import Lane
from edge.inputs.bus import (
    Dlt645DeviceConfig,
    ModbusDeviceConfig,
    PollResult,
    SerialBusConfig,
    SerialBusInput,
)
from edge.safety import SafetyConfig, SafetyEngine
from firmware_bridge.contract import EVENT_MODELS, Channel
from firmware_bridge.sim.dlt645 import Dlt645MeterSimulator
from firmware_bridge.sim.modbus import ModbusBusSimulator

METER = "123456789012"


class RecordingEmitter:
    """Validates each body against the contract, like the outbox does, and keeps it."""

    def __init__(self) -> None:
        self.events: list[tuple[Channel, str, dict[str, Any], Lane]] = []
        self._lock = threading.Lock()

    def emit(self, channel: Channel, device_id: str, body: dict[str, Any], *, lane: Lane = Lane.NORMAL,
             ts: Any = None) -> int:
        EVENT_MODELS[channel](point="p1", device=device_id, seq=0, ts=ts, clock_synced=True, **body)
        with self._lock:
            self.events.append((channel, device_id, body, lane))
            return len(self.events)

    def safety(self, device: str | None = None, ch: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [b for c, d, b, _ in self.events if c == Channel.SAFETY and device in (None, d)
                    and ch in (None, b["ch"])]

    def telemetry(self, device: str) -> list[dict[str, Any]]:
        with self._lock:
            return [b for c, d, b, _ in self.events if c == Channel.TELEMETRY and d == device]


def wait_for(cond: Callable[[], bool], timeout: float = 8.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


class Running:
    def __init__(self, bus: SerialBusInput, emitter: RecordingEmitter) -> None:
        self.bus, self.emitter, self.stop = bus, emitter, threading.Event()
        self.thread = threading.Thread(target=bus.run, args=(emitter, self.stop), daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        assert not self.thread.is_alive()


def make_hub() -> tuple[SafetyHub, LoggingActuator]:
    buzzer = LoggingActuator("buzzer")
    return SafetyHub(SafetyEngine(SafetyConfig(), SystemClock()), AlarmPanel(buzzer=buzzer)), buzzer


@pytest.fixture
def modbus_line() -> Iterator[ModbusBusSimulator]:
    with ModbusBusSimulator({1: "gas_generic", 2: "co_generic"}) as sim:
        yield sim


def test_dead_device_does_not_stall_live_one(modbus_line: ModbusBusSimulator) -> None:
    sim = modbus_line
    sim.silence(2)
    sim.set(1, {"lel": 3.0})
    cfg = SerialBusConfig(port=sim.path, summary_period_s=1, devices=[
        ModbusDeviceConfig(id="gas1", unit=1, profile="gas_generic", interval_s=0.2, timeout_s=0.3, retries=1),
        ModbusDeviceConfig(id="co1", unit=2, profile="co_generic", interval_s=0.2, timeout_s=0.3, retries=1,
                           comm_lost_after=2, lost_interval_s=2.0),
    ])
    hub, _ = make_hub()
    bus = SerialBusInput(cfg, hub=hub)
    live_polls: list[float] = []
    live = bus.slots[0].driver
    original = live.poll

    def timed(link: Any, retries: int) -> PollResult:
        result = original(link, retries)
        if result.kind == "ok":
            live_polls.append(time.monotonic())
        return result

    live.poll = timed  # type: ignore[method-assign]
    emitter = RecordingEmitter()
    with Running(bus, emitter):
        assert wait_for(lambda: len(live_polls) >= 15, timeout=10)
        assert wait_for(lambda: bool(emitter.safety("co1", "co")))
        assert wait_for(lambda: bool(emitter.telemetry("co1")))
    gaps = [b - a for a, b in itertools.pairwise(live_polls)]
    # At worst the live device waits for one dead poll: 2 attempts × 0.3 s, plus its own interval.
    assert max(gaps) < 0.2 + 2 * 0.3 + 0.35, gaps
    health = bus.health()
    assert health["gas1"].state == "ok" and health["gas1"].consecutive_failures == 0
    assert health["co1"].lost and health["co1"].no_answer >= 2 and health["co1"].ok == 0
    (lost,) = emitter.safety("co1", "co")
    assert lost["level"] == "comm_lost"
    assert emitter.safety("gas1") == []  # 3 %LEL: nothing to report
    assert any(r["ch"] == "comm.no_answer" for e in emitter.telemetry("co1") for r in e["readings"])
    lel = [r for e in emitter.telemetry("gas1") for r in e["readings"] if r["ch"] == "lel"]
    assert lel and lel[0]["mean"] == pytest.approx(3.0) and lel[0]["period_s"] == 1


def test_gas_leak_alarm_goes_to_safety_lane_and_sounds(modbus_line: ModbusBusSimulator) -> None:
    sim = modbus_line
    sim.set(1, {"lel": 1.0})
    cfg = SerialBusConfig(port=sim.path, devices=[
        ModbusDeviceConfig(id="gas1", unit=1, profile="gas_generic", interval_s=0.2, timeout_s=0.5)])
    hub, buzzer = make_hub()
    emitter = RecordingEmitter()
    with Running(SerialBusInput(cfg, hub=hub), emitter):
        time.sleep(0.3)
        sim.set(1, {"lel": 27.0})
        assert wait_for(lambda: bool(emitter.safety("gas1", "lel")))
        assert buzzer.state
    event = emitter.safety("gas1", "lel")[0]
    assert (event["level"], event["value"], event["threshold"]) == ("alarm", pytest.approx(27.0), 25.0)
    assert [lane for c, _d, _b, lane in emitter.events if c == Channel.SAFETY] == [Lane.SAFETY]


def test_unplug_and_replug_meter(tmp_path: Path) -> None:
    link = tmp_path / "meter0"
    with Dlt645MeterSimulator([METER], link=link) as sim:
        cfg = SerialBusConfig(port=str(link), baudrate=2400, reopen_initial_s=0.1, reopen_max_s=0.3, devices=[
            Dlt645DeviceConfig(id="meter1", address=METER, data_ids=["02010100", "02020100"], interval_s=0.2,
                               timeout_s=0.3, retries=0, comm_lost_after=2),
        ])
        hub, _ = make_hub()
        bus = SerialBusInput(cfg, hub=hub)
        emitter = RecordingEmitter()
        with Running(bus, emitter):
            assert wait_for(lambda: bus.health()["meter1"].ok >= 2)
            sim.unplug()
            assert not link.exists()
            assert wait_for(lambda: [e["level"] for e in emitter.safety("meter1", "voltage")] == ["comm_lost"])
            assert bus.health()["meter1"].port_errors >= 1
            sim.plug()
            ok_before = bus.health()["meter1"].ok
            assert wait_for(lambda: bus.health()["meter1"].ok > ok_before + 1)
            assert wait_for(lambda: len(emitter.safety("meter1", "voltage")) == 2)
        levels = [(e.get("prev_level"), e["level"]) for e in emitter.safety("meter1", "voltage")]
        assert levels == [("normal", "comm_lost"), ("comm_lost", "normal")]


def test_missing_port_at_start_then_appears(tmp_path: Path) -> None:
    link = tmp_path / "late"
    cfg = SerialBusConfig(port=str(link), reopen_initial_s=0.1, reopen_max_s=0.2, devices=[
        Dlt645DeviceConfig(id="meter1", address=METER, data_ids=["02010100"], interval_s=0.2, timeout_s=0.3,
                           comm_lost_after=2)])
    hub, _ = make_hub()
    bus = SerialBusInput(cfg, hub=hub)
    emitter = RecordingEmitter()
    with Running(bus, emitter):
        assert wait_for(lambda: [e["level"] for e in emitter.safety("meter1")] == ["comm_lost"])
        with Dlt645MeterSimulator([METER], link=link) as sim:
            sim.set(METER, 0x02010100, 190.0)
            assert wait_for(lambda: bus.health()["meter1"].ok >= 1)
    assert emitter.safety("meter1")[-1]["level"] == "normal"  # voltage 190 V needs 10 s to warn


def test_bus_config_is_strict() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        SerialBusConfig.model_validate({"type": "rs485_bus", "port": "/dev/x", "devices": [
            {"type": "modbus", "id": "a", "unit": 1, "profile": "gas_generic", "colour": "red"}]})
    with pytest.raises(ValidationError):
        SerialBusConfig.model_validate({"type": "rs485_bus", "port": "/dev/x", "devices": [
            {"type": "dlt645", "id": "m", "address": "12345"}]})
    cfg = SerialBusConfig.model_validate({"type": "rs485_bus", "port": "/dev/x", "baudrate": 2400, "parity": "E",
                                          "devices": [{"type": "dlt645", "id": "m", "address": METER}]})
    assert isinstance(cfg.devices[0], Dlt645DeviceConfig) and len(cfg.devices[0].data_ids) == 6
