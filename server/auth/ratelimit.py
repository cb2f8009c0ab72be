"""Login rate limiting: a sliding window over recent failed logins, per account and per address.

The failures live in the database (auth_login_failures), not in process memory: the API may run as
several uvicorn workers or hosts, and an in-memory window would multiply the allowance by their number
and forget it on every restart. A login is rare, so one indexed count per attempt costs nothing. The
decision itself is pure: it takes the failure times and the clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    retry_after_s: int = 0


ALLOWED = Verdict(True)


@dataclass(frozen=True, slots=True)
class SlidingWindow:
    """At most `limit` failures within any `window`; the next attempt waits until one ages out."""

    limit: int
    window: timedelta

    def since(self, now: datetime) -> datetime:
        """Oldest failure time that still counts."""
        return now - self.window

    def check(self, failures: Iterable[datetime], now: datetime) -> Verdict:
        recent = sorted(t for t in failures if now - self.window < t <= now)
        if len(recent) < self.limit:
            return ALLOWED
        # Enough of the oldest must age out to leave limit - 1 in the window.
        frees_at = recent[len(recent) - self.limit] + self.window
        return Verdict(False, max(1, math.ceil((frees_at - now).total_seconds())))


def combine(*verdicts: Verdict) -> Verdict:
    """Blocked if any is blocked, retrying after the longest wait."""
    blocked = [v for v in verdicts if not v.allowed]
    if not blocked:
        return ALLOWED
    return Verdict(False, max(v.retry_after_s for v in blocked))
