"""DL/T 645-2007 codec: golden bytes × chunking × corruption, BCD values, replies."""

from __future__ import annotations

import pytest

from firmware_bridge import dlt645 as d
from firmware_bridge.errors import DeviceStatusError, FrameError

METER = "123456789012"
# Golden frames built by the independent `dlt645` package (DLT645Protocol.build_frame).
READ_VOLTAGE = bytes.fromhex("fefefefe 68 129078563412 68 11 04 33343435 6b 16")
REPLY_VOLTAGE = bytes.fromhex("fefefefe 68 129078563412 68 91 06 33343435 3455 76 16")
REPLY_CURRENT_NEG = bytes.fromhex("fefefefe 68 129078563412 68 91 07 33343535 6745b3 4e 16")
REPLY_ENERGY = bytes.fromhex("fefefefe 68 129078563412 68 91 08 33333433 9a785634 88 16")
ERROR_NO_DATA = bytes.fromhex("fefefefe 68 129078563412 68 d1 01 35 8d 16")
READ_ADDRESS = bytes.fromhex("fefefefe 68 aaaaaaaaaaaa 68 13 00 df 16")

GOLDEN = [
    (READ_VOLTAGE, d.Frame(METER, d.Control.READ, bytes.fromhex("00010102"))),
    (REPLY_VOLTAGE, d.Frame(METER, d.Control.READ_REPLY, bytes.fromhex("00010102 0122"))),
    (REPLY_CURRENT_NEG, d.Frame(METER, d.Control.READ_REPLY, bytes.fromhex("00010202 341280"))),
    (REPLY_ENERGY, d.Frame(METER, d.Control.READ_REPLY, bytes.fromhex("00000100 67452301"))),
    (ERROR_NO_DATA, d.Frame(METER, d.Control.READ_ERROR, b"\x02")),
    (READ_ADDRESS, d.Frame(d.WILDCARD_ADDRESS, d.Control.READ_ADDRESS, b"")),
]


def feed_all(chunks: list[bytes]) -> tuple[list[d.Frame], d.FrameDecoder]:
    dec = d.FrameDecoder("test")
    frames: list[d.Frame] = []
    for chunk in chunks:
        frames += dec.feed(chunk)
    return frames, dec


def chunkings(wire: bytes) -> list[list[bytes]]:
    half = len(wire) // 2
    return [[wire], [wire[:half], wire[half:]], [bytes([b]) for b in wire]]


@pytest.mark.parametrize(("wire", "frame"), GOLDEN)
def test_encode_matches_golden(wire: bytes, frame: d.Frame) -> None:
    assert d.encode(frame) == wire
    assert d.encode(frame, preamble=False) == wire[4:]


@pytest.mark.parametrize(("wire", "frame"), GOLDEN)
@pytest.mark.parametrize("split", ["whole", "halves", "bytes"])
def test_decode_golden_in_chunks(wire: bytes, frame: d.Frame, split: str) -> None:
    chunks = dict(zip(["whole", "halves", "bytes"], chunkings(wire), strict=True))[split]
    frames, dec = feed_all(chunks)
    assert frames == [frame]
    assert dec.pending == 0
    assert dec.checksum_errors == 0


def test_decode_needs_more_on_partial_frame() -> None:
    for cut in range(5, len(REPLY_VOLTAGE)):
        used, frame = d.decode(REPLY_VOLTAGE[4:cut])
        assert (used, frame) == (0, None), cut


def test_decode_without_preamble_and_direct_api() -> None:
    used, frame = d.decode(REPLY_VOLTAGE[4:])
    assert used == len(REPLY_VOLTAGE) - 4
    assert frame == GOLDEN[1][1]


def test_garbage_before_and_after() -> None:
    wire = b"\x00\x11\x68\x22garbage" + REPLY_VOLTAGE + b"\x99\x68\x01"
    frames, dec = feed_all([wire])
    assert frames == [GOLDEN[1][1]]
    assert dec.pending == 2  # "\x99" dropped, "\x68\x01" kept: it might start the next frame
    more, _ = feed_all([wire[i : i + 3] for i in range(0, len(wire), 3)])
    assert more == [GOLDEN[1][1]]


def test_bad_checksum_is_skipped_and_next_frame_found() -> None:
    bad = bytearray(REPLY_VOLTAGE)
    bad[-2] ^= 0x01
    frames, dec = feed_all([bytes(bad) + REPLY_CURRENT_NEG])
    assert frames == [GOLDEN[2][1]]
    assert dec.checksum_errors == 1


def test_corrupted_payload_byte_fails_checksum() -> None:
    bad = bytearray(REPLY_ENERGY)
    bad[16] ^= 0x10
    frames, dec = feed_all([bytes(bad)])
    assert frames == []
    assert dec.checksum_errors == 1


def test_missing_end_byte_and_bad_second_start() -> None:
    no_end = REPLY_VOLTAGE[:-1] + b"\x00"
    bad_start = bytearray(REPLY_VOLTAGE)
    bad_start[4 + 7] = 0x00
    frames, dec = feed_all([no_end, bytes(bad_start), REPLY_ENERGY])
    assert frames == [GOLDEN[3][1]]
    assert dec.layout_errors >= 2


def test_truncated_frame_then_good_frame() -> None:
    # A frame cut short (the meter stopped talking) followed by a good one: the good one is found.
    frames, _ = feed_all([REPLY_VOLTAGE[:12], REPLY_ENERGY])
    assert frames == [GOLDEN[3][1]]


def test_two_frames_back_to_back() -> None:
    for chunks in chunkings(REPLY_VOLTAGE + REPLY_CURRENT_NEG[4:]):
        frames, _ = feed_all(chunks)
        assert frames == [GOLDEN[1][1], GOLDEN[2][1]]


def test_random_corruption_never_crashes() -> None:
    import random

    rng = random.Random(645)
    stream = b"".join(w for w, _ in GOLDEN) * 4
    for _ in range(200):
        noisy = bytearray(stream)
        for _ in range(rng.randint(1, 8)):
            noisy[rng.randrange(len(noisy))] = rng.randrange(256)
        frames, _ = feed_all([bytes(noisy[i : i + 7]) for i in range(0, len(noisy), 7)])
        assert len(frames) <= len(GOLDEN) * 4


@pytest.mark.parametrize(
    ("di", "value", "raw"),
    [
        (0x00010000, 12345.67, "67452301"),
        (0x02010100, 220.1, "0122"),
        (0x02020100, 5.5, "005500"),
        (0x02020100, -1.234, "341280"),
        (0x02030000, -12.3456, "563492"),
        (0x02030000, 1.21, "002101"),
        (0x02060000, 0.5, "0005"),
        (0x02060000, -0.875, "7588"),
        (0x02800002, 50.01, "0150"),
    ],
)
def test_value_bcd_round_trip(di: int, value: float, raw: str) -> None:
    data_id = d.DATA_IDS[di]
    assert d.encode_value(data_id, value).hex() == raw
    assert d.decode_value(data_id, bytes.fromhex(raw)) == pytest.approx(value)


def test_value_errors() -> None:
    with pytest.raises(FrameError):
        d.decode_value(d.VOLTAGE_A, bytes.fromhex("0A22"))  # not BCD
    with pytest.raises(FrameError):
        d.decode_value(d.VOLTAGE_A, bytes.fromhex("22"))  # short
    with pytest.raises(FrameError):
        d.encode_value(d.VOLTAGE_A, -1.0)  # voltage is unsigned
    with pytest.raises(FrameError):
        d.encode_value(d.ACTIVE_POWER_TOTAL, 80.0)  # XX.XXXX signed tops out at 79.9999


def test_address_conversion() -> None:
    assert d.address_to_wire(METER) == bytes.fromhex("129078563412")
    assert d.address_from_wire(bytes.fromhex("129078563412")) == METER
    with pytest.raises(FrameError):
        d.address_to_wire("12345")
    with pytest.raises(FrameError):
        d.address_to_wire("12345678901Z")


def test_parse_replies() -> None:
    _, reply = d.decode(REPLY_CURRENT_NEG)
    assert reply is None  # preamble is skipped first
    frames, _ = feed_all([REPLY_CURRENT_NEG])
    assert d.parse_read_reply(frames[0], METER, 0x02020100) == pytest.approx(-1.234)
    with pytest.raises(FrameError):
        d.parse_read_reply(frames[0], METER, 0x02010100)  # reply to another DI
    with pytest.raises(FrameError):
        d.parse_read_reply(frames[0], "000000000001", 0x02020100)
    errors, _ = feed_all([ERROR_NO_DATA])
    with pytest.raises(DeviceStatusError) as info:
        d.parse_read_reply(errors[0], METER, 0x02020100)
    assert info.value.status == d.ErrorBit.NO_DATA


def test_is_reply_to() -> None:
    request = d.read_request(METER, 0x02010100)
    assert d.is_reply_to(GOLDEN[1][1], request)
    assert d.is_reply_to(GOLDEN[4][1], request)  # error reply
    assert not d.is_reply_to(GOLDEN[0][1], request)  # a request, not a reply
    assert not d.is_reply_to(d.Frame("000000000001", d.Control.READ_REPLY, b""), request)
    addr_reply = d.Frame(METER, d.Control.READ_ADDRESS_REPLY, d.address_to_wire(METER))
    assert d.is_reply_to(addr_reply, d.read_address_request())


def test_simulator_side_builders_round_trip() -> None:
    for di, data_id in d.DATA_IDS.items():
        value = data_id.limit / 3
        wire = d.encode(d.read_reply(METER, di, value))
        frames, _ = feed_all([wire])
        got = d.parse_read_reply(frames[0], METER, di)
        assert got == pytest.approx(value, abs=10**-data_id.decimals)
