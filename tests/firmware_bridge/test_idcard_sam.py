"""Resident ID card SAM codec: golden frames × chunking × corruption, text block, session, photo."""

from __future__ import annotations

from typing import Any

import pytest

from firmware_bridge import idcard_sam as sam
from firmware_bridge.errors import DeviceStatusError, FrameError, ResidentIdError
from firmware_bridge.sim.idcard import SamResponder

# Hand-written from the protocol: LEN 00 03, CMD 20, PARA 01, CHK = 00^03^20^01 = 0x22.
FIND_BYTES = bytes.fromhex("AAAAAA9669 0003 2001 22")
SELECT_BYTES = bytes.fromhex("AAAAAA9669 0003 2002 21")
READ_BYTES = bytes.fromhex("AAAAAA9669 0003 3001 32")
# "no card": LEN 00 04, SW 00 00 80, CHK = 00^04^00^00^80 = 0x84
NO_CARD_BYTES = bytes.fromhex("AAAAAA9669 0004 000080 84")
# find OK: LEN 00 08, SW 00 00 9F, 4 data bytes 0, CHK = 08^9F = 0x97
FOUND_BYTES = bytes.fromhex("AAAAAA9669 0008 00009F 00000000 97")

INFO = sam.BaseInfo(name="张三", id_number="11010519491231002X", sex="2", birth="19491231", address="某县某乡")
PHOTO = bytes(range(256)) * 4  # stands in for the encrypted photo


def test_golden_commands_and_replies() -> None:
    assert sam.encode(sam.FIND) == FIND_BYTES
    assert sam.encode(sam.SELECT) == SELECT_BYTES
    assert sam.encode(sam.READ_TEXT) == READ_BYTES
    assert sam.encode(sam.SamReply(0, 0, sam.Status.NO_CARD)) == NO_CARD_BYTES
    assert sam.encode(sam.SamReply(0, 0, sam.Status.FOUND, bytes(4))) == FOUND_BYTES
    assert sam.decode_command(FIND_BYTES) == (10, sam.FIND)
    assert sam.decode_reply(FOUND_BYTES) == (len(FOUND_BYTES), sam.SamReply(0, 0, 0x9F, bytes(4)))


def read_reply_bytes() -> bytes:
    return sam.encode(sam.SamReply(0, 0, sam.Status.OK, sam.encode_base_info(INFO, PHOTO)))


def test_read_reply_layout() -> None:
    raw = read_reply_bytes()
    # preamble 5 + LEN 2 + SW 3 + lengths 4 + text 256 + photo 1024 + CHK 1
    assert len(raw) == 5 + 2 + 3 + 4 + 256 + 1024 + 1
    assert raw[5:7] == (3 + 4 + 256 + 1024 + 1).to_bytes(2, "big")
    assert raw[10:14] == bytes.fromhex("0100 0400")
    assert raw[14:18] == "张三".encode("utf-16-le")
    id_offset = 14 + 30 + 2 + 4 + 16 + 70
    assert raw[id_offset : id_offset + 36] == "11010519491231002X".encode("utf-16-le")


@pytest.mark.parametrize("how", ["whole", "halves", "bytewise"])
def test_replies_in_every_chunking_back_to_back(how: str, decode_all: Any, chunkings: Any) -> None:
    data = NO_CARD_BYTES + FOUND_BYTES + read_reply_bytes()
    frames, left = decode_all(sam.decode_reply, chunkings(data)[how])
    assert [f.sw3 for f in frames] == [0x80, 0x9F, 0x90] and left == 0
    assert sam.parse_base_info(frames[2].data) == sam.IdCardRead("11010519491231002X", "张三")


@pytest.mark.parametrize("how", ["whole", "bytewise"])
def test_garbage_before_after_and_partial_preambles(how: str, decode_all: Any, chunkings: Any) -> None:
    data = b"\x00\xaa\xaa\x13\xaa\xaa\xaa\x96" + FIND_BYTES + b"\xaa\xaa\xaa" + SELECT_BYTES + b"\x55\xaa"
    frames, left = decode_all(sam.decode_command, chunkings(data)[how])
    assert frames == [sam.FIND, sam.SELECT]
    assert left == 1  # a trailing 0xAA may start a preamble: kept, waiting


def test_bad_checksum_skipped_next_frame_found(decode_all: Any) -> None:
    bad = FIND_BYTES[:-1] + b"\x23"
    frames, left = decode_all(sam.decode_command, [bad + READ_BYTES])
    assert frames == [sam.READ_TEXT] and left == 0


def test_bad_length_skipped(decode_all: Any) -> None:
    too_long = sam.PREAMBLE + (sam.MAX_LENGTH + 1).to_bytes(2, "big") + b"\x20\x01"
    too_short = sam.PREAMBLE + b"\x00\x01\x01"
    frames, _ = decode_all(sam.decode_command, [too_long + too_short + FIND_BYTES])
    assert frames == [sam.FIND]


def test_truncated_frame_then_good(decode_all: Any, chunkings: Any) -> None:
    # The declared length swallows the next frame's start; the checksum fails and the hunt resumes.
    data = FOUND_BYTES[:9] + NO_CARD_BYTES + NO_CARD_BYTES
    frames, _ = decode_all(sam.decode_reply, chunkings(data)["bytewise"])
    assert frames and all(f.sw3 == 0x80 for f in frames)


def test_need_more() -> None:
    assert sam.decode_reply(FOUND_BYTES[:3]) == (0, None)
    assert sam.decode_reply(FOUND_BYTES[:8]) == (0, None)
    assert sam.decode_reply(FOUND_BYTES[:-1]) == (0, None)


def test_text_block_checks() -> None:
    with pytest.raises(FrameError):
        sam.parse_base_info(b"\x01\x00")
    with pytest.raises(FrameError):
        sam.parse_base_info(sam.encode_base_info(INFO)[:-10])
    bad = sam.BaseInfo(name="李四", id_number="110105194912310021")
    with pytest.raises(ResidentIdError):
        sam.parse_base_info(sam.encode_base_info(bad))
    with pytest.raises(FrameError):
        sam.encode_text(sam.BaseInfo(name="一" * 16, id_number="11010519491231002X"))


def test_parsed_read_keeps_no_photo() -> None:
    read = sam.parse_base_info(sam.encode_base_info(INFO, PHOTO))
    assert set(read.__slots__) == {"id_number", "name"}
    assert PHOTO[:16] not in repr(read).encode()


def test_session_against_the_simulator_responder() -> None:
    responder = SamResponder()
    session = sam.Session()

    def step() -> sam.IdCardRead | None:
        command = session.command()
        reply_bytes = sam.encode(responder.handle(sam.decode_command(sam.encode(command))[1]))  # type: ignore[arg-type]
        return session.on_reply(sam.decode_reply(reply_bytes)[1])  # type: ignore[arg-type]

    assert step() is None and session.step is sam.Step.FIND  # no card
    responder.place(INFO)
    assert step() is None and session.step is sam.Step.SELECT
    assert step() is None and session.step is sam.Step.READ
    assert step() == sam.IdCardRead("11010519491231002X", "张三")
    assert step() is None and session.step is sam.Step.FIND  # read once per placement
    responder.lift()
    responder.place(INFO)
    assert [step(), step(), step()][-1] is not None


def test_session_raises_on_failures() -> None:
    session = sam.Session()
    session.on_reply(sam.SamReply(0, 0, sam.Status.FOUND, bytes(4)))
    with pytest.raises(DeviceStatusError) as err:
        session.on_reply(sam.SamReply(0, 0, sam.Status.SELECT_FAILED))
    assert err.value.status == 0x81 and session.step is sam.Step.FIND
    with pytest.raises(DeviceStatusError):
        session.on_reply(sam.SamReply(0, 0, 0x42))
