"""The simulated input, driven by a fake clock: windows, rates, decisions, telemetry, determinism."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from edge.clock import FakeClock
from edge.config import SimulatedInputConfig, parse_config
from edge.events import Lane
from edge.inputs.simulated import MAX_CATCH_UP_SECONDS, SimEvent, SimulatedSource
from edge.outbox import Outbox
from firmware_bridge.contract import Channel, Meal, TapDecision

LUNCH_START_UTC = datetime(2026, 6, 1, 3, 0, tzinfo=UTC)  # 11:00 in Asia/Shanghai


def sim_cfg(**over: Any) -> SimulatedInputConfig:
    data = {"point": {"id": "mp-0001"}, "outbox": {"path": "x.db"}, "inputs": [{"type": "simulated", **over}]}
    cfg = parse_config(data)
    return cfg.inputs[0]


def run_for(src: SimulatedSource, clock: FakeClock, seconds: float, step: float = 1.0) -> list[SimEvent]:
    out: list[SimEvent] = []
    end = clock.monotonic() + seconds
    while clock.monotonic() < end:
        clock.advance(step)
        out += src.due(clock.now())
    return out


def taps(events: list[SimEvent]) -> list[SimEvent]:
    return [e for e in events if e.channel is Channel.DINER]


def test_same_seed_same_events() -> None:
    runs = []
    for _ in range(2):
        clock = FakeClock(LUNCH_START_UTC)
        src = SimulatedSource(sim_cfg(seed=7, rate_per_min=30), "mp-0001", clock.now())
        runs.append([(e.ts, e.body.get("card_id")) for e in run_for(src, clock, 120)])
    assert runs[0] == runs[1]
    assert len(runs[0]) > 10


def test_tap_rate_matches_the_configured_mean() -> None:
    clock = FakeClock(LUNCH_START_UTC)
    src = SimulatedSource(sim_cfg(seed=1, rate_per_min=60, telemetry_interval_s=None), "mp-0001", clock.now())
    n = len(taps(run_for(src, clock, 600, step=5)))
    assert 600 - 3 * 25 < n < 600 + 3 * 25  # Poisson: mean 600, sd about 24.5


def test_taps_only_inside_meal_windows() -> None:
    start = LUNCH_START_UTC - timedelta(minutes=30)  # 10:30 local
    clock = FakeClock(start)
    src = SimulatedSource(sim_cfg(seed=3, rate_per_min=20, telemetry_interval_s=None), "mp-0001", clock.now())
    events = taps(run_for(src, clock, 8 * 3600, step=30))
    local_hours = Counter((e.ts + timedelta(hours=8)).hour for e in events)
    assert set(local_hours) == {11, 12, 17, 18}  # default windows 11:00-13:00 and 17:00-19:00
    assert {e.body["meal"] for e in events} == {Meal.LUNCH, Meal.DINNER}
    assert min(e.ts for e in events) >= LUNCH_START_UTC


def test_second_tap_in_a_meal_is_a_repeat_and_unknown_cards_are_flagged() -> None:
    clock = FakeClock(LUNCH_START_UTC)
    src = SimulatedSource(
        sim_cfg(seed=5, rate_per_min=30, card_pool=4, unknown_ratio=0.2, telemetry_interval_s=None),
        "mp-0001", clock.now(),
    )
    events = taps(run_for(src, clock, 600))
    decisions = Counter(e.body["decision"] for e in events)
    assert decisions[TapDecision.ACCEPTED] == 4  # each of the 4 cards once for lunch
    assert decisions[TapDecision.REPEAT] > 0
    assert decisions[TapDecision.UNKNOWN_CARD] > 0
    for e in events:
        known = e.body["card_id"] in src.cards
        assert known == (e.body["decision"] is not TapDecision.UNKNOWN_CARD)
        assert ("elder_id" in e.body) == known


def test_telemetry_every_interval_with_plausible_readings() -> None:
    clock = FakeClock(LUNCH_START_UTC)
    src = SimulatedSource(sim_cfg(seed=2, rate_per_min=1, telemetry_interval_s=10), "mp-0001", clock.now())
    tele = [e for e in run_for(src, clock, 100) if e.channel is Channel.TELEMETRY]
    assert [(e.ts - LUNCH_START_UTC).total_seconds() for e in tele] == [float(s) for s in range(0, 101, 10)]
    assert all(e.lane is Lane.BULK and e.device == "sim-sensor" for e in tele)
    values = {r["ch"]: r["v"] for r in tele[0].body["readings"]}
    assert 0 <= values["gas.lel"] < 5
    assert 198 <= values["elec.voltage"] <= 235.4
    assert 0 <= values["elec.residual"] < 300


def test_a_stalled_clock_does_not_replay_hours_of_events() -> None:
    clock = FakeClock(LUNCH_START_UTC)
    src = SimulatedSource(sim_cfg(seed=4, rate_per_min=60, telemetry_interval_s=None), "mp-0001", clock.now())
    clock.advance(3600)
    events = src.due(clock.now())
    assert all(e.ts >= clock.now() - timedelta(seconds=MAX_CATCH_UP_SECONDS) for e in events)
    assert len(events) < 3 * MAX_CATCH_UP_SECONDS


def test_every_simulated_event_is_accepted_by_the_outbox(tmp_path: Path) -> None:
    clock = FakeClock(LUNCH_START_UTC)
    src = SimulatedSource(sim_cfg(seed=9, rate_per_min=120, unknown_ratio=0.1, telemetry_interval_s=5),
                          "mp-0001", clock.now())
    ob = Outbox(tmp_path / "o.db", "mp-0001")
    events = run_for(src, clock, 120)
    for e in events:
        ob.append(e.channel, e.device, e.body, lane=e.lane, ts=e.ts, clock_synced=True)
    assert ob.depth() == len(events)
    assert ob.next_seqs() == {"sim-reader": len(taps(events)), "sim-sensor": len(events) - len(taps(events))}
