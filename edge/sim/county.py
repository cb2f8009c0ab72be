"""A simulated county: one real `yangyi-edge` process per meal point, each with a simulated input.

    yangyi-sim-county --points 20 [--state-dir /var/lib/yangyi/sim] [--host H] [--port P]

For each point (ids <prefix>0001, <prefix>0002, …) it creates a broker account named after the point
with a random password (deploy/native/mosquitto.sh add-user, then one reload), or takes passwords
from --credentials FILE (a YAML mapping point id → password) with --no-accounts. It writes
<state-dir>/<point>/{agent.yaml, mqtt_password, outbox.db, agent.log}, starts the agents and keeps
them running: a crashed agent is restarted with backoff, except for config or outbox errors (exit
codes 2 and 3), which a restart cannot fix. SIGTERM or Ctrl-C stops every agent (each flushes and
says offline) and exits 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import yaml

from ..agent import EXIT_CONFIG, EXIT_OUTBOX
from ..clock import Clock, SystemClock

log = logging.getLogger(__name__)

DEFAULT_STATE_DIR = Path(os.environ.get("YANGYI_STATE_DIR", "/var/lib/yangyi")) / "sim"
MOSQUITTO_SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "native" / "mosquitto.sh"
RESTART_MIN_SECONDS = 1.0
RESTART_MAX_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 20.0
POLL_SECONDS = 0.5
FATAL_EXIT_CODES = frozenset({EXIT_CONFIG, EXIT_OUTBOX})


class Proc(Protocol):
    pid: int

    def poll(self) -> int | None: ...
    def send_signal(self, sig: int) -> None: ...
    def wait(self, timeout: float | None = None) -> int: ...
    def kill(self) -> None: ...


@dataclass
class Child:
    point_id: str
    config: Path
    proc: Proc | None = None
    restart_at: float | None = None
    delay: float = RESTART_MIN_SECONDS
    restarts: int = 0
    given_up: bool = False


class Supervisor:
    """Keeps one process per point alive; pure bookkeeping around an injected spawn and clock."""

    def __init__(self, children: list[Child], spawn: Callable[[Child], Proc], clock: Clock) -> None:
        self.children = children
        self._spawn = spawn
        self._clock = clock

    def start_all(self) -> None:
        for child in self.children:
            child.proc = self._spawn(child)

    def tick(self) -> None:
        """Notice exited processes and restart those whose backoff has passed."""
        now = self._clock.monotonic()
        for child in self.children:
            if child.given_up:
                continue
            if child.proc is not None:
                rc = child.proc.poll()
                if rc is None:
                    continue
                child.proc = None
                if rc in FATAL_EXIT_CODES:
                    child.given_up = True
                    log.error("agent %s exited with %d (config or outbox error); not restarting, see its log",
                              child.point_id, rc)
                    continue
                child.restart_at = now + child.delay
                log.warning("agent %s exited with %s; restarting in %.0f s", child.point_id, rc, child.delay)
                child.delay = min(child.delay * 2, RESTART_MAX_SECONDS)
            elif child.restart_at is not None and now >= child.restart_at:
                child.restart_at = None
                child.restarts += 1
                child.proc = self._spawn(child)

    def stop_all(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        running = [c.proc for c in self.children if c.proc is not None and c.proc.poll() is None]
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in running:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("agent pid %d did not stop in time; killing it", proc.pid)
                proc.kill()
                proc.wait()


def point_ids(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i:04d}" for i in range(1, count + 1)]


def agent_config(args: argparse.Namespace, point_id: str, directory: Path) -> dict[str, Any]:
    sim: dict[str, Any] = {"type": "simulated", "rate_per_min": args.rate_per_min,
                           "telemetry_interval_s": args.telemetry_interval_s}
    if args.all_day:
        sim["meals"] = [{"meal": "lunch", "start": "00:00:00", "end": "23:59:59.999999"}]
    return {
        "point": {"id": point_id, "name": f"模拟助餐点 {point_id}"},
        "mqtt": {"host": args.host, "port": args.port, "username": point_id,
                 "password_file": str(directory / "mqtt_password")},
        "outbox": {"path": str(directory / "outbox.db")},
        "heartbeat_s": args.heartbeat_s,
        "clock": {"assume_synced": True},
        "inputs": [sim],
    }


def prepare(args: argparse.Namespace) -> list[Child]:
    """Write each point's config and secret; create broker accounts unless told not to."""
    ids = point_ids(args.prefix, args.points)
    given: dict[str, str] = {}
    if args.credentials:
        loaded = yaml.safe_load(Path(args.credentials).read_text()) or {}
        given = {str(k): str(v) for k, v in loaded.items()}
        missing = [p for p in ids if p not in given]
        if missing:
            raise SystemExit(f"{args.credentials} has no password for {missing[:5]}")
    children = []
    for point_id in ids:
        directory = args.state_dir / point_id
        directory.mkdir(parents=True, exist_ok=True)
        secret = directory / "mqtt_password"
        if point_id in given:
            password = given[point_id]
        elif secret.exists():
            password = secret.read_text().strip()  # keep the account stable across runs
        else:
            password = secrets.token_urlsafe(16)
        secret.write_text(password + "\n")
        secret.chmod(0o600)
        if not args.no_accounts:
            subprocess.run(["bash", str(args.mosquitto_script), "add-user", point_id, password], check=True)
        config = directory / "agent.yaml"
        config.write_text(yaml.safe_dump(agent_config(args, point_id, directory), allow_unicode=True))
        children.append(Child(point_id, config))
    if not args.no_accounts:
        subprocess.run(["bash", str(args.mosquitto_script), "reload"], check=True)
        time.sleep(0.3)  # SIGHUP is asynchronous; let the broker re-read its password file
    return children


def spawn_agent(child: Child) -> Proc:
    directory = child.config.parent
    with open(directory / "agent.log", "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edge.agent", "--config", str(child.config)],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    (directory / "agent.pid").write_text(f"{proc.pid}\n")
    return proc


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="yangyi-sim-county", description="Run a simulated county of edge agents.")
    p.add_argument("--points", type=int, default=20, help="number of meal points (default 20)")
    p.add_argument("--prefix", default="mp-", help="point id prefix (default mp-, giving mp-0001 …)")
    p.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    p.add_argument("--host", default=os.environ.get("YANGYI_MQTT_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("YANGYI_MQTT_PORT", "18830")))
    p.add_argument("--no-accounts", action="store_true", help="do not create broker accounts")
    p.add_argument("--credentials", help="YAML mapping point id → password (with --no-accounts)")
    p.add_argument("--mosquitto-script", type=Path, default=MOSQUITTO_SCRIPT)
    p.add_argument("--rate-per-min", type=float, default=6.0, help="mean taps per minute per point in a meal")
    p.add_argument("--telemetry-interval-s", type=float, default=60.0)
    p.add_argument("--heartbeat-s", type=int, default=60)
    p.add_argument("--all-day", action="store_true", help="one meal window over the whole day (demos, tests)")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if args.points < 1:
        print("--points must be at least 1", file=sys.stderr)
        return 2
    if args.credentials and not args.no_accounts:
        print("--credentials goes with --no-accounts", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s; stopping %d agents", signal.Signals(signum).name, args.points)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    children = prepare(args)
    clock = SystemClock(assume_synced=True)
    supervisor = Supervisor(children, spawn_agent, clock)
    supervisor.start_all()
    log.info("started %d agents under %s", len(children), args.state_dir)
    deadline = None if args.duration is None else clock.monotonic() + args.duration
    try:
        while not stop.wait(POLL_SECONDS):
            supervisor.tick()
            if deadline is not None and clock.monotonic() >= deadline:
                break
    finally:
        supervisor.stop_all()
    log.info("all agents stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
