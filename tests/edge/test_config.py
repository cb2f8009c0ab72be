"""Agent config: strict sections, key-path errors, ${ENV} interpolation, secret files, --validate-config."""

from __future__ import annotations

from datetime import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge.agent import EXIT_CONFIG, EXIT_OK, main
from edge.config import load_config, parse_config
from edge.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "edge" / "examples" / "agent.yaml"


def base(**over: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {"point": {"id": "mp-0001"}, "outbox": {"path": "/tmp/outbox.db"}}
    cfg.update(over)
    return cfg


def errors_of(data: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return info.value.errors


def test_minimal_config_gets_documented_defaults() -> None:
    cfg = parse_config(base())
    assert cfg.client_id == "edge-mp-0001"
    assert cfg.mqtt.port == 1883
    assert cfg.mqtt.secret() is None
    assert cfg.heartbeat_s == 60
    assert cfg.inputs == []


def test_each_error_is_reported_with_its_key_path() -> None:
    errs = errors_of(base(
        mqtt={"hots": "x", "port": 0},
        inputs=[{"type": "simulated", "rate_per_min": 0}, {"type": "simulated", "name": "b", "card_pool": -1}],
    ))
    assert "inputs.0.rate_per_min: Input should be greater than 0" in errs
    assert "inputs.1.card_pool: Input should be greater than or equal to 1" in errs
    assert "mqtt.hots: Extra inputs are not permitted" in errs
    assert "mqtt.port: Input should be greater than or equal to 1" in errs
    assert len(errs) == 4


def test_unknown_input_type_and_missing_sections() -> None:
    errs = errors_of({"point": {"id": "bad id"}, "inputs": [{"type": "camera9"}]})
    assert any(e.startswith("point.id: String should match pattern") for e in errs)
    assert "outbox: Field required" in errs
    assert any(e.startswith("inputs.0: Input tag 'camera9' found using 'type'") for e in errs)


def test_duplicate_input_names_are_refused() -> None:
    errs = errors_of(base(inputs=[{"type": "simulated"}, {"type": "simulated"}]))
    assert errs == ["(top): Value error, input names must be unique (set `name`): ['simulated']"]


def test_env_interpolation_with_defaults_and_escape(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MQ_HOST", "broker.county.local")
    monkeypatch.delenv("MQ_PORT", raising=False)
    cfg = parse_config(base(
        mqtt={"host": "${MQ_HOST}", "port": "${MQ_PORT:-8883}", "username": "u", "password": "a$${b}"},
    ))
    assert cfg.mqtt.host == "broker.county.local"
    assert cfg.mqtt.port == 8883
    assert cfg.mqtt.secret() == "a${b}"


def test_missing_env_variable_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE_NOT_SET", raising=False)
    errs = errors_of(base(inputs=[{"type": "simulated", "timezone": "${NOPE_NOT_SET}"}]))
    assert errs == ["inputs.0.timezone: environment variable NOPE_NOT_SET is not set"]


def test_password_file_is_read_and_stripped(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("  s3cret  \n")
    cfg = parse_config(base(mqtt={"username": "mp-0001", "password_file": str(secret)}))
    assert cfg.mqtt.secret() == "s3cret"
    assert "s3cret" not in repr(cfg)


def test_password_file_errors(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    errs = errors_of(base(mqtt={"username": "u", "password_file": str(missing)}))
    assert len(errs) == 1
    assert errs[0].startswith(f"mqtt.password_file: Value error, cannot read secret file {missing}")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    assert errors_of(base(mqtt={"username": "u", "password_file": str(empty)})) == [
        f"mqtt.password_file: Value error, secret file {empty} is empty"
    ]
    both = tmp_path / "pw"
    both.write_text("x")
    assert errors_of(base(mqtt={"username": "u", "password": "y", "password_file": str(both)})) == [
        "mqtt: Value error, give password or password_file, not both"
    ]


def test_unquoted_yaml_times_become_clock_times() -> None:
    data = yaml.safe_load("meals: [{meal: lunch, start: 11:30, end: 13:00}]")
    assert data["meals"][0]["start"] == 690  # YAML 1.1 sexagesimal
    cfg = parse_config(base(inputs=[{"type": "simulated", **data}]))
    assert cfg.inputs[0].meals[0].start == time(11, 30)
    backwards = [{"meal": "lunch", "start": "13:00", "end": "11:00"}]
    assert errors_of(base(inputs=[{"type": "simulated", "meals": backwards}])) == [
        "inputs.0.meals.0: Value error, end must be after start"
    ]


def test_unknown_time_zone() -> None:
    assert errors_of(base(inputs=[{"type": "simulated", "timezone": "Mars/Olympus"}])) == [
        "inputs.0.timezone: Value error, unknown time zone 'Mars/Olympus'"
    ]


def test_example_config_validates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "pw"
    secret.write_text("pw\n")
    monkeypatch.setenv("YANGYI_MQTT_PASSWORD_FILE", str(secret))
    cfg = load_config(EXAMPLE)
    assert cfg.point.id == "mp-0001"
    assert [w.meal.value for w in cfg.inputs[0].meals] == ["breakfast", "lunch", "dinner"]


def test_validate_config_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(base(inputs=[{"type": "simulated"}])))
    assert main(["--config", str(good), "--validate-config"]) == EXIT_OK
    assert "valid" in capsys.readouterr().out

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(base(heartbeat_s=0, inputs=[{"type": "simulated", "rate_per_min": -1}])))
    assert main(["--config", str(bad), "--validate-config"]) == EXIT_CONFIG
    assert capsys.readouterr().err.splitlines() == [
        "heartbeat_s: Input should be greater than or equal to 1",
        "inputs.0.rate_per_min: Input should be greater than 0",
    ]

    broken = tmp_path / "broken.yaml"
    broken.write_text("point: [unclosed\n")
    assert main(["--config", str(broken), "--validate-config"]) == EXIT_CONFIG
    assert "not valid YAML" in capsys.readouterr().err
    assert main(["--config", str(tmp_path / "nothing.yaml"), "--validate-config"]) == EXIT_CONFIG


def test_input_tags_follow_the_union_as_it_grows() -> None:
    from typing import Annotated, Literal

    from pydantic import Field

    from edge.config import INPUT_TYPES, InputBase, SimulatedInputConfig, _union_tags

    class Camera(InputBase):
        type: Literal["camera"]

    assert "simulated" in INPUT_TYPES
    grown = Annotated[SimulatedInputConfig | Camera, Field(discriminator="type")]
    assert _union_tags(grown) == {"simulated", "camera"}


def test_full_hardware_example_wires_every_input_type(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The hardware example names one of each real plug-in; each config is the plug-in's own model."""
    from edge.inputs.bus import Dlt645DeviceConfig, SerialBusConfig
    from edge.inputs.cards import Em4100ReaderConfig, IdCardReaderConfig
    from edge.vision.capture import CameraInputConfig

    secret = tmp_path / "pw"
    secret.write_text("pw\n")
    monkeypatch.setenv("YANGYI_MQTT_PASSWORD_FILE", str(secret))
    cfg = load_config(EXAMPLE.with_name("full-point.yaml"))
    kinds = [type(i) for i in cfg.inputs]
    assert kinds == [Em4100ReaderConfig, IdCardReaderConfig, SerialBusConfig, SerialBusConfig, CameraInputConfig]
    meter_bus = cfg.inputs[3]
    assert isinstance(meter_bus, SerialBusConfig) and meter_bus.parity == "E"
    assert isinstance(meter_bus.devices[0], Dlt645DeviceConfig)
    assert cfg.panel.valve is not None and cfg.panel.valve.type == "gpio"
    errors = errors_of(base(inputs=[{"type": "rs485_bus", "port": "/dev/ttyUSB0", "devices": [{"type": "x"}]}]))
    assert any(e.startswith("inputs.0.devices.0: Input tag 'x'") for e in errors), errors
