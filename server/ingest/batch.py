"""Pure batch preparation: validate each message, dedupe, and turn events into table rows.

No I/O and no clock: the writer passes `now` in. One message becomes exactly one of
  * an event (diner, telemetry, safety, count) keyed by (point, device, seq, ts) — the receipt key;
  * a device status (retained agent/device state);
  * a duplicate of an event earlier in the same batch (acked, not stored twice);
  * a dead letter with a reason and the raw bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Final, NamedTuple

from pydantic import ValidationError

from firmware_bridge.contract import (
    Channel,
    CountEvent,
    DeviceStatus,
    DinerEvent,
    EventHeader,
    SafetyEvent,
    TelemetryEvent,
    TopicError,
    parse_topic,
)
from firmware_bridge.contract.messages import MODELS

# One message as received: (topic, payload, mid, qos, retain, gen), where gen numbers the MQTT
# connection it came on (acks go only to that one). A plain tuple: it is built, queued and pickled
# once per message on the hot path, where a NamedTuple costs measurably more.
Inbound = tuple[str, bytes, int, int, bool, int]
MID: Final = 2
QOS: Final = 3
GEN: Final = 5


class DeadReason(StrEnum):
    OVERSIZE = "oversize"
    BAD_TOPIC = "bad_topic"  # not a contract v1 device topic
    INVALID_JSON = "invalid_json"  # not UTF-8 JSON at all
    SCHEMA = "schema"  # JSON, but not the contract's model for the topic's channel
    MISMATCH = "topic_payload_mismatch"  # payload names another point or device than its topic
    STORAGE_REJECTED = "storage_rejected"  # valid by the contract, refused by the database (e.g. NUL)


class DeadLetter(NamedTuple):
    topic: str
    payload: bytes
    reason: DeadReason
    error: str


EventKey = tuple[str, str, int, datetime]  # point, device, seq, ts
DeviceKey = tuple[str, str]

ERROR_TEXT_MAX_CHARS = 2000
_TOPIC_CACHE_MAX = 100_000
# The contract models' own validators: what contract.decode() runs, minus its Python wrapper.
_VALIDATE_JSON = {ch: MODELS[ch].__pydantic_validator__.validate_json for ch in Channel}


@dataclass(slots=True)
class PreparedBatch:
    """What one transaction writes; `events` are unique by key and in arrival order."""

    events: dict[EventKey, EventHeader] = field(default_factory=dict)
    channels: dict[EventKey, Channel] = field(default_factory=dict)
    # Last status per device in arrival order, with the time to count as "heard from" (or None).
    statuses: dict[DeviceKey, tuple[DeviceStatus, datetime | None]] = field(default_factory=dict)
    seen: dict[DeviceKey, datetime] = field(default_factory=dict)
    dead: list[DeadLetter] = field(default_factory=list)
    duplicates: int = 0

    def points(self) -> list[str]:
        return sorted({p for p, _ in self.seen} | {p for p, _ in self.statuses})


class Preparer:
    """Validates messages into PreparedBatch objects; caches parsed topics across batches."""

    def __init__(self, max_payload_bytes: int) -> None:
        self.max_payload_bytes = max_payload_bytes
        self._topics: dict[str, tuple[str, str, Channel] | TopicError] = {}

    def _topic(self, topic: str) -> tuple[str, str, Channel] | TopicError:
        hit = self._topics.get(topic)
        if hit is not None:
            return hit
        result: tuple[str, str, Channel] | TopicError
        try:
            parsed = parse_topic(topic)
            if parsed.device_id is None or not isinstance(parsed.channel, Channel):
                raise TopicError(f"not a device topic: {topic!r}")
            result = (parsed.point_id, parsed.device_id, parsed.channel)
        except TopicError as exc:
            result = exc
        if len(self._topics) >= _TOPIC_CACHE_MAX:
            self._topics.clear()
        self._topics[topic] = result
        return result

    def prepare(self, messages: list[Inbound], now: datetime) -> PreparedBatch:
        """Sort the messages of one batch into events, statuses, duplicates and dead letters."""
        batch = PreparedBatch()
        events = batch.events
        channels = batch.channels
        seen = batch.seen
        dead = batch.dead
        for topic, payload, _mid, _qos, retain, _gen in messages:
            if len(payload) > self.max_payload_bytes:
                dead.append(DeadLetter(topic, payload, DeadReason.OVERSIZE,
                                       f"{len(payload)} bytes > {self.max_payload_bytes}"))
                continue
            parsed = self._topic(topic)
            if isinstance(parsed, TopicError):
                dead.append(DeadLetter(topic, payload, DeadReason.BAD_TOPIC, str(parsed)))
                continue
            point, device, channel = parsed
            if not payload and channel is Channel.STATUS:
                continue  # an empty retained message is how a status is cleared: nothing to store
            try:
                msg: Any = _VALIDATE_JSON[channel](payload)
            except ValidationError as exc:
                reason = (DeadReason.INVALID_JSON if exc.errors()[0]["type"] == "json_invalid"
                          else DeadReason.SCHEMA)
                dead.append(DeadLetter(topic, payload, reason, _short(exc)))
                continue
            if msg.point != point or msg.device != device:
                dead.append(DeadLetter(
                    topic, payload, DeadReason.MISMATCH,
                    f"payload point/device {msg.point}/{msg.device} != topic {point}/{device}"))
                continue
            dkey = (point, device)
            if channel is Channel.STATUS:
                heard = None if retain else now
                batch.statuses[dkey] = (msg, heard)
                continue
            key = (point, device, msg.seq, msg.ts)
            if key in events:
                batch.duplicates += 1
            else:
                events[key] = msg
                channels[key] = channel
            seen[dkey] = now
        return batch


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) <= ERROR_TEXT_MAX_CHARS else text[:ERROR_TEXT_MAX_CHARS] + "…"


# Row layouts, in the column order of the COPY statements in repository.py.

TELEMETRY_COLUMNS = ("time", "point_id", "device_id", "seq", "channel", "unit", "value",
                     "vmin", "vmean", "vmax", "n", "period_s")
DINER_COLUMNS = ("time", "point_id", "device_id", "seq", "kind", "method", "card_id", "meal",
                 "decision", "elder_id", "clock_synced")
SAFETY_COLUMNS = ("time", "point_id", "device_id", "seq", "channel", "level", "prev_level", "rule",
                  "value", "unit", "threshold", "latched", "actions", "message", "clock_synced")
COUNT_COLUMNS = ("time", "point_id", "device_id", "seq", "period_s", "entries", "exits", "occupancy")


def telemetry_rows(e: TelemetryEvent, out: list[tuple[Any, ...]]) -> None:
    """Append one row per reading; a reading without its own time takes the event's ts."""
    ts, point, device, seq = e.ts, e.point, e.device, e.seq
    for r in e.readings:
        out.append((r.t or ts, point, device, seq, r.ch, r.unit, r.v, r.min, r.mean, r.max, r.n, r.period_s))


def diner_row(e: DinerEvent) -> tuple[Any, ...]:
    return (e.ts, e.point, e.device, e.seq, e.kind.value, e.method.value, e.card_id,
            e.meal.value if e.meal else None, e.decision.value, e.elder_id, e.clock_synced)


def safety_row(e: SafetyEvent) -> tuple[Any, ...]:
    return (e.ts, e.point, e.device, e.seq, e.ch, e.level.value,
            e.prev_level.value if e.prev_level else None, e.rule, e.value, e.unit, e.threshold,
            e.latched, list(e.actions), e.message, e.clock_synced)


def count_row(e: CountEvent) -> tuple[Any, ...]:
    return (e.ts, e.point, e.device, e.seq, e.period_s, e.entries, e.exits, e.occupancy)


@dataclass(slots=True)
class TableRows:
    telemetry: list[tuple[Any, ...]] = field(default_factory=list)
    diner: list[tuple[Any, ...]] = field(default_factory=list)
    safety: list[tuple[Any, ...]] = field(default_factory=list)
    count: list[tuple[Any, ...]] = field(default_factory=list)


def rows_for(events: list[tuple[Channel, EventHeader]]) -> TableRows:
    """Encode new events as rows of their tables."""
    rows = TableRows()
    tel = rows.telemetry
    for channel, e in events:
        if channel is Channel.TELEMETRY:
            telemetry_rows(e, tel)  # type: ignore[arg-type]
        elif channel is Channel.DINER:
            rows.diner.append(diner_row(e))  # type: ignore[arg-type]
        elif channel is Channel.SAFETY:
            rows.safety.append(safety_row(e))  # type: ignore[arg-type]
        elif channel is Channel.COUNT:
            rows.count.append(count_row(e))  # type: ignore[arg-type]
    return rows
