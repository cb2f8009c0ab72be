"""What the server's long-running programs (ingest, alerts, maintenance) share as processes."""

from __future__ import annotations

import signal
import threading
from types import FrameType


def stop_on_signals() -> threading.Event:
    """An event that SIGTERM (the supervisor, `make stop`) or SIGINT (Ctrl-C) sets: the program's main
    loop waits on it and then stops cleanly (sessions kept, batches committed and acknowledged)."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stop
