"""Alert latency benchmark: edge safety event published → notification request at a local WeCom stand-in,
with background telemetry through the same broker and a running ingest worker.

    python -m bench.alerts [--trials N] [--interval S] [--background-rate R] [--publishers P]
                           [--shared-broker] [--keep-db]

Progress goes to stderr; the LAST line on stdout is one JSON object: p50_ms, p99_ms (target ≤ 300),
max_ms, broker_only_p50_ms / broker_only_p99_ms (baseline: the same events at a bare subscriber),
background_msgs_per_s (measured: telemetry messages the broker acknowledged per second while
trials ran), ingest_rows_per_s (telemetry rows the ingest worker stored over the same span,
catch-up included), missed (trials with no request within the deadline; target 0), trials, broker,
load_average.

Method. A scratch database is created and migrated, and an empty broker is started for the run from
deploy/native/mosquitto.sh (port 18832, same configuration and server account; --shared-broker uses
the shared one on 18830 instead, with every persistent session it keeps). The meal point under test
gets a broker account of its own and a caregiver whose first channel is a WeCom robot pointed at a
local HTTP stand-in. `python -m server.ingest.worker` and `python -m server.alerts.worker` run as
separate processes on every point ("+"), so the alert worker takes the whole background stream as it
would in the county. P publisher processes send single-reading telemetry (QoS 1, normal values) for
200 other points at R messages/s in all, as bare MQTT packets on a plain socket (a Python MQTT client
spent half a core of the two generating the load); only messages the broker acknowledged count.
Once the background runs, each trial publishes, with the point's own account, one contract
SafetyEvent (gas alarm) for a new device, so each trial opens a new alert and one first notification.
Latency = arrival time at the stand-in − time just before publish (same clock).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bench._db import drop_database
from firmware_bridge.contract import Reading, SafetyEvent, SafetyLevel, TelemetryEvent
from server.db.migrate import migrate
from server.settings import MqttSettings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy" / "native"
ROBOT_KEY = "bench-robot"
BACKGROUND_POINTS = 200
DEADLINE_SECONDS = 10.0
BENCH_MQTT_PORT = 18832
START_TIMEOUT_SECONDS = 60.0


def progress(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def admin_dsn() -> str:
    dsn = os.environ.get("YANGYI_DB_DSN")
    if dsn:
        return dsn
    out = subprocess.run(["bash", str(DEPLOY / "timescaledb.sh"), "dsn"], check=True, capture_output=True, text=True)
    return out.stdout.strip()


class StandIn:
    """The WeCom robot stand-in: records (arrival time, text) of every accepted request."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, str]] = []
        self.lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                now = time.time()
                text = json.loads(body).get("text", {}).get("content", "")
                with stand_in.lock:
                    stand_in.arrivals.append((now, text))
                raw = b'{"errcode": 0, "errmsg": "ok"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/cgi-bin/webhook/send?key={ROBOT_KEY}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def first_arrival(self, device: str) -> float | None:
        needle = f"（设备 {device}）"
        with self.lock:
            return next((t for t, text in self.arrivals if needle in text and "燃气" in text), None)


def _client(host: str, port: int, user: str, password: str, name: str) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{name}-{uuid.uuid4().hex[:8]}",
                         protocol=mqtt.MQTTv5)
    client.username_pw_set(user, password)
    client.max_inflight_messages_set(2000)
    client.max_queued_messages_set(0)
    client.connect(host, port)
    client.loop_start()
    return client


class _RawPublisher:
    """A bare MQTT 3.1.1 QoS 1 publisher on a plain socket, for the background load only.

    paho spends tens of microseconds of Python per message; at 5,000 messages/s that load generator
    took about half a core of the two the system under test shares. This one writes ready-made PUBLISH
    packets in batches and a reader thread counts the broker's PUBACKs, so the figures count messages the
    broker really took (QoS 1, acknowledged) while the CPU goes to the broker, ingest and alert worker.
    """

    def __init__(self, host: str, port: int, user: str, password: str, client_id: str) -> None:
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        fields = b"".join(_mqtt_str(x.encode()) for x in (client_id, user, password))
        # protocol "MQTT" level 4; flags: user name, password, clean session; keep alive 0 (off)
        self.sock.sendall(_mqtt_packet(0x10, _mqtt_str(b"MQTT") + bytes([4, 0xC2, 0, 0]) + fields))
        connack = self._read_exact(4)
        if connack[0] != 0x20 or connack[3] != 0:
            raise RuntimeError(f"broker refused the background publisher: {connack!r}")
        self.acked = 0
        self.sent = 0
        self._next_id = 0
        self._reader = threading.Thread(target=self._read_acks, daemon=True)
        self._reader.start()

    def _read_exact(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError("broker closed the connection")
            out += chunk
        return out

    def _read_acks(self) -> None:
        buf = b""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return
                buf += chunk
                at = 0
                while len(buf) - at >= 2:
                    length, used = _mqtt_varint(buf, at + 1)
                    if used == 0 or len(buf) - at < 1 + used + length:
                        break
                    if buf[at] >> 4 == 4:  # PUBACK
                        self.acked += 1
                    at += 1 + used + length
                buf = buf[at:]
        except OSError:
            return

    def publish_many(self, messages: list[tuple[bytes, bytes]]) -> None:
        """Send (topic, payload) pairs as QoS 1 PUBLISH packets in one write."""
        packets = []
        for topic, payload in messages:
            self._next_id = self._next_id % 65535 + 1
            packets.append(_mqtt_packet(0x32, _mqtt_str(topic) + self._next_id.to_bytes(2, "big") + payload))
        self.sock.sendall(b"".join(packets))
        self.sent += len(messages)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(b"\xe0\x00")  # DISCONNECT
        self.sock.close()


def _mqtt_str(b: bytes) -> bytes:
    return len(b).to_bytes(2, "big") + b


def _mqtt_packet(first: int, body: bytes) -> bytes:
    n, out = len(body), bytearray([first])
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out) + body


def _mqtt_varint(buf: bytes, at: int) -> tuple[int, int]:
    """(value, bytes used) of the remaining-length field at `at`; used 0 when incomplete."""
    value, shift = 0, 0
    for i in range(4):
        if at + i >= len(buf):
            return 0, 0
        value |= (buf[at + i] & 0x7F) << shift
        if not buf[at + i] & 0x80:
            return value, i + 1
        shift += 7
    raise ValueError("malformed remaining length")


def _background(args: tuple[str, int, str, str, list[str], float, float, str]) -> tuple[int, float]:
    """Publisher process: single-reading telemetry at `rate`/s until `until` (epoch); returns (acked, seconds)."""
    host, port, user, password, points, rate, until, tag = args
    client = _RawPublisher(host, port, user, password, f"bench-bg-{tag}")
    start = time.time()
    seq = 0
    # Payloads are encoded once per point and only the sequence number and time are swapped in, so the
    # publishers spend their CPU on publishing (the contract model checks the template).
    templates = {p: TelemetryEvent(point=p, device="meter1", seq=999999999, ts=datetime(2026, 1, 1, tzinfo=UTC),
                                   clock_synced=True, readings=[Reading(ch="voltage", unit="V", v=220.5)]).to_bytes()
                 for p in points}
    topics = {p: f"yangyi/v1/{p}/meter1/telemetry".encode() for p in points}
    stamp = b"2026-01-01T00:00:00Z"
    while True:
        now = time.time()
        if now >= until:
            break
        due = int((now - start) * rate)
        ts = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode()
        batch: list[tuple[bytes, bytes]] = []
        while client.sent + len(batch) < due:
            point = points[(client.sent + len(batch)) % len(points)]
            seq += 1
            batch.append((topics[point], templates[point].replace(b"999999999", str(seq).encode()).replace(stamp, ts)))
        if batch:
            client.publish_many(batch)
        time.sleep(0.005)
    elapsed = time.time() - start
    time.sleep(1.0)  # let the last PUBACKs arrive
    client.close()
    return client.acked, elapsed


def _broker_probe(m: MqttSettings, point: str) -> dict[str, float]:
    """A bare subscriber to the point's safety topic: arrival time by device (the broker's share)."""
    seen: dict[str, float] = {}
    ready = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-probe-{uuid.uuid4().hex[:8]}",
                         protocol=mqtt.MQTTv5)
    client.username_pw_set(m.username, m.resolved_password())
    client.on_subscribe = lambda *a: ready.set()

    def on_message(c: mqtt.Client, u: Any, msg: mqtt.MQTTMessage) -> None:
        seen.setdefault(msg.topic.split("/")[3], time.time())

    client.on_message = on_message
    client.connect(m.host, m.port)
    client.loop_start()
    client.subscribe(f"yangyi/v1/{point}/+/safety", qos=1)
    ready.wait(10)
    return seen


def start_own_broker(port: int) -> Path:
    """Start an empty broker for this run from deploy/native/mosquitto.sh (same config, same server account).

    The shared broker (18830) keeps the persistent sessions of every worker that ever ran against it;
    one nobody resumes queues every message the bench publishes (7 days, up to 1 GiB each), and Mosquitto
    writes its whole store to disk every 30 s on its only thread, stalling every client while it does.
    """
    state = Path(os.environ.get("YANGYI_STATE_DIR", "/var/lib/yangyi"))
    os.environ["YANGYI_MQTT_PORT"] = str(port)
    os.environ["YANGYI_MQTT_DIR"] = str(state / f"mosquitto-bench-{port}")
    _mosquitto("stop")
    subprocess.run(["rm", "-rf", os.environ["YANGYI_MQTT_DIR"]], check=True)
    _mosquitto("install")
    return Path(os.environ["YANGYI_MQTT_DIR"])


def stop_own_broker(directory: Path) -> None:
    _mosquitto("stop")
    subprocess.run(["rm", "-rf", str(directory)], check=False)


def _mosquitto(*args: str) -> None:
    subprocess.run(["bash", str(DEPLOY / "mosquitto.sh"), *args], check=True, capture_output=True)


def add_point_account(point: str) -> str:
    password = secrets.token_urlsafe(16)
    subprocess.run(["bash", str(DEPLOY / "mosquitto.sh"), "add-user", point, password], check=True,
                   capture_output=True)
    subprocess.run(["bash", str(DEPLOY / "mosquitto.sh"), "reload"], check=True, capture_output=True)
    time.sleep(0.5)
    return password


def wait_log(path: Path, needle: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while needle not in (path.read_text(errors="replace") if path.exists() else ""):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{path.name}: no {needle!r}; see {path}")
        time.sleep(0.1)


def end_session(m: MqttSettings, client_id: str) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.username_pw_set(m.username, m.resolved_password())
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0
    try:
        client.connect(m.host, m.port, clean_start=True, properties=props)
        client.loop_start()
        time.sleep(0.3)
        client.disconnect()
        client.loop_stop()
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.alerts", description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=120)
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between safety events")
    parser.add_argument("--background-rate", type=float, default=5000.0, help="telemetry messages/s in all")
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of background before the trials")
    parser.add_argument("--keep-db", action="store_true")
    parser.add_argument("--shared-broker", action="store_true",
                        help="use the shared broker (18830, with whatever sessions it keeps) instead of an empty one")
    args = parser.parse_args(argv)
    own_broker = None if args.shared_broker else start_own_broker(BENCH_MQTT_PORT)

    run = uuid.uuid4().hex[:8]
    admin = admin_dsn()
    db_name = f"yangyi_bench_alerts_{run}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db_name}"')
    dsn = admin.rsplit("/", 1)[0] + "/" + db_name
    migrate(dsn)
    progress(f"fresh database {db_name}; load average {loadavg()}")

    point = f"benchalert{run}"
    bg_points = [f"bg{run}p{i:03d}" for i in range(BACKGROUND_POINTS)]
    with psycopg.connect(dsn) as conn:
        conn.execute("INSERT INTO meal_points (id, name, township, village)"
                     " VALUES (%s, '基准助餐点', '基准镇', '基准村')", (point,))
        row = conn.execute("INSERT INTO alert_contacts (name, role, mobile, endpoints)"
                           " VALUES ('王阿姨', 'caregiver', '13800000001', %s) RETURNING id",
                           (json.dumps([{"channel": "wecom", "address": "grp"}]),)).fetchone()
        assert row is not None
        conn.execute("INSERT INTO alert_contact_points (contact_id, point_id) VALUES (%s, %s)", (row[0], point))
        conn.commit()
    stand_in = StandIn()
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-alerts-{run}-"))
    config = workdir / "alerts.yaml"
    config.write_text(yaml.safe_dump({"channels": {"wecom": {"robots": {"grp": stand_in.url}}}}))
    m = MqttSettings()
    progress(f"broker {m.host}:{m.port} ({'shared' if own_broker is None else 'empty, this run only'})")
    point_password = add_point_account(point)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "YANGYI_DB_DSN": dsn, "YANGYI_MQTT_SESSION_EXPIRY_S": "600"}
    ingest_id, alerts_id = f"bench-ingest-{run}", f"bench-alerts-{run}"
    procs: list[subprocess.Popen[bytes]] = []
    result: dict[str, Any] = {}
    try:
        for name, argv_ in (("ingest", [sys.executable, "-m", "server.ingest.worker", "--client-id", ingest_id]),
                            ("alerts", [sys.executable, "-m", "server.alerts.worker", "--config", str(config),
                                        "--client-id", alerts_id])):
            log = workdir / f"{name}.log"
            with open(log, "ab") as out:
                procs.append(subprocess.Popen(argv_, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                              env={**env, "YANGYI_ALERTS_SHARE_GROUP": f"bench{run}"}))
            wait_log(log, "subscribed to", procs[-1], START_TIMEOUT_SECONDS)
        progress(f"ingest and alert workers subscribed; load average {loadavg()}")

        duration = args.warmup + args.trials * args.interval + 2.0
        until = time.time() + duration
        per = args.background_rate / args.publishers
        chunks = [bg_points[i::args.publishers] for i in range(args.publishers)]
        pool = multiprocessing.get_context("spawn").Pool(args.publishers)
        bg = pool.map_async(_background, [(m.host, m.port, m.username, m.resolved_password(), chunks[i], per, until,
                                           f"{run}{i}") for i in range(args.publishers)])
        time.sleep(args.warmup)
        rows_start = _telemetry_rows(dsn)
        t_rows0 = time.time()
        progress(f"background running; {args.trials} safety events every {args.interval} s")

        edge = _client(m.host, m.port, point, point_password, "bench-edge")
        broker_seen = _broker_probe(m, point)
        published: dict[str, float] = {}
        for i in range(args.trials):
            device = f"gas{i:04d}"
            event = SafetyEvent(point=point, device=device, seq=1, ts=datetime.now(UTC), clock_synced=True, ch="lel",
                                level=SafetyLevel.ALARM, prev_level=SafetyLevel.NORMAL, rule="gas.lel", value=30.0,
                                unit="%LEL", threshold=25.0, latched=True, actions=["buzzer.on", "valve.close"])
            t = time.time()
            edge.publish(f"yangyi/v1/{point}/{device}/safety", event.to_bytes(), qos=1)
            published[device] = t
            time.sleep(args.interval)
        acked_runs = bg.get(timeout=duration + 60)
        pool.close()
        rows_end = _telemetry_rows(dsn)
        t_rows1 = time.time()
        deadline = time.time() + DEADLINE_SECONDS
        while time.time() < deadline and any(stand_in.first_arrival(d) is None for d in published):
            time.sleep(0.1)
        edge.disconnect()
        edge.loop_stop()

        latencies: list[float] = []
        missed = 0
        for device, t in published.items():
            arrived = stand_in.first_arrival(device)
            if arrived is None:
                missed += 1
            else:
                latencies.append((arrived - t) * 1000.0)
        latencies.sort()
        broker = sorted((broker_seen[d] - t) * 1000.0 for d, t in published.items() if d in broker_seen)
        bg_rate = sum(a for a, _ in acked_runs) / max(e for _, e in acked_runs)
        result = {
            "p50_ms": round(statistics.median(latencies), 1) if latencies else None,
            "p99_ms": round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 1) if latencies else None,
            "max_ms": round(latencies[-1], 1) if latencies else None,
            # Baseline: the same events seen by a bare subscriber (no database, no rules) on the same broker.
            "broker_only_p50_ms": round(statistics.median(broker), 1) if broker else None,
            "broker_only_p99_ms": round(broker[min(len(broker) - 1, int(0.99 * len(broker)))], 1) if broker else None,
            "background_msgs_per_s": round(bg_rate, 1),
            "background_target_per_s": args.background_rate,
            "ingest_rows_per_s": round((rows_end - rows_start) / (t_rows1 - t_rows0), 1),
            "missed": missed,
            "trials": args.trials,
            "broker": "shared" if own_broker is None else "empty, this run only",
            "load_average": loadavg(),
        }
        progress(f"latencies ms: p50 {result['p50_ms']} p99 {result['p99_ms']} max {result['max_ms']}"
                 f" (bare subscriber p50 {result['broker_only_p50_ms']} p99 {result['broker_only_p99_ms']});"
                 f" background {result['background_msgs_per_s']}/s, ingest {result['ingest_rows_per_s']} rows/s")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        for client_id in (ingest_id, alerts_id, f"{alerts_id}-safety"):
            end_session(m, client_id)
        if own_broker is not None:
            stop_own_broker(own_broker)
        stand_in.server.shutdown()
        if not args.keep_db:
            drop_database(admin, db_name, progress, attempts=10)
    print(json.dumps(result, ensure_ascii=False))
    return 0 if result and result["missed"] == 0 else 1


def _telemetry_rows(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM telemetry").fetchone()
    return int(row[0]) if row else 0


if __name__ == "__main__":
    raise SystemExit(main())
