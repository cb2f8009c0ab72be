"""Pure helpers of the API and the worker: online state, local day bounds, filters, settings."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from server.checkins.service import day_bounds
from server.errors import ConfigError
from server.ingest.worker import subscription_filters
from server.registry.service import is_online
from server.settings import load_settings

NOW = datetime(2026, 6, 3, 4, 0, tzinfo=UTC)


@pytest.mark.parametrize(("state", "age_s", "heartbeat", "expected"), [
    ("online", 10, 30, True),
    ("online", 60, 30, True),  # exactly two heartbeats
    ("online", 61, 30, False),
    ("online", 100, None, True),  # default heartbeat 60 s
    ("offline", 1, 30, False),
    ("degraded", 1, 30, False),
    (None, 1, 30, False),
])
def test_online_needs_status_online_and_recent_contact(state: str | None, age_s: int, heartbeat: int | None,
                                                      expected: bool) -> None:
    assert is_online(state, NOW - timedelta(seconds=age_s), heartbeat, NOW, 2.0, 60) is expected


def test_never_heard_from_is_offline() -> None:
    assert is_online("online", None, 30, NOW, 2.0, 60) is False


def test_local_day_bounds() -> None:
    start, end = day_bounds(date(2026, 6, 3), ZoneInfo("Asia/Shanghai"))
    assert start.astimezone(UTC) == datetime(2026, 6, 2, 16, 0, tzinfo=UTC)
    assert end - start == timedelta(days=1)


def test_subscription_filters_plain_shared_and_one_point() -> None:
    assert subscription_filters(None) == [f"yangyi/v1/+/+/{c}" for c in
                                          ("diner", "telemetry", "safety", "count", "status")]
    assert subscription_filters("ingest", "p7")[1] == "$share/ingest/yangyi/v1/p7/+/telemetry"


def test_settings_from_env_and_secret_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    monkeypatch.setenv("YANGYI_MQTT_PASSWORD_FILE", str(secret))
    monkeypatch.setenv("YANGYI_DB_PASSWORD_FILE", str(secret))
    monkeypatch.setenv("YANGYI_DB_PORT", "6000")
    monkeypatch.setenv("YANGYI_INGEST_BATCH_MAX", "123")
    monkeypatch.setenv("YANGYI_RETENTION_TELEMETRY_DAYS", "7")
    monkeypatch.delenv("YANGYI_DB_DSN", raising=False)
    monkeypatch.delenv("YANGYI_MQTT_PASSWORD", raising=False)
    s = load_settings()
    assert s.mqtt.resolved_password() == "s3cret"
    assert s.db.resolved_dsn() == "postgresql://yangyi:s3cret@127.0.0.1:6000/yangyi"
    assert s.ingest.batch_max == 123
    assert s.retention.per_table()["telemetry"] == 7
    assert s.retention.per_table()["diner_events"] is None  # the subsidy audit trail is kept by default


def test_bad_settings_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YANGYI_MQTT_PORT", "not-a-port")
    with pytest.raises(ConfigError, match="YANGYI_MQTT_PORT"):
        load_settings()


def test_missing_secret_file_is_a_config_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("YANGYI_MQTT_PASSWORD", raising=False)
    monkeypatch.setenv("YANGYI_MQTT_PASSWORD_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="MQTT password"):
        load_settings().mqtt.resolved_password()
