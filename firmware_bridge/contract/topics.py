"""MQTT topic names of contract v1: one versioned root, per meal point and device."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

ROOT = "yangyi/v1"

# Point and device ids are path segments: no MQTT wildcards, separators or spaces.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_ID_RE = re.compile(ID_PATTERN)


class Channel(StrEnum):
    """What a device-scoped topic carries; the last topic segment."""

    DINER = "diner"
    TELEMETRY = "telemetry"
    SAFETY = "safety"
    COUNT = "count"
    STATUS = "status"


class PointChannel(StrEnum):
    """Server→edge topics addressed to a whole meal point."""

    CONFIG = "config"
    ROSTER = "roster"
    CMD = "cmd"


class TopicError(ValueError):
    """A topic or id does not follow contract v1."""


def check_id(value: str, what: str = "id") -> str:
    """Return value if it is a valid point or device id, else raise TopicError."""
    if not _ID_RE.match(value):
        raise TopicError(f"invalid {what} {value!r}: expected {ID_PATTERN}")
    return value


def device_topic(point_id: str, device_id: str, channel: Channel) -> str:
    """Build yangyi/v1/{point}/{device}/{channel}."""
    return f"{ROOT}/{check_id(point_id, 'point id')}/{check_id(device_id, 'device id')}/{channel.value}"


def point_topic(point_id: str, channel: PointChannel) -> str:
    """Build yangyi/v1/{point}/{channel} for server→edge messages."""
    return f"{ROOT}/{check_id(point_id, 'point id')}/{channel.value}"


def device_filter(channel: Channel | None = None, point_id: str = "+") -> str:
    """Subscription filter for one channel (or all) of every device of a point (or all points)."""
    last = channel.value if channel else "+"
    return f"{ROOT}/{point_id}/+/{last}"


@dataclass(frozen=True, slots=True)
class ParsedTopic:
    point_id: str
    device_id: str | None
    channel: Channel | PointChannel


def parse_topic(topic: str) -> ParsedTopic:
    """Split a contract v1 topic into its parts; raise TopicError for anything else."""
    parts = topic.split("/")
    if len(parts) < 4 or f"{parts[0]}/{parts[1]}" != ROOT:
        raise TopicError(f"not a {ROOT} topic: {topic!r}")
    try:
        if len(parts) == 4:
            return ParsedTopic(check_id(parts[2]), None, PointChannel(parts[3]))
        if len(parts) == 5:
            return ParsedTopic(check_id(parts[2]), check_id(parts[3]), Channel(parts[4]))
    except ValueError as exc:
        raise TopicError(f"unknown topic {topic!r}: {exc}") from exc
    raise TopicError(f"unknown topic {topic!r}")
