"""Pure people counting: frames and their times in, line crossings and head counts out.

Entrance mode (PeopleCounter), per frame:
  1. scale to the processing resolution, blur a little (sensor noise);
  2. match global brightness to the background model (lights switched on, clouds passing) by the
     median ratio over a sparse grid, so people (a minority of pixels) do not skew it;
  3. MOG2 (or KNN) subtraction, learning fast for `warmup_s` then at 1/history, so someone standing
     on the sill fades only after about history/10 frames; a frame that is mostly foreground anyway
     relearns the background instead of producing a crowd;
  4. "shadow" pixels only faintly darker than the floor are kept as foreground (grey clothes on a
     grey floor); clearly darker ones are cast shadows and dropped;
  5. opening, then a closing kernel elongated along the walking direction (joins head, torso and
     legs without joining people side by side), connected components;
  6. a blob too big for one person is split. One longer than a person along the walking direction is
     a queue, nose to tail: its width profile along the walk peaks at every torso and narrows where
     one person's legs meet the next one's head, so it is cut at the narrowings between peaks at
     least `queue_gap` person lengths apart (and a stretch with no narrowing, such as a walking frame
     pushed into the back of the one ahead, into as many person lengths as it holds). Each piece,
     or a blob that is only too wide, is cut across the line into person-width strips when its
     widest row (not its box: queues sway) holds people side by side. A blob that is only too wide
     is instead shared out between the tracks predicted inside it when there are no more of them
     than strips (people who were apart and merged). A queue is never shared out between tracks:
     a newcomer joining it has no track yet and would be swallowed by the nearest one;
  7. greedy centroid association with gating around constant-velocity predictions; a track unseen
     for `max_missed_s`, or last seen at the frame edge heading out, is dropped.
A track counts when its committed side of the line changes; it commits to a side only once it is
more than `band` from the line, so shuffling on the sill, or stepping onto it and turning back,
counts nothing. All sizes are fractions of the frame, so the processing resolution is free.

Seated mode (HeadCounter): a detector that ships inside OpenCV (a Haar cascade from cv2.data or the
HOG people detector) counts faces or people; a snapshot is the median over a few frames.

Nothing here reads a camera, a clock or a file: the capture loop feeds it.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from enum import StrEnum

import cv2
import numpy as np

from .config import (  # noqa: F401 - re-exported: the models live in config.py, free of OpenCV
    BackgroundConfig,
    BlobConfig,
    CounterConfig,
    HeadCountConfig,
    LineConfig,
    Strict,
    TrackerConfig,
)

GAIN_REFRESH_FRAMES = 10  # how often the background image for brightness matching is refreshed
GAIN_GRID_STEP_PX = 6  # brightness is matched on a sparse grid of pixels, which is plenty














class Direction(StrEnum):
    IN = "in"
    OUT = "out"


@dataclass(frozen=True, slots=True)
class Crossing:
    t: float
    direction: Direction
    track_id: int


@dataclass(frozen=True, slots=True)
class Detection:
    x: float  # pixels at processing resolution
    y: float
    area: int
    box: tuple[int, int, int, int]  # x, y, w, h of the blob it came from


@dataclass(slots=True)
class Track:
    id: int
    x: float
    y: float
    t: float
    born_t: float
    vx: float = 0.0
    vy: float = 0.0
    frames: int = 1
    side: int = 0  # committed side: -1 street, +1 room, 0 not yet known (in the band)
    counted: int = 0

    def predict(self, t: float) -> tuple[float, float]:
        dt = min(t - self.t, 0.5)
        return self.x + self.vx * dt, self.y + self.vy * dt


@dataclass(slots=True)
class FrameResult:
    processed: bool
    crossings: list[Crossing] = field(default_factory=list)
    detections: list[Detection] = field(default_factory=list)
    tracks: list[Track] = field(default_factory=list)
    foreground: float = 0.0  # fraction of the frame
    relearned: bool = False
    gain: float = 1.0


class PeopleCounter:
    """Count entries and exits across a line; call process() with every frame and its time."""

    def __init__(self, config: CounterConfig | None = None) -> None:
        self.config = config or CounterConfig()
        c = self.config
        self.size = (c.width, c.height)
        short = min(c.width, c.height)
        ln = c.line
        self._p1 = np.array([ln.x1 * c.width, ln.y1 * c.height])
        p2 = np.array([ln.x2 * c.width, ln.y2 * c.height])
        along = p2 - self._p1
        self._along = along / np.linalg.norm(along)
        normal = np.array([-self._along[1], self._along[0]])
        inside = np.array([ln.inside_x * c.width, ln.inside_y * c.height]) - self._p1
        self._normal = normal if float(inside @ normal) > 0 else -normal
        self._band_px = ln.band * short
        self._gate_px = c.tracker.gate * short
        self._person_px = c.blobs.person_width * short
        self._length_px = c.blobs.person_length * short
        self._min_area_px = c.blobs.min_area * c.width * c.height
        o = _odd(c.blobs.open * short)
        self._open = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (o, o))
        self._close = _oriented_kernel(_odd(c.blobs.close * short), _odd(c.blobs.close_along_walk * short),
                                       self._normal)
        self._blur = _odd(c.blur * short) if c.blur > 0 else 0
        self.entries = 0
        self.exits = 0
        self.tracks: list[Track] = []
        self._next_id = 1
        self._last_t: float | None = None
        self._reset_model()

    def _reset_model(self) -> None:
        b = self.config.background
        if b.method == "mog2":
            self._bg: cv2.BackgroundSubtractor = cv2.createBackgroundSubtractorMOG2(
                b.history_frames, b.var_threshold or 16.0, b.shadows)
        else:
            self._bg = cv2.createBackgroundSubtractorKNN(b.history_frames, b.var_threshold or 400.0, b.shadows)
        self._frames = 0
        self._ref: np.ndarray | None = None
        self._bg_gray: np.ndarray | None = None
        self._warm_t0: float | None = None
        self._warm_n = 0
        self._started = False

    def drop_tracks(self) -> None:
        """Forget every track (after a gap in the video: nobody can be followed across it)."""
        self.tracks = []
        self._last_t = None

    def distance(self, x: float, y: float) -> float:
        """Signed distance in pixels from the line, positive on the room side."""
        return float((np.array([x, y]) - self._p1) @ self._normal)

    def process(self, frame: np.ndarray, t: float) -> FrameResult:
        """Feed one frame taken at t seconds (any monotonic origin); return what happened."""
        if self._last_t is not None and t - self._last_t < 0.9 / self.config.fps:
            return FrameResult(processed=False)
        self._last_t = t
        img = self._prepare(frame)
        result = FrameResult(processed=True)
        img, result.gain = self._match_brightness(img)
        fg = self._bg.apply(img, learningRate=self._learning_rate(t))
        self._frames += 1
        _, mask = cv2.threshold(fg, 200, 255, cv2.THRESH_BINARY)  # 127 marks shadows
        self._unshadow_faint(img, fg, mask)
        result.foreground = cv2.countNonZero(mask) / mask.size
        warming = self._warm_t0 is not None and t - self._warm_t0 < self.config.background.warmup_s
        if warming and not self._started:
            result.tracks = list(self.tracks)
            return result  # the very first second only learns the empty scene
        self._started = True
        if result.foreground > self.config.background.relearn_fraction and not warming:
            # A sudden change the brightness match could not undo (a lamp in one corner): start afresh.
            self._bg.apply(img, learningRate=1.0)
            self._ref = self._bg_gray = None
            self._warm_t0 = None
            result.relearned = True
            result.tracks = list(self.tracks)
            return result
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, self._open)
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, self._close)
        result.detections = self._detect(mask, t)
        result.crossings = self._track(result.detections, t)
        result.tracks = list(self.tracks)
        return result

    def _learning_rate(self, t: float) -> float:
        if self._warm_t0 is None:
            self._warm_t0, self._warm_n = t, 0
        self._warm_n += 1
        if t - self._warm_t0 < self.config.background.warmup_s:
            return 1.0 / self._warm_n
        # After the warm-up a fixed slow rate: OpenCV's own schedule (1 / 2n) stays so fast for the
        # first minute that people standing on the sill melt into the background.
        return 1.0 / self.config.background.history_frames

    def _prepare(self, frame: np.ndarray) -> np.ndarray:
        if frame.shape[1] != self.size[0] or frame.shape[0] != self.size[1]:
            frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
        if not self.config.color and frame.ndim == 3:
            frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        if self._blur > 1:
            frame = cv2.GaussianBlur(frame, (self._blur, self._blur), 0)  # cheap cameras are noisy
        return frame

    def _match_brightness(self, img: np.ndarray) -> tuple[np.ndarray, float]:
        if not self.config.background.match_brightness or self._frames < 5:
            return img, 1.0
        if self._ref is None or self._frames % GAIN_REFRESH_FRAMES == 0:
            bg = self._bg.getBackgroundImage()
            if bg is not None:
                self._ref = bg[::GAIN_GRID_STEP_PX, ::GAIN_GRID_STEP_PX].astype(np.float32) + 1.0
                gray = cv2.cvtColor(bg, cv2.COLOR_BGR2GRAY) if bg.ndim == 3 else bg
                self._bg_gray = gray.astype(np.float32)
        if self._ref is None:
            return img, 1.0
        cur = img[::GAIN_GRID_STEP_PX, ::GAIN_GRID_STEP_PX].astype(np.float32) + 1.0
        ok = (cur < 250) & (cur > 12) & (self._ref > 12)
        if int(ok.sum()) < 50:
            return img, 1.0
        # The median of the ratio ignores the minority of pixels covered by people.
        gain = float(np.median(self._ref[ok] / cur[ok]))
        if abs(gain - 1.0) < 0.01:
            return img, 1.0
        return cv2.convertScaleAbs(img, alpha=gain), gain

    def _unshadow_faint(self, img: np.ndarray, fg: np.ndarray, mask: np.ndarray) -> None:
        """Turn 'shadow' pixels that are only faintly darker than the floor back into foreground.

        MOG2 calls anything between tau and 1 times the background a shadow; grey clothes on a grey
        floor land there too. Cast shadows are clearly darker, so faint darkening is kept as a person.
        """
        limit = self.config.background.shadow_max_ratio
        if self._bg_gray is None or limit >= 1.0:
            return
        weak = fg == 127
        if not weak.any():
            return
        gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if img.ndim == 3 else img
        faint = weak & (gray.astype(np.float32) > limit * self._bg_gray)
        mask[faint] = 255

    def _detect(self, mask: np.ndarray, t: float) -> list[Detection]:
        n, labels, stats, cents = cv2.connectedComponentsWithStats(mask, connectivity=8)
        out: list[Detection] = []
        ux, uy = float(self._along[0]), float(self._along[1])
        nx, ny = float(self._normal[0]), float(self._normal[1])
        b = self.config.blobs
        fresh = 2.5 / self.config.fps
        preds = [tr.predict(t) for tr in self.tracks if t - tr.t <= fresh]
        for i in range(1, n):
            x, y, w, h, area = (int(v) for v in stats[i])
            if area < self._min_area_px:
                continue
            box = (x, y, w, h)
            extent = abs(w * ux) + abs(h * uy)
            depth = abs(w * uy) + abs(h * ux)  # extent along the walking direction
            wide = extent >= b.split_at * self._person_px
            long = depth >= b.split_at * self._length_px
            if not wide and not long:
                out.append(Detection(float(cents[i][0]), float(cents[i][1]), area, box))
                continue
            ys, xs = np.nonzero(labels[y:y + h, x:x + w] == i)
            xs = xs + x
            ys = ys + y
            across = xs * ux + ys * uy
            cells: list[np.ndarray] = []
            if long:
                # People nose to tail: one segment per torso found in the width profile along the walk.
                # Whether a segment holds people side by side is judged row by row (the widest row),
                # not by its bounding box: a queue sways from side to side without anyone abreast.
                pos = np.floor(xs * nx + ys * ny).astype(np.intp)
                pos -= int(pos.min())
                segs, spans = _queue_segments(pos, across, self._length_px, b)
            else:
                segs, spans = [np.arange(len(xs))], [float(extent)]
            for seg, span in zip(segs, spans, strict=True):
                if len(seg) < self._min_area_px:
                    continue  # a sliver, not a person
                abreast = span >= b.split_at * self._person_px
                k = min(b.max_split, max(2, round(span / self._person_px))) if abreast else 1
                cols = _strips(across[seg], k)  # side by side: person-sized strips across the walk
                for c in range(k):
                    cell = seg[cols == c]
                    if len(cell) * k >= len(seg) * 0.3:
                        cells.append(cell)
            # Only a blob too big for one person may be shared out between tracks; otherwise two
            # tracks on one person would keep each other alive. A queue is cut by its shape alone: a
            # newcomer joining it has no track yet, and handing his pixels to the nearest track would
            # hide him (and a track left over from a merge would pull its neighbour's pixels).
            inside = [(px, py) for px, py in preds if x <= px < x + w and y <= py < y + h]
            if not long and 2 <= len(inside) <= len(cells):
                # People who were apart and have merged: give each pixel to the nearest track.
                centres = np.array(inside, np.float32)
                d2 = (xs[:, None] - centres[None, :, 0]) ** 2 + (ys[:, None] - centres[None, :, 1]) ** 2
                part = np.argmin(d2, axis=1)
                cells = [np.flatnonzero(part == j) for j in range(len(inside))]
                cells = [c for c in cells if len(c) * len(inside) >= area * 0.3]
            for cell in cells:
                out.append(Detection(float(xs[cell].mean()), float(ys[cell].mean()), len(cell), box))
        return out

    def _track(self, dets: list[Detection], t: float) -> list[Crossing]:
        pairs = []
        for ti, tr in enumerate(self.tracks):
            px, py = tr.predict(t)
            for di, d in enumerate(dets):
                dist = math.hypot(d.x - px, d.y - py)
                if dist < self._gate_px:
                    pairs.append((dist, ti, di))
        pairs.sort()
        used_t: set[int] = set()
        used_d: set[int] = set()
        crossings: list[Crossing] = []
        for _, ti, di in pairs:
            if ti in used_t or di in used_d:
                continue
            used_t.add(ti)
            used_d.add(di)
            tr, d = self.tracks[ti], dets[di]
            dt = max(t - tr.t, 1e-3)
            a = 0.5
            tr.vx = a * (d.x - tr.x) / dt + (1 - a) * tr.vx
            tr.vy = a * (d.y - tr.y) / dt + (1 - a) * tr.vy
            tr.x, tr.y, tr.t = d.x, d.y, t
            tr.frames += 1
            crossing = self._update_side(tr, t)
            if crossing is not None:
                crossings.append(crossing)
        max_missed = self.config.tracker.max_missed_s
        self.tracks = [tr for i, tr in enumerate(self.tracks)
                       if i in used_t or (t - tr.t <= max_missed and not self._gone(tr))]
        for di, d in enumerate(dets):
            if di not in used_d:
                tr = Track(self._next_id, d.x, d.y, t, t)
                self._next_id += 1
                dist = self.distance(d.x, d.y)
                if abs(dist) > self._band_px:
                    tr.side = 1 if dist > 0 else -1
                self.tracks.append(tr)
        return crossings

    def _gone(self, tr: Track) -> bool:
        """Whether an unseen track was last seen at the frame's edge, heading out of view."""
        w, h = self.size
        m = self._person_px / 2
        return ((tr.x < m and tr.vx < 0) or (tr.x > w - m and tr.vx > 0)
                or (tr.y < m and tr.vy < 0) or (tr.y > h - m and tr.vy > 0))

    def _update_side(self, tr: Track, t: float) -> Crossing | None:
        dist = self.distance(tr.x, tr.y)
        if abs(dist) <= self._band_px:
            return None
        new = 1 if dist > 0 else -1
        old = tr.side
        tr.side = new
        if old == new or old == 0 or tr.frames < self.config.tracker.min_frames:
            return None
        if new > 0:
            self.entries += 1
            tr.counted += 1
            return Crossing(t, Direction.IN, tr.id)
        self.exits += 1
        tr.counted -= 1
        return Crossing(t, Direction.OUT, tr.id)


def _queue_segments(pos: np.ndarray, across: np.ndarray, length_px: float,
                    b: BlobConfig) -> tuple[list[np.ndarray], list[float]]:
    """Cut a blob into people walking nose to tail; return each one's pixel indices and widest row.

    `pos` is each pixel's whole-pixel position along the walking direction (from 0), `across` its
    position along the line. The blob's width at each position (its profile) peaks at every torso and
    narrows where one person's legs meet the next one's head: peaks at least `queue_gap` person lengths
    apart whose valley between them is below `queue_valley` times the lower peak are separate people,
    and the cut goes through the valley.
    """
    count = np.bincount(pos)
    n = len(count)
    lo = np.full(n, np.inf)
    hi = np.full(n, -np.inf)
    np.minimum.at(lo, pos, across)
    np.maximum.at(hi, pos, across)
    row_span = np.where(count > 0, hi - lo + 1.0, 0.0)
    win = max(1, round(b.queue_smooth * length_px))
    prof = count.astype(np.float64)
    if win > 1:
        prof = np.convolve(prof, np.ones(win) / win, mode="same")
    gap = max(2, round(b.queue_gap * length_px))
    # Local maxima over +-gap/2, tallest first, none closer than `gap` to a taller one.
    half = gap // 2
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(prof, half), 2 * half + 1)
    cand = np.flatnonzero((prof >= windows.max(axis=1)) & (prof > 0))
    peaks: list[int] = []
    for c in sorted(cand.tolist(), key=lambda j: -prof[j]):
        if all(abs(c - p) >= gap for p in peaks):
            peaks.append(c)
    peaks.sort()
    # Merge neighbours without a clear narrowing between them (one person's head and torso).
    kept = peaks[:1]
    cuts = [0]
    for p in peaks[1:]:
        q = kept[-1]
        v = q + int(np.argmin(prof[q:p + 1]))
        if prof[v] <= b.queue_valley * min(prof[q], prof[p]):
            kept.append(p)
            cuts.append(v)
        elif prof[p] > prof[q]:
            kept[-1] = p
    cuts.append(n)
    # A stretch with no narrowing yet longer than one person (a walking frame pushed into the back of
    # the one ahead fills the gap) is cut into person-length pieces, as many as its length holds.
    fine = [0]
    for a, z in itertools.pairwise(cuts):
        nz = np.flatnonzero(count[a:z])
        depth = float(nz[-1] - nz[0] + 1) if len(nz) else 0.0
        k = min(b.max_split, max(2, round(depth / length_px))) if depth >= b.split_at * length_px else 1
        fine += [a + int(nz[0]) + round(depth * j / k) for j in range(1, k)] + [z]
    cuts = fine
    seg_of = np.searchsorted(np.array(cuts[1:-1]), pos, side="right")
    order = np.argsort(seg_of, kind="stable")
    bounds = np.searchsorted(seg_of[order], np.arange(len(cuts)))
    segs = [order[bounds[j]:bounds[j + 1]] for j in range(len(cuts) - 1)]
    spans = [float(row_span[cuts[j]:cuts[j + 1]].max()) for j in range(len(cuts) - 1)]
    return segs, spans


def _strips(proj: np.ndarray, k: int) -> np.ndarray:
    """Index (0..k-1) of the equal-width strip each projected pixel falls in."""
    if k == 1:
        return np.zeros(proj.shape, np.intp)
    edges = np.linspace(float(proj.min()), float(proj.max()) + 1e-6, k + 1)
    return np.clip(np.searchsorted(edges, proj, side="right") - 1, 0, k - 1)


def _odd(px: float) -> int:
    """Round a kernel size to the nearest odd number of pixels, at least 1."""
    return max(1, round(px) // 2 * 2 + 1)


def _oriented_kernel(across: int, along: int, normal: np.ndarray) -> np.ndarray:
    """An elliptical structuring element `along` long in the direction of `normal`, `across` wide."""
    size = max(across, along) | 1
    k = np.zeros((size, size), np.uint8)
    angle = math.degrees(math.atan2(float(normal[1]), float(normal[0])))
    c = size // 2
    cv2.ellipse(k, (c, c), (max(1, along // 2), max(1, across // 2)), angle, 0, 360, 1, -1)
    return k


# ---- seated head count -----------------------------------------------------------------------------

HAAR_FILES = {
    "haar_face": "haarcascade_frontalface_default.xml",
    "haar_face_alt2": "haarcascade_frontalface_alt2.xml",
    "haar_upperbody": "haarcascade_upperbody.xml",
}




class HeadCounter:
    """Count seated people in frames; snapshot() takes the median over several frames."""

    def __init__(self, config: HeadCountConfig | None = None) -> None:
        self.config = config or HeadCountConfig()
        c = self.config
        self._hog: cv2.HOGDescriptor | None = None
        self._cascade: cv2.CascadeClassifier | None = None
        if c.detector == "hog_people":
            self._hog = cv2.HOGDescriptor()
            self._hog.setSVMDetector(np.asarray(cv2.HOGDescriptor.getDefaultPeopleDetector(), np.float32))
        else:
            path = cv2.data.haarcascades + HAAR_FILES[c.detector]  # type: ignore[attr-defined]
            self._cascade = cv2.CascadeClassifier(path)
            if self._cascade.empty():
                raise ValueError(f"OpenCV could not load its own cascade {path}")

    def detect(self, frame: np.ndarray) -> list[tuple[int, int, int, int]]:
        """Return boxes (x, y, w, h) at processing resolution."""
        c = self.config
        img = frame
        if img.shape[1] != c.width or img.shape[0] != c.height:
            img = cv2.resize(img, (c.width, c.height), interpolation=cv2.INTER_AREA)
        ox = oy = 0
        if c.roi is not None:
            x0, y0 = int(c.roi[0] * c.width), int(c.roi[1] * c.height)
            x1, y1 = int(c.roi[2] * c.width), int(c.roi[3] * c.height)
            img, ox, oy = img[y0:y1, x0:x1], x0, y0
        short = min(c.width, c.height)
        if self._hog is not None:
            rects, _ = self._hog.detectMultiScale(img, hitThreshold=c.hog_threshold, winStride=(8, 8),
                                                  padding=(8, 8), scale=c.scale_factor)
            boxes = [tuple(int(v) for v in r) for r in rects]
            boxes = _suppress(boxes)
        else:
            assert self._cascade is not None
            gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if img.ndim == 3 else img
            gray = cv2.equalizeHist(gray)
            lo, hi = int(c.min_size * short), int(c.max_size * short)
            rects = self._cascade.detectMultiScale(gray, scaleFactor=c.scale_factor,
                                                   minNeighbors=c.min_neighbors, minSize=(lo, lo),
                                                   maxSize=(hi, hi))
            boxes = [tuple(int(v) for v in r) for r in rects]
        return [(x + ox, y + oy, w, h) for x, y, w, h in boxes]

    def count(self, frame: np.ndarray) -> int:
        return len(self.detect(frame))

    def snapshot(self, frames: list[np.ndarray]) -> int:
        """Return the median head count over the frames (robust to one bad frame)."""
        return median_count([self.count(f) for f in frames])


def median_count(counts: list[int]) -> int:
    """The lower median of per-frame counts: someone passing in front of one frame changes nothing."""
    if not counts:
        raise ValueError("a snapshot needs at least one count")
    return sorted(counts)[(len(counts) - 1) // 2]


def _suppress(boxes: list[tuple[int, ...]], overlap: float = 0.5) -> list[tuple[int, ...]]:
    """Non-maximum suppression by overlap, largest first (HOG returns overlapping windows)."""
    kept: list[tuple[int, ...]] = []
    for b in sorted(boxes, key=lambda r: r[2] * r[3], reverse=True):
        bx, by, bw, bh = b
        dup = False
        for k in kept:
            kx, ky, kw, kh = k
            ix = max(0, min(bx + bw, kx + kw) - max(bx, kx))
            iy = max(0, min(by + bh, ky + kh) - max(by, ky))
            if ix * iy > overlap * min(bw * bh, kw * kh):
                dup = True
                break
        if not dup:
            kept.append(b)
    return kept
