"""The capture loop: a real video file through cv2.VideoCapture, dropped and hung sources, tallies."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge.vision import synth
from edge.vision.capture import (
    CameraInputConfig,
    CaptureConfig,
    PeriodTally,
    VisionInput,
    is_file_source,
    redact,
)
from edge.vision.errors import CameraError
from firmware_bridge.contract import Channel

W, H = 160, 120
DEADLINE_S = 10.0


def _debug(tmp_path: Path) -> dict[str, str]:
    return {"directory": str(tmp_path / "debug"), "request_file": str(tmp_path / "debug.request")}


@pytest.fixture(scope="module")
def single_file_video(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, synth.Scenario]:
    sc = synth.single_file()
    path = sc.write_video(tmp_path_factory.mktemp("video") / "single_file.avi", W, H)
    return path, sc


def _run(vi: VisionInput, emitter: Any, until: Callable[[], bool]) -> float:
    stop = threading.Event()
    th = threading.Thread(target=vi.run, args=(emitter, stop))
    started = time.monotonic()
    th.start()
    try:
        while not until():
            assert time.monotonic() - started < DEADLINE_S, "condition not reached before the deadline"
            time.sleep(0.02)
    finally:
        stop.set()
        th.join(DEADLINE_S)
    assert not th.is_alive()
    return time.monotonic() - started


def _health(emitter: Any) -> list[dict[str, float]]:
    return [{r.ch: r.v for r in e.readings} for e in emitter.of(Channel.TELEMETRY)]


def test_the_generated_video_file_holds_the_scene(single_file_video):
    path, sc = single_file_video
    cap = cv2.VideoCapture(str(path))
    try:
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == sc.n_frames
        assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(sc.fps)
        ok, frame = cap.read()
        assert ok and frame.shape == (H, W, 3)
    finally:
        cap.release()


def test_video_file_counts_reported_per_period(single_file_video, emitter, tmp_path):
    path, sc = single_file_video
    cfg = CaptureConfig.model_validate({
        "device_id": "cam-door", "source": str(path), "counter": sc.counter_config(width=W, height=H).model_dump(),
        "period_s": 5, "loop_file": False, "debug": _debug(tmp_path),
    })
    vi = VisionInput(cfg)
    stop = threading.Event()
    vi.run(emitter, stop)  # a file that is not looped ends the input by itself
    counts = emitter.of(Channel.COUNT)
    assert sum(e.entries for e in counts) == sc.true_entries
    assert sum(e.exits for e in counts) == sc.true_exits
    assert all(e.device == "cam-door" and e.period_s == 5 and e.occupancy is None for e in counts)
    starts = [e.ts for e in counts]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
    assert all(s.timestamp() % 5 == 0 for s in starts)  # clock-aligned periods
    # The replay covers the whole scene, period after period, with no gap.
    assert (starts[-1] - starts[0]).total_seconds() == 5 * (len(starts) - 1)
    assert len(starts) >= sc.duration_s // 5
    health = _health(emitter)
    assert health[0]["camera.online"] == 1.0 and health[-1]["camera.online"] == 0.0


def test_end_of_file_reconnects_like_a_camera_that_comes_back(single_file_video, emitter, tmp_path):
    path, sc = single_file_video
    cfg = CaptureConfig.model_validate({
        "source": str(path), "counter": sc.counter_config(width=W, height=H).model_dump(), "period_s": 60,
        "loop_file": True, "debug": _debug(tmp_path),
    })
    vi = VisionInput(cfg)
    _run(vi, emitter, lambda: vi.health.reconnects >= 2)
    health = _health(emitter)
    assert [h["camera.online"] for h in health[:4]] == [1.0, 0.0, 1.0, 0.0]
    assert max(h["camera.reconnects"] for h in health) >= 1
    # Each pass over the file counts the scene again.
    total_in = sum(e.entries for e in emitter.of(Channel.COUNT))
    assert total_in >= 2 * sc.true_entries


class FakeCamera:
    """A camera seam: delivers frames, then drops (read fails) or hangs (read blocks)."""

    def __init__(self, frames: list[np.ndarray], then: str, release_hang: threading.Event) -> None:
        self.frames = iter(frames)
        self.then = then
        self.release_hang = release_hang
        self.released = False

    def read(self) -> tuple[bool, Any]:
        try:
            frame = next(self.frames)
            time.sleep(1 / 60)  # a camera paces its frames
            return True, frame
        except StopIteration:
            if self.then == "hang":
                self.release_hang.wait(30)
            return False, None

    def release(self) -> None:
        self.released = True

    def get(self, prop: int) -> float:
        return 0.0


@pytest.fixture
def release_hang() -> Iterator[threading.Event]:
    ev = threading.Event()
    yield ev
    ev.set()  # let hung fake reads return so their threads end


def _fake_opener(then: str, release_hang: threading.Event, fail_first: int = 0):
    frames = [f for _, f in synth.single_file().frames(W, H)][:20]
    opened: list[FakeCamera] = []
    attempts = [0]

    def open_source(cfg: CaptureConfig) -> FakeCamera:
        attempts[0] += 1
        if attempts[0] <= fail_first:
            raise CameraError("cannot open camera source /dev/video7")
        cam = FakeCamera(frames, then, release_hang)
        opened.append(cam)
        return cam

    return open_source, opened, attempts


def _live_cfg(tmp_path: Path, **kw: Any) -> CaptureConfig:
    return CaptureConfig.model_validate({
        "source": "/dev/video7", "counter": {"width": W, "height": H}, "watchdog_s": 0.4,
        "reconnect_min_s": 0.05, "reconnect_max_s": 0.2, "debug": _debug(tmp_path), **kw,
    })


def test_a_dropped_camera_is_reopened(emitter, tmp_path, release_hang):
    open_source, opened, _ = _fake_opener("drop", release_hang)
    vi = VisionInput(_live_cfg(tmp_path), open_source=open_source)
    _run(vi, emitter, lambda: len(opened) >= 3)
    assert all(cam.released for cam in opened[:-1])
    details = [h for h in _health(emitter)]
    assert details[0]["camera.online"] == 1.0
    assert any(h["camera.online"] == 0.0 for h in details)
    assert vi.health.reconnects >= 2


def test_watchdog_walks_away_from_a_hung_camera(emitter, tmp_path, release_hang):
    open_source, opened, _ = _fake_opener("hang", release_hang)
    seen: list[tuple[bool, str]] = []
    vi = VisionInput(_live_cfg(tmp_path), open_source=open_source,
                     on_health=lambda h: seen.append((h.online, h.detail)))
    elapsed = _run(vi, emitter, lambda: len(opened) >= 2)
    assert any(not online and "watchdog" in detail for online, detail in seen)
    assert elapsed < 5.0  # 20 frames + 0.4 s watchdog + backoff, not the 30 s hang
    assert not opened[0].released  # the hung read still owns it; it releases when the read returns
    release_hang.set()
    deadline = time.monotonic() + DEADLINE_S
    while not opened[0].released:
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_a_camera_that_will_not_open_is_retried_and_reported(emitter, tmp_path, release_hang):
    open_source, opened, attempts = _fake_opener("drop", release_hang, fail_first=2)
    seen: list[tuple[bool, str]] = []
    vi = VisionInput(_live_cfg(tmp_path), open_source=open_source,
                     on_health=lambda h: seen.append((h.online, h.detail)))
    _run(vi, emitter, lambda: len(opened) >= 1 and vi.health.online)
    assert attempts[0] >= 3
    assert seen[0] == (False, "cannot open camera source /dev/video7")
    assert (True, "ok") in seen


def test_live_occupancy_snapshot_goes_into_the_count_event(emitter, tmp_path, release_hang):
    frames = synth.SeatedScene(4, 2).frames(3)

    class Dining:
        def __init__(self) -> None:
            self.n = 0

        def read(self) -> tuple[bool, Any]:
            self.n += 1
            time.sleep(0.01)
            return True, frames[self.n % 3]

        def release(self) -> None:
            pass

        def get(self, prop: int) -> float:
            return 0.0

    cfg = _live_cfg(tmp_path, counter=None, headcount={"frames": 3, "frame_spacing_s": 0.0}, period_s=1,
                    watchdog_s=2.0)
    vi = VisionInput(cfg, open_source=lambda c: Dining())
    _run(vi, emitter, lambda: any(e.occupancy is not None for e in emitter.of(Channel.COUNT)))
    occ = [e.occupancy for e in emitter.of(Channel.COUNT) if e.occupancy is not None]
    assert occ[0] == 4
    assert all(e.entries == 0 and e.exits == 0 for e in emitter.of(Channel.COUNT))


def test_period_tally_aligns_closes_and_flushes():
    tally = PeriodTally(60)
    t0 = datetime(2026, 6, 1, 3, 0, 10, tzinfo=UTC)
    tally.seen(t0, entries=2)
    tally.seen(t0 + timedelta(seconds=30), exits=1)
    tally.seen(t0 + timedelta(seconds=55))  # next minute, nobody crossed: a zero period, not a gap
    tally.occupancy(t0 + timedelta(seconds=56), 17)
    assert tally.closed(t0 + timedelta(seconds=49)) == []
    first = tally.closed(t0 + timedelta(seconds=50))
    assert [(p.start, p.entries, p.exits, p.occupancy) for p in first] == [
        (datetime(2026, 6, 1, 3, 0, tzinfo=UTC), 2, 1, None)]
    assert first[0].body() == {"period_s": 60, "entries": 2, "exits": 1}
    rest = tally.flush()
    assert [(p.start.minute, p.entries, p.exits, p.occupancy) for p in rest] == [(1, 0, 0, 17)]
    assert rest[0].body() == {"period_s": 60, "entries": 0, "exits": 0, "occupancy": 17}
    assert tally.flush() == []


def test_sources_are_told_apart_and_passwords_kept_out_of_logs():
    assert is_file_source("/srv/door.avi") and is_file_source("door.mp4")
    assert not is_file_source(0) and not is_file_source("/dev/video0")
    assert not is_file_source("rtsp://user:pw@10.0.0.5/stream1")
    assert redact("rtsp://user:secret@10.0.0.5:554/s1") == "rtsp://***@10.0.0.5:554/s1"
    assert redact(0) == "0"


def test_agent_plugin_config_builds_the_input(tmp_path):
    from edge.clock import FakeClock
    from edge.inputs import InputContext

    cfg = CameraInputConfig.model_validate({
        "type": "camera", "camera": {"source": "rtsp://cam/1", "counter": {"line": {"band": 0.1}},
                                     "debug": _debug(tmp_path)}})
    vi = cfg.build(InputContext(point_id="P1", clock=FakeClock()))
    assert isinstance(vi, VisionInput) and vi.counter is not None and vi.counter.config.line.band == 0.1
    with pytest.raises(ValueError):
        CameraInputConfig.model_validate({"type": "camera", "camera": {"sourc": 0}})
