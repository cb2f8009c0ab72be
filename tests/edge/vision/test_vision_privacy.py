"""Privacy by design: no frame is written anywhere unless an operator on the device asks, and only
for a limited time; what leaves the device is counts."""

from __future__ import annotations

import logging
import os
import stat
import threading
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from edge.clock import FakeClock
from edge.vision import synth
from edge.vision.capture import CaptureConfig, VisionInput
from edge.vision.debug import DebugConfig, DebugRecorder, cancel_request, write_request
from firmware_bridge.contract import Channel

W, H = 160, 120
FRAME = np.full((H, W, 3), 128, np.uint8)


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def debug_cfg(tmp_path: Path) -> DebugConfig:
    return DebugConfig(directory=tmp_path / "debug", request_file=tmp_path / "state" / "vision-debug.request",
                       every_s=1.0, max_minutes=30, check_every_s=0.0)


@pytest.fixture
def video(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, synth.Scenario]:
    sc = synth.side_by_side()
    return sc.write_video(tmp_path_factory.mktemp("video") / "pairs.avi", W, H), sc


def _replay(video: Path, sc: synth.Scenario, debug_cfg: DebugConfig, emitter, clock=None) -> VisionInput:
    cfg = CaptureConfig(source=str(video), counter=sc.counter_config(width=W, height=H), period_s=10,
                        loop_file=False, debug=debug_cfg)
    vi = VisionInput(cfg, clock=clock)
    vi.run(emitter, threading.Event())
    return vi


def test_nothing_is_written_and_only_counts_leave_without_debug_mode(tmp_path, debug_cfg, video, emitter):
    before = _files(tmp_path)
    vi = _replay(video[0], video[1], debug_cfg, emitter)
    assert vi.counter is not None and vi.counter.entries == video[1].true_entries
    assert _files(tmp_path) == before  # not one file, in the debug directory or anywhere else
    assert not debug_cfg.directory.exists()
    assert vi.debug.written == 0
    for channel, event in emitter.events:
        assert channel in (Channel.COUNT, Channel.TELEMETRY)
        body = event.model_dump(exclude={"v", "point", "device", "seq", "ts", "clock_synced"}, exclude_none=True)
        if channel == Channel.COUNT:
            assert set(body) <= {"period_s", "entries", "exits", "occupancy"}
        else:
            assert {r["ch"] for r in body["readings"]} == {"camera.online", "camera.fps", "camera.reconnects"}


def test_debug_mode_writes_local_frames_then_expires(debug_cfg, caplog):
    clock = FakeClock()
    rec = DebugRecorder(debug_cfg, clock, "cam1")
    rec.poll()
    assert not rec.active and rec.record(FRAME) is None
    write_request(debug_cfg, "王师傅", "aiming the camera", 2, clock.now())
    with caplog.at_level(logging.WARNING, logger="edge.vision.debug"):
        rec.poll()
        assert rec.active
        first = rec.record(FRAME)
        assert first is not None and first.parent == debug_cfg.directory
        assert stat.S_IMODE(first.stat().st_mode) == 0o600
        assert rec.record(FRAME) is None  # at most one frame per every_s
        clock.advance(1.0)
        assert rec.record(FRAME) is not None
        clock.advance(119.0)  # two minutes after the request
        assert not rec.active
        assert rec.record(FRAME) is None
    messages = [r.getMessage() for r in caplog.records]
    assert any("debug mode ON by 王师傅" in m and "aiming the camera" in m for m in messages)
    assert any("debug mode expired" in m for m in messages)
    assert len(list(debug_cfg.directory.iterdir())) == 2
    # The same request file does not switch it on again once it has run out.
    rec.poll()
    assert not rec.active


def test_a_long_request_is_capped_and_an_old_one_ignored(debug_cfg):
    clock = FakeClock()
    rec = DebugRecorder(debug_cfg, clock)
    write_request(debug_cfg, "op", "long", 600, clock.now())
    rec.poll()
    assert rec.until == clock.now() + timedelta(minutes=30)
    clock.advance(30 * 60)
    assert not rec.active
    stale = DebugRecorder(debug_cfg, clock)
    write_request(debug_cfg, "op", "yesterday", 30, clock.now() - timedelta(hours=2))
    stale.poll()
    assert not stale.active


def test_bad_or_future_requests_are_refused(debug_cfg, caplog):
    clock = FakeClock()
    rec = DebugRecorder(debug_cfg, clock)
    debug_cfg.request_file.parent.mkdir(parents=True)
    debug_cfg.request_file.write_text('{"operator": "x", "minutes": 5}')
    with caplog.at_level(logging.ERROR, logger="edge.vision.debug"):
        rec.poll()
    assert not rec.active and "refused" in caplog.text
    write_request(debug_cfg, "op", "clock games", 5, clock.now() + timedelta(hours=1))
    rec.poll()
    assert not rec.active


def test_removing_the_request_turns_debug_mode_off(debug_cfg):
    clock = FakeClock()
    rec = DebugRecorder(debug_cfg, clock)
    write_request(debug_cfg, "op", "check", 10, clock.now())
    rec.poll()
    assert rec.active
    assert cancel_request(debug_cfg)
    rec.poll()
    assert not rec.active and rec.record(FRAME) is None
    assert not cancel_request(debug_cfg)


def test_old_debug_frames_are_deleted(debug_cfg):
    clock = FakeClock()
    rec = DebugRecorder(debug_cfg, clock, "cam1")
    write_request(debug_cfg, "op", "check", 10, clock.now())
    rec.poll()
    old = rec.record(FRAME)
    clock.advance(2)
    new = rec.record(FRAME)
    assert old is not None and new is not None
    day_ago = clock.now().timestamp() - 25 * 3600
    os.utime(old, (day_ago, day_ago))
    unrelated = debug_cfg.directory / "notes.txt"
    unrelated.write_text("keep")
    assert rec.purge() == 1
    assert not old.exists() and new.exists() and unrelated.exists()


def test_debug_mode_in_the_capture_loop_writes_annotated_frames_locally_only(tmp_path, debug_cfg, video,
                                                                              emitter):
    clock = FakeClock()
    write_request(debug_cfg, "op", "commissioning", 5, clock.now())
    before = _files(tmp_path)
    vi = _replay(video[0], video[1], debug_cfg, emitter, clock=clock)
    new = _files(tmp_path) - before
    assert new and all(p.parent == debug_cfg.directory and p.suffix == ".jpg" for p in new)
    assert len(new) == 1  # the fake clock never moves: one frame per every_s
    assert vi.counter is not None and vi.counter.entries == video[1].true_entries


def test_debug_paths_must_be_absolute():
    with pytest.raises(ValidationError):
        DebugConfig(directory=Path("relative/dir"))
