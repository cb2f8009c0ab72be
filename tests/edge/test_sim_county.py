"""The county simulator: supervision logic with fake processes, and a real two-point county."""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from edge.agent import EXIT_CONFIG
from edge.clock import FakeClock
from edge.sim.county import RESTART_MAX_SECONDS, RESTART_MIN_SECONDS, Child, Proc, Supervisor, point_ids

from .conftest import ROOT, Collector


class FakeProc:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.rc: int | None = None
        self.signals: list[int] = []

    def poll(self) -> int | None:
        return self.rc

    def send_signal(self, sig: int) -> None:
        self.signals.append(sig)
        self.rc = 0

    def wait(self, timeout: float | None = None) -> int:
        assert self.rc is not None
        return self.rc

    def kill(self) -> None:
        self.rc = -9


def make_supervisor(n: int) -> tuple[Supervisor, FakeClock, list[FakeProc]]:
    clock = FakeClock()
    spawned: list[FakeProc] = []

    def spawn(_child: Child) -> Proc:
        spawned.append(FakeProc(len(spawned) + 1))
        return spawned[-1]

    children = [Child(p, Path(f"/x/{p}.yaml")) for p in point_ids("mp-", n)]
    return Supervisor(children, spawn, clock), clock, spawned


def test_point_ids() -> None:
    assert point_ids("mp-", 3) == ["mp-0001", "mp-0002", "mp-0003"]


def test_crashed_agent_restarts_with_doubling_backoff() -> None:
    sup, clock, spawned = make_supervisor(2)
    sup.start_all()
    delays = []
    for _ in range(7):
        sup.children[0].proc.rc = 1  # type: ignore[union-attr]
        sup.tick()
        assert sup.children[0].proc is None
        before = len(spawned)
        waited = 0.0
        while len(spawned) == before:
            clock.advance(0.5)
            waited += 0.5
            sup.tick()
        delays.append(waited)
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert delays[0] == RESTART_MIN_SECONDS and delays[-1] == RESTART_MAX_SECONDS
    assert sup.children[0].restarts == 7
    assert sup.children[1].restarts == 0  # the healthy point was left alone


def test_config_errors_are_not_restarted_and_stop_signals_everyone() -> None:
    sup, clock, spawned = make_supervisor(2)
    sup.start_all()
    spawned[0].rc = EXIT_CONFIG
    sup.tick()
    clock.advance(3600)
    sup.tick()
    assert sup.children[0].given_up and len(spawned) == 2
    sup.stop_all()
    assert spawned[1].signals == [signal.SIGTERM]
    assert spawned[0].signals == []


@pytest.mark.integration
def test_county_runs_supervises_and_stops_real_agents(tmp_path, mqtt_server_account):
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    points = point_ids(prefix, 2)
    sub = Collector(mqtt_server_account.host, mqtt_server_account.port, mqtt_server_account.username,
                    mqtt_server_account.password, [f"yangyi/v1/{p}/#" for p in points]).start()
    county = subprocess.Popen(
        [sys.executable, "-m", "edge.sim.county", "--points", "2", "--prefix", prefix, "--state-dir", str(tmp_path),
         "--host", mqtt_server_account.host, "--port", str(mqtt_server_account.port), "--all-day",
         "--rate-per-min", "600", "--telemetry-interval-s", "1"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        def diners_from_both(c: Collector) -> bool:
            return {m.body["point"] for m in c.events() if m.topic.endswith("/diner")} == set(points)

        sub.wait_for(diners_from_both, 60, "diner events from both points")
        victim = points[0]
        pid = int((tmp_path / victim / "agent.pid").read_text())
        online_before = sum(1 for s in sub.statuses() if s["point"] == victim and s["state"] == "online")
        subprocess.run(["kill", "-9", str(pid)], check=True)
        sub.wait_for(lambda c: sum(1 for s in c.statuses() if s["point"] == victim and s["state"] == "online")
                     > online_before, 60, "the crashed agent back online")
        assert int((tmp_path / victim / "agent.pid").read_text()) != pid
        county.send_signal(signal.SIGTERM)
        assert county.wait(20) == 0
        last = {s["point"]: s for s in sub.statuses()}
        assert {p: (last[p]["state"], last[p].get("detail")) for p in points} == {
            p: ("offline", "stopped") for p in points
        }
    finally:
        if county.poll() is None:
            county.kill()
            county.wait()
        sub.stop()
        print(county.stdout.read().decode()[-2000:] if county.stdout else "")
