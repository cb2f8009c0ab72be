"""Server-side rules: thresholds, durations, trends, stuck and out-of-range sensors, liveness, camera vs card."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from edge.clock import FakeClock
from edge.safety import SafetyConfig, SafetyEngine, Transition
from firmware_bridge.contract import (
    DeviceState,
    DeviceStatus,
    Reading,
    SafetyEvent,
    SafetyLevel,
    TelemetryEvent,
    ack_source,
)
from firmware_bridge.modbus_profiles import Quantity
from server.alerts.rules import (
    ConditionKey,
    Hazard,
    Observation,
    RuleEngine,
    Severity,
    camera_card_check,
)

T0 = datetime(2026, 6, 1, 3, 0, tzinfo=UTC)
P, SENSOR, AGENT = "pt-001", "gas-1", "agent"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def only(obs: list[Observation], condition: str) -> list[Observation]:
    return [o for o in obs if o.key.condition == condition]


def feed(engine: RuleEngine, ch: str, unit: str, values: list[float], step_s: float = 60.0,
         start_s: float = 0.0, device: str = SENSOR) -> list[Observation]:
    out: list[Observation] = []
    for i, v in enumerate(values):
        out += engine.on_reading(P, device, ch, at(start_s + i * step_s), v, unit)
    return out


def test_gas_thresholds_levels_and_hysteresis() -> None:
    e = RuleEngine()
    steps = [(5.0, None), (26.0, Severity.ALARM), (55.0, Severity.CRITICAL), (49.0, Severity.CRITICAL),
             (47.0, Severity.ALARM), (24.0, Severity.ALARM), (22.9, "cleared"), (10.0, None)]
    for i, (value, expect) in enumerate(steps):
        obs = only(e.on_reading(P, SENSOR, "lel", at(i * 10), value, "%LEL"), "lel:threshold")
        if expect is None:
            assert obs == []
        elif expect == "cleared":
            assert [o.raised for o in obs] == [False]
        else:
            assert len(obs) == 1 and obs[0].raised and obs[0].severity == expect, (value, obs)
            assert obs[0].hazard == Hazard.GAS and obs[0].key == ConditionKey(P, SENSOR, "lel:threshold")
            assert obs[0].value == value
    first = only(e.on_reading(P, SENSOR, "lel", at(500), 30.0, "%LEL"), "lel:threshold")[0]
    assert first.threshold == 25.0 and "25" in first.message and "可燃气体" in first.message


def test_channel_names_do_not_matter_units_choose_the_rule() -> None:
    e = RuleEngine()
    assert only(e.on_reading(P, SENSOR, "gas.lel", at(0), 30.0, "%LEL"), "gas.lel:threshold")[0].raised
    assert e.on_reading(P, SENSOR, "mystery", at(0), 30.0, None) == []


def test_co_needs_the_en50291_durations() -> None:
    e = RuleEngine()
    # 120 ppm: no alarm before 40 min, alarm at 40 min (EN 50291 allows up to 40 min at 100 ppm).
    obs = feed(e, "co", "ppm", [120.0] * 41)
    raised = [o for o in only(obs, "co:threshold") if o.raised]
    assert raised and raised[0].at == at(40 * 60) and raised[0].severity == Severity.ALARM
    # 30 ppm for three hours never alarms.
    e2 = RuleEngine()
    assert only(feed(e2, "co", "ppm", [30.0] * 180), "co:threshold") == []
    # 350 ppm alarms after 3 min.
    e3 = RuleEngine()
    raised = [o for o in only(feed(e3, "co", "ppm", [350.0] * 5), "co:threshold") if o.raised]
    assert raised[0].at == at(180)


def test_voltage_low_and_high_and_electric_levels() -> None:
    e = RuleEngine()
    low = only(e.on_reading(P, "meter", "v", at(0), 190.0, "V"), "v:threshold")[0]
    assert low.raised and low.severity == Severity.WARNING and "低于" in low.message and low.hazard == Hazard.ELECTRIC
    assert only(e.on_reading(P, "meter", "v", at(60), 221.0, "V"), "v:threshold")[0].raised is False
    assert only(e.on_reading(P, "meter", "v", at(120), 240.0, "V"), "v:threshold")[0].raised
    res = only(e.on_reading(P, "efd", "residual", at(0), 320.0, "mA"), "residual:threshold")[0]
    assert res.severity == Severity.WARNING
    res = only(e.on_reading(P, "efd", "residual", at(60), 520.0, "mA"), "residual:threshold")[0]
    assert res.severity == Severity.ALARM
    temp = only(e.on_reading(P, "efd", "temp1", at(0), 76.0, "degC"), "temp1:threshold")[0]
    assert temp.severity == Severity.ALARM


def test_slow_gas_rise_below_the_alarm_raises_a_trend() -> None:
    e = RuleEngine()
    values = [1.0 + 0.5 * i for i in range(20)]  # 1 → 10.5 %LEL at 0.5 %LEL/min, never near 25
    obs = feed(e, "lel", "%LEL", values)
    trend = only(obs, "lel:trend")
    assert trend and all(o.raised for o in trend)
    assert trend[0].severity == Severity.WARNING and trend[0].hazard == Hazard.GAS
    assert only(obs, "lel:threshold") == []
    first_at = (trend[0].at - T0).total_seconds() / 60
    assert 7 <= first_at <= 10  # needs half a window of evidence and 3 %LEL of rise
    # The rise stops: the trend clears.
    later = feed(e, "lel", "%LEL", [10.5] * 16, start_s=20 * 60)
    assert [o.raised for o in only(later, "lel:trend")][-1] is False


def test_noise_gives_no_trend() -> None:
    rng = random.Random(5)
    e = RuleEngine()
    obs = feed(e, "lel", "%LEL", [max(0.0, rng.gauss(0.4, 0.3)) for _ in range(240)])
    assert only(obs, "lel:trend") == []


def test_stuck_sensor_and_its_exemptions() -> None:
    e = RuleEngine()
    obs = feed(e, "v", "V", [220.0] * 62)  # exactly the same voltage every minute for an hour
    stuck = only(obs, "v:stuck")
    assert stuck[0].at == at(3600) and stuck[0].raised
    back = only(e.on_reading(P, SENSOR, "v", at(62 * 60), 220.4, "V"), "v:stuck")
    assert [o.raised for o in back] == [False]
    # Summaries that move inside the minute are alive even if the last value repeats.
    e2 = RuleEngine()
    for i in range(120):
        assert only(e2.on_reading(P, SENSOR, "v", at(i * 60), 220.0, "V", lo=219.5, hi=220.6), "v:stuck") == []
    # Clean air reads 0 %LEL all day: not stuck. A frozen 3.2 %LEL is.
    e3 = RuleEngine()
    assert only(feed(e3, "lel", "%LEL", [0.0] * 30, step_s=3600), "lel:stuck") == []
    e4 = RuleEngine()
    frozen = only(feed(e4, "lel", "%LEL", [3.2] * 26, step_s=3600), "lel:stuck")
    assert frozen and frozen[0].at == at(24 * 3600)


def test_out_of_range_is_a_sensor_fault_not_a_gas_alarm() -> None:
    e = RuleEngine()
    obs = e.on_reading(P, SENSOR, "lel", at(0), 6553.5, "%LEL")
    assert [o.key.condition for o in obs] == ["lel:range"]
    assert obs[0].raised and "超出量程" in obs[0].message
    nan = e.on_reading(P, SENSOR, "lel", at(30), float("nan"), "%LEL")
    assert [o.key.condition for o in nan] == ["lel:range"]
    ok = e.on_reading(P, SENSOR, "lel", at(60), 1.0, "%LEL")
    assert [(o.key.condition, o.raised) for o in ok] == [("lel:range", False)]


def test_replayed_readings_are_ignored() -> None:
    e = RuleEngine()
    assert e.on_reading(P, SENSOR, "lel", at(60), 30.0, "%LEL")
    assert e.on_reading(P, SENSOR, "lel", at(60), 30.0, "%LEL") == []
    assert e.on_reading(P, SENSOR, "lel", at(0), 3.0, "%LEL") == []


def test_telemetry_event_goes_through_the_contract_model() -> None:
    e = RuleEngine()
    ev = TelemetryEvent(point=P, device=SENSOR, seq=1, ts=at(0), clock_synced=True, readings=[
        Reading(ch="lel", unit="%LEL", v=27.0, t=at(0)),
        Reading(ch="residual", unit="mA", v=510.0, min=480.0, mean=500.0, max=515.0, n=60, period_s=60),
    ])
    obs = e.on_telemetry(ev, received_at=at(2))
    conds = {o.key.condition: o.severity for o in obs if o.raised}
    assert conds == {"lel:threshold": Severity.ALARM, "residual:threshold": Severity.ALARM}


def _status(state: DeviceState, ts: datetime, role: str = "agent", hb: int | None = 60,
            device: str = AGENT) -> DeviceStatus:
    return DeviceStatus(point=P, device=device, ts=ts, state=state, role=role, heartbeat_s=hb)  # type: ignore[arg-type]


def test_agent_offline_within_two_heartbeats() -> None:
    e = RuleEngine()
    assert e.on_status(_status(DeviceState.ONLINE, at(0)), at(0)) == []
    assert e.tick(at(119)) == []
    obs = e.tick(at(120))
    assert [(o.key, o.raised) for o in obs] == [(ConditionKey(P, AGENT, "device:offline"), True)]
    assert obs[0].hazard == Hazard.DEVICE
    assert e.tick(at(180)) == []  # raised once, not on every tick
    back = e.on_status(_status(DeviceState.ONLINE, at(200)), at(200))
    assert [(o.key.condition, o.raised) for o in back] == [("device:offline", False)]


def test_last_will_raises_at_once_and_heartbeat_interval_is_the_agents() -> None:
    e = RuleEngine()
    e.on_status(_status(DeviceState.ONLINE, at(0), hb=10), at(0))
    assert e.tick(at(19)) == []
    assert e.tick(at(20))  # 2 × its own 10 s heartbeat
    e2 = RuleEngine()
    e2.on_status(_status(DeviceState.ONLINE, at(0)), at(0))
    will = e2.on_status(_status(DeviceState.OFFLINE, at(5)), at(5))
    assert [(o.key.condition, o.raised) for o in will] == [("device:offline", True)]
    assert e2.tick(at(500)) == []  # already raised by the will


def _telemetry(seq: int, t: datetime, device: str = SENSOR) -> TelemetryEvent:
    return TelemetryEvent(point=P, device=device, seq=seq, ts=t, clock_synced=True,
                          readings=[Reading(ch="lel", unit="%LEL", v=0.3)])


def test_stale_sensor_is_not_a_silent_agent() -> None:
    e = RuleEngine()
    e.on_status(_status(DeviceState.ONLINE, at(0)), at(0))
    e.on_telemetry(_telemetry(1, at(0)), at(0))
    obs: list[Observation] = []
    for s in range(60, 301, 60):  # the agent keeps beating; the sensor says nothing more
        e.on_status(_status(DeviceState.ONLINE, at(s)), at(s))
        obs += e.tick(at(s))
    assert [(o.key, o.raised) for o in obs] == [(ConditionKey(P, SENSOR, "device:stale"), True)]
    assert obs[0].at == at(120)
    back = e.on_telemetry(_telemetry(2, at(310)), at(310))
    assert [(o.key.condition, o.raised) for o in back] == [("device:stale", False)]


def test_silent_agent_raises_offline_only() -> None:
    e = RuleEngine()
    e.on_status(_status(DeviceState.ONLINE, at(0)), at(0))
    e.on_telemetry(_telemetry(1, at(0)), at(0))
    obs = e.tick(at(120)) + e.tick(at(600))
    assert [(o.key.device, o.key.condition) for o in obs] == [(AGENT, "device:offline")]


def test_edge_safety_events_mirror_levels_and_faults() -> None:
    e = RuleEngine()

    def ev(seq: int, level: SafetyLevel, prev: SafetyLevel | None, value: float | None) -> SafetyEvent:
        return SafetyEvent(point=P, device=SENSOR, seq=seq, ts=at(seq), clock_synced=True, ch="lel",
                           level=level, prev_level=prev, rule="gas.lel", value=value, unit="%LEL", threshold=25.0)

    alarm = e.on_safety(ev(1, SafetyLevel.ALARM, SafetyLevel.NORMAL, 27.0), at(1))
    assert [(o.key.condition, o.raised, o.severity, o.hazard, o.source) for o in alarm] == [
        ("lel:edge", True, Severity.ALARM, Hazard.GAS, "edge")]
    fault = e.on_safety(ev(2, SafetyLevel.FAULT, SafetyLevel.ALARM, None), at(2))
    assert [(o.key.condition, o.raised) for o in fault] == [("lel:edge_fault", True)]  # the alarm is not cleared
    crit = e.on_safety(ev(3, SafetyLevel.ALARM2, SafetyLevel.FAULT, 52.0), at(3))
    assert [(o.key.condition, o.raised) for o in crit] == [("lel:edge", True), ("lel:edge_fault", False)]
    assert crit[0].severity == Severity.CRITICAL
    normal = e.on_safety(ev(4, SafetyLevel.NORMAL, SafetyLevel.ALARM2, 1.0), at(4))
    assert [(o.key.condition, o.raised) for o in normal] == [("lel:edge", False), ("lel:edge_fault", False)]
    elec = e.on_safety(SafetyEvent(point=P, device="efd", seq=5, ts=at(5), clock_synced=True, ch="residual",
                                   level=SafetyLevel.WARN, rule="electric.residual_current", value=320.0), at(5))
    assert elec[0].hazard == Hazard.ELECTRIC and elec[0].severity == Severity.WARNING


def test_an_acknowledgement_at_the_edge_names_the_local_button_but_not_the_servers_echo() -> None:
    e = RuleEngine()
    edge = SafetyEngine(SafetyConfig(), FakeClock())
    raised = edge.observe(SENSOR, "lel", Quantity.GAS_LEL, 31.0, "%LEL")
    local = edge.acknowledge("button")  # the real edge's transitions, as the agent publishes them
    echo = SafetyEngine(SafetyConfig(), FakeClock())
    echo.observe(SENSOR, "lel", Quantity.GAS_LEL, 31.0, "%LEL")
    server = echo.acknowledge("server:ack-1")

    def event(t: Transition, seq: int) -> SafetyEvent:
        return SafetyEvent.model_validate({"point": P, "device": t.device_id, "seq": seq, "ts": at(seq),
                                           "clock_synced": True, **t.body()})

    first = e.on_safety(event(raised[0], 1), at(1))
    assert [o.acknowledged_by for o in first] == [None]
    by_button = e.on_safety(event(local[0], 2), at(2))
    assert [(o.key.condition, o.raised, o.acknowledged_by) for o in by_button] == [("lel:edge", True, "local:button")]
    assert "acknowledged" not in by_button[0].message  # the alert keeps its own words
    assert [o.acknowledged_by for o in e.on_safety(event(server[0], 3), at(3))] == [None]
    assert ack_source("acknowledged (server:ack-1)") == "server:ack-1" and ack_source("现场燃气报警") is None


def test_camera_versus_card() -> None:
    raised = camera_card_check(P, "cam-1", T0, taps=40, entries=30)
    assert raised is not None and raised.raised and raised.hazard == Hazard.DINERS
    assert "40" in raised.message and "30" in raised.message
    within = camera_card_check(P, "cam-1", T0, taps=36, entries=30)  # 30 × 1.1 + 3 = 36
    assert within is not None and not within.raised
    few = camera_card_check(P, "cam-1", T0, taps=6, entries=0)
    assert few is not None and not few.raised
    assert camera_card_check(P, "cam-1", T0, taps=40, entries=None) is None
