"""Drains the outbox to the broker with paho-mqtt 2.x (MQTT v5, QoS 1, persistent session, last will).

Threads: paho's network thread (loop_start) and one drain thread. paho calls its callbacks with its
own mutexes held (on_publish runs under _out_message_mutex), so callbacks only put events on a queue;
the drain thread alone owns the in-flight map (paho mid → outbox row id) and the outbox deletes.

Delivery rules, from paho 2.2's behaviour:
- A QoS 1 publish() while disconnected returns MQTT_ERR_NO_CONN but paho keeps the message and sends
  it after reconnecting; on reconnect paho also resends every unacknowledged message (DUP set).
  So a row handed to paho is never handed again in this process: resending it would duplicate it.
- paho calls on_connect before resending those messages. After a disconnect, no new row is handed
  over until every row already handed is acknowledged, so nothing overtakes a resend.
- A row is deleted only after its PUBACK. A PUBACK with a failure reason (e.g. not authorised) moves
  the row to the outbox's dead-letter table: logged for an operator, neither lost nor blocking.
  (Mosquitto 2.0.11 also closes the connection after such a PUBACK, so each refused row costs one
  reconnect; an ACL mistake shows as ERROR lines and a reconnect loop, not as silent loss.)
- After a crash the new process starts from the oldest row still in the outbox; the server drops
  duplicates by (point, device, seq, ts).
At most `inflight_window` rows are in paho's hands at once, so memory stays bounded during outages.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from importlib import metadata
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions
from pydantic import ValidationError

from firmware_bridge.contract import Channel as ContractChannel
from firmware_bridge.contract import (
    DeviceState,
    DeviceStatus,
    Message,
    PointChannel,
    TopicError,
    decode,
    device_topic,
    parse_topic,
    point_topic,
)

from .clock import Clock
from .config import AgentConfig
from .outbox import Outbox

log = logging.getLogger(__name__)

STATUS_INFLIGHT_SLACK = 8  # paho in-flight slots beyond the window, for retained status messages
IDLE_WAKE_SECONDS = 1.0
OFFLINE_PUBLISH_TIMEOUT_SECONDS = 3.0

Handler = Callable[[Message], None]


def _software() -> str:
    try:
        return f"yangyi-edge {metadata.version('yangyi')}"
    except metadata.PackageNotFoundError:
        return "yangyi-edge"


class Publisher:
    """Owns the MQTT connection of one agent; start() once, stop() once."""

    def __init__(self, cfg: AgentConfig, outbox: Outbox, clock: Clock) -> None:
        self._cfg = cfg
        self._outbox = outbox
        self._clock = clock
        self._point = cfg.point.id
        self._status_topic = device_topic(self._point, cfg.point.agent_device, ContractChannel.STATUS)
        self._window = cfg.mqtt.inflight_window
        self._handlers: dict[PointChannel, list[Handler]] = {c: [] for c in PointChannel}
        self._events: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._connected = threading.Event()
        self._drained = threading.Event()
        self._link_up = False  # written by paho's thread; read before each hand-over
        self._inflight: dict[int, int] = {}  # paho mid -> outbox row id; drain thread only
        self._resync = False
        self._flush_deadline = 0.0
        self._next_beat = 0.0
        self._thread = threading.Thread(target=self._run, name="outbox-drain", daemon=True)
        self.published = 0  # rows acknowledged by the broker, for logs and tests
        self.client = self._make_client()
        outbox.add_listener(self._wake.set)

    def _make_client(self) -> mqtt.Client:
        m = self._cfg.mqtt
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self._cfg.client_id, protocol=mqtt.MQTTv5
        )
        if m.username is not None:
            client.username_pw_set(m.username, m.secret())
        if m.tls:
            client.tls_set(ca_certs=str(m.ca_file) if m.ca_file else None)
        client.max_inflight_messages_set(self._window + STATUS_INFLIGHT_SLACK)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(m.reconnect_min_s, m.reconnect_max_s)
        will = self._status(DeviceState.OFFLINE, detail="connection lost (last will)")
        client.will_set(self._status_topic, will.to_bytes(), qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def _status(self, state: DeviceState, *, detail: str | None = None, depth: int | None = None) -> DeviceStatus:
        return DeviceStatus(
            point=self._point, device=self._cfg.point.agent_device, ts=self._clock.now(), state=state,
            clock_synced=self._clock.synced(), role="agent", heartbeat_s=self._cfg.heartbeat_s,
            software=_software(), detail=detail, outbox_depth=depth,
        )

    # --- public -----------------------------------------------------------------------------------

    def on(self, channel: PointChannel, handler: Handler) -> None:
        """Call `handler` with each valid message on the point's `channel` (config, roster, cmd)."""
        self._handlers[channel].append(handler)

    @property
    def alive(self) -> bool:
        """Whether the drain thread runs (False before start() and after stop())."""
        return self._thread.is_alive()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self) -> None:
        m = self._cfg.mqtt
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = m.session_expiry_s
        log.info("connecting to %s:%d as %s (client id %s)", m.host, m.port, m.username, self._cfg.client_id)
        self.client.connect_async(m.host, m.port, m.keepalive_s, clean_start=False, properties=props)
        self.client.loop_start()
        self._thread.start()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def stop(self, flush_timeout_s: float = 5.0) -> None:
        """Publish what the outbox holds (up to the timeout), say offline, disconnect."""
        self._flush_deadline = self._clock.monotonic() + flush_timeout_s
        self._stopping.set()
        self._wake.set()
        self._thread.join(flush_timeout_s + 5.0)
        left = self._outbox.depth()
        if left:
            log.info("stopping with %d events still in the outbox; they are sent on the next start", left)
        if self._connected.is_set():
            info = self.client.publish(
                self._status_topic, self._status(DeviceState.OFFLINE, detail="stopped", depth=left).to_bytes(),
                qos=1, retain=True,
            )
            try:
                info.wait_for_publish(OFFLINE_PUBLISH_TIMEOUT_SECONDS)
            except (RuntimeError, ValueError) as exc:
                log.info("offline status not confirmed: %s", exc)
        self.client.disconnect()
        self.client.loop_stop()

    # --- paho callbacks (network thread): enqueue only ------------------------------------------

    def _on_connect(self, client: mqtt.Client, _ud: Any, flags: Any, reason: ReasonCode, _props: Any) -> None:
        if reason.is_failure:
            log.warning("broker refused the connection: %s", reason)
            return
        # Retained config/roster only for a new subscription: with the session kept, the broker has
        # queued what changed meanwhile, and a second copy of a 20k-entry roster helps nobody.
        options = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
        client.subscribe([(point_topic(self._point, channel), options) for channel in PointChannel])
        self._link_up = True
        self._events.put(("up", bool(flags.session_present)))
        self._wake.set()

    def _on_connect_fail(self, _client: mqtt.Client, _ud: Any) -> None:
        log.info("cannot reach the broker; retrying")

    def _on_disconnect(self, _c: mqtt.Client, _ud: Any, _flags: Any, reason: ReasonCode, _props: Any) -> None:
        self._link_up = False
        self._events.put(("down", str(reason)))
        self._wake.set()

    def _on_publish(self, _c: mqtt.Client, _ud: Any, mid: int, reason: ReasonCode, _props: Any) -> None:
        self._events.put(("ack", mid, reason))
        self._wake.set()

    def _on_message(self, _c: mqtt.Client, _ud: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            parsed = parse_topic(msg.topic)
            if not isinstance(parsed.channel, PointChannel) or parsed.point_id != self._point:
                raise TopicError(f"not addressed to this point: {msg.topic}")
            message = decode(parsed.channel, bytes(msg.payload))
        except (TopicError, ValidationError, UnicodeDecodeError) as exc:
            log.warning("ignoring invalid message on %s: %s", msg.topic, exc)
            return
        for handler in self._handlers[parsed.channel]:
            try:
                handler(message)
            except Exception:
                log.exception("handler %r failed on %s", handler, msg.topic)

    # --- drain thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                now = self._clock.monotonic()
                self._wake.wait(max(0.0, min(IDLE_WAKE_SECONDS, self._next_beat - now)))
                self._wake.clear()
                self._handle_events()
                if self._stopping.is_set() and (
                    self._clock.monotonic() >= self._flush_deadline
                    or (not self._inflight and self._outbox.depth() == 0)
                ):
                    return
                self._fill()
                if self._connected.is_set() and self._clock.monotonic() >= self._next_beat:
                    self._publish_status()
        except Exception:
            log.exception("outbox drain stopped by an unexpected error; events stay in the outbox")
            raise

    def _handle_events(self) -> None:
        done: list[int] = []
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                break
            kind = event[0]
            if kind == "ack":
                _, mid, reason = event
                # paho allocates mids round-robin over 65535, so an ack still queued here cannot
                # belong to a newer message with the same mid.
                row_id = self._inflight.pop(mid, None)
                if row_id is None:
                    continue  # a status message
                if reason.is_failure:
                    log.error("broker refused outbox row %d (%s); moved to dead letters", row_id, reason)
                    self._outbox.bury(row_id, str(reason))
                else:
                    done.append(row_id)
            elif kind == "up":
                log.info("connected (session present: %s); %d rows in flight", event[1], len(self._inflight))
                self._connected.set()
                self._publish_status()
            elif kind == "down":
                if self._connected.is_set():
                    log.info("disconnected (%s); %d rows in flight, resent by paho", event[1], len(self._inflight))
                self._connected.clear()
                self._resync = bool(self._inflight)
        if done:
            self._outbox.delete(done)
            self.published += len(done)

    def _fill(self) -> None:
        if not self._connected.is_set() or not self._link_up:
            return
        if self._resync:
            if self._inflight:
                return
            self._resync = False
        free = self._window - len(self._inflight)
        if free <= 0:
            return
        for row in self._outbox.peek(free, exclude=self._inflight.values()):
            if not self._link_up:
                # The link dropped under us: what paho already holds is resent after reconnect.
                self._resync = True
                return
            info = self.client.publish(row.topic, row.payload, qos=1)
            if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
                log.warning("paho's queue is full; retrying row %d later", row.id)
                return
            self._inflight[info.mid] = row.id  # NO_CONN too: paho keeps it and sends it on reconnect
            if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
                self._resync = True
                return

    def _publish_status(self) -> None:
        self._next_beat = self._clock.monotonic() + self._cfg.heartbeat_s
        status = self._status(DeviceState.ONLINE, depth=self._outbox.depth())
        self.client.publish(self._status_topic, status.to_bytes(), qos=1, retain=True)
