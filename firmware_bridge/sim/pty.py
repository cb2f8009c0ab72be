"""A pseudo-terminal a simulator plays a device through, optionally behind a stable symlink.

The simulator keeps the master side; the program under test opens the slave device node (or the
symlink) as if it were a USB-serial adapter. `close()` removes the node and the symlink, like
pulling the adapter out; `open()` again gives a new node behind the same symlink, like plugging
it back in. Ptys ignore baud rate and cannot hold parity: run pty tests at 8N1.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import threading
import time
import tty
from pathlib import Path
from types import TracebackType

from firmware_bridge.errors import DeviceIOError

log = logging.getLogger(__name__)


class Pty:
    """The master side of a pseudo-terminal, with the slave held open in raw mode."""

    def __init__(self, link: str | os.PathLike[str] | None = None) -> None:
        self.link = Path(link) if link is not None else None
        self._master: int | None = None
        self._slave: int | None = None
        self._device: str | None = None

    @property
    def device(self) -> str:
        """The slave's device node, e.g. /dev/pts/7."""
        if self._device is None:
            raise DeviceIOError("pty is closed")
        return self._device

    @property
    def path(self) -> str:
        """What a reader should open: the symlink if one was asked for, else the device node."""
        return str(self.link) if self.link is not None else self.device

    @property
    def is_open(self) -> bool:
        return self._master is not None

    @property
    def master_fd(self) -> int:
        if self._master is None:
            raise DeviceIOError("pty is closed")
        return self._master

    def open(self) -> str:
        """Create the pty (and point the symlink at it); return the path a reader should open."""
        if self._master is not None:
            return self.path
        master, slave = os.openpty()
        # Raw: no echo, no CR/LF translation, no line buffering; the bytes are the wire bytes.
        tty.setraw(slave)
        tty.setraw(master)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self._device = os.ttyname(slave)
        if self.link is not None:
            tmp = self.link.with_name(f".{self.link.name}.{os.getpid()}.tmp")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            os.symlink(self._device, tmp)
            os.replace(tmp, self.link)  # atomic: a reader never sees a half-made link
        log.info("pty open at %s (%s)", self.path, self._device)
        return self.path

    def close(self) -> None:
        """Remove the device node (and symlink): to a reader the device is unplugged."""
        if self.link is not None and self._device is not None:
            with contextlib.suppress(FileNotFoundError):
                if os.readlink(self.link) == self._device:
                    self.link.unlink()
        for fd in (self._slave, self._master):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        if self._master is not None:
            log.info("pty %s closed", self._device)
        self._master = self._slave = None
        self._device = None

    def reopen(self) -> str:
        """Unplug and plug back in: a new device node behind the same symlink."""
        self.close()
        return self.open()

    def write(self, data: bytes, timeout: float = 5.0) -> None:
        """Write all of `data` to the reader's side, waiting while the pty buffer is full."""
        view = memoryview(data)
        deadline = time.monotonic() + timeout
        while view:
            try:
                n = os.write(self.master_fd, view)
            except BlockingIOError:
                n = 0
            except OSError as exc:
                raise DeviceIOError(f"write to pty {self._device} failed: {exc}") from exc
            view = view[n:]
            if view:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DeviceIOError(f"pty {self._device}: reader is not draining")
                select.select([], [self.master_fd], [], left)

    def read(self, size: int = 4096, timeout: float | None = 0.0) -> bytes:
        """Read what the reader wrote; b"" if nothing arrived within `timeout` seconds."""
        ready, _, _ = select.select([self.master_fd], [], [], timeout)
        if not ready:
            return b""
        try:
            return os.read(self.master_fd, size)
        except BlockingIOError:
            return b""
        except OSError as exc:
            if exc.errno == errno.EIO:  # no slave open right now: nothing to read
                return b""
            raise DeviceIOError(f"read from pty {self._device} failed: {exc}") from exc

    def __enter__(self) -> Pty:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class PtyBridge:
    """Two ptys joined back to back, like a null-modem cable, for peers that open a device by path.

    A peer we did not write (pymodbus's serial server, the `dlt645` package's meter) opens side
    `a`; the program under test opens side `b`. A relay thread copies bytes both ways. `unplug(side)`
    and `plug(side)` remove and recreate one side's node (bytes meant for an unplugged side are lost,
    as on a real bus).
    """

    RELAY_POLL_SECONDS = 0.02

    def __init__(
        self,
        link_a: str | os.PathLike[str] | None = None,
        link_b: str | os.PathLike[str] | None = None,
    ) -> None:
        self.a = Pty(link_a)
        self.b = Pty(link_b)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> tuple[str, str]:
        """Open both sides and start relaying; return (path of a, path of b)."""
        with self._lock:
            self.a.open()
            self.b.open()
        self._stop.clear()
        self._thread = threading.Thread(target=self._relay, name="pty-bridge", daemon=True)
        self._thread.start()
        return self.a.path, self.b.path

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        with self._lock:
            self.a.close()
            self.b.close()

    def unplug(self, side: str = "b") -> None:
        with self._lock:
            self._side(side).close()

    def plug(self, side: str = "b") -> str:
        with self._lock:
            return self._side(side).open()

    def _side(self, side: str) -> Pty:
        if side not in ("a", "b"):
            raise ValueError(f"side must be 'a' or 'b', not {side!r}")
        return self.a if side == "a" else self.b

    def _relay(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                fds = {p.master_fd: p for p in (self.a, self.b) if p.is_open}
                ready = select.select(list(fds), [], [], 0)[0] if fds else []
                for fd in ready:
                    src = fds[fd]
                    dst = self.b if src is self.a else self.a
                    try:
                        data = src.read(4096, timeout=0)
                    except DeviceIOError:
                        continue
                    if data and dst.is_open:
                        with contextlib.suppress(DeviceIOError):
                            dst.write(data, timeout=0.5)
            if not ready:
                time.sleep(self.RELAY_POLL_SECONDS)

    def __enter__(self) -> PtyBridge:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
