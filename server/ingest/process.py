"""The batch writer in a child process, so validation and row encoding don't share the GIL with paho.

The MQTT process keeps only the network work (receive, ack): a forwarder thread gathers batches and
pipes them to the child; the child validates, writes and commits each batch in order and pipes back
its id; an acker thread then acks that batch's messages. A batch is acked only after the child
reported its commit; if the child dies, nothing more is acked and the broker redelivers the rest.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import queue
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from server.settings import IngestSettings

from .batch import Inbound, PreparedBatch
from .writer import STAT_FIELDS, BatchWriter, Stats, StopFlag, gather

log = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 5.0
START_TIMEOUT_SECONDS = 60.0
_READY = "ready"
_ctx = multiprocessing.get_context("spawn")  # never fork a process that runs paho's threads


def _child_main(dsn: str, settings: IngestSettings, conn: Connection, values: Any, stop: StopFlag,
                log_level: int) -> None:
    """Two stages: this thread validates batch N+1 while a writer thread commits batch N, so the
    child's CPU work overlaps the database's; batches still commit, and are acked, in order."""
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from .worker import tune_gc

    tune_gc()
    writer = BatchWriter(dsn, settings, ack=lambda messages: None, stats=Stats(values), stop=stop)
    prepared: queue.Queue[tuple[int, list[Inbound], PreparedBatch] | None] = queue.Queue(maxsize=2)
    failed = threading.Event()

    def commit_loop() -> None:
        try:
            while (item := prepared.get()) is not None:
                batch_id, messages, batch = item
                if not writer.commit(messages, batch):
                    break  # stopped before this batch committed: it stays unacked
                conn.send(batch_id)
        except (OSError, ValueError):
            pass  # the parent went away
        finally:
            failed.set()

    committer = threading.Thread(target=commit_loop, name="ingest-commit", daemon=True)
    committer.start()
    try:
        conn.send(_READY)
        while not failed.is_set():
            item = conn.recv()
            if item is None:
                break
            batch_id, messages = item
            entry = (batch_id, messages, writer.prepare(messages))
            while not failed.is_set():
                try:
                    prepared.put(entry, timeout=0.5)
                    break
                except queue.Full:
                    continue
    except (EOFError, OSError):
        pass  # the parent went away; unacked messages will be redelivered to the next worker
    finally:
        while committer.is_alive():
            try:
                prepared.put(None, timeout=0.5)
                break
            except queue.Full:
                continue
        committer.join()
        writer.close()


class WriterProcess:
    """Parent-side handle with the same surface as BatchWriter: queue, start, stop, alive, stats."""

    def __init__(self, dsn: str, settings: IngestSettings, ack: Callable[[list[Inbound]], None],
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.queue: queue.SimpleQueue[Inbound] = queue.SimpleQueue()
        self._values = _ctx.Array("q", len(STAT_FIELDS), lock=False)
        self.stats = Stats(self._values)
        self._ack = ack
        self._monotonic = monotonic
        self._child_stop = _ctx.Event()
        self._conn, child_conn = _ctx.Pipe()
        self._proc = _ctx.Process(
            target=_child_main, name="ingest-writer",
            args=(dsn, settings, child_conn, self._values, self._child_stop, logging.getLogger().level),
            daemon=True)
        self._pending: dict[int, list[Inbound]] = {}
        self._pending_lock = threading.Lock()
        self._stopping = threading.Event()
        self._forwarder = threading.Thread(target=self._forward, name="ingest-forwarder", daemon=True)
        self._acker = threading.Thread(target=self._ack_loop, name="ingest-acker", daemon=True)

    def start(self) -> None:
        """Start the child and wait until it has imported everything and is ready for batches."""
        if self._proc.is_alive():
            return
        self._proc.start()
        if not self._conn.poll(START_TIMEOUT_SECONDS) or self._conn.recv() != _READY:
            raise RuntimeError("the ingest writer process did not start")
        self._forwarder.start()
        self._acker.start()

    @property
    def alive(self) -> bool:
        return self._proc.is_alive()

    @property
    def exitcode(self) -> int | None:
        return self._proc.exitcode

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    def stop(self, timeout: float = 30.0) -> None:
        """Forward nothing more; the child finishes (commits, then acks) the batch it is writing and
        gives up the rest, which stays unacked for redelivery."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._child_stop.set()
        if self._forwarder.is_alive():
            self._forwarder.join(timeout)
        if self._proc.is_alive():
            # The sentinel may block behind a full pipe while the database is down: send it aside.
            threading.Thread(target=self._send_quietly, args=(None,), daemon=True).start()
            self._proc.join(timeout)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(STOP_GRACE_SECONDS)
        self._acker.join(STOP_GRACE_SECONDS)
        self._conn.close()

    def _send_quietly(self, item: Any) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._conn.send(item)

    def _forward(self) -> None:
        batch_id = 0
        s = self.settings
        while not self._stopping.is_set() and self._proc.is_alive():
            batch = gather(self.queue, s.batch_max, s.batch_latency_s, self._monotonic,
                           max_bytes=s.batch_max_bytes)
            if not batch:
                continue
            batch_id += 1
            with self._pending_lock:
                self._pending[batch_id] = batch
            try:
                self._conn.send((batch_id, batch))
            except (OSError, ValueError):
                log.warning("the writer process is gone; %d message(s) stay unacked", len(batch))
                return

    def _ack_loop(self) -> None:
        while True:
            try:
                batch_id = self._conn.recv()
            except (EOFError, OSError):
                return
            with self._pending_lock:
                batch = self._pending.pop(batch_id)
            self._ack(batch)
