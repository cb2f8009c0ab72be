"""Input plug-ins: device I/O that turns readings and taps into events through the Emitter."""

from __future__ import annotations

from dataclasses import dataclass

from ..clock import Clock


@dataclass(frozen=True, slots=True)
class InputContext:
    """What the agent gives every input it builds."""

    point_id: str
    clock: Clock
