"""What several benchmarks share about their scratch databases."""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg


def drop_database(admin: str, name: str, say: Callable[[str], None], attempts: int = 60) -> None:
    """Drop a benchmark's scratch database. A background worker of the server's own (autovacuum,
    TimescaleDB's scheduler) may hold it for a while, and only a superuser could end that, so retry once a
    second; say so, and carry on, if it is still held at the end (the figures must not be lost to it)."""
    for attempt in range(attempts):
        try:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except psycopg.Error as exc:
            if attempt == attempts - 1:
                say(f"could not drop {name} ({exc}); drop it by hand")
                return
            time.sleep(1.0)
