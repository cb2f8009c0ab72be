"""Telemetry queries."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import psycopg

from server.errors import NotFoundError
from server.registry import repository as registry

from . import repository
from .schemas import ReadingOut


def latest(conn: psycopg.Connection[Any], point_id: str, now: datetime, lookback_hours: int) -> list[ReadingOut]:
    """Latest reading per device and channel within the look-back window."""
    if registry.get_point(conn, point_id) is None:
        raise NotFoundError(f"no meal point {point_id!r}")
    rows = repository.latest_readings(conn, point_id, now - timedelta(hours=lookback_hours))
    return [ReadingOut(**r) for r in rows]
