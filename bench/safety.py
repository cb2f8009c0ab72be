"""Safety benchmark: reading → actuator latency, RS-485 bus cycle against wire time, agent footprint.

    python -m bench.safety [--latency-samples N] [--cycle-seconds S] [--agent-seconds S]

Progress goes to stderr; the LAST line on stdout is one JSON object with reading_to_actuator_p99_ms
(target ≤ 20), bus_cycle_overhead_pct, agent_rss_mb (target ≤ 60), agent_cpu_pct (of one core,
target ≤ 5), the details behind them and the load average.

Method.
  (1) reading_to_actuator: the whole edge Agent in this process (real outbox on disk, publisher,
      SafetyHub, AlarmPanel) with an rs485_bus of 8 simulated devices (pymodbus's server on a pty).
      The gas detector's value is flipped between 2 and 60 %LEL, each flip waiting for the buzzer to
      follow; the gas rule is set to react at once and not latch, so every poll that crosses the
      threshold drives the buzzer. Time from the end of ModbusDriver.poll (registers decoded into
      values) to the buzzer actuator's set(), perf_counter, one sample per flip.
  (2) bus_cycle_overhead: the bus input alone polls 8 devices (2 gas, 2 CO, 2 electrical-fire,
      1 DDSU666 meter, 1 more gas) on one 9600-baud line, every device always due. A pty moves bytes
      at memory speed, so the simulator holds each reply back for the wire time of the request and
      the reply at 9600 baud (10 bits a byte). Theoretical cycle = Σ over every read of every device
      of (request + reply bytes) × 10 / 9600; overhead = measured cycle / theoretical − 1. The RTU
      inter-frame silences (3.5 characters before and after each frame) are reported apart
      (theoretical_with_gaps_ms): the simulator does not play them, so they are not in the measure.
  (3) agent footprint: a real `python -m edge.agent` process with those 8 devices polled every
      second plus an EM4100 card reader (a tap every few seconds), publishing to the project's broker
      under a fresh account. After a warm-up, CPU from /proc/<pid>/stat (utime + stime) over the
      window, as a percentage of one core; RSS = VmRSS at the end, peak VmHWM reported too.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from edge.actuators import AlarmPanel
from edge.agent import Agent
from edge.config import parse_config
from edge.inputs import bus as busmod
from edge.inputs.bus import Dlt645DeviceConfig, ModbusDeviceConfig, SerialBusConfig, SerialBusInput
from firmware_bridge import em4100
from firmware_bridge import modbus_profiles as mp
from firmware_bridge.sim.modbus import ModbusBusSimulator
from firmware_bridge.sim.pty import Pty

ROOT = Path(__file__).resolve().parent.parent
BAUD = 9600
BITS_PER_BYTE = 10  # start + 8 data + stop (8N1)
RTU_REQUEST_BYTES = 8  # unit, FC, start (2), count (2), CRC (2)
LINE: dict[int, tuple[str, str]] = {  # unit → (device id, profile)
    1: ("gas1", "gas_generic"), 2: ("gas2", "gas_generic"), 3: ("co1", "co_generic"), 4: ("co2", "co_generic"),
    5: ("efire1", "electrical_fire_generic"), 6: ("efire2", "electrical_fire_generic"),
    7: ("meter1", "chint_ddsu666"), 8: ("gas3", "gas_generic"),
}
NORMAL_VALUES: dict[str, dict[str, float]] = {
    "gas_generic": {"lel": 2.0, "lel.low_setpoint": 25.0, "lel.high_setpoint": 50.0},
    "co_generic": {"co": 3.0, "co.setpoint": 150.0},
    "electrical_fire_generic": {"residual": 40.0, "temp1": 31.0, "temp2": 30.0, "temp3": 30.5, "temp4": 29.0,
                                "residual.setpoint": 500.0, "temp.setpoint": 75.0},
    "chint_ddsu666": {"voltage": 221.0, "current": 3.2, "power": 0.7, "frequency": 50.0, "energy.import": 1234.5,
                      "energy.export": 0.0},
}


def progress(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))  # nearest rank
    return ordered[k]


def start_line(wire_baud: int | None = None) -> ModbusBusSimulator:
    sim = ModbusBusSimulator({u: p for u, (_, p) in LINE.items()}, wire_baud=wire_baud, relay_poll_s=0.001)
    for unit, (_, profile) in LINE.items():
        sim.values[unit].update(NORMAL_VALUES[profile])
    sim.start()
    return sim


def bus_devices(interval_s: float) -> list[dict[str, Any]]:
    return [{"type": "modbus", "id": dev, "unit": unit, "profile": profile, "interval_s": interval_s,
             "timeout_s": 0.5} for unit, (dev, profile) in LINE.items()]


# ---- (1) reading → actuator -------------------------------------------------------------------------


class TimedBuzzer:
    """The buzzer output: records how long after the last decoded reading it was called."""

    name = "buzzer"

    def __init__(self, decoded: dict[int, float]) -> None:
        self._decoded = decoded
        self._state = False
        self.latencies_ms: list[float] = []
        self.changed = threading.Condition()

    def set(self, on: bool) -> None:
        now = time.perf_counter()
        decoded_at = self._decoded.get(threading.get_ident())
        if decoded_at is not None:
            self.latencies_ms.append((now - decoded_at) * 1000)
        with self.changed:
            self._state = on
            self.changed.notify_all()

    @property
    def state(self) -> bool:
        return self._state

    def is_(self, on: bool) -> bool:
        return self._state == on


def measure_latency(samples: int, workdir: Path) -> dict[str, Any]:
    decoded: dict[int, float] = {}
    original = busmod.ModbusDriver.poll

    def timed_poll(self: busmod.ModbusDriver, link: busmod.SerialLink, retries: int) -> busmod.PollResult:
        result = original(self, link, retries)
        decoded[threading.get_ident()] = time.perf_counter()
        return result

    busmod.ModbusDriver.poll = timed_poll  # type: ignore[method-assign]
    sim = start_line()
    try:
        cfg = parse_config({
            "point": {"id": "bench-latency"},
            "mqtt": {"host": "127.0.0.1", "port": 9, "reconnect_min_s": 60, "reconnect_max_s": 60},
            "outbox": {"path": str(workdir / "latency-outbox.db")},
            "clock": {"assume_synced": True},
            "safety": {"gas_lel": {"alarm": 25.0, "hysteresis": 0.0, "on_delay_s": 0.0, "off_delay_s": 0.0,
                                   "latch": False, "alarm_actions": ["buzzer.on"]},
                       "device_alarm_bits": False},
            "inputs": [{"type": "rs485_bus", "name": "bus0", "port": sim.path, "devices": bus_devices(0.2)}],
        })
        agent = Agent(cfg)
        buzzer = TimedBuzzer(decoded)
        agent.safety_hub.panel = AlarmPanel(buzzer=buzzer)
        agent.start()
        try:
            high = False
            deadline = time.monotonic() + samples * 2.0 + 30
            while len(buzzer.latencies_ms) < samples and time.monotonic() < deadline:
                high = not high
                sim.set(1, {"lel": 60.0 if high else 2.0})
                with buzzer.changed:
                    buzzer.changed.wait_for(functools.partial(buzzer.is_, high), timeout=5)
                if len(buzzer.latencies_ms) % 50 == 0 and buzzer.latencies_ms:
                    progress(f"latency: {len(buzzer.latencies_ms)} samples")
        finally:
            agent.stop(0)
    finally:
        sim.stop()
        busmod.ModbusDriver.poll = original  # type: ignore[method-assign]
    lat = buzzer.latencies_ms
    if not lat:
        raise SystemExit("no actuator calls measured")
    return {"reading_to_actuator_p99_ms": round(percentile(lat, 99), 2),
            "reading_to_actuator_p50_ms": round(statistics.median(lat), 2),
            "reading_to_actuator_max_ms": round(max(lat), 2), "latency_samples": len(lat)}


# ---- (2) bus cycle against wire time ------------------------------------------------------------------


def theoretical_cycle_s() -> tuple[float, float]:
    """(bytes only, bytes + 3.5-character silences around each frame) for one poll of all 8 devices."""
    wire_bytes = frames = 0
    for _, profile_name in LINE.values():
        for block in mp.read_plan(mp.load_profile(profile_name)):
            wire_bytes += RTU_REQUEST_BYTES + 5 + 2 * block.count  # reply: unit, FC, count, data, CRC (2)
            frames += 2
    char_s = BITS_PER_BYTE / BAUD
    return wire_bytes * char_s, wire_bytes * char_s + frames * 2 * 3.5 * char_s


def measure_bus_cycle(seconds: float) -> dict[str, Any]:
    sim = start_line(wire_baud=BAUD)
    stop = threading.Event()
    try:
        devices: list[ModbusDeviceConfig | Dlt645DeviceConfig] = [
            ModbusDeviceConfig.model_validate(d) for d in bus_devices(0.2)]
        bus = SerialBusInput(SerialBusConfig(port=sim.path, baudrate=BAUD, devices=devices))

        class Null:
            def emit(self, *_a: Any, **_k: Any) -> int:
                return 0

        thread = threading.Thread(target=bus.run, args=(Null(), stop), daemon=True)
        thread.start()
        time.sleep(2.0)  # warm-up: port open, first polls
        polls0 = sum(h.polls for h in bus.health().values())
        t0 = time.perf_counter()
        time.sleep(seconds)
        polls1 = sum(h.polls for h in bus.health().values())
        elapsed = time.perf_counter() - t0
        health = bus.health()
    finally:
        stop.set()
        sim.stop()
    failures = {d: h.polls - h.ok for d, h in health.items() if h.polls != h.ok}
    cycles = (polls1 - polls0) / len(LINE)
    measured = elapsed / cycles
    theory, theory_gaps = theoretical_cycle_s()
    return {"bus_cycle_overhead_pct": round((measured / theory - 1) * 100, 1),
            "bus_cycle_measured_ms": round(measured * 1000, 1), "bus_cycle_theoretical_ms": round(theory * 1000, 1),
            "bus_cycle_theoretical_with_gaps_ms": round(theory_gaps * 1000, 1), "bus_cycles": round(cycles, 1),
            "bus_failed_polls": failures}


# ---- (3) a real agent process ----------------------------------------------------------------------------


def proc_cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of the whole line)


def proc_status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def broker_account(point: str) -> tuple[str, str]:
    password = secrets.token_urlsafe(16)
    script = ROOT / "deploy" / "native" / "mosquitto.sh"
    subprocess.run(["bash", str(script), "add-user", point, password], check=True, capture_output=True)
    subprocess.run(["bash", str(script), "reload"], check=True, capture_output=True)
    time.sleep(0.5)
    return point, password


def measure_agent(seconds: float, warmup: float, workdir: Path, tap_every_s: float) -> dict[str, Any]:
    point = f"bench{uuid.uuid4().hex[:8]}"
    user, password = broker_account(point)
    (workdir / "mqtt_password").write_text(password + "\n")
    (workdir / "mqtt_password").chmod(0o600)
    sim = start_line(wire_baud=BAUD)
    reader = Pty()
    reader_path = reader.open()
    stop = threading.Event()
    taps = 0

    def tap_cards() -> None:
        nonlocal taps
        while not stop.wait(tap_every_s):
            card = f"00{taps % 50 + 1:08X}"
            reader.write(em4100.encode(em4100.Em4100Frame.from_hex(card)))
            taps += 1

    cfg = {
        "point": {"id": point},
        "mqtt": {"host": os.environ.get("YANGYI_MQTT_HOST", "127.0.0.1"),
                 "port": int(os.environ.get("YANGYI_MQTT_PORT", "18830")), "username": user,
                 "password_file": str(workdir / "mqtt_password")},
        "outbox": {"path": str(workdir / "agent-outbox.db")},
        "clock": {"assume_synced": True},
        "checkin": {"windows": [{"meal": "lunch", "start": "00:00", "end": "23:59"}]},
        "inputs": [
            {"type": "rs485_bus", "name": "bus0", "port": sim.path, "devices": bus_devices(1.0)},
            {"type": "card_em4100", "device_id": "reader1", "port": reader_path},
        ],
    }
    path = workdir / "agent.yaml"
    path.write_text(yaml.safe_dump(cfg))
    log = open(workdir / "agent.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "edge.agent", "--config", str(path)], stdout=log,
                            stderr=subprocess.STDOUT, cwd=ROOT)
    tapper = threading.Thread(target=tap_cards, daemon=True)
    tapper.start()
    try:
        time.sleep(warmup)
        if proc.poll() is not None:
            raise SystemExit(f"agent exited {proc.returncode}; see {workdir / 'agent.log'}")
        tick = os.sysconf("SC_CLK_TCK")
        c0, t0, taps0 = proc_cpu_ticks(proc.pid), time.monotonic(), taps
        rss_samples = []
        while time.monotonic() - t0 < seconds:
            time.sleep(1.0)
            rss_samples.append(proc_status_kb(proc.pid, "VmRSS"))
        c1, t1 = proc_cpu_ticks(proc.pid), time.monotonic()
        hwm = proc_status_kb(proc.pid, "VmHWM")
        taps_in_window = taps - taps0
    finally:
        stop.set()
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        reader.close()
        sim.stop()
    text = (workdir / "agent.log").read_text(errors="replace")
    return {"agent_cpu_pct": round((c1 - c0) / tick / (t1 - t0) * 100, 2),
            "agent_rss_mb": round(rss_samples[-1] / 1024, 1), "agent_rss_peak_mb": round(hwm / 1024, 1),
            "agent_window_s": round(t1 - t0, 1), "agent_card_taps": taps_in_window,
            "agent_connected": "connected (session present" in text,
            "agent_errors": text.count(" ERROR ")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.safety", description=__doc__.splitlines()[0])
    parser.add_argument("--latency-samples", type=int, default=300)
    parser.add_argument("--cycle-seconds", type=float, default=20.0)
    parser.add_argument("--agent-seconds", type=float, default=60.0)
    parser.add_argument("--agent-warmup", type=float, default=10.0)
    parser.add_argument("--tap-every", type=float, default=3.0, help="seconds between card taps")
    args = parser.parse_args(argv)
    result: dict[str, Any] = {"load_avg_start": loadavg()}
    with tempfile.TemporaryDirectory(prefix="yangyi-bench-safety-") as tmp:
        workdir = Path(tmp)
        progress(f"(1) reading → actuator, {args.latency_samples} samples; load {loadavg()}")
        result.update(measure_latency(args.latency_samples, workdir))
        progress(f"    p99 {result['reading_to_actuator_p99_ms']} ms")
        progress(f"(2) bus cycle, 8 devices at {BAUD} baud, {args.cycle_seconds:.0f} s; load {loadavg()}")
        result.update(measure_bus_cycle(args.cycle_seconds))
        progress(f"    measured {result['bus_cycle_measured_ms']} ms vs {result['bus_cycle_theoretical_ms']} ms")
        progress(f"(3) agent process, 8 devices at 1 s + card reader, {args.agent_seconds:.0f} s; load {loadavg()}")
        result.update(measure_agent(args.agent_seconds, args.agent_warmup, workdir, args.tap_every))
    result["load_avg_end"] = loadavg()
    result["cpus"] = os.cpu_count()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
