"""`yangyi-vision`: check a camera config, count a camera or a recording locally, switch debug mode."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from edge.events import Lane
from firmware_bridge.contract import Channel

from .capture import CaptureConfig, VisionInput
from .debug import DebugConfig, DebugRecorder, cancel_request, write_request
from .synth import SCENARIOS

log = logging.getLogger(__name__)


class PrintEmitter:
    """Print each event as one JSON line instead of storing it (local calibration, no MQTT)."""

    def __init__(self) -> None:
        self.seq = 0

    def emit(self, channel: Channel, device_id: str, body: dict[str, Any], *, lane: Lane = Lane.NORMAL,
             ts: datetime | None = None) -> int:
        self.seq += 1
        stamp = (ts or datetime.now(UTC)).isoformat()
        print(json.dumps({"channel": channel.value, "device": device_id, "ts": stamp, **body}), flush=True)
        return self.seq


def load_config(path: Path | None, overrides: dict[str, Any]) -> CaptureConfig:
    """Read a YAML camera config (the `camera:` mapping of the agent's input, or the mapping itself)."""
    data: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping")
        data = loaded["camera"] if isinstance(loaded.get("camera"), dict) else loaded
    data.update({k: v for k, v in overrides.items() if v is not None})
    return CaptureConfig.model_validate(data)


def _errors(exc: ValidationError) -> list[str]:
    return [f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="yangyi-vision", description=__doc__)
    ap.add_argument("--config", type=Path, help="camera config YAML")
    ap.add_argument("-v", "--verbose", action="store_true")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("check-config", help="validate --config and print every error with its key path")
    count = sub.add_parser("count", help="count a camera or a video file and print per-period counts")
    count.add_argument("source", nargs="?", help="V4L2 index, /dev/videoN, rtsp:// URL or a file")
    count.add_argument("--period", type=int, help="seconds per reported period")
    dbg = sub.add_parser("debug", help="local debug mode: frames written to this device's disk for a while")
    dbg.add_argument("action", choices=("on", "off", "status"))
    dbg.add_argument("--minutes", type=float, default=15.0)
    dbg.add_argument("--operator", help="who is asking (logged)")
    dbg.add_argument("--reason", help="why (logged)")
    syn = sub.add_parser("synth", help="write a synthetic doorway scene as a video file")
    syn.add_argument("scene", choices=[m.__name__ for m in SCENARIOS])
    syn.add_argument("output", type=Path)
    syn.add_argument("--size", default="320x240")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    if args.cmd == "synth":
        w, h = (int(v) for v in args.size.split("x"))
        sc = next(m for m in SCENARIOS if m.__name__ == args.scene)()
        sc.write_video(args.output, w, h)
        print(json.dumps({"video": str(args.output), "entries": sc.true_entries, "exits": sc.true_exits}))
        return 0

    overrides: dict[str, Any] = {}
    if args.cmd == "count":
        src = args.source
        overrides = {"source": int(src) if src is not None and src.isdigit() else src, "period_s": args.period,
                     "loop_file": False}
    try:
        cfg = load_config(args.config, overrides)
    except ValidationError as exc:
        for line in _errors(exc):
            print(f"{args.config}: {line}", file=sys.stderr)
        return 2
    except (OSError, ValueError, yaml.YAMLError) as exc:
        print(f"{args.config}: {exc}", file=sys.stderr)
        return 2

    if args.cmd == "check-config":
        print(f"{args.config}: valid (camera {cfg.device_id}, source {cfg.source})")
        return 0
    if args.cmd == "debug":
        return _debug(cfg.debug, args)
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        vi = VisionInput(cfg)
        vi.run(PrintEmitter(), stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if vi.counter is not None:
        print(json.dumps({"total_entries": vi.counter.entries, "total_exits": vi.counter.exits}))
    return 0


def _debug(cfg: DebugConfig, args: argparse.Namespace) -> int:
    if args.action == "on":
        if not args.operator or not args.reason:
            print("debug on needs --operator and --reason (both are logged)", file=sys.stderr)
            return 2
        minutes = min(args.minutes, cfg.max_minutes)
        req = write_request(cfg, args.operator, args.reason, minutes, datetime.now(UTC))
        log.warning("camera debug mode requested by %s for %.0f min: %s", req.operator, minutes, req.reason)
        print(f"debug mode on for {minutes:g} min; frames go to {cfg.directory} only")
        return 0
    if args.action == "off":
        print("debug mode off" if cancel_request(cfg) else "debug mode was not on")
        return 0
    from edge.clock import SystemClock

    rec = DebugRecorder(cfg, SystemClock(assume_synced=True))
    rec.poll()
    if rec.active and rec.until is not None and rec.request is not None:
        print(f"debug mode ON until {rec.until.isoformat()} (by {rec.request.operator}: {rec.request.reason})")
    else:
        print("debug mode off")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
