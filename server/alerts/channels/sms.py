"""SMS through a provider interface, with one adapter shaped after Aliyun's SendSms (dysmsapi 2017-05-25).

The channel maps a notification to a template code and its parameters (operators accept only
pre-approved templates, e.g. "【养怡】${point}发生${kind}，请立即处理：${link}"); the provider sends.

Aliyun SendSms, RPC style with signature version 1.0 as its documentation describes:
- parameters: Action=SendSms, Version=2017-05-25, RegionId, PhoneNumbers, SignName, TemplateCode,
  TemplateParam (a JSON object as a string), OutId; common ones Format=JSON, AccessKeyId,
  SignatureMethod=HMAC-SHA1, SignatureVersion=1.0, SignatureNonce (unique), Timestamp (UTC,
  yyyy-MM-ddTHH:mm:ssZ).
- percent-encoding per RFC 3986: A–Z a–z 0–9 - _ . ~ stay, everything else %XY of its UTF-8
  bytes (a space is %20, not +).
- canonical query: encoded name=encoded value pairs sorted by name, joined with &;
  StringToSign = METHOD + "&" + enc("/") + "&" + enc(canonical query);
  Signature = base64(HMAC-SHA1(key=AccessKeySecret + "&", StringToSign)).
- sent here as a POST form. Reply JSON {"Code": "OK", "Message": "OK", "BizId", "RequestId"};
  any other Code is a failure (isv.BUSINESS_LIMIT_CONTROL: too many to one number,
  isv.MOBILE_NUMBER_ILLEGAL, SignatureDoesNotMatch, ...), sometimes with HTTP 400.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import quote

import httpx

from .base import HttpChannel, Notification, SendResult

ALIYUN_ENDPOINT = "https://dysmsapi.aliyuncs.com/"


class SmsProvider(Protocol):
    name: str

    def send_sms(
        self, phone: str, template_code: str, params: Mapping[str, str], out_id: str | None = None,
    ) -> SendResult:
        """Send one templated SMS; report failure in the result, do not raise."""
        ...


class SmsChannel:
    """Alerts as templated SMS; the notification's address is the phone number."""

    name = "sms"

    def __init__(
        self, provider: SmsProvider, template_code: str,
        param_names: Sequence[str] = ("kind", "point", "time", "link"), max_param_chars: int = 35,
    ) -> None:
        self.provider = provider
        self.template_code = template_code
        self.param_names = tuple(param_names)
        # Operators cap each template variable's length (Aliyun: 35 characters for most).
        self.max_param_chars = max_param_chars

    def params(self, n: Notification) -> dict[str, str]:
        return {k: n.params.get(k, "")[: self.max_param_chars] for k in self.param_names}

    def send(self, notification: Notification) -> SendResult:
        result = self.provider.send_sms(
            notification.address, self.template_code, self.params(notification), out_id=notification.alert_id[:64],
        )
        return SendResult(result.ok, self.name, result.status, result.response, result.error, result.elapsed_ms)


def percent_encode(value: str) -> str:
    """RFC 3986 encoding as Aliyun's signature wants it."""
    return quote(value, safe="")


def aliyun_string_to_sign(method: str, params: Mapping[str, str]) -> str:
    canonical = "&".join(
        f"{percent_encode(k)}={percent_encode(v)}" for k, v in sorted(params.items()) if k != "Signature"
    )
    return f"{method}&{percent_encode('/')}&{percent_encode(canonical)}"


def aliyun_signature(secret: str, method: str, params: Mapping[str, str]) -> str:
    """Signature version 1.0 (HMAC-SHA1) over the parameters, as Aliyun's RPC APIs define it."""
    sts = aliyun_string_to_sign(method, params)
    return base64.b64encode(hmac.new(f"{secret}&".encode(), sts.encode(), hashlib.sha1).digest()).decode()


def _utcnow() -> datetime:
    return datetime.now(UTC)


class AliyunSms(HttpChannel):
    """Aliyun SMS SendSms adapter; `endpoint` points at a local stand-in in tests."""

    name = "aliyun_sms"

    def __init__(
        self, access_key_id: str, access_key_secret: str, sign_name: str, *, endpoint: str = ALIYUN_ENDPOINT,
        region: str = "cn-hangzhou", now: Callable[[], datetime] = _utcnow,
        nonce: Callable[[], str] = lambda: uuid.uuid4().hex, timeout_s: float = 5.0,
        client: httpx.Client | None = None,
    ) -> None:
        super().__init__(timeout_s=timeout_s, client=client)
        self.access_key_id = access_key_id
        self._secret = access_key_secret
        self.sign_name = sign_name
        self.endpoint = endpoint
        self.region = region
        self._now = now
        self._nonce = nonce

    def signed_params(
        self, phone: str, template_code: str, params: Mapping[str, str], out_id: str | None = None,
        method: str = "POST",
    ) -> dict[str, str]:
        """All request parameters including Signature."""
        p = {
            "AccessKeyId": self.access_key_id, "Action": "SendSms", "Format": "JSON",
            "PhoneNumbers": phone, "RegionId": self.region, "SignName": self.sign_name,
            "SignatureMethod": "HMAC-SHA1", "SignatureNonce": self._nonce(), "SignatureVersion": "1.0",
            "TemplateCode": template_code,
            "TemplateParam": json.dumps(dict(params), ensure_ascii=False, separators=(",", ":")),
            "Timestamp": self._now().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "Version": "2017-05-25",
        }
        if out_id:
            p["OutId"] = out_id
        p["Signature"] = aliyun_signature(self._secret, method, p)
        return p

    def send_sms(
        self, phone: str, template_code: str, params: Mapping[str, str], out_id: str | None = None,
    ) -> SendResult:
        form = self.signed_params(phone, template_code, params, out_id, "POST")
        # Encode the form ourselves so the body uses the same RFC 3986 encoding that was signed.
        body = "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in form.items()).encode()
        resp, failed = self._request(
            "POST", self.endpoint, content=body,
            headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
        )
        if resp is None:
            return failed or SendResult(False, self.name, error="no response")
        reply = self._json_reply(resp)
        if reply is None:
            return self._result(resp, False, f"HTTP {resp.status_code}: not JSON")
        code = reply.get("Code")
        if resp.status_code == 200 and code == "OK":
            return self._result(resp, True, None)
        return self._result(resp, False, f"{code}: {reply.get('Message', '')} (HTTP {resp.status_code})")
