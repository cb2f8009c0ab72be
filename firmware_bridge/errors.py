"""The one exception hierarchy of firmware_bridge: codecs, simulators and device access."""

from __future__ import annotations


class FirmwareBridgeError(Exception):
    """Base of every error raised on purpose by firmware_bridge."""


class CodecError(FirmwareBridgeError, ValueError):
    """Bytes or text from a device that cannot be understood (the codec recovers; callers may log)."""


class ChecksumError(CodecError):
    """A frame whose checksum does not match its contents."""


class FrameError(CodecError):
    """A frame with a bad layout: wrong length, bad markers, non-hex characters, bad field."""


class CardIdError(CodecError):
    """A card number that does not fit the reader's configured printing."""


class ResidentIdError(CodecError):
    """A resident ID number (GB 11643) with a bad length, date or check character."""


class DeviceStatusError(FirmwareBridgeError):
    """A device answered with a status meaning "no" (no card, read failed, busy)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class DeviceIOError(FirmwareBridgeError, OSError):
    """A device node could not be opened, read or written (unplugged, permissions, gone)."""


class SimulatorError(FirmwareBridgeError):
    """A simulator was given a schedule or setting it cannot play."""


# Caught at the I/O edge: expected from bad input, never a reason to stop reading.
DECODE_ERRORS: tuple[type[Exception], ...] = (CodecError, UnicodeDecodeError)
