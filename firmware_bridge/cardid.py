"""Canonical card ids: every reader printing of a card mapped to ONE id with a type prefix.

Canonical forms (what the roster, the outbox and the server use)::

    EM:<10 upper-case hex>    EM4100 / 125 kHz card, 40 bits: version byte + 32-bit number
    UID:<8|14|20 upper hex>   13.56 MHz card UID (4, 7 or 10 bytes) in ISO 14443 order (UID0 first)
    ID:<18 characters>        resident ID card (GB 11643 validated, check 'X' upper case)

Printings, chosen per reader by its configured `CardFormat` (a string that fits two printings,
such as "0012345678", is read the configured way, never guessed)::

    em_hex    "0012345678"      10 hex, as the EM4100 module sends it    → EM:0012345678
    em_dec    "0305419896"      decimal of the low 32 bits (1–10 digits) → EM:<em_high>12345678
    em_w26    "052,22136"       Wiegand-26: facility = bits 23–16, number = bits 15–0 of the low 24
              "05222136"        bits; also the 8-digit 3+5 printing     → EM:<em_high 16 bits>345678
    uid_hex   "04A1B2C3", "04:a1:b2:c3"  hex UID; `reversed` = printed LSB first → UID:04A1B2C3
    uid_dec   "3283263748"      decimal of a 4-byte UID read as an integer; `reversed` = the
                                integer is little endian (common on USB Mifare readers)
    resident_id "11010519491231002X"                                     → ID:11010519491231002X

Lossy printings (em_dec carries 32 of the 40 bits, em_w26 24) take the missing high bits from
the reader's `em_high` setting (default 0) — an assumption per deployment [A]: enrol cards with
the same reader type that reads them, or set `em_high` to the batch's value. Worked example for
card 0x0012345678: em_hex "0012345678" and em_dec "0305419896" (em_high 0) give
"EM:0012345678"; em_w26 "052,22136" (0x34 = 52, 0x5678 = 22136) gives it with em_high 0x0012 and
"EM:0000345678" with the default 0, because W26 carries only 24 bits. (A W26 printing "018,22136"
is facility 0x12: a different card.) uid_dec "3283263748" = 0xC3B2A104 with `reversed` gives
"UID:04A1B2C3".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from firmware_bridge import residentid
from firmware_bridge.errors import CardIdError

EM_PREFIX = "EM:"
UID_PREFIX = "UID:"
ID_PREFIX = "ID:"

_HEX_RE = re.compile(r"^[0-9A-Fa-f]+$")
_W26_RE = re.compile(r"^(\d{1,3})\s*[,.\-/ ]\s*(\d{1,5})$")
_UID_SEPARATORS = re.compile(r"[\s:\-]")
UID_BYTE_LENGTHS = (4, 7, 10)


class CardFormat(StrEnum):
    EM_HEX = "em_hex"
    EM_DEC = "em_dec"
    EM_W26 = "em_w26"
    UID_HEX = "uid_hex"
    UID_DEC = "uid_dec"
    RESIDENT_ID = "resident_id"


@dataclass(frozen=True, slots=True)
class CardIdSettings:
    """How one reader prints card numbers."""

    format: CardFormat
    reversed: bool = False  # UID printed least significant byte first
    em_high: int = 0  # missing high bits of lossy EM printings (8 bits for em_dec, 16 for em_w26)


def from_em4100(data: bytes) -> str:
    """Canonical id of an EM4100 card from its 5 data bytes."""
    if len(data) != 5:
        raise CardIdError(f"EM4100 data must be 5 bytes, got {len(data)}")
    return EM_PREFIX + data.hex().upper()


def from_uid(uid: bytes) -> str:
    """Canonical id of a 13.56 MHz card from its UID bytes in ISO 14443 order."""
    if len(uid) not in UID_BYTE_LENGTHS:
        raise CardIdError(f"UID must be 4, 7 or 10 bytes, got {len(uid)}")
    return UID_PREFIX + uid.hex().upper()


def from_resident_id(number: str) -> str:
    """Canonical id of a resident ID card; raises ResidentIdError for an invalid number."""
    return ID_PREFIX + residentid.parse(number).number


def _em(value40: int) -> str:
    return EM_PREFIX + f"{value40:010X}"


def normalise(printed: str, settings: CardIdSettings) -> str:
    """Map one printing to the canonical card id; raise CardIdError if it does not fit the format."""
    text = printed.strip()
    fmt = settings.format
    if not text:
        raise CardIdError("empty card number")
    if fmt is CardFormat.EM_HEX:
        if len(text) != 10 or not _HEX_RE.match(text):
            raise CardIdError(f"em_hex needs 10 hex characters, got {text!r}")
        return _em(int(text, 16))
    if fmt is CardFormat.EM_DEC:
        if not text.isascii() or not text.isdigit() or len(text) > 10 or int(text) > 0xFFFFFFFF:
            raise CardIdError(f"em_dec needs a decimal number below 2^32, got {text!r}")
        if not 0 <= settings.em_high <= 0xFF:
            raise CardIdError("em_high must fit 8 bits for em_dec")
        return _em((settings.em_high << 32) | int(text))
    if fmt is CardFormat.EM_W26:
        m = _W26_RE.match(text)
        if m:
            facility, number = int(m.group(1)), int(m.group(2))
        elif len(text) == 8 and text.isascii() and text.isdigit():
            facility, number = int(text[:3]), int(text[3:])
        else:
            raise CardIdError(f"em_w26 needs 'facility,number', got {text!r}")
        if facility > 0xFF or number > 0xFFFF:
            raise CardIdError(f"em_w26 facility must be ≤ 255 and number ≤ 65535, got {text!r}")
        if not 0 <= settings.em_high <= 0xFFFF:
            raise CardIdError("em_high must fit 16 bits for em_w26")
        return _em((settings.em_high << 24) | (facility << 16) | number)
    if fmt is CardFormat.UID_HEX:
        digits = _UID_SEPARATORS.sub("", text)
        if not _HEX_RE.match(digits) or len(digits) % 2 or len(digits) // 2 not in UID_BYTE_LENGTHS:
            raise CardIdError(f"uid_hex needs 4, 7 or 10 bytes of hex, got {text!r}")
        uid = bytes.fromhex(digits)
        return from_uid(uid[::-1] if settings.reversed else uid)
    if fmt is CardFormat.UID_DEC:
        if not text.isascii() or not text.isdigit() or len(text) > 10 or int(text) > 0xFFFFFFFF:
            raise CardIdError(f"uid_dec needs a decimal number below 2^32, got {text!r}")
        return from_uid(int(text).to_bytes(4, "little" if settings.reversed else "big"))
    if fmt is CardFormat.RESIDENT_ID:
        try:
            return from_resident_id(text)
        except residentid.ResidentIdError as exc:
            raise CardIdError(f"not a valid resident ID number: {residentid.mask(text)}") from exc
    raise CardIdError(f"unknown card format {fmt!r}")


def mask(card_id: str) -> str:
    """Shorten a canonical id for logs: resident ID numbers de-identified, other ids kept."""
    if card_id.startswith(ID_PREFIX):
        return ID_PREFIX + residentid.mask(card_id[len(ID_PREFIX) :])
    return card_id
