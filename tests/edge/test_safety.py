"""Safety rules with a fake clock: levels, hysteresis, minimum durations, latching, EN 50291, faults."""

from __future__ import annotations

import pytest

from edge.clock import FakeClock
from edge.safety import CoRule, SafetyConfig, SafetyEngine, Transition
from firmware_bridge.contract import SafetyEvent, SafetyLevel
from firmware_bridge.modbus_profiles import Quantity

L = SafetyLevel
DEV = "gas1"


def engine(config: SafetyConfig | None = None) -> tuple[SafetyEngine, FakeClock]:
    clock = FakeClock()
    return SafetyEngine(config or SafetyConfig(), clock), clock


def feed(
    eng: SafetyEngine, clock: FakeClock, quantity: Quantity, values: list[float], step_s: float = 1.0,
    device: str = DEV, channel: str = "ch", **kw: object,
) -> list[Transition]:
    out: list[Transition] = []
    for v in values:
        out += eng.observe(device, channel, quantity, v, **kw)  # type: ignore[arg-type]
        clock.advance(step_s)
    return out


def test_gas_levels_and_actions() -> None:
    eng, clock = engine()
    out = feed(eng, clock, Quantity.GAS_LEL, [0, 5, 26])
    assert [t.level for t in out] == [L.ALARM]
    assert set(out[0].actions) == {"buzzer.on", "fan.on"}
    assert out[0].threshold == 25.0 and out[0].rule == "gas.lel"
    out = feed(eng, clock, Quantity.GAS_LEL, [51])
    assert [t.level for t in out] == [L.ALARM2]
    assert out[0].prev_level == L.ALARM
    assert out[0].actions == ("valve.close",)
    assert eng.outputs() == {"buzzer": True, "fan": True, "valve_closed": True}


def test_transition_body_is_a_valid_contract_event() -> None:
    eng, clock = engine()
    (t,) = feed(eng, clock, Quantity.GAS_LEL, [30], unit="%LEL")
    event = SafetyEvent(point="p1", device=DEV, seq=1, ts=clock.now(), clock_synced=True, **t.body())
    assert event.level == L.ALARM and event.value == 30 and event.unit == "%LEL"
    assert event.latched is True


def test_wobble_at_threshold_gives_one_event() -> None:
    eng, clock = engine(SafetyConfig(gas_lel=SafetyConfig().gas_lel.model_copy(update={"latch": False})))
    wobble = [24.5, 25.2, 24.1, 25.0, 23.9, 25.5, 24.0] * 10
    out = feed(eng, clock, Quantity.GAS_LEL, wobble)
    assert [t.level for t in out] == [L.ALARM]
    # Clears only after off_delay (30 s) below threshold - hysteresis (23).
    out = feed(eng, clock, Quantity.GAS_LEL, [22.0] * 29)
    assert out == []
    out = feed(eng, clock, Quantity.GAS_LEL, [22.0] * 3)
    assert [t.level for t in out] == [L.NORMAL]


def test_on_delay_filters_a_short_spike() -> None:
    eng, clock = engine()
    # Temperature needs 10 s above 75 °C (detectors must alarm within 40 s).
    out = feed(eng, clock, Quantity.TEMPERATURE_C, [80] * 5 + [50] * 20, channel="temp1")
    assert out == []
    out = feed(eng, clock, Quantity.TEMPERATURE_C, [80] * 12, channel="temp1")
    assert [t.level for t in out] == [L.ALARM]
    assert eng.level(DEV, "temp1") == L.ALARM


def test_tick_confirms_pending_without_new_sample() -> None:
    eng, clock = engine()
    assert eng.observe(DEV, "temp1", Quantity.TEMPERATURE_C, 66.0) == []
    clock.advance(11)
    out = eng.tick()
    assert [t.level for t in out] == [L.WARN]


def test_alarm_latches_until_acknowledged() -> None:
    eng, clock = engine()
    feed(eng, clock, Quantity.GAS_LEL, [30])
    out = feed(eng, clock, Quantity.GAS_LEL, [0] * 60)
    assert out == []  # gas gone, alarm latched
    assert eng.level(DEV, "ch") == L.ALARM
    out = eng.acknowledge("button")
    assert [t.level for t in out] == [L.NORMAL]
    assert "buzzer.off" in out[0].actions and "fan.off" in out[0].actions
    assert out[0].message == "acknowledged (button)"


def test_ack_while_gas_present_silences_buzzer_but_keeps_alarm_and_valve() -> None:
    eng, clock = engine()
    feed(eng, clock, Quantity.GAS_LEL, [55])
    assert eng.outputs()["valve_closed"]
    out = eng.acknowledge("server")
    assert [t.level for t in out] == [L.ALARM2]  # still measured: the ack is reported, level kept
    assert out[0].actions == ("buzzer.off",)
    assert eng.outputs() == {"buzzer": False, "fan": True, "valve_closed": True}
    # Gas clears: level follows (no second ack needed), the valve stays closed.
    out = feed(eng, clock, Quantity.GAS_LEL, [0] * 40)
    assert [t.level for t in out] == [L.NORMAL]
    assert eng.outputs() == {"buzzer": False, "fan": False, "valve_closed": True}


def test_rise_after_ack_sounds_again() -> None:
    eng, clock = engine()
    feed(eng, clock, Quantity.GAS_LEL, [30])
    eng.acknowledge()
    assert not eng.outputs()["buzzer"]
    out = feed(eng, clock, Quantity.GAS_LEL, [60])
    assert out[0].level == L.ALARM2 and "buzzer.on" in out[0].actions


def test_residual_current_warn_and_alarm() -> None:
    eng, clock = engine()
    out = feed(eng, clock, Quantity.RESIDUAL_CURRENT_MA, [150, 320, 320, 320], channel="residual")
    assert [t.level for t in out] == [L.WARN]
    assert out[0].actions == ()  # a warning notifies, it does not sound
    out = feed(eng, clock, Quantity.RESIDUAL_CURRENT_MA, [520, 520, 520], channel="residual")
    assert [t.level for t in out] == [L.ALARM]
    assert out[0].actions == ("buzzer.on",)


def test_voltage_out_of_band_both_sides_not_latched() -> None:
    eng, clock = engine()
    out = feed(eng, clock, Quantity.VOLTAGE_V, [220] * 3 + [190] * 12, channel="voltage")
    assert [(t.level, t.threshold) for t in out] == [(L.WARN, 198.0)]
    out = feed(eng, clock, Quantity.VOLTAGE_V, [221] * 12, channel="voltage")
    assert [t.level for t in out] == [L.NORMAL]
    out = feed(eng, clock, Quantity.VOLTAGE_V, [240] * 12, channel="voltage")
    assert [(t.level, t.threshold) for t in out] == [(L.WARN, 235.4)]


def test_current_rating() -> None:
    eng, clock = engine()
    assert feed(eng, clock, Quantity.CURRENT_A, [40] * 40, channel="current") == []  # no rating: off
    out = feed(eng, clock, Quantity.CURRENT_A, [17] * 31, channel="i2", rated_a=16.0)
    assert [t.level for t in out] == [L.WARN]
    out = feed(eng, clock, Quantity.CURRENT_A, [24] * 31, channel="i2", rated_a=16.0)
    assert [t.level for t in out] == [L.ALARM]


def test_fault_and_comm_lost_are_never_clear() -> None:
    eng, clock = engine()
    feed(eng, clock, Quantity.GAS_LEL, [3])
    out = eng.observe(DEV, "ch", Quantity.GAS_LEL, None, fault=True)
    assert [t.level for t in out] == [L.FAULT]
    out = feed(eng, clock, Quantity.GAS_LEL, [3])
    assert [(t.prev_level, t.level) for t in out] == [(L.FAULT, L.NORMAL)]
    out = eng.comm_lost(DEV)
    assert [t.level for t in out] == [L.COMM_LOST]
    assert eng.comm_lost(DEV) == []  # reported once
    eng.comm_restored(DEV)
    out = feed(eng, clock, Quantity.GAS_LEL, [3])
    assert [(t.prev_level, t.level) for t in out] == [(L.COMM_LOST, L.NORMAL)]


def test_latched_alarm_survives_comm_loss() -> None:
    eng, clock = engine()
    feed(eng, clock, Quantity.GAS_LEL, [30])
    out = eng.comm_lost(DEV)
    assert out[0].level == L.COMM_LOST and out[0].latched
    assert eng.outputs()["buzzer"]  # still sounding
    eng.comm_restored(DEV)
    out = feed(eng, clock, Quantity.GAS_LEL, [0])
    assert [t.level for t in out] == [L.ALARM]  # back to the latched alarm, not normal


def test_device_alarm_bit_raises_level() -> None:
    eng, clock = engine()
    out = feed(eng, clock, Quantity.GAS_LEL, [10], device_level=L.ALARM2)
    assert [t.level for t in out] == [L.ALARM2]
    assert "valve.close" in out[0].actions


def minutes_to_alarm(ppm: float, limit_min: float, step_s: float = 10.0) -> float | None:
    eng, clock = engine()
    elapsed = 0.0
    while elapsed <= limit_min * 60:
        out = eng.observe(DEV, "co", Quantity.CO_PPM, ppm)
        if any(t.level == L.ALARM for t in out):
            return elapsed / 60
        clock.advance(step_s)
        elapsed += step_s
    return None


def test_en50291_points() -> None:
    assert minutes_to_alarm(30, 120) is None
    t50 = minutes_to_alarm(50, 120)
    assert t50 is not None and 60 <= t50 <= 90
    t100 = minutes_to_alarm(100, 60)
    assert t100 is not None and 10 <= t100 <= 40
    t300 = minutes_to_alarm(300, 10, step_s=5)
    assert t300 is not None and t300 < 3


def test_co_curve_is_monotonic_and_decays() -> None:
    rule = CoRule()
    times = [rule.minutes_to_alarm(c) for c in (45, 50, 75, 100, 200, 300, 1000)]
    assert times == sorted(times, reverse=True)
    assert rule.minutes_to_alarm(1000) >= rule.min_minutes
    eng, clock = engine()
    for _ in range(6 * 20):  # 20 min at 100 ppm: most of the dose, no alarm yet
        assert eng.observe(DEV, "co", Quantity.CO_PPM, 100) == []
        clock.advance(10)
    for _ in range(6 * 60):  # an hour of fresh air
        eng.observe(DEV, "co", Quantity.CO_PPM, 0)
        clock.advance(10)
    for _ in range(6 * 10):  # 10 more minutes at 100 ppm: the old dose has decayed away
        assert eng.observe(DEV, "co", Quantity.CO_PPM, 100) == []
        clock.advance(10)


def test_thresholds_are_configurable() -> None:
    cfg = SafetyConfig.model_validate(
        {"gas_lel": {"alarm": 10.0, "alarm2": 20.0}, "residual_current_ma": {"enabled": False}}
    )
    eng, clock = engine(cfg)
    assert [t.level for t in feed(eng, clock, Quantity.GAS_LEL, [12])] == [L.ALARM]
    assert feed(eng, clock, Quantity.RESIDUAL_CURRENT_MA, [900] * 5, channel="r") == []
    with pytest.raises(ValueError):
        SafetyConfig.model_validate({"gas_lel": {"alarm": 10.0, "bogus": 1}})
