"""Live alert updates for dashboards: one LISTEN connection per API process fans NOTIFY payloads out
to server-sent-event streams (the worker and the API are different processes).

Wire format (text/event-stream), one event per alert change or in-app message:
    id: <per-process sequence>
    event: alert | inapp
    data: <the NOTIFY JSON, one line>
and a `: keep-alive` comment every KEEPALIVE_SECONDS so proxies keep the stream open.
A slow reader's queue holds at most QUEUE_MAX events; older ones are dropped and counted.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import psycopg

from .repository import NOTIFY_CHANNEL

log = logging.getLogger(__name__)

KEEPALIVE_SECONDS = 15.0
QUEUE_MAX = 500
RETRY_SECONDS = 1.0
IDLE_SECONDS = 30.0  # with no stream open this long the listener ends; the next stream starts another


@dataclass(eq=False)
class FeedSubscription:
    loop: asyncio.AbstractEventLoop
    points: frozenset[str] | None  # None: every point (county-wide streams)
    persons: frozenset[str]  # contact ids whose in-app messages this stream shows
    queue: asyncio.Queue[tuple[int, str, str]] = field(default_factory=lambda: asyncio.Queue(QUEUE_MAX))
    dropped: int = 0

    def wants(self, body: dict[str, Any]) -> bool:
        kind = body.get("type")
        if kind == "alert":
            return self.points is None or body.get("point_id") in self.points
        if kind == "inapp":
            return str(body.get("person_id")) in self.persons
        return False

    def _put(self, item: tuple[int, str, str]) -> None:
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(item)


class AlertFeed:
    """LISTEN yangyi_alerts in a thread; hand each payload to the streams that want it."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._subs: list[FeedSubscription] = []
        self._lock = threading.Lock()
        self._seq = itertools.count(1)
        self.listening = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alert-feed", daemon=True)

    def start(self) -> AlertFeed:
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._stop.is_set()

    def _idle(self, since: list[float]) -> bool:
        with self._lock:
            if self._subs:
                since[0] = time.monotonic()
                return False
        return time.monotonic() - since[0] > IDLE_SECONDS

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def subscribe(self, points: Collection[str] | None, persons: Collection[str] = ()) -> FeedSubscription:
        sub = FeedSubscription(asyncio.get_running_loop(), frozenset(points) if points is not None else None,
                               frozenset(persons))
        with self._lock:
            self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: FeedSubscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    def dispatch(self, payload: str) -> int:
        """Hand one NOTIFY payload to the interested streams; return how many took it."""
        try:
            body = json.loads(payload)
        except ValueError:
            return 0
        if not isinstance(body, dict):
            return 0
        with self._lock:
            targets = [s for s in self._subs if s.wants(body)]
        item = (next(self._seq), str(body.get("type")), json.dumps(body, ensure_ascii=False, separators=(",", ":")))
        for sub in targets:
            try:
                sub.loop.call_soon_threadsafe(sub._put, item)
            except RuntimeError:
                self.unsubscribe(sub)  # its event loop is gone
        return len(targets)

    def _run(self) -> None:
        since = [time.monotonic()]
        while not self._stop.is_set() and not self._idle(since):
            try:
                with psycopg.connect(self._dsn, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self.listening.set()
                    while not self._stop.is_set() and not self._idle(since):
                        for note in conn.notifies(timeout=1.0):
                            self.dispatch(note.payload)
            except psycopg.Error as exc:
                self.listening.clear()
                log.warning("alert feed lost its database connection (%s); reconnecting", exc)
                self._stop.wait(RETRY_SECONDS)
        self._stop.set()
        self.listening.clear()


def format_event(seq: int, kind: str, data: str) -> str:
    return f"id: {seq}\nevent: {kind}\ndata: {data}\n\n"
