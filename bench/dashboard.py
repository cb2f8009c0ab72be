"""Dashboard benchmark: a county of meal points with months of generated data, many users at once.

    python -m bench.dashboard [--points 300] [--days 90] [--users 50] [--duration 60] [--think 1.0]

Progress goes to stderr; the LAST line on stdout is one JSON object:
    p50_ms, p95_ms (target <= 100), rows (generated rows COPYed), requests, errors, rps,
    by_page {overview, point: p50/p95}, load_avg, seed_s, ...

Method.
1. A fresh database (created, migrated, dropped at the end) gets a county by COPY (seed_county):
   townships of ten villages, two meal points a village, devices per point (agent, card reader,
   gas detector, electric meter, a camera at every other point); the regulars registered as elders
   with a card each; 90 days of diner events (20 to 150 regulars a point, lunch every day,
   dinner and breakfast at some points, weekday dips), camera counts every 10 minutes of a meal,
   telemetry (three channels a point: 1-minute summaries for the last day, hourly summaries
   before), safety events and open alerts at a few points.
2. The real server (`python -m server.app`, uvicorn, one process) runs against that database.
3. `--users` users each sign in through POST /api/v1/auth/login (their own session cookie; the
   county-wide bureau viewer, a township officer per township in turn) and then loop for
   `--duration` seconds: open the overview, think, open one meal point's page, think. Think time is
   uniform in [0.5, 1.5] x --think seconds (a person reading the page); --think 0 measures the
   saturated server instead. Latency is the full response (headers and body) seen by the client
   (httpx.AsyncClient), measured after a warm-up request per user.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from server.web.seed import County, seed_county

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench-password-123"  # users of a throw-away database
SEEDED_TABLES = ("meal_points", "devices", "elders", "cards", "elder_categories", "diner_events", "count_events",
                 "telemetry", "alerts", "safety_events")


def progress(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)
def create_users(conn: psycopg.Connection[Any], county: County, prefix: str) -> list[tuple[str, str]]:
    """A bureau viewer and one township officer per township: (username, role)."""
    from server.auth.schemas import UserCreate
    from server.auth.service import AuthService
    from server.auth.settings import AuthSettings

    service = AuthService(AuthSettings())
    made = []
    spec = UserCreate.model_validate({"username": f"{prefix}viewer", "password": PASSWORD, "role": "bureau_viewer"})
    service.create_user(conn, spec, "bench", datetime.now(UTC))
    made.append((f"{prefix}viewer", "bureau_viewer"))
    for i, name in enumerate(county.townships):
        tid = conn.execute("SELECT id FROM townships WHERE name = %s", (name,)).fetchone()
        assert tid is not None
        spec = UserCreate.model_validate({"username": f"{prefix}town{i}", "password": PASSWORD,
                                          "role": "township_officer", "township_id": tid[0]})
        service.create_user(conn, spec, "bench", datetime.now(UTC))
        made.append((f"{prefix}town{i}", "township_officer"))
    conn.commit()
    return made


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(dsn: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    """`python -m server.app` on 127.0.0.1:port against dsn; returns once /login answers."""
    import httpx

    env = {**os.environ, "YANGYI_DB_DSN": dsn, "YANGYI_DB_POOL_MAX": "16", "YANGYI_MQTT_PASSWORD": "unused"}
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "server.app", "--port", str(port), "--log-level", "warning"],
                                stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/login", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"server did not start; see {log}")
        time.sleep(0.1)


@dataclass
class Sample:
    page: str
    ms: float
    ok: bool


LOGIN_CONCURRENCY = 4  # argon2 is meant to be slow; people do not all sign in in the same second


async def _sign_in(client: Any, username: str, gate: asyncio.Semaphore) -> None:
    async with gate:
        r = await client.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
        r.raise_for_status()
        (await client.get("/")).raise_for_status()  # warm-up, not counted


async def _user(client: Any, points: list[str], until: float, think: float, seed: int,
                samples: list[Sample]) -> None:
    import httpx

    rnd = random.Random(seed)
    await asyncio.sleep(rnd.uniform(0, max(think, 0.01)))  # users do not start in lock step
    pages = ["overview", "point"]
    i = 0
    while time.monotonic() < until:
        page = pages[i % 2]
        i += 1
        url = "/" if page == "overview" else f"/points/{rnd.choice(points)}"
        t0 = time.perf_counter()
        try:
            resp = await client.get(url)
            ok = resp.status_code == 200 and len(resp.content) > 0
        except httpx.HTTPError:
            ok = False
        samples.append(Sample(page, (time.perf_counter() - t0) * 1000, ok))
        if think > 0:
            await asyncio.sleep(rnd.uniform(0.5, 1.5) * think)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


async def run_users(base: str, users: list[tuple[str, list[str]]], duration: float, think: float) -> list[Sample]:
    """Sign every user in (a few at a time), then run them all for `duration` seconds."""
    import httpx

    samples: list[Sample] = []
    clients = [httpx.AsyncClient(base_url=base, timeout=30) for _ in users]
    try:
        gate = asyncio.Semaphore(LOGIN_CONCURRENCY)
        await asyncio.gather(*(_sign_in(c, name, gate) for c, (name, _) in zip(clients, users, strict=True)))
        progress(f"{len(users)} users signed in")
        until = time.monotonic() + duration
        await asyncio.gather(*(_user(c, pts, until, think, i, samples)
                               for i, (c, (_, pts)) in enumerate(zip(clients, users, strict=True))))
    finally:
        for c in clients:
            await c.aclose()
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.dashboard", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=300)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of measured load")
    parser.add_argument("--think", type=float, default=1.0, help="mean think time in seconds (0: none)")
    parser.add_argument("--keep", action="store_true", help="keep the generated database")
    parser.add_argument("--reuse", metavar="DATABASE", help="measure a database kept by --keep (no seeding)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="[bench] %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request would skew the client

    from server.db.migrate import migrate

    admin = subprocess.run(["bash", str(ROOT / "deploy/native/timescaledb.sh"), "dsn"], check=True,
                           capture_output=True, text=True).stdout.strip()
    name = args.reuse or f"yangyi_bench_dash_{uuid.uuid4().hex[:8]}"
    if not args.reuse:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
    dsn = admin.rsplit("/", 1)[0] + "/" + name
    proc: subprocess.Popen[bytes] | None = None
    try:
        seed_s = 0.0
        if not args.reuse:
            migrate(dsn)
            t0 = time.monotonic()
            with psycopg.connect(dsn) as conn:
                county = seed_county(conn, datetime.now(UTC), args.points, args.days)
                conn.autocommit = True
                conn.execute("ANALYZE")
            seed_s = time.monotonic() - t0
            progress(f"seeded {county.rows} rows in {seed_s:.0f} s")
            with psycopg.connect(dsn) as conn:
                create_users(conn, county, "bench")
        with psycopg.connect(dsn) as conn:
            points = conn.execute("SELECT id, township FROM meal_points ORDER BY id").fetchall()
            officers = conn.execute(
                "SELECT u.username, t.name FROM auth_users u JOIN townships t ON t.id = u.township_id"
                " WHERE u.role = 'township_officer' AND u.username LIKE 'bench%' ORDER BY u.username").fetchall()
            rows = sum(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # type: ignore[index]
                       for table in SEEDED_TABLES)
        by_town: dict[str, list[str]] = {}
        for pid, town in points:
            by_town.setdefault(town, []).append(pid)
        all_ids = [pid for pid, _ in points]
        users: list[tuple[str, list[str]]] = []
        for i in range(args.users):
            # Half the users are county-wide bureau viewers, half township officers (round robin).
            if i % 2 == 0 or not officers:
                users.append(("benchviewer", all_ids))
            else:
                username, town = officers[(i // 2) % len(officers)]
                users.append((username, by_town[town]))
        port = _free_port()
        log = Path(tempfile.mkdtemp(prefix="bench-dashboard-")) / "server.log"
        proc = start_server(dsn, port, log)
        progress(f"server on :{port} (log {log}); {args.users} users for {args.duration:.0f} s, think {args.think} s")
        samples = asyncio.run(run_users(f"http://127.0.0.1:{port}", users, args.duration, args.think))
        ok = [s.ms for s in samples if s.ok]
        by_page = {page: {"p50_ms": round(_pct([s.ms for s in samples if s.ok and s.page == page], 0.5), 1),
                          "p95_ms": round(_pct([s.ms for s in samples if s.ok and s.page == page], 0.95), 1),
                          "requests": sum(1 for s in samples if s.page == page)}
                   for page in ("overview", "point")}
        result = {
            "p50_ms": round(_pct(ok, 0.5), 1), "p95_ms": round(_pct(ok, 0.95), 1), "target_p95_ms": 100,
            "rows": rows, "points": len(points), "days": args.days, "users": args.users,
            "think_s": args.think, "duration_s": args.duration, "requests": len(samples),
            "errors": sum(1 for s in samples if not s.ok), "rps": round(len(samples) / args.duration, 1),
            "mean_ms": round(statistics.fmean(ok), 1) if ok else None, "by_page": by_page,
            "seed_s": round(seed_s, 1), "load_avg": [round(x, 2) for x in os.getloadavg()],
        }
        print(json.dumps(result, ensure_ascii=False))
        return 0
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        if not (args.keep or args.reuse):
            with psycopg.connect(admin, autocommit=True) as c:
                c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        else:
            progress(f"kept database {name}")


if __name__ == "__main__":
    raise SystemExit(main())
