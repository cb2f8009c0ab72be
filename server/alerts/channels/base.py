"""The channel interface: send(notification) -> SendResult; provider errors become results, never raises."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

log = logging.getLogger(__name__)

RESPONSE_MAX_CHARS = 2000
TIMEOUT_SECONDS = 5.0
CONNECT_TIMEOUT_SECONDS = 3.0


@dataclass(frozen=True, slots=True)
class Notification:
    """Everything a channel needs to deliver one message to one person (or group)."""

    alert_id: str
    person_id: str
    address: str  # channel-specific: robot name, URL, phone number, user id
    title: str
    text: str  # plain text, Chinese first, with the acknowledge link
    markdown: str | None = None
    link: str | None = None
    severity: str = "warning"
    hazard: str = "other"
    mobile: str | None = None  # to @mention the person in a group robot message
    params: Mapping[str, str] = field(default_factory=dict)  # SMS template parameters


@dataclass(frozen=True, slots=True)
class SendResult:
    """What the provider said: ok, its HTTP status and reply (truncated), or the error."""

    ok: bool
    channel: str
    status: int | None = None
    response: str | None = None
    error: str | None = None
    elapsed_ms: float = 0.0


class Channel(Protocol):
    name: str

    def send(self, notification: Notification) -> SendResult:
        """Deliver one notification; report failure in the result, do not raise."""
        ...


def send_safely(channel: Channel, notification: Notification) -> SendResult:
    """Call a plug-in; an exception from a faulty plug-in becomes a failed result (logged, not fatal)."""
    try:
        return channel.send(notification)
    except Exception as exc:
        log.exception("channel %s raised while sending alert %s", channel.name, notification.alert_id)
        return SendResult(False, channel.name, error=f"{type(exc).__name__}: {exc}")


class HttpChannel:
    """Base for HTTP providers: one httpx client with timeouts; transport errors become results."""

    name = "http"

    def __init__(self, *, timeout_s: float = TIMEOUT_SECONDS, client: httpx.Client | None = None) -> None:
        self._client = client or httpx.Client(
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, CONNECT_TIMEOUT_SECONDS)),
            headers={"User-Agent": "yangyi-alerts/1"},
        )

    def close(self) -> None:
        self._client.close()

    def _request(
        self, method: str, url: str, *, json_body: Any = None, content: bytes | None = None,
        data: Mapping[str, str] | None = None, headers: Mapping[str, str] | None = None,
    ) -> tuple[httpx.Response | None, SendResult | None]:
        """Send; on a transport failure return (None, failed result)."""
        start = time.monotonic()
        try:
            resp = self._client.request(method, url, json=json_body, content=content, data=data, headers=headers)
        except httpx.HTTPError as exc:
            ms = (time.monotonic() - start) * 1000
            return None, SendResult(False, self.name, error=f"{type(exc).__name__}: {exc}", elapsed_ms=ms)
        return resp, None

    def _result(self, resp: httpx.Response, ok: bool, error: str | None) -> SendResult:
        ms = resp.elapsed.total_seconds() * 1000
        return SendResult(ok, self.name, resp.status_code, resp.text[:RESPONSE_MAX_CHARS], error, ms)

    def _json_reply(self, resp: httpx.Response) -> dict[str, Any] | None:
        try:
            body = resp.json()
        except ValueError:
            return None
        return body if isinstance(body, dict) else None
