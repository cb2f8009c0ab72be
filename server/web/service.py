"""What the dashboards show, composed from small scoped queries and shared county-wide day counts.

Meals served per point and day (accepted check-ins and deliveries) are the costly figures: they
scan a day of diner events. They are computed for the whole county at once and kept for a short
time (today's for TODAY_TTL_S, a finished day's for PAST_TTL_S: late events from an edge that was
offline still arrive), then filtered by the caller's scope. The assembled overview of a scope is
kept OVERVIEW_TTL_S (many people of one township or of the bureau look at the same figures; the
page shows when they were read). Meal point pages are read per request.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Generic, TypeVar
from zoneinfo import ZoneInfo

import psycopg

from server.alerts.rules import Severity
from server.auth.scopes import Scope
from server.checkins.service import day_bounds

from . import repository

Conn = psycopg.Connection[Any]
K = TypeVar("K")
V = TypeVar("V")

OVERVIEW_TTL_S = 5.0
TODAY_TTL_S = 15.0
LAST_WEEK_TTL_S = 60.0
PAST_TTL_S = 600.0
EXPECTED_WEEKS = 4
BACKLOG_EVENTS = 100  # an outbox deeper than this means the point has trouble publishing
PROBLEMS_SHOWN = 30
SEVERITY_ORDER = [s.value for s in sorted(Severity, key=lambda s: s.rank, reverse=True)]


class TtlCache(Generic[K, V]):
    """Values kept for a time-to-live, computed once per key however many callers ask at once.

    One lock per key: when fifty users open the overview together only one of them runs the queries,
    and the others wait for its answer instead of running them too.
    """

    def __init__(self, monotonic: Callable[[], float] = time.monotonic, max_entries: int = 64) -> None:
        self._monotonic = monotonic
        self._max = max_entries
        self._entries: dict[K, tuple[float, V]] = {}
        self._locks: dict[K, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, key: K, ttl_s: float, compute: Callable[[], V]) -> V:
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            hit = self._entries.get(key)
            if hit is not None and self._monotonic() - hit[0] < ttl_s:
                return hit[1]
            value = compute()
            with self._guard:
                self._entries[key] = (self._monotonic(), value)
                if len(self._entries) > self._max:
                    oldest = min(self._entries, key=lambda k: self._entries[k][0])
                    self._entries.pop(oldest, None)
                    self._locks.pop(oldest, None)
            return value


class CountCache:
    """County-wide meals served per point over [start, end), kept for a time-to-live."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic, max_entries: int = 64) -> None:
        self._cache: TtlCache[tuple[datetime, datetime], dict[str, int]] = TtlCache(monotonic, max_entries)

    def get(self, conn: Conn, start: datetime, end: datetime, ttl_s: float) -> dict[str, int]:
        return self._cache.get((start, end), ttl_s, lambda: repository.accepted_by_point(conn, start, end))


@dataclass
class PointRow:
    id: str
    name: str | None
    township: str | None
    village: str | None
    devices: int = 0
    devices_online: int = 0
    ever_seen: bool = False
    today: int = 0
    last_week: int = 0
    expected: float | None = None
    alerts: int = 0
    worst: str | None = None  # the most severe active alert's severity

    @property
    def online(self) -> bool:
        return self.devices_online > 0


@dataclass
class Group:
    """A township or village: its points and their sums."""

    name: str | None
    points: list[PointRow] = field(default_factory=list)
    children: list[Group] = field(default_factory=list)

    def _all(self) -> Iterable[PointRow]:
        yield from self.points
        for c in self.children:
            yield from c._all()

    @property
    def totals(self) -> dict[str, Any]:
        rows = list(self._all())
        expected = [r.expected for r in rows if r.expected is not None]
        return {"points": len(rows), "online": sum(r.online for r in rows), "today": sum(r.today for r in rows),
                "last_week": sum(r.last_week for r in rows),
                "expected": round(sum(expected)) if expected else None,
                "alerts": sum(r.alerts for r in rows)}


@dataclass
class Overview:
    generated_at: datetime
    county: Group
    townships: list[Group]
    unplaced: list[PointRow]
    alerts_by_severity: dict[str, int]
    problems: list[dict[str, Any]]
    problem_count: int


def _local_now(now: datetime, tz: ZoneInfo) -> datetime:
    return now.astimezone(tz)


def meal_figures(cache: CountCache, conn: Conn, now: datetime, tz: ZoneInfo
                 ) -> tuple[dict[str, int], dict[str, int], dict[str, float]]:
    """Meals served today so far, last week's same weekday up to the same time, and the expected day.

    Expected: the mean full-day figure of the same weekday over the previous EXPECTED_WEEKS weeks
    (a point with no meals in any of them expects nothing).
    """
    today = _local_now(now, tz).date()
    start, end = day_bounds(today, tz)
    today_counts = cache.get(conn, start, end, TODAY_TTL_S)
    week_ago_start, _ = day_bounds(today - timedelta(days=7), tz)
    # The same time of day a week ago, to the minute (one cache entry per minute).
    cut = (week_ago_start + (now.replace(second=0, microsecond=0) - start))
    last_week = cache.get(conn, week_ago_start, cut, LAST_WEEK_TTL_S)
    totals: Counter[str] = Counter()
    for weeks in range(1, EXPECTED_WEEKS + 1):
        d: date = today - timedelta(days=7 * weeks)
        s, e = day_bounds(d, tz)
        totals.update(cache.get(conn, s, e, PAST_TTL_S))
    expected = {p: n / EXPECTED_WEEKS for p, n in totals.items()}
    return today_counts, last_week, expected


def overview(conn: Conn, cache: CountCache, scope: Scope, now: datetime, tz: ZoneInfo, heartbeats: float,
             default_heartbeat_s: int) -> Overview:
    """The county (or the caller's part of it): points by township and village with their figures."""
    points = repository.points(conn, scope)
    rows: dict[str, PointRow] = {
        p["id"]: PointRow(p["id"], p["name"], p["township"], p["village"]) for p in points}
    problems: list[dict[str, Any]] = []
    for d in repository.device_health(conn, scope, now, heartbeats, default_heartbeat_s):
        row = rows.get(d["point_id"])
        if row is None:
            continue
        row.devices += 1
        row.devices_online += bool(d["online"])
        row.ever_seen = row.ever_seen or d["last_seen"] is not None
        kinds = []
        if not d["online"]:
            kinds.append("offline" if d["state"] != "online" else "silent")
        if (d["outbox_depth"] or 0) >= BACKLOG_EVENTS:
            kinds.append("backlog")
        if kinds:
            problems.append({**d, "problems": kinds, "point_name": row.name})
    # Silent devices first, longest silent first; then backlogs.
    problems.sort(key=lambda d: ("backlog" in d["problems"] and len(d["problems"]) == 1,
                                 d["last_seen"] is not None, d["last_seen"] or now))
    alerts_by_severity: Counter[str] = Counter()
    for a in repository.active_alerts(conn, scope):
        alerts_by_severity[a["severity"]] += 1
        row = rows.get(a["point_id"])
        if row is not None:
            row.alerts += 1
            if row.worst is None or SEVERITY_ORDER.index(a["severity"]) < SEVERITY_ORDER.index(row.worst):
                row.worst = a["severity"]
    today, last_week, expected = meal_figures(cache, conn, now, tz)
    for pid, row in rows.items():
        row.today = today.get(pid, 0)
        row.last_week = last_week.get(pid, 0)
        row.expected = expected.get(pid)
    townships: dict[str, Group] = {}
    villages: dict[tuple[str, str | None], Group] = {}
    unplaced: list[PointRow] = []
    for row in rows.values():
        if not row.township:
            unplaced.append(row)
            continue
        town = townships.setdefault(row.township, Group(row.township))
        key = (row.township, row.village)
        if key not in villages:
            villages[key] = Group(row.village)
            town.children.append(villages[key])
        villages[key].points.append(row)
    county = Group(None, points=unplaced, children=list(townships.values()))
    return Overview(
        generated_at=now, county=county, townships=list(townships.values()), unplaced=unplaced,
        alerts_by_severity={s: alerts_by_severity.get(s, 0) for s in SEVERITY_ORDER},
        problems=problems[:PROBLEMS_SHOWN], problem_count=len(problems))


@dataclass
class HourRow:
    hour: datetime
    cards: int
    camera: int | None


@dataclass
class PointPage:
    point: dict[str, Any]
    meals: list[dict[str, Any]]
    hours: list[HourRow]
    has_camera: bool
    channels: list[dict[str, Any]]
    alerts: list[dict[str, Any]]

    @property
    def hour_labels(self) -> list[str]:
        return [h.hour.strftime("%H:%M") for h in self.hours]


MEAL_ORDER = {"breakfast": 0, "lunch": 1, "dinner": 2}
SENSOR_LOOKBACK = timedelta(hours=24)
ALERT_HISTORY = 30


CHANNELS_TTL_S = 300.0
RECENT_READINGS = timedelta(minutes=10)


def sensor_channels(conn: Conn, channels: TtlCache[str, list[dict[str, Any]]], point_id: str, now: datetime
                    ) -> list[dict[str, Any]]:
    """The point's channels of the last 24 h with their latest reading.

    Finding the channels scans a day of the point's telemetry, so that list is kept CHANNELS_TTL_S
    (sensors are rarely added); the latest values come from the last RECENT_READINGS each time.
    """
    known = channels.get(point_id, CHANNELS_TTL_S,
                         lambda: repository.sensor_channels(conn, point_id, now - SENSOR_LOOKBACK))
    latest = {(r["device_id"], r["channel"]): r for r in known}
    for r in repository.sensor_channels(conn, point_id, now - RECENT_READINGS):
        latest[(r["device_id"], r["channel"])] = r
    return [latest[k] for k in sorted(latest)]


def point_page(conn: Conn, point: dict[str, Any], now: datetime, tz: ZoneInfo,
               channels: TtlCache[str, list[dict[str, Any]]] | None = None) -> PointPage:
    """One meal point's day: meals, camera against card by hour, sensor channels, alert history."""
    pid = point["id"]
    start, end = day_bounds(_local_now(now, tz).date(), tz)
    meals = sorted(repository.point_meals(conn, pid, start, end), key=lambda m: MEAL_ORDER.get(m["meal"], 9))
    cards = repository.cards_by_hour(conn, pid, start, end)
    camera = repository.camera_by_hour(conn, pid, start, end)
    hours = sorted(set(cards) | set(camera))
    rows = [HourRow(h.astimezone(tz), cards.get(h, 0), camera.get(h) if camera else None) for h in hours]
    sensors = sensor_channels(conn, channels if channels is not None else TtlCache(), pid, now)
    return PointPage(point=point, meals=meals, hours=rows, has_camera=bool(camera), channels=sensors,
                     alerts=repository.alert_history(conn, pid, ALERT_HISTORY))
