"""The edge agent: config → outbox → publisher → inputs, until SIGTERM or SIGINT.

    yangyi-edge --config /etc/yangyi/agent.yaml [--validate-config] [--log-level INFO]

Exit codes:
    0  stopped by SIGTERM/SIGINT after a clean shutdown; or --validate-config found the file valid
    1  an unexpected error, or the outbox drain thread died (so the service manager restarts us)
    2  the configuration is invalid (each error printed as "key.path: message") or bad usage
    3  the outbox cannot be opened (unreadable or not an outbox); the file is left untouched

Shutdown order: inputs stop first (nothing new enters the outbox), the publisher sends what the
outbox holds for up to --flush-timeout seconds, publishes a retained offline status and disconnects.
What is left in the outbox is sent on the next start.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType

from firmware_bridge.contract import Command, Message, PointChannel, Roster

from .actuators import AlarmPanel, SafetyHub
from .checkin import Checkin, StateStore
from .clock import Clock, SystemClock
from .config import AgentConfig, InputConfig, input_name, load_config
from .errors import ConfigError, OutboxError
from .events import Emitter
from .inputs import InputContext
from .outbox import Outbox, OutboxEmitter
from .publisher import Publisher
from .safety import SafetyEngine

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CONFIG = 2
EXIT_OUTBOX = 3

INPUT_RESTART_MIN_SECONDS = 1.0
INPUT_RESTART_MAX_SECONDS = 60.0
INPUT_HEALTHY_SECONDS = 60.0  # an input that ran this long restarts at the minimum delay again
INPUT_JOIN_SECONDS = 5.0


class InputRunner:
    """Runs one input plug-in in its own thread; rebuilds and restarts it with backoff when it fails."""

    def __init__(
        self, cfg: InputConfig, ctx: InputContext, emitter: Emitter, stop: threading.Event, clock: Clock,
        wait: Callable[[float], bool] | None = None,
    ) -> None:
        self.cfg = cfg
        self._wait = wait or stop.wait
        self.name = input_name(cfg)
        self._ctx = ctx
        self._emitter = emitter
        self._stop = stop
        self._clock = clock
        self.restarts = 0
        self.thread = threading.Thread(target=self._run, name=f"input-{self.name}", daemon=True)

    def _run(self) -> None:
        delay = INPUT_RESTART_MIN_SECONDS
        while not self._stop.is_set():
            started = self._clock.monotonic()
            try:
                self.cfg.build(self._ctx).run(self._emitter, self._stop)
                # Inputs recover from device loss inside run(); returning means the input is done
                # (a recording played once), and replaying it would count its events again.
                if not self._stop.is_set():
                    log.info("input %s finished", self.name)
                return
            except Exception:
                log.exception("input %s failed", self.name)
            if self._clock.monotonic() - started >= INPUT_HEALTHY_SECONDS:
                delay = INPUT_RESTART_MIN_SECONDS
            log.info("restarting input %s in %.0f s", self.name, delay)
            self.restarts += 1
            if self._wait(delay):
                return
            delay = min(delay * 2, INPUT_RESTART_MAX_SECONDS)


class Agent:
    """One meal point's agent; start() then stop()."""

    def __init__(self, cfg: AgentConfig, clock: Clock | None = None) -> None:
        self.cfg = cfg
        self.clock = clock or SystemClock(assume_synced=cfg.clock.assume_synced)
        self.outbox = Outbox(cfg.outbox.path, cfg.point.id)
        self.emitter = OutboxEmitter(self.outbox, self.clock)
        self.publisher = Publisher(cfg, self.outbox, self.clock)
        self._inputs_stop = threading.Event()
        self.checkin = Checkin(cfg.point.id, cfg.checkin, self.clock, StateStore(cfg.state_path / "checkin"))
        self.safety_hub = SafetyHub(SafetyEngine(cfg.safety, self.clock), AlarmPanel.from_config(cfg.panel))
        self.safety_hub.attach(self.emitter)
        ctx = InputContext(
            point_id=cfg.point.id, clock=self.clock, checkin=self.checkin, safety_hub=self.safety_hub
        )
        self.runners = [InputRunner(c, ctx, self.emitter, self._inputs_stop, self.clock) for c in cfg.inputs]
        for channel in PointChannel:
            self.publisher.on(channel, self._log_message)
        self.publisher.on(PointChannel.ROSTER, self._on_roster)
        self.publisher.on(PointChannel.CMD, self._on_command)

    def _on_roster(self, message: Message) -> None:
        if isinstance(message, Roster):
            self.checkin.apply_roster(message)

    def _on_command(self, message: Message) -> None:
        if isinstance(message, Command) and not self.safety_hub.handle_command(message):
            log.info("command %s (%s) has no handler on this agent", message.cmd, message.cmd_id)

    @staticmethod
    def _log_message(message: Message) -> None:
        log.info("received %s", type(message).__name__)

    def start(self) -> None:
        log.info(
            "agent for %s starting: %d inputs, %d events waiting in %s",
            self.cfg.point.id, len(self.runners), self.outbox.depth(), self.cfg.outbox.path,
        )
        self.publisher.start()
        for runner in self.runners:
            runner.thread.start()

    def stop(self, flush_timeout_s: float = 5.0) -> None:
        self._inputs_stop.set()
        for runner in self.runners:
            runner.thread.join(INPUT_JOIN_SECONDS)
            if runner.thread.is_alive():
                log.warning("input %s did not stop within %.0f s", runner.name, INPUT_JOIN_SECONDS)
        try:
            self.checkin.persist()
        except OSError:
            log.exception("check-in state not saved at stop")
        self.publisher.stop(flush_timeout_s)
        self.outbox.close()
        log.info("agent for %s stopped", self.cfg.point.id)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="yangyi-edge", description="Yangyi meal-point edge agent.")
    p.add_argument("--config", required=True, help="YAML config file")
    p.add_argument("--validate-config", action="store_true", help="check the config, print errors, exit")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--flush-timeout", type=float, default=5.0, help="seconds to drain the outbox on stop")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s"
    )
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        return EXIT_CONFIG
    if args.validate_config:
        print(f"{args.config}: valid (point {cfg.point.id}, {len(cfg.inputs)} inputs)")
        return EXIT_OK

    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s; stopping", signal.Signals(signum).name)
        stop.set()

    try:
        agent = Agent(cfg)
    except OutboxError as exc:
        log.error("%s", exc)
        return EXIT_OUTBOX
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        agent.start()
        while not stop.wait(1.0):
            if not agent.publisher.alive:
                log.error("the outbox drain stopped; exiting so the service manager restarts the agent")
                agent.stop(0)
                return EXIT_ERROR
        agent.stop(args.flush_timeout)
    except Exception:
        log.exception("agent failed")
        return EXIT_ERROR
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
