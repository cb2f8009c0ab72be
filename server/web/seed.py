"""A generated county for demos, browser tests and the dashboard benchmark, written by COPY.

Townships of ten villages with two meal points a village; devices per point (agent, card reader, gas
detector, electric meter, a camera at every other point); diner events over `days` days (20 to 150
regulars a point, lunch every day, dinner and breakfast at some points, fewer at weekends, a few
repeated taps); camera counts every 10 minutes of a meal; telemetry (three channels a point: 1-minute
summaries for the last `telemetry_minutes_days`, hourly summaries before: the pages read a day at
most, and a full 90 days of minutes would be 35 M rows to generate); open gas alerts with their safety events at a few
points. Deterministic for a given seed and `now`.
"""

from __future__ import annotations

import logging
import random
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

log = logging.getLogger(__name__)

TOWN_NAMES = ["城关镇", "青山乡", "石桥镇", "柳河乡", "白水镇", "龙泉乡", "新店镇", "高坪乡", "桃源镇", "双河乡",
              "马岭乡", "金沙镇", "黄土乡", "清溪镇", "凤凰乡", "长岭镇"]
VILLAGES_PER_TOWNSHIP = 10
POINTS_PER_VILLAGE = 2


@dataclass(frozen=True)
class SeededPoint:
    id: str
    township: str
    village: str
    camera: bool
    regulars: int
    index: int = 0


@dataclass(frozen=True)
class County:
    points: list[SeededPoint]
    rows: int
    townships: list[str]


def _town_name(i: int) -> str:
    return TOWN_NAMES[i] if i < len(TOWN_NAMES) else f"第{i + 1}乡"


def _meal_windows(day_start: datetime) -> dict[str, tuple[datetime, datetime]]:
    return {"breakfast": (day_start + timedelta(hours=7), day_start + timedelta(hours=8, minutes=30)),
            "lunch": (day_start + timedelta(hours=11), day_start + timedelta(hours=12, minutes=30)),
            "dinner": (day_start + timedelta(hours=17), day_start + timedelta(hours=18, minutes=30))}


def _meals_of(p: SeededPoint) -> list[str]:
    """Lunch everywhere; dinner at some points, breakfast at fewer."""
    return ["lunch"] + (["dinner"] if p.regulars % 2 == 0 else []) + (["breakfast"] if p.regulars % 5 == 0 else [])


def card_id(point_index: int, k: int) -> str:
    """The canonical EM4100 card id of a point's k-th regular (firmware_bridge.cardid form)."""
    return f"EM:{point_index:06X}{k:04X}"


def elder_id(point_index: int, k: int) -> str:
    # 'G' keeps clear of the server's own 'E' + 8 digits.
    return f"G{point_index:04d}{k:04d}"


def resident_id(point_index: int, k: int) -> tuple[str, date]:
    """A valid GB 11643 number (ISO 7064 MOD 11-2 check) and its birth date, 71 to 96 years back."""
    birth = date(1930, 1, 1) + timedelta(days=(point_index * 97 + k * 131) % (25 * 365))
    body = f"11{point_index:04d}{birth:%Y%m%d}{k:03d}"
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    check = "10X98765432"[sum(int(d) * w for d, w in zip(body, weights, strict=True)) % 11]
    return body + check, birth


def _seed_elders(cur: psycopg.Cursor[Any], points: list[SeededPoint], bound_from: datetime) -> int:
    """Each point's regulars as elders of its village, each with one card; a tenth on 低保 (dibao)."""
    villages = {(t, v): vid for vid, t, v in cur.execute(
        "SELECT v.id, t.name, v.name FROM villages v JOIN townships t ON t.id = v.township_id").fetchall()}
    rows = 0
    with cur.copy("COPY elders (id, name, id_number, birth_date, sex, phone, hukou_local, village_id, home_point_id)"
                  " FROM STDIN") as cp:
        for p in points:
            for k in range(p.regulars):
                number, birth = resident_id(p.index, k)
                cp.write_row((elder_id(p.index, k), f"{SURNAMES[k % len(SURNAMES)]}老{k}", number, birth,
                              "male" if int(number[16]) % 2 else "female", f"138{p.index:04d}{k:04d}", True,
                              villages.get((p.township, p.village)), p.id))
                rows += 1
    with cur.copy("COPY cards (card_id, elder_id, bound_from) FROM STDIN") as cp:
        for p in points:
            for k in range(p.regulars):
                cp.write_row((card_id(p.index, k), elder_id(p.index, k), bound_from))
                rows += 1
    with cur.copy("COPY elder_categories (elder_id, category, evidence, valid_from) FROM STDIN") as cp:
        for p in points:
            for k in range(0, p.regulars, 10):
                cp.write_row((elder_id(p.index, k), "dibao", f"低保证 {p.index:04d}-{k:03d}", bound_from.date()))
                rows += 1
    return rows


SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"


def seed_county(conn: psycopg.Connection[Any], now: datetime, n_points: int, days: int, *, prefix: str = "p",
                tz: str = "Asia/Shanghai", seed: int = 7, alert_fraction: float = 0.05,
                offline_fraction: float = 0.04, telemetry_minutes_days: int = 1, elders: bool = True) -> County:
    """Generate a county into a migrated database by COPY; deterministic for a given seed and `now`."""
    rnd = random.Random(seed)
    zone = ZoneInfo(tz)
    n_town = max(1, -(-n_points // (VILLAGES_PER_TOWNSHIP * POINTS_PER_VILLAGE)))
    points: list[SeededPoint] = []
    for i in range(n_points):
        t = i // (VILLAGES_PER_TOWNSHIP * POINTS_PER_VILLAGE)
        v = (i // POINTS_PER_VILLAGE) % VILLAGES_PER_TOWNSHIP
        points.append(SeededPoint(f"{prefix}{i:04d}", _town_name(t), f"{_town_name(t)[:2]}{v + 1}村",
                                  camera=i % 2 == 0, regulars=rnd.randint(20, 150), index=i))
    rows = 0
    with conn.cursor() as cur:
        with cur.copy("COPY meal_points (id, name, township, village) FROM STDIN") as cp:
            for p in points:
                cp.write_row((p.id, f"{p.village}助餐点{p.id[-1]}", p.township, p.village))
        with cur.copy("COPY devices (point_id, device_id, role, state, last_seen, status_ts, heartbeat_s,"
                      " software, outbox_depth) FROM STDIN") as cp:
            for p in points:
                offline = rnd.random() < offline_fraction
                seen = now - (timedelta(hours=rnd.randint(2, 48)) if offline else timedelta(seconds=rnd.randint(1, 50)))
                devices = ["agent", "reader1", "gas1", "elec1"] + (["cam1"] if p.camera else [])
                for d in devices:
                    cp.write_row((p.id, d, "agent" if d == "agent" else "device", "offline" if offline else "online",
                                  seen, seen, 60, "yangyi-edge 0.1.0", rnd.choice([0, 0, 0, 3, 250]) if d == "agent"
                                  else None))
                    rows += 1
        rows += len(points)
        if elders:
            rows += _seed_elders(cur, points, datetime.combine(now.astimezone(zone).date() - timedelta(days=days),
                                                                datetime.min.time(), zone))
        log.info("seed: %d points in %d townships", len(points), n_town)
        today = now.astimezone(zone).date()
        first = today - timedelta(days=days - 1)
        seq = 0
        with cur.copy("COPY diner_events (time, point_id, device_id, seq, kind, method, card_id, meal, decision,"
                      " elder_id, clock_synced) FROM STDIN") as cp:
            for day_i in range(days):
                day = first + timedelta(days=day_i)
                day_start = datetime.combine(day, datetime.min.time(), zone)
                weekday_factor = 0.75 if day.weekday() >= 5 else 1.0
                for p in points:
                    prng = random.Random(f"{seed}:{p.id}:{day_i}")
                    for meal in _meals_of(p):
                        start, end = _meal_windows(day_start)[meal]
                        if start >= now:
                            continue
                        share = {"lunch": 0.8, "dinner": 0.5, "breakfast": 0.3}[meal]
                        n = int(p.regulars * share * weekday_factor * prng.uniform(0.85, 1.1))
                        span = (min(end, now) - start).total_seconds()
                        for k in range(n):
                            at = start + timedelta(seconds=prng.uniform(0, span))
                            seq += 1
                            delivery = k % 12 == 0
                            cp.write_row((at, p.id, "reader1", seq, "delivery" if delivery else "tap",
                                          "card", card_id(p.index, k), meal, "accepted", elder_id(p.index, k), True))
                            if prng.random() < 0.04:  # an elder taps twice
                                seq += 1
                                cp.write_row((at + timedelta(seconds=5), p.id, "reader1", seq, "tap", "card",
                                              card_id(p.index, k), meal, "repeat", elder_id(p.index, k), True))
                                rows += 1
                        rows += n
        log.info("seed: diner events done (%d rows so far)", rows)
        with cur.copy("COPY count_events (time, point_id, device_id, seq, period_s, entries, exits, occupancy)"
                      " FROM STDIN") as cp:
            for day_i in range(days):
                day = first + timedelta(days=day_i)
                day_start = datetime.combine(day, datetime.min.time(), zone)
                for p in points:
                    if not p.camera:
                        continue
                    prng = random.Random(f"{seed}:cam:{p.id}:{day_i}")
                    served = _meals_of(p)
                    for meal, (start, end) in _meal_windows(day_start).items():
                        if meal not in served:
                            continue
                        at = start
                        while at < end and at + timedelta(minutes=10) <= now:
                            at += timedelta(minutes=10)
                            entries = prng.randint(0, max(1, p.regulars // 9))
                            cp.write_row((at, p.id, "cam1", int(at.timestamp()), 600, entries, entries, entries))
                            rows += 1
        log.info("seed: camera counts done (%d rows so far)", rows)
        channels = [("gas1", "lel", "%LEL", 2.0, 1.5), ("elec1", "residual", "mA", 120.0, 40.0),
                    ("elec1", "voltage", "V", 221.0, 3.0)]
        with cur.copy("COPY telemetry (time, point_id, device_id, seq, channel, unit, value, vmin, vmean, vmax, n,"
                      " period_s) FROM STDIN") as cp:
            start_all = datetime.combine(first, datetime.min.time(), zone)
            fine_from = now - timedelta(days=telemetry_minutes_days)
            for p in points:
                prng = random.Random(f"{seed}:tel:{p.id}")
                at = start_all
                while at < now:
                    period = 60 if at >= fine_from else 3600
                    at += timedelta(seconds=period)
                    for device, channel, unit, base, spread in channels:
                        reading = max(0.0, base + prng.gauss(0, spread / 3))
                        cp.write_row((at, p.id, device, int(at.timestamp()), channel, unit, reading,
                                      reading - spread / 4, reading, reading + spread / 4, period, period))
                        rows += 1
        log.info("seed: telemetry done (%d rows so far)", rows)
        alerted = [p for p in points if rnd.random() < alert_fraction]
        severities = ["critical", "alarm", "warning", "warning", "info"]
        for i, p in enumerate(alerted):
            sev = severities[i % len(severities)]
            opened = now - timedelta(minutes=rnd.randint(5, 600))
            cur.execute(
                "INSERT INTO alerts (id, point_id, device_id, condition, hazard, severity, peak_severity, state,"
                " source, opened_at, last_seen, last_value, unit, threshold, message)"
                " VALUES (%s, %s, 'gas1', 'gas.lel', 'gas', %s, %s, 'open', 'edge', %s, %s, 27.5, '%%LEL', 25, %s)",
                (f"A{uuid.uuid4().hex[:12]}", p.id, sev, sev, opened, now, "可燃气体浓度超限"))
            cur.execute(
                "INSERT INTO safety_events (time, point_id, device_id, seq, channel, level, prev_level, rule, value,"
                " unit, threshold, latched, actions, message, clock_synced)"
                " VALUES (%s, %s, 'gas1', %s, 'lel', 'alarm', 'normal', 'gas.lel', 27.5, '%%LEL', 25, true,"
                " ARRAY['buzzer'], 'gas alarm', true)", (opened, p.id, i + 1))
            rows += 2
    conn.commit()
    townships = sorted({p.township for p in points})
    return County(points, rows, townships)
