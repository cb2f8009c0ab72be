"""Every channel against a local HTTP stand-in that checks what the real provider would check."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import parse_qsl, quote

from server.alerts.channels.base import Channel, Notification
from server.alerts.channels.dingtalk import DingTalkRobot, DingTalkRobotChannel
from server.alerts.channels.inapp import InAppHub
from server.alerts.channels.sms import AliyunSms, SmsChannel, aliyun_signature, aliyun_string_to_sign
from server.alerts.channels.webhook import SignedWebhookChannel, verify_signature
from server.alerts.channels.wecom import WeComRobotChannel
from server.alerts.escalation import Contact, Endpoint, EscalationPolicy, Role, compose, escalate
from server.alerts.lifecycle import Alert
from server.alerts.rules import ConditionKey, Hazard, Severity

from .conftest import Reply, Request, Stub

LINK = "https://yangyi.example.gov.cn/ack?a=A1&p=c1&e=1780000000&k=k1&s=abc"
TEXT = f"【养怡】燃气报警：城关镇幸福村助餐点（设备 gas-1）可燃气体浓度 27 %LEL。请立即处理并点击确认：{LINK}"


def note(address: str, **kw: object) -> Notification:
    base: dict[str, object] = dict(
        alert_id="A1", person_id="c1", address=address, title="【养怡】燃气报警", text=TEXT,
        markdown="### 【养怡】燃气报警\n> 助餐点：**幸福村**", link=LINK, severity="alarm", hazard="gas",
        mobile="13800000001", params={"kind": "燃气报警", "point": "城关镇幸福村助餐点", "time": "06-01 11:00",
                                      "link": LINK},
    )
    base.update(kw)
    return Notification(**base)  # type: ignore[arg-type]


def closed_port_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/"


# --- WeCom ---------------------------------------------------------------------------------------

WECOM_KEY = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"


def wecom_stand_in(req: Request) -> Reply:
    if req.query.get("key") != WECOM_KEY:
        return Reply(200, {"errcode": 93000, "errmsg": "invalid webhook url"})
    body = req.json()
    kind = body.get("msgtype")
    content = body.get(kind, {}).get("content", "")
    limit = 2048 if kind == "text" else 4096
    if kind not in ("text", "markdown") or not content or len(content.encode()) > limit:
        return Reply(200, {"errcode": 40008, "errmsg": "invalid message type"})
    return Reply(200, {"errcode": 0, "errmsg": "ok"})


def test_wecom_text_with_mention(provider_stub: Stub) -> None:
    provider_stub.respond = wecom_stand_in
    ch = WeComRobotChannel({"pt-001-group": provider_stub.url(f"/cgi-bin/webhook/send?key={WECOM_KEY}")})
    result = ch.send(note("pt-001-group"))
    assert result.ok, result
    assert result.status == 200 and '"errcode": 0' in (result.response or "")
    body = provider_stub.requests[0].json()
    assert body == {"msgtype": "text", "text": {"content": TEXT, "mentioned_mobile_list": ["13800000001"]}}
    assert provider_stub.requests[0].headers["content-type"].startswith("application/json")


def test_wecom_markdown_and_long_text_is_cut_not_refused(provider_stub: Stub) -> None:
    provider_stub.respond = wecom_stand_in
    url = provider_stub.url(f"/cgi-bin/webhook/send?key={WECOM_KEY}")
    assert WeComRobotChannel({"g": url}, msgtype="markdown").send(note("g")).ok
    assert provider_stub.requests[0].json()["markdown"]["content"].startswith("### 【养怡】燃气报警")
    long = note(url, text="燃" * 2000)  # 6000 bytes of UTF-8
    assert WeComRobotChannel().send(long).ok  # a raw webhook URL works as the address too
    assert len(provider_stub.requests[1].json()["text"]["content"].encode()) <= 2048


def test_wecom_errors_become_results(provider_stub: Stub) -> None:
    provider_stub.respond = wecom_stand_in
    bad_key = WeComRobotChannel({"g": provider_stub.url("/cgi-bin/webhook/send?key=wrong")}).send(note("g"))
    assert not bad_key.ok and bad_key.error == "errcode 93000: invalid webhook url"
    provider_stub.respond = lambda req: Reply(200, {"errcode": 45009, "errmsg": "api freq out of limit"})
    limited = WeComRobotChannel({"g": provider_stub.url(f"/x?key={WECOM_KEY}")}).send(note("g"))
    assert not limited.ok and "45009" in (limited.error or "")
    provider_stub.respond = lambda req: Reply(502, b"<html>bad gateway</html>")
    gateway = WeComRobotChannel({"g": provider_stub.url("/x")}).send(note("g"))
    assert not gateway.ok and gateway.status == 502 and gateway.error == "HTTP 502"
    unknown = WeComRobotChannel({}).send(note("no-such-robot"))
    assert not unknown.ok and "unknown WeCom robot" in (unknown.error or "")
    refused = WeComRobotChannel({"g": closed_port_url()}).send(note("g"))
    assert not refused.ok and refused.status is None and "ConnectError" in (refused.error or "")


def test_slow_provider_times_out_as_a_result(provider_stub: Stub) -> None:
    provider_stub.respond = lambda req: Reply(200, {"errcode": 0, "errmsg": "ok"}, delay_s=1.0)
    start = time.monotonic()
    result = WeComRobotChannel({"g": provider_stub.url("/x")}, timeout_s=0.3).send(note("g"))
    assert not result.ok and "Timeout" in (result.error or "")
    assert time.monotonic() - start < 0.9


# --- DingTalk ------------------------------------------------------------------------------------

DT_SECRET = "SEC0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd"
DT_TOKEN = "f8a1c2d3e4"
DT_NOW_MS = 1_780_000_000_000


def dingtalk_stand_in(keyword: str, server_now_ms: int = DT_NOW_MS) -> Callable[[Request], Reply]:
    def respond(req: Request) -> Reply:
        if req.query.get("access_token") != DT_TOKEN:
            return Reply(200, {"errcode": 300001, "errmsg": "token is not exist"})
        ts = req.query.get("timestamp", "")
        if not ts.isdigit() or abs(int(ts) - server_now_ms) > 3600 * 1000:
            return Reply(200, {"errcode": 310000, "errmsg": "invalid timestamp"})
        # DingTalk's check, written here from its documentation, not from our code.
        expected = base64.b64encode(
            hmac.new(DT_SECRET.encode("utf-8"), f"{ts}\n{DT_SECRET}".encode(), hashlib.sha256).digest()
        ).decode()
        if req.query.get("sign") != expected:  # parse_qs already URL-decoded it
            return Reply(200, {"errcode": 310000, "errmsg": "sign not match"})
        body = req.json()
        content = body["text"]["content"] if body["msgtype"] == "text" else body["markdown"]["text"]
        if keyword not in content:
            return Reply(200, {"errcode": 310000, "errmsg": "keywords not in content"})
        return Reply(200, {"errcode": 0, "errmsg": "ok"})
    return respond


def test_dingtalk_signed_url_keyword_and_mention(provider_stub: Stub) -> None:
    provider_stub.respond = dingtalk_stand_in(keyword="安全告警")
    robot = DingTalkRobot(provider_stub.url(f"/robot/send?access_token={DT_TOKEN}"), DT_SECRET, ("安全告警",))
    ch = DingTalkRobotChannel({"village-7": robot}, now_ms=lambda: DT_NOW_MS)
    result = ch.send(note("village-7"))
    assert result.ok, result
    body = provider_stub.requests[0].json()
    assert body["msgtype"] == "text" and body["text"]["content"].startswith("安全告警 【养怡】燃气报警")
    assert body["text"]["content"].endswith("@13800000001")
    assert body["at"] == {"atMobiles": ["13800000001"], "isAtAll": False}
    md = DingTalkRobotChannel({"v": robot}, msgtype="markdown", now_ms=lambda: DT_NOW_MS).send(note("v"))
    assert md.ok, md
    assert provider_stub.requests[1].json()["markdown"]["title"].startswith("安全告警")


def test_dingtalk_rejections(provider_stub: Stub) -> None:
    provider_stub.respond = dingtalk_stand_in(keyword="安全告警")
    url = provider_stub.url(f"/robot/send?access_token={DT_TOKEN}")
    wrong_secret = DingTalkRobotChannel({"v": DingTalkRobot(url, "SECwrong", ("安全告警",))}, now_ms=lambda: DT_NOW_MS)
    r = wrong_secret.send(note("v"))
    assert not r.ok and r.error == "errcode 310000: sign not match"
    stale = DingTalkRobotChannel({"v": DingTalkRobot(url, DT_SECRET, ("安全告警",))},
                                 now_ms=lambda: DT_NOW_MS - 2 * 3600 * 1000)
    assert "invalid timestamp" in (stale.send(note("v")).error or "")
    no_keyword = DingTalkRobotChannel({"v": DingTalkRobot(url, DT_SECRET)}, now_ms=lambda: DT_NOW_MS)
    assert "keywords not in content" in (no_keyword.send(note("v")).error or "")
    provider_stub.respond = lambda req: Reply(200, {"errcode": 130101, "errmsg": "send too fast"})
    assert not DingTalkRobotChannel({"v": DingTalkRobot(url)}).send(note("v")).ok
    assert not DingTalkRobotChannel({}).send(note("v")).ok


# --- signed webhook ------------------------------------------------------------------------------

WH_SECRET = b"county-webhook-secret-2026"


def webhook_stand_in(now: float) -> Callable[[Request], Reply]:
    def respond(req: Request) -> Reply:
        ts = req.headers.get("x-yangyi-timestamp", "")
        # The receiver's check, written from the documented format.
        expected = "v1=" + hmac.new(WH_SECRET, ts.encode() + b"." + req.body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, req.headers.get("x-yangyi-signature", "")):
            return Reply(401, {"error": "bad signature"})
        if abs(now - int(ts)) > 300:
            return Reply(401, {"error": "stale"})
        return Reply(202, {"accepted": True})
    return respond


def test_signed_webhook(provider_stub: Stub) -> None:
    now = 1_780_000_000.0
    provider_stub.respond = webhook_stand_in(now)
    ch = SignedWebhookChannel(WH_SECRET, key_id="wh-2026", now=lambda: now)
    result = ch.send(note(provider_stub.url("/hooks/yangyi")))
    assert result.ok and result.status == 202
    req = provider_stub.requests[0]
    body = req.json()
    assert body["alert_id"] == "A1" and body["text"] == TEXT and body["type"] == "alert.notification"
    assert req.headers["x-yangyi-key-id"] == "wh-2026" and len(req.headers["x-yangyi-delivery"]) == 32
    assert verify_signature(WH_SECRET, req.headers["x-yangyi-timestamp"], req.body,
                            req.headers["x-yangyi-signature"], now)
    assert not verify_signature(WH_SECRET, req.headers["x-yangyi-timestamp"], req.body + b" ",
                                req.headers["x-yangyi-signature"], now)
    assert not verify_signature(WH_SECRET, req.headers["x-yangyi-timestamp"], req.body,
                                req.headers["x-yangyi-signature"], now + 301)
    wrong = SignedWebhookChannel(b"another-secret-of-16+", now=lambda: now).send(note(provider_stub.url("/h")))
    assert not wrong.ok and wrong.status == 401 and wrong.error == "HTTP 401"
    stale = SignedWebhookChannel(WH_SECRET, now=lambda: now - 600).send(note(provider_stub.url("/h")))
    assert not stale.ok and stale.status == 401


# --- SMS, Aliyun-shaped --------------------------------------------------------------------------

DOC_PARAMS = {
    "AccessKeyId": "testId", "Action": "SendSms", "Format": "XML", "OutId": "123",
    "PhoneNumbers": "15300000001", "RegionId": "cn-hangzhou", "SignName": "阿里云短信测试专用",
    "SignatureMethod": "HMAC-SHA1", "SignatureNonce": "45e25e9b-0a6f-4070-8c85-2956eda1b466",
    "SignatureVersion": "1.0", "TemplateCode": "SMS_71390007", "TemplateParam": '{"customer":"test"}',
    "Timestamp": "2017-07-12T02:42:19Z", "Version": "2017-05-25",
}
DOC_STRING_TO_SIGN = (
    "GET&%2F&AccessKeyId%3DtestId%26Action%3DSendSms%26Format%3DXML%26OutId%3D123%26PhoneNumbers%3D15300000001"
    "%26RegionId%3Dcn-hangzhou%26SignName%3D%25E9%2598%25BF%25E9%2587%258C%25E4%25BA%2591%25E7%259F%25AD%25E4"
    "%25BF%25A1%25E6%25B5%258B%25E8%25AF%2595%25E4%25B8%2593%25E7%2594%25A8%26SignatureMethod%3DHMAC-SHA1"
    "%26SignatureNonce%3D45e25e9b-0a6f-4070-8c85-2956eda1b466%26SignatureVersion%3D1.0%26TemplateCode%3D"
    "SMS_71390007%26TemplateParam%3D%257B%2522customer%2522%253A%2522test%2522%257D%26Timestamp%3D"
    "2017-07-12T02%253A42%253A19Z%26Version%3D2017-05-25"
)


def test_aliyun_signature_matches_the_documented_example() -> None:
    assert aliyun_string_to_sign("GET", DOC_PARAMS) == DOC_STRING_TO_SIGN
    assert aliyun_signature("testSecret", "GET", DOC_PARAMS) == "zJDF+Lrzhj/ThnlvIToysFRq6t4="


AK_ID, AK_SECRET = "LTAI-yangyi-test", "yangyi-test-secret"


def _pop_encode(s: str) -> str:
    # Aliyun's documented recipe: form-encode, then + → %20, * → %2A, %7E → ~.
    from urllib.parse import quote_plus
    return quote_plus(s, safe="").replace("+", "%20").replace("*", "%2A").replace("%7E", "~")


def aliyun_stand_in(req: Request) -> Reply:
    form = dict(parse_qsl(req.body.decode(), keep_blank_values=True))
    if form.get("AccessKeyId") != AK_ID:
        return Reply(404, {"Code": "InvalidAccessKeyId.NotFound", "Message": "Specified access key is not found."})
    canonical = "&".join(f"{_pop_encode(k)}={_pop_encode(v)}" for k, v in sorted(form.items()) if k != "Signature")
    sts = f"POST&%2F&{_pop_encode(canonical)}"
    expected = base64.b64encode(hmac.new(f"{AK_SECRET}&".encode(), sts.encode(), hashlib.sha1).digest()).decode()
    if form.get("Signature") != expected:
        return Reply(400, {"Code": "SignatureDoesNotMatch", "Message": "Specified signature is not matched."})
    ts = datetime.strptime(form["Timestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    if abs((datetime(2026, 6, 1, 3, 0, tzinfo=UTC) - ts).total_seconds()) > 900:
        return Reply(400, {"Code": "InvalidTimeStamp.Expired", "Message": "expired"})
    if form.get("Action") != "SendSms" or form.get("Version") != "2017-05-25":
        return Reply(400, {"Code": "InvalidAction", "Message": "bad action"})
    if not form.get("PhoneNumbers", "").isdigit():
        return Reply(200, {"Code": "isv.MOBILE_NUMBER_ILLEGAL", "Message": "非法手机号"})
    json.loads(form["TemplateParam"])
    return Reply(200, {"Code": "OK", "Message": "OK", "BizId": "900619746936498440^0", "RequestId": "F655A8D5"})


def aliyun(stub: Stub, secret: str = AK_SECRET, nonce: str = "n-1") -> AliyunSms:
    return AliyunSms(AK_ID, secret, "养怡", endpoint=stub.url("/"),
                     now=lambda: datetime(2026, 6, 1, 3, 0, 5, tzinfo=UTC), nonce=lambda: nonce)


def test_aliyun_sms_signed_request_accepted(provider_stub: Stub) -> None:
    provider_stub.respond = aliyun_stand_in
    sms = SmsChannel(aliyun(provider_stub), "SMS_480000001")
    result = sms.send(note("13800000001"))
    assert result.ok, result
    assert result.channel == "sms" and "900619746936498440" in (result.response or "")
    form = dict(parse_qsl(provider_stub.requests[0].body.decode()))
    assert form["PhoneNumbers"] == "13800000001" and form["TemplateCode"] == "SMS_480000001"
    assert form["SignName"] == "养怡" and form["OutId"] == "A1" and form["SignatureNonce"] == "n-1"
    params = json.loads(form["TemplateParam"])
    assert params["kind"] == "燃气报警" and params["point"] == "城关镇幸福村助餐点"
    assert len(params["link"]) <= 35  # operators cap template variables; the adapter cuts to the cap
    assert set(params) == {"kind", "point", "time", "link"}


def test_aliyun_sms_errors(provider_stub: Stub) -> None:
    provider_stub.respond = aliyun_stand_in
    wrong = SmsChannel(aliyun(provider_stub, secret="not-the-secret"), "SMS_1").send(note("13800000001"))
    assert not wrong.ok and wrong.status == 400 and (wrong.error or "").startswith("SignatureDoesNotMatch")
    illegal = SmsChannel(aliyun(provider_stub), "SMS_1").send(note("138-bad"))
    assert not illegal.ok and (illegal.error or "").startswith("isv.MOBILE_NUMBER_ILLEGAL")
    provider_stub.respond = lambda req: Reply(200, {"Code": "isv.BUSINESS_LIMIT_CONTROL", "Message": "触发天级流控"})
    limited = SmsChannel(aliyun(provider_stub), "SMS_1").send(note("13800000001"))
    assert not limited.ok and "BUSINESS_LIMIT_CONTROL" in (limited.error or "")
    provider_stub.respond = lambda req: Reply(503, b"upstream down")
    down = SmsChannel(aliyun(provider_stub), "SMS_1").send(note("13800000001"))
    assert not down.ok and "not JSON" in (down.error or "")
    refused = SmsChannel(AliyunSms(AK_ID, AK_SECRET, "养怡", endpoint=closed_port_url()), "SMS_1").send(note("1"))
    assert not refused.ok and refused.error


def test_percent_encoding_of_the_sms_body_is_what_was_signed(provider_stub: Stub) -> None:
    provider_stub.respond = aliyun_stand_in
    tricky = note("13800000001", params={"kind": "燃气 报警*~", "point": "a+b=c&d", "time": "", "link": "x/y"})
    assert SmsChannel(aliyun(provider_stub), "SMS_1").send(tricky).ok
    raw = provider_stub.requests[0].body.decode()
    assert "%20" in raw and "+" not in raw and "%2A" in raw and quote("~") in raw


# --- in-app --------------------------------------------------------------------------------------


def test_inapp_fan_out_and_fall_through_signal() -> None:
    hub = InAppHub(maxsize=2)
    wall = hub.subscribe()  # the bureau's screen sees everything
    assert not hub.send(note("c1")).ok  # c1 has no session: escalation must try another channel
    mine = hub.subscribe("c1")
    other = hub.subscribe("c2")
    result = hub.send(note("c1"))
    assert result.ok and result.response == "delivered to 1 sessions"
    got = mine.get(timeout=1)
    assert got is not None and got.alert_id == "A1" and got.text == TEXT
    assert other.get(timeout=0.01) is None
    assert wall.get(timeout=0) is not None and wall.get(timeout=0) is not None
    assert hub.send(note("*")).ok  # broadcast
    for _ in range(3):
        hub.send(note("c1"))
    assert mine.dropped == 2  # bounded: the oldest went
    mine.close()
    assert not hub.send(note("c1")).ok


def test_inapp_wakes_a_waiting_thread_and_an_event_loop() -> None:
    hub = InAppHub()
    sub = hub.subscribe("c1")
    got: list[object] = []
    reader = threading.Thread(target=lambda: got.append(sub.get(timeout=5)))
    reader.start()
    time.sleep(0.05)  # most likely the reader is waiting by now; if not, get() returns at once anyway
    hub.send(note("c1"))
    reader.join(timeout=5)
    assert got and got[0] is not None

    async def consume() -> list[str]:
        asub = hub.subscribe("c2")
        loop = asyncio.get_running_loop()
        first = asyncio.create_task(asub.aget())
        await asyncio.sleep(0.01)  # let the task block in aget (correct either way)
        await loop.run_in_executor(None, hub.send, note("c2"))  # sent from another thread
        msg = await asyncio.wait_for(first, 5)
        asub.close()
        end = await asyncio.wait_for(asub.aget(), 5)
        return [msg.person_id if msg else "none", repr(end)]

    assert asyncio.run(consume()) == ["c1", "None"]


# --- escalation through real channels ------------------------------------------------------------


def test_failing_wecom_falls_through_to_signed_webhook(provider_stub: Stub) -> None:
    now_s = 1_780_000_000.0
    ok_webhook = webhook_stand_in(now_s)

    def respond(req: Request) -> Reply:
        if req.path == "/cgi-bin/webhook/send":
            return Reply(200, {"errcode": 45009, "errmsg": "api freq out of limit"})
        return ok_webhook(req)

    provider_stub.respond = respond
    channels: dict[str, Channel] = {
        "wecom": WeComRobotChannel({"grp": provider_stub.url(f"/cgi-bin/webhook/send?key={WECOM_KEY}")}),
        "webhook": SignedWebhookChannel(WH_SECRET, now=lambda: now_s),
    }
    opened = datetime.fromtimestamp(now_s, UTC)
    alert = Alert(id="A7", key=ConditionKey("pt-001", "gas-1", "lel:edge"), hazard=Hazard.GAS,
                  severity=Severity.ALARM, peak_severity=Severity.ALARM, opened_at=opened, last_seen=opened,
                  message="现场燃气报警：lel 27 %LEL")
    person = Contact("c1", "王阿姨", Role.CAREGIVER,
                     (Endpoint("wecom", "grp"), Endpoint("webhook", provider_stub.url("/hooks/yangyi"))))
    _, attempts = escalate(alert, (person,), EscalationPolicy(), [], opened, channels,
                           lambda d: compose(alert, d, point_name="幸福村助餐点", link=LINK))
    assert [(a.channel, a.ok) for a in attempts] == [("wecom", False), ("webhook", True)]
    assert "45009" in (attempts[0].error or "") and attempts[1].status == 202
    delivered = provider_stub.requests[1].json()
    assert delivered["alert_id"] == "A7" and delivered["text"].startswith("【养怡】燃气报警：幸福村助餐点")
    assert LINK in delivered["text"]
