"""EM4100 reader simulator: plays a tap schedule into a pty as an RDM6300-style module would."""

from __future__ import annotations

from collections.abc import Sequence

from firmware_bridge import em4100
from firmware_bridge.errors import FrameError
from firmware_bridge.sim import Tap, base_parser, parse_cli, serve_writer

# A held card repeats its frame about this often.
REPEAT_INTERVAL_SECONDS = 0.1


def encode_tap(tap: Tap) -> bytes:
    """One frame for a tap's card (10 hex characters)."""
    return em4100.encode(em4100.Em4100Frame.from_hex(tap.card))


def main(argv: Sequence[str] | None = None) -> int:
    parser = base_parser("Simulate an EM4100 125 kHz reader module on a pseudo-terminal (9600 8N1).")
    args, taps = parse_cli(parser, argv)
    try:
        for tap in taps:
            encode_tap(tap)
    except FrameError as exc:
        parser.error(str(exc))
    return serve_writer(args, taps, encode_tap, repeat_interval=REPEAT_INTERVAL_SECONDS)


if __name__ == "__main__":
    raise SystemExit(main())
