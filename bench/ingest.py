"""Ingest benchmark: worker vs. a raw paho client vs. plain COPY, through the real broker and database.

    python -m bench.ingest [--messages N] [--batched-messages M] [--readings-per-message R]

Progress goes to stderr; the LAST line on stdout is one JSON object (msgs_per_s, readings_per_s,
raw_client_msgs_per_s, copy_rows_per_s, ratio_vs_raw_client, lost, duplicated, ...).

Method. Each phase's messages are published by separate publisher processes into the broker while
the consumers' persistent sessions are offline, so the broker holds the whole stream queued; then
each consumer connects and drains it alone, timed from connect to the last message handled. That
measures the consumer's ceiling rather than the publishers' speed.
  (a) the ingest worker (validation, one transaction per batch, ack after commit), N single-reading
      telemetry messages → msgs_per_s;
  (c) a raw paho subscriber with manual ack and no database, on its own copy of the same N messages
      → raw_client_msgs_per_s. (a) and (c) run in --rounds rounds, drained back to back in
      alternating order; the figures are medians over rounds and ratio_vs_raw_client is the median
      of the per-round ratios, because other work on the machine shifts both sides a lot;
  (b) the worker on M messages of R readings each → readings_per_s;
  (d) COPY of the rows of (b) straight into a scratch hypertable → copy_rows_per_s.
lost and duplicated come from counting the stored rows against what was published.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from pydantic import SecretStr

from server.db.migrate import migrate
from server.ingest.batch import TELEMETRY_COLUMNS
from server.ingest.repository import COPY_TYPES
from server.ingest.worker import IngestWorker, subscription_filters, tune_gc
from server.settings import DbSettings, IngestSettings, MqttSettings, Settings

ROOT = Path(__file__).resolve().parent.parent
SESSION_EXPIRY_SECONDS = 600
DRAIN_TIMEOUT_SECONDS = 300.0


def progress(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def admin_dsn() -> str:
    dsn = os.environ.get("YANGYI_DB_DSN")
    if dsn:
        return dsn
    out = subprocess.run(["bash", str(ROOT / "deploy/native/timescaledb.sh"), "dsn"],
                         check=True, capture_output=True, text=True)
    return out.stdout.strip()


def _connect(mqtt_settings: MqttSettings, client_id: str, clean: bool, receive_max: int = 0) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                         manual_ack=True)
    client.username_pw_set(mqtt_settings.username, mqtt_settings.resolved_password())
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0 if clean and receive_max < 0 else SESSION_EXPIRY_SECONDS
    if receive_max > 0:
        props.ReceiveMaximum = receive_max
    client.connect(mqtt_settings.host, mqtt_settings.port, clean_start=clean, properties=props)
    return client


def create_session(mqtt_settings: MqttSettings, client_id: str, point: str) -> None:
    """Create a persistent session subscribed to the point's device topics, then go offline."""
    client = _connect(mqtt_settings, client_id, clean=True)
    done = threading.Event()
    client.on_subscribe = lambda *a: done.set()
    client.loop_start()
    client.subscribe([(f, SubscribeOptions(qos=1)) for f in subscription_filters(None, point)])
    if not done.wait(10):
        raise RuntimeError("subscribe not acknowledged")
    client.disconnect()
    client.loop_stop()


def end_session(mqtt_settings: MqttSettings, client_id: str) -> None:
    """Remove a persistent session so the broker stops queueing for it."""
    client = _connect(mqtt_settings, client_id, clean=True, receive_max=-1)
    client.loop_start()
    time.sleep(0.2)
    client.disconnect()
    client.loop_stop()


def _publisher(args: tuple[dict[str, Any], str, list[str], int, int, str, int]) -> int:
    """Publisher process: publish `count` messages per device at QoS 1; return how many were acked."""
    mqtt_kwargs, point, devices, count, readings, base_iso, first_seq = args
    m = MqttSettings(**mqtt_kwargs)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{uuid.uuid4().hex[:8]}",
                         protocol=mqtt.MQTTv5)
    client.username_pw_set(m.username, m.resolved_password())
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect(m.host, m.port)
    client.loop_start()
    base = datetime.fromisoformat(base_iso)
    infos = []
    for seq in range(first_seq, first_seq + count):
        ts = base + timedelta(milliseconds=seq)
        for device in devices:
            if readings == 1:
                payload = json.dumps({
                    "v": 1, "point": point, "device": device, "seq": seq, "ts": ts.isoformat(),
                    "clock_synced": True,
                    "readings": [{"ch": "elec.residual_current", "unit": "mA", "v": 100.0 + seq % 50}],
                })
            else:
                payload = json.dumps({
                    "v": 1, "point": point, "device": device, "seq": seq, "ts": ts.isoformat(),
                    "clock_synced": True,
                    "readings": [{"ch": f"ch{r}", "unit": "V", "v": 220.0 + (seq + r) % 10,
                                  "t": (ts + timedelta(microseconds=r)).isoformat()}
                                 for r in range(readings)],
                })
            infos.append(client.publish(f"yangyi/v1/{point}/{device}/telemetry", payload, qos=1))
            if len(infos) >= 5000:
                for info in infos:
                    info.wait_for_publish(60)
                infos.clear()
    for info in infos:
        info.wait_for_publish(60)
    client.disconnect()
    client.loop_stop()
    return count * len(devices)


def publish(mqtt_settings: MqttSettings, point: str, n_messages: int, readings: int, processes: int,
            first_seq: int = 0) -> float:
    """Publish n_messages spread over `processes` publisher processes; return the seconds it took."""
    per_proc = n_messages // processes
    devices_per_proc = 4
    count = per_proc // devices_per_proc
    base = datetime(2026, 1, 1, tzinfo=UTC).isoformat()
    jobs = [(mqtt_settings.model_dump(mode="json", exclude={"password"}), point,
             [f"dev{p}-{d}" for d in range(devices_per_proc)], count, readings, base, first_seq)
            for p in range(processes)]
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        total = sum(pool.map(_publisher, jobs))
    elapsed = time.perf_counter() - started
    if total != count * devices_per_proc * processes:
        raise RuntimeError(f"published {total}")
    return elapsed


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system) of this process, or of another process by pid (Linux /proc)."""
    if pid is None:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drain_raw(mqtt_settings: MqttSettings, client_id: str, expected: int, receive_max: int
              ) -> tuple[float, float]:
    """Drain the queued stream with a bare paho client that acks each message; return seconds, CPU s."""
    received = 0
    done = threading.Event()

    def on_message(client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        nonlocal received
        client.ack(msg.mid, msg.qos)
        received += 1
        if received >= expected:
            done.set()

    started = time.perf_counter()
    cpu = cpu_seconds()
    client = _connect(mqtt_settings, client_id, clean=False, receive_max=receive_max)
    client.on_message = on_message
    client.loop_start()
    if not done.wait(DRAIN_TIMEOUT_SECONDS):
        raise RuntimeError(f"raw client received {received} of {expected}")
    elapsed = time.perf_counter() - started
    cpu = cpu_seconds() - cpu
    client.disconnect()
    client.loop_stop()
    return elapsed, cpu


def drain_worker(settings: Settings, expected_messages: int) -> tuple[float, dict[str, Any]]:
    """Run the ingest worker on the queued stream until every message is committed and acked."""
    worker = IngestWorker(settings)
    worker.writer.start()  # process start-up is not part of the throughput
    child = getattr(worker.writer, "pid", None)
    started = time.perf_counter()
    cpu, child_cpu = cpu_seconds(), cpu_seconds(child) if child else 0.0
    worker.start()
    deadline = started + DRAIN_TIMEOUT_SECONDS
    while worker.writer.stats.messages < expected_messages:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"worker handled {worker.writer.stats.messages} of {expected_messages}")
        time.sleep(0.02)
    elapsed = time.perf_counter() - started
    cpu = cpu_seconds() - cpu
    child_cpu = cpu_seconds(child) - child_cpu if child else 0.0
    worker.stop()
    return elapsed, {**worker.writer.stats.snapshot(), "cpu_s": round(cpu, 2), "child_cpu_s": round(child_cpu, 2)}


def count_rows(dsn: str, point: str) -> tuple[int, int]:
    """Rows stored for a point, and distinct (device, seq, channel) among them."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT (device_id, seq, channel)) FROM telemetry WHERE point_id = %s",
            (point,)).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def copy_ceiling(dsn: str, point: str) -> tuple[float, int]:
    """COPY the point's stored rows straight into a scratch hypertable; return rows per second."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT time, point_id, device_id, seq, channel, unit, value, vmin, vmean, vmax, n, period_s"
            " FROM telemetry WHERE point_id = %s", (point,)).fetchall()
        conn.execute("CREATE TABLE bench_copy (LIKE telemetry INCLUDING ALL)")
        conn.execute("SELECT create_hypertable('bench_copy', 'time', chunk_time_interval => interval '1 day',"
                     " create_default_indexes => false)")
        started = time.perf_counter()
        # The same binary COPY the worker does, into a table with the same index.
        with conn.transaction(), conn.cursor() as cur, cur.copy(
            f"COPY bench_copy ({', '.join(TELEMETRY_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(COPY_TYPES["telemetry"])
            for r in rows:
                copy.write_row(r)
        elapsed = time.perf_counter() - started
    return len(rows) / elapsed, len(rows)


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000, help="single-reading messages (a, c)")
    parser.add_argument("--batched-messages", type=int, default=4_000, help="batched messages (b)")
    parser.add_argument("--rounds", type=int, default=3, help="raw/worker drain pairs for (a) and (c)")
    parser.add_argument("--readings-per-message", type=int, default=100)
    parser.add_argument("--publishers", type=int, default=2, help="publisher processes")
    parser.add_argument("--batch-max", type=int, default=IngestSettings().batch_max)
    parser.add_argument("--batch-latency", type=float, default=IngestSettings().batch_latency_s)
    parser.add_argument("--receive-maximum", type=int, default=MqttSettings().receive_maximum)
    parser.add_argument("--writer", choices=("process", "thread"), default=IngestSettings().writer)
    parser.add_argument("--keep-db", action="store_true", help="keep the scratch database")
    args = parser.parse_args(argv)

    tune_gc()  # as yangyi-ingest's main() does
    run = uuid.uuid4().hex[:8]
    admin = admin_dsn()
    db_name = f"yangyi_bench_{run}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db_name}"')
    dsn = admin.rsplit("/", 1)[0] + "/" + db_name
    migrate(dsn)
    progress(f"fresh database {db_name}; load average {loadavg()}")
    point_a, point_b = f"bencha{run}", f"benchb{run}"
    worker_a, worker_b, raw_id = f"bench-ingest-a-{run}", f"bench-ingest-b-{run}", f"bench-raw-{run}"
    base_mqtt = MqttSettings()
    ingest = IngestSettings(batch_max=args.batch_max, batch_latency_s=args.batch_latency, writer=args.writer)

    def worker_settings(client_id: str, point: str) -> Settings:
        return Settings(
            db=DbSettings(dsn=SecretStr(dsn)),
            mqtt=MqttSettings(client_id=client_id, subscribe_point=point, receive_maximum=args.receive_maximum,
                              session_expiry_s=SESSION_EXPIRY_SECONDS),
            ingest=ingest,
        )

    sessions = [(worker_a, point_a), (raw_id, point_a), (worker_b, point_b)]
    result: dict[str, Any] = {}
    try:
        for client_id, point in sessions:
            create_session(base_mqtt, client_id, point)
        per_round = args.messages // args.rounds
        per_round -= per_round % (4 * args.publishers)
        n_a = per_round * args.rounds
        n_b = args.batched_messages - args.batched_messages % (4 * args.publishers)
        raw_rates: list[float] = []
        worker_rates: list[float] = []
        raw_cpu = worker_cpu = child_cpu = 0.0
        batches_a = 0
        pub_a = 0.0
        for r in range(args.rounds):
            # Both sessions hold the same stream; drained in turn, the order alternating per round, so
            # a change in the machine's other load hits both sides alike.
            progress(f"round {r + 1}/{args.rounds}: publishing {per_round} single-reading messages"
                     f" from {args.publishers} processes; load {loadavg()}")
            pub_a += publish(base_mqtt, point_a, per_round, 1, args.publishers,
                             first_seq=r * per_round // (4 * args.publishers))
            for side in (("raw", "worker") if r % 2 == 0 else ("worker", "raw")):
                if side == "raw":
                    secs, cpu = drain_raw(base_mqtt, raw_id, per_round, args.receive_maximum)
                    raw_rates.append(per_round / secs)
                    raw_cpu += cpu
                    progress(f"(c) raw paho client: {per_round / secs:.0f} msg/s, CPU {cpu:.2f} s")
                else:
                    secs, stats = drain_worker(worker_settings(worker_a, point_a), per_round)
                    worker_rates.append(per_round / secs)
                    worker_cpu += stats["cpu_s"]
                    child_cpu += stats["child_cpu_s"]
                    batches_a += stats["batches"]
                    progress(f"(a) worker: {per_round / secs:.0f} msg/s; {stats}")

        progress(f"publishing {n_b} messages of {args.readings_per_message} readings")
        pub_b = publish(base_mqtt, point_b, n_b, args.readings_per_message, args.publishers)
        progress(f"published in {pub_b:.1f} s; load {loadavg()}")
        batched_s, stats_b = drain_worker(worker_settings(worker_b, point_b), n_b)
        readings = n_b * args.readings_per_message
        progress(f"(b) worker stored {readings} readings in {batched_s:.2f} s: {readings / batched_s:.0f}/s;"
                 f" {stats_b}")

        rows_a, distinct_a = count_rows(dsn, point_a)
        rows_b, distinct_b = count_rows(dsn, point_b)
        lost = (n_a - distinct_a) + (readings - distinct_b)
        duplicated = (rows_a - distinct_a) + (rows_b - distinct_b)
        copy_rate, copy_rows = copy_ceiling(dsn, point_b)
        progress(f"(d) COPY of {copy_rows} rows: {copy_rate:.0f} rows/s")
        msgs_per_s = statistics.median(worker_rates)
        raw_rate = statistics.median(raw_rates)
        ratios = [w / c for w, c in zip(worker_rates, raw_rates, strict=True)]
        result = {
            "msgs_per_s": round(msgs_per_s),
            "readings_per_s": round(readings / batched_s),
            "raw_client_msgs_per_s": round(raw_rate),
            "copy_rows_per_s": round(copy_rate),
            # Median over rounds of (worker / raw client) measured back to back in the same round.
            "ratio_vs_raw_client": round(statistics.median(ratios), 3),
            "ratio_of_medians": round(msgs_per_s / raw_rate, 3),
            "rounds": args.rounds,
            "msgs_per_s_rounds": [round(x) for x in worker_rates],
            "raw_client_msgs_per_s_rounds": [round(x) for x in raw_rates],
            "lost": lost,
            "duplicated": duplicated,
            "messages": n_a,
            "batched_messages": n_b,
            "readings_per_message": args.readings_per_message,
            "publish_msgs_per_s": round(n_a / pub_a),
            "batches_a": batches_a,
            "batches_b": stats_b["batches"],
            "batch_max": args.batch_max,
            "receive_maximum": args.receive_maximum,
            "writer": args.writer,
            "cpu_us_per_msg_raw_client": round(raw_cpu / n_a * 1e6, 1),
            "cpu_us_per_msg_worker_mqtt_process": round(worker_cpu / n_a * 1e6, 1),
            "cpu_us_per_msg_worker_writer_process": round(child_cpu / n_a * 1e6, 1),
            "loadavg_end": loadavg(),
            "cpus": os.cpu_count(),
        }
    finally:
        for client_id, _ in sessions:
            end_session(base_mqtt, client_id)
        if not args.keep_db:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
