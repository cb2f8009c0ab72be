"""Durable event outbox in SQLite: per-device sequence numbers, lanes, delete only after PUBACK.

Layout (schema version in PRAGMA user_version, ownership in PRAGMA application_id):

- ``seqs(device, next_seq)``: the next sequence number of each device. Kept apart from the rows so
  numbers never repeat after the rows are published and deleted, across restarts.
- ``rows(id, lane, channel, device, seq, topic, payload, created_at)``: encoded contract v1 messages
  waiting for their PUBACK. ``id`` is AUTOINCREMENT so insertion order survives deletes; rows are
  drained by (lane, id): safety first, then everything else in the order it happened.
- ``dead(…)``: rows the broker refused outright (e.g. not authorised), kept for an operator
  instead of blocking the lane forever or vanishing.

The database runs in WAL mode with synchronous=FULL: a meal point loses power without warning and a
committed tap must still be there after the reboot. A file that is not an outbox (garbage, another
program's database, a failed integrity check) raises OutboxCorruptError and is never overwritten.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import PydanticSerializationError, to_json

from firmware_bridge.contract import EVENT_MODELS, Channel, EventHeader, device_topic

from .clock import Clock
from .errors import EventRejected, OutboxCorruptError, OutboxError
from .events import Lane

log = logging.getLogger(__name__)

APPLICATION_ID = 0x59594F42  # "YYOB"
SCHEMA_VERSION = 1
BUSY_TIMEOUT_SECONDS = 10.0
_HEADER_FIELDS = frozenset(EventHeader.model_fields)

_SCHEMA = """
CREATE TABLE seqs (
    device TEXT PRIMARY KEY,
    next_seq INTEGER NOT NULL
);
CREATE TABLE rows (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    lane INTEGER NOT NULL,
    channel TEXT NOT NULL,
    device TEXT NOT NULL,
    seq INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX rows_by_lane ON rows (lane, id);
CREATE TABLE dead (
    id INTEGER PRIMARY KEY,
    lane INTEGER NOT NULL,
    channel TEXT NOT NULL,
    device TEXT NOT NULL,
    seq INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    created_at TEXT NOT NULL,
    reason TEXT NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One stored event, ready to publish as is."""

    id: int
    lane: Lane
    channel: Channel
    device: str
    seq: int
    topic: str
    payload: bytes


class Outbox:
    """The SQLite outbox of one meal point; every method is safe to call from any thread."""

    def __init__(self, path: str | Path, point_id: str) -> None:
        self.path = Path(path)
        self.point_id = point_id
        self._lock = threading.RLock()
        self._listeners: list[Callable[[], None]] = []
        self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise OutboxError(f"cannot open outbox {self.path}: {exc}") from exc
        try:
            self._check_and_init(db)
        except sqlite3.DatabaseError as exc:
            db.close()
            raise OutboxCorruptError(
                f"outbox {self.path} is unreadable ({exc}); it was left untouched — move it aside "
                "to start with an empty outbox, or recover its events first"
            ) from exc
        except OutboxError:
            db.close()
            raise
        return db

    def _check_and_init(self, db: sqlite3.Connection) -> None:
        # Reading the header first: "file is not a database" surfaces here, before any write.
        app_id = db.execute("PRAGMA application_id").fetchone()[0]
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if app_id == 0 and not tables:
            db.execute("PRAGMA journal_mode = WAL")
            db.executescript(
                f"BEGIN; {_SCHEMA} PRAGMA application_id = {APPLICATION_ID}; "
                f"PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            )
        elif app_id != APPLICATION_ID:
            raise OutboxCorruptError(
                f"{self.path} is an SQLite database of another program (application_id {app_id:#x}, "
                f"tables {sorted(tables)}); refusing to use it as the outbox"
            )
        else:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version != SCHEMA_VERSION:
                raise OutboxCorruptError(f"outbox {self.path} has schema {version}, expected {SCHEMA_VERSION}")
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise OutboxCorruptError(f"outbox {self.path} failed its integrity check: {check}")
            db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Call `callback` (without arguments, from the appending thread) after each committed append."""
        self._listeners.append(callback)

    def append(
        self,
        channel: Channel,
        device_id: str,
        body: dict[str, Any],
        *,
        lane: Lane = Lane.NORMAL,
        ts: datetime,
        clock_synced: bool,
    ) -> int:
        """Number, validate and durably store one event; return its sequence number."""
        model = EVENT_MODELS.get(channel)
        if model is None:
            raise EventRejected(f"channel {channel!s} carries no events")
        clash = _HEADER_FIELDS.intersection(body)
        if clash:
            raise EventRejected(f"event body must not set header fields {sorted(clash)}")
        try:
            topic = device_topic(self.point_id, device_id, channel)
        except ValueError as exc:
            raise EventRejected(str(exc)) from exc
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    row = self._db.execute("SELECT next_seq FROM seqs WHERE device = ?", (device_id,)).fetchone()
                    seq = row[0] if row else 0
                    try:
                        # Validated in its wire form, as the server will: enums may be given as strings.
                        event = model.model_validate_json(to_json(
                            {**body, "point": self.point_id, "device": device_id, "seq": seq, "ts": ts,
                             "clock_synced": clock_synced}
                        ))
                    except (ValidationError, PydanticSerializationError) as exc:
                        raise EventRejected(f"{channel!s} event from {device_id} rejected: {exc}") from exc
                    self._db.execute(
                        "INSERT INTO seqs (device, next_seq) VALUES (?, ?) "
                        "ON CONFLICT (device) DO UPDATE SET next_seq = excluded.next_seq",
                        (device_id, seq + 1),
                    )
                    self._db.execute(
                        "INSERT INTO rows (lane, channel, device, seq, topic, payload, created_at) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (int(lane), channel.value, device_id, seq, topic, event.to_bytes(), ts.isoformat()),
                    )
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise OutboxError(f"outbox {self.path}: append failed: {exc}") from exc
        for callback in self._listeners:
            callback()
        return seq

    def peek(self, limit: int, exclude: Iterable[int] = ()) -> list[OutboxRow]:
        """Return up to `limit` rows in drain order (lane, then insertion), skipping ids in `exclude`."""
        skip = set(exclude)
        with self._lock:
            try:
                cur = self._db.execute(
                    "SELECT id, lane, channel, device, seq, topic, payload FROM rows ORDER BY lane, id LIMIT ?",
                    (limit + len(skip),),
                )
                found = cur.fetchall()
            except sqlite3.Error as exc:
                raise OutboxError(f"outbox {self.path}: read failed: {exc}") from exc
        rows = [
            OutboxRow(r[0], Lane(r[1]), Channel(r[2]), r[3], r[4], r[5], bytes(r[6]))
            for r in found
            if r[0] not in skip
        ]
        return rows[:limit]

    def delete(self, row_ids: Iterable[int]) -> int:
        """Delete published rows by id in one transaction; return how many existed."""
        ids = [(i,) for i in row_ids]
        if not ids:
            return 0
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                before = self._db.total_changes
                self._db.executemany("DELETE FROM rows WHERE id = ?", ids)
                deleted = self._db.total_changes - before
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise OutboxError(f"outbox {self.path}: delete failed: {exc}") from exc
        return deleted

    def bury(self, row_id: int, reason: str) -> None:
        """Move a row the broker refused to the dead-letter table, so it neither blocks nor vanishes."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute(
                    "INSERT INTO dead SELECT id, lane, channel, device, seq, topic, payload, created_at, ? "
                    "FROM rows WHERE id = ?",
                    (reason, row_id),
                )
                self._db.execute("DELETE FROM rows WHERE id = ?", (row_id,))
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise OutboxError(f"outbox {self.path}: bury failed: {exc}") from exc

    def depth(self) -> int:
        """Number of rows waiting to be published."""
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM rows").fetchone()[0])

    def dead_count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM dead").fetchone()[0])

    def next_seqs(self) -> dict[str, int]:
        """The next sequence number of every device that has emitted."""
        with self._lock:
            return dict(self._db.execute("SELECT device, next_seq FROM seqs").fetchall())

    def close(self) -> None:
        with self._lock:
            self._db.close()


class OutboxEmitter:
    """The Emitter inputs see: stamps time and clock state from the injected clock, stores in the outbox."""

    def __init__(self, outbox: Outbox, clock: Clock) -> None:
        self._outbox = outbox
        self._clock = clock

    def emit(
        self,
        channel: Channel,
        device_id: str,
        body: dict[str, Any],
        *,
        lane: Lane = Lane.NORMAL,
        ts: datetime | None = None,
    ) -> int:
        return self._outbox.append(
            channel, device_id, body, lane=lane, ts=ts or self._clock.now(), clock_synced=self._clock.synced()
        )
