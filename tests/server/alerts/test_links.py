"""Acknowledge links: valid, expired, tampered, rotated keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlsplit

import pytest

from server.alerts.errors import AlertConfigError, LinkExpiredError, LinkSignatureError
from server.alerts.links import AckLinks

NOW = datetime(2026, 6, 1, 3, 0, tzinfo=UTC)
K1 = b"k1-secret-0123456789abcdef"
K2 = b"k2-secret-fedcba9876543210"
BASE = "https://yangyi.example.gov.cn/ack"


def links(keys: dict[str, bytes] | None = None, current: str = "k1") -> AckLinks:
    return AckLinks(keys or {"k1": K1}, current, BASE, ttl_s=3600)


def test_valid_link_round_trip() -> None:
    lk = links()
    url = lk.url("alert-42", "caregiver-7", NOW)
    assert url.startswith(BASE + "?a=alert-42&p=caregiver-7&e=")
    claim = lk.verify_url(url, NOW + timedelta(minutes=59))
    assert (claim.alert_id, claim.person_id, claim.key_id) == ("alert-42", "caregiver-7", "k1")
    assert claim.expires_at == NOW + timedelta(hours=1)
    assert len(url) < 160  # fits an SMS together with the text


def test_expired_link() -> None:
    lk = links()
    url = lk.url("alert-42", "caregiver-7", NOW)
    with pytest.raises(LinkExpiredError):
        lk.verify_url(url, NOW + timedelta(hours=1))


@pytest.mark.parametrize(
    ("field", "value"),
    [("a", "alert-43"), ("p", "officer-2"), ("e", None), ("s", None), ("k", "k2")],
)
def test_tampered_link(field: str, value: str | None) -> None:
    lk = AckLinks({"k1": K1, "k2": K2}, "k1", BASE)
    params = lk.sign("alert-42", "caregiver-7", NOW)
    if field == "e":
        value = str(int(params["e"]) + 86400)  # a longer life
    if field == "s":
        sig = params["s"]
        value = ("A" if sig[0] != "A" else "B") + sig[1:]
    params[field] = value or ""
    with pytest.raises(LinkSignatureError):
        lk.verify(params, NOW)


def test_tampered_and_expired_reports_tampering() -> None:
    lk = links()
    params = lk.sign("alert-42", "caregiver-7", NOW)
    params["p"] = "someone-else"
    with pytest.raises(LinkSignatureError):
        lk.verify(params, NOW + timedelta(days=3))


def test_malformed_links() -> None:
    lk = links()
    params = lk.sign("alert-42", "caregiver-7", NOW)
    for missing in ("a", "p", "e", "k", "s"):
        broken = {k: v for k, v in params.items() if k != missing}
        with pytest.raises(LinkSignatureError):
            lk.verify(broken, NOW)
    with pytest.raises(LinkSignatureError):
        lk.verify({**params, "e": "-1"}, NOW)
    with pytest.raises(ValueError):
        lk.sign("alert\n42", "caregiver-7", NOW)


def test_key_rotation() -> None:
    old = links({"k1": K1}, "k1")
    old_url = old.url("alert-42", "caregiver-7", NOW)
    rotated = links({"k1": K1, "k2": K2}, "k2")
    new_url = rotated.url("alert-42", "caregiver-7", NOW)
    assert dict(parse_qsl(urlsplit(new_url).query))["k"] == "k2"
    assert rotated.verify_url(old_url, NOW).key_id == "k1"  # old links still work while k1 is listed
    assert rotated.verify_url(new_url, NOW).key_id == "k2"
    retired = links({"k2": K2}, "k2")
    with pytest.raises(LinkSignatureError):
        retired.verify_url(old_url, NOW)
    assert retired.verify_url(new_url, NOW).key_id == "k2"
    with pytest.raises(LinkSignatureError):
        old.verify_url(new_url, NOW)  # a key we never had


def test_signature_depends_on_the_key() -> None:
    a = AckLinks({"k1": K1}, "k1", BASE).sign("x", "y", NOW)
    b = AckLinks({"k1": K2}, "k1", BASE).sign("x", "y", NOW)
    assert a["s"] != b["s"] and {k: v for k, v in a.items() if k != "s"} == {k: v for k, v in b.items() if k != "s"}


def test_bad_key_configuration() -> None:
    with pytest.raises(AlertConfigError):
        AckLinks({"k1": b"short"}, "k1", BASE)
    with pytest.raises(AlertConfigError):
        AckLinks({"k1": K1}, "k9", BASE)
