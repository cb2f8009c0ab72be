"""Alert settings: process settings from the environment (YANGYI_ALERTS_*) and the county's alert
policy from a strict YAML file (rules, lifecycle, escalation, channels, links).

    YANGYI_ALERTS_CONFIG_FILE       the YAML below; absent: every default, no outside channel
    YANGYI_ALERTS_CLIENT_ID         MQTT client id of the worker's persistent session (yangyi-alerts)
    YANGYI_ALERTS_SHARE_GROUP       shared-subscription group (yangyi-alerts); "" for a plain one
    YANGYI_ALERTS_SUBSCRIBE_POINT   "+" or one point id (tests)
    YANGYI_ALERTS_TICK_S            liveness, clear-hold and escalation tick (1 s)

YAML (every key optional)::

    rules: {...}            server.alerts.rules.RulesConfig
    lifecycle: {...}        server.alerts.lifecycle.LifecyclePolicy
    escalation: {...}       server.alerts.escalation.EscalationPolicy
    camera_card_window_s: 1800
    command_ttl_s: 600      how long an ack_alarm command stays valid for the edge
    timezone: Asia/Shanghai
    links: {base_url: https://host/api/v1/alert-ack, keys_file: /var/lib/yangyi/secrets/ack_link_keys,
            ttl_s: 86400}   keys file: one "<key id> <secret>" a line, the first line signs
    channels:
      wecom: {robots: {<name>: <webhook url>}, msgtype: text}
      dingtalk: {robots: {<name>: {url: ..., secret: ..., keywords: [...]}}, msgtype: text}
      webhook: {secret_file: ..., key_id: k1}
      sms: {access_key_id: ..., access_key_secret_file: ..., sign_name: 养怡, template_code: SMS_1,
            endpoint: https://dysmsapi.aliyuncs.com/}
      inapp: {enabled: true}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import AlertConfigError
from .escalation import EscalationPolicy
from .lifecycle import LifecyclePolicy
from .links import DEFAULT_TTL_SECONDS, AckLinks
from .rules import RulesConfig


class AlertProcessSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="YANGYI_ALERTS_", extra="forbid")

    config_file: Path | None = None
    client_id: str = Field(default="yangyi-alerts", min_length=1, max_length=64)
    share_group: str = Field(default="yangyi-alerts", pattern=r"^[A-Za-z0-9_-]{0,64}$")
    subscribe_point: str = Field(default="+", pattern=r"^(\+|[A-Za-z0-9][A-Za-z0-9._-]{0,63})$")
    tick_s: float = Field(default=1.0, gt=0, le=60)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WeComConfig(_Strict):
    robots: dict[str, str] = Field(default_factory=dict)
    msgtype: Literal["text", "markdown"] = "text"
    timeout_s: float = Field(default=5.0, gt=0)


class DingTalkRobotConfig(_Strict):
    url: str
    secret: str | None = None
    keywords: tuple[str, ...] = ()


class DingTalkConfig(_Strict):
    robots: dict[str, DingTalkRobotConfig] = Field(default_factory=dict)
    msgtype: Literal["text", "markdown"] = "text"
    timeout_s: float = Field(default=5.0, gt=0)


class WebhookConfig(_Strict):
    secret_file: Path
    key_id: str | None = None
    timeout_s: float = Field(default=5.0, gt=0)


class SmsConfig(_Strict):
    access_key_id: str
    access_key_secret_file: Path
    sign_name: str
    template_code: str
    endpoint: str = "https://dysmsapi.aliyuncs.com/"
    region: str = "cn-hangzhou"
    timeout_s: float = Field(default=5.0, gt=0)


class InAppConfig(_Strict):
    enabled: bool = True
    presence_s: float = Field(default=60.0, gt=0, description="A stream seen this recently counts as open")


class ChannelsConfig(_Strict):
    wecom: WeComConfig | None = None
    dingtalk: DingTalkConfig | None = None
    webhook: WebhookConfig | None = None
    sms: SmsConfig | None = None
    inapp: InAppConfig = Field(default_factory=InAppConfig)


class LinksConfig(_Strict):
    base_url: str
    keys_file: Path
    ttl_s: float = Field(default=DEFAULT_TTL_SECONDS, gt=0)


class AlertConfig(_Strict):
    """The county's alert policy (YAML)."""

    rules: RulesConfig = Field(default_factory=RulesConfig)
    lifecycle: LifecyclePolicy = Field(default_factory=LifecyclePolicy)
    escalation: EscalationPolicy = Field(default_factory=EscalationPolicy)
    channels: ChannelsConfig = Field(default_factory=ChannelsConfig)
    links: LinksConfig | None = None
    camera_card_window_s: float = Field(default=1800.0, gt=0)
    command_ttl_s: float = Field(default=600.0, gt=0)
    timezone: str = "Asia/Shanghai"


def read_secret(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise AlertConfigError(f"cannot read {what} from {path}: {exc}") from exc


def load_link_keys(path: Path) -> tuple[dict[str, bytes], str]:
    """Keys by id from a keys file; the first line's key signs new links."""
    keys: dict[str, bytes] = {}
    current = ""
    for n, line in enumerate(read_secret(path, "the ack-link keys").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        kid, _, secret = line.partition(" ")
        if not secret.strip():
            raise AlertConfigError(f"{path}:{n}: expected '<key id> <secret>'")
        keys[kid] = secret.strip().encode()
        current = current or kid
    if not keys:
        raise AlertConfigError(f"{path}: no ack-link keys")
    return keys, current


def make_links(config: AlertConfig) -> AckLinks | None:
    if config.links is None:
        return None
    keys, current = load_link_keys(config.links.keys_file)
    return AckLinks(keys, current, config.links.base_url, config.links.ttl_s)


def load_alert_config(path: Path | None) -> AlertConfig:
    """Read and validate the YAML policy; raise AlertConfigError listing each bad key path."""
    if path is None:
        return AlertConfig()
    try:
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise AlertConfigError(f"cannot read alert config {path}: {exc}") from exc
    try:
        # JSON mode: the strict models take enum values, times and durations as their JSON strings.
        return AlertConfig.model_validate_json(json.dumps(raw, default=str))
    except ValidationError as exc:
        lines = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise AlertConfigError(f"invalid alert config {path}:\n  " + "\n  ".join(lines)) from exc
