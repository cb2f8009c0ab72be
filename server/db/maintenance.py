"""`yangyi-maintenance`: retention by drop_chunks, per table, once or on a schedule.

Diner events are the subsidy audit trail and are never dropped unless YANGYI_RETENTION_DINER_EVENTS_DAYS
is set. TimescaleDB's licensed features (compression, policies) are detected at start-up and only then
used, as an optional speed-up; the Apache edition shipped by Debian has neither, and retention never
depends on them.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from server.errors import ConfigError
from server.process import stop_on_signals
from server.settings import RetentionSettings, load_settings

log = logging.getLogger(__name__)

HYPERTABLES = ("telemetry", "message_receipts", "count_events", "safety_events", "diner_events")
PLAIN_TABLES = {"dead_letters": "received_at"}
# Compressed by (point, device) segments when the licence allows; chunks older than this are compressed.
COMPRESS_AFTER_DAYS = {"telemetry": 7, "message_receipts": 7, "count_events": 30}
DEFAULT_EVERY_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class Prune:
    table: str
    older_than: datetime
    hypertable: bool


def plan(retention: dict[str, int | None], now: datetime) -> list[Prune]:
    """What one maintenance pass removes: a cutoff per table that has a retention period."""
    actions = []
    for table, days in retention.items():
        if days is None:
            continue
        if table not in HYPERTABLES and table not in PLAIN_TABLES:
            raise ConfigError(f"retention configured for unknown table {table!r}")
        actions.append(Prune(table, now - timedelta(days=days), table in HYPERTABLES))
    return actions


def licensed_features(conn: psycopg.Connection[Any]) -> bool:
    """True when the TimescaleDB licence is the community ("timescale") one: compression and policies."""
    row = conn.execute("SELECT current_setting('timescaledb.license', true)").fetchone()
    return bool(row and row[0] == "timescale")


def enable_compression(conn: psycopg.Connection[Any]) -> None:
    """Turn on native compression with a policy per table (community licence only; idempotent)."""
    for table, days in COMPRESS_AFTER_DAYS.items():
        conn.execute(f"ALTER TABLE {table} SET (timescaledb.compress,"
                     " timescaledb.compress_segmentby = 'point_id, device_id')")
        conn.execute("SELECT add_compression_policy(%s::regclass, %s::interval, if_not_exists => true)",
                     (table, f"{days} days"))


def run_once(conn: psycopg.Connection[Any], retention: RetentionSettings, now: datetime) -> dict[str, int]:
    """Apply retention; return the number of chunks (hypertables) or rows (plain tables) removed per table."""
    removed: dict[str, int] = {}
    for action in plan(retention.per_table(), now):
        with conn.transaction():
            if action.hypertable:
                dropped = conn.execute("SELECT drop_chunks(%s::regclass, older_than => %s)",
                                       (action.table, action.older_than)).fetchall()
                removed[action.table] = len(dropped)
            else:
                column = PLAIN_TABLES[action.table]
                cur = conn.execute(f"DELETE FROM {action.table} WHERE {column} < %s", (action.older_than,))
                removed[action.table] = cur.rowcount
        if removed[action.table]:
            log.info("retention: %s: removed %d %s older than %s", action.table, removed[action.table],
                     "chunk(s)" if action.hypertable else "row(s)", action.older_than.isoformat())
    return removed


def main(argv: list[str] | None = None) -> int:
    """Console script `yangyi-maintenance`."""
    parser = argparse.ArgumentParser(prog="yangyi-maintenance", description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", help="PostgreSQL DSN (default: YANGYI_DB_DSN or the native deploy's)")
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--once", action="store_true", help="one pass, then exit")
    when.add_argument("--every", type=float, default=DEFAULT_EVERY_SECONDS, help="seconds between passes")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings()
        dsn = args.dsn or settings.db.resolved_dsn()
        plan(settings.retention.per_table(), datetime.now().astimezone())
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    stop = stop_on_signals()
    compression_checked = False
    while True:
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                if not compression_checked:
                    if licensed_features(conn):
                        log.info("TimescaleDB community licence: enabling compression policies")
                        enable_compression(conn)
                    else:
                        log.info("TimescaleDB Apache edition: no compression; retention by drop_chunks only")
                    compression_checked = True
                removed = run_once(conn, settings.retention, datetime.now().astimezone())
                log.info("maintenance pass done: %s", removed)
        except psycopg.Error as exc:
            log.warning("maintenance pass failed (%s); will retry", exc)
            if args.once:
                return 1
        if args.once or stop.wait(args.every):
            return 0


if __name__ == "__main__":
    raise SystemExit(main())
