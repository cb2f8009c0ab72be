"""WeCom (企业微信) group robot webhook.

Request: POST {webhook}?key=<robot key>, JSON, one of
    {"msgtype": "text", "text": {"content": "...", "mentioned_mobile_list": ["138..."]}}
    {"msgtype": "markdown", "markdown": {"content": "..."}}
text content at most 2048 bytes, markdown at most 4096 bytes (UTF-8); longer content is cut here
rather than refused there. Reply: HTTP 200 with {"errcode": 0, "errmsg": "ok"}; any other errcode
is a failure (e.g. 93000 invalid webhook URL, 45009 over the robot's limit of 20 messages a
minute). Markdown cannot @mention by phone, so text is the default for people who must react.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import httpx

from .base import HttpChannel, Notification, SendResult

TEXT_MAX_BYTES = 2048
MARKDOWN_MAX_BYTES = 4096


def cut_utf8(text: str, max_bytes: int) -> str:
    """Cut text to at most max_bytes of UTF-8 without splitting a character."""
    raw = text.encode()
    if len(raw) <= max_bytes:
        return text
    return raw[: max_bytes - 3].decode(errors="ignore") + "…"


class WeComRobotChannel(HttpChannel):
    """Posts to WeCom group robots; a notification's address is a robot name from `robots` or a webhook URL."""

    name = "wecom"

    def __init__(
        self, robots: Mapping[str, str] | None = None, *, msgtype: Literal["text", "markdown"] = "text",
        mention: bool = True, timeout_s: float = 5.0, client: httpx.Client | None = None,
    ) -> None:
        super().__init__(timeout_s=timeout_s, client=client)
        self.robots = dict(robots or {})
        self.msgtype = msgtype
        self.mention = mention

    def body(self, n: Notification) -> dict[str, Any]:
        """The JSON the robot expects."""
        if self.msgtype == "markdown" and n.markdown:
            return {"msgtype": "markdown", "markdown": {"content": cut_utf8(n.markdown, MARKDOWN_MAX_BYTES)}}
        text: dict[str, Any] = {"content": cut_utf8(n.text, TEXT_MAX_BYTES)}
        if self.mention and n.mobile:
            text["mentioned_mobile_list"] = [n.mobile]
        return {"msgtype": "text", "text": text}

    def send(self, notification: Notification) -> SendResult:
        url = self.robots.get(notification.address)
        if url is None and notification.address.startswith(("https://", "http://")):
            url = notification.address
        if url is None:
            return SendResult(False, self.name, error=f"unknown WeCom robot {notification.address!r}")
        resp, failed = self._request("POST", url, json_body=self.body(notification))
        if resp is None:
            return failed or SendResult(False, self.name, error="no response")
        reply = self._json_reply(resp)
        if resp.status_code != 200 or reply is None:
            return self._result(resp, False, f"HTTP {resp.status_code}")
        errcode = reply.get("errcode")
        if errcode != 0:
            return self._result(resp, False, f"errcode {errcode}: {reply.get('errmsg', '')}")
        return self._result(resp, True, None)
