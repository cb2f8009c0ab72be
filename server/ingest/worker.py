"""`yangyi-ingest`: the MQTT subscriber that feeds the batch writer and acks after each commit."""

from __future__ import annotations

import argparse
import gc
import logging
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from firmware_bridge.contract import Channel, device_filter
from server.errors import ConfigError
from server.process import stop_on_signals
from server.settings import Settings, load_settings

from .acks import ack_many
from .batch import GEN, MID, QOS, Inbound
from .process import WriterProcess
from .writer import BatchWriter

log = logging.getLogger(__name__)

RECONNECT_MIN_SECONDS = 1
RECONNECT_MAX_SECONDS = 30
GC_GEN0_THRESHOLD = 100_000
INGEST_CHANNELS = (Channel.DINER, Channel.TELEMETRY, Channel.SAFETY, Channel.COUNT, Channel.STATUS)


def subscription_filters(share_group: str | None, point: str = "+") -> list[str]:
    """The contract's device topics, as shared subscriptions when a group is given."""
    filters = [device_filter(ch, point) for ch in INGEST_CHANNELS]
    if share_group:
        filters = [f"$share/{share_group}/{f}" for f in filters]
    return filters


def tune_gc() -> None:
    """Make cyclic GC rare: a batch keeps thousands of acyclic objects alive, and each
    generation-0 pass over them costs the hot path more than it frees."""
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, 50, 100)


class IngestWorker:
    """One MQTT session (persistent, manual ack) feeding one BatchWriter."""

    def __init__(self, settings: Settings, client_id: str | None = None, share_group: str | None = None) -> None:
        self.settings = settings
        m = settings.mqtt
        self.client_id = client_id or m.client_id
        self.share_group = share_group if share_group is not None else m.share_group
        writer_cls = WriterProcess if settings.ingest.writer == "process" else BatchWriter
        self.writer: BatchWriter | WriterProcess = writer_cls(settings.db.resolved_dsn(), settings.ingest,
                                                              self._ack)
        self.connected = threading.Event()
        self.subscribed = threading.Event()  # set when the broker acknowledged the subscriptions
        self._gen = 0  # bumped per connection: acks are only sent on the connection a message came on
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        client.username_pw_set(m.username, m.resolved_password())
        client.reconnect_delay_set(RECONNECT_MIN_SECONDS, RECONNECT_MAX_SECONDS)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        self.client = client

    def start(self) -> None:
        """Start the writer (if not yet), then connect; messages flow from the broker from then on."""
        m = self.settings.mqtt
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = m.session_expiry_s
        props.ReceiveMaximum = m.receive_maximum
        self.writer.start()
        self.client.connect_async(m.host, m.port, keepalive=m.keepalive_s, clean_start=False, properties=props)
        self.client.loop_start()

    def stop(self) -> None:
        """Stop taking messages, let the writer commit and ack what it holds, then disconnect."""
        self.writer.stop()
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags,
                    reason: ReasonCode, properties: Properties | None) -> None:
        if reason.is_failure:
            log.warning("broker refused the connection: %s", reason)
            return
        self._gen += 1
        log.info("connected to %s:%s as %s (session present: %s)", self.settings.mqtt.host,
                 self.settings.mqtt.port, self.client_id, flags.session_present)
        # retainHandling=1: retained statuses only when the subscription is new, not on every reconnect.
        options = SubscribeOptions(qos=1, retainHandling=1)
        filters = subscription_filters(self.share_group, self.settings.mqtt.subscribe_point)
        client.subscribe([(f, options) for f in filters])
        self.connected.set()

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: list[ReasonCode],
                      properties: Properties | None) -> None:
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            log.error("broker refused subscriptions: %s", refused)
            return
        log.info("subscribed to %s", ", ".join(subscription_filters(self.share_group,
                                                                    self.settings.mqtt.subscribe_point)))
        self.subscribed.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: mqtt.DisconnectFlags,
                       reason: ReasonCode, properties: Properties | None) -> None:
        self.connected.clear()
        self.subscribed.clear()
        log.info("disconnected from the broker: %s", reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = repr(msg._topic)  # keeps the message as a dead letter instead of losing it
        # paho types payload as bytes | bytearray; it is always bytes sliced from the packet.
        payload: bytes = msg.payload  # type: ignore[assignment]
        self.writer.queue.put((topic, payload, msg.mid, msg.qos, msg.retain, self._gen))

    def _ack(self, messages: list[Inbound]) -> None:
        gen = self._gen
        # A message from an earlier connection is redelivered by the broker; its receipt dedupes it.
        mids = [m[MID] for m in messages if m[QOS] == 1 and m[GEN] == gen]
        ack_many(self.client, mids)
        for m in messages:
            if m[QOS] == 2 and m[GEN] == gen:  # not subscribed at QoS 2; kept correct all the same
                self.client.ack(m[MID], 2)


def main(argv: list[str] | None = None) -> int:
    """Console script `yangyi-ingest`."""
    parser = argparse.ArgumentParser(prog="yangyi-ingest", description=__doc__)
    parser.add_argument("--client-id", help="MQTT client id (stable: it names the persistent session)")
    parser.add_argument("--share-group", help="subscribe as $share/<group>/... to split with other workers")
    parser.add_argument("--validate-config", action="store_true", help="check the settings and exit")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings()
        worker = IngestWorker(settings, client_id=args.client_id, share_group=args.share_group)
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    if args.validate_config:
        print("settings OK")
        return 0
    tune_gc()
    done = stop_on_signals()
    worker.start()
    while not done.wait(1.0):
        if not worker.writer.alive:
            log.error("the writer died; exiting so the supervisor restarts the worker")
            worker.client.loop_stop()
            return worker.writer.exitcode or 1
    worker.stop()
    log.info("stopped; %s", worker.writer.stats.snapshot())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
