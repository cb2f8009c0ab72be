"""Canonical card ids: the normalisation table, ambiguity settled by the configured format."""

from __future__ import annotations

import pytest

from firmware_bridge.cardid import CardFormat, CardIdSettings, from_em4100, from_uid, mask, normalise
from firmware_bridge.errors import CardIdError, CodecError

F = CardFormat
TABLE = [
    # printing, format, reversed, em_high, canonical
    ("0012345678", F.EM_HEX, False, 0, "EM:0012345678"),
    ("00ab12cd34", F.EM_HEX, False, 0, "EM:00AB12CD34"),
    ("0305419896", F.EM_DEC, False, 0, "EM:0012345678"),  # 0x12345678 = 305419896
    ("305419896", F.EM_DEC, False, 0, "EM:0012345678"),
    ("0305419896", F.EM_DEC, False, 0x1A, "EM:1A12345678"),
    ("4294967295", F.EM_DEC, False, 0, "EM:00FFFFFFFF"),
    ("052,22136", F.EM_W26, False, 0x0012, "EM:0012345678"),  # 0x34 = 52, 0x5678 = 22136
    ("052,22136", F.EM_W26, False, 0, "EM:0000345678"),
    ("05222136", F.EM_W26, False, 0x0012, "EM:0012345678"),
    ("018, 22136", F.EM_W26, False, 0, "EM:0000125678"),
    ("04A1B2C3", F.UID_HEX, False, 0, "UID:04A1B2C3"),
    ("04:a1:b2:c3", F.UID_HEX, False, 0, "UID:04A1B2C3"),
    ("C3B2A104", F.UID_HEX, True, 0, "UID:04A1B2C3"),
    ("C3-B2-A1-04", F.UID_HEX, True, 0, "UID:04A1B2C3"),
    ("04112233445566", F.UID_HEX, False, 0, "UID:04112233445566"),
    ("0077705923", F.UID_DEC, False, 0, "UID:04A1B2C3"),  # 0x04A1B2C3 = 77705923
    ("3283263748", F.UID_DEC, True, 0, "UID:04A1B2C3"),  # 0xC3B2A104 = 3283263748, little endian
    ("11010519491231002x", F.RESIDENT_ID, False, 0, "ID:11010519491231002X"),
]


@pytest.mark.parametrize(("printed", "fmt", "rev", "high", "canonical"), TABLE)
def test_normalisation_table(printed: str, fmt: CardFormat, rev: bool, high: int, canonical: str) -> None:
    assert normalise(printed, CardIdSettings(fmt, rev, high)) == canonical


def test_hand_arithmetic_of_the_table() -> None:
    assert 0x12345678 == 305419896 and 0x34 == 52 and 0x5678 == 22136
    assert 0x04A1B2C3 == 77705923 and 0xC3B2A104 == 3283263748


def test_one_card_three_printings_one_id() -> None:
    em = normalise("0012345678", CardIdSettings(F.EM_HEX))
    dec = normalise("0305419896", CardIdSettings(F.EM_DEC))
    w26 = normalise("052,22136", CardIdSettings(F.EM_W26, em_high=0x12))
    assert em == dec == w26 == from_em4100(bytes.fromhex("0012345678"))


def test_ambiguous_printing_follows_configuration() -> None:
    text = "0012345678"  # both 10 hex characters and a 10-digit decimal
    assert normalise(text, CardIdSettings(F.EM_HEX)) == "EM:0012345678"
    assert normalise(text, CardIdSettings(F.EM_DEC)) == "EM:0000BC614E"  # 12345678 = 0xBC614E


@pytest.mark.parametrize(
    ("printed", "fmt"),
    [
        ("", F.EM_HEX),
        ("001234567", F.EM_HEX),
        ("00123456789", F.EM_HEX),
        ("00123456ZZ", F.EM_HEX),
        ("4294967296", F.EM_DEC),  # 2^32
        ("12345678901", F.EM_DEC),
        ("12a4", F.EM_DEC),
        ("256,1", F.EM_W26),
        ("1,65536", F.EM_W26),
        ("052;22136", F.EM_W26),
        ("04A1B2", F.UID_HEX),  # 3 bytes
        ("04A1B2C3D", F.UID_HEX),  # odd
        ("4294967296", F.UID_DEC),
        ("110105194912310021", F.RESIDENT_ID),  # bad check character
        ("0012345678", F.RESIDENT_ID),
    ],
)
def test_printings_that_do_not_fit_are_rejected(printed: str, fmt: CardFormat) -> None:
    with pytest.raises(CardIdError):
        normalise(printed, CardIdSettings(fmt))


def test_em_high_out_of_range() -> None:
    with pytest.raises(CardIdError):
        normalise("1", CardIdSettings(F.EM_DEC, em_high=0x100))
    with pytest.raises(CardIdError):
        normalise("1,1", CardIdSettings(F.EM_W26, em_high=0x10000))


def test_constructors_and_mask() -> None:
    assert from_uid(bytes.fromhex("04A1B2C3")) == "UID:04A1B2C3"
    with pytest.raises(CardIdError):
        from_uid(b"\x01\x02")
    with pytest.raises(CardIdError):
        from_em4100(b"\x01")
    assert mask("ID:11010519491231002X") == "ID:11*************02X"
    assert mask("EM:0012345678") == "EM:0012345678"
    assert issubclass(CardIdError, CodecError)
