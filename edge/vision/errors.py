"""Exceptions of the camera counting package."""

from __future__ import annotations


class VisionError(Exception):
    """Base of every error raised by edge.vision."""


class CameraError(VisionError):
    """The camera could not be opened or stopped delivering frames."""


class DebugModeError(VisionError):
    """A local debug-mode request is malformed or not allowed."""
