"""Acknowledge a committed batch: all its PUBACKs in one socket write instead of one write each.

paho-mqtt 2.x has no public call for that: `Client.ack(mid, qos)` queues one 4-byte packet and wakes
the network thread per message, which measured about a fifth of the MQTT process's CPU per message.
`ack_many` queues the concatenated PUBACK packets through the same internal queue `ack` uses, and
falls back to `ack` per message if a paho release renames it.

MQTT 5 PUBACK without reason code or properties (success), 4 bytes: 0x40, remaining length 0x02,
packet identifier (2 bytes, big endian).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

import paho.mqtt.client as mqtt

PUBACK = 0x40
_PUBACK = struct.Struct("!BBH")


def puback_bytes(mids: Iterable[int]) -> bytes:
    """The wire bytes of one success PUBACK per packet identifier, back to back."""
    pack = _PUBACK.pack
    return b"".join([pack(PUBACK, 2, mid) for mid in mids])


def ack_many(client: mqtt.Client, qos1_mids: list[int]) -> None:
    """Send PUBACK for every QoS 1 message id, in order, as one queued write."""
    if not qos1_mids:
        return
    queue_packet = getattr(client, "_packet_queue", None)
    if queue_packet is None:
        for mid in qos1_mids:
            client.ack(mid, 1)
        return
    queue_packet(PUBACK, puback_bytes(qos1_mids), 0, 0)
