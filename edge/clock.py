"""Clocks behind one small interface, so logic can be tested with controlled time."""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

NTP_CHECK_INTERVAL_SECONDS = 60.0


class Clock(Protocol):
    def now(self) -> datetime:
        """Aware UTC wall-clock time."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin that never goes backwards."""
        ...

    def synced(self) -> bool:
        """Whether the wall clock is known to be synchronised (NTP)."""
        ...


class SystemClock:
    """The machine's clock; synchronisation read from systemd-timesyncd/chrony via timedatectl."""

    def __init__(self, assume_synced: bool | None = None) -> None:
        self._assume = assume_synced
        self._synced = False
        self._checked_at = -1e9

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def synced(self) -> bool:
        if self._assume is not None:
            return self._assume
        if time.monotonic() - self._checked_at > NTP_CHECK_INTERVAL_SECONDS:
            self._checked_at = time.monotonic()
            try:
                out = subprocess.run(
                    ["timedatectl", "show", "-p", "NTPSynchronized", "--value"],
                    capture_output=True, text=True, timeout=2, check=False,
                )
                self._synced = out.stdout.strip() == "yes"
            except (OSError, subprocess.SubprocessError):
                self._synced = False
        return self._synced


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime | None = None, synced: bool = True) -> None:
        self._now = start or datetime(2026, 6, 1, 3, 0, tzinfo=UTC)
        self._mono = 1000.0
        self._synced = synced

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def synced(self) -> bool:
        return self._synced

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
        self._mono += seconds

    def set_synced(self, synced: bool) -> None:
        self._synced = synced
