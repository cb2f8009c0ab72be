"""The API's connection pool (psycopg_pool), opened and closed with the application."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
from fastapi import Request
from psycopg_pool import ConnectionPool

from server.settings import DbSettings

POOL_TIMEOUT_SECONDS = 10.0


def make_pool(db: DbSettings) -> ConnectionPool[psycopg.Connection[Any]]:
    """A closed pool for the database; the application opens it at start-up."""
    return ConnectionPool(
        db.resolved_dsn(),
        min_size=db.pool_min,
        max_size=db.pool_max,
        timeout=POOL_TIMEOUT_SECONDS,
        open=False,
        name="yangyi-api",
    )


def connection(request: Request) -> Iterator[psycopg.Connection[Any]]:
    """FastAPI dependency: a pooled connection for one request (read-only work, autocommit off)."""
    pool: ConnectionPool[psycopg.Connection[Any]] = request.app.state.pool
    with pool.connection() as conn:
        yield conn
