"""The camera input: capture loop, reconnects, watchdog, per-period counts and camera health.

A grabber thread owns the cv2.VideoCapture (a V4L2 index or /dev/video path, an RTSP URL or a file)
and hands frames to the loop; a read that blocks (a dead RTSP stream) cannot stall the loop, because
the watchdog abandons a grabber that delivered no frame for `watchdog_s` and opens a fresh one.
Frames are counted in memory and dropped; what leaves the device is, per period (a minute by default):

    Channel.COUNT      CountEvent body {period_s, entries, exits[, occupancy]}; ts = period start,
                       the counts cover [ts, ts + period_s). A period in which the camera delivered
                       no frame at all is not emitted: absence means "unknown", never zero.
    Channel.TELEMETRY  camera health readings camera.online (1/0), camera.fps, camera.reconnects,
                       on every change of state and every `health_every_s`.

File sources are replayed as fast as they decode, timed by their own frame rate ("video" timing),
and reopened at their end when `loop_file` is set, like a camera that comes back.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import cv2
import numpy as np

from edge.clock import Clock, SystemClock
from edge.events import Emitter, Input, Lane
from firmware_bridge.contract import Channel

from .config import CameraInputConfig, CaptureConfig, CounterConfig, HeadCountConfig, Strict  # noqa: F401
from .counter import HeadCounter, PeopleCounter, median_count
from .debug import DebugRecorder
from .errors import CameraError

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

POLL_SECONDS = 0.1
GRABBER_JOIN_SECONDS = 0.5




class FrameSource(Protocol):
    """What the loop needs from a camera: cv2.VideoCapture already is one."""

    def read(self) -> tuple[bool, Any]: ...

    def release(self) -> None: ...

    def get(self, prop: int) -> float: ...


def is_file_source(source: int | str) -> bool:
    """A path that is neither a device node nor a URL."""
    return isinstance(source, str) and not source.startswith("/dev/") and not re.match(r"^[a-z]+://", source)


def open_capture(config: CaptureConfig) -> FrameSource:
    """Open the configured source with cv2.VideoCapture; raise CameraError if it will not open."""
    api = {"auto": cv2.CAP_ANY, "v4l2": cv2.CAP_V4L2, "ffmpeg": cv2.CAP_FFMPEG}[config.backend]
    params: list[int] = []
    if isinstance(config.source, str) and re.match(r"^[a-z]+://", config.source):
        # Network streams go through FFmpeg, which honours these; V4L2 may refuse unknown parameters.
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(config.open_timeout_s * 1000),
                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(config.watchdog_s * 1000)]
    cap = cv2.VideoCapture(config.source, api, params)
    if not cap.isOpened():
        cap.release()
        raise CameraError(f"cannot open camera source {redact(config.source)}")
    if config.capture_width and config.capture_height:
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, config.capture_width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, config.capture_height)
    return cap


def redact(source: int | str) -> str:
    """Hide a password in an RTSP URL before it reaches a log."""
    return re.sub(r"://[^/@]*@", "://***@", str(source))


_END = object()


class Grabber(threading.Thread):
    """Reads one source in its own thread; abandon() lets the loop walk away from a hung read."""

    def __init__(self, source: FrameSource, keep_all: bool) -> None:
        super().__init__(name="camera-grabber", daemon=True)
        self.source = source
        self.keep_all = keep_all  # files: every frame; cameras: only the newest
        self.frames: queue.Queue[object] = queue.Queue(maxsize=8 if keep_all else 1)
        self.abandoned = threading.Event()

    def run(self) -> None:
        try:
            while not self.abandoned.is_set():
                try:
                    ok, frame = self.source.read()
                except cv2.error as exc:
                    log.info("camera read failed: %s", exc)
                    ok, frame = False, None
                if not ok or frame is None:
                    self._put(_END)
                    return
                self._put(frame)
        finally:
            self.source.release()

    def _put(self, item: object) -> None:
        while not self.abandoned.is_set():
            if not self.keep_all and item is not _END:
                with contextlib.suppress(queue.Empty):
                    self.frames.get_nowait()  # drop the stale frame: counting wants the newest
            try:
                self.frames.put(item, timeout=POLL_SECONDS)
                return
            except queue.Full:
                continue

    def abandon(self) -> None:
        self.abandoned.set()


@dataclass(slots=True)
class PeriodCount:
    start: datetime
    period_s: int
    entries: int = 0
    exits: int = 0
    occupancy: int | None = None

    def body(self) -> dict[str, int]:
        b = {"period_s": self.period_s, "entries": self.entries, "exits": self.exits}
        if self.occupancy is not None:
            b["occupancy"] = self.occupancy
        return b


class PeriodTally:
    """Accumulate counts into clock-aligned periods; pure, times passed in."""

    def __init__(self, period_s: int) -> None:
        self.period_s = period_s
        self.open: dict[datetime, PeriodCount] = {}

    def _bucket(self, ts: datetime) -> PeriodCount:
        epoch = ts.timestamp()
        start = datetime.fromtimestamp(math.floor(epoch / self.period_s) * self.period_s, tz=UTC)
        pc = self.open.get(start)
        if pc is None:
            pc = self.open[start] = PeriodCount(start, self.period_s)
        return pc

    def seen(self, ts: datetime, entries: int = 0, exits: int = 0) -> None:
        """Record that the camera was working at ts, with any crossings seen then."""
        pc = self._bucket(ts)
        pc.entries += entries
        pc.exits += exits

    def occupancy(self, ts: datetime, n: int) -> None:
        self._bucket(ts).occupancy = n

    def closed(self, now: datetime) -> list[PeriodCount]:
        """Remove and return the periods that ended at or before now, oldest first."""
        done = [s for s in self.open if s + timedelta(seconds=self.period_s) <= now]
        return [self.open.pop(s) for s in sorted(done)]

    def flush(self) -> list[PeriodCount]:
        return [self.open.pop(s) for s in sorted(self.open)]


@dataclass(slots=True)
class CameraHealth:
    online: bool = False
    fps: float = 0.0
    reconnects: int = 0
    frames: int = 0
    detail: str = "starting"

    def readings(self) -> list[dict[str, Any]]:
        return [
            {"ch": "camera.online", "v": 1.0 if self.online else 0.0},
            {"ch": "camera.fps", "unit": "fps", "v": round(self.fps, 2)},
            {"ch": "camera.reconnects", "v": float(self.reconnects)},
        ]


class VisionInput(Input):
    """Run a camera: count, report per period, watch its health; frames never leave this object."""

    name = "camera"

    def __init__(self, config: CaptureConfig, clock: Clock | None = None,
                 open_source: Callable[[CaptureConfig], FrameSource] = open_capture,
                 on_health: Callable[[CameraHealth], None] | None = None) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.open_source = open_source
        self.on_health = on_health
        self.counter = PeopleCounter(config.counter) if config.counter else None
        self.headcounter = HeadCounter(config.headcount) if config.headcount else None
        self.tally = PeriodTally(config.period_s)
        self.health = CameraHealth()
        self.debug = DebugRecorder(config.debug, self.clock, config.device_id)
        self._pending: list[PeriodCount] = []
        self._is_file = is_file_source(config.source)
        self._video_t = 0.0  # replay clock of a file source, continuous across reopenings
        self._t0_mono = 0.0
        self._t0_wall = datetime.now(UTC)
        self._last_health = float("-inf")
        self._next_occupancy = float("-inf")
        self._occ_counts: list[int] = []
        self._fps_window: list[float] = []
        self._emitter: Emitter | None = None

    # ---- the loop ------------------------------------------------------------------------------------

    def run(self, emitter: Emitter, stop: threading.Event) -> None:
        self._emitter = emitter
        self._t0_mono, self._t0_wall = self.clock.monotonic(), self.clock.now()
        self._last_health = self._t0_mono  # the first report is the first change of state
        backoff = self.config.reconnect_min_s
        first = True
        try:
            while not stop.is_set():
                try:
                    source = self.open_source(self.config)
                except CameraError as exc:
                    self._set_health(False, str(exc))
                    self._housekeeping(self.clock.now())
                    stop.wait(backoff)
                    backoff = min(max(backoff * 2, self.config.reconnect_min_s), self.config.reconnect_max_s)
                    continue
                if not first:
                    self.health.reconnects += 1
                first = False
                log.info("camera %s opened %s", self.config.device_id, redact(self.config.source))
                reason = self._consume(source, stop)
                if reason == "stopped":
                    break
                if reason == "end of file" and not self.config.loop_file:
                    log.info("camera %s: end of %s", self.config.device_id, self.config.source)
                    break
                log.info("camera %s: %s; reconnecting", self.config.device_id, reason)
                self._set_health(False, reason)
                if self.counter:
                    self.counter.drop_tracks()
                if reason != "end of file":
                    stop.wait(backoff)
                    backoff = min(max(backoff * 2, self.config.reconnect_min_s), self.config.reconnect_max_s)
        finally:
            self._pending += self.tally.flush()
            self._emit_pending()
            self._set_health(False, "stopped")

    def _consume(self, source: FrameSource, stop: threading.Event) -> str:
        grabber = Grabber(source, keep_all=self._is_file and self.config.file_timing == "video")
        file_fps = source.get(cv2.CAP_PROP_FPS) if self._is_file else 0.0
        step = 1.0 / file_fps if file_fps and file_fps > 0 else 1.0 / (self.config.counter or CounterConfig()).fps
        grabber.start()
        last_frame = self.clock.monotonic()
        got_any = False
        try:
            while not stop.is_set():
                try:
                    item = grabber.frames.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    item = None
                now_mono = self.clock.monotonic()
                if item is _END:
                    return "end of file" if self._is_file else "stream ended"
                if isinstance(item, np.ndarray):
                    last_frame = now_mono
                    if not got_any:
                        got_any = True
                        self._set_health(True, "ok")
                    if self._is_file and self.config.file_timing == "video":
                        t, ts = self._t0_mono + self._video_t, self._t0_wall + timedelta(seconds=self._video_t)
                        self._video_t += step
                    else:
                        t, ts = now_mono, self.clock.now()
                    self._frame(item, t, ts)
                    self._housekeeping(ts)
                else:
                    self._housekeeping(self.clock.now() if not self._is_file else None)
                if now_mono - last_frame > self.config.watchdog_s:
                    return f"no frame for {self.config.watchdog_s:g} s (watchdog)"
            return "stopped"
        finally:
            grabber.abandon()
            grabber.join(GRABBER_JOIN_SECONDS)  # a hung read keeps its daemon thread; it exits later

    def _frame(self, frame: np.ndarray, t: float, ts: datetime) -> None:
        self.health.frames += 1
        self._fps_window.append(t)
        if len(self._fps_window) > 50:
            del self._fps_window[0]
        if self.counter:
            result = self.counter.process(frame, t)
            if result.processed:
                ins = sum(1 for c in result.crossings if c.direction == "in")
                self.tally.seen(ts, ins, len(result.crossings) - ins)
                self.debug.record(frame, result, self.counter)
        else:
            self.tally.seen(ts)
            self.debug.record(frame)
        if self.headcounter and t >= self._next_occupancy:
            # One detection now and then, not a burst, so the entrance counter never stalls for long.
            hc = self.headcounter.config
            self._occ_counts.append(self.headcounter.count(frame))
            self._next_occupancy = t + hc.frame_spacing_s
            if len(self._occ_counts) >= hc.frames:
                n = median_count(self._occ_counts)
                self._occ_counts = []
                self._next_occupancy = t + self.config.occupancy_every_s
                self.tally.occupancy(ts, n)
                log.debug("occupancy snapshot %d", n)

    def _housekeeping(self, now: datetime | None) -> None:
        if now is not None:
            self._pending += self.tally.closed(now)
        self._emit_pending()
        self.debug.poll()
        mono = self.clock.monotonic()
        if mono - self._last_health >= self.config.health_every_s:
            self._emit_health()

    # ---- reporting -----------------------------------------------------------------------------------

    def _emit_pending(self) -> None:
        while self._pending and self._emitter is not None:
            pc = self._pending[0]
            try:
                self._emitter.emit(Channel.COUNT, self.config.device_id, pc.body(), lane=Lane.NORMAL, ts=pc.start)
            except Exception:
                log.exception("could not store camera counts for %s; will retry", pc.start.isoformat())
                return
            self._pending.pop(0)

    def _set_health(self, online: bool, detail: str) -> None:
        changed = online != self.health.online or detail != self.health.detail
        self.health.online, self.health.detail = online, detail
        if not online:
            self._fps_window.clear()
        if changed:
            if online:
                log.info("camera %s online", self.config.device_id)
            elif detail in ("end of file", "stopped"):  # routine, not for an operator
                log.info("camera %s offline: %s", self.config.device_id, detail)
            else:
                log.warning("camera %s offline: %s", self.config.device_id, detail)
            self._emit_health()

    def _emit_health(self) -> None:
        self._last_health = self.clock.monotonic()
        w = self._fps_window
        self.health.fps = (len(w) - 1) / (w[-1] - w[0]) if len(w) > 1 and w[-1] > w[0] else 0.0
        if self.on_health is not None:
            try:
                self.on_health(self.health)
            except Exception:
                log.exception("camera health callback failed")
        if self._emitter is None:
            return
        try:
            self._emitter.emit(Channel.TELEMETRY, self.config.device_id, {"readings": self.health.readings()},
                               lane=Lane.NORMAL)
        except Exception:
            log.exception("could not store camera health")


