"""Line-based serial / USB-serial card readers: one card number per line, sans-IO codec.

Wire format (reader → host), any baud rate (9600 8N1 is common)::

    <card number printing> <terminator>
    terminator: CR, LF or CR LF (all accepted on decode; `encode` writes CR LF by default)

The printing is ASCII and reader-specific ("0012345678", "0305419896", "052,22136",
"04:A1:B2:C3" …); `firmware_bridge.cardid` turns it into a canonical card id. Recovery:
  * bytes that are not printable ASCII (serial noise such as 0x00, 0xFF) end the current line
    without yielding it, so noise glued to the front of a number never becomes part of it;
  * empty lines (the LF of a CR LF split across two reads) are skipped;
  * a line longer than MAX_LINE characters is dropped up to its terminator; a buffer of more than
    MAX_DROP printable bytes with no terminator at all is dropped whole.

`decode(buf)` returns `(0, None)` for "need more", `(n, None)` for n bytes dropped and
`(n, CardLine)` for one line.
"""

from __future__ import annotations

from dataclasses import dataclass

from firmware_bridge.errors import FrameError

MAX_LINE = 64
MAX_DROP = 16 * MAX_LINE
_TERMINATORS = b"\r\n"


@dataclass(frozen=True, slots=True)
class CardLine:
    """One printed card number, surrounding spaces removed."""

    text: str

    def __post_init__(self) -> None:
        if not self.text or len(self.text) > MAX_LINE or not all(_printable(ord(c)) for c in self.text):
            raise FrameError(f"not a card line: {self.text!r}")


def _printable(b: int) -> bool:
    return 0x20 <= b < 0x7F


def encode(frame: CardLine, ending: bytes = b"\r\n") -> bytes:
    """Encode one line as a reader prints it."""
    if ending not in (b"\r", b"\n", b"\r\n"):
        raise FrameError(f"line ending must be CR, LF or CRLF, got {ending!r}")
    return frame.text.encode("ascii") + ending


def decode(buf: bytes | bytearray | memoryview) -> tuple[int, CardLine | None]:
    """Decode the first line in buf; see the module docstring for the return convention."""
    data = bytes(buf)
    for i, b in enumerate(data):
        if b in _TERMINATORS:
            used = i + 1
            if b == 0x0D and used < len(data) and data[used] == 0x0A:
                used += 1
            if i > MAX_LINE:
                return used, None
            text = data[:i].decode("ascii").strip()
            return used, (CardLine(text) if text else None)
        if not _printable(b):
            return i + 1, None
    if len(data) > MAX_DROP:
        return len(data), None  # no terminator for this long: not a line reader speaking
    return 0, None
