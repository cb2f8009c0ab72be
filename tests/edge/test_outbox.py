"""Outbox: numbering, lanes, durability across reopen, thread safety, corrupt files."""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge.clock import FakeClock
from edge.errors import EventRejected, OutboxCorruptError
from edge.events import Lane
from edge.outbox import Outbox, OutboxEmitter
from firmware_bridge.contract import Channel, DinerEvent, decode

TS = datetime(2026, 6, 1, 3, 0, tzinfo=UTC)


def tap(card: str = "0102030405") -> dict[str, object]:
    return {"method": "card", "card_id": card, "decision": "accepted"}


def reading(v: float = 0.5) -> dict[str, object]:
    return {"readings": [{"ch": "gas.lel", "unit": "%LEL", "v": v}]}


def add(ob: Outbox, channel: Channel, device: str, body: dict[str, object], lane: Lane = Lane.NORMAL) -> int:
    return ob.append(channel, device, body, lane=lane, ts=TS, clock_synced=True)


@pytest.fixture
def ob(tmp_path: Path) -> Outbox:
    return Outbox(tmp_path / "outbox.db", "mp-0001")


def test_sequence_numbers_are_per_device_and_start_at_zero(ob: Outbox) -> None:
    assert [add(ob, Channel.DINER, "r1", tap()) for _ in range(3)] == [0, 1, 2]
    assert add(ob, Channel.TELEMETRY, "s1", reading()) == 0
    assert add(ob, Channel.DINER, "r1", tap()) == 3
    assert ob.next_seqs() == {"r1": 4, "s1": 1}


def test_rows_hold_valid_contract_messages_on_the_right_topic(ob: Outbox) -> None:
    add(ob, Channel.DINER, "r1", tap("AB12"))
    (row,) = ob.peek(10)
    assert row.topic == "yangyi/v1/mp-0001/r1/diner"
    msg = decode(Channel.DINER, row.payload)
    assert isinstance(msg, DinerEvent)
    assert (msg.point, msg.device, msg.seq, msg.card_id, msg.ts, msg.clock_synced) == (
        "mp-0001", "r1", 0, "AB12", TS, True,
    )


def test_invalid_body_stores_nothing_and_consumes_no_seq(ob: Outbox) -> None:
    with pytest.raises(EventRejected, match="decision"):
        add(ob, Channel.DINER, "r1", {"method": "card", "card_id": "x", "decision": "maybe"})
    with pytest.raises(EventRejected, match="header fields"):
        add(ob, Channel.DINER, "r1", {**tap(), "seq": 99})
    with pytest.raises(EventRejected, match="no events"):
        add(ob, Channel.STATUS, "r1", {})
    with pytest.raises(EventRejected, match="device id"):
        add(ob, Channel.DINER, "bad/device", tap())
    assert ob.depth() == 0
    assert add(ob, Channel.DINER, "r1", tap()) == 0


def test_lanes_drain_lowest_first_then_in_insertion_order(ob: Outbox) -> None:
    add(ob, Channel.TELEMETRY, "s1", reading(1), Lane.BULK)
    add(ob, Channel.DINER, "r1", tap("A"), Lane.NORMAL)
    add(ob, Channel.SAFETY, "g1", {"ch": "gas.lel", "level": "alarm", "rule": "gas.lel"}, Lane.SAFETY)
    add(ob, Channel.DINER, "r1", tap("B"), Lane.NORMAL)
    add(ob, Channel.SAFETY, "g1", {"ch": "gas.lel", "level": "alarm2", "rule": "gas.lel"}, Lane.SAFETY)
    order = [(r.lane, r.device, r.seq) for r in ob.peek(10)]
    assert order == [
        (Lane.SAFETY, "g1", 0), (Lane.SAFETY, "g1", 1), (Lane.NORMAL, "r1", 0), (Lane.NORMAL, "r1", 1),
        (Lane.BULK, "s1", 0),
    ]


def test_peek_skips_rows_in_flight_and_respects_limit(ob: Outbox) -> None:
    for _ in range(5):
        add(ob, Channel.DINER, "r1", tap())
    first = ob.peek(2)
    assert [r.seq for r in first] == [0, 1]
    assert [r.seq for r in ob.peek(2, exclude=[r.id for r in first])] == [2, 3]


def test_only_deleted_rows_go_and_the_rest_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    ob = Outbox(path, "mp-0001")
    for _ in range(4):
        add(ob, Channel.DINER, "r1", tap())
    rows = ob.peek(10)
    assert ob.delete([rows[0].id, rows[2].id]) == 2
    assert ob.delete([rows[0].id]) == 0  # a second PUBACK for the same row is harmless
    ob.close()
    again = Outbox(path, "mp-0001")
    assert [r.seq for r in again.peek(10)] == [1, 3]
    assert again.depth() == 2


def test_sequence_numbers_survive_reopen_after_everything_was_sent(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    ob = Outbox(path, "mp-0001")
    for _ in range(3):
        add(ob, Channel.DINER, "r1", tap())
    ob.delete(r.id for r in ob.peek(10))
    ob.close()
    again = Outbox(path, "mp-0001")
    assert again.depth() == 0
    assert add(again, Channel.DINER, "r1", tap()) == 3


def test_database_runs_in_wal_with_full_sync(ob: Outbox) -> None:
    add(ob, Channel.DINER, "r1", tap())
    other = sqlite3.connect(ob.path)
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert ob._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_concurrent_appends_get_unique_gapless_seqs(ob: Outbox) -> None:
    threads, per_thread = 8, 150
    seen: dict[str, list[int]] = {"r1": [], "r2": []}
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def work(i: int) -> None:
        device = "r1" if i % 2 else "r2"
        barrier.wait()
        for _ in range(per_thread):
            seq = add(ob, Channel.DINER, device, tap())
            with lock:
                seen[device].append(seq)

    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    half = threads // 2 * per_thread
    assert sorted(seen["r1"]) == list(range(half))
    assert sorted(seen["r2"]) == list(range(half))
    stored = [(r.device, r.seq) for r in ob.peek(10_000)]
    for device in ("r1", "r2"):
        assert [s for d, s in stored if d == device] == list(range(half))  # insertion order = seq order


def test_bury_moves_a_refused_row_aside(ob: Outbox) -> None:
    add(ob, Channel.DINER, "r1", tap())
    add(ob, Channel.DINER, "r1", tap())
    first = ob.peek(1)[0]
    ob.bury(first.id, "Not authorized")
    assert [r.seq for r in ob.peek(10)] == [1]
    assert ob.dead_count() == 1


def test_garbage_file_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    junk = b"\x00garbage, not a database\n" * 200
    path.write_bytes(junk)
    with pytest.raises(OutboxCorruptError, match="left untouched"):
        Outbox(path, "mp-0001")
    assert path.read_bytes() == junk


def test_truncated_outbox_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    ob = Outbox(path, "mp-0001")
    for i in range(300):
        add(ob, Channel.DINER, "r1", tap(f"{i:010d}"))
    ob.close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] + b"\xff" * 4096 + data[len(data) // 2 + 4096 :])
    with pytest.raises(OutboxCorruptError):
        Outbox(path, "mp-0001")


def test_another_programs_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    other = sqlite3.connect(path)
    other.execute("CREATE TABLE photos (id INTEGER)")
    other.commit()
    other.close()
    before = path.read_bytes()
    with pytest.raises(OutboxCorruptError, match="another program"):
        Outbox(path, "mp-0001")
    assert path.read_bytes() == before


def test_emitter_stamps_time_and_clock_state_and_wakes_listeners(ob: Outbox) -> None:
    clock = FakeClock(synced=False)
    woken: list[int] = []
    ob.add_listener(lambda: woken.append(ob.depth()))
    seq = OutboxEmitter(ob, clock).emit(Channel.DINER, "r1", tap())
    payload = json.loads(ob.peek(1)[0].payload)
    assert seq == 0
    assert payload["ts"] == "2026-06-01T03:00:00Z"
    assert payload["clock_synced"] is False
    assert woken == [1]  # called after the commit, so the row is already visible
