"""Local, time-limited, logged debug recording: the only code that may write a camera frame anywhere.

Privacy by design: frames are never sent and never stored. An operator standing at the device can
turn on debug mode by writing a request file on the device's own disk (`yangyi-vision debug on`);
there is no MQTT command for it. The request names the operator and the reason, is capped at
`max_minutes`, expires by itself, and every start, stop and expiry is logged. Frames go to a local
directory only, at most one per `every_s`, at most `max_files`, and are deleted after `retain_hours`.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
from pydantic import AwareDatetime, Field, ValidationError

from edge.clock import Clock

from .config import DebugConfig, Strict
from .counter import FrameResult, PeopleCounter
from .errors import DebugModeError

log = logging.getLogger(__name__)

FILE_PREFIX = "yangyi-debug-"
FUTURE_SKEW_SECONDS = 120  # a request dated further ahead than this is refused (clock games)




class DebugRequest(Strict):
    """What an operator on the device asks for."""

    operator: str = Field(min_length=1, max_length=64)
    reason: str = Field(min_length=1, max_length=256)
    minutes: float = Field(gt=0, le=24 * 60)
    requested_at: AwareDatetime


def write_request(config: DebugConfig, operator: str, reason: str, minutes: float, now: datetime) -> DebugRequest:
    """Write a debug request file (used by the on-device command line)."""
    req = DebugRequest(operator=operator, reason=reason, minutes=minutes, requested_at=now)
    config.request_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = config.request_file.with_suffix(".tmp")
    tmp.write_text(req.model_dump_json())
    os.chmod(tmp, 0o600)
    tmp.replace(config.request_file)
    return req


def cancel_request(config: DebugConfig) -> bool:
    """Remove the request file; return whether there was one."""
    try:
        config.request_file.unlink()
        return True
    except FileNotFoundError:
        return False


class DebugRecorder:
    """Watch the request file and, only while a valid request is in force, write annotated frames."""

    def __init__(self, config: DebugConfig, clock: Clock, device_id: str = "camera") -> None:
        self.config = config
        self.clock = clock
        self.device_id = device_id
        self.until: datetime | None = None
        self.request: DebugRequest | None = None
        self.written = 0
        self._seen: tuple[float, int] | None = None
        self._next_check = float("-inf")
        self._last_write = float("-inf")

    @property
    def active(self) -> bool:
        """Whether frames may be written now; logs the expiry once."""
        if self.until is None:
            return False
        if self.clock.now() >= self.until:
            log.warning("camera debug mode expired at %s (%d frames written to %s)", self.until.isoformat(),
                        self.written, self.config.directory)
            self._stop()
            return False
        return True

    def _stop(self) -> None:
        self.until = None
        self.request = None

    def poll(self) -> None:
        """Look at the request file (rate-limited) and start or stop debug mode accordingly."""
        mono = self.clock.monotonic()
        if mono < self._next_check:
            return
        self._next_check = mono + self.config.check_every_s
        path = self.config.request_file
        try:
            st = path.stat()
        except FileNotFoundError:
            if self.until is not None:
                log.warning("camera debug mode turned off by the operator (%d frames written)", self.written)
                self._stop()
            self._seen = None
            return
        stamp = (st.st_mtime, st.st_size)
        if stamp == self._seen:
            return
        self._seen = stamp
        try:
            self._start(self._read(path))
        except DebugModeError as exc:
            log.error("camera debug request %s refused: %s", path, exc)
            self._stop()

    def _read(self, path: Path) -> DebugRequest:
        try:
            return DebugRequest.model_validate_json(path.read_bytes())
        except (OSError, ValidationError, json.JSONDecodeError) as exc:
            raise DebugModeError(f"unreadable request: {exc}") from exc

    def _start(self, req: DebugRequest) -> None:
        now = self.clock.now()
        if req.requested_at > now + timedelta(seconds=FUTURE_SKEW_SECONDS):
            raise DebugModeError(f"requested_at {req.requested_at.isoformat()} is in the future")
        minutes = min(req.minutes, self.config.max_minutes)
        until = req.requested_at + timedelta(minutes=minutes)
        if until <= now:
            log.info("camera debug request by %s has already expired (%s)", req.operator, until.isoformat())
            self._stop()
            return
        self.request, self.until, self.written = req, until, 0
        log.warning("camera debug mode ON by %s until %s (%s): frames are written to %s and nowhere else",
                    req.operator, until.isoformat(), req.reason, self.config.directory)

    def record(self, frame: np.ndarray, result: FrameResult | None = None,
               counter: PeopleCounter | None = None) -> Path | None:
        """Write one annotated JPEG if debug mode is on and the rate and size limits allow."""
        if not self.active:
            return None
        mono = self.clock.monotonic()
        if mono - self._last_write < self.config.every_s or self.written >= self.config.max_files:
            return None
        self._last_write = mono
        img = annotate(frame, result, counter) if result is not None and counter is not None else frame
        d = self.config.directory
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        stamp = self.clock.now().strftime("%Y%m%dT%H%M%S%fZ")
        path = d / f"{FILE_PREFIX}{self.device_id}-{stamp}.jpg"
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])
        if not ok:
            return None
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(buf.tobytes())
        self.written += 1
        return path

    def purge(self) -> int:
        """Delete this recorder's debug frames older than retain_hours; return how many went."""
        d = self.config.directory
        if not d.is_dir():
            return 0
        cutoff = self.clock.now().timestamp() - self.config.retain_hours * 3600
        removed = 0
        for p in d.glob(f"{FILE_PREFIX}*.jpg"):
            try:
                if p.stat().st_mtime < cutoff:
                    p.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        if removed:
            log.info("deleted %d camera debug frames older than %.0f h", removed, self.config.retain_hours)
        return removed


def annotate(frame: np.ndarray, result: FrameResult, counter: PeopleCounter) -> np.ndarray:
    """Draw the line, its band, blobs and tracks on a copy of the frame at processing resolution."""
    w, h = counter.size
    img = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA) if frame.shape[1] != w else frame.copy()
    ln = counter.config.line
    p1 = (int(ln.x1 * w), int(ln.y1 * h))
    p2 = (int(ln.x2 * w), int(ln.y2 * h))
    cv2.line(img, p1, p2, (0, 255, 255), 1)
    for d in result.detections:
        x, y, bw, bh = d.box
        cv2.rectangle(img, (x, y), (x + bw, y + bh), (0, 255, 0), 1)
    for tr in result.tracks:
        colour = (0, 0, 255) if tr.side > 0 else (255, 0, 0) if tr.side < 0 else (200, 200, 200)
        cv2.circle(img, (int(tr.x), int(tr.y)), 3, colour, -1)
        cv2.putText(img, str(tr.id), (int(tr.x) + 4, int(tr.y)), cv2.FONT_HERSHEY_SIMPLEX, 0.35, colour, 1)
    cv2.putText(img, f"in {counter.entries} out {counter.exits}", (4, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                (255, 255, 255), 1)
    return img
