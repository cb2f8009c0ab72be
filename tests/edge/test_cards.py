"""Card inputs: key mapping and config (pure), and real ptys driven by the simulators."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from edge.checkin import Checkin, CheckinConfig
from edge.clock import FakeClock
from edge.inputs.cards import (
    CardInput,
    CardReaderConfig,
    Em4100ReaderConfig,
    IdCardReaderConfig,
    KeyboardReaderConfig,
    KeyLineAssembler,
    LineReaderConfig,
    build_card_input,
    key_char,
)
from firmware_bridge import em4100
from firmware_bridge.cardid import CardFormat
from firmware_bridge.contract import Channel, CheckinMethod, DinerEvent, Roster, RosterEntry, TapDecision
from firmware_bridge.sim.pty import Pty

POINT = "p001"
LUNCH_UTC = datetime(2026, 6, 1, 3, 0, tzinfo=UTC)  # 11:00 in Shanghai
ID_NUMBER = "11010519491231002X"
ROSTER = Roster(point=POINT, version=1, issued_at=LUNCH_UTC, entries=[
    RosterEntry(card_id="EM:0012345678", elder_id="E1", label="张*明"),
    RosterEntry(card_id="ID:" + ID_NUMBER, elder_id="E2", label="王*"),
])
ADAPTER: TypeAdapter[Any] = TypeAdapter(CardReaderConfig)

# -- pure ---------------------------------------------------------------------------------------------


def test_key_chars() -> None:
    assert [key_char(c, False) for c in (2, 3, 10, 11)] == ["1", "2", "9", "0"]
    assert [key_char(c, False) for c in (79, 80, 81, 82)] == ["1", "2", "3", "0"]  # keypad
    assert key_char(45, False) == "x" and key_char(45, True) == "X"
    assert key_char(39, True) == ":" and key_char(51, False) == ","
    assert key_char(1, False) is None  # Esc
    assert key_char(28, False) is None  # Enter is a line end, not a character


def test_key_line_assembler_handles_shift_repeat_and_enter() -> None:
    keys = KeyLineAssembler()
    events = [(11, 1), (11, 0), (3, 1), (3, 2), (3, 0), (42, 1), (45, 1), (45, 0), (42, 0), (45, 1), (45, 0)]
    assert all(keys.feed(c, v) is None for c, v in events)
    assert keys.feed(28, 1) == "02Xx"
    assert keys.feed(28, 1) is None  # empty line
    for c in (2, 3):
        keys.feed(c, 1)
    assert keys.feed(96, 1) == "12"  # keypad Enter


def test_reader_configs_validate_from_yaml_shapes() -> None:
    cfg = ADAPTER.validate_python({"type": "card_lines", "device_id": "r1", "port": "/dev/ttyUSB0",
                                   "card": {"format": "em_dec", "em_high": 0}})
    assert isinstance(cfg, LineReaderConfig) and cfg.card.format is CardFormat.EM_DEC
    assert isinstance(ADAPTER.validate_python({"type": "card_em4100", "device_id": "r1", "port": "/x"}),
                      Em4100ReaderConfig)
    idc = ADAPTER.validate_python({"type": "card_idcard", "device_id": "id1", "port": "/x"})
    assert isinstance(idc, IdCardReaderConfig) and idc.baudrate == 115200
    kb = ADAPTER.validate_python({"type": "card_keyboard", "device_id": "kb", "device": "/dev/input/event3",
                                  "card": {"format": "uid_dec", "reversed": True}})
    assert isinstance(kb, KeyboardReaderConfig) and kb.grab
    for bad in (
        {"type": "card_em4100", "device_id": "r1", "port": "/x", "surprise": 1},
        {"type": "card_em4100", "device_id": "bad id", "port": "/x"},
        {"type": "card_lines", "device_id": "r1", "port": "/x", "card": {"format": "guess"}},
        {"type": "card_nfc", "device_id": "r1"},
    ):
        with pytest.raises(ValidationError):
            ADAPTER.validate_python(bad)


# -- real ptys ----------------------------------------------------------------------------------------


class RecordingEmitter:
    """An Emitter that validates like the outbox and records; `log` interleaves with feedback."""

    def __init__(self, log: list[tuple[str, str]]) -> None:
        self.events: list[DinerEvent] = []
        self.log = log
        self.lock = threading.Lock()

    def emit(self, channel: Channel, device_id: str, body: dict[str, Any], *, lane: Any = None,
             ts: datetime | None = None) -> int:
        assert channel is Channel.DINER
        with self.lock:
            seq = len(self.events)
            event = DinerEvent.model_validate({**body, "point": POINT, "device": device_id, "seq": seq,
                                               "ts": ts, "clock_synced": True})
            self.events.append(event)
            self.log.append(("emit", event.card_id))
        return seq


class RecordingIndicator:
    def __init__(self, log: list[tuple[str, str]]) -> None:
        self.log = log

    def show(self, device_id: str, feedback: Any) -> None:
        self.log.append(("show", feedback.zh))


def wait_for(cond: Callable[[], bool], timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


class Running:
    def __init__(self, config: Any) -> None:
        self.log: list[tuple[str, str]] = []
        checkin = Checkin(POINT, CheckinConfig(), FakeClock(LUNCH_UTC))
        checkin.apply_roster(ROSTER)
        self.emitter = RecordingEmitter(self.log)
        self.input: CardInput = build_card_input(config, checkin, RecordingIndicator(self.log),
                                                 FakeClock(LUNCH_UTC))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.input.run, args=(self.emitter, self.stop), daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        assert not self.thread.is_alive()


@pytest.fixture
def sim() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []

    def start(module: str, *args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, "-m", f"firmware_bridge.sim.{module}", *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.integration
def test_em4100_simulator_to_input_through_a_pty(tmp_path: Path, sim: Any) -> None:
    link = tmp_path / "reader0"
    cfg = Em4100ReaderConfig(type="card_em4100", device_id="r1", port=str(link), reopen_min_s=0.05)
    with Running(cfg) as run:
        # The held card repeats for 0.5 s (about 5 frames): one tap; then an unknown card.
        proc = sim("em4100", "--link", str(link), "--start-delay", "0.8",
                   "--tap", "0012345678@0@0.5", "--tap", "00ABCDEF01@0.3")
        assert proc.stdout is not None
        path = proc.stdout.readline().strip()
        assert path == str(link) and os.path.realpath(link).startswith("/dev/pts/")
        wait_for(lambda: len(run.emitter.events) >= 2)
        time.sleep(0.3)  # nothing more may arrive: the held card was one read
        events = run.emitter.events
        assert [(e.card_id, e.decision) for e in events] == [
            ("EM:0012345678", TapDecision.ACCEPTED), ("EM:00ABCDEF01", TapDecision.UNKNOWN_CARD)]
        assert events[0].elder_id == "E1" and events[0].method is CheckinMethod.CARD
        # feedback only after the event was stored
        assert run.log == [("emit", "EM:0012345678"), ("show", "登记成功"),
                           ("emit", "EM:00ABCDEF01"), ("show", "未登记卡")]


@pytest.mark.integration
def test_unplug_and_replug_without_restarting_the_input(tmp_path: Path) -> None:
    link = tmp_path / "reader0"
    cfg = Em4100ReaderConfig(type="card_em4100", device_id="r1", port=str(link), reopen_min_s=0.05,
                             reopen_max_s=0.2, debounce_s=0)
    with Pty(link) as pty, Running(cfg) as run:
        wait_for(lambda: run.input.opened == 1)
        pty.write(b"\xff\x00" + em4100.encode(em4100.Em4100Frame.from_hex("0012345678")))
        wait_for(lambda: len(run.emitter.events) == 1)
        pty.close()  # unplugged: the node and the link are gone
        assert not link.exists()
        time.sleep(0.5)  # several failed reopen attempts
        pty.open()  # plugged back: a new /dev/pts node behind the same link
        wait_for(lambda: run.input.opened == 2)
        pty.write(em4100.encode(em4100.Em4100Frame.from_hex("0012345678")))
        wait_for(lambda: len(run.emitter.events) == 2)
        assert [e.decision for e in run.emitter.events] == [TapDecision.ACCEPTED, TapDecision.REPEAT]
        assert run.thread.is_alive()


@pytest.mark.integration
def test_line_simulator_decimal_printing(tmp_path: Path, sim: Any) -> None:
    link = tmp_path / "reader1"
    cfg = LineReaderConfig.model_validate({"type": "card_lines", "device_id": "r2", "port": str(link),
                                           "reopen_min_s": 0.05, "card": {"format": "em_dec"}})
    with Running(cfg) as run:
        proc = sim("lines", "--link", str(link), "--start-delay", "0.8", "--ending", "lf",
                   "--tap", "0305419896", "--tap", "not-a-card@0.1", "--tap", "0305419896@0.1")
        assert proc.stdout is not None and proc.stdout.readline().strip() == str(link)
        wait_for(lambda: len(run.emitter.events) >= 1)
        time.sleep(0.5)
        # the same card again within the de-bounce time is one read; the bad line is skipped
        assert [(e.card_id, e.decision) for e in run.emitter.events] == [("EM:0012345678", TapDecision.ACCEPTED)]


@pytest.mark.integration
def test_idcard_simulator_answers_the_polling_input(tmp_path: Path, sim: Any) -> None:
    link = tmp_path / "idreader"
    cfg = IdCardReaderConfig(type="card_idcard", device_id="id1", port=str(link), reopen_min_s=0.05,
                             poll_interval_s=0.1)
    with Running(cfg) as run:
        proc = sim("idcard", "--link", str(link), "--start-delay", "0.5", "--tap", f"{ID_NUMBER}@0@1.0")
        assert proc.stdout is not None and proc.stdout.readline().strip() == str(link)
        wait_for(lambda: len(run.emitter.events) >= 1)
        time.sleep(0.6)  # the card lies on the reader: read once
        events = run.emitter.events
        assert len(events) == 1
        assert events[0].card_id == "ID:" + ID_NUMBER and events[0].method is CheckinMethod.IDCARD
        assert events[0].decision is TapDecision.ACCEPTED and events[0].elder_id == "E2"


@pytest.mark.integration
def test_keyboard_reader_through_uinput() -> None:
    if not os.path.exists("/dev/uinput") or not os.access("/dev/uinput", os.W_OK):
        pytest.skip("/dev/uinput is not available here (no uinput module or no permission): "
                    "the evdev path is covered by the pure key-mapping tests only")
    evdev = pytest.importorskip("evdev")
    e = evdev.ecodes
    with evdev.UInput({e.EV_KEY: [e.KEY_0, e.KEY_1, e.KEY_2, e.KEY_3, e.KEY_5, e.KEY_9, e.KEY_ENTER]},
                      name="yangyi-test-reader") as ui:
        time.sleep(0.3)  # udev creates the node
        cfg = KeyboardReaderConfig.model_validate({"type": "card_keyboard", "device_id": "kb", "device": ui.device.path,
                                                   "card": {"format": "em_dec"}})
        with Running(cfg) as run:
            wait_for(lambda: run.input.opened == 1)
            for ch in "0305419896":
                code = getattr(e, f"KEY_{ch}")
                ui.write(e.EV_KEY, code, 1)
                ui.write(e.EV_KEY, code, 0)
            ui.write(e.EV_KEY, e.KEY_ENTER, 1)
            ui.write(e.EV_KEY, e.KEY_ENTER, 0)
            ui.syn()
            wait_for(lambda: len(run.emitter.events) == 1)
            assert run.emitter.events[0].card_id == "EM:0012345678"
