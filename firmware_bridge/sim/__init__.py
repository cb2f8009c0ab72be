"""Device simulators that speak our codecs from the device side over pseudo-terminals.

A simulator plays a tap schedule: a list of taps, each a card (as the simulated reader knows
it), the delay in seconds before the tap, an optional hold time (a card left on the reader) and
an optional name (ID cards). The schedule comes from a YAML/JSON file::

    - {card: "0012345678", delay: 1.0}
    - {card: "00ABCDEF01", delay: 2.5, hold: 1.0}

or from repeated `--tap CARD[@DELAY[@HOLD]]` arguments.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from firmware_bridge.errors import DeviceIOError, SimulatorError
from firmware_bridge.sim.pty import Pty

log = logging.getLogger(__name__)


class Tap(BaseModel):
    """One scheduled tap."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    card: str = Field(min_length=1, max_length=64)
    delay: float = Field(default=0.0, ge=0, le=86400)
    hold: float = Field(default=0.0, ge=0, le=3600)
    name: str | None = Field(default=None, max_length=15)


_TAPS = TypeAdapter(list[Tap])


def load_schedule(path: str | Path) -> list[Tap]:
    """Read a YAML or JSON schedule file (a list of taps)."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        raw = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
        return _TAPS.validate_python(raw or [])
    except (ValueError, yaml.YAMLError) as exc:
        raise SimulatorError(f"bad schedule {path}: {exc}") from exc


def parse_tap(arg: str) -> Tap:
    """Parse CARD[@DELAY[@HOLD]]."""
    parts = arg.split("@")
    try:
        return Tap(
            card=parts[0],
            delay=float(parts[1]) if len(parts) > 1 and parts[1] else 0.0,
            hold=float(parts[2]) if len(parts) > 2 and parts[2] else 0.0,
        )
    except (ValueError, ValidationError) as exc:
        raise SimulatorError(f"bad --tap {arg!r}: expected CARD[@DELAY[@HOLD]]") from exc


def base_parser(description: str) -> argparse.ArgumentParser:
    """Arguments every reader simulator takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--schedule", type=Path, help="YAML or JSON list of taps")
    p.add_argument("--tap", action="append", default=[], metavar="CARD[@DELAY[@HOLD]]",
                   help="a tap; repeatable; played after --schedule")
    p.add_argument("--link", type=Path, help="symlink to create to the pty, e.g. /tmp/yangyi-reader0")
    p.add_argument("--start-delay", type=float, default=0.0,
                   help="seconds to wait after printing the path before the first tap")
    p.add_argument("--loop", action="store_true", help="play the schedule again and again")
    p.add_argument("--linger", type=float, default=None,
                   help="seconds to keep the pty open after the schedule (default: until interrupted)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def taps_from_args(args: argparse.Namespace) -> list[Tap]:
    """The schedule file's taps, then the --tap ones."""
    taps = load_schedule(args.schedule) if args.schedule else []
    taps += [parse_tap(a) for a in args.tap]
    return taps


def stop_on_signals() -> threading.Event:
    """An event set by SIGINT/SIGTERM so a simulator can close its pty cleanly."""
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)
    return stop


def announce(path: str) -> None:
    """Print the device path on stdout (first line), for scripts and tests to pick up."""
    sys.stdout.write(path + "\n")
    sys.stdout.flush()


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)


def parse_cli(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[Tap]]:
    """Parse arguments and the schedule; exit 2 with a message on a bad schedule."""
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    try:
        return args, taps_from_args(args)
    except SimulatorError as exc:
        sys.stderr.write(f"{exc}\n")
        raise SystemExit(2) from exc


def play(
    pty: Pty,
    taps: Sequence[Tap],
    encode_tap: Callable[[Tap], bytes],
    stop: threading.Event,
    *,
    repeat_interval: float | None = None,
) -> int:
    """Write each tap's bytes after its delay; repeat while held if `repeat_interval` is set.

    Returns the number of taps written. Stops early when `stop` is set.
    """
    written = 0
    for tap in taps:
        if stop.wait(tap.delay):
            break
        frame = encode_tap(tap)
        pty.write(frame)
        log.info("tap %s", tap.card)
        written += 1
        if repeat_interval and tap.hold > 0:
            held = 0.0
            while held + repeat_interval <= tap.hold and not stop.wait(repeat_interval):
                held += repeat_interval
                pty.write(frame)
    return written


def serve_writer(
    args: argparse.Namespace,
    taps: Sequence[Tap],
    encode_tap: Callable[[Tap], bytes],
    *,
    repeat_interval: float | None = None,
) -> int:
    """Open the pty, announce it, play the schedule (looping if asked), then linger; exit code."""
    stop = stop_on_signals()
    with Pty(args.link) as pty:
        announce(pty.path)
        if stop.wait(args.start_delay):
            return 0
        try:
            while True:
                play(pty, taps, encode_tap, stop, repeat_interval=repeat_interval)
                if not args.loop or stop.is_set() or not taps:
                    break
            stop.wait(args.linger)
        except DeviceIOError as exc:
            log.error("simulator stopped: %s", exc)
            return 1
    return 0
