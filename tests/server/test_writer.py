"""Batch gathering bounds (size, bytes, latency) and the thread-mode writer's stats."""

from __future__ import annotations

import queue

from server.ingest.batch import Inbound
from server.ingest.writer import Stats, gather


def make_queue(sizes: list[int]) -> queue.SimpleQueue[Inbound]:
    q: queue.SimpleQueue[Inbound] = queue.SimpleQueue()
    for i, size in enumerate(sizes):
        q.put(("yangyi/v1/p/d/telemetry", b"x" * size, i + 1, 1, False, 1))
    return q


def fixed_clock() -> float:
    return 100.0  # time does not pass: only the size and byte bounds can end a full batch


def test_batch_ends_at_batch_max() -> None:
    q = make_queue([10] * 5)
    assert [m[2] for m in gather(q, 3, 1.0, fixed_clock)] == [1, 2, 3]
    assert [m[2] for m in gather(q, 3, 0.0, fixed_clock)] == [4, 5]


def test_batch_ends_once_max_bytes_is_reached() -> None:
    q = make_queue([400, 400, 400, 400])
    assert len(gather(q, 100, 1.0, fixed_clock, max_bytes=1000)) == 3  # 1200 >= 1000 after the third


def test_empty_queue_gives_an_empty_batch() -> None:
    assert gather(make_queue([]), 10, 0.0, fixed_clock, first_timeout_s=0.01) == []


def test_latency_bound_ends_a_partial_batch() -> None:
    ticks = iter([0.0, 0.5, 2.0])
    q = make_queue([10, 10])
    batch = gather(q, 100, 1.0, lambda: next(ticks))
    assert len(batch) == 2  # queue drained, then the deadline (t=1.0) had passed at t=2.0


def test_stats_snapshot() -> None:
    s = Stats()
    s.retried()
    assert s.snapshot()["retries"] == 1 and s.messages == 0
