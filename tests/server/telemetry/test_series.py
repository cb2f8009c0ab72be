"""A channel's series: time_bucket rollups of per-minute summaries against a reference, thresholds."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from server.telemetry.service import MAX_BUCKETS, pick_bucket

from .conftest import NOW

pytestmark = pytest.mark.integration

START = NOW - timedelta(hours=2)


def minute_summaries(seed: int = 3) -> list[tuple[Any, ...]]:
    """Two hours of per-minute summaries (row time = end of the minute), some raw values without n."""
    rng = random.Random(seed)
    rows = []
    for i in range(120):
        end = START + timedelta(minutes=i + 1)
        lo = rng.uniform(0, 5)
        hi = lo + rng.uniform(0, 5)
        mean = rng.uniform(lo, hi)
        last = rng.uniform(lo, hi)
        if i % 17 == 0:  # a raw reading: no summary fields
            rows.append((end, "gas1", "lel", "%LEL", last, None, None, None, None, None))
        else:
            rows.append((end, "gas1", "lel", "%LEL", last, lo, mean, hi, rng.randint(10, 30), 60))
    return rows


def reference(rows: list[tuple[Any, ...]], bucket_s: int) -> list[dict[str, Any]]:
    """The rollup computed here, independently of SQL: bucket by each summary's period start."""
    groups: dict[datetime, list[tuple[Any, ...]]] = {}
    for r in rows:
        start = r[0] - timedelta(seconds=r[9] or 0)
        epoch = int(start.timestamp())
        groups.setdefault(datetime.fromtimestamp(epoch - epoch % bucket_s, UTC), []).append(r)
    out = []
    for t in sorted(groups):
        g = groups[t]
        n = sum(r[8] or 1 for r in g)
        out.append({
            "time": t, "min": min(r[5] if r[5] is not None else r[4] for r in g),
            "max": max(r[7] if r[7] is not None else r[4] for r in g),
            "mean": sum((r[6] if r[6] is not None else r[4]) * (r[8] or 1) for r in g) / n,
            "last": max(g, key=lambda r: r[0])[4], "n": n,
        })
    return out


@pytest.mark.parametrize("bucket_s", [300, 900, 3600])
def test_rollup_matches_reference(api: TestClient, seeder: Callable[..., str], bucket_s: int) -> None:
    rows = minute_summaries()
    other = (START + timedelta(minutes=5), "gas1", "unit_code", None, 0.0, None, None, None, None, None)
    point = seeder(telemetry=[*rows, other])
    got = api.get(f"/api/v1/points/{point}/devices/gas1/channels/lel/series",
                  params={"start": START.isoformat(), "end": NOW.isoformat(), "bucket_s": bucket_s})
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["bucket_s"] == bucket_s and body["unit"] == "%LEL"
    want = reference([r for r in rows if r[0] < NOW], bucket_s)  # the summary ending at `end` is out
    assert len(body["points"]) == len(want) == 7200 // bucket_s
    for p, w in zip(body["points"], want, strict=True):
        assert datetime.fromisoformat(p["time"]) == w["time"]
        assert p["n"] == w["n"]
        for key in ("min", "mean", "max", "last"):
            assert p[key] == pytest.approx(w[key], rel=1e-9), key


def test_range_is_half_open_and_other_channels_stay_out(api: TestClient, seeder: Callable[..., str]) -> None:
    rows = minute_summaries()
    point = seeder(telemetry=rows + [(r[0], "gas2", "lel", "%LEL", 99.0, 99.0, 99.0, 99.0, 1, 60) for r in rows])
    end = START + timedelta(minutes=30)  # the summary ending exactly at `end` is out
    body = api.get(f"/api/v1/points/{point}/devices/gas1/channels/lel/series",
                   params={"start": START.isoformat(), "end": end.isoformat(), "bucket_s": 3600}).json()
    inside = [r for r in rows if START <= r[0] < end]
    assert [p["n"] for p in body["points"]] == [w["n"] for w in reference(inside, 3600)]
    assert max(p["max"] for p in body["points"]) < 99.0


def test_thresholds_default_then_device_then_edge(api: TestClient, seeder: Callable[..., str],
                                                  tsdb_dsn: str) -> None:
    from .conftest import seed

    rows = minute_summaries()
    point = seeder(telemetry=rows)
    url = f"/api/v1/points/{point}/devices/gas1/channels/lel/series"
    params = {"start": START.isoformat(), "end": NOW.isoformat()}
    th = api.get(url, params=params).json()["thresholds"]
    assert th == [{"source": "default", "level": "alarm", "value": 25.0, "direction": "high", "name": None},
                  {"source": "default", "level": "alarm2", "value": 50.0, "direction": "high", "name": None}]

    seed(tsdb_dsn, point, telemetry=[(NOW - timedelta(minutes=1), "gas1", "lel.low_setpoint", "%LEL", 20.0,
                                      None, None, None, None, None)])
    th = api.get(url, params=params).json()["thresholds"]
    assert {"source": "device", "level": None, "value": 20.0, "direction": "high",
            "name": "lel.low_setpoint"} in th
    assert {t["source"] for t in th} == {"device", "default"}

    seed(tsdb_dsn, point, safety=[
        (NOW - timedelta(minutes=50), "gas1", 1, "lel", "alarm", "normal", "gas.lel", 27.0, "%LEL", 22.0, True),
        (NOW - timedelta(minutes=40), "gas1", 2, "lel", "alarm2", "alarm", "gas.lel", 51.0, "%LEL", 45.0, True),
    ])
    th = api.get(url, params=params).json()["thresholds"]
    edge = sorted((t["level"], t["value"], t["direction"]) for t in th if t["source"] == "edge")
    assert edge == [("alarm", 22.0, "high"), ("alarm2", 45.0, "high")]
    assert not [t for t in th if t["source"] == "default"]  # the edge's own settings replace the defaults


def test_low_voltage_threshold_is_drawn_as_low(api: TestClient, seeder: Callable[..., str]) -> None:
    point = seeder(
        telemetry=[(NOW - timedelta(minutes=1), "meter1", "voltage", "V", 186.0, 185.0, 186.0, 187.0, 30, 60)],
        safety=[(NOW - timedelta(minutes=2), "meter1", 1, "voltage", "warn", "normal", "electric.voltage", 186.0,
                 "V", 198.0, False)],
    )
    body = api.get(f"/api/v1/points/{point}/devices/meter1/channels/voltage/series").json()
    assert [(t["source"], t["level"], t["value"], t["direction"]) for t in body["thresholds"]] == [
        ("edge", "warn", 198.0, "low")]
    assert body["bucket_s"] == 300 and len(body["points"]) == 1  # default: the last 24 h


def test_errors(api: TestClient, seeder: Callable[..., str]) -> None:
    point = seeder()
    url = f"/api/v1/points/{point}/devices/gas1/channels/lel/series"
    assert api.get("/api/v1/points/nope/devices/gas1/channels/lel/series").status_code == 404
    assert api.get(url, params={"start": NOW.isoformat(), "end": START.isoformat()}).status_code == 422
    assert api.get(url, params={"start": "2026-06-01T00:00:00", "end": NOW.isoformat()}).status_code == 422
    assert api.get(url, params={"bucket_s": 10}).status_code == 422
    empty = api.get(url).json()
    assert empty["points"] == [] and empty["unit"] is None
    assert api.get(url, headers={"Authorization": ""}).status_code == 401


def test_bucket_choice_keeps_charts_small() -> None:
    for hours in (1, 24, 24 * 7, 24 * 31, 24 * 366):
        b = pick_bucket(NOW - timedelta(hours=hours), NOW)
        assert hours * 3600 / b <= MAX_BUCKETS
    assert pick_bucket(NOW - timedelta(hours=1), NOW) == 60
    assert pick_bucket(NOW - timedelta(hours=24), NOW) == 300
    assert pick_bucket(NOW - timedelta(hours=1), NOW, 900) == 900
