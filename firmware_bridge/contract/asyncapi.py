"""Generate the AsyncAPI 3.0 document of contract v1 from the pydantic models and topic builders."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic.json_schema import models_json_schema

from .messages import (
    CONTRACT_VERSION,
    Command,
    CountEvent,
    DeviceStatus,
    DinerEvent,
    Message,
    PointConfig,
    Roster,
    SafetyEvent,
    TelemetryEvent,
)
from .topics import ID_PATTERN, ROOT, Channel, PointChannel

DEFAULT_OUTPUT = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"

# channel → (model, direction seen from the edge agent, retained, summary)
_DEVICE_CHANNELS: dict[Channel, tuple[type[Message], str, bool, str]] = {
    Channel.DINER: (DinerEvent, "send", False, "Diner check-ins and deliveries (助餐登记/送餐), QoS 1."),
    Channel.TELEMETRY: (TelemetryEvent, "send", False, "Sensor readings and per-minute summaries, QoS 1."),
    Channel.SAFETY: (SafetyEvent, "send", False, "Safety level transitions (gas, electric), QoS 1, first lane."),
    Channel.COUNT: (CountEvent, "send", False, "Camera entry/exit counts and occupancy; never images. QoS 1."),
    Channel.STATUS: (DeviceStatus, "send", True, "Retained device state; the agent's last will says offline."),
}
_POINT_CHANNELS: dict[PointChannel, tuple[type[Message], str, bool, str]] = {
    PointChannel.CONFIG: (PointConfig, "receive", True, "Retained settings pushed by the server."),
    PointChannel.ROSTER: (Roster, "receive", True, "Retained card → elder roster for offline decisions."),
    PointChannel.CMD: (Command, "receive", False, "Commands (acknowledge alarm, sync roster…), QoS 1."),
}


def build_document() -> dict[str, Any]:
    """Return the AsyncAPI 3.0 document as plain data."""
    models = [m for m, *_ in (*_DEVICE_CHANNELS.values(), *_POINT_CHANNELS.values())]
    _, top = models_json_schema(
        [(m, "validation") for m in models], ref_template="#/components/schemas/{model}"
    )
    schemas: dict[str, Any] = dict(sorted(top.get("$defs", {}).items()))

    def id_param() -> dict[str, str]:  # a fresh dict each time, so YAML has no anchors
        return {"description": f"Matches {ID_PATTERN}"}

    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}

    def add(key: str, address: str, params: dict[str, Any], spec: tuple[type[Message], str, bool, str]) -> None:
        model, action, retained, summary = spec
        name = model.__name__
        messages[name] = {
            "name": name,
            "contentType": "application/json",
            "payload": {"$ref": f"#/components/schemas/{name}"},
        }
        channels[key] = {
            "address": address,
            "description": summary,
            "parameters": params,
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
            "bindings": {"mqtt": {"bindingVersion": "0.2.0"}},
        }
        operations[f"{action}_{key}"] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{key}"},
            "summary": f"The edge agent {'publishes' if action == 'send' else 'receives'} {key}.",
            "bindings": {"mqtt": {"qos": 1, "retain": retained, "bindingVersion": "0.2.0"}},
        }

    for dev_channel, spec in _DEVICE_CHANNELS.items():
        add(dev_channel.value, f"{ROOT}/{{pointId}}/{{deviceId}}/{dev_channel.value}",
            {"pointId": id_param(), "deviceId": id_param()}, spec)
    for point_channel, spec in _POINT_CHANNELS.items():
        add(point_channel.value, f"{ROOT}/{{pointId}}/{point_channel.value}", {"pointId": id_param()}, spec)

    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Yangyi meal-point MQTT contract",
            "version": f"{CONTRACT_VERSION}.0.0",
            "description": (
                "养怡 edge agents ↔ server. Generated from firmware_bridge/contract by `make asyncapi`; "
                "do not edit by hand. Every event carries point, device, a per-device seq that survives "
                "reboots, the device time ts and clock_synced; the server drops redeliveries by "
                "(point, device, seq, ts). Each agent logs in with its point id and may publish only "
                "under its own point (deploy/mosquitto/acl)."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "county": {
                "host": "localhost:18830",
                "protocol": "mqtt",
                "protocolVersion": "5",
                "description": "The project's Mosquitto (deploy/native/mosquitto.sh); user name and password.",
                "security": [{"$ref": "#/components/securitySchemes/userPassword"}],
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": messages,
            "schemas": schemas,
            "securitySchemes": {"userPassword": {"type": "userPassword"}},
        },
    }


def render() -> str:
    """Render the document as YAML text."""
    return yaml.safe_dump(build_document(), sort_keys=False, allow_unicode=True, width=100)


def main(argv: list[str] | None = None) -> int:
    """Write docs/asyncapi.yaml (or --output), or --check that it is current."""
    parser = argparse.ArgumentParser(prog="yangyi-asyncapi", description=main.__doc__)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is stale; run `make asyncapi`", file=sys.stderr)
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
