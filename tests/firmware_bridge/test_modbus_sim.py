"""The Modbus profiles against pymodbus's own serial server on a pty (8N1), through our bus client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from edge.clock import SystemClock
from edge.inputs.bus import ModbusDeviceConfig, ModbusDriver, SerialBusConfig, SerialLink
from edge.safety import SafetyLevel
from firmware_bridge.sim.modbus import ModbusBusSimulator, main


@pytest.fixture
def line() -> Iterator[tuple[ModbusBusSimulator, SerialLink]]:
    sim = ModbusBusSimulator({1: "gas_generic", 2: "co_generic", 3: "chint_ddsu666", 4: "electrical_fire_generic"})
    sim.start()
    cfg = SerialBusConfig(port=sim.path, devices=[ModbusDeviceConfig(id="g", unit=1, profile="gas_generic")])
    link = SerialLink(cfg, SystemClock())
    link.open()
    try:
        yield sim, link
    finally:
        link.close()
        sim.stop()


def poll(link: SerialLink, unit: int, profile: str) -> dict[str, object]:
    result = ModbusDriver(ModbusDeviceConfig(id="d", unit=unit, profile=profile, timeout_s=1.0)).poll(link, 1)
    assert result.kind == "ok", result
    return {s.channel: s for s in result.samples}


def test_all_profiles_against_pymodbus_server(line: tuple[ModbusBusSimulator, SerialLink]) -> None:
    sim, link = line
    sim.set(1, {"lel": 26.3, "lel.low_setpoint": 25.0, "lel.high_setpoint": 50.0}, {"low_alarm"})
    sim.set(2, {"co": 120.0})
    sim.set(3, {"voltage": 221.3, "current": 4.25, "power": 0.94, "frequency": 49.98, "energy.import": 1234.5,
                "energy.export": 2.5})
    sim.set(4, {"residual": 320.0, "temp1": 61.5, "temp2": -3.0, "residual.setpoint": 500.0},
            {"temp3_probe_fault"})

    gas = poll(link, 1, "gas_generic")
    assert gas["lel"].value == pytest.approx(26.3)  # type: ignore[attr-defined]
    assert gas["lel"].device_level == SafetyLevel.ALARM  # type: ignore[attr-defined]
    assert gas["lel.high_setpoint"].value == pytest.approx(50.0)  # type: ignore[attr-defined]
    assert "status.low_alarm" in gas

    assert poll(link, 2, "co_generic")["co"].value == 120  # type: ignore[attr-defined]

    meter = poll(link, 3, "chint_ddsu666")
    expected = {"voltage": 221.3, "current": 4.25, "power": 0.94, "frequency": 49.98, "energy.import": 1234.5,
                "energy.export": 2.5}
    for channel, value in expected.items():
        assert meter[channel].value == pytest.approx(value, abs=1e-4)  # type: ignore[attr-defined]

    fire = poll(link, 4, "electrical_fire_generic")
    assert fire["residual"].value == 320  # type: ignore[attr-defined]
    assert fire["temp1"].value == pytest.approx(61.5)  # type: ignore[attr-defined]
    assert fire["temp2"].value == pytest.approx(-3.0)  # type: ignore[attr-defined]
    assert fire["temp3"].fault and not fire["temp1"].fault  # type: ignore[attr-defined]
    assert fire["residual.setpoint"].value == 500  # type: ignore[attr-defined]


def test_ddsu666_answers_fc04_too(line: tuple[ModbusBusSimulator, SerialLink]) -> None:
    from firmware_bridge import modbus_profiles as mp

    sim, link = line
    sim.set(3, {"voltage": 229.9})
    base = mp.load_profile("chint_ddsu666")
    fc4 = mp.parse_profile(base.model_dump(by_alias=True) | {"function_code": 4})
    driver = ModbusDriver(ModbusDeviceConfig(id="d", unit=3, profile="chint_ddsu666"))
    driver.profile, driver.plan = fc4, mp.read_plan(fc4)
    result = driver.poll(link, 1)
    assert result.kind == "ok"
    assert {s.channel: s.value for s in result.samples}["voltage"] == pytest.approx(229.9, abs=1e-4)


def test_silent_and_missing_devices(line: tuple[ModbusBusSimulator, SerialLink]) -> None:
    sim, link = line
    sim.silence(1)
    dead = ModbusDriver(ModbusDeviceConfig(id="d", unit=1, profile="gas_generic", timeout_s=0.3)).poll(link, 0)
    assert dead.kind == "no_answer"
    sim.silence(1, False)
    assert ModbusDriver(ModbusDeviceConfig(id="d", unit=1, profile="gas_generic")).poll(link, 0).kind == "ok"


def test_cli_rejects_bad_arguments() -> None:
    with pytest.raises(SystemExit):
        main(["--device", "1=gas_generic", "--set", "nonsense"])
