"""DL/T 645-2007 meter simulator: one or more meters on a pty, answering through firmware_bridge.dlt645.

Drives the same codec from the meter's side: decodes read requests, answers 0x91 with the value
of the asked data identifier, 0xD1 (no such data) for identifiers it does not hold, and stays
silent for other meters' addresses, as a real meter on a shared line does. Answers read-address
(0x13) when it plays exactly one meter. For a peer we did not write, tests use the `dlt645`
package's meter instead.

    yangyi-sim-dlt645 --link /tmp/yangyi-meter0 --meter 123456789012 --set 02010100=220.1
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from firmware_bridge import dlt645
from firmware_bridge.errors import SimulatorError
from firmware_bridge.sim.pty import Pty

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
                            self.pty.write(dlt645.encode(reply))
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
    parser.add_argument("--meter", action="append", required=True, help="meter number, 12 digits")
    parser.add_argument("--set", action="append", default=[], metavar="DI=VALUE",
                        help="value for every meter, DI in hex (02010100=220.1)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO)
    try:
        sim = Dlt645MeterSimulator(args.meter, link=args.link)
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
        stop.wait()
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
