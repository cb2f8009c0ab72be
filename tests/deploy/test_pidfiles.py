"""The native scripts tell a live service from a stale pidfile.

A pidfile survives a reboot or a move to a fresh container, and its number may by then belong to
another process. The scripts must then start the service (not skip it as "running") and must never
signal the stranger. Runs a second Mosquitto from deploy/native/mosquitto.sh in a scratch state
directory on a free port, so the project's own broker is left alone.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "native" / "mosquitto.sh"
COMMON = ROOT / "deploy" / "native" / "common.sh"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("mosquitto") is None, reason="needs root and Mosquitto (make services)"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def scratch() -> Iterator[tuple[dict[str, str], Path, int]]:
    state = Path(tempfile.mkdtemp(prefix="yangyi-pidfile-"))
    state.chmod(0o755)  # the broker drops to the mosquitto user and must reach its directory
    port = _free_port()
    env = {**os.environ, "YANGYI_STATE_DIR": str(state), "YANGYI_MQTT_DIR": str(state / "mosquitto"),
           "YANGYI_MQTT_PORT": str(port)}
    yield env, state / "mosquitto" / "mosquitto.pid", port
    subprocess.run(["bash", str(SCRIPT), "stop"], env=env, check=False, capture_output=True)
    shutil.rmtree(state, ignore_errors=True)


def _script(env: dict[str, str], *args: str) -> None:
    subprocess.run(["bash", str(SCRIPT), *args], env=env, check=True, capture_output=True, timeout=60)


def test_a_pidfile_naming_a_stranger_is_started_over_and_the_stranger_left_alone(
    scratch: tuple[dict[str, str], Path, int],
) -> None:
    env, pidfile, port = scratch
    _script(env, "install")
    assert _listening(port)
    _script(env, "stop")
    assert not _listening(port)

    stranger = subprocess.Popen(["sleep", "300"])
    try:
        pidfile.write_text(f"{stranger.pid}\n")
        _script(env, "start")
        assert _listening(port), "start took a stale pidfile for a running broker"
        assert int(pidfile.read_text()) != stranger.pid
        assert stranger.poll() is None

        _script(env, "stop")
        assert not _listening(port)
        pidfile.write_text(f"{stranger.pid}\n")
        _script(env, "stop")
        assert stranger.poll() is None, "stop signalled a process that is not the broker"
        assert not pidfile.exists()
    finally:
        stranger.kill()
        stranger.wait()


@pytest.mark.parametrize(
    ("content", "word", "alive"),
    [("SELF", "bash", True), ("SELF", "no-such-word", False), ("999999999", "bash", False), ("junk", "bash", False),
     (None, "bash", False)],
)
def test_pidfile_alive(tmp_path: Path, content: str | None, word: str, alive: bool) -> None:
    pidfile = tmp_path / "x.pid"
    script = f'. "{COMMON}"; '
    if content == "SELF":
        script += f'echo $$ > "{pidfile}"; printf "5432\\n/data\\n" >> "{pidfile}"; '
    elif content is not None:
        pidfile.write_text(content + "\n")
    script += f'pidfile_alive "{pidfile}" "$WORD"'  # the word is not on the command line itself
    rc = subprocess.run(["bash", "-c", script], env={**os.environ, "WORD": word}, check=False).returncode
    assert (rc == 0) is alive


def test_the_broker_does_not_keep_the_callers_lock_or_pipes(
    scratch: tuple[dict[str, str], Path, int], tmp_path: Path
) -> None:
    """`flock L make test` must be free again when make test ends, though the broker lives on."""
    env, _pidfile, port = scratch
    lock = tmp_path / "held.lock"
    subprocess.run(["flock", str(lock), "bash", str(SCRIPT), "install"], env=env, check=True, capture_output=True,
                   timeout=60)
    assert _listening(port)
    assert subprocess.run(["flock", "-n", str(lock), "true"], check=False).returncode == 0, "the daemon holds the lock"
