"""Line-printing card reader simulator: one printed card number per line into a pty."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from firmware_bridge import lines
from firmware_bridge.errors import FrameError
from firmware_bridge.sim import Tap, base_parser, parse_cli, serve_writer

ENDINGS = {"crlf": b"\r\n", "cr": b"\r", "lf": b"\n"}


def encode_tap(tap: Tap, ending: bytes = b"\r\n") -> bytes:
    """The tap's card printed as the reader prints it (the card text is the printing)."""
    return lines.encode(lines.CardLine(tap.card), ending)


def main(argv: Sequence[str] | None = None) -> int:
    parser = base_parser("Simulate a line-printing serial card reader on a pseudo-terminal.")
    parser.add_argument("--ending", choices=sorted(ENDINGS), default="crlf", help="line terminator")
    args, taps = parse_cli(parser, argv)
    encoder = partial(encode_tap, ending=ENDINGS[args.ending])
    try:
        for tap in taps:
            encoder(tap)
    except FrameError as exc:
        parser.error(str(exc))
    return serve_writer(args, taps, encoder)


if __name__ == "__main__":
    raise SystemExit(main())
