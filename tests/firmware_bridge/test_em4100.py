"""EM4100 codec: golden bytes × chunking × corruption, and the held-card de-bouncer."""

from __future__ import annotations

from typing import Any

import pytest

from firmware_bridge import em4100
from firmware_bridge.em4100 import Debouncer, Em4100Frame, checksum, decode, encode
from firmware_bridge.errors import FrameError

# Written out by hand from the module datasheet layout, not produced by encode().
GOLDEN = b"\x02" + b"0012345678" + b"08" + b"\x03"
GOLDEN_2 = b"\x02" + b"1A2B3C4D5E" + b"1E" + b"\x03"
CARD = Em4100Frame(bytes.fromhex("0012345678"))
CARD_2 = Em4100Frame(bytes.fromhex("1A2B3C4D5E"))


def test_checksum_is_xor_of_data_bytes() -> None:
    assert checksum(bytes.fromhex("0012345678")) == 0x08
    assert checksum(bytes.fromhex("1A2B3C4D5E")) == 0x1A ^ 0x2B ^ 0x3C ^ 0x4D ^ 0x5E == 0x1E
    assert checksum(b"") == 0


def test_encode_matches_golden_bytes() -> None:
    assert encode(CARD) == GOLDEN
    assert encode(CARD_2) == GOLDEN_2
    assert len(GOLDEN) == em4100.FRAME_SIZE


@pytest.mark.parametrize("how", ["whole", "halves", "bytewise"])
def test_golden_frame_in_every_chunking(how: str, decode_all: Any, chunkings: Any) -> None:
    frames, left = decode_all(decode, chunkings(GOLDEN)[how])
    assert frames == [CARD] and left == 0


@pytest.mark.parametrize("how", ["whole", "halves", "bytewise"])
def test_two_frames_back_to_back(how: str, decode_all: Any, chunkings: Any) -> None:
    frames, left = decode_all(decode, chunkings(GOLDEN + GOLDEN_2)[how])
    assert frames == [CARD, CARD_2] and left == 0


@pytest.mark.parametrize("how", ["whole", "halves", "bytewise"])
def test_garbage_before_and_after(how: str, decode_all: Any, chunkings: Any) -> None:
    data = b"\xff\x00garbage\x03\x03" + GOLDEN + b"\x00\xfe\x10"
    frames, left = decode_all(decode, chunkings(data)[how])
    assert frames == [CARD] and left == 0


def test_need_more_on_a_partial_frame() -> None:
    assert decode(GOLDEN[:5]) == (0, None)
    assert decode(GOLDEN[:13]) == (0, None)
    assert decode(b"") == (0, None)


def test_bad_checksum_is_skipped_and_next_frame_found(decode_all: Any, chunkings: Any) -> None:
    bad = GOLDEN[:11] + b"09" + b"\x03"
    frames, left = decode_all(decode, [bad + GOLDEN_2])
    assert frames == [CARD_2] and left == 0


def test_lower_case_hex_is_accepted() -> None:
    assert decode(b"\x02" + b"1a2b3c4d5e" + b"1e" + b"\x03") == (14, CARD_2)


def test_missing_etx_is_skipped(decode_all: Any, chunkings: Any) -> None:
    frames, _ = decode_all(decode, [GOLDEN[:13] + b"\x04" + GOLDEN_2])
    assert frames == [CARD_2]


def test_truncated_frame_followed_by_good_frame(decode_all: Any, chunkings: Any) -> None:
    # A module reset mid-frame: the STX of the next frame arrives inside the broken one.
    frames, left = decode_all(decode, chunkings(GOLDEN[:7] + GOLDEN)["bytewise"])
    assert frames == [CARD] and left == 0


def test_frame_validation() -> None:
    with pytest.raises(FrameError):
        Em4100Frame(b"\x00\x01")
    with pytest.raises(FrameError):
        Em4100Frame.from_hex("00123456ZZ")
    assert Em4100Frame.from_hex("0012345678").hex == "0012345678"


def test_debouncer_merges_a_held_card_and_counts_the_next_presentation() -> None:
    d = Debouncer(hold_seconds=2.0)
    t = 100.0
    assert d.accept("EM:0012345678", t) is True
    # held for 5 s, repeating every 0.1 s: still one read
    for i in range(1, 50):
        assert d.accept("EM:0012345678", t + i * 0.1) is False
    # another card in between counts at once
    assert d.accept("EM:1A2B3C4D5E", t + 5.0) is True
    # the first card lifted at t+4.9, back after 2.5 s: a new read
    assert d.accept("EM:0012345678", t + 7.4) is True
    assert d.accept("EM:0012345678", t + 7.5) is False


def test_debouncer_zero_hold_accepts_every_read() -> None:
    d = Debouncer(hold_seconds=0.0)
    assert d.accept("x", 1.0) and d.accept("x", 1.0) and d.accept("x", 1.5)
