"""Server settings from the environment, one pydantic-settings model per section.

Every variable is optional; the defaults match deploy/native (broker 127.0.0.1:18830 as
`yangyi-server`, TimescaleDB 127.0.0.1:54329 database `yangyi`, secrets under /var/lib/yangyi/secrets).

    YANGYI_DB_DSN            full DSN; else built from YANGYI_DB_HOST/PORT/NAME/USER/PASSWORD_FILE
    YANGYI_MQTT_HOST/PORT/USERNAME, YANGYI_MQTT_PASSWORD or YANGYI_MQTT_PASSWORD_FILE
    YANGYI_MQTT_CLIENT_ID, YANGYI_MQTT_SHARE_GROUP (scale-out), YANGYI_MQTT_SESSION_EXPIRY_S
    YANGYI_INGEST_BATCH_MAX, YANGYI_INGEST_BATCH_LATENCY_S, YANGYI_INGEST_MAX_PAYLOAD_BYTES ...
    YANGYI_RETENTION_<TABLE>_DAYS (empty = keep for ever), YANGYI_API_TIMEZONE ...
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from server.auth.settings import AuthSettings
from server.errors import ConfigError

STATE_DIR = Path("/var/lib/yangyi")


def _read_secret(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} from {path}: {exc}") from exc


class DbSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="YANGYI_DB_", extra="forbid")

    dsn: SecretStr | None = Field(default=None, description="Full PostgreSQL DSN; overrides the parts")
    host: str = "127.0.0.1"
    port: int = Field(default=54329, ge=1, le=65535)
    name: str = "yangyi"
    user: str = "yangyi"
    password_file: Path = STATE_DIR / "secrets" / "db_password"
    pool_min: int = Field(default=1, ge=0)
    pool_max: int = Field(default=8, ge=1)

    def resolved_dsn(self) -> str:
        """The DSN to connect with (reads the password file when no DSN is given)."""
        if self.dsn is not None:
            return self.dsn.get_secret_value()
        password = quote(_read_secret(self.password_file, "the database password"), safe="")
        return f"postgresql://{self.user}:{password}@{self.host}:{self.port}/{self.name}"


class MqttSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="YANGYI_MQTT_", extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=18830, ge=1, le=65535)
    username: str = "yangyi-server"
    password: SecretStr | None = None
    password_file: Path = STATE_DIR / "secrets" / "mqtt_server_password"
    client_id: str = Field(default="yangyi-ingest", min_length=1, max_length=64)
    # Empty: a plain subscription. A name: `$share/<name>/...` so several workers split the stream.
    share_group: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    # "+" takes every meal point; one point id restricts the worker to it (tests, debugging).
    subscribe_point: str = Field(default="+", pattern=r"^(\+|[A-Za-z0-9][A-Za-z0-9._-]{0,63})$")
    # How long the broker keeps the worker's session and queues while it is away.
    session_expiry_s: int = Field(default=7 * 86400, ge=0)
    # Unacked QoS 1 messages the broker may have in flight to us; bounds one batch's size in practice.
    receive_maximum: int = Field(default=10000, ge=1, le=65535)
    keepalive_s: int = Field(default=30, ge=5)

    def resolved_password(self) -> str:
        if self.password is not None:
            return self.password.get_secret_value()
        return _read_secret(self.password_file, "the MQTT password")


class IngestSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="YANGYI_INGEST_", extra="forbid")

    batch_max: int = Field(default=5000, ge=1, description="Messages per transaction at most")
    # Also bounds a batch of big messages (100 readings each) so validation and writes pipeline.
    batch_max_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, description="Payload bytes per batch")
    batch_latency_s: float = Field(default=0.1, gt=0, description="Longest wait to fill a batch")
    max_payload_bytes: int = Field(default=768 * 1024, ge=64, description="Larger payloads: dead letter")
    # "process": validation and database writes in a child process, off the MQTT process's GIL;
    # "thread": the same in a thread (one process, slower under load).
    writer: Literal["process", "thread"] = "process"
    retry_initial_s: float = Field(default=0.5, gt=0)
    retry_max_s: float = Field(default=30.0, gt=0)


class RetentionSettings(BaseSettings):
    """Days to keep each hypertable's chunks; None keeps for ever."""

    model_config = SettingsConfigDict(env_prefix="YANGYI_RETENTION_", extra="forbid")

    telemetry_days: int | None = Field(default=90, ge=1)
    # Receipts are the dedup memory: keep them longer than any edge outbox could hold an event.
    message_receipts_days: int | None = Field(default=90, ge=1)
    count_events_days: int | None = Field(default=400, ge=1)
    # Safety events are the safety ledger (台账): three years by default.
    safety_events_days: int | None = Field(default=3 * 366, ge=1)
    # Diner events are the subsidy audit trail: never dropped unless the county says so.
    diner_events_days: int | None = Field(default=None, ge=1)
    dead_letters_days: int | None = Field(default=30, ge=1)

    def per_table(self) -> dict[str, int | None]:
        return {
            "telemetry": self.telemetry_days,
            "message_receipts": self.message_receipts_days,
            "count_events": self.count_events_days,
            "safety_events": self.safety_events_days,
            "diner_events": self.diner_events_days,
            "dead_letters": self.dead_letters_days,
        }


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="YANGYI_API_", extra="forbid")

    # Meal days (breakfast/lunch/dinner) are local days of the county.
    timezone: str = "Asia/Shanghai"
    # A device is online while heard from within this many heartbeat intervals.
    online_heartbeats: float = Field(default=2.0, gt=0)
    # Heartbeat assumed when a device's status did not state one.
    default_heartbeat_s: int = Field(default=60, ge=1)
    # How far back /readings/latest looks.
    latest_lookback_hours: int = Field(default=24, ge=1)


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    db: DbSettings = Field(default_factory=DbSettings)
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)


def load_settings() -> Settings:
    """Read every section from the environment; raise ConfigError listing each bad variable."""
    sections: dict[str, BaseSettings] = {}
    errors: list[str] = []
    for name, cls in _SECTIONS.items():
        try:
            sections[name] = cls()
        except ValidationError as exc:
            prefix = str(cls.model_config.get("env_prefix", ""))
            for e in exc.errors():
                errors.append(f"{prefix}{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}")
    if errors:
        raise ConfigError("invalid settings:\n  " + "\n  ".join(errors))
    return Settings.model_validate(sections)


_SECTIONS: dict[str, type[BaseSettings]] = {
    "db": DbSettings,
    "mqtt": MqttSettings,
    "ingest": IngestSettings,
    "retention": RetentionSettings,
    "api": ApiSettings,
    "auth": AuthSettings,
}
