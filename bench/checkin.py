"""Check-in benchmark: tap-to-feedback latency on a real pty, and a lunch rush through broker and database.

    python -m bench.checkin [--taps 2000] [--points 50] [--elders 150] [--rush-minutes 10] [--compress 20]

Progress goes to stderr; the LAST stdout line is one JSON object with tap_to_feedback_p50_ms,
tap_to_feedback_p99_ms (target <= 30), rush_events, rush_lost (target 0), rush_duplicated
(target 0), rush_end_to_end_p99_ms, and the settings and machine load they were measured under.

(1) Tap to feedback. The EM4100 simulator's frame encoder writes one 14-byte frame into a pty; the
    real card input (edge.inputs.cards, Em4100Input) reads the slave node, decodes, de-bounces, asks
    the real Checkin, appends to the real SQLite outbox (WAL, synchronous=FULL: the row is durable
    when append returns) and only then calls the indicator (the served-state file is saved after
    that, from a background thread, and still competes for the same disk),
    which timestamps the call. Latency = indicator call − the moment os.write of the frame's last
    byte returned. One tap at a time (each waits for its feedback), every card distinct and on the
    roster, so every tap takes the slowest path (accepted: outbox append, then a served-state save).
(2) Lunch rush. --points meal points, each a real edge Agent object (outbox, publisher with its own
    MQTT session and broker account, check-in with a roster of --elders cards) in this process; a
    thread per point plays its elders' taps through Checkin.tap and the agent's emitter, as the card
    input does. Each elder taps once at a time drawn from a triangular distribution over the rush
    (peak in the middle); 10 % tap again 5–60 s later (a repeat). TIME IS COMPRESSED by --compress:
    the schedule's offsets are divided by it (10 minutes at 20× → 30 s), so each point taps 20×
    faster than real life. The broker is a Mosquitto of the bench's own (the project's config,
    password file and ACL; the shared one carries everyone else's traffic). A real ingest worker
    process (`python -m server.ingest.worker`) writes into a fresh migrated database; rows are
    counted against the taps: lost = taps without a row, duplicated = rows beyond one per
    (point, device, seq). End to end = message_receipts.received_at
    (the ingest transaction's now()) − the tap's event time, both from this machine's clock.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from edge.agent import Agent
from edge.checkin import Checkin, CheckinConfig, Feedback, StateStore, roster_from_entries
from edge.clock import SystemClock
from edge.config import AgentConfig
from edge.inputs.cards import Em4100Input, Em4100ReaderConfig
from edge.outbox import Outbox, OutboxEmitter
from firmware_bridge.contract import Channel, CheckinMethod, RosterEntry
from firmware_bridge.sim import Tap
from firmware_bridge.sim.em4100 import encode_tap
from firmware_bridge.sim.pty import Pty
from server.db.migrate import migrate

ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = Path(os.environ.get("YANGYI_STATE_DIR", "/var/lib/yangyi"))
ALL_DAY = {"timezone": "Asia/Shanghai", "windows": [{"meal": "lunch", "start": "00:00", "end": "23:59:59.999999"}]}
FEEDBACK_TIMEOUT_SECONDS = 5.0
DRAIN_TIMEOUT_SECONDS = 120.0
REPEAT_SHARE = 0.10


def progress(msg: str) -> None:
    print(f"[bench.checkin] {msg}", file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def card_hex(point: int, elder: int) -> str:
    return f"{0xB0:02X}{point:04X}{elder:04X}"


# -- (1) tap to feedback -------------------------------------------------------------------------------


class StampingIndicator:
    """Records when the input calls it, and wakes the writer."""

    def __init__(self) -> None:
        self.at: float | None = None
        self.decisions: dict[str, int] = {}
        self.event = threading.Event()

    def show(self, device_id: str, feedback: Feedback) -> None:
        self.at = time.perf_counter()
        key = feedback.decision.value if feedback.decision else "mode"
        self.decisions[key] = self.decisions.get(key, 0) + 1
        self.event.set()


class TimedStateStore(StateStore):
    """The real state store, timing each served-state write (it happens before the feedback)."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.ms: list[float] = []

    def save_served(self, served: Any) -> None:
        t = time.perf_counter()
        super().save_served(served)
        self.ms.append((time.perf_counter() - t) * 1000)


class TimedEmitter(OutboxEmitter):
    """The real outbox emitter, timing each durable append."""

    def __init__(self, outbox: Outbox, clock: SystemClock) -> None:
        super().__init__(outbox, clock)
        self.ms: list[float] = []

    def emit(self, *args: Any, **kwargs: Any) -> int:
        t = time.perf_counter()
        row = super().emit(*args, **kwargs)
        self.ms.append((time.perf_counter() - t) * 1000)
        return row


def tap_to_feedback(taps: int, work: Path) -> dict[str, Any]:
    point = "bench-ttf"
    link = work / "reader0"
    outbox = Outbox(work / "ttf" / "outbox.db", point)
    clock = SystemClock(assume_synced=True)
    store = TimedStateStore(work / "ttf" / "state")
    checkin = Checkin(point, CheckinConfig.model_validate(ALL_DAY), clock, store)
    cards = [card_hex(0xFFFF, i) for i in range(taps)]
    checkin.apply_roster(roster_from_entries(point, 1, [
        RosterEntry(card_id=f"EM:{c}", elder_id=f"E{i}", label="张*") for i, c in enumerate(cards)], datetime.now(UTC)))
    indicator = StampingIndicator()
    stop = threading.Event()
    latencies: list[float] = []
    with Pty(link) as pty:
        config = Em4100ReaderConfig(type="card_em4100", device_id="reader1", port=str(link))
        reader = Em4100Input(config, checkin, indicator, clock)
        emitter = TimedEmitter(outbox, clock)
        thread = threading.Thread(target=reader.run, args=(emitter, stop), daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while reader.opened == 0:
            if time.monotonic() > deadline:
                raise RuntimeError("the card input did not open the pty")
            time.sleep(0.01)
        for i, card in enumerate(cards):
            frame = encode_tap(Tap(card=card))
            indicator.event.clear()
            pty.write(frame)
            sent = time.perf_counter()
            if not indicator.event.wait(FEEDBACK_TIMEOUT_SECONDS) or indicator.at is None:
                raise RuntimeError(f"no feedback for tap {i}")
            latencies.append((indicator.at - sent) * 1000)
            if (i + 1) % 500 == 0:
                progress(f"tap to feedback: {i + 1}/{taps}, p50 so far {statistics.median(latencies):.2f} ms")
        stop.set()
        thread.join(5)
    depth = outbox.depth()
    outbox.close()
    if depth != taps or indicator.decisions != {"accepted": taps}:
        raise RuntimeError(f"expected {taps} accepted taps in the outbox, got {depth} rows, {indicator.decisions}")
    return {"tap_to_feedback_taps": taps,
            "tap_to_feedback_p50_ms": round(percentile(latencies, 50), 3),
            "tap_to_feedback_p99_ms": round(percentile(latencies, 99), 3),
            "tap_to_feedback_max_ms": round(max(latencies), 3),
            # Where the time goes: the outbox fsync precedes the indicator; the state save follows it.
            "outbox_append_p50_ms": round(percentile(emitter.ms, 50), 3),
            "outbox_append_p99_ms": round(percentile(emitter.ms, 99), 3),
            "served_state_write_p50_ms": round(percentile(store.ms, 50), 3),
            "served_state_write_p99_ms": round(percentile(store.ms, 99), 3)}


# -- (2) lunch rush ------------------------------------------------------------------------------------


@dataclass
class PointRun:
    point: str
    agent: Agent
    schedule: list[tuple[float, str]]  # (offset seconds after start, canonical card id)
    taps: int = 0
    failures: int = 0


def admin_dsn() -> str:
    dsn = os.environ.get("YANGYI_DB_DSN")
    if dsn:
        return dsn
    out = subprocess.run(["bash", str(ROOT / "deploy/native/timescaledb.sh"), "dsn"],
                         check=True, capture_output=True, text=True)
    return out.stdout.strip()


def add_accounts(points: list[str]) -> dict[str, str]:
    """Broker accounts for the points (user name = point id) in the project's password file."""
    passwords = {p: secrets.token_urlsafe(12) for p in points}
    for p, pw in passwords.items():
        subprocess.run(["bash", str(ROOT / "deploy/native/mosquitto.sh"), "add-user", p, pw], check=True,
                       capture_output=True)
    return passwords


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_private_broker(work: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A Mosquitto of our own with the project's config, password file and ACL, on a free port.

    The shared broker carries every other test's and demo's traffic, and a worker that takes all
    points would ingest it too; a broker of our own measures the rush alone.
    """
    port = free_port()
    lines = [line for line in (STATE_DIR / "mosquitto" / "mosquitto.conf").read_text().splitlines()
             if line.split(" ", 1)[0] not in {"listener", "pid_file", "persistence_location", "log_dest"}]
    (work / "broker").mkdir()
    lines += [f"listener {port} 127.0.0.1", f"persistence_location {work / 'broker'}/", "log_dest stderr"]
    if os.geteuid() == 0:
        lines.append("user root")
    conf = work / "broker" / "mosquitto.conf"
    conf.write_text("\n".join(lines) + "\n")
    log = open(work / "broker" / "mosquitto.log", "wb")  # noqa: SIM115 - kept open for the process
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=log, stderr=log)
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc, port
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"private broker did not start; see {work / 'broker'}") from None
            time.sleep(0.05)


def schedule_for(rng: random.Random, point_no: int, elders: int, rush_s: float, compress: float
                 ) -> list[tuple[float, str]]:
    out: list[tuple[float, str]] = []
    for e in range(elders):
        card = "EM:" + card_hex(point_no, e)
        t = rng.triangular(0, rush_s, rush_s / 2)
        out.append((t / compress, card))
        if rng.random() < REPEAT_SHARE:
            out.append((min(rush_s, t + rng.uniform(5, 60)) / compress, card))
    out.sort()
    return out


def play_point(run: PointRun, start: float) -> None:
    checkin, emitter = run.agent.checkin, run.agent.emitter

    def emit(decision: Any) -> None:
        emitter.emit(Channel.DINER, "reader1", decision.body(), ts=decision.at)

    for offset, card in run.schedule:
        delay = start + offset - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        try:
            checkin.tap(card, CheckinMethod.CARD, "reader1", emit)
            run.taps += 1
        except Exception as exc:  # a failed tap is counted, never silently dropped
            run.failures += 1
            progress(f"{run.point}: tap failed: {exc}")


def rush(points: int, elders: int, rush_minutes: float, compress: float, work: Path, seed: int
         ) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:6]
    point_ids = [f"bench-ck-{run_id}-{i:02d}" for i in range(points)]
    admin = admin_dsn()
    db = f"yangyi_bench_checkin_{run_id}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    dsn = admin.rsplit("/", 1)[0] + "/" + db
    worker: subprocess.Popen[bytes] | None = None
    broker: subprocess.Popen[bytes] | None = None
    runs: list[PointRun] = []
    try:
        migrate(dsn)
        progress(f"rush: {points} points x {elders} elders, {rush_minutes} min compressed {compress}x; accounts")
        passwords = add_accounts(point_ids)
        broker, port = start_private_broker(work)
        server_pw = (STATE_DIR / "secrets" / "mqtt_server_password").read_text().strip()
        client_id = f"bench-ck-ingest-{run_id}"
        log = open(work / "ingest.log", "wb")  # noqa: SIM115 - the worker writes to it until stopped
        worker = subprocess.Popen(
            [sys.executable, "-m", "server.ingest.worker", "--client-id", client_id], stdout=log, stderr=log,
            cwd=ROOT, env={**os.environ, "YANGYI_DB_DSN": dsn, "YANGYI_MQTT_HOST": "127.0.0.1",
                           "YANGYI_MQTT_PORT": str(port), "YANGYI_MQTT_PASSWORD": server_pw,
                           "YANGYI_MQTT_SESSION_EXPIRY_S": "0"})
        deadline = time.monotonic() + 30
        while b"subscribed to" not in (work / "ingest.log").read_bytes():
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ingest worker did not subscribe; see {work / 'ingest.log'}")
            time.sleep(0.05)
        rng = random.Random(seed)
        for i, p in enumerate(point_ids):
            secret = work / p / "mqtt_password"
            secret.parent.mkdir(parents=True)
            secret.write_text(passwords[p] + "\n")
            cfg = AgentConfig.model_validate({
                "point": {"id": p},
                "mqtt": {"host": "127.0.0.1", "port": port, "username": p, "password_file": str(secret)},
                "outbox": {"path": str(work / p / "outbox.db")}, "clock": {"assume_synced": True},
                "checkin": ALL_DAY})
            agent = Agent(cfg)
            agent.checkin.apply_roster(roster_from_entries(p, 1, [
                RosterEntry(card_id="EM:" + card_hex(i, e), elder_id=f"{p}-E{e}", label="张*")
                for e in range(elders)], datetime.now(UTC)))
            runs.append(PointRun(p, agent, schedule_for(rng, i, elders, rush_minutes * 60, compress)))
        for r in runs:
            r.agent.publisher.start()
        for r in runs:
            if not r.agent.publisher.wait_connected(20):
                raise RuntimeError(f"{r.point} did not connect")
        expected = sum(len(r.schedule) for r in runs)
        progress(f"rush: {expected} taps over {rush_minutes * 60 / compress:.0f} s")
        start = time.monotonic() + 0.5
        threads = [threading.Thread(target=play_point, args=(r, start), daemon=True) for r in runs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        played = time.monotonic() - start
        taps = sum(r.taps for r in runs)
        progress(f"rush: {taps} taps played in {played:.1f} s; waiting for the database")
        count_sql = ("SELECT count(*), count(DISTINCT (point_id, device_id, seq)) FROM diner_events"
                     " WHERE point_id = ANY(%s)")
        deadline = time.monotonic() + DRAIN_TIMEOUT_SECONDS
        with psycopg.connect(dsn, autocommit=True) as conn:
            while True:
                row = conn.execute(count_sql, (point_ids,)).fetchone()
                assert row is not None
                rows, distinct = int(row[0]), int(row[1])
                if distinct >= taps or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            time.sleep(1.0)  # late duplicates would land now
            row = conn.execute(count_sql, (point_ids,)).fetchone()
            assert row is not None
            rows, distinct = int(row[0]), int(row[1])
            drained = time.monotonic() - start
            lat = [float(r[0]) for r in conn.execute(
                "SELECT extract(epoch FROM received_at - time) * 1000 FROM message_receipts"
                " WHERE point_id = ANY(%s) AND channel = 'diner'", (point_ids,)).fetchall()]
            accepted = conn.execute(
                "SELECT count(*) FROM diner_events WHERE point_id = ANY(%s) AND decision = 'accepted'",
                (point_ids,)).fetchone()
        return {
            "rush_points": points, "rush_elders_per_point": elders, "rush_minutes": rush_minutes,
            "rush_compression": compress, "rush_events": taps, "rush_tap_failures": sum(r.failures for r in runs),
            "rush_rows": rows, "rush_lost": taps - distinct, "rush_duplicated": rows - distinct,
            "rush_accepted": int(accepted[0]) if accepted else 0,
            "rush_end_to_end_p50_ms": round(percentile(lat, 50), 1) if lat else None,
            "rush_end_to_end_p99_ms": round(percentile(lat, 99), 1) if lat else None,
            "rush_end_to_end_max_ms": round(max(lat), 1) if lat else None,
            "rush_played_s": round(played, 1), "rush_drained_s": round(drained, 1),
        }
    finally:
        for r in runs:
            try:
                r.agent.stop(2.0)
            except Exception as exc:  # keep cleaning up the others
                progress(f"{r.point}: stop failed: {exc}")
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(15)
            except subprocess.TimeoutExpired:
                worker.kill()
        if broker is not None:
            broker.terminate()
            broker.wait(10)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.checkin", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--taps", type=int, default=2000, help="taps for tap-to-feedback (>= 2000 for the issue)")
    p.add_argument("--points", type=int, default=50)
    p.add_argument("--elders", type=int, default=150, help="elders per point in the rush")
    p.add_argument("--rush-minutes", type=float, default=10.0)
    p.add_argument("--compress", type=float, default=20.0, help="time compression of the rush")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--skip-rush", action="store_true")
    args = p.parse_args(argv)
    load_before = os.getloadavg()
    result: dict[str, Any] = {"bench": "checkin"}
    with tempfile.TemporaryDirectory(prefix="yangyi-bench-checkin-") as tmp:
        work = Path(tmp)
        progress(f"tap to feedback over {args.taps} taps (load {load_before[0]:.2f})")
        result.update(tap_to_feedback(args.taps, work))
        progress(f"tap to feedback p50 {result['tap_to_feedback_p50_ms']} ms,"
                 f" p99 {result['tap_to_feedback_p99_ms']} ms")
        if not args.skip_rush:
            result.update(rush(args.points, args.elders, args.rush_minutes, args.compress, work, args.seed))
    result["targets"] = {"tap_to_feedback_p99_ms": 30, "rush_lost": 0, "rush_duplicated": 0}
    result["load_avg_1m_before"] = round(load_before[0], 2)
    result["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
    result["cpus"] = os.cpu_count()
    print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
