"""Fixtures for the camera tests: a recording Emitter that validates events against contract v1."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from edge.events import Lane
from firmware_bridge.contract import EVENT_MODELS, Channel, EventHeader


@dataclass
class RecordingEmitter:
    """Stores each event as the contract model the agent would build; rejects anything invalid."""

    point: str = "P-test"
    events: list[tuple[Channel, EventHeader]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def emit(self, channel: Channel, device_id: str, body: dict[str, Any], *, lane: Lane = Lane.NORMAL,
             ts: datetime | None = None) -> int:
        with self.lock:
            seq = len(self.events)
            event = EVENT_MODELS[channel].model_validate({
                "point": self.point, "device": device_id, "seq": seq, "ts": ts or datetime.now(UTC),
                "clock_synced": True, **body,
            })
            self.events.append((channel, event))
            return seq

    def of(self, channel: Channel) -> list[Any]:
        with self.lock:
            return [e for c, e in self.events if c == channel]


@pytest.fixture
def emitter() -> RecordingEmitter:
    return RecordingEmitter()
