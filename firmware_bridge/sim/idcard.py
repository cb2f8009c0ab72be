"""Resident ID card SAM reader simulator: answers find/select/read on a pty like a SAM module.

Each scheduled tap places an ID card (`card` = the 18-character number, `name` optional) on
the reader after `delay` seconds for `hold` seconds (default 1.5). As on real readers [A], a card
is found once per placement: after it has been read, find answers "no card" until the card is
lifted and placed again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from firmware_bridge import idcard_sam as sam
from firmware_bridge import residentid
from firmware_bridge.errors import DeviceIOError, ResidentIdError
from firmware_bridge.sim import Tap, announce, base_parser, parse_cli, stop_on_signals
from firmware_bridge.sim.pty import Pty

log = logging.getLogger(__name__)

DEFAULT_HOLD_SECONDS = 1.5
DEFAULT_NAME = "测试"
IIN = bytes(4)
SERIAL = bytes(8)


class SamResponder:
    """The reader's side of the protocol, without I/O: a card is present or not."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._card: sam.BaseInfo | None = None
        self._state = "idle"  # idle → found → selected → halted (read done)

    def place(self, info: sam.BaseInfo) -> None:
        with self._lock:
            self._card, self._state = info, "idle"

    def lift(self) -> None:
        with self._lock:
            self._card, self._state = None, "idle"

    def handle(self, cmd: sam.SamCommand) -> sam.SamReply:
        """The reply to one command."""
        with self._lock:
            key = (cmd.cmd, cmd.para)
            if key == (sam.FIND.cmd, sam.FIND.para):
                if self._card is not None and self._state != "halted":
                    self._state = "found"
                    return sam.SamReply(0, 0, sam.Status.FOUND, IIN)
                return sam.SamReply(0, 0, sam.Status.NO_CARD)
            if key == (sam.SELECT.cmd, sam.SELECT.para):
                if self._card is not None and self._state == "found":
                    self._state = "selected"
                    return sam.SamReply(0, 0, sam.Status.OK, SERIAL)
                return sam.SamReply(0, 0, sam.Status.SELECT_FAILED)
            if key == (sam.READ_TEXT.cmd, sam.READ_TEXT.para):
                if self._card is not None and self._state == "selected":
                    self._state = "halted"
                    return sam.SamReply(0, 0, sam.Status.OK, sam.encode_base_info(self._card))
                return sam.SamReply(0, 0, sam.Status.READ_FAILED)
            if cmd.cmd in (sam.Cmd.RESET, sam.Cmd.SAM_STATUS):
                return sam.SamReply(0, 0, sam.Status.OK)
            if cmd.cmd == sam.Cmd.SAM_ID:
                return sam.SamReply(0, 0, sam.Status.OK, bytes(16))
            return sam.SamReply(0, 0, sam.Status.BAD_COMMAND)


def base_info(tap: Tap) -> sam.BaseInfo:
    """The card's text fields, birth date and sex taken from the ID number."""
    rid = residentid.parse(tap.card)
    return sam.BaseInfo(
        name=tap.name or DEFAULT_NAME,
        id_number=rid.number,
        sex="1" if rid.sex is residentid.Sex.MALE else "2",
        birth=rid.birth_date.strftime("%Y%m%d"),
        address="模拟县模拟乡",
        authority="模拟县公安局",
        valid_from="20200101",
        valid_until="长期",
    )


def play_cards(responder: SamResponder, taps: Sequence[Tap], stop: threading.Event, loop: bool) -> None:
    """Place and lift the scheduled cards."""
    while True:
        for tap in taps:
            if stop.wait(tap.delay):
                return
            responder.place(base_info(tap))
            log.info("card %s placed", residentid.mask(tap.card))
            if stop.wait(tap.hold or DEFAULT_HOLD_SECONDS):
                return
            responder.lift()
        if not loop or not taps:
            return


def answer(pty: Pty, responder: SamResponder, stop: threading.Event, until: threading.Event) -> None:
    """Read commands from the pty and write replies until `stop` or `until` is set."""
    buf = bytearray()
    while not stop.is_set() and not until.is_set():
        chunk = pty.read(timeout=0.05)
        if not chunk:
            continue
        buf += chunk
        while buf:
            used, cmd = sam.decode_command(buf)
            if used == 0:
                break
            del buf[:used]
            if cmd is not None:
                pty.write(sam.encode(responder.handle(cmd)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = base_parser("Simulate a resident ID card SAM reader on a pseudo-terminal.")
    args, taps = parse_cli(parser, argv)
    try:
        for tap in taps:
            base_info(tap)
    except ResidentIdError as exc:
        parser.error(f"bad ID number: {exc}")
    stop = stop_on_signals()
    responder = SamResponder()
    done = threading.Event()

    def schedule() -> None:
        if not stop.wait(args.start_delay):
            play_cards(responder, taps, stop, args.loop)
        if args.linger is not None:
            stop.wait(args.linger)
            done.set()

    with Pty(args.link) as pty:
        announce(pty.path)
        player = threading.Thread(target=schedule, name="idcard-schedule", daemon=True)
        player.start()
        try:
            answer(pty, responder, stop, done)
        except DeviceIOError as exc:
            log.error("simulator stopped: %s", exc)
            return 1
        finally:
            stop.set()
            player.join(timeout=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
