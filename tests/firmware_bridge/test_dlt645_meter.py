"""Our DL/T 645 client against the independent `dlt645` package acting as the meter, over a pty (8N1)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from edge.clock import SystemClock
from edge.inputs.bus import Dlt645DeviceConfig, Dlt645Driver, SerialBusConfig, SerialLink
from firmware_bridge import dlt645
from firmware_bridge.sim.pty import PtyBridge

dlt645_pkg = pytest.importorskip("dlt645")

METER = "123456789012"
VALUES = {
    0x00010000: 12345.67, 0x02010100: 220.1, 0x02020100: -1.234, 0x02030000: -12.3456,
    0x02060000: 0.987, 0x02800002: 50.01,
}


@pytest.fixture
def meter_line() -> Iterator[tuple[str, object]]:
    with PtyBridge() as bridge:
        meter = dlt645_pkg.MeterServerService.new_rtu_server(
            port=bridge.a.path, data_bits=8, stop_bits=1, baud_rate=2400, parity="N", timeout=1.0
        )
        meter.set_address("129078563412")  # wire order: meter 123456789012
        for di, value in VALUES.items():
            setter = meter.set_00 if di >> 24 == 0 else meter.set_02
            assert setter(di, value)
        assert meter.server.start()
        try:
            yield bridge.b.path, meter
        finally:
            meter.server.stop()


def link_for(path: str) -> SerialLink:
    cfg = SerialBusConfig(port=path, baudrate=2400, devices=[Dlt645DeviceConfig(id="m", address=METER)])
    link = SerialLink(cfg, SystemClock())
    link.open()
    return link


def test_read_all_six_identifiers_from_independent_meter(meter_line: tuple[str, object]) -> None:
    path, _meter = meter_line
    link = link_for(path)
    try:
        driver = Dlt645Driver(Dlt645DeviceConfig(id="m", address=METER, timeout_s=2.0))
        result = driver.poll(link, retries=1)
    finally:
        link.close()
    assert result.kind == "ok", result.detail
    got = {s.channel: s.value for s in result.samples}
    assert got == pytest.approx({
        "energy.import": 12345.67, "voltage": 220.1, "current": -1.234, "power": -12.3456,
        "power_factor": 0.987, "frequency": 50.01,
    })
    units = {s.channel: s.unit for s in result.samples}
    assert units["voltage"] == "V" and units["power"] == "kW" and units["power_factor"] is None


def test_value_changes_are_seen_and_other_address_gets_error_reply(meter_line: tuple[str, object]) -> None:
    path, meter = meter_line
    meter.set_02(0x02010100, 231.7)  # type: ignore[attr-defined]
    link = link_for(path)
    try:
        ok = Dlt645Driver(Dlt645DeviceConfig(id="m", address=METER, data_ids=["02010100"], timeout_s=2.0))
        assert ok.poll(link, 0).samples[0].value == pytest.approx(231.7)
        # This meter answers other addresses with an error reply (real meters keep silent).
        other = Dlt645Driver(Dlt645DeviceConfig(id="x", address="000000000001", data_ids=["02010100"],
                                                timeout_s=2.0))
        result = other.poll(link, 0)
        assert result.kind == "error_reply"
        # Raw exchange through the codec: byte-for-byte request, reply decoded.
        request = dlt645.read_request(METER, 0x02800002)
        from edge.inputs.bus import dlt645_reply_parser

        reply = link.transact(dlt645.encode(request), dlt645_reply_parser(request), 2.0)
        assert reply.kind == "ok"
        assert dlt645.parse_read_reply(reply.value, METER, 0x02800002) == pytest.approx(50.01)
    finally:
        link.close()
