"""deploy/compose.yaml stays consistent with the native route in deploy/native/."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
BROKER_KEYS = (
    "allow_anonymous", "persistence", "max_inflight_messages", "max_queued_messages",
    "max_queued_bytes", "max_packet_size", "persistent_client_expiration", "per_listener_settings",
)


def _settings(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([a-z_]+) (\S+)$", line.strip())
        if m and m.group(1) in BROKER_KEYS:
            out[m.group(1)] = m.group(2)
    return out


def test_broker_limits_and_auth_match() -> None:
    native = _settings((ROOT / "deploy/native/mosquitto.sh").read_text())
    docker = _settings((ROOT / "deploy/docker/mosquitto.conf").read_text())
    assert set(native) == set(BROKER_KEYS)
    assert native == docker
    assert native["allow_anonymous"] == "false"


def test_compose_runs_the_project_programs_on_the_same_timescaledb() -> None:
    compose = yaml.safe_load((ROOT / "deploy/compose.yaml").read_text())
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    services = compose["services"]
    for name in ("migrate", "server", "ingest", "maintenance"):
        assert services[name]["command"][0] in scripts, name
    image = services["timescaledb"]["image"]
    assert re.search(r":2\.19\.\d+-pg17$", image), image
    native = (ROOT / "deploy/native/timescaledb.sh").read_text() + (ROOT / "deploy/native/common.sh").read_text()
    assert "YANGYI_PG_MAJOR:-17" in native
    acl_mounts = [v for v in services["mosquitto-init"]["volumes"] if v.startswith("./mosquitto/acl")]
    assert acl_mounts, "compose must use the same ACL file as the native broker"
