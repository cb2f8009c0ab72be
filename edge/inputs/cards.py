"""Card-reader inputs: serial EM4100 / line / ID-card SAM readers and USB keyboard readers.

Each input opens its device, decodes frames with the firmware_bridge codec, turns them into a
canonical card id, de-bounces held cards, asks `edge.checkin.Checkin` for the decision, emits the
DinerEvent (the emitter returns after the outbox commit) and only THEN gives feedback through an
`Indicator`. A device that goes away (USB adapter pulled, pty closed) is reopened with backoff
without restarting the input. Malformed input is logged once per kind at WARNING, then at DEBUG.
"""

from __future__ import annotations

import logging
import select
import threading
import time
from abc import abstractmethod
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from firmware_bridge import cardid, em4100, lines
from firmware_bridge import idcard_sam as sam
from firmware_bridge.cardid import CardFormat, CardIdSettings
from firmware_bridge.contract import Channel, CheckinMethod, DinerKind
from firmware_bridge.contract.topics import ID_PATTERN
from firmware_bridge.errors import DECODE_ERRORS, DeviceStatusError

from ..checkin import Checkin, Decision, Feedback
from ..clock import Clock, SystemClock
from ..events import Emitter, Input

log = logging.getLogger(__name__)

READ_TIMEOUT_SECONDS = 0.2
MAX_BUFFER_BYTES = 8192

# -- feedback ------------------------------------------------------------------------------------


class Indicator(Protocol):
    """Shows a decision to the person at the reader (log, buzzer, LED, voice)."""

    def show(self, device_id: str, feedback: Feedback) -> None: ...


class LoggingIndicator:
    """The default indicator: one INFO line per tap."""

    def show(self, device_id: str, feedback: Feedback) -> None:
        log.info("[%s] %s / %s%s", device_id, feedback.zh, feedback.en,
                 f" ({feedback.label})" if feedback.label else "")


# -- configuration ---------------------------------------------------------------------------------

Id = Annotated[str, Field(pattern=ID_PATTERN)]
Lax = Field(strict=False)  # enums and numbers as written in YAML


class CardReaderBase(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    name: str | None = Field(default=None, max_length=64, description="Thread name; defaults to the type")
    device_id: Id = Field(description="Device id of the reader within the point")
    kind: Annotated[DinerKind, Lax] = Field(default=DinerKind.TAP, description="delivery: every tap is a 送餐")
    debounce_s: Annotated[float, Lax] = Field(default=2.0, ge=0, le=600, description="Same card within this → one read")
    reopen_min_s: Annotated[float, Lax] = Field(default=0.5, gt=0, le=60)
    reopen_max_s: Annotated[float, Lax] = Field(default=10.0, gt=0, le=600)

    def build(self, ctx: Any) -> Input:
        """Build the input; the agent's InputContext must carry `checkin` (and may carry `indicator`)."""
        checkin = getattr(ctx, "checkin", None)
        if checkin is None:
            raise TypeError("card readers need InputContext.checkin (an edge.checkin.Checkin)")
        return build_card_input(self, checkin, getattr(ctx, "indicator", None), getattr(ctx, "clock", None))


class SerialReaderBase(CardReaderBase):
    port: str = Field(description="Serial device, e.g. /dev/ttyUSB0 or a /dev/serial/by-id/ link")
    baudrate: Annotated[int, Lax] = Field(default=9600, gt=0)


class PrintedCardSettings(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    format: Annotated[CardFormat, Lax]
    reversed: bool = False
    em_high: Annotated[int, Lax] = Field(default=0, ge=0, le=0xFFFF)

    def settings(self) -> CardIdSettings:
        return CardIdSettings(self.format, self.reversed, self.em_high)


class Em4100ReaderConfig(SerialReaderBase):
    """RDM6300-style EM4100 module on a serial port (9600 8N1)."""

    type: Literal["card_em4100"]


class LineReaderConfig(SerialReaderBase):
    """A reader printing one card number per line."""

    type: Literal["card_lines"]
    card: PrintedCardSettings


class IdCardReaderConfig(SerialReaderBase):
    """Resident ID card SAM reader (find/select/read polling)."""

    type: Literal["card_idcard"]
    baudrate: Annotated[int, Lax] = Field(default=115200, gt=0)
    debounce_s: Annotated[float, Lax] = Field(default=5.0, ge=0, le=600)
    poll_interval_s: Annotated[float, Lax] = Field(default=0.3, gt=0, le=10)
    reply_timeout_s: Annotated[float, Lax] = Field(default=1.0, gt=0, le=10)


class KeyboardReaderConfig(CardReaderBase):
    """USB keyboard-style reader read through evdev, grabbed so digits never reach a console."""

    type: Literal["card_keyboard"]
    device: str = Field(description="evdev node, e.g. /dev/input/by-id/usb-…-event-kbd")
    card: PrintedCardSettings
    grab: bool = True


CardReaderConfig = Annotated[
    Em4100ReaderConfig | LineReaderConfig | IdCardReaderConfig | KeyboardReaderConfig,
    Field(discriminator="type"),
]


# -- the shared part ---------------------------------------------------------------------------------


class CardInput(Input):
    """Reopen-with-backoff loop, de-bouncing, check-in, emit, then feedback."""

    method: CheckinMethod = CheckinMethod.CARD

    def __init__(
        self, config: CardReaderBase, checkin: Checkin, indicator: Indicator | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.config = config
        self.name = config.name or str(getattr(config, "type", "card"))
        self.checkin = checkin
        self.indicator: Indicator = indicator or LoggingIndicator()
        self.clock: Clock = clock or SystemClock()
        self.debouncer = em4100.Debouncer(config.debounce_s)
        self.opened = 0  # times the device was opened; tests watch it
        self._malformed_seen: set[str] = set()

    @property
    def source(self) -> str:
        return str(getattr(self.config, "port", None) or getattr(self.config, "device", "?"))

    @abstractmethod
    def _session(self, emitter: Emitter, stop: threading.Event) -> None:
        """Open the device, read until it fails or `stop` is set; close it on the way out."""

    def run(self, emitter: Emitter, stop: threading.Event) -> None:
        backoff = self.config.reopen_min_s
        failing = False
        while not stop.is_set():
            started = time.monotonic()
            try:
                self._session(emitter, stop)
            except OSError as exc:  # serial.SerialException is an OSError (IOError)
                if time.monotonic() - started > self.config.reopen_max_s:
                    backoff = self.config.reopen_min_s  # it worked for a while: retry soon
                if not failing:
                    log.info("card reader %s at %s unavailable (%s); retrying", self.config.device_id,
                             self.source, exc)
                failing = True
                stop.wait(backoff)
                backoff = min(backoff * 2, self.config.reopen_max_s)
                continue
            failing = False

    def _opened(self) -> None:
        self.opened += 1
        log.info("card reader %s open at %s", self.config.device_id, self.source)

    def malformed(self, exc: Exception, offset: int | None = None) -> None:
        """Log a malformed frame or card number: once per kind at WARNING, then at DEBUG."""
        kind = type(exc).__name__
        level = logging.DEBUG if kind in self._malformed_seen else logging.WARNING
        self._malformed_seen.add(kind)
        log.log(level, "card reader %s at %s: malformed input at offset %s: %s",
                self.config.device_id, self.source, offset, exc)

    def card(self, card_id: str, emitter: Emitter) -> Decision | None:
        """Handle one read card: de-bounce, decide, emit durably, then give feedback."""
        if not self.debouncer.accept(card_id, self.clock.monotonic()):
            return None
        device_id = self.config.device_id

        def emit(decision: Decision) -> None:
            emitter.emit(Channel.DINER, device_id, decision.body(), ts=decision.at)

        try:
            decision = self.checkin.tap(card_id, self.method, device_id, emit, reader_kind=self.config.kind,
                                        persist=False)
        except Exception:
            # The event was not stored: no feedback, so the elder taps again.
            log.exception("card reader %s: tap of %s not recorded", device_id, cardid.mask(card_id))
            return None
        try:
            self.indicator.show(device_id, decision.feedback)
        except Exception:
            log.exception("card reader %s: indicator failed", device_id)
        self.checkin.persist_soon()  # after the feedback, off this thread: the outbox row holds the tap
        return decision


def feed(buf: bytearray, decode: Callable[[bytearray], tuple[int, Any]], offset: int) -> Iterator[tuple[int, Any]]:
    """Decode every complete frame in buf (consuming it); yield (stream offset, frame)."""
    while buf:
        used, frame = decode(buf)
        if used == 0:
            if len(buf) > MAX_BUFFER_BYTES:  # never-ending "need more": give up on it
                used = len(buf)
            else:
                return
        if frame is None:
            log.debug("dropped %d bytes at offset %d", used, offset)
        else:
            yield offset, frame
        buf[:used] = bytes(used)  # wipe before release (ID card replies hold personal data)
        del buf[:used]
        offset += used


# -- serial readers --------------------------------------------------------------------------------


def _open_serial(port: str, baudrate: int, timeout: float) -> Any:
    import serial

    return serial.Serial(port, baudrate=baudrate, bytesize=8, parity="N", stopbits=1, timeout=timeout,
                         exclusive=True)


class StreamSerialInput(CardInput):
    """Readers that only talk: EM4100 modules and line printers."""

    def __init__(self, config: SerialReaderBase, checkin: Checkin, indicator: Indicator | None = None,
                 clock: Clock | None = None) -> None:
        super().__init__(config, checkin, indicator, clock)
        self.serial_config = config

    @abstractmethod
    def decode(self, buf: bytearray) -> tuple[int, Any]: ...

    @abstractmethod
    def card_id(self, frame: Any) -> str: ...

    def _session(self, emitter: Emitter, stop: threading.Event) -> None:
        port = _open_serial(self.serial_config.port, self.serial_config.baudrate, READ_TIMEOUT_SECONDS)
        try:
            self._opened()
            buf = bytearray()
            consumed = 0  # stream offset of buf[0], for log lines
            while not stop.is_set():
                chunk = port.read(max(1, port.in_waiting))
                if not chunk:
                    continue
                buf += chunk
                before = len(buf)
                for at, frame in feed(buf, self.decode, consumed):
                    try:
                        card_id = self.card_id(frame)
                    except DECODE_ERRORS as exc:
                        self.malformed(exc, at)
                        continue
                    self.card(card_id, emitter)
                consumed += before - len(buf)
        finally:
            port.close()


class Em4100Input(StreamSerialInput):
    def decode(self, buf: bytearray) -> tuple[int, Any]:
        return em4100.decode(buf)

    def card_id(self, frame: Any) -> str:
        return cardid.from_em4100(frame.data)


class LineReaderInput(StreamSerialInput):
    def __init__(self, config: LineReaderConfig, checkin: Checkin, indicator: Indicator | None = None,
                 clock: Clock | None = None) -> None:
        super().__init__(config, checkin, indicator, clock)
        self.settings = config.card.settings()
        if self.settings.format is CardFormat.RESIDENT_ID:
            self.method = CheckinMethod.IDCARD

    def decode(self, buf: bytearray) -> tuple[int, Any]:
        return lines.decode(buf)

    def card_id(self, frame: Any) -> str:
        return cardid.normalise(frame.text, self.settings)


class IdCardInput(CardInput):
    """Polls a SAM reader: find → select → read; the ID number becomes the card id."""

    method = CheckinMethod.IDCARD

    def __init__(self, config: IdCardReaderConfig, checkin: Checkin, indicator: Indicator | None = None,
                 clock: Clock | None = None) -> None:
        super().__init__(config, checkin, indicator, clock)
        self.id_config = config

    def _session(self, emitter: Emitter, stop: threading.Event) -> None:
        cfg = self.id_config
        port = _open_serial(cfg.port, cfg.baudrate, min(READ_TIMEOUT_SECONDS, cfg.reply_timeout_s))
        try:
            self._opened()
            session = sam.Session()
            port.reset_input_buffer()
            while not stop.is_set():
                port.write(sam.encode(session.command()))
                reply = self._reply(port, stop)
                if reply is None:
                    if session.step is not sam.Step.FIND:
                        log.debug("SAM reader %s: no reply to %s", cfg.device_id, session.step.name)
                    session.reset()
                    stop.wait(cfg.poll_interval_s)
                    continue
                try:
                    read = session.on_reply(reply)
                except DeviceStatusError as exc:
                    log.debug("SAM reader %s: %s", cfg.device_id, exc)
                    stop.wait(cfg.poll_interval_s)
                    continue
                except DECODE_ERRORS as exc:
                    self.malformed(exc)
                    continue
                finally:
                    del reply  # the read reply holds the photo: drop it at once
                if read is not None:
                    self.card(cardid.ID_PREFIX + read.id_number, emitter)
                elif session.step is sam.Step.FIND:
                    stop.wait(cfg.poll_interval_s)
        finally:
            port.close()

    def _reply(self, port: Any, stop: threading.Event) -> sam.SamReply | None:
        buf = bytearray()
        deadline = time.monotonic() + self.id_config.reply_timeout_s
        try:
            while not stop.is_set() and time.monotonic() < deadline:
                chunk = port.read(max(1, port.in_waiting))
                if chunk:
                    buf += chunk
                    for _, frame in feed(buf, sam.decode_reply, 0):
                        reply: sam.SamReply = frame
                        return reply
            return None
        finally:
            buf[:] = bytes(len(buf))


# -- keyboard readers ---------------------------------------------------------------------------------

# Linux input-event-codes.h key codes → (unshifted, shifted) characters a card reader types.
KEY_ENTER = 28
KEY_KPENTER = 96
SHIFT_KEYS = frozenset({42, 54})  # KEY_LEFTSHIFT, KEY_RIGHTSHIFT
_ROW_KEYS = {
    2: "1!", 3: "2@", 4: "3#", 5: "4$", 6: "5%", 7: "6^", 8: "7&", 9: "8*", 10: "9(", 11: "0)",
    12: "-_", 39: ";:", 51: ",<", 52: ".>", 53: "/?", 57: "  ",
    71: "77", 72: "88", 73: "99", 74: "--", 75: "44", 76: "55", 77: "66", 79: "11", 80: "22", 81: "33",
    82: "00", 83: "..",
}
_LETTERS = {
    16: "q", 17: "w", 18: "e", 19: "r", 20: "t", 21: "y", 22: "u", 23: "i", 24: "o", 25: "p",
    30: "a", 31: "s", 32: "d", 33: "f", 34: "g", 35: "h", 36: "j", 37: "k", 38: "l",
    44: "z", 45: "x", 46: "c", 47: "v", 48: "b", 49: "n", 50: "m",
}
MAX_KEY_LINE = 64


def key_char(code: int, shift: bool) -> str | None:
    """The character a key types (US layout), or None for keys a card reader does not type."""
    if code in _LETTERS:
        ch = _LETTERS[code]
        return ch.upper() if shift else ch
    pair = _ROW_KEYS.get(code)
    if pair is None:
        return None
    return pair[1] if shift else pair[0]


class KeyLineAssembler:
    """Pure: key events (code, value: 1 down, 0 up, 2 repeat) → one typed line per Enter."""

    def __init__(self) -> None:
        self._chars: list[str] = []
        self._shift = 0

    def feed(self, code: int, value: int) -> str | None:
        if code in SHIFT_KEYS:
            self._shift = max(0, self._shift + (1 if value == 1 else -1 if value == 0 else 0))
            return None
        if value != 1:
            return None
        if code in (KEY_ENTER, KEY_KPENTER):
            line, self._chars = "".join(self._chars).strip(), []
            return line or None
        ch = key_char(code, self._shift > 0)
        if ch is not None and len(self._chars) < MAX_KEY_LINE:
            self._chars.append(ch)
        return None


class KeyboardInput(CardInput):
    method = CheckinMethod.KEYBOARD

    def __init__(self, config: KeyboardReaderConfig, checkin: Checkin, indicator: Indicator | None = None,
                 clock: Clock | None = None) -> None:
        super().__init__(config, checkin, indicator, clock)
        self.kb_config = config
        self.settings = config.card.settings()

    def _session(self, emitter: Emitter, stop: threading.Event) -> None:
        try:
            import evdev  # Linux only: imported here so the module loads anywhere
        except ImportError as exc:
            raise OSError(f"evdev is not available: {exc}") from exc
        dev = evdev.InputDevice(self.kb_config.device)
        try:
            if self.kb_config.grab:
                dev.grab()
            self._opened()
            keys = KeyLineAssembler()
            ev_key = evdev.ecodes.EV_KEY
            while not stop.is_set():
                ready, _, _ = select.select([dev.fd], [], [], READ_TIMEOUT_SECONDS)
                if not ready:
                    continue
                for event in dev.read():
                    if event.type != ev_key:
                        continue
                    line = keys.feed(event.code, event.value)
                    if line is None:
                        continue
                    try:
                        card_id = cardid.normalise(line, self.settings)
                    except DECODE_ERRORS as exc:
                        self.malformed(exc)
                        continue
                    self.card(card_id, emitter)
        finally:
            try:
                if self.kb_config.grab:
                    dev.ungrab()
            except OSError:
                pass
            dev.close()


def build_card_input(
    config: CardReaderBase, checkin: Checkin, indicator: Indicator | None = None, clock: Clock | None = None,
) -> CardInput:
    """The input for a reader config."""
    if isinstance(config, Em4100ReaderConfig):
        return Em4100Input(config, checkin, indicator, clock)
    if isinstance(config, LineReaderConfig):
        return LineReaderInput(config, checkin, indicator, clock)
    if isinstance(config, IdCardReaderConfig):
        return IdCardInput(config, checkin, indicator, clock)
    if isinstance(config, KeyboardReaderConfig):
        return KeyboardInput(config, checkin, indicator, clock)
    raise TypeError(f"not a card reader config: {type(config).__name__}")
