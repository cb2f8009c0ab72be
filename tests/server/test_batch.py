"""Pure batch preparation: validation, dedupe within a batch, dead-letter reasons, row encoding."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from firmware_bridge.contract import Channel
from server.ingest.acks import puback_bytes
from server.ingest.batch import DeadReason, Inbound, Preparer, rows_for

NOW = datetime(2026, 6, 3, 4, 0, tzinfo=UTC)
TS = datetime(2026, 6, 3, 3, 59, 30, tzinfo=UTC)


def msg(channel: str, body: dict[str, Any] | bytes, point: str = "p1", device: str = "d1", mid: int = 1,
        retain: bool = False) -> Inbound:
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    return (f"yangyi/v1/{point}/{device}/{channel}", payload, mid, 1, retain, 1)


def tel(seq: int, ts: datetime = TS, **extra: Any) -> dict[str, Any]:
    return {"v": 1, "point": "p1", "device": "d1", "seq": seq, "ts": ts.isoformat(), "clock_synced": True,
            "readings": [{"ch": "gas.lel", "unit": "%LEL", "v": 1.5}], **extra}


def test_duplicates_within_a_batch_are_kept_once_in_arrival_order() -> None:
    batch = Preparer(10_000).prepare(
        [msg("telemetry", tel(2)), msg("telemetry", tel(1)), msg("telemetry", tel(2)),
         msg("telemetry", tel(2, TS + timedelta(seconds=1)))], NOW)
    assert [k[2] for k in batch.events] == [2, 1, 2]
    assert batch.duplicates == 1
    assert batch.seen == {("p1", "d1"): NOW}
    assert batch.dead == []


def test_each_kind_of_bad_message_gets_its_reason() -> None:
    big = tel(9, readings=[{"ch": "x", "v": float(i)} for i in range(100)])
    batch = Preparer(1000).prepare([
        msg("telemetry", b"{not json"),
        msg("telemetry", {"v": 1, "point": "p1"}),
        msg("telemetry", tel(1), device="d2"),
        msg("telemetry", big),
        ("yangyi/v1/p1/config", b"{}", 5, 1, False, 1),
        ("other/topic/x/y/z", b"{}", 6, 1, False, 1),
        msg("telemetry", {**tel(1), "unexpected": 1}),
    ], NOW)
    assert [d.reason for d in batch.dead] == [
        DeadReason.INVALID_JSON, DeadReason.SCHEMA, DeadReason.MISMATCH, DeadReason.OVERSIZE,
        DeadReason.BAD_TOPIC, DeadReason.BAD_TOPIC, DeadReason.SCHEMA]
    assert batch.dead[0].payload == b"{not json"
    assert not batch.events and not batch.seen


def test_status_live_counts_as_heard_retained_replay_does_not() -> None:
    status = {"v": 1, "point": "p1", "device": "agent", "ts": TS.isoformat(), "state": "online"}
    batch = Preparer(10_000).prepare([
        msg("status", status, device="agent"),
        msg("status", {**status, "device": "cam"}, device="cam", retain=True),
        msg("status", b"", device="gone", retain=True),  # a cleared retained status: ignored
    ], NOW)
    assert batch.statuses[("p1", "agent")][1] == NOW
    assert batch.statuses[("p1", "cam")][1] is None
    assert ("p1", "gone") not in batch.statuses and batch.dead == []
    assert batch.points() == ["p1"]


def test_rows_encode_every_event_kind() -> None:
    reading_t = TS - timedelta(seconds=5)
    batch = Preparer(10_000).prepare([
        msg("telemetry", tel(1, readings=[
            {"ch": "a", "v": 1.0},
            {"ch": "b", "unit": "ppm", "t": reading_t.isoformat(), "v": 2.0, "min": 1.0, "mean": 1.5, "max": 2.0,
             "n": 4, "period_s": 60}])),
        msg("diner", {"v": 1, "point": "p1", "device": "d1", "seq": 2, "ts": TS.isoformat(), "clock_synced": False,
                      "method": "card", "card_id": "0012345678", "meal": "lunch", "decision": "accepted"}),
        msg("safety", {"v": 1, "point": "p1", "device": "d1", "seq": 3, "ts": TS.isoformat(), "clock_synced": True,
                       "ch": "gas.lel", "level": "alarm", "rule": "gas.lel", "value": 26.0, "actions": ["valve"]}),
        msg("count", {"v": 1, "point": "p1", "device": "d1", "seq": 4, "ts": TS.isoformat(), "clock_synced": True,
                      "period_s": 60, "entries": 3, "exits": 1}),
    ], NOW)
    rows = rows_for([(batch.channels[k], e) for k, e in batch.events.items()])
    assert rows.telemetry == [
        (TS, "p1", "d1", 1, "a", None, 1.0, None, None, None, None, None),
        (reading_t, "p1", "d1", 1, "b", "ppm", 2.0, 1.0, 1.5, 2.0, 4, 60),
    ]
    assert rows.diner == [(TS, "p1", "d1", 2, "tap", "card", "0012345678", "lunch", "accepted", None, False)]
    assert rows.safety == [(TS, "p1", "d1", 3, "gas.lel", "alarm", None, "gas.lel", 26.0, None, None, False,
                            ["valve"], None, True)]
    assert rows.count == [(TS, "p1", "d1", 4, 60, 3, 1, None)]
    assert set(batch.channels.values()) == {Channel.TELEMETRY, Channel.DINER, Channel.SAFETY, Channel.COUNT}


def test_puback_golden_bytes() -> None:
    assert puback_bytes([1, 0x1234, 65535]) == bytes.fromhex("40020001" "40021234" "4002ffff")
    assert puback_bytes([]) == b""
