"""The seam between inputs and the outbox: inputs emit event bodies; the outbox numbers and stores them."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from datetime import datetime
from enum import IntEnum
from typing import Any, Protocol

from firmware_bridge.contract import Channel


class Lane(IntEnum):
    """Outbox lanes, drained lowest first: safety events overtake everything else."""

    SAFETY = 0
    NORMAL = 1
    BULK = 2


class Emitter(Protocol):
    """Where inputs put events. Implemented by the agent on top of the outbox."""

    def emit(
        self,
        channel: Channel,
        device_id: str,
        body: dict[str, Any],
        *,
        lane: Lane = Lane.NORMAL,
        ts: datetime | None = None,
    ) -> int:
        """Validate and durably store one event; return its per-device sequence number.

        `body` holds the event model's fields beyond the header (point, device, seq, ts and
        clock_synced are filled in). Returns only after the event is committed to the outbox, so a
        caller may give feedback (a beep, a light) knowing the event cannot be lost.
        """
        ...


class Input(ABC):
    """An input plug-in (card reader, sensor bus, camera, simulator), run by the agent in a thread."""

    name: str = "input"

    @abstractmethod
    def run(self, emitter: Emitter, stop: threading.Event) -> None:
        """Read the device and emit events until `stop` is set; recover from device loss inside."""
