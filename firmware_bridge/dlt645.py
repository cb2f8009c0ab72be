"""DL/T 645-2007 meter frames: a sans-IO codec for reading electricity meters over RS-485.

Wire format (every field one byte unless noted)::

    [FE FE FE FE] 68 A0 A1 A2 A3 A4 A5 68 C L D0 .. D(L-1) CS 16
     0-4 wake-up  |  address, 6 bytes  |  |  | data, L bytes  |  end
     bytes        start                |  |  length
                                       |  control
                                       second start

- Preamble: up to four 0xFE wake-up bytes before a frame; senders may omit them, receivers skip
  them like any other byte before 0x68.
- Address: 12 BCD digits, low byte first. Meter number 123456789012 travels as 12 90 78 56 34 12.
  AA AA AA AA AA AA is the wildcard used to ask "who is there" (read address, 0x13).
- Control: 0x11 read data, 0x91 its normal reply, 0xD1 its error reply (one error byte: bit 1 "no
  such data", bit 2 "password/unauthorised"...), 0x13 read address, 0x93 its reply.
  Bit 7 marks a reply, bit 6 an error reply.
- Data: every byte has 0x33 added on the wire (mod 256) and subtracted on receipt. A read request
  carries the 4-byte data identifier (DI), low byte first; a read reply carries the DI then the
  value, BCD, low byte first; a signed value keeps its sign in bit 7 of the most significant byte.
- CS: sum of every byte from the first 0x68 to the last data byte, mod 256.
- Serial: 8E1, 2400 baud is the common default for meters (9600 on newer ones); a reply starts
  within about 500 ms. Ptys cannot hold parity, so tests run 8N1; the bytes are the same.

Decoding recovers instead of crashing: bytes before a 0x68 are garbage; a 0x68 that does not start
a frame with a second 0x68 at offset 7, a matching checksum and a final 0x16 is skipped and the
hunt restarts one byte later, so a corrupted frame costs at most itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import IntEnum

from firmware_bridge.errors import DeviceStatusError, FrameError

log = logging.getLogger(__name__)

START = 0x68
END = 0x16
PREAMBLE = b"\xfe\xfe\xfe\xfe"
OFFSET = 0x33
HEADER_LEN = 10  # 68 + 6 address + 68 + control + length
MIN_FRAME_LEN = HEADER_LEN + 2  # no data: + checksum + end
MAX_DATA_LEN = 200  # the standard caps the data field at 200 bytes for reads
WILDCARD_ADDRESS = "AAAAAAAAAAAA"
DEFAULT_BAUDRATE = 2400
DEFAULT_PARITY = "E"
REPLY_TIMEOUT_SECONDS = 0.5


class Control(IntEnum):
    READ = 0x11
    READ_REPLY = 0x91
    READ_ERROR = 0xD1
    READ_ADDRESS = 0x13
    READ_ADDRESS_REPLY = 0x93


class ErrorBit(IntEnum):
    """Bits of the error byte of an error reply."""

    OTHER = 0x01
    NO_DATA = 0x02  # no such data identifier
    UNAUTHORISED = 0x04
    BAUD_UNCHANGEABLE = 0x08
    YEAR_ZONES = 0x10
    DAY_SLOTS = 0x20
    TARIFFS = 0x40


@dataclass(frozen=True, slots=True)
class DataId:
    """A data identifier and how its value is printed: `digits` BCD digits, `decimals` after the point."""

    di: int
    name: str
    unit: str
    digits: int
    decimals: int
    signed: bool

    @property
    def size(self) -> int:
        return (self.digits + 1) // 2

    @property
    def format(self) -> str:
        whole = "X" * (self.digits - self.decimals)
        return f"{whole}.{'X' * self.decimals}" if self.decimals else whole

    @property
    def limit(self) -> float:
        """The largest magnitude the format can carry (one bit fewer when signed)."""
        top = 8 if self.signed else 10
        scale = 10**self.decimals
        return (top * 10 ** (self.digits - 1) - 1) / scale


ENERGY_FORWARD_ACTIVE = DataId(0x00010000, "energy.import", "kWh", 8, 2, False)  # XXXXXX.XX
VOLTAGE_A = DataId(0x02010100, "voltage", "V", 4, 1, False)  # XXX.X
CURRENT_A = DataId(0x02020100, "current", "A", 6, 3, True)  # XXX.XXX
ACTIVE_POWER_TOTAL = DataId(0x02030000, "power", "kW", 6, 4, True)  # XX.XXXX
POWER_FACTOR_TOTAL = DataId(0x02060000, "power_factor", "", 4, 3, True)  # X.XXX
FREQUENCY = DataId(0x02800002, "frequency", "Hz", 4, 2, False)  # XX.XX

DATA_IDS: dict[int, DataId] = {
    d.di: d
    for d in (
        ENERGY_FORWARD_ACTIVE, VOLTAGE_A, CURRENT_A, ACTIVE_POWER_TOTAL, POWER_FACTOR_TOTAL, FREQUENCY
    )
}


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame: the meter address as printed (12 digits, or AAAAAAAAAAAA), control, plain data."""

    address: str
    control: int
    data: bytes = b""

    @property
    def is_reply(self) -> bool:
        return bool(self.control & 0x80)

    @property
    def is_error(self) -> bool:
        return bool(self.control & 0x40)


def checksum(data: bytes | bytearray | memoryview) -> int:
    """Sum of bytes mod 256 (from the first 0x68 through the last data byte)."""
    return sum(data) & 0xFF


def address_to_wire(address: str) -> bytes:
    """Meter number (12 digits as printed) → 6 address bytes, low byte first."""
    if len(address) != 12:
        raise FrameError(f"meter address must have 12 digits, got {address!r}")
    if address.upper() == WILDCARD_ADDRESS:
        return b"\xaa" * 6
    if not address.isdigit():
        raise FrameError(f"meter address must be decimal digits, got {address!r}")
    return bytes(int(address[i : i + 2], 16) for i in range(10, -1, -2))


def address_from_wire(raw: bytes) -> str:
    """6 address bytes, low byte first → meter number as printed."""
    return "".join(f"{b:02X}" for b in reversed(raw))


def encode(frame: Frame, *, preamble: bool = True) -> bytes:
    """Frame → wire bytes, with the 0xFE wake-up preamble unless told otherwise."""
    if len(frame.data) > MAX_DATA_LEN:
        raise FrameError(f"data too long: {len(frame.data)} bytes")
    body = bytearray([START])
    body += address_to_wire(frame.address)
    body += bytes([START, frame.control & 0xFF, len(frame.data)])
    body += bytes((b + OFFSET) & 0xFF for b in frame.data)
    body.append(checksum(body))
    body.append(END)
    return (PREAMBLE if preamble else b"") + bytes(body)


@dataclass(frozen=True, slots=True)
class DecodeResult:
    used: int
    frame: Frame | None
    error: str | None = None  # "checksum", "layout" or "garbage" when bytes were skipped


def decode_verbose(buf: bytes | bytearray | memoryview) -> DecodeResult:
    """Like decode(), also saying why bytes were skipped (for health counters and logs)."""
    view = bytes(buf)
    start = view.find(START)
    if start < 0:
        return DecodeResult(len(view), None, "garbage" if view.strip(b"\xfe") else None)
    if start > 0:
        skipped = view[:start]
        return DecodeResult(start, None, "garbage" if skipped.strip(b"\xfe") else None)
    if len(view) < HEADER_LEN:
        return DecodeResult(0, None)
    if view[7] != START:
        return DecodeResult(1, None, "layout")
    length = view[9]
    if length > MAX_DATA_LEN:
        return DecodeResult(1, None, "layout")
    total = HEADER_LEN + length + 2
    if len(view) < total:
        return DecodeResult(0, None)
    if view[total - 1] != END:
        return DecodeResult(1, None, "layout")
    if checksum(view[: total - 2]) != view[total - 2]:
        return DecodeResult(1, None, "checksum")
    data = bytes((b - OFFSET) & 0xFF for b in view[HEADER_LEN : HEADER_LEN + length])
    return DecodeResult(total, Frame(address_from_wire(view[1:7]), view[8], data))


def decode(buf: bytes | bytearray | memoryview) -> tuple[int, Frame | None]:
    """Find the next frame in buf: (bytes to drop, frame or None); (0, None) means "need more".

    A positive count with no frame means skipped garbage: drop it and call again.
    """
    result = decode_verbose(buf)
    return result.used, result.frame


class FrameDecoder:
    """Stateful convenience around decode(): feed bytes, get frames, count what was thrown away."""

    def __init__(self, source: str = "") -> None:
        self.source = source
        self._buf = bytearray()
        self.checksum_errors = 0
        self.layout_errors = 0
        self.garbage_bytes = 0
        self._logged: set[str] = set()

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames: list[Frame] = []
        offset = 0
        while True:
            result = decode_verbose(self._buf)
            if result.used == 0:
                break
            if result.error == "checksum":
                self.checksum_errors += 1
            elif result.error == "layout":
                self.layout_errors += 1
            elif result.error == "garbage":
                self.garbage_bytes += result.used
            if result.error and result.error not in self._logged:
                self._logged.add(result.error)
                log.warning("DL/T 645 %s error at offset %d from %s", result.error, offset, self.source or "?")
            offset += result.used
            del self._buf[: result.used]
            if result.frame is not None:
                frames.append(result.frame)
        return frames

    @property
    def pending(self) -> int:
        return len(self._buf)

    def clear(self) -> None:
        self._buf.clear()


def di_to_bytes(di: int) -> bytes:
    return di.to_bytes(4, "little")


def encode_value(data_id: DataId, value: float) -> bytes:
    """A value → its BCD bytes (low byte first), sign in bit 7 of the top byte if signed."""
    scaled = round(abs(value) * 10**data_id.decimals)
    if value < 0 and not data_id.signed:
        raise FrameError(f"{data_id.name} cannot be negative: {value}")
    if abs(value) > data_id.limit:
        raise FrameError(f"{data_id.name} {value} does not fit {data_id.format}")
    digits = f"{scaled:0{data_id.size * 2}d}"
    raw = bytearray(int(digits[i : i + 2], 16) for i in range(len(digits) - 2, -1, -2))
    if value < 0 and scaled:
        raw[-1] |= 0x80
    return bytes(raw)


def decode_value(data_id: DataId, raw: bytes) -> float:
    """BCD bytes (low byte first) → value; a nibble above 9 is a FrameError."""
    if len(raw) != data_id.size:
        raise FrameError(f"{data_id.name}: expected {data_id.size} bytes, got {len(raw)}")
    data = bytearray(raw)
    negative = False
    if data_id.signed and data[-1] & 0x80:
        negative = True
        data[-1] &= 0x7F
    number = 0
    for byte in reversed(data):
        hi, lo = byte >> 4, byte & 0x0F
        if hi > 9 or lo > 9:
            raise FrameError(f"{data_id.name}: byte {byte:02X} is not BCD")
        number = number * 100 + hi * 10 + lo
    value = number / 10**data_id.decimals
    return -value if negative else value


def read_request(address: str, di: int) -> Frame:
    """The frame asking meter `address` for data identifier `di`."""
    return Frame(address, Control.READ, di_to_bytes(di))


def read_address_request() -> Frame:
    """The frame asking the one meter on a point-to-point line for its address."""
    return Frame(WILDCARD_ADDRESS, Control.READ_ADDRESS)


def read_reply(address: str, di: int, value: float) -> Frame:
    """A meter's normal reply to a read (used by the simulator)."""
    return Frame(address, Control.READ_REPLY, di_to_bytes(di) + encode_value(DATA_IDS[di], value))


def error_reply(address: str, error: int = ErrorBit.NO_DATA) -> Frame:
    """A meter's error reply to a read (used by the simulator)."""
    return Frame(address, Control.READ_ERROR, bytes([error & 0xFF]))


def parse_read_reply(frame: Frame, address: str, di: int) -> float:
    """The value in `frame` if it is meter `address`'s reply to reading `di`.

    Raises DeviceStatusError for an error reply and FrameError for a reply to something else.
    """
    if frame.address != address:
        raise FrameError(f"reply from {frame.address}, expected {address}")
    if frame.control == Control.READ_ERROR:
        code = frame.data[0] if frame.data else 0
        raise DeviceStatusError(f"meter {address} refused DI {di:08X}: error 0x{code:02X}", status=code)
    if frame.control != Control.READ_REPLY:
        raise FrameError(f"unexpected control 0x{frame.control:02X}")
    if frame.data[:4] != di_to_bytes(di):
        raise FrameError(f"reply for DI {int.from_bytes(frame.data[:4], 'little'):08X}, expected {di:08X}")
    data_id = DATA_IDS.get(di)
    if data_id is None:
        raise FrameError(f"unknown DI {di:08X}")
    return decode_value(data_id, frame.data[4:])


def is_reply_to(frame: Frame, request: Frame) -> bool:
    """Whether `frame` answers `request` (same meter, reply or error reply to the same control)."""
    if not frame.is_reply or (frame.control & 0x1F) != (request.control & 0x1F):
        return False
    return request.address.upper() == WILDCARD_ADDRESS or frame.address == request.address
