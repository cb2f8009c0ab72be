"""Input plug-ins: device I/O that turns readings and taps into events through the Emitter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..clock import Clock

if TYPE_CHECKING:
    from ..actuators import SafetyHub
    from ..checkin import Checkin


@dataclass(frozen=True, slots=True)
class InputContext:
    """What the agent gives every input it builds."""

    point_id: str
    clock: Clock
    checkin: Checkin | None = None  # shared by every card reader of the point
    safety_hub: SafetyHub | None = None  # shared by every sensor bus of the point
    indicator: Any = None  # edge.inputs.cards.Indicator; None means the logging one
