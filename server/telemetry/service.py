"""Telemetry queries: latest readings, and a channel's series in time_bucket rollups with thresholds."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import psycopg

from server.errors import NotFoundError
from server.registry import repository as registry
from server.safety.thresholds import DEFAULTS

from . import repository
from .schemas import BucketOut, ReadingOut, SeriesOut, ThresholdOut


def latest(conn: psycopg.Connection[Any], point_id: str, now: datetime, lookback_hours: int) -> list[ReadingOut]:
    """Latest reading per device and channel within the look-back window."""
    if registry.get_point(conn, point_id) is None:
        raise NotFoundError(f"no meal point {point_id!r}")
    rows = repository.latest_readings(conn, point_id, now - timedelta(hours=lookback_hours))
    return [ReadingOut(**r) for r in rows]


BUCKET_LADDER_S = (60, 300, 900, 3600, 3 * 3600, 6 * 3600, 86400)
MAX_BUCKETS = 720


def pick_bucket(start: datetime, end: datetime, wanted_s: int | None = None) -> int:
    """The asked bucket, or the smallest on the ladder giving at most MAX_BUCKETS buckets."""
    if wanted_s is not None:
        return wanted_s
    span = (end - start).total_seconds()
    for b in BUCKET_LADDER_S:
        if span / b <= MAX_BUCKETS:
            return b
    return BUCKET_LADDER_S[-1]


def _setpoint_prefixes(channel: str) -> list[str]:
    # temp1..temp4 share the detector's one temp.setpoint
    base = channel.rstrip("0123456789")
    return sorted({channel, base}) if base and base != channel else [channel]


def series(
    conn: psycopg.Connection[Any], point_id: str, device_id: str, channel: str,
    start: datetime, end: datetime, bucket_s: int | None = None,
) -> SeriesOut:
    """A channel's rollup over [start, end) and the thresholds to draw over it."""
    if registry.get_point(conn, point_id) is None:
        raise NotFoundError(f"no meal point {point_id!r}")
    bucket = pick_bucket(start, end, bucket_s)
    points = [BucketOut(**r) for r in repository.series(conn, point_id, device_id, channel, start, end, bucket)]
    unit = repository.channel_unit(conn, point_id, device_id, channel, start, end)
    thresholds: list[ThresholdOut] = []
    for r in repository.edge_thresholds(conn, point_id, device_id, channel):
        low = r["value"] is not None and r["value"] < r["threshold"]
        thresholds.append(ThresholdOut(source="edge", level=r["level"], value=r["threshold"],
                                       direction="low" if low else "high"))
    for r in repository.device_setpoints(conn, point_id, device_id, _setpoint_prefixes(channel), start, end):
        thresholds.append(ThresholdOut(source="device", level=None, value=r["value"], direction="high",
                                       name=r["channel"]))
    if not any(t.source == "edge" for t in thresholds):
        thresholds += [ThresholdOut(source="default", level=lv, value=v, direction=d)
                       for lv, v, d in DEFAULTS.get(unit or "", [])]
    return SeriesOut(point_id=point_id, device_id=device_id, channel=channel, unit=unit, start=start, end=end,
                     bucket_s=bucket, points=points, thresholds=thresholds)
