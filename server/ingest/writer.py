"""The batch writer: gather, validate, write in one transaction, then ack — never before commit."""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, MutableSequence
from datetime import UTC, datetime
from typing import Any, Protocol

import psycopg

from server.settings import IngestSettings

from .batch import DeadLetter, DeadReason, Inbound, PreparedBatch, Preparer
from .repository import WriteResult, write_batch, write_dead_letters

log = logging.getLogger(__name__)

# TEST-ONLY fault hook: when set to N, the process exits (status 17) right after the N-th committed
# batch and before that batch is acked, to prove that redelivery after a crash makes no duplicate.
CRASH_AFTER_COMMIT_ENV = "YANGYI_INGEST_TEST_CRASH_AFTER_COMMIT"
CRASH_EXIT_STATUS = 17
STATS_INTERVAL_SECONDS = 10.0

# Errors that blame the data (SQLSTATE classes 22 and 23, e.g. a NUL in text): the batch is written
# message by message so only the offender becomes a dead letter. Every other error (connection lost,
# server shutting down, schema not migrated yet ...) is retried with backoff: never dropped.
_DATA_ERRORS = (psycopg.DataError, psycopg.IntegrityError)


class StopFlag(Protocol):
    """threading.Event or multiprocessing.Event."""

    def is_set(self) -> bool: ...
    def set(self) -> None: ...
    def wait(self, timeout: float | None = None) -> bool: ...


STAT_FIELDS = ("messages", "batches", "new_events", "duplicates", "rows", "dead_letters", "statuses",
               "retries")


class Stats:
    """Counters since start, kept in a sequence of ints (a shared array when the writer is a process)."""

    def __init__(self, values: MutableSequence[int] | None = None) -> None:
        self._v: MutableSequence[int] = values if values is not None else [0] * len(STAT_FIELDS)

    def add(self, n_messages: int, r: WriteResult, in_batch_duplicates: int) -> None:
        v = self._v
        v[0] += n_messages
        v[1] += 1
        v[2] += r.new_events
        v[3] += r.duplicate_events + in_batch_duplicates
        v[4] += r.rows
        v[5] += r.dead_letters
        v[6] += r.statuses

    def retried(self) -> None:
        self._v[7] += 1

    messages = property(lambda self: self._v[0])
    batches = property(lambda self: self._v[1])
    new_events = property(lambda self: self._v[2])
    duplicates = property(lambda self: self._v[3])
    rows = property(lambda self: self._v[4])
    dead_letters = property(lambda self: self._v[5])
    statuses = property(lambda self: self._v[6])
    retries = property(lambda self: self._v[7])

    def snapshot(self) -> dict[str, int]:
        return dict(zip(STAT_FIELDS, list(self._v), strict=True))


def gather(q: queue.SimpleQueue[Inbound], batch_max: int, latency_s: float, monotonic: Callable[[], float],
           first_timeout_s: float = 0.5, max_bytes: int = 1 << 62) -> list[Inbound]:
    """Take one batch from q: wait for a first message, then until batch_max messages, max_bytes of
    payload, or latency_s after the first."""
    try:
        first = q.get(timeout=first_timeout_s)
    except queue.Empty:
        return []
    batch = [first]
    size = len(first[1])
    deadline = monotonic() + latency_s
    while len(batch) < batch_max and size < max_bytes:
        try:
            m = q.get_nowait()
        except queue.Empty:
            remaining = deadline - monotonic()
            if remaining <= 0:
                break
            try:
                m = q.get(timeout=remaining)
            except queue.Empty:
                break
        batch.append(m)
        size += len(m[1])
    return batch


class BatchWriter:
    """Consumes Inbound messages from `queue`; `ack` is called with each batch after its commit."""

    def __init__(
        self,
        dsn: str,
        settings: IngestSettings,
        ack: Callable[[list[Inbound]], None],
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
        stats: Stats | None = None,
        stop: StopFlag | None = None,
    ) -> None:
        self.dsn = dsn
        self.settings = settings
        self.queue: queue.SimpleQueue[Inbound] = queue.SimpleQueue()
        self.stats = stats or Stats()
        self._ack = ack
        self._now = now
        self._monotonic = monotonic
        self._preparer = Preparer(settings.max_payload_bytes)
        self._conn: psycopg.Connection[Any] | None = None
        self._stop: StopFlag = stop or threading.Event()
        self._thread: threading.Thread | None = None
        crash = os.environ.get(CRASH_AFTER_COMMIT_ENV, "")
        self._crash_after = int(crash) if crash.isdigit() else 0

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="ingest-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the batch in hand (commit and ack), then stop; queued messages stay unacked."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.close()

    def close(self) -> None:
        self._drop_connection()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def exitcode(self) -> int | None:
        return None

    def _run(self) -> None:
        last_stats = self._monotonic()
        while not self._stop.is_set():
            batch = self._gather()
            if batch:
                self.process(batch)
            if self._monotonic() - last_stats >= STATS_INTERVAL_SECONDS:
                last_stats = self._monotonic()
                if self.stats.messages:
                    log.info("ingest stats %s", self.stats.snapshot())

    def _gather(self) -> list[Inbound]:
        s = self.settings
        return gather(self.queue, s.batch_max, s.batch_latency_s, self._monotonic, max_bytes=s.batch_max_bytes)

    def process(self, messages: list[Inbound]) -> bool:
        """Validate, write and commit one batch, then ack it; False if stopped before commit."""
        return self.commit(messages, self.prepare(messages))

    def prepare(self, messages: list[Inbound]) -> PreparedBatch:
        """Validate one batch (CPU only; may run ahead of the commit of the previous batch)."""
        return self._preparer.prepare(messages, self._now())

    def commit(self, messages: list[Inbound], prepared: PreparedBatch) -> bool:
        """Write and commit a prepared batch, then ack it; False if stopped before commit."""
        result = self._write_with_retry(prepared)
        if result is None:
            if self._stop.is_set():
                return False
            result = self._write_one_by_one(messages)
            if result is None:
                return False
        self.stats.add(len(messages), result, prepared.duplicates)
        if self._crash_after and self.stats.batches >= self._crash_after:
            log.warning("test fault hook %s: exiting after commit, before ack", CRASH_AFTER_COMMIT_ENV)
            os._exit(CRASH_EXIT_STATUS)
        self._ack(messages)
        return True

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=10)
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None

    def _write_with_retry(self, prepared: PreparedBatch) -> WriteResult | None:
        """Commit the batch, retrying with backoff while the database is unavailable.

        Returns None when stopped, or when the database rejected the batch's data (then the caller
        writes the messages one by one so only the offending one becomes a dead letter).
        """
        delay = self.settings.retry_initial_s
        while not self._stop.is_set():
            try:
                conn = self._connection()
                with conn.transaction():
                    return write_batch(conn, prepared)
            except _DATA_ERRORS as exc:
                log.warning("database rejected a batch (%s); writing its messages one by one", exc)
                return None
            except psycopg.Error as exc:
                self.stats.retried()
                log.warning("database unavailable (%s); retrying in %.1f s", exc, delay)
                self._drop_connection()
                self._stop.wait(delay)
                delay = min(delay * 2, self.settings.retry_max_s)
        return None

    def _write_one_by_one(self, messages: list[Inbound]) -> WriteResult | None:
        total = WriteResult(0, 0, 0, 0, 0)
        for m in messages:
            prepared = self._preparer.prepare([m], self._now())
            result = self._write_with_retry(prepared)
            if result is None:
                if self._stop.is_set():
                    return None
                result = self._write_rejected(m)
                if result is None:
                    return None
            total = WriteResult(*(a + b for a, b in zip(_fields(total), _fields(result), strict=True)))
        return total

    def _write_rejected(self, m: Inbound) -> WriteResult | None:
        dead = [DeadLetter(m[0], m[1], DeadReason.STORAGE_REJECTED, "refused by the database")]
        delay = self.settings.retry_initial_s
        while not self._stop.is_set():
            try:
                conn = self._connection()
                with conn.transaction(), conn.cursor() as cur:
                    write_dead_letters(cur, dead)
                return WriteResult(0, 0, 0, 1, 0)
            except psycopg.Error as exc:
                self.stats.retried()
                log.warning("cannot store a dead letter (%s); retrying in %.1f s", exc, delay)
                self._drop_connection()
                self._stop.wait(delay)
                delay = min(delay * 2, self.settings.retry_max_s)
        return None


def _fields(r: WriteResult) -> tuple[int, int, int, int, int]:
    return (r.new_events, r.duplicate_events, r.rows, r.dead_letters, r.statuses)
