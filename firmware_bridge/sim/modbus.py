"""Modbus RTU bus simulator: pymodbus's own serial server on a pty, devices from register profiles.

The devices are pymodbus SimDevices (an implementation we did not write), their registers filled
from a profile's channel values through firmware_bridge.modbus_profiles.encode(). The server opens
one side of a PtyBridge; the program under test opens the other (printed, or behind --link).
Holding and input registers are one shared block, so FC 03 and FC 04 read the same values (as on
the DDSU666). Values can change while running (set()), ramp (--ramp, e.g. 1 %LEL/min, the
GB 15322 test rate) and a device can go silent (silence()) to play a dead instrument.

Scenarios (firmware_bridge.sim.scenarios) script all of that as data, with time compression:
`--scenario slow_leak --speed 60` plays the one-hour slow leak in a minute. Line noise (random
bytes before replies, replies with a broken CRC) is injected on the way out. With `wire_baud`
set, each reply is held back for the wire time of the request and the reply at that baud rate
(10 bits a byte), since a pty moves bytes at memory speed; benchmarks use it to compare the bus
cycle against the theoretical one.

    yangyi-sim-modbus --link /tmp/yangyi-bus0 --device 1=gas_generic --device 2=chint_ddsu666 \
        --set 1:lel=3.5 --set 2:voltage=221.3 --ramp 1:lel=1.0
    yangyi-sim-modbus --link /tmp/yangyi-bus0 --scenario sudden_leak --speed 10
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import DataType, SimData, SimDevice

from firmware_bridge import modbus_profiles as mp
from firmware_bridge.errors import SimulatorError
from firmware_bridge.sim import scenarios as sc
from firmware_bridge.sim.pty import PtyBridge
from firmware_bridge.sim.scenarios.player import ScenarioPlayer

log = logging.getLogger(__name__)

START_TIMEOUT_SECONDS = 10.0


class ModbusBusSimulator:
    """Several Modbus devices on one simulated RS-485 line."""

    def __init__(
        self,
        devices: Mapping[int, str | mp.Profile],
        link: str | Path | None = None,
        baudrate: int = 9600,
        wire_baud: int | None = None,
        relay_poll_s: float | None = None,
    ) -> None:
        self.profiles = {unit: p if isinstance(p, mp.Profile) else mp.load_profile(p) for unit, p in devices.items()}
        self.baudrate = baudrate
        self.bridge = PtyBridge(link_b=link)
        if relay_poll_s is not None:
            self.bridge.RELAY_POLL_SECONDS = relay_poll_s
        self.wire_baud = wire_baud
        self.noise: sc.Noise | None = None
        self._rng = random.Random(1)
        self._last_request_len = 0
        self.replies = 0
        self.values: dict[int, dict[str, float]] = {u: {} for u in self.profiles}
        self.flags: dict[int, set[str]] = {u: set() for u in self.profiles}
        self._silent: set[int] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: ModbusSerialServer | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def path(self) -> str:
        """What the program under test opens."""
        return self.bridge.b.path

    def _simdevice(self, unit: int, profile: mp.Profile) -> SimDevice:
        regs = mp.encode(profile, self.values[unit], self.flags[unit])
        by_addr: dict[int, int] = {}
        for (_fc, addr), value in regs.items():
            if addr in by_addr:
                raise SimulatorError(f"{profile.name}: register {addr:#06x} used by FC 3 and FC 4")
            by_addr[addr] = value
        # Cover whole read blocks (gaps included) so the client's merged reads are legal here.
        covered = sorted({a for b in mp.read_plan(profile) for a in range(b.start, b.start + b.count)})
        runs: list[list[int]] = []
        for addr in covered:
            if runs and addr == runs[-1][-1] + 1:
                runs[-1].append(addr)
            else:
                runs.append([addr])
        blocks = [
            SimData(run[0], values=[by_addr.get(a, 0) for a in run], datatype=DataType.REGISTERS) for run in runs
        ]
        return SimDevice(id=unit, simdata=blocks)

    def start(self) -> str:
        """Start the bridge and the server; return the path for the program under test."""
        self.bridge.start()
        self._thread = threading.Thread(target=self._run, name="modbus-sim", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_SECONDS) or self._error is not None:
            self.stop()
            raise SimulatorError(f"pymodbus server did not start: {self._error}")
        return self.path

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        devices = [self._simdevice(u, p) for u, p in self.profiles.items()]
        self._server = ModbusSerialServer(
            devices, port=self.bridge.a.path, baudrate=self.baudrate, parity="N", bytesize=8, stopbits=1,
            ignore_missing_devices=True, trace_packet=self._trace_packet,
        )
        await self._server.serve_forever(background=True)
        self._ready.set()
        await self._server.serving

    def stop(self) -> None:
        if self._loop is not None and self._server is not None and self._thread and self._thread.is_alive():
            fut = asyncio.run_coroutine_threadsafe(self._server.shutdown(), self._loop)
            try:
                fut.result(timeout=5)
            except Exception:  # already closing
                log.debug("modbus simulator shutdown", exc_info=True)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.bridge.stop()

    def set(self, unit: int, values: Mapping[str, float] | None = None, flags: set[str] | None = None) -> None:
        """Change a device's channel values and/or its set status bits; takes effect at once."""
        if unit not in self.profiles:
            raise SimulatorError(f"no device {unit}")
        self.values[unit].update(values or {})
        if flags is not None:
            self.flags[unit] = set(flags)
        regs = mp.encode(self.profiles[unit], self.values[unit], self.flags[unit])
        if self._loop is None or self._server is None:
            return
        server = self._server

        async def write() -> None:
            for (_fc, addr), value in regs.items():
                await server.async_setValues(unit, 3, addr, [value])

        fut: Future[Any] = asyncio.run_coroutine_threadsafe(write(), self._loop)
        fut.result(timeout=5)

    def silence(self, unit: int, silent: bool = True) -> None:
        """Make a device stop (or resume) answering, like a dead instrument on the line."""
        if silent:
            self._silent.add(unit)
        else:
            self._silent.discard(unit)

    def apply_device(self, device: sc.ScenarioDevice, state: sc.DeviceState) -> None:
        """Scenario target: a device's values, status bits and silence."""
        if device.unit is None:
            raise SimulatorError(f"{device.id} is not a Modbus device")
        self.set(device.unit, state.values, set(state.flags))
        self.silence(device.unit, state.silent)

    def apply_noise(self, noise: sc.Noise | None) -> None:
        """Scenario target: noise on the line (None for a clean line)."""
        self.noise = noise
        if noise is not None:
            self._rng = random.Random(noise.seed)

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        if not sending:
            self._last_request_len += len(data)  # a request may arrive in pieces
            return data
        request_len, self._last_request_len = self._last_request_len, 0
        # pymodbus answers an unknown unit with an exception; a dead device says nothing.
        if data and data[0] in self._silent:
            return b""
        if self.wire_baud:
            # Blocking on purpose: the line is half duplex, nothing else may talk meanwhile.
            time.sleep((request_len + len(data)) * 10 / self.wire_baud)
        self.replies += 1
        noise = self.noise
        if noise is None or not data:
            return data
        out = bytearray(data)
        if noise.corrupt_ratio and self._rng.random() < noise.corrupt_ratio:
            out[-1] ^= 0x5A
        prefix = bytes(self._rng.randrange(256) for _ in range(noise.garbage_bytes))
        return prefix + bytes(out)

    def __enter__(self) -> ModbusBusSimulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _unit_kv(text: str) -> tuple[int, str, str]:
    try:
        unit, rest = text.split(":", 1)
        key, value = rest.split("=", 1)
        return int(unit), key, value
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected UNIT:NAME=VALUE, got {text!r}") from exc


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="yangyi-sim-modbus", description=__doc__.split("\n")[0])
    parser.add_argument("--link", help="symlink to create for the device node (e.g. /tmp/yangyi-bus0)")
    parser.add_argument("--device", action="append", default=[], metavar="UNIT=PROFILE",
                        help=f"a device: unit id and profile ({', '.join(mp.available_profiles())} or a path)")
    parser.add_argument("--set", action="append", default=[], type=_unit_kv, metavar="UNIT:CHANNEL=VALUE")
    parser.add_argument("--flag", action="append", default=[], metavar="UNIT:BIT", help="set a status bit")
    parser.add_argument("--ramp", action="append", default=[], type=_unit_kv, metavar="UNIT:CHANNEL=PER_MIN",
                        help="change a channel steadily, per minute")
    parser.add_argument("--scenario", help=f"play a scenario ({', '.join(sc.available_scenarios())} or a path)")
    parser.add_argument("--speed", type=float, default=1.0, help="scenario seconds per wall second")
    parser.add_argument("--loop", action="store_true", help="play the scenario again and again")
    parser.add_argument("--baudrate", type=int, default=9600)
    parser.add_argument("--wire-baud", type=int, help="hold replies back for their wire time at this baud rate")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO)

    devices: dict[int, str] = {}
    scenario: sc.Scenario | None = None
    try:
        if args.scenario:
            scenario = sc.load_scenario(args.scenario)
            if scenario.protocol != "modbus":
                raise SimulatorError(f"scenario {scenario.name} is for {scenario.protocol}, not modbus")
            devices.update(sc.modbus_units(scenario))
        for spec in args.device:
            unit, _, profile = spec.partition("=")
            devices[int(unit)] = profile
        if not devices:
            raise SimulatorError("give --device or --scenario")
    except (ValueError, SimulatorError) as exc:
        raise SystemExit(f"yangyi-sim-modbus: {exc}") from exc
    sim = ModbusBusSimulator(devices, link=args.link, baudrate=args.baudrate, wire_baud=args.wire_baud)
    for unit, channel, value in args.set:
        sim.values[unit][channel] = float(value)
    for spec in args.flag:
        unit, _, bit = spec.partition(":")
        sim.flags[int(unit)].add(bit)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(sim.start(), flush=True)
    ramps = [(u, ch, float(v)) for u, ch, v in args.ramp]
    last = time.monotonic()
    try:
        if scenario is not None:
            ScenarioPlayer(scenario, sim, args.speed).run(stop, loop=args.loop)
            stop.wait()
            return 0
        while not stop.wait(1.0):
            now = time.monotonic()
            for unit, channel, per_min in ramps:
                current = sim.values[unit].get(channel, 0.0)
                sim.set(unit, {channel: max(0.0, current + per_min * (now - last) / 60.0)})
            last = now
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
