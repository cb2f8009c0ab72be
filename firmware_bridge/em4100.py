"""EM4100 125 kHz reader modules (RDM6300 style): sans-IO frame codec and a held-card de-bouncer.

Wire format (module → host only; the host never writes), 9600 baud 8N1::

    0x02 | D0 D1 … D9 | C0 C1 | 0x03          14 bytes
    STX    10 ASCII hex  2 ASCII hex  ETX
           = 5 data bytes (version/customer byte, then the 32-bit card number, MSB first)
             checksum = XOR of the 5 data bytes

Example: card 0x0012345678 → b"\\x02" b"0012345678" b"08" b"\\x03" (0x00^0x12^0x34^0x56^0x78 = 0x08).
Modules print upper-case hex; lower case is accepted. A card held on the antenna repeats its frame
about every 50–100 ms, hence `Debouncer`.

`decode(buf)` returns `(used, frame | None)`:
  * `(0, None)`: need more bytes (a plausible frame is still arriving);
  * `(n, None)` with n > 0: n bytes dropped (garbage before STX, a bad checksum, a bad ETX, a
    non-hex character), the caller discards them and calls again: the codec keeps hunting;
  * `(14, Em4100Frame)`: one good frame.
A broken frame drops only its STX, so a good frame starting inside it is still found.
"""

from __future__ import annotations

from dataclasses import dataclass

from firmware_bridge.errors import FrameError

STX = 0x02
ETX = 0x03
FRAME_SIZE = 14
DATA_BYTES = 5
_HEX = frozenset(b"0123456789ABCDEFabcdef")


@dataclass(frozen=True, slots=True)
class Em4100Frame:
    """One read of an EM4100 card: its 5 data bytes (40 bits)."""

    data: bytes

    def __post_init__(self) -> None:
        if len(self.data) != DATA_BYTES:
            raise FrameError(f"EM4100 data must be {DATA_BYTES} bytes, got {len(self.data)}")

    @property
    def hex(self) -> str:
        """The 10 upper-case hex characters, as the module prints them."""
        return self.data.hex().upper()

    @classmethod
    def from_hex(cls, text: str) -> Em4100Frame:
        """Build from 10 hex characters; raise FrameError otherwise."""
        if len(text) != 2 * DATA_BYTES or not all(ord(c) in _HEX for c in text):
            raise FrameError(f"EM4100 id must be 10 hex characters, got {text!r}")
        return cls(bytes.fromhex(text))


def checksum(data: bytes) -> int:
    """XOR of the data bytes."""
    value = 0
    for b in data:
        value ^= b
    return value


def encode(frame: Em4100Frame) -> bytes:
    """Encode one frame as the module sends it."""
    return bytes([STX]) + frame.hex.encode() + f"{checksum(frame.data):02X}".encode() + bytes([ETX])


def decode(buf: bytes | bytearray | memoryview) -> tuple[int, Em4100Frame | None]:
    """Decode the first frame in buf; see the module docstring for the return convention."""
    buf = bytes(buf[:FRAME_SIZE]) if len(buf) >= FRAME_SIZE else bytes(buf)
    if not buf:
        return 0, None
    start = buf.find(STX)
    if start < 0:
        return len(buf), None
    if start > 0:
        return start, None
    # Reject early on a non-hex byte so a truncated frame does not hide the next STX.
    body = buf[1 : FRAME_SIZE - 1]
    if not all(b in _HEX for b in body):
        return 1, None
    if len(buf) < FRAME_SIZE:
        return 0, None
    if buf[FRAME_SIZE - 1] != ETX:
        return 1, None
    data = bytes.fromhex(body[:10].decode())
    if int(body[10:12], 16) != checksum(data):
        return 1, None
    return FRAME_SIZE, Em4100Frame(data)


class Debouncer:
    """One read per card presentation: drop repeats of a card seen within `hold_seconds`.

    The window slides: a card held on the reader keeps repeating and stays one read; once it has
    been away for `hold_seconds` it counts again. Times are monotonic seconds passed in by the
    caller, so the logic is testable without a clock.
    """

    def __init__(self, hold_seconds: float = 2.0) -> None:
        if hold_seconds < 0:
            raise ValueError("hold_seconds must be >= 0")
        self.hold_seconds = hold_seconds
        self._last_seen: dict[str, float] = {}

    def accept(self, card: str, now: float) -> bool:
        """Return True if this read of `card` at `now` is a new presentation."""
        self._last_seen = {c: t for c, t in self._last_seen.items() if now - t < self.hold_seconds}
        new = card not in self._last_seen
        self._last_seen[card] = now
        return new
