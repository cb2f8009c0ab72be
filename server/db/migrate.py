"""Apply the numbered SQL migrations in server/db/migrations, once each, under an advisory lock."""

from __future__ import annotations

import argparse
import logging
import re
from dataclasses import dataclass
from importlib import resources

import psycopg

from server.errors import MigrationError

log = logging.getLogger(__name__)

# Arbitrary but fixed: every migrator of every process takes the same session-level lock.
ADVISORY_LOCK_KEY = 0x59414E47_4D494752  # "YANGMIGR"
_NAME_RE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    number: int
    name: str
    sql: str


def available() -> list[Migration]:
    """Return the packaged migrations in order; raise MigrationError on a malformed set."""
    found: list[Migration] = []
    for entry in resources.files("server.db.migrations").iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _NAME_RE.match(entry.name)
        if match is None:
            raise MigrationError(f"migration file name {entry.name!r} is not NNNN_name.sql")
        found.append(Migration(int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.number)
    numbers = [m.number for m in found]
    if len(set(numbers)) != len(numbers):
        raise MigrationError(f"duplicate migration numbers in {[m.name for m in found]}")
    return found


def migrate(dsn: str) -> list[str]:
    """Apply pending migrations to the database at dsn; return the names applied (empty if none)."""
    applied_now: list[str] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        # Session lock: a second concurrent migrator waits here, then finds nothing left to do.
        conn.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row[0] for row in conn.execute("SELECT name FROM schema_migrations")}
            for migration in available():
                if migration.name in done:
                    continue
                log.info("applying migration %s", migration.name)
                try:
                    with conn.transaction():
                        conn.execute(migration.sql.encode())
                        conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (migration.name,))
                except psycopg.Error as exc:
                    raise MigrationError(f"migration {migration.name} failed: {exc}") from exc
                applied_now.append(migration.name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
    return applied_now


def main(argv: list[str] | None = None) -> int:
    """Console script `yangyi-migrate`."""
    from server.settings import load_settings

    parser = argparse.ArgumentParser(prog="yangyi-migrate", description=__doc__)
    parser.add_argument("--dsn", help="PostgreSQL DSN (default: YANGYI_DB_DSN or the native deploy's)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    dsn = args.dsn or load_settings().db.resolved_dsn()
    try:
        names = migrate(dsn)
    except (MigrationError, psycopg.Error) as exc:
        log.error("migration failed: %s", exc)
        return 1
    log.info("applied %d migration(s)%s", len(names), ": " + ", ".join(names) if names else "")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
