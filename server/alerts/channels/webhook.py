"""A generic webhook signed with HMAC-SHA256, for county systems that want alerts pushed to them.

Request: POST <url>, Content-Type application/json, body (UTF-8 JSON):
    {"v": 1, "type": "alert.notification", "delivery_id", "alert_id", "person_id", "title", "text",
     "link", "severity", "hazard"}
Headers:
    X-Yangyi-Timestamp: Unix seconds when signed
    X-Yangyi-Signature: "v1=" + hex(HMAC-SHA256(secret, f"{timestamp}.".encode() + raw body))
    X-Yangyi-Key-Id: which secret signed (for rotation), when configured
    X-Yangyi-Delivery: a unique id per send, so a receiver can drop a retried duplicate
A receiver recomputes the signature over the raw body, compares in constant time and rejects
timestamps more than a few minutes off (`verify_signature`). Any 2xx is success.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable

import httpx

from .base import HttpChannel, Notification, SendResult

SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE_SECONDS = 300


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The X-Yangyi-Signature header value."""
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={mac}"


def verify_signature(
    secret: bytes, timestamp: str, body: bytes, signature: str, now: float,
    tolerance_s: float = DEFAULT_TOLERANCE_SECONDS,
) -> bool:
    """Check a received webhook: a fresh timestamp and a matching signature (constant-time)."""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs(now - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, ts, body), signature)


class SignedWebhookChannel(HttpChannel):
    """POSTs a signed JSON notification to the address (a URL)."""

    name = "webhook"

    def __init__(
        self, secret: bytes, *, key_id: str | None = None, now: Callable[[], float] = time.time,
        timeout_s: float = 5.0, client: httpx.Client | None = None,
    ) -> None:
        super().__init__(timeout_s=timeout_s, client=client)
        if len(secret) < 16:
            raise ValueError("a webhook secret needs at least 16 bytes")
        self._secret = secret
        self.key_id = key_id
        self._now = now

    def payload(self, n: Notification, delivery_id: str) -> bytes:
        return json.dumps({
            "v": 1, "type": "alert.notification", "delivery_id": delivery_id, "alert_id": n.alert_id,
            "person_id": n.person_id, "title": n.title, "text": n.text, "link": n.link,
            "severity": n.severity, "hazard": n.hazard,
        }, ensure_ascii=False, separators=(",", ":")).encode()

    def send(self, notification: Notification) -> SendResult:
        delivery = uuid.uuid4().hex
        body = self.payload(notification, delivery)
        ts = int(self._now())
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "X-Yangyi-Timestamp": str(ts),
            "X-Yangyi-Signature": sign(self._secret, ts, body),
            "X-Yangyi-Delivery": delivery,
        }
        if self.key_id:
            headers["X-Yangyi-Key-Id"] = self.key_id
        resp, failed = self._request("POST", notification.address, content=body, headers=headers)
        if resp is None:
            return failed or SendResult(False, self.name, error="no response")
        ok = 200 <= resp.status_code < 300
        return self._result(resp, ok, None if ok else f"HTTP {resp.status_code}")
