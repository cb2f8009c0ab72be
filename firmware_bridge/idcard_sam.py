"""Resident ID card (二代身份证) SAM readers: sans-IO frame codec, text decoding, polling session.

Wire format, UART 8N1 (115200 baud by default; 57600/38400/19200/9600 settable)::

    host → reader:  AA AA AA 96 69 | LEN_H LEN_L | CMD | PARA | DATA… | CHK
    reader → host:  AA AA AA 96 69 | LEN_H LEN_L | SW1 | SW2 | SW3 | DATA… | CHK

    LEN  big endian = number of bytes after LEN, CHK included (command: 3 + len(DATA),
         reply: 4 + len(DATA))
    CHK  XOR of every byte from LEN_H to the last DATA byte (the preamble is not included)

Commands used: find card 20 01, select card 20 02, read base information 30 01 (others exist:
reset 10 FF, SAM status 11 FF, SAM id 12 FF). SW1 SW2 pass on the card's APDU status (00 00 when
all is well); SW3 is the reader's own status:

    0x90 success · 0x9F find card succeeded (DATA = 4 bytes) · 0x80 no card found ·
    0x81 select failed · 0x41 read failed · 0x10 bad checksum from host · 0x11 bad length ·
    0x21 bad command · 0x31/0x32/0x33 card/reader authentication or verification failed ·
    0x40 wrong card · 0x60 reader self-test failed · 0x66 reader not authorised

Read base information reply DATA = text length (2, BE, 256) | photo length (2, BE, 1024) |
text (256 bytes UCS-2 LE) | photo (1024 bytes, encrypted WLT). Text fields, in bytes:
name 30, sex 2, nation 4, birth date 16 (YYYYMMDD), address 70, ID number 36, issuing authority
30, valid from 16, valid until 16, reserved 36; right-padded with spaces. We keep the name and
the ID number only; the photo is never decoded or stored: it lives in the reply frame until
`parse_base_info` has run, and the serial input wipes its receive buffer after each reply.

Assumptions [A] (from public descriptions of the SAM_V protocol, not from the GA 467 text):
the 0x9F find reply carries 4 data bytes and the select reply 8; a card stays "found" once per
placement (after a read the reader answers 0x80 until the card is lifted and put back), which
`Session` does not rely on (the input de-bounces too).

`decode_command` / `decode_reply` return `(0, None)` for "need more", `(n, None)` for n garbage or
corrupt bytes dropped (keep calling), `(n, frame)` for one frame. Frames longer than MAX_LENGTH
are treated as corrupt.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from firmware_bridge import residentid
from firmware_bridge.errors import DeviceStatusError, FrameError

PREAMBLE = b"\xaa\xaa\xaa\x96\x69"
HEADER_SIZE = len(PREAMBLE) + 2
MAX_LENGTH = 4096
TEXT_SIZE = 256
PHOTO_SIZE = 1024

# (field, size in bytes) in the 256-byte text block.
TEXT_FIELDS: tuple[tuple[str, int], ...] = (
    ("name", 30),
    ("sex", 2),
    ("nation", 4),
    ("birth", 16),
    ("address", 70),
    ("id_number", 36),
    ("authority", 30),
    ("valid_from", 16),
    ("valid_until", 16),
    ("reserved", 36),
)


class Cmd(IntEnum):
    RESET = 0x10
    SAM_STATUS = 0x11
    SAM_ID = 0x12
    CARD = 0x20
    READ = 0x30


class Status(IntEnum):
    """SW3: the reader's own status."""

    OK = 0x90
    FOUND = 0x9F
    BAD_CHECKSUM = 0x10
    BAD_LENGTH = 0x11
    BAD_COMMAND = 0x21
    UNKNOWN_ERROR = 0x24
    CARD_AUTH_FAILED = 0x31
    READER_AUTH_FAILED = 0x32
    VERIFY_FAILED = 0x33
    WRONG_CARD = 0x40
    READ_FAILED = 0x41
    SELF_TEST_FAILED = 0x60
    NOT_AUTHORISED = 0x66
    NO_CARD = 0x80
    SELECT_FAILED = 0x81


@dataclass(frozen=True, slots=True)
class SamCommand:
    cmd: int
    para: int
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class SamReply:
    sw1: int
    sw2: int
    sw3: int
    data: bytes = b""

    @property
    def ok(self) -> bool:
        return self.sw3 in (Status.OK, Status.FOUND)


FIND = SamCommand(Cmd.CARD, 0x01)
SELECT = SamCommand(Cmd.CARD, 0x02)
READ_TEXT = SamCommand(Cmd.READ, 0x01)


def checksum(data: bytes | memoryview) -> int:
    """XOR of the bytes from LEN_H to the last data byte."""
    value = 0
    for b in data:
        value ^= b
    return value


def _pack(body: bytes) -> bytes:
    length = len(body) + 1
    if length > MAX_LENGTH:
        raise FrameError(f"SAM frame too long: {length} bytes")
    head = length.to_bytes(2, "big")
    return PREAMBLE + head + body + bytes([checksum(head + body)])


def encode(frame: SamCommand | SamReply) -> bytes:
    """Encode a command (host side) or a reply (reader side)."""
    if isinstance(frame, SamCommand):
        return _pack(bytes([frame.cmd, frame.para]) + frame.data)
    return _pack(bytes([frame.sw1, frame.sw2, frame.sw3]) + frame.data)


def _unpack(buf: bytes | bytearray | memoryview, min_body: int) -> tuple[int, memoryview | None]:
    view = memoryview(buf)
    if len(view) == 0:
        return 0, None
    start = bytes(view).find(PREAMBLE)
    if start < 0:
        # Keep a tail that may be the start of a preamble split across reads.
        for keep in range(min(len(view), len(PREAMBLE) - 1), 0, -1):
            if bytes(view[-keep:]) == PREAMBLE[:keep]:
                return len(view) - keep, None
        return len(view), None
    if start > 0:
        return start, None
    if len(view) < HEADER_SIZE:
        return 0, None
    length = int.from_bytes(view[5:7], "big")
    if length < min_body + 1 or length > MAX_LENGTH:
        return 1, None
    end = HEADER_SIZE + length
    if len(view) < end:
        return 0, None
    if checksum(view[5 : end - 1]) != view[end - 1]:
        return 1, None
    return end, view[HEADER_SIZE : end - 1]


def decode_command(buf: bytes | bytearray | memoryview) -> tuple[int, SamCommand | None]:
    """Decode the first host command in buf (used by the simulator)."""
    used, body = _unpack(buf, 2)
    if body is None:
        return used, None
    return used, SamCommand(body[0], body[1], bytes(body[2:]))


def decode_reply(buf: bytes | bytearray | memoryview) -> tuple[int, SamReply | None]:
    """Decode the first reader reply in buf."""
    used, body = _unpack(buf, 3)
    if body is None:
        return used, None
    return used, SamReply(body[0], body[1], body[2], bytes(body[3:]))


@dataclass(frozen=True, slots=True)
class BaseInfo:
    """Every text field of the card, as the simulator writes it (the reader side keeps less)."""

    name: str
    id_number: str
    sex: str = "1"  # GB/T 2261.1: 1 male, 2 female
    nation: str = "01"  # GB 3304 code, 01 = Han
    birth: str = ""
    address: str = ""
    authority: str = ""
    valid_from: str = ""
    valid_until: str = ""
    reserved: str = ""


@dataclass(frozen=True, slots=True)
class IdCardRead:
    """What we keep from one read: the validated ID number and the name (for masked feedback)."""

    id_number: str
    name: str


def encode_text(info: BaseInfo) -> bytes:
    """The 256-byte UCS-2 LE text block."""
    out = bytearray()
    for field, size in TEXT_FIELDS:
        raw = getattr(info, field).encode("utf-16-le")
        if len(raw) > size:
            raise FrameError(f"{field} longer than {size // 2} characters")
        out += raw + " ".encode("utf-16-le") * ((size - len(raw)) // 2)
    return bytes(out)


def encode_base_info(info: BaseInfo, photo: bytes | None = None) -> bytes:
    """DATA of a read-base-information reply: lengths, text and a (placeholder) photo."""
    photo = photo if photo is not None else bytes(PHOTO_SIZE)
    text = encode_text(info)
    return len(text).to_bytes(2, "big") + len(photo).to_bytes(2, "big") + text + photo


def parse_base_info(data: bytes | memoryview) -> IdCardRead:
    """Decode the name and the ID number from a read reply's DATA; the photo part is skipped."""
    view = memoryview(data)
    if len(view) < 4:
        raise FrameError("base information reply too short")
    text_len = int.from_bytes(view[0:2], "big")
    photo_len = int.from_bytes(view[2:4], "big")
    if text_len != TEXT_SIZE or len(view) < 4 + text_len + photo_len:
        raise FrameError(f"base information lengths {text_len}+{photo_len} do not fit {len(view) - 4} bytes")
    fields: dict[str, str] = {}
    offset = 4
    for field, size in TEXT_FIELDS:
        if field in ("name", "id_number"):
            fields[field] = bytes(view[offset : offset + size]).decode("utf-16-le").strip(" \x00")
        offset += size
    number = residentid.parse(fields["id_number"]).number
    return IdCardRead(id_number=number, name=fields["name"])


class Step(IntEnum):
    FIND = 1
    SELECT = 2
    READ = 3


class Session:
    """Pure polling logic: which command to send next and what a reply means.

    find → (0x9F) select → (0x90) read → (0x90) IdCardRead, then back to find. "No card" (0x80)
    and any failure go back to find; failures other than "no card" raise DeviceStatusError
    so the caller can log them.
    """

    def __init__(self) -> None:
        self.step = Step.FIND

    def command(self) -> SamCommand:
        """The command to send now."""
        return {Step.FIND: FIND, Step.SELECT: SELECT, Step.READ: READ_TEXT}[self.step]

    def reset(self) -> None:
        self.step = Step.FIND

    def on_reply(self, reply: SamReply) -> IdCardRead | None:
        """Advance on a reply; return the read when a card has been read."""
        step, self.step = self.step, Step.FIND
        if step is Step.FIND:
            if reply.sw3 == Status.FOUND:
                self.step = Step.SELECT
                return None
            if reply.sw3 == Status.NO_CARD:
                return None
        elif step is Step.SELECT and reply.sw3 == Status.OK:
            self.step = Step.READ
            return None
        elif step is Step.READ and reply.sw3 == Status.OK:
            return parse_base_info(reply.data)
        try:
            name = Status(reply.sw3).name
        except ValueError:
            name = "UNKNOWN"
        raise DeviceStatusError(
            f"SAM reader answered {step.name} with SW {reply.sw1:02X} {reply.sw2:02X} {reply.sw3:02X} ({name})",
            status=reply.sw3,
        )
