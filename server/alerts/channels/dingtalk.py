"""DingTalk (钉钉) custom robot webhook, with the signed-URL and keyword security settings.

Request: POST https://oapi.dingtalk.com/robot/send?access_token=<t>[&timestamp=<ms>&sign=<s>], JSON
    {"msgtype": "text", "text": {"content": "..."}, "at": {"atMobiles": ["138..."], "isAtAll": false}}
    {"msgtype": "markdown", "markdown": {"title": "...", "text": "..."}, "at": {...}}
Signing (加签): sign = urlencode(base64(HMAC-SHA256(key=secret, msg=f"{timestamp}\\n{secret}"))),
timestamp in milliseconds, accepted within one hour of DingTalk's clock. Keyword security (自定义关键词):
the message must contain one of the robot's keywords, so a configured keyword missing from the text is
prefixed. Reply: {"errcode": 0, "errmsg": "ok"}; otherwise a failure (310000 for a bad signature,
a stale timestamp or a missing keyword; 130101 sent too fast).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote_plus

import httpx

from .base import HttpChannel, Notification, SendResult


@dataclass(frozen=True, slots=True)
class DingTalkRobot:
    url: str  # https://oapi.dingtalk.com/robot/send?access_token=...
    secret: str | None = None  # the SEC... string when 加签 is on
    keywords: tuple[str, ...] = ()


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """The robot signature, not yet URL-encoded."""
    mac = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


def _now_ms() -> int:
    return int(time.time() * 1000)


class DingTalkRobotChannel(HttpChannel):
    """Posts to DingTalk robots; a notification's address is a robot name from `robots`."""

    name = "dingtalk"

    def __init__(
        self, robots: Mapping[str, DingTalkRobot], *, msgtype: Literal["text", "markdown"] = "text",
        now_ms: Callable[[], int] = _now_ms, timeout_s: float = 5.0, client: httpx.Client | None = None,
    ) -> None:
        super().__init__(timeout_s=timeout_s, client=client)
        self.robots = dict(robots)
        self.msgtype = msgtype
        self._now_ms = now_ms

    def signed_url(self, robot: DingTalkRobot) -> str:
        if not robot.secret:
            return robot.url
        ts = self._now_ms()
        sep = "&" if "?" in robot.url else "?"
        return f"{robot.url}{sep}timestamp={ts}&sign={quote_plus(dingtalk_sign(robot.secret, ts))}"

    def body(self, robot: DingTalkRobot, n: Notification) -> dict[str, Any]:
        at: dict[str, Any] = {"atMobiles": [n.mobile] if n.mobile else [], "isAtAll": False}
        if self.msgtype == "markdown" and n.markdown:
            text = n.markdown
            title = n.title
            if robot.keywords and not any(k in text or k in title for k in robot.keywords):
                title = f"{robot.keywords[0]} {title}"
                text = f"{robot.keywords[0]}\n{text}"
            if n.mobile:
                text += f"\n@{n.mobile}"  # DingTalk only highlights an @mention that is in the text
            return {"msgtype": "markdown", "markdown": {"title": title, "text": text}, "at": at}
        content = n.text
        if robot.keywords and not any(k in content for k in robot.keywords):
            content = f"{robot.keywords[0]} {content}"
        if n.mobile:
            content += f" @{n.mobile}"
        return {"msgtype": "text", "text": {"content": content}, "at": at}

    def send(self, notification: Notification) -> SendResult:
        robot = self.robots.get(notification.address)
        if robot is None:
            return SendResult(False, self.name, error=f"unknown DingTalk robot {notification.address!r}")
        resp, failed = self._request("POST", self.signed_url(robot), json_body=self.body(robot, notification))
        if resp is None:
            return failed or SendResult(False, self.name, error="no response")
        reply = self._json_reply(resp)
        if resp.status_code != 200 or reply is None:
            return self._result(resp, False, f"HTTP {resp.status_code}")
        errcode = reply.get("errcode")
        if errcode != 0:
            return self._result(resp, False, f"errcode {errcode}: {reply.get('errmsg', '')}")
        return self._result(resp, True, None)
