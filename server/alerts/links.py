"""Signed, expiring acknowledge links: one tap in a message acknowledges the alert as that person.

Link: {base_url}?a=<alert id>&p=<person id>&e=<expiry, Unix seconds>&k=<key id>&s=<signature>
    s = base64url, unpadded, of the first 16 bytes of
        HMAC-SHA256(keys[k], "yangyi-ack-v1\\n" + k + "\\n" + a + "\\n" + p + "\\n" + e)
128 bits of tag keep the link short enough for an SMS; ids may not contain newlines, so fields
cannot be shifted into each other. Verification checks the signature in constant time before the
expiry, so an altered link never learns anything from the time. Keys rotate by id: new links are
signed with `current_key_id`; links signed with an older key stay valid while that key is still
listed, and fail once it is removed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit

from .errors import AlertConfigError, LinkExpiredError, LinkSignatureError

DOMAIN_TAG = "yangyi-ack-v1"
TAG_BYTES = 16
MIN_KEY_BYTES = 16
MAX_ID_CHARS = 128
DEFAULT_TTL_SECONDS = 24 * 3600


@dataclass(frozen=True, slots=True)
class AckClaim:
    """What a verified link says: this person may acknowledge this alert (until expires_at)."""

    alert_id: str
    person_id: str
    expires_at: datetime
    key_id: str


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _check_id(value: str, what: str) -> str:
    if not value or len(value) > MAX_ID_CHARS or any(c in value for c in "\r\n"):
        raise ValueError(f"invalid {what} for an ack link: {value!r}")
    return value


class AckLinks:
    """Signs and verifies acknowledge links with a set of keys by id."""

    def __init__(
        self, keys: Mapping[str, bytes], current_key_id: str, base_url: str,
        ttl_s: float = DEFAULT_TTL_SECONDS,
    ) -> None:
        if current_key_id not in keys:
            raise AlertConfigError(f"current key id {current_key_id!r} is not among the keys")
        for kid, key in keys.items():
            if len(key) < MIN_KEY_BYTES or not kid or any(c in kid for c in "\r\n&=?"):
                raise AlertConfigError(f"ack-link key {kid!r}: needs an id and at least {MIN_KEY_BYTES} bytes")
        self._keys = dict(keys)
        self.current_key_id = current_key_id
        self.base_url = base_url
        self.ttl = timedelta(seconds=ttl_s)

    def _tag(self, key_id: str, alert_id: str, person_id: str, expiry: str) -> str:
        msg = "\n".join((DOMAIN_TAG, key_id, alert_id, person_id, expiry)).encode()
        return _b64(hmac.new(self._keys[key_id], msg, hashlib.sha256).digest()[:TAG_BYTES])

    def sign(self, alert_id: str, person_id: str, now: datetime, ttl_s: float | None = None) -> dict[str, str]:
        """The link's query parameters, valid from now for the TTL."""
        _check_id(alert_id, "alert id")
        _check_id(person_id, "person id")
        ttl = self.ttl if ttl_s is None else timedelta(seconds=ttl_s)
        expiry = str(int((now + ttl).timestamp()))
        kid = self.current_key_id
        return {"a": alert_id, "p": person_id, "e": expiry, "k": kid, "s": self._tag(kid, alert_id, person_id, expiry)}

    def url(self, alert_id: str, person_id: str, now: datetime, ttl_s: float | None = None) -> str:
        sep = "&" if "?" in self.base_url else "?"
        return f"{self.base_url}{sep}{urlencode(self.sign(alert_id, person_id, now, ttl_s))}"

    def verify(self, params: Mapping[str, str], now: datetime) -> AckClaim:
        """Check the parameters of a link; raise LinkSignatureError or LinkExpiredError."""
        try:
            alert_id, person_id, expiry, kid, tag = (params[k] for k in ("a", "p", "e", "k", "s"))
        except KeyError as exc:
            raise LinkSignatureError(f"ack link lacks parameter {exc.args[0]!r}") from None
        if kid not in self._keys:
            raise LinkSignatureError(f"ack link signed with an unknown or retired key {kid!r}")
        if not expiry.isdigit() or any(c in alert_id + person_id for c in "\r\n"):
            raise LinkSignatureError("malformed ack link")
        expected = self._tag(kid, alert_id, person_id, expiry)
        if not hmac.compare_digest(expected.encode(), tag.encode()):
            raise LinkSignatureError("ack link signature does not match")
        expires_at = datetime.fromtimestamp(int(expiry), UTC)
        if now >= expires_at:
            raise LinkExpiredError(f"ack link expired at {expires_at.isoformat()}")
        return AckClaim(alert_id, person_id, expires_at, kid)

    def verify_url(self, url: str, now: datetime) -> AckClaim:
        return self.verify(dict(parse_qsl(urlsplit(url).query, keep_blank_values=True)), now)
