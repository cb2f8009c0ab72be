"""DL/T 645-2007 meter simulator: one or more meters on a pty, answering through firmware_bridge.dlt645.

Drives the same codec from the meter's side: decodes read requests, answers 0x91 with the value
of the asked data identifier, 0xD1 (no such data) for identifiers it does not hold, and stays
silent for other meters' addresses, as a real meter on a shared line does. Answers read-address
(0x13) when it plays exactly one meter. For a peer we did not write, tests use the `dlt645`
package's meter instead.

Scenarios (firmware_bridge.sim.scenarios, protocol dlt645) script values, silence and line noise
(random bytes before replies, replies with a broken checksum) over time, with a speed factor.

    yangyi-sim-dlt645 --link /tmp/yangyi-meter0 --meter 123456789012 --set 02010100=220.1
    yangyi-sim-dlt645 --link /tmp/yangyi-meter0 --scenario undervoltage --speed 20
"""

from __future__ import annotations

import argparse
import logging
import random
import signal
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from firmware_bridge import dlt645
from firmware_bridge.errors import SimulatorError
from firmware_bridge.sim import scenarios as sc
from firmware_bridge.sim.pty import Pty
from firmware_bridge.sim.scenarios.player import ScenarioPlayer

log = logging.getLogger(__name__)

DEFAULT_VALUES: dict[int, float] = {
    dlt645.ENERGY_FORWARD_ACTIVE.di: 1234.56,
    dlt645.VOLTAGE_A.di: 220.0,
    dlt645.CURRENT_A.di: 1.5,
    dlt645.ACTIVE_POWER_TOTAL.di: 0.33,
    dlt645.POWER_FACTOR_TOTAL.di: 0.95,
    dlt645.FREQUENCY.di: 50.0,
}


class Dlt645MeterSimulator:
    """Meters on one simulated line; values settable while running, a meter can go silent."""

    def __init__(
        self,
        meters: Mapping[str, Mapping[int, float]] | Sequence[str],
        link: str | Path | None = None,
    ) -> None:
        if isinstance(meters, Mapping):
            self.meters = {a: dict(v) for a, v in meters.items()}
        else:
            self.meters = {a: dict(DEFAULT_VALUES) for a in meters}
        for address in self.meters:
            dlt645.address_to_wire(address)  # validates
        self.pty = Pty(link)
        self.silent: set[str] = set()
        self.requests = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._decoder = dlt645.FrameDecoder("sim")
        self.noise: sc.Noise | None = None
        self._rng = random.Random(1)

    @property
    def path(self) -> str:
        return self.pty.path

    def start(self) -> str:
        self.pty.open()
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, name="dlt645-sim", daemon=True)
        self._thread.start()
        return self.path

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.pty.close()

    def unplug(self) -> None:
        with self._lock:
            self.pty.close()
            self._decoder.clear()

    def plug(self) -> str:
        with self._lock:
            return self.pty.open()

    def set(self, address: str, di: int, value: float) -> None:
        if address not in self.meters or di not in dlt645.DATA_IDS:
            raise SimulatorError(f"no meter {address} or unknown DI {di:08X}")
        dlt645.encode_value(dlt645.DATA_IDS[di], value)  # raises if it cannot be sent
        with self._lock:
            self.meters[address][di] = value

    def apply_device(self, device: sc.ScenarioDevice, state: sc.DeviceState) -> None:
        """Scenario target: a meter's values (by channel name) and silence."""
        if device.address is None:
            raise SimulatorError(f"{device.id} is not a DL/T 645 meter")
        for channel, value in state.values.items():
            self.set(device.address, sc.DLT645_CHANNELS[channel], value)
        with self._lock:
            if state.silent:
                self.silent.add(device.address)
            else:
                self.silent.discard(device.address)

    def apply_noise(self, noise: sc.Noise | None) -> None:
        """Scenario target: noise on the line (None for a clean line)."""
        with self._lock:
            self.noise = noise
            if noise is not None:
                self._rng = random.Random(noise.seed)

    def _noisy(self, wire: bytes) -> bytes:
        noise = self.noise
        if noise is None:
            return wire
        out = bytearray(wire)
        if noise.corrupt_ratio and self._rng.random() < noise.corrupt_ratio:
            out[-2] ^= 0x5A  # the checksum byte, before the 0x16 end marker
        return bytes(self._rng.randrange(256) for _ in range(noise.garbage_bytes)) + bytes(out)

    def reply_to(self, frame: dlt645.Frame) -> dlt645.Frame | None:
        """The reply a meter on this line gives to `frame`, if any (pure apart from the values)."""
        if frame.is_reply:
            return None
        if frame.control == dlt645.Control.READ_ADDRESS:
            live = [a for a in self.meters if a not in self.silent]
            if len(live) != 1:
                return None
            return dlt645.Frame(live[0], dlt645.Control.READ_ADDRESS_REPLY, dlt645.address_to_wire(live[0]))
        if frame.address not in self.meters or frame.address in self.silent:
            return None
        if frame.control != dlt645.Control.READ or len(frame.data) != 4:
            return dlt645.error_reply(frame.address, dlt645.ErrorBit.OTHER)
        di = int.from_bytes(frame.data, "little")
        values = self.meters[frame.address]
        if di not in values or di not in dlt645.DATA_IDS:
            return dlt645.error_reply(frame.address, dlt645.ErrorBit.NO_DATA)
        return dlt645.read_reply(frame.address, di, values[di])

    def _serve(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                if not self.pty.is_open:
                    data = b""
                else:
                    try:
                        data = self.pty.read(timeout=0)
                    except OSError:
                        data = b""
                for frame in self._decoder.feed(data) if data else []:
                    self.requests += 1
                    reply = self.reply_to(frame)
                    if reply is not None:
                        try:
                            self.pty.write(self._noisy(dlt645.encode(reply)))
                        except OSError as exc:
                            log.info("meter simulator: reply not sent: %s", exc)
            if not data:
                self._stop.wait(0.005)

    def __enter__(self) -> Dlt645MeterSimulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="yangyi-sim-dlt645", description=__doc__.split("\n")[0])
    parser.add_argument("--link", help="symlink to create for the device node (e.g. /tmp/yangyi-meter0)")
    parser.add_argument("--meter", action="append", default=[], help="meter number, 12 digits")
    parser.add_argument("--set", action="append", default=[], metavar="DI=VALUE",
                        help="value for every meter, DI in hex (02010100=220.1)")
    parser.add_argument("--scenario", help=f"play a scenario ({', '.join(sc.available_scenarios())} or a path)")
    parser.add_argument("--speed", type=float, default=1.0, help="scenario seconds per wall second")
    parser.add_argument("--loop", action="store_true", help="play the scenario again and again")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO)
    scenario: sc.Scenario | None = None
    try:
        meters = list(args.meter)
        if args.scenario:
            scenario = sc.load_scenario(args.scenario)
            if scenario.protocol != "dlt645":
                raise SimulatorError(f"scenario {scenario.name} is for {scenario.protocol}, not dlt645")
            meters += [d.address for d in scenario.devices if d.address and d.address not in meters]
        if not meters:
            raise SimulatorError("give --meter or --scenario")
        sim = Dlt645MeterSimulator(meters, link=args.link)
        for spec in args.set:
            di, _, value = spec.partition("=")
            for address in sim.meters:
                sim.set(address, int(di, 16), float(value))
    except (ValueError, SimulatorError) as exc:
        raise SystemExit(f"yangyi-sim-dlt645: {exc}") from exc
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(sim.start(), flush=True)
    try:
        if scenario is not None:
            ScenarioPlayer(scenario, sim, args.speed).run(stop, loop=args.loop)
        stop.wait()
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
