"""Contract v1: topics, strict payloads, and the published AsyncAPI document."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from firmware_bridge.contract import (
    EVENT_MODELS,
    Channel,
    CheckinMethod,
    DinerEvent,
    PointChannel,
    Reading,
    TapDecision,
    TelemetryEvent,
    TopicError,
    decode,
    device_filter,
    device_topic,
    parse_topic,
    point_topic,
)
from firmware_bridge.contract.asyncapi import DEFAULT_OUTPUT, build_document, main, render

TS = datetime(2026, 6, 3, 3, 30, tzinfo=UTC)


def diner(**over: object) -> DinerEvent:
    fields: dict[str, object] = dict(
        point="mp-0001", device="reader-1", seq=7, ts=TS, clock_synced=True,
        method=CheckinMethod.CARD, card_id="EM:0012345678", decision=TapDecision.ACCEPTED,
    )
    fields.update(over)
    return DinerEvent.model_validate(fields)


def test_topics_round_trip() -> None:
    topic = device_topic("mp-0001", "gas-1", Channel.SAFETY)
    assert topic == "yangyi/v1/mp-0001/gas-1/safety"
    parsed = parse_topic(topic)
    assert (parsed.point_id, parsed.device_id, parsed.channel) == ("mp-0001", "gas-1", Channel.SAFETY)
    cmd = parse_topic(point_topic("mp-0001", PointChannel.CMD))
    assert (cmd.point_id, cmd.device_id, cmd.channel) == ("mp-0001", None, PointChannel.CMD)
    assert device_filter(Channel.DINER) == "yangyi/v1/+/+/diner"


@pytest.mark.parametrize("bad", ["a/b", "+", "#", "", "x" * 65, "空格 id", "-lead"])
def test_ids_reject_wildcards_and_separators(bad: str) -> None:
    with pytest.raises(TopicError):
        device_topic(bad, "dev", Channel.DINER)


@pytest.mark.parametrize(
    "topic",
    ["yangyi/v2/p/d/diner", "yangyi/v1/p/d/images", "yangyi/v1/p/d/diner/x", "other/v1/p/d/diner", "yangyi/v1/p"],
)
def test_parse_rejects_foreign_topics(topic: str) -> None:
    with pytest.raises(TopicError):
        parse_topic(topic)


def test_event_round_trip_bytes() -> None:
    event = diner()
    assert decode(Channel.DINER, event.to_bytes()) == event


def test_unknown_keys_and_naive_times_are_rejected() -> None:
    raw = json.loads(diner().to_bytes())
    assert decode(Channel.DINER, json.dumps(raw)) == diner()
    with pytest.raises(ValidationError, match="photo"):
        decode(Channel.DINER, json.dumps({**raw, "photo": "..."}))
    with pytest.raises(ValidationError, match="timezone"):
        decode(Channel.DINER, json.dumps({**raw, "ts": "2026-06-03T03:30:00"}))
    with pytest.raises(ValidationError):
        decode(Channel.DINER, json.dumps({**raw, "seq": -1}))
    with pytest.raises(ValidationError):
        decode(Channel.DINER, json.dumps({**raw, "seq": "7"}))  # strict: no silent coercion


def test_every_event_model_carries_the_header() -> None:
    for model in EVENT_MODELS.values():
        assert {"point", "device", "seq", "ts", "clock_synced"} <= set(model.model_fields)


def test_summary_readings_must_be_complete() -> None:
    Reading(ch="gas_lel", unit="%LEL", v=1.0, min=0.5, mean=0.8, max=1.2, n=60, period_s=60)
    with pytest.raises(ValidationError, match="summary"):
        Reading(ch="gas_lel", v=1.0, min=0.5)
    with pytest.raises(ValidationError):
        TelemetryEvent(point="p", device="d", seq=0, ts=TS, clock_synced=False, readings=[])


def test_asyncapi_document_is_current() -> None:
    """docs/asyncapi.yaml must be regenerated (make asyncapi) whenever the contract changes."""
    assert DEFAULT_OUTPUT.read_text(encoding="utf-8") == render()
    assert main(["--check"]) == 0


def test_asyncapi_document_covers_every_channel() -> None:
    doc = build_document()
    assert doc["asyncapi"].startswith("3.")
    addresses = {c["address"] for c in doc["channels"].values()}
    for ch in Channel:
        assert f"yangyi/v1/{{pointId}}/{{deviceId}}/{ch.value}" in addresses
    for pch in PointChannel:
        assert f"yangyi/v1/{{pointId}}/{pch.value}" in addresses
    for message in doc["components"]["messages"].values():
        ref = message["payload"]["$ref"].rsplit("/", 1)[1]
        assert ref in doc["components"]["schemas"]
    status = doc["operations"]["send_status"]["bindings"]["mqtt"]
    assert status["retain"] is True
