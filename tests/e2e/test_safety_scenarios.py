"""Safety scenarios: the data files, the player, and the simulators playing them to the real bus input.

The scenario and player parts are pure (fake clock, recording target). The rest plays a scenario
through the real simulators (pymodbus's server, our DL/T 645 meter) on ptys to the edge's
SerialBusInput with a real safety hub, time compressed.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from edge.actuators import AlarmPanel, LoggingActuator, SafetyHub
from edge.clock import SystemClock
from edge.events import Lane
from edge.inputs.bus import Dlt645DeviceConfig, ModbusDeviceConfig, SerialBusConfig, SerialBusInput
from edge.safety import SafetyConfig, SafetyEngine, ThresholdRule
from firmware_bridge.contract import EVENT_MODELS, Channel
from firmware_bridge.errors import SimulatorError
from firmware_bridge.sim import scenarios as sc
from firmware_bridge.sim.dlt645 import Dlt645MeterSimulator
from firmware_bridge.sim.modbus import ModbusBusSimulator
from firmware_bridge.sim.modbus import main as modbus_main
from firmware_bridge.sim.scenarios.player import ScenarioPlayer

# ---- scenario data ---------------------------------------------------------------------------------


def test_every_shipped_scenario_loads_and_covers_the_issue() -> None:
    names = sc.available_scenarios()
    assert set(names) >= {"slow_leak", "sudden_leak", "co_buildup", "leakage_creep", "overheating_terminal",
                          "undervoltage", "device_silent", "garbage_bus"}
    for name in names:
        scenario = sc.load_scenario(name)
        end = sc.state_at(scenario, scenario.duration_s)
        assert set(end.devices) == {d.id for d in scenario.devices}


def test_slow_leak_rises_at_most_1_lel_per_minute_and_crosses_both_levels() -> None:
    s = sc.load_scenario("slow_leak")
    assert sc.max_rate_per_min(s, "gas1", "lel") <= 1.0 + 1e-9  # GB 15322 slow-leak rate
    assert sc.max_rate_per_min(s, "gas1", "lel") >= 0.99
    at = {t: sc.state_at(s, t).devices["gas1"] for t in (0, 60, 1560, 3060, 3600)}
    assert at[0].values["lel"] == 0.0 and at[60].values["lel"] == 0.0
    assert at[1560].values["lel"] == pytest.approx(25.0) and at[1560].flags == {"low_alarm"}
    assert at[3060].values["lel"] == pytest.approx(50.0) and at[3060].flags == {"low_alarm", "high_alarm"}
    assert at[3600].values["lel"] == pytest.approx(59.0)


def test_ramps_stop_at_their_target_and_co_stays_within_the_gb15322_rate() -> None:
    s = sc.load_scenario("co_buildup")
    assert sc.max_rate_per_min(s, "co1", "co") <= 50.0  # GB 15322: CO test rise at most 50 ppm/min
    assert sc.state_at(s, 1860).devices["co1"].values["co"] == pytest.approx(150.0)
    assert sc.state_at(s, 3000).devices["co1"].values["co"] == 150.0
    creep = sc.load_scenario("leakage_creep")
    assert sc.state_at(creep, 1470).devices["efire1"].values["residual"] == pytest.approx(500.0)
    assert sc.state_at(creep, 2400).devices["efire1"].values["residual"] == 600.0


def test_silence_and_noise_follow_the_steps() -> None:
    silent = sc.load_scenario("device_silent")
    assert [sc.state_at(silent, t).devices["gas1"].silent for t in (59, 60, 299, 300)] == [False, True, True, False]
    assert not any(sc.state_at(silent, t).devices["co1"].silent for t in (0, 100, 400))
    noisy = sc.load_scenario("garbage_bus")
    assert sc.state_at(noisy, 29).noise is None
    noise = sc.state_at(noisy, 30).noise
    assert noise is not None and noise.garbage_bytes == 5 and noise.corrupt_ratio == 0.2


BASE: dict[str, Any] = {"name": "x", "protocol": "modbus", "duration_s": 10,
                        "devices": [{"id": "gas1", "unit": 1, "profile": "gas_generic"}]}


@pytest.mark.parametrize(("steps", "needle"), [
    ([{"at": 0, "device": "gas1", "set": {"nope": 1}}], "no channels ['nope']"),
    ([{"at": 0, "device": "gas1", "flags": ["boom"]}], "no status bits ['boom']"),
    ([{"at": 5, "device": "gas1", "set": {"lel": 1}}, {"at": 1, "device": "gas1", "set": {"lel": 2}}],
     "time order"),
    ([{"at": 0, "device": "gas9", "set": {"lel": 1}}], "unknown device gas9"),
    ([{"at": 0, "set": {"lel": 1}}], "need a device"),
    ([{"at": 0, "device": "gas1"}], "must change something"),
    ([{"at": 0, "device": "gas1", "set": {"lel": 1}, "colour": "red"}], "steps.0.colour"),
])
def test_bad_scenarios_are_refused_with_the_reason(steps: list[dict[str, Any]], needle: str) -> None:
    with pytest.raises(SimulatorError, match=None) as err:
        sc.parse_scenario({**BASE, "steps": steps})
    assert needle in str(err.value)


def test_dlt645_scenarios_need_meter_addresses_and_known_channels() -> None:
    with pytest.raises(SimulatorError, match="needs an address"):
        sc.parse_scenario({**BASE, "protocol": "dlt645", "devices": [{"id": "m"}]})
    with pytest.raises(SimulatorError, match="no channels"):
        sc.parse_scenario({**BASE, "protocol": "dlt645", "devices": [{"id": "m", "address": "123456789012"}],
                           "steps": [{"at": 0, "device": "m", "set": {"lel": 1}}]})


# ---- player (fake clock) ---------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def apply_device(self, device: sc.ScenarioDevice, state: sc.DeviceState) -> None:
        self.calls.append((device.id, state))

    def apply_noise(self, noise: sc.Noise | None) -> None:
        self.calls.append(("noise", noise))


class FakeTime:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_player_compresses_time_and_pushes_only_changes() -> None:
    clock, target = FakeTime(), Recorder()
    player = ScenarioPlayer(sc.load_scenario("sudden_leak"), target, speed=10, monotonic=clock)
    player.start()
    assert [c[0] for c in target.calls] == ["gas1", "noise"]
    target.calls.clear()
    clock.t += 2.9  # 29 scenario seconds: nothing changed yet
    player.step()
    assert target.calls == []
    clock.t += 0.1  # 30 s: the hose slips off
    player.step()
    ((dev, state),) = target.calls
    assert dev == "gas1" and state.values["lel"] == 65.0 and state.flags == {"low_alarm", "high_alarm"}
    assert not player.finished
    clock.t += 27.0  # 300 s
    player.step()
    assert player.finished and target.calls[-1][1].values["lel"] == 1.0


def test_player_ramps_follow_the_wall_clock() -> None:
    clock, target = FakeTime(), Recorder()
    player = ScenarioPlayer(sc.load_scenario("slow_leak"), target, speed=60, monotonic=clock)
    player.start()
    clock.t += 1 + 10  # 660 scenario seconds: 10 minutes of leak
    player.step()
    assert target.calls[-1][1].values["lel"] == pytest.approx(10.0)
    assert player.scenario_time() == pytest.approx(660.0)
    with pytest.raises(SimulatorError):
        ScenarioPlayer(sc.load_scenario("slow_leak"), target, speed=0)


# ---- simulators on ptys → the real bus input -------------------------------------------------------


class RecordingEmitter:
    """Validates each body against the contract, like the outbox does, and keeps it."""

    def __init__(self) -> None:
        self.events: list[tuple[Channel, str, dict[str, Any], Lane]] = []
        self.telemetry_ends: list[Any] = []
        self._lock = threading.Lock()

    def emit(self, channel: Channel, device_id: str, body: dict[str, Any], *, lane: Lane = Lane.NORMAL,
             ts: Any = None) -> int:
        EVENT_MODELS[channel](point="p1", device=device_id, seq=0, ts=ts, clock_synced=True, **body)
        with self._lock:
            self.events.append((channel, device_id, body, lane))
            if channel == Channel.TELEMETRY:
                self.telemetry_ends.append(ts)
            return len(self.events)

    def safety(self, device: str) -> list[dict[str, Any]]:
        with self._lock:
            return [b for c, d, b, _ in self.events if c == Channel.SAFETY and d == device]

    def readings(self, device: str, ch: str) -> list[dict[str, Any]]:
        with self._lock:
            return [r for c, d, b, _ in self.events if c == Channel.TELEMETRY and d == device
                    for r in b["readings"] if r["ch"] == ch]


def wait_for(cond: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


class Played:
    """A scenario played onto a simulator while a bus input polls it."""

    def __init__(self, scenario: str, sim: Any, bus: SerialBusInput, speed: float) -> None:
        self.emitter = RecordingEmitter()
        self.stop = threading.Event()
        self.player = ScenarioPlayer(sc.load_scenario(scenario), sim, speed)
        self.threads = [threading.Thread(target=self.player.run, args=(self.stop,), daemon=True),
                        threading.Thread(target=bus.run, args=(self.emitter, self.stop), daemon=True)]

    def __enter__(self) -> Played:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(5)


def hub(config: SafetyConfig | None = None) -> tuple[SafetyHub, LoggingActuator]:
    buzzer = LoggingActuator("buzzer")
    return SafetyHub(SafetyEngine(config or SafetyConfig(), SystemClock()), AlarmPanel(buzzer=buzzer)), buzzer


@pytest.fixture
def scenario_line(request: pytest.FixtureRequest) -> Iterator[ModbusBusSimulator]:
    with ModbusBusSimulator(sc.modbus_units(sc.load_scenario(request.param))) as sim:
        yield sim


@pytest.mark.parametrize("scenario_line", ["garbage_bus"], indirect=True)
def test_garbage_on_the_bus_costs_retries_not_values(scenario_line: ModbusBusSimulator) -> None:
    # No retries, so each broken reply shows as a failed poll (health counts polls, not attempts).
    cfg = SerialBusConfig(port=scenario_line.path, summary_period_s=1, devices=[
        ModbusDeviceConfig(id="gas1", unit=1, profile="gas_generic", interval_s=0.2, timeout_s=0.3, retries=0,
                           comm_lost_after=20),
        ModbusDeviceConfig(id="efire1", unit=3, profile="electrical_fire_generic", interval_s=0.2, timeout_s=0.3,
                           retries=0, comm_lost_after=20)])
    h, buzzer = hub()
    bus = SerialBusInput(cfg, hub=h)
    with Played("garbage_bus", scenario_line, bus, speed=30) as played:  # noise from 1 s on
        wait_for(lambda: bus.health()["gas1"].crc_errors >= 2 and bus.health()["efire1"].crc_errors >= 2,
                 what=f"CRC errors counted on both devices: {bus.health()}")
        wait_for(lambda: len(played.emitter.readings("gas1", "lel")) >= 2, what="gas summaries")
    health = bus.health()
    for dev in ("gas1", "efire1"):
        assert health[dev].ok >= 5 and not health[dev].lost, health[dev]
    # Every decoded value is the true one: garbage never turns into a reading.
    lel = played.emitter.readings("gas1", "lel")
    assert lel and all(r["min"] == pytest.approx(1.5) and r["max"] == pytest.approx(1.5) for r in lel)
    residual = played.emitter.readings("efire1", "residual")
    assert residual and all(r["min"] == r["max"] == 25.0 for r in residual)
    assert any(r["v"] > 0 for r in played.emitter.readings("gas1", "comm.crc_errors"))
    assert played.emitter.safety("gas1") == [] and played.emitter.safety("efire1") == []
    assert not buzzer.state


@pytest.mark.parametrize("scenario_line", ["device_silent"], indirect=True)
def test_silent_device_is_comm_lost_never_clear_and_its_neighbour_goes_on(
        scenario_line: ModbusBusSimulator) -> None:
    cfg = SerialBusConfig(port=scenario_line.path, summary_period_s=1, devices=[
        ModbusDeviceConfig(id="gas1", unit=1, profile="gas_generic", interval_s=0.2, timeout_s=0.2, retries=0,
                           comm_lost_after=2, lost_interval_s=0.5),
        ModbusDeviceConfig(id="co1", unit=2, profile="co_generic", interval_s=0.2, timeout_s=0.2)])
    h, _ = hub()
    bus = SerialBusInput(cfg, hub=h)
    with Played("device_silent", scenario_line, bus, speed=60) as played:  # silent from 1 s to 5 s
        wait_for(lambda: played.emitter.safety("gas1"), what="gas1 comm_lost")
        ok_before = bus.health()["co1"].ok
        wait_for(lambda: bus.health()["co1"].ok >= ok_before + 5, what="co1 answering while gas1 is silent")
        wait_for(lambda: len(played.emitter.safety("gas1")) >= 2, timeout=10, what="gas1 back")
    levels = [(e["prev_level"], e["level"]) for e in played.emitter.safety("gas1")]
    assert levels[:2] == [("normal", "comm_lost"), ("comm_lost", "normal")]
    assert played.emitter.safety("co1") == []


def test_undervoltage_on_a_dlt645_meter_warns(tmp_path: Any) -> None:
    scenario = sc.load_scenario("undervoltage")
    voltage = ThresholdRule(warn=235.4, low_warn=198.0, hysteresis=2.0, on_delay_s=0.5, off_delay_s=0.5,
                            latch=False)
    h, _ = hub(SafetyConfig(voltage_v=voltage))
    with Dlt645MeterSimulator([d.address for d in scenario.devices if d.address]) as sim:
        cfg = SerialBusConfig(port=sim.path, summary_period_s=1, devices=[
            Dlt645DeviceConfig(id="meter1", address="123456789012", interval_s=0.2, timeout_s=0.5,
                               data_ids=["02010100", "02020100"])])
        bus = SerialBusInput(cfg, hub=h)
        with Played("undervoltage", sim, bus, speed=120) as played:  # sag from 1 s to 6 s
            wait_for(lambda: played.emitter.safety("meter1"), timeout=10, what="undervoltage warning")
            wait_for(lambda: len(played.emitter.safety("meter1")) >= 2, timeout=15, what="voltage back")
    warn, back = played.emitter.safety("meter1")[:2]
    assert warn["ch"] == "voltage" and warn["level"] == "warn" and warn["value"] == pytest.approx(186.0)
    assert warn["threshold"] == 198.0 and back["level"] == "normal"


def test_modbus_simulator_cli_refuses_a_scenario_for_the_other_protocol() -> None:
    with pytest.raises(SystemExit, match="for dlt645, not modbus"):
        modbus_main(["--scenario", "undervoltage"])
    with pytest.raises(SystemExit, match="give --device or --scenario"):
        modbus_main([])


@pytest.mark.parametrize("scenario_line", ["slow_leak"], indirect=True)
def test_no_summary_period_is_lost_when_polls_outpace_periods(scenario_line: ModbusBusSimulator) -> None:
    # Regression: a sample arriving after a period boundary used to roll the period over and drop
    # its summaries (TelemetryAggregator.add() returned them; the bus ignored them).
    cfg = SerialBusConfig(port=scenario_line.path, summary_period_s=1, devices=[
        ModbusDeviceConfig(id="gas1", unit=1, profile="gas_generic", interval_s=0.2, timeout_s=0.3)])
    h, _ = hub()
    with Played("slow_leak", scenario_line, SerialBusInput(cfg, hub=h), speed=600) as played:
        wait_for(lambda: len(played.emitter.readings("gas1", "lel")) >= 4, timeout=10, what="4 summaries")
    lel = played.emitter.readings("gas1", "lel")
    ends = list(played.emitter.telemetry_ends)
    assert len(ends) == len(lel)
    assert [(b - a).total_seconds() for a, b in itertools.pairwise(ends)] == [1.0] * (len(ends) - 1)
    assert all(r["n"] >= 3 for r in lel[1:]), lel  # 5 polls a second; the first period may be partial
    # The leak rises 10 %LEL a wall second at speed 600: each summary's mean is above the one before.
    means = [r["mean"] for r in lel]
    assert means == sorted(means) and means[-1] > means[0]
