"""`yangyi-alerts`: the alert worker. MQTT v5 persistent session (shared group) → rules → alerts in the
database → escalation through the channels; publishes ack_alarm commands written by the API.

Threads: paho's network thread queues messages (safety and status ahead of the rest); the engine
thread turns batches into stored alerts and acknowledges the messages only after the commit; the
notifier thread publishes pending edge commands and runs escalation (only in the worker holding the
escalation advisory lock, so several workers never double-send); the listener thread takes
LISTEN/NOTIFY from the API and other workers and wakes the others.

Scale-out note: a shared subscription spreads messages over workers without regard to the point, so
the time-based server rules (durations, trends) see only part of a point's readings in each worker;
edge safety events, liveness and the lifecycle stay right (versions and the one-active index guard
the rows). With EMQX use its `hash_topic` shared-subscription strategy to keep a device on one worker.
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions
from pydantic import ValidationError

from firmware_bridge.contract import Channel, PointChannel, TopicError, decode, device_filter, parse_topic, point_topic
from server.errors import ConfigError
from server.ingest.acks import ack_many
from server.process import stop_on_signals
from server.settings import Settings, load_settings

from . import repository as repo
from .errors import AlertError
from .service import AlertEngine, Escalator, Inbound, build_channels
from .settings import AlertConfig, AlertProcessSettings, load_alert_config, make_links

log = logging.getLogger(__name__)

# Two MQTT sessions: safety and status on their own connection (and network thread), so a safety event
# never queues behind telemetry in the broker's in-flight window or in one TCP stream.
SAFETY_LANE = (Channel.SAFETY, Channel.STATUS)
BULK_LANE = (Channel.TELEMETRY, Channel.COUNT, Channel.DINER)
ALERT_CHANNELS = SAFETY_LANE + BULK_LANE
BATCH_MAX = 2000
# Small telemetry batches keep a safety event that arrives meanwhile from waiting long.
BULK_BATCH_MAX = 100
RECONNECT_MIN_SECONDS = 1
RECONNECT_MAX_SECONDS = 30
DB_RETRY_SECONDS = 1.0
ESCALATION_LOCK_KEY = 0x59414E47_414C5254  # "YANGALRT"
PUBLISH_TIMEOUT_SECONDS = 5.0
SLOW_SECONDS = 0.5  # a step this slow is logged: safety events wait behind it

# topic, payload, mid, qos, lane (0 safety, 1 bulk), connection generation of that lane, received
Raw = tuple[str, bytes, int, int, int, int, datetime]


def subscription_filters(share_group: str, point: str = "+",
                         channels: tuple[Channel, ...] = ALERT_CHANNELS) -> list[str]:
    filters = [device_filter(ch, point) for ch in channels]
    return [f"$share/{share_group}/{f}" for f in filters] if share_group else filters


def _utcnow() -> datetime:
    return datetime.now(UTC)


class _Inbox:
    """Two lanes: safety and status are taken before telemetry, counts and taps."""

    def __init__(self) -> None:
        self._urgent: deque[Raw] = deque()
        self._bulk: deque[Raw] = deque()
        self._cond = threading.Condition()

    def put(self, item: Raw, urgent: bool) -> None:
        with self._cond:
            (self._urgent if urgent else self._bulk).append(item)
            self._cond.notify()

    def take(self, timeout: float, limit: int = BATCH_MAX) -> list[Raw]:
        with self._cond:
            if not self._urgent and not self._bulk:
                self._cond.wait(timeout)
            out: list[Raw] = []
            while self._urgent and len(out) < limit:
                out.append(self._urgent.popleft())
            if out:
                return out  # a safety batch alone: no telemetry ahead of it or in its transaction
            while self._bulk and len(out) < BULK_BATCH_MAX:
                out.append(self._bulk.popleft())
            return out

    def __len__(self) -> int:
        return len(self._urgent) + len(self._bulk)


class AlertWorker:
    """The whole worker in one object (the console script and the tests run it the same way)."""

    def __init__(
        self, settings: Settings, process: AlertProcessSettings, config: AlertConfig,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.settings = settings
        self.process = process
        self.config = config
        self.clock = clock
        self.dsn = settings.db.resolved_dsn()
        self.point = process.subscribe_point
        self.engine = AlertEngine(config, self.point)
        self.escalator = Escalator(config.escalation, build_channels(config, self.dsn, clock), make_links(config),
                                   config.timezone, self.point)
        self.inbox = _Inbox()
        self.stopping = threading.Event()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.loaded = threading.Event()
        self.leader = threading.Event()
        self._wake_notifier = threading.Event()
        self._refresh = threading.Event()
        self._threads: list[threading.Thread] = []
        self.stats = {"messages": 0, "invalid": 0, "alerts_written": 0, "attempts": 0, "commands": 0}
        self._gens = [0, 0]
        self._lane_subscribed = [threading.Event(), threading.Event()]
        self.clients = [self._make_client(0, f"{process.client_id}-safety"[:64], SAFETY_LANE),
                        self._make_client(1, process.client_id, BULK_LANE)]
        self.client = self.clients[0]  # publishes the edge commands

    def _make_client(self, lane: int, client_id: str, channels: tuple[Channel, ...]) -> mqtt.Client:
        m = self.settings.mqtt
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                             manual_ack=True, userdata=(lane, channels))
        client.username_pw_set(m.username, m.resolved_password())
        client.reconnect_delay_set(RECONNECT_MIN_SECONDS, RECONNECT_MAX_SECONDS)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    # -- life ---------------------------------------------------------------------------------------

    def start(self) -> None:
        """Rebuild from the database, then connect; the broker's queued messages follow."""
        for name, target in (("alerts-engine", self._engine_loop), ("alerts-notifier", self._notifier_loop),
                             ("alerts-listener", self._listener_loop)):
            t = threading.Thread(target=target, name=name, daemon=True)
            self._threads.append(t)
            t.start()

    def _connect_mqtt(self) -> None:
        m = self.settings.mqtt
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = m.session_expiry_s
        props.ReceiveMaximum = m.receive_maximum
        for client in self.clients:
            client.connect_async(m.host, m.port, keepalive=m.keepalive_s, clean_start=False, properties=props)
            client.loop_start()

    def stop(self) -> None:
        self.stopping.set()
        self._wake_notifier.set()
        with self.inbox._cond:
            self.inbox._cond.notify_all()
        for t in self._threads:
            t.join(timeout=10)
        for client in self.clients:
            client.disconnect()
            client.loop_stop()

    @property
    def alive(self) -> bool:
        return all(t.is_alive() for t in self._threads)

    # -- MQTT callbacks -----------------------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags, reason: ReasonCode,
                    properties: Properties | None) -> None:
        if reason.is_failure:
            log.warning("broker refused the connection: %s", reason)
            return
        lane, channels = userdata
        self._gens[lane] += 1
        log.info("connected to %s:%s as %s (session present: %s)", self.settings.mqtt.host,
                 self.settings.mqtt.port, client._client_id.decode(), flags.session_present)
        options = SubscribeOptions(qos=1, retainHandling=1)
        client.subscribe([(f, options) for f in subscription_filters(self.process.share_group, self.point, channels)])
        if lane == 0:
            self.connected.set()

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: list[ReasonCode],
                      properties: Properties | None) -> None:
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            log.error("broker refused subscriptions: %s", refused)
            return
        lane, channels = userdata
        log.info("subscribed to %s", ", ".join(subscription_filters(self.process.share_group, self.point, channels)))
        self._lane_subscribed[lane].set()
        if all(e.is_set() for e in self._lane_subscribed):
            self.subscribed.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: mqtt.DisconnectFlags, reason: ReasonCode,
                       properties: Properties | None) -> None:
        lane, _ = userdata
        if lane == 0:
            self.connected.clear()
        self._lane_subscribed[lane].clear()
        self.subscribed.clear()
        log.info("disconnected from the broker: %s", reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = ""
        payload: bytes = msg.payload  # type: ignore[assignment]
        lane = userdata[0]
        self.inbox.put((topic, payload, msg.mid, msg.qos, lane, self._gens[lane], self.clock()), lane == 0)

    # -- engine -------------------------------------------------------------------------------------

    def _decode(self, raw: list[Raw]) -> list[Inbound]:
        out: list[Inbound] = []
        for topic, payload, _, _, _, _, received in raw:
            try:
                parsed = parse_topic(topic)
                if not isinstance(parsed.channel, Channel):
                    raise TopicError(f"not a device topic: {topic}")
                message = decode(parsed.channel, payload)
            except (TopicError, ValidationError, ValueError) as exc:
                self.stats["invalid"] += 1
                log.debug("ignoring %s: %s", topic, exc)
                continue
            # An agent may only speak for its own point and device: the topic is what the ACL checked.
            point, device = getattr(message, "point", None), getattr(message, "device", None)
            if point != parsed.point_id or device != parsed.device_id:
                self.stats["invalid"] += 1
                log.warning("ignoring %s: payload names %s/%s", topic, point, device)
                continue
            out.append(Inbound(parsed.channel, message, received))
        return out

    def _ack(self, raw: list[Raw]) -> None:
        for lane, client in enumerate(self.clients):
            gen = self._gens[lane]
            ack_many(client, [r[2] for r in raw if r[3] == 1 and r[4] == lane and r[5] == gen])

    def _open_db(self) -> psycopg.Connection[Any]:
        while not self.stopping.is_set():
            try:
                return psycopg.connect(self.dsn, connect_timeout=5)
            except psycopg.Error as exc:
                log.warning("database not reachable (%s); retrying", exc)
                self.stopping.wait(DB_RETRY_SECONDS)
        raise AlertError("stopping")

    def _engine_loop(self) -> None:
        conn = self._open_db()
        n = self.engine.load(conn, self.clock())
        log.info("rebuilt from the database: %d unresolved alerts", n)
        self.loaded.set()
        self._connect_mqtt()
        next_tick = time.monotonic()
        pending: list[Raw] = []
        observations: list[Any] = []
        while not self.stopping.is_set():
            try:
                if not pending:
                    pending = self.inbox.take(max(0.0, min(self.process.tick_s, next_tick - time.monotonic())))
                    t0 = time.monotonic()
                    observations = self.engine.observations(self._decode(pending)) if pending else []
                    if time.monotonic() - t0 > SLOW_SECONDS:
                        log.warning("rules took %.2f s for %d messages (%d waiting)", time.monotonic() - t0,
                                    len(pending), len(self.inbox))
                if pending:
                    t0 = time.monotonic()
                    saved = self.engine.handle(conn, observations)
                    if time.monotonic() - t0 > SLOW_SECONDS:
                        log.warning("storing %d alert changes took %.2f s", len(saved), time.monotonic() - t0)
                    self._ack(pending)
                    self.stats["messages"] += len(pending)
                    self.stats["alerts_written"] += len(saved)
                    pending, observations = [], []
                    if any(s.loud for s in saved):
                        self._wake_notifier.set()
                if self._refresh.is_set():
                    self._refresh.clear()
                    self.engine.refresh(conn)
                if time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + self.process.tick_s
                    t0 = time.monotonic()
                    saved = self.engine.tick(conn, self.clock())
                    self.engine.refresh(conn)
                    if time.monotonic() - t0 > SLOW_SECONDS:
                        log.warning("tick took %.2f s", time.monotonic() - t0)
                    if any(s.loud for s in saved):
                        self._wake_notifier.set()
            except psycopg.Error as exc:
                # The batch stays unacked and its observations are kept; the book is rebuilt from storage.
                log.warning("database error (%s); reconnecting and rebuilding", exc)
                conn.close()
                self.stopping.wait(DB_RETRY_SECONDS)
                if self.stopping.is_set():
                    break
                conn = self._open_db()
                self.engine.load(conn, self.clock())
        conn.close()

    # -- notifier -----------------------------------------------------------------------------------

    def _publish_commands(self, conn: psycopg.Connection[Any]) -> None:
        for command_id, cmd_id, point, payload in repo.pending_commands(conn, self.point):
            info = self.client.publish(point_topic(point, PointChannel.CMD), payload, qos=1)
            try:
                info.wait_for_publish(PUBLISH_TIMEOUT_SECONDS)
            except (RuntimeError, ValueError) as exc:
                repo.mark_command(conn, command_id, None, str(exc))
                continue
            if info.is_published():
                repo.mark_command(conn, command_id, self.clock(), None)
                self.stats["commands"] += 1
                log.info("sent %s to %s", cmd_id, point)
            else:
                repo.mark_command(conn, command_id, None, "no PUBACK in time")
        conn.commit()

    def _notifier_loop(self) -> None:
        self.loaded.wait()
        conn: psycopg.Connection[Any] | None = None
        while not self.stopping.is_set():
            self._wake_notifier.wait(self.process.tick_s)
            self._wake_notifier.clear()
            if self.stopping.is_set():
                break
            try:
                if conn is None or conn.closed:
                    conn = self._open_db()
                    self.leader.clear()
                if not self.leader.is_set():
                    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (ESCALATION_LOCK_KEY,)).fetchone()
                    conn.commit()
                    if row and row[0]:
                        log.info("this worker now runs escalation and edge commands")
                        self.leader.set()
                    else:
                        continue
                # People first: a new alert's notification does not wait for the command round trips.
                self.stats["attempts"] += len(self.escalator.run(conn, self.clock()))
                if self.connected.is_set():
                    self._publish_commands(conn)
            except psycopg.Error as exc:
                log.warning("notifier database error (%s); reconnecting", exc)
                if conn is not None:
                    conn.close()
                conn = None
                self.leader.clear()
                self.stopping.wait(DB_RETRY_SECONDS)
        if conn is not None:
            conn.close()

    # -- listener -----------------------------------------------------------------------------------

    def _listener_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {repo.NOTIFY_CHANNEL}")
                    self._wake_notifier.set()  # catch up with whatever came while we were not listening
                    while not self.stopping.is_set():
                        for note in conn.notifies(timeout=1.0):
                            self._on_notify(note.payload)
            except psycopg.Error as exc:
                log.warning("listener database error (%s); reconnecting", exc)
                self.stopping.wait(DB_RETRY_SECONDS)

    def _on_notify(self, payload: str) -> None:
        try:
            body = json.loads(payload)
        except ValueError:
            return
        kind = body.get("type")
        if kind == "command" or (kind == "alert" and "opened" in body.get("events", ())):
            self._wake_notifier.set()
        if kind == "alert":
            self._refresh.set()


def main(argv: list[str] | None = None) -> int:
    """Console script `yangyi-alerts`."""
    parser = argparse.ArgumentParser(prog="yangyi-alerts", description=__doc__.split("\n")[0])
    parser.add_argument("--config", help="alert policy YAML (default: YANGYI_ALERTS_CONFIG_FILE)")
    parser.add_argument("--client-id", help="MQTT client id (names the persistent session)")
    parser.add_argument("--validate-config", action="store_true", help="check the settings and exit")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings()
        process = AlertProcessSettings()
        if args.client_id:
            process = process.model_copy(update={"client_id": args.client_id})
        from pathlib import Path

        config = load_alert_config(Path(args.config) if args.config else process.config_file)
        worker = AlertWorker(settings, process, config)
    except (ConfigError, AlertError, ValidationError) as exc:
        log.error("%s", exc)
        return 2
    if args.validate_config:
        print("settings OK")
        return 0
    done = stop_on_signals()
    worker.start()
    while not done.wait(1.0):
        if not worker.alive:
            log.error("a worker thread died; exiting so the supervisor restarts the worker")
            for client in worker.clients:
                client.loop_stop()
            return 1
    worker.stop()
    log.info("stopped; %s", worker.stats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
