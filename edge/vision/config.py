"""Camera configuration models, kept free of OpenCV and NumPy so the agent's config loads light."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from firmware_bridge.contract.topics import ID_PATTERN

if TYPE_CHECKING:
    from .capture import VisionInput


class Strict(BaseModel):
    """Config base: unknown keys rejected, values immutable (YAML strings still become paths)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class LineConfig(Strict):
    """The counting line (normalised image coordinates, 0..1) and which side is the dining room."""

    x1: float = Field(default=0.0, ge=0, le=1)
    y1: float = Field(default=0.5, ge=0, le=1)
    x2: float = Field(default=1.0, ge=0, le=1)
    y2: float = Field(default=0.5, ge=0, le=1)
    inside_x: float = Field(default=0.5, ge=0, le=1, description="Any point on the room side of the line")
    inside_y: float = Field(default=1.0, ge=0, le=1)
    band: float = Field(
        default=0.08, gt=0, le=0.5,
        description="Half-width of the neutral band around the line, as a fraction of the frame's "
        "shorter side; a track must leave the band on the other side to count",
    )

    @model_validator(mode="after")
    def _geometry(self) -> Self:
        if math.hypot(self.x2 - self.x1, self.y2 - self.y1) < 0.05:
            raise ValueError("the line's two points must be apart")
        if abs(self._side(self.inside_x, self.inside_y)) < 1e-6:
            raise ValueError("the inside point lies on the line")
        return self

    def _side(self, x: float, y: float) -> float:
        return (self.x2 - self.x1) * (y - self.y1) - (self.y2 - self.y1) * (x - self.x1)


class BackgroundConfig(Strict):
    method: Literal["mog2", "knn"] = "mog2"
    history_frames: int = Field(
        default=1500, ge=10, description="Learning rate after warm-up is 1/history: someone standing still on "
        "the sill fades into the background only after about history/10 frames",
    )
    warmup_s: float = Field(
        default=1.0, ge=0, description="Learn the empty scene quickly for this long after start or a relearn",
    )
    var_threshold: float | None = Field(
        default=None, gt=0, description="MOG2 squared Mahalanobis distance (default 16) or KNN squared distance "
        "(default 400) above which a pixel is foreground",
    )
    shadows: bool = Field(default=True, description="Detect shadows and leave them out of blobs")
    shadow_max_ratio: float = Field(
        default=0.8, gt=0, le=1, description="Shadow pixels brighter than this times the background are kept "
        "as foreground (cast shadows are darker; grey clothes on a grey floor are not); 1 disables",
    )
    match_brightness: bool = Field(default=True, description="Undo global brightness changes before subtraction")
    relearn_fraction: float = Field(
        default=0.5, gt=0, le=1, description="If more of the frame than this is foreground, relearn the background",
    )


class BlobConfig(Strict):
    """Blob cleaning and splitting; every size is a fraction of the frame's shorter side."""

    open: float = Field(default=0.0125, gt=0, le=0.2, description="Opening kernel (removes noise specks)")
    close: float = Field(default=0.0375, gt=0, le=0.3, description="Closing kernel across the walking direction")
    close_along_walk: float = Field(
        default=0.0875, gt=0, le=0.5, description="Closing kernel along the walking direction: joins head, torso "
        "and legs even when the torso matches the floor, without joining people side by side",
    )
    min_area: float = Field(default=0.006, gt=0, lt=1, description="Smallest blob, fraction of the frame area")
    person_width: float = Field(
        default=0.2, gt=0, le=1, description="One adult's width along the line, fraction of the shorter side",
    )
    person_length: float = Field(
        default=0.25, gt=0, le=1, description="One person's length along the walking direction as seen by the "
        "camera (head to feet or to a walking frame), fraction of the shorter side",
    )
    split_at: float = Field(
        default=1.45, ge=1.0, description="Blobs wider than this many person widths, or longer than this many "
        "person lengths, are split",
    )
    max_split: int = Field(default=4, ge=1, le=8, description="Most people side by side in one blob")
    queue_gap: float = Field(
        default=0.5, gt=0, le=2, description="Closest two people walking nose to tail can be, torso to torso, "
        "in person lengths: peaks of a long blob's width profile nearer than this are one person",
    )
    queue_valley: float = Field(
        default=0.85, gt=0, lt=1, description="A long blob is cut between two width peaks only where it narrows "
        "to this fraction of the lower peak (legs meeting the next head)",
    )
    queue_smooth: float = Field(
        default=0.1, ge=0, le=0.5, description="Width profile smoothing window, in person lengths",
    )


class TrackerConfig(Strict):
    gate: float = Field(
        default=0.15, gt=0, le=1, description="Largest jump from the prediction, fraction of the shorter side",
    )
    max_missed_s: float = Field(default=1.5, gt=0, description="A track unseen this long is dropped")
    min_frames: int = Field(default=3, ge=1, description="A track must be seen this many frames before it counts")


class CounterConfig(Strict):
    """Entrance counter settings; all sizes relative to the frame so the resolution can change."""

    width: int = Field(default=320, ge=64, le=1920, description="Processing width in pixels")
    height: int = Field(default=240, ge=48, le=1080, description="Processing height in pixels")
    fps: float = Field(default=15.0, gt=0, le=60, description="Frames processed per second at most")
    blur: float = Field(
        default=0.02, ge=0, le=0.1, description="Gaussian blur before subtraction, fraction of the shorter side",
    )
    color: bool = Field(default=True, description="Subtract in colour (better shadows and grey clothes) or grey")
    line: LineConfig = LineConfig()
    background: BackgroundConfig = BackgroundConfig()
    blobs: BlobConfig = BlobConfig()
    tracker: TrackerConfig = TrackerConfig()


class HeadCountConfig(Strict):
    """Occupancy snapshot at mealtime with a detector that ships inside OpenCV (no downloads)."""

    detector: Literal["haar_face", "haar_face_alt2", "haar_upperbody", "hog_people"] = "haar_face_alt2"
    width: int = Field(default=640, ge=64, le=1920, description="Processing width; small faces need pixels")
    height: int = Field(default=480, ge=48, le=1080)
    scale_factor: float = Field(default=1.05, gt=1.0, le=2.0)
    min_neighbors: int = Field(default=4, ge=0, le=20)
    min_size: float = Field(default=0.05, gt=0, le=1, description="Smallest head, fraction of the shorter side")
    max_size: float = Field(default=0.5, gt=0, le=1)
    hog_threshold: float = Field(default=0.0, description="HOG SVM hit threshold; higher means fewer, surer hits")
    frames: int = Field(default=5, ge=1, le=100, description="A snapshot is the median count over this many frames")
    frame_spacing_s: float = Field(default=1.0, ge=0, description="Time between the frames of one snapshot")
    roi: tuple[float, float, float, float] | None = Field(
        default=None, description="x0, y0, x1, y1 (normalised) of the tables; None means the whole frame",
    )


class DebugConfig(Strict):
    directory: Path = Field(default=Path("/var/lib/yangyi/vision-debug"), description="Local directory for frames")
    request_file: Path = Field(
        default=Path("/var/lib/yangyi/vision-debug.request"),
        description="Written on the device by `yangyi-vision debug on`; its presence is the request",
    )
    max_minutes: float = Field(default=30.0, gt=0, le=240, description="Longest debug session, whatever is asked")
    every_s: float = Field(default=1.0, gt=0, description="At most one frame per this many seconds")
    max_files: int = Field(default=1800, ge=1, description="Stop writing after this many frames in a session")
    retain_hours: float = Field(default=24.0, gt=0, le=24 * 7, description="Debug frames are deleted after this")
    check_every_s: float = Field(default=2.0, ge=0, description="How often the request file is looked at")

    @field_validator("directory", "request_file")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        if not v.is_absolute():
            raise ValueError("must be an absolute path on the device")
        return v


class CaptureConfig(Strict):
    """One camera: where its frames come from, what to count, how to report."""

    device_id: str = Field(default="camera1", pattern=ID_PATTERN)
    source: int | str = Field(default=0, description="V4L2 index, /dev/videoN, rtsp://… URL or a video file")
    backend: Literal["auto", "v4l2", "ffmpeg"] = "auto"
    capture_width: int | None = Field(default=None, ge=64, description="Ask the camera for this width")
    capture_height: int | None = Field(default=None, ge=48)
    counter: CounterConfig | None = Field(default=CounterConfig(), description="Entrance counting; None = off")
    headcount: HeadCountConfig | None = Field(default=None, description="Seated head count; None = off")
    occupancy_every_s: float = Field(default=300.0, gt=0, description="How often an occupancy snapshot is taken")
    period_s: int = Field(default=60, ge=1, le=3600, description="Counts are reported per this many seconds")
    watchdog_s: float = Field(default=5.0, gt=0, description="No frame for this long: reconnect, report offline")
    open_timeout_s: float = Field(default=10.0, gt=0)
    reconnect_min_s: float = Field(default=1.0, ge=0)
    reconnect_max_s: float = Field(default=30.0, ge=0)
    health_every_s: float = Field(default=60.0, gt=0)
    file_timing: Literal["video", "wall"] = Field(
        default="video", description="Time file frames by the file's frame rate (replay) or by the wall clock",
    )
    loop_file: bool = Field(default=True, description="Reopen a file source at its end")
    debug: DebugConfig = DebugConfig()


class CameraInputConfig(Strict):
    """The agent's `type: camera` input (add it to edge.config.InputConfig's union)."""

    type: Literal["camera"]
    name: str | None = Field(default=None, max_length=64, description="Thread name; defaults to the type")
    camera: CaptureConfig

    def build(self, ctx: Any) -> VisionInput:
        """Build the capture input; OpenCV is imported only now, when a camera is configured."""
        from .capture import VisionInput

        return VisionInput(self.camera, clock=ctx.clock)
