"""Agent wiring without a broker: input restarts with backoff, exit code for an unusable outbox."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import yaml

from edge.agent import EXIT_OUTBOX, INPUT_RESTART_MAX_SECONDS, InputRunner, main
from edge.clock import FakeClock
from edge.events import Emitter, Input
from edge.inputs import InputContext
from firmware_bridge.contract import Channel


class Flaky(Input):
    """Emits one event, then fails: the runner must rebuild and restart it."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def run(self, emitter: Emitter, stop: threading.Event) -> None:
        self.log.append("run")
        emitter.emit(Channel.DINER, "r1", {"method": "card", "card_id": "A", "decision": "accepted"})
        raise OSError("reader unplugged")


class FlakyConfig:
    type = "flaky"
    name = None

    def __init__(self) -> None:
        self.built: list[str] = []

    def build(self, _ctx: InputContext) -> Input:
        self.built.append("build")
        return Flaky(self.built)


class RecordingEmitter:
    def __init__(self) -> None:
        self.events: list[tuple[Channel, str]] = []

    def emit(self, channel: Channel, device_id: str, body: dict[str, Any], **_kw: Any) -> int:
        self.events.append((channel, device_id))
        return len(self.events) - 1


def test_failing_input_is_rebuilt_and_restarted_with_backoff() -> None:
    stop = threading.Event()
    clock = FakeClock()
    delays: list[float] = []

    def fake_wait(seconds: float) -> bool:
        delays.append(seconds)
        clock.advance(seconds)
        if len(delays) == 8:
            stop.set()
        return stop.is_set()

    cfg = FlakyConfig()
    emitter = RecordingEmitter()
    runner = InputRunner(cfg, InputContext("mp-0001", clock), emitter, stop, clock, wait=fake_wait)  # type: ignore[arg-type]
    runner._run()
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60]
    assert max(delays) == INPUT_RESTART_MAX_SECONDS
    assert cfg.built == ["build", "run"] * 8
    assert len(emitter.events) == 8
    assert runner.restarts == 8


def test_unreadable_outbox_exits_3_and_keeps_the_file(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox.db"
    junk = b"this is not sqlite" * 100
    outbox.write_bytes(junk)
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(yaml.safe_dump({"point": {"id": "mp-0001"}, "outbox": {"path": str(outbox)}}))
    assert main(["--config", str(cfg)]) == EXIT_OUTBOX
    assert outbox.read_bytes() == junk



class Finite:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def run(self, emitter: Emitter, stop: threading.Event) -> None:
        self.log.append("run")


class FiniteConfig(FlakyConfig):
    type = "finite"

    def build(self, _ctx: InputContext) -> Input:
        self.built.append("build")
        return Finite(self.built)


def test_input_that_returns_is_done_and_not_replayed() -> None:
    """A recording played once must not be played again (its counts would double)."""
    stop = threading.Event()
    clock = FakeClock()
    cfg = FiniteConfig()
    runner = InputRunner(cfg, InputContext("mp-0001", clock), RecordingEmitter(), stop, clock,  # type: ignore[arg-type]
                         wait=lambda _s: False)
    runner._run()
    assert cfg.built == ["build", "run"]
    assert runner.restarts == 0
