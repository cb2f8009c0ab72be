"""SQL of telemetry."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row


def latest_readings(conn: psycopg.Connection[Any], point_id: str, since: datetime) -> list[dict[str, Any]]:
    """The newest reading of each (device, channel) of a point since `since` (chunks before are skipped)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT DISTINCT ON (device_id, channel)"
            "  device_id, channel, unit, value, time, vmin, vmean, vmax, n, period_s"
            " FROM telemetry WHERE point_id = %s AND time > %s"
            " ORDER BY device_id, channel, time DESC",
            (point_id, since),
        ).fetchall()
