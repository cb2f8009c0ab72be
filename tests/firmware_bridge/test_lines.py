"""Line reader codec: terminators × chunking × corruption."""

from __future__ import annotations

from typing import Any

import pytest

from firmware_bridge.errors import FrameError
from firmware_bridge.lines import MAX_LINE, CardLine, decode, encode


def texts(frames: list[Any]) -> list[str]:
    return [f.text for f in frames]


@pytest.mark.parametrize("ending", [b"\r\n", b"\r", b"\n"])
@pytest.mark.parametrize("how", ["whole", "halves", "bytewise"])
def test_every_terminator_in_every_chunking(ending: bytes, how: str, decode_all: Any, chunkings: Any) -> None:
    data = b"0012345678" + ending + b"052,22136" + ending
    frames, left = decode_all(decode, chunkings(data)[how])
    assert texts(frames) == ["0012345678", "052,22136"] and left == 0


def test_golden_encode() -> None:
    assert encode(CardLine("0305419896")) == b"0305419896\r\n"
    assert encode(CardLine("04:A1:B2:C3"), b"\n") == b"04:A1:B2:C3\n"
    with pytest.raises(FrameError):
        encode(CardLine("1"), b"\x03")


def test_need_more_without_terminator() -> None:
    assert decode(b"00123") == (0, None)
    assert decode(b"") == (0, None)


@pytest.mark.parametrize("how", ["whole", "bytewise"])
def test_noise_before_and_after_is_dropped(how: str, decode_all: Any, chunkings: Any) -> None:
    data = b"\x00\xff\xfe" + b"0012345678\r\n" + b"\x00\xff"
    frames, left = decode_all(decode, chunkings(data)[how])
    assert texts(frames) == ["0012345678"] and left == 0


def test_noise_inside_a_line_drops_the_part_before_it() -> None:
    frames, _ = decode_all_local(b"0012\xff345678\r\n")
    assert texts(frames) == ["345678"]  # cardid then rejects it for a 10-character format


def test_blank_and_whitespace_lines_are_skipped() -> None:
    frames, _ = decode_all_local(b"\r\n\r\n  \r\n 0305419896 \r\n")
    assert texts(frames) == ["0305419896"]


def test_overlong_line_is_dropped_and_next_line_kept() -> None:
    frames, left = decode_all_local(b"9" * (MAX_LINE + 20) + b"\r\n0012345678\r\n")
    assert texts(frames) == ["0012345678"] and left == 0


def test_truncated_line_is_left_waiting() -> None:
    frames, left = decode_all_local(b"0012345678\r\n00123")
    assert texts(frames) == ["0012345678"] and left == 5


def test_cardline_validation() -> None:
    with pytest.raises(FrameError):
        CardLine("")
    with pytest.raises(FrameError):
        CardLine("12\x0734")


def decode_all_local(data: bytes) -> tuple[list[Any], int]:
    buf = bytearray(data)
    out = []
    while buf:
        used, frame = decode(buf)
        if used == 0:
            break
        if frame is not None:
            out.append(frame)
        del buf[:used]
    return out, len(buf)
