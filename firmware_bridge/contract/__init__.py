"""MQTT contract v1: the one definition of topics and payloads shared by edge and server."""

from .messages import (
    CONTRACT_VERSION,
    EVENT_MODELS,
    MODELS,
    CheckinMethod,
    Command,
    CommandName,
    CountEvent,
    DeviceState,
    DeviceStatus,
    DinerEvent,
    DinerKind,
    EventHeader,
    Meal,
    Message,
    PointConfig,
    Reading,
    Roster,
    RosterEntry,
    SafetyEvent,
    SafetyLevel,
    TapDecision,
    TelemetryEvent,
    decode,
)
from .topics import (
    ROOT,
    Channel,
    ParsedTopic,
    PointChannel,
    TopicError,
    check_id,
    device_filter,
    device_topic,
    parse_topic,
    point_topic,
)

__all__ = [
    "CONTRACT_VERSION", "EVENT_MODELS", "MODELS", "ROOT", "Channel", "CheckinMethod", "Command",
    "CommandName", "CountEvent", "DeviceState", "DeviceStatus", "DinerEvent", "DinerKind",
    "EventHeader", "Meal", "Message", "ParsedTopic", "PointChannel", "PointConfig", "Reading",
    "Roster", "RosterEntry", "SafetyEvent", "SafetyLevel", "TapDecision", "TelemetryEvent",
    "TopicError", "check_id", "decode", "device_filter", "device_topic", "parse_topic", "point_topic",
]
