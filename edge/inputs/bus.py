"""RS-485 bus input: one owner per serial port, devices polled in turn, health per device.

One SerialBusInput owns one port (a /dev/serial/by-id/... path, or any path). Its devices —
Modbus RTU instruments described by a register profile, DL/T 645 meters — are polled one at a
time (RS-485 is half duplex, master/slave) on their own intervals. Each transaction waits at
most the device's timeout and is retried `retries` times, so a dead device costs the bus at most
timeout × (retries + 1) per poll; once a device counts as lost it is tried once per
`lost_interval_s`, leaving the bus to the live ones. A port that fails (unplugged adapter) is
closed and reopened with backoff, by path, so a replugged adapter is picked up.

Health per device: ok, no_answer (silence), timeout (a partial frame), crc_error (a frame with a
bad checksum), error_reply (the device said no), port_error. Reported as per-period telemetry
(comm.polls, comm.failures, comm.crc_errors, comm.no_answer, comm.timeouts) and, after
`comm_lost_after` failed polls in a row, as a COMM_LOST safety event for each of its channels.
Values go to the per-minute telemetry summaries and to the safety engine (through the hub).

Modbus frames are built and their PDUs decoded with pymodbus's own classes (FramerRTU,
DecodePDU); the bus splits replies itself so it can count CRC errors and never give the port to
a second owner. DL/T 645 uses firmware_bridge.dlt645.
"""

from __future__ import annotations

import contextlib
import logging
import termios
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import serial
from pydantic import BaseModel, ConfigDict, Field
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU, ExceptionResponse
from pymodbus.pdu.register_message import ReadHoldingRegistersRequest, ReadInputRegistersRequest

from edge.actuators import AlarmPanel, LoggingActuator, SafetyHub
from edge.clock import Clock, SystemClock
from edge.events import Emitter, Input, Lane
from edge.safety import SafetyConfig, SafetyEngine, SafetyLevel
from edge.telemetry import TelemetryAggregator
from firmware_bridge import dlt645
from firmware_bridge import modbus_profiles as mp
from firmware_bridge.contract import Channel
from firmware_bridge.errors import DECODE_ERRORS, DeviceStatusError

log = logging.getLogger(__name__)

READ_SLICE_SECONDS = 0.02
DeviceId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class _DeviceBase(_Strict):
    id: DeviceId = Field(description="Device id, unique within the point (the MQTT topic segment)")
    interval_s: float = Field(default=2.0, ge=0.2, le=3600, description="Poll every N s (samples 1–5 s)")
    timeout_s: float = Field(default=0.5, gt=0, le=10, description="Wait at most this for a reply")
    retries: int = Field(default=1, ge=0, le=5)
    comm_lost_after: int = Field(default=3, ge=1, le=100, description="Failed polls in a row → COMM_LOST")
    lost_interval_s: float = Field(default=10.0, ge=0.2, le=3600, description="Poll interval once lost")
    rated_current_a: float | None = Field(default=None, gt=0, description="Circuit rating for overcurrent")


class ModbusDeviceConfig(_DeviceBase):
    """A Modbus RTU instrument on the bus, described by a register profile."""

    type: Literal["modbus"] = "modbus"
    unit: int = Field(ge=1, le=247, description="Modbus slave address")
    profile: str = Field(description="Shipped profile name (e.g. gas_generic) or a YAML file path")


class Dlt645DeviceConfig(_DeviceBase):
    """A DL/T 645-2007 meter on the bus."""

    type: Literal["dlt645"] = "dlt645"
    address: str = Field(pattern=r"^[0-9]{12}$", description="Meter number as printed (12 digits)")
    data_ids: list[str] = Field(
        default_factory=lambda: [f"{di:08X}" for di in dlt645.DATA_IDS],
        description="Data identifiers to read, hex (00010000, 02010100, ...)",
    )
    interval_s: float = Field(default=5.0, ge=0.2, le=3600)
    timeout_s: float = Field(default=1.0, gt=0, le=10)


BusDeviceConfig = Annotated[ModbusDeviceConfig | Dlt645DeviceConfig, Field(discriminator="type")]


class SerialBusConfig(_Strict):
    """The `rs485_bus` input: one serial port and the devices on it."""

    type: Literal["rs485_bus"] = "rs485_bus"
    name: str = Field(default="bus0", pattern=r"^[a-z0-9_-]{1,32}$")
    port: str = Field(min_length=1, description="e.g. /dev/serial/by-id/usb-FTDI_..._A10K1234-if00-port0")
    baudrate: int = Field(default=9600, gt=0)
    parity: Literal["N", "E", "O"] = Field(default="N", description="DL/T 645 meters: usually E (8E1, 2400)")
    bytesize: Literal[7, 8] = 8
    stopbits: Literal[1, 2] = 1
    summary_period_s: int = Field(default=60, ge=1, le=3600)
    reopen_initial_s: float = Field(default=0.5, gt=0, le=60)
    reopen_max_s: float = Field(default=5.0, gt=0, le=600)
    devices: list[BusDeviceConfig] = Field(min_length=1)

    def build(self, ctx: Any) -> Input:
        """Build the input with the point's shared SafetyHub (one engine and alarm panel per point)."""
        return SerialBusInput(self, hub=getattr(ctx, "safety_hub", None), clock=ctx.clock)


# ---- link: the port and one transaction at a time -------------------------------------------------


class LinkError(OSError):
    """The port failed (unplugged, gone, permission): close it and reopen later."""


@dataclass(frozen=True, slots=True)
class Reply:
    kind: Literal["ok", "no_answer", "timeout", "crc_error"]
    value: Any = None


Parser = Callable[[bytearray], tuple[int, Any, str | None]]


class SerialLink:
    """The one owner of a serial port: opens by path, one request/reply at a time."""

    def __init__(self, config: SerialBusConfig, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self._port: serial.Serial | None = None

    @property
    def is_open(self) -> bool:
        return self._port is not None and self._port.is_open

    def open(self) -> None:
        try:
            self._port = serial.Serial(
                self.config.port, baudrate=self.config.baudrate, bytesize=self.config.bytesize,
                parity=self.config.parity, stopbits=self.config.stopbits, timeout=READ_SLICE_SECONDS,
                write_timeout=2.0, exclusive=True,
            )
        except (serial.SerialException, OSError, ValueError, termios.error) as exc:
            self._port = None
            raise LinkError(f"cannot open {self.config.port}: {exc}") from exc

    def close(self) -> None:
        if self._port is not None:
            with contextlib.suppress(serial.SerialException, OSError, termios.error):
                self._port.close()
        self._port = None

    def transact(self, request: bytes, parse: Parser, timeout: float) -> Reply:
        """Send `request`, read until `parse` finds the reply or `timeout` passes."""
        port = self._port
        if port is None:
            raise LinkError("port not open")
        buf = bytearray()
        received = crc_seen = False
        try:
            port.reset_input_buffer()  # a late reply to an earlier request is not this one's
            port.write(request)
            port.flush()
            deadline = self.clock.monotonic() + timeout
            while self.clock.monotonic() < deadline:
                chunk = port.read(max(1, port.in_waiting))
                if not chunk:
                    continue
                received = True
                buf += chunk
                while buf:
                    used, value, error = parse(buf)
                    if error == "checksum":
                        crc_seen = True
                    if used == 0:
                        break
                    del buf[:used]
                    if value is not None:
                        return Reply("ok", value)
        except (serial.SerialException, OSError, termios.error) as exc:
            raise LinkError(f"{self.config.port}: {exc}") from exc
        if crc_seen:
            return Reply("crc_error")
        return Reply("timeout" if received else "no_answer")


# ---- Modbus RTU reply splitting (pymodbus builds and decodes the PDUs) ------------------------------

_FRAMER = FramerRTU(DecodePDU(False))
_DECODER = DecodePDU(False)


def modbus_read_request(unit: int, function_code: int, start: int, count: int) -> bytes:
    cls = ReadHoldingRegistersRequest if function_code == 3 else ReadInputRegistersRequest
    return _FRAMER.buildFrame(cls(dev_id=unit, address=start, count=count))


def modbus_reply_parser(unit: int, function_code: int, count: int) -> Parser:
    """A parser for the reply to one read: registers (list) or an ExceptionResponse."""

    def parse(buf: bytearray) -> tuple[int, Any, str | None]:
        i = 0
        while i + 1 < len(buf) and not (buf[i] == unit and buf[i + 1] in (function_code, function_code | 0x80)):
            i += 1
        if i:
            return i, None, "garbage"
        if len(buf) < 3:
            return 0, None, None
        if buf[1] & 0x80:
            size = 5
        else:
            if buf[2] != 2 * count:
                return 1, None, "layout"
            size = 5 + buf[2]
        if len(buf) < size:
            return 0, None, None
        frame = bytes(buf[:size])
        if not FramerRTU.check_CRC(frame[:-2], int.from_bytes(frame[-2:], "big")):
            return 1, None, "checksum"
        pdu = _DECODER.decode(frame[1:-2])
        if pdu is None:
            return 1, None, "layout"
        if isinstance(pdu, ExceptionResponse):
            return size, pdu, None
        return size, list(pdu.registers), None

    return parse


def dlt645_reply_parser(request: dlt645.Frame) -> Parser:
    def parse(buf: bytearray) -> tuple[int, Any, str | None]:
        result = dlt645.decode_verbose(buf)
        frame = result.frame
        if frame is not None and not dlt645.is_reply_to(frame, request):
            return result.used, None, "other"  # our own request echoed, or another meter
        return result.used, frame, result.error

    return parse


# ---- drivers -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    channel: str
    quantity: mp.Quantity
    value: float | None
    unit: str | None
    role: str = "measurement"
    device_level: SafetyLevel | None = None
    fault: bool = False


@dataclass(frozen=True, slots=True)
class PollResult:
    kind: Literal["ok", "no_answer", "timeout", "crc_error", "error_reply", "port_error"]
    samples: list[Sample] = field(default_factory=list)
    detail: str | None = None


_FLAG_LEVEL = {
    mp.BitMeaning.WARN: SafetyLevel.WARN, mp.BitMeaning.ALARM: SafetyLevel.ALARM,
    mp.BitMeaning.ALARM2: SafetyLevel.ALARM2,
}
_RANK = {SafetyLevel.NORMAL: 0, SafetyLevel.WARN: 1, SafetyLevel.ALARM: 2, SafetyLevel.ALARM2: 3}


def _transact(link: SerialLink, request: bytes, parse: Parser, cfg: _DeviceBase, retries: int) -> Reply:
    reply = Reply("no_answer")
    for _attempt in range(retries + 1):
        reply = link.transact(request, parse, cfg.timeout_s)
        if reply.kind == "ok":
            return reply
    return reply


class ModbusDriver:
    def __init__(self, config: ModbusDeviceConfig) -> None:
        self.config = config
        self.profile = mp.load_profile(config.profile)
        self.plan = mp.read_plan(self.profile)

    def channels(self) -> list[tuple[str, mp.Quantity]]:
        return [(c.name, c.quantity) for c in self.profile.channels if c.role == "measurement"]

    def poll(self, link: SerialLink, retries: int) -> PollResult:
        blocks: dict[mp.ReadBlock, list[int]] = {}
        for block in self.plan:
            request = modbus_read_request(self.config.unit, block.function_code, block.start, block.count)
            parse = modbus_reply_parser(self.config.unit, block.function_code, block.count)
            reply = _transact(link, request, parse, self.config, retries)
            if reply.kind != "ok":
                return PollResult(reply.kind)
            if isinstance(reply.value, ExceptionResponse):
                return PollResult("error_reply", detail=f"exception {reply.value.exception_code}")
            blocks[block] = reply.value
        try:
            decoded = mp.decode(self.profile, mp.registers_from_blocks(blocks))
        except DECODE_ERRORS as exc:
            return PollResult("error_reply", detail=str(exc))
        return PollResult("ok", self._samples(decoded))

    def _samples(self, decoded: mp.DecodedSample) -> list[Sample]:
        faults = {f.channel for f in decoded.flags if f.meaning == mp.BitMeaning.FAULT}
        levels: dict[str | None, SafetyLevel] = {}
        for f in decoded.flags:
            level = _FLAG_LEVEL.get(f.meaning)
            if level is not None and _RANK[level] > _RANK[levels.get(f.channel, SafetyLevel.NORMAL)]:
                levels[f.channel] = level
        out = [
            Sample(v.channel, v.quantity, v.value, v.unit, v.role,
                   device_level=levels.get(v.channel, SafetyLevel.NORMAL) if v.role == "measurement" else None,
                   fault=v.channel in faults)
            for v in decoded.values
        ]
        for f in decoded.flags:
            out.append(Sample(f"status.{f.name}", mp.Quantity.OTHER, 1.0, None, "flag"))
        return out


_DLT_QUANTITY = {
    "energy.import": mp.Quantity.ENERGY_KWH, "voltage": mp.Quantity.VOLTAGE_V, "current": mp.Quantity.CURRENT_A,
    "power": mp.Quantity.POWER_KW, "power_factor": mp.Quantity.POWER_FACTOR, "frequency": mp.Quantity.FREQUENCY_HZ,
}


class Dlt645Driver:
    def __init__(self, config: Dlt645DeviceConfig) -> None:
        self.config = config
        self.data_ids = [dlt645.DATA_IDS[int(di, 16)] for di in config.data_ids]
        self.unsupported: set[int] = set()

    def channels(self) -> list[tuple[str, mp.Quantity]]:
        return [(d.name, _DLT_QUANTITY[d.name]) for d in self.data_ids]

    def poll(self, link: SerialLink, retries: int) -> PollResult:
        samples: list[Sample] = []
        refused = 0
        for data_id in self.data_ids:
            if data_id.di in self.unsupported:
                continue
            request = dlt645.read_request(self.config.address, data_id.di)
            reply = _transact(link, dlt645.encode(request), dlt645_reply_parser(request), self.config, retries)
            if reply.kind != "ok":
                return PollResult(reply.kind)
            try:
                value = dlt645.parse_read_reply(reply.value, self.config.address, data_id.di)
            except DeviceStatusError as exc:
                log.warning("meter %s: %s; not asking again", self.config.address, exc)
                self.unsupported.add(data_id.di)
                refused += 1
                continue
            except DECODE_ERRORS as exc:
                return PollResult("error_reply", detail=str(exc))
            samples.append(Sample(data_id.name, _DLT_QUANTITY[data_id.name], value, data_id.unit or None))
        if not samples and refused:
            return PollResult("error_reply", detail="meter refused every data identifier")
        return PollResult("ok", samples)


Driver = ModbusDriver | Dlt645Driver


# ---- health and scheduling ----------------------------------------------------------------------


@dataclass
class DeviceHealth:
    state: str = "unknown"
    polls: int = 0
    ok: int = 0
    no_answer: int = 0
    timeouts: int = 0
    crc_errors: int = 0
    error_replies: int = 0
    port_errors: int = 0
    consecutive_failures: int = 0
    lost: bool = False
    last_ok_mono: float | None = None
    detail: str | None = None
    period: dict[str, int] = field(default_factory=dict)

    def record(self, result: PollResult, now: float) -> None:
        self.polls += 1
        self.state = result.kind
        self.detail = result.detail
        counter = {"ok": "ok", "no_answer": "no_answer", "timeout": "timeouts", "crc_error": "crc_errors",
                   "error_reply": "error_replies", "port_error": "port_errors"}[result.kind]
        setattr(self, counter, getattr(self, counter) + 1)
        self.period["polls"] = self.period.get("polls", 0) + 1
        if result.kind == "ok":
            self.consecutive_failures = 0
            self.last_ok_mono = now
        else:
            self.consecutive_failures += 1
            self.period["failures"] = self.period.get("failures", 0) + 1
            self.period[counter] = self.period.get(counter, 0) + 1


@dataclass
class _Slot:
    config: ModbusDeviceConfig | Dlt645DeviceConfig
    driver: Driver
    next_due: float
    health: DeviceHealth = field(default_factory=DeviceHealth)


class PollScheduler:
    """Which device's turn it is: earliest due first; lost devices on their slower interval."""

    def __init__(self, slots: list[_Slot]) -> None:
        self.slots = slots

    def next(self, now: float) -> tuple[_Slot, float]:
        slot = min(self.slots, key=lambda s: s.next_due)
        return slot, max(0.0, slot.next_due - now)

    def done(self, slot: _Slot, now: float) -> None:
        interval = slot.config.lost_interval_s if slot.health.lost else slot.config.interval_s
        slot.next_due = max(slot.next_due + interval, now) if not slot.health.lost else now + interval


# ---- the input ----------------------------------------------------------------------------------


def default_hub(clock: Clock) -> SafetyHub:
    return SafetyHub(SafetyEngine(SafetyConfig(), clock), AlarmPanel(buzzer=LoggingActuator("buzzer")))


class SerialBusInput(Input):
    """The rs485_bus input plug-in."""

    def __init__(
        self, config: SerialBusConfig, hub: SafetyHub | None = None, clock: Clock | None = None
    ) -> None:
        self.config = config
        self.name = f"bus:{config.name}"
        self.clock = clock or SystemClock()
        self.hub = hub or default_hub(self.clock)
        self.link = SerialLink(config, self.clock)
        now = self.clock.monotonic()
        self.slots = [_Slot(d, self._driver(d), now) for d in config.devices]
        self.scheduler = PollScheduler(self.slots)
        self.telemetry = TelemetryAggregator(self.clock, config.summary_period_s)
        self._reopen_delay = config.reopen_initial_s
        self._reopen_at = now
        self._lock = threading.Lock()

    @staticmethod
    def _driver(cfg: ModbusDeviceConfig | Dlt645DeviceConfig) -> Driver:
        return ModbusDriver(cfg) if isinstance(cfg, ModbusDeviceConfig) else Dlt645Driver(cfg)

    def health(self) -> dict[str, DeviceHealth]:
        with self._lock:
            return {s.config.id: DeviceHealth(**{k: v for k, v in vars(s.health).items() if k != "period"})
                    for s in self.slots}

    def run(self, emitter: Emitter, stop: threading.Event) -> None:
        self.hub.attach(emitter)
        try:
            while not stop.is_set():
                self.step(emitter, stop)
        finally:
            self.link.close()
            self._flush(emitter)

    def step(self, emitter: Emitter, stop: threading.Event) -> None:
        """One turn: open the port if needed, poll the device whose turn it is, emit what is due."""
        now = self.clock.monotonic()
        if not self.link.is_open:
            if now < self._reopen_at:
                stop.wait(min(self._reopen_at - now, 0.2))
                return
            try:
                self.link.open()
                log.info("%s: opened %s", self.name, self.config.port)
                self._reopen_delay = self.config.reopen_initial_s
            except LinkError as exc:
                self._port_failed(emitter, str(exc))
                return
        slot, wait = self.scheduler.next(now)
        if wait > 0:
            self._flush(emitter)
            self.hub.run(lambda e: e.tick(), emitter)
            stop.wait(min(wait, 0.2))
            return
        retries = 0 if slot.health.lost else slot.config.retries
        try:
            result = slot.driver.poll(self.link, retries)
        except LinkError as exc:
            log.info("%s: port lost (%s); reopening", self.name, exc)
            self.link.close()
            self._reopen_at = self.clock.monotonic() + self._reopen_delay
            result = PollResult("port_error", detail=str(exc))
        self._record(slot, result, emitter)
        self.scheduler.done(slot, self.clock.monotonic())
        self._flush(emitter)

    def _port_failed(self, emitter: Emitter, detail: str) -> None:
        log.info("%s: %s; retry in %.1f s", self.name, detail, self._reopen_delay)
        self._reopen_at = self.clock.monotonic() + self._reopen_delay
        self._reopen_delay = min(self._reopen_delay * 2, self.config.reopen_max_s)
        for slot in self.slots:  # every device on a missing port is unreachable
            self._record(slot, PollResult("port_error", detail=detail), emitter)

    def _record(self, slot: _Slot, result: PollResult, emitter: Emitter) -> None:
        cfg = slot.config
        with self._lock:
            was_lost = slot.health.lost
            slot.health.record(result, self.clock.monotonic())
            lost_now = not was_lost and slot.health.consecutive_failures >= cfg.comm_lost_after
            if lost_now:
                slot.health.lost = True
            if result.kind == "ok" and was_lost:
                slot.health.lost = False
        if lost_now:
            log.warning("%s: device %s lost (%s)", self.name, cfg.id, result.kind)
            channels = slot.driver.channels()
            self.hub.run(lambda e: e.comm_lost(cfg.id, channels), emitter)
        if result.kind != "ok":
            return
        if was_lost:
            log.info("%s: device %s answers again", self.name, cfg.id)
            with self.hub.lock:
                self.hub.engine.comm_restored(cfg.id)
        # Close a finished period first: add() would otherwise roll it over and its summaries be lost.
        self._flush(emitter)
        for s in result.samples:
            if s.value is not None and s.role != "flag":
                self.telemetry.add(cfg.id, s.channel, s.value, s.unit)
        self.hub.run(lambda e: self._observe(e, cfg, result.samples), emitter)

    @staticmethod
    def _observe(engine: SafetyEngine, cfg: _DeviceBase, samples: list[Sample]) -> list[Any]:
        out: list[Any] = []
        for s in samples:
            if s.role != "measurement":
                continue
            out += engine.observe(cfg.id, s.channel, s.quantity, s.value, s.unit,
                                  device_level=s.device_level, fault=s.fault, rated_a=cfg.rated_current_a)
        return out

    def _flush(self, emitter: Emitter) -> None:
        with self._lock:
            for slot in self.slots:
                for key, n in slot.health.period.items():
                    self.telemetry.set_value(slot.config.id, f"comm.{key}", float(n))
            summaries = self.telemetry.due()
            if summaries:
                for slot in self.slots:
                    slot.health.period.clear()
        for summary in summaries:
            try:
                emitter.emit(Channel.TELEMETRY, summary.device_id, summary.body(), lane=Lane.NORMAL, ts=summary.end)
            except Exception:
                log.exception("%s: telemetry summary for %s not stored", self.name, summary.device_id)
