"""The edge agent's YAML configuration: strict pydantic models, ${ENV} interpolation, secret files.

Every string value may contain ``${NAME}`` (or ``${NAME:-default}``), replaced from the environment
before validation; ``$${`` writes a literal ``${``. Secrets come either inline (``password``) or from a
file (``password_file``, first line, surrounding whitespace stripped). Unknown keys are errors.

Inputs are plug-ins chosen by ``type``: to add one, define a model with ``type: Literal["name"]``
and a ``build(ctx)`` that imports and returns its Input, then add it to ``InputConfig`` below.
"""

from __future__ import annotations

import os
import re
from datetime import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from firmware_bridge.contract import Meal
from firmware_bridge.contract.topics import ID_PATTERN

from .actuators import PanelConfig
from .checkin import CheckinConfig
from .errors import ConfigError
from .inputs.bus import SerialBusConfig
from .inputs.cards import Em4100ReaderConfig, IdCardReaderConfig, KeyboardReaderConfig, LineReaderConfig
from .safety import SafetyConfig
from .vision.config import CameraInputConfig

if TYPE_CHECKING:
    from .events import Input
    from .inputs import InputContext

_ENV_RE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

Id = Annotated[str, Field(pattern=ID_PATTERN)]


class StrictModel(BaseModel):
    """Base of every config section: unknown keys rejected, values immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class PointSection(StrictModel):
    id: Id
    name: str = Field(default="", max_length=64, description="Human name of the meal point (助餐点)")
    agent_device: Id = Field(default="agent", description="Device id of the agent itself, for its status topic")


def _read_secret(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read secret file {path}: {exc.strerror or exc}") from exc
    lines = text.strip().splitlines()
    if not lines or not lines[0].strip():
        raise ValueError(f"secret file {path} is empty")
    return lines[0].strip()


class MqttSection(StrictModel):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    tls: bool = False
    ca_file: Path | None = Field(default=None, description="CA bundle for TLS; the system's if absent")
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    client_id: str | None = Field(default=None, max_length=64, description='Default "edge-<point id>"')
    session_expiry_s: int = Field(default=7 * 86400, ge=0, le=0xFFFFFFFF, description="Persistent session lifetime")
    inflight_window: int = Field(default=100, ge=1, le=10000, description="Outbox rows handed to paho at once")
    reconnect_min_s: int = Field(default=1, ge=1, le=600)
    reconnect_max_s: int = Field(default=60, ge=1, le=3600)

    _password: str | None = PrivateAttr(None)

    @field_validator("password_file")
    @classmethod
    def _readable(cls, value: Path | None) -> Path | None:
        if value is not None:
            _read_secret(value)
        return value

    @field_validator("ca_file")
    @classmethod
    def _ca_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"CA file {value} does not exist")
        return value

    @model_validator(mode="after")
    def _resolve_password(self) -> MqttSection:
        if self.password is not None and self.password_file is not None:
            raise ValueError("give password or password_file, not both")
        if self.password_file is not None:
            self._password = _read_secret(self.password_file)
        elif self.password is not None:
            self._password = self.password.get_secret_value()
        if self._password is not None and self.username is None:
            raise ValueError("a password needs a username")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must not be below reconnect_min_s")
        return self

    def secret(self) -> str | None:
        """The broker password, from the inline value or the secret file."""
        return self._password


class OutboxSection(StrictModel):
    path: Path


class ClockSection(StrictModel):
    assume_synced: bool | None = Field(
        default=None, description="Skip the NTP check and report this; None asks timedatectl"
    )


def _yaml_time(value: Any) -> Any:
    # YAML 1.1 reads an unquoted 11:30 as the base-60 integer 690.
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 24 * 60:
        return time(value // 60, value % 60)
    return value


LocalTime = Annotated[time, BeforeValidator(_yaml_time)]


class MealWindow(StrictModel):
    meal: Meal
    start: LocalTime
    end: LocalTime

    @model_validator(mode="after")
    def _ordered(self) -> MealWindow:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


DEFAULT_MEALS = (
    MealWindow(meal=Meal.LUNCH, start=time(11, 0), end=time(13, 0)),
    MealWindow(meal=Meal.DINNER, start=time(17, 0), end=time(19, 0)),
)


class InputBase(StrictModel):
    name: str | None = Field(default=None, max_length=64, description="Thread name; defaults to the type")


class SimulatedInputConfig(InputBase):
    """Simulated diner taps and safety telemetry, for demos, load tests and integration tests."""

    type: Literal["simulated"]
    reader_device: Id = "sim-reader"
    sensor_device: Id = "sim-sensor"
    seed: int | None = Field(default=None, description="Random seed; the point id's hash if absent")
    rate_per_min: float = Field(default=6.0, gt=0, le=600_000, description="Mean taps per minute inside a meal window")
    card_pool: int = Field(default=80, ge=1, le=100_000, description="Number of distinct registered cards")
    unknown_ratio: float = Field(default=0.02, ge=0, le=1, description="Share of taps by unregistered cards")
    meals: tuple[MealWindow, ...] = Field(default=DEFAULT_MEALS, description="Local meal windows; taps happen inside")
    timezone: str = "Asia/Shanghai"
    telemetry_interval_s: float | None = Field(default=60.0, gt=0, description="None disables telemetry")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo

        try:
            ZoneInfo(value)
        except (KeyError, ValueError, OSError) as exc:  # ZoneInfoNotFoundError is a KeyError
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    def build(self, ctx: InputContext) -> Input:
        from .inputs.simulated import SimulatedInput

        return SimulatedInput(self, ctx)


# The discriminated union of input plug-ins; add new input configs here (A | B | …).
InputConfig = Annotated[
    SimulatedInputConfig
    | Em4100ReaderConfig
    | LineReaderConfig
    | IdCardReaderConfig
    | KeyboardReaderConfig
    | SerialBusConfig
    | CameraInputConfig,
    Field(discriminator="type"),
]


def _union_tags(annotated: Any) -> frozenset[str]:
    inner = get_args(annotated)[0]
    members = get_args(inner) or (inner,)
    return frozenset(get_args(m.model_fields["type"].annotation)[0] for m in members)


INPUT_TYPES: frozenset[str] = _union_tags(InputConfig)


def input_name(cfg: Any) -> str:
    """An input's thread name: its `name` if the plug-in has one, else its type."""
    return str(getattr(cfg, "name", None) or cfg.type)


class AgentConfig(StrictModel):
    point: PointSection
    mqtt: MqttSection = MqttSection()
    outbox: OutboxSection
    heartbeat_s: int = Field(default=60, ge=1, le=3600, description="Retained online status interval")
    clock: ClockSection = ClockSection()
    state_dir: Path | None = Field(
        default=None, description="Check-in state (roster, served today); defaults to <outbox dir>/state"
    )
    checkin: CheckinConfig = CheckinConfig()
    safety: SafetyConfig = SafetyConfig()
    panel: PanelConfig = PanelConfig()
    inputs: list[InputConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_input_names(self) -> AgentConfig:
        names = [input_name(i) for i in self.inputs]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"input names must be unique (set `name`): {dupes}")
        return self

    @property
    def client_id(self) -> str:
        return self.mqtt.client_id or f"edge-{self.point.id}"

    @property
    def state_path(self) -> Path:
        return self.state_dir or self.outbox.path.parent / "state"


def interpolate(node: Any, path: tuple[str | int, ...] = (), errors: list[str] | None = None) -> Any:
    """Replace ${NAME} and ${NAME:-default} in every string of a YAML tree; collect unknown names."""
    errs = errors if errors is not None else []

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name, default = match.group(1), match.group(2)
        value = os.environ.get(name, default)
        if value is None:
            errs.append(f"{_dotted(path)}: environment variable {name} is not set")
            return ""
        return value

    result: Any
    if isinstance(node, str):
        result = _ENV_RE.sub(sub, node)
    elif isinstance(node, dict):
        result = {k: interpolate(v, (*path, str(k)), errs) for k, v in node.items()}
    elif isinstance(node, list):
        result = [interpolate(v, (*path, i), errs) for i, v in enumerate(node)]
    else:
        result = node
    if errors is None and errs:
        raise ConfigError(errs)
    return result


def _dotted(loc: tuple[str | int, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(top)"


def format_error(err: ErrorDetails) -> str:
    """One "key.path: message" line; the union's tag segment (inputs.0.simulated.x) is left out."""
    loc = list(err["loc"])
    loc = [p for i, p in enumerate(loc) if not (p in INPUT_TYPES and i > 0 and isinstance(loc[i - 1], int))]
    return f"{_dotted(tuple(loc))}: {err['msg']}"


def parse_config(data: Any, source: str = "config") -> AgentConfig:
    """Validate an already-loaded YAML tree; raise ConfigError listing every problem."""
    if not isinstance(data, dict):
        raise ConfigError([f"{source}: expected a mapping at the top, got {type(data).__name__}"])
    errors: list[str] = []
    data = interpolate(data, (), errors)
    if errors:
        raise ConfigError(errors)
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([format_error(e) for e in exc.errors()]) from exc


def load_config(path: str | Path) -> AgentConfig:
    """Read and validate a YAML config file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{p}: cannot read: {exc.strerror or exc}"]) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"{p}: not valid YAML: {exc}"]) from exc
    return parse_config(data, str(p))
