"""In-app notifications: an in-memory fan-out that the dashboard's server-sent-events endpoint reads.

A subscription belongs to one person (their dashboard session) or to everybody (person_id None,
e.g. the bureau's wall screen). A notification addressed to a person reaches that person's
subscriptions and the everybody-subscriptions; it counts as delivered only if one of the person's
own sessions is open, so escalation falls through to the next channel when nobody is looking.
The address "*" broadcasts and counts as delivered when anyone is subscribed.
Each subscription holds at most `maxsize` messages; when full the oldest is dropped and counted.
Thread-safe: senders run in worker threads, readers in threads (`get`) or on an event loop (`aget`).
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections import deque
from dataclasses import dataclass

from .base import Notification, SendResult

BROADCAST = "*"


@dataclass(frozen=True, slots=True)
class InAppMessage:
    seq: int
    alert_id: str
    person_id: str
    title: str
    text: str
    link: str | None
    severity: str
    hazard: str


class Subscription:
    def __init__(self, hub: InAppHub, person_id: str | None, maxsize: int) -> None:
        self.person_id = person_id
        self.dropped = 0
        self._hub = hub
        self._maxsize = maxsize
        self._items: deque[InAppMessage] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None

    def _put(self, msg: InAppMessage) -> None:
        with self._cond:
            if len(self._items) >= self._maxsize:
                self._items.popleft()
                self.dropped += 1
            self._items.append(msg)
            self._cond.notify_all()
            loop, event = self._loop, self._event
        if loop is not None and event is not None:
            loop.call_soon_threadsafe(event.set)

    def get(self, timeout: float | None = None) -> InAppMessage | None:
        """The next message, waiting up to timeout seconds; None on timeout or when closed."""
        with self._cond:
            self._cond.wait_for(lambda: self._items or self._closed, timeout)
            return self._items.popleft() if self._items else None

    async def aget(self) -> InAppMessage | None:
        """The next message on the running event loop; None once closed."""
        while True:
            with self._cond:
                if self._event is None:
                    self._loop = asyncio.get_running_loop()
                    self._event = asyncio.Event()
                if self._items:
                    return self._items.popleft()
                if self._closed:
                    return None
                event = self._event
                event.clear()
            await event.wait()

    def close(self) -> None:
        self._hub.unsubscribe(self)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            loop, event = self._loop, self._event
        if loop is not None and event is not None:
            loop.call_soon_threadsafe(event.set)


class InAppHub:
    """The in-app channel and its subscribers."""

    name = "inapp"

    def __init__(self, maxsize: int = 200) -> None:
        self._maxsize = maxsize
        self._subs: list[Subscription] = []
        self._lock = threading.Lock()
        self._seq = itertools.count(1)

    def subscribe(self, person_id: str | None = None) -> Subscription:
        sub = Subscription(self, person_id, self._maxsize)
        with self._lock:
            self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    def send(self, notification: Notification) -> SendResult:
        n = notification
        broadcast = n.address == BROADCAST
        with self._lock:
            targets = [s for s in self._subs if s.person_id is None or broadcast or s.person_id == n.address]
            seq = next(self._seq)
        msg = InAppMessage(seq, n.alert_id, n.person_id, n.title, n.text, n.link, n.severity, n.hazard)
        personal = 0
        for sub in targets:
            sub._put(msg)
            if broadcast or sub.person_id == n.address:
                personal += 1
        if personal == 0:
            return SendResult(False, self.name, error=f"no open in-app session for {n.address!r}",
                              response=f"delivered to {len(targets)} shared screens")
        return SendResult(True, self.name, response=f"delivered to {personal} sessions")
