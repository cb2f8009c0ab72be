"""Modbus register profiles: strict loader, read plan, pure decoder (registers → readings)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from firmware_bridge import modbus_profiles as mp
from firmware_bridge.errors import FrameError


def f32_words(value: float) -> tuple[int, int]:
    raw = struct.pack(">f", value)
    return int.from_bytes(raw[:2], "big"), int.from_bytes(raw[2:], "big")


def test_shipped_profiles_load() -> None:
    assert mp.available_profiles() == ["chint_ddsu666", "co_generic", "electrical_fire_generic", "gas_generic"]
    for name in mp.available_profiles():
        profile = mp.load_profile(name)
        assert profile.name == name
        assert mp.read_plan(profile)


def test_ddsu666_decodes_high_word_first_floats() -> None:
    p = mp.load_profile("chint_ddsu666")
    regs: dict[tuple[int, int], int] = {}
    for addr, value in [(0x2000, 221.3), (0x2002, 4.25), (0x2004, 0.94), (0x200E, 49.98), (0x4000, 1234.5),
                        (0x400A, 0.0)]:
        hi, lo = f32_words(value)
        regs[(3, addr)], regs[(3, addr + 1)] = hi, lo
    plan = mp.read_plan(p)
    assert plan == [mp.ReadBlock(3, 0x2000, 16), mp.ReadBlock(3, 0x4000, 12)]
    full = {(3, a): regs.get((3, a), 0) for b in plan for a in range(b.start, b.start + b.count)}
    sample = mp.decode(p, full)
    assert sample.value("voltage") == pytest.approx(221.3, abs=1e-4)
    assert sample.value("current") == pytest.approx(4.25)
    assert sample.value("frequency") == pytest.approx(49.98, abs=1e-4)
    assert sample.value("energy.import") == pytest.approx(1234.5)
    v = next(x for x in sample.values if x.channel == "voltage")
    assert (v.unit, v.quantity) == ("V", mp.Quantity.VOLTAGE_V)


def test_gas_status_bits_and_scaling() -> None:
    p = mp.load_profile("gas_generic")
    regs = {(3, 0): 0b0110, (3, 1): 263, (3, 2): 0, (3, 3): 250, (3, 4): 500}
    s = mp.decode(p, regs)
    assert s.value("lel") == pytest.approx(26.3)
    assert s.value("lel.low_setpoint") == 25.0
    assert {(f.name, f.meaning) for f in s.flags} == {("high_alarm", mp.BitMeaning.ALARM2),
                                                      ("sensor_fault", mp.BitMeaning.FAULT)}


def test_electrical_fire_signed_temperatures_and_two_function_codes() -> None:
    p = mp.load_profile("electrical_fire_generic")
    assert mp.read_plan(p) == [mp.ReadBlock(3, 0x10, 2), mp.ReadBlock(4, 0, 6)]
    regs = {(4, 0): 1 << 9, (4, 1): 480, (4, 2): 0xFFF6, (4, 3): 615, (4, 4): 0, (4, 5): 0,
            (3, 0x10): 500, (3, 0x11): 750}
    s = mp.decode(p, regs)
    assert s.value("temp1") == pytest.approx(-1.0)
    assert s.value("temp2") == pytest.approx(61.5)
    assert s.value("residual") == 480
    assert [f.name for f in s.flags] == ["temp1_probe_fault"]


@pytest.mark.parametrize("name", ["chint_ddsu666", "co_generic", "electrical_fire_generic", "gas_generic"])
def test_encode_decode_round_trip(name: str) -> None:
    p = mp.load_profile(name)
    values = {c.name: (i + 1) * 1.5 for i, c in enumerate(p.channels)}
    flags = {b.name for w in p.status_words for b in w.bits[:2]}
    s = mp.decode(p, mp.encode(p, values, flags))
    for c in p.channels:
        assert s.value(c.name) == pytest.approx(values[c.name], abs=c.scale)
    assert {f.name for f in s.flags} == flags


def test_word_order_little_and_32_bit_ints() -> None:
    p = mp.parse_profile({
        "name": "t", "model": "t", "word_order": "little",
        "channels": [{"name": "a", "register": 0, "type": "s32"}, {"name": "b", "register": 2, "type": "u32",
                                                                     "word_order": "big"}],
    })
    s = mp.decode(p, {(3, 0): 0xFFFE, (3, 1): 0xFFFF, (3, 2): 0x0001, (3, 3): 0x0002})
    assert s.value("a") == -2
    assert s.value("b") == 0x00010002


def test_missing_register_and_nan_are_frame_errors() -> None:
    p = mp.load_profile("chint_ddsu666")
    with pytest.raises(FrameError):
        mp.decode(p, {})
    nan = {(3, a): 0 for b in mp.read_plan(p) for a in range(b.start, b.start + b.count)}
    nan[(3, 0x2000)], nan[(3, 0x2001)] = 0x7FC0, 0
    with pytest.raises(FrameError):
        mp.decode(p, nan)
    with pytest.raises(FrameError):
        mp.registers_from_blocks({mp.ReadBlock(3, 0, 2): [1]})


def test_read_plan_splits_on_gaps_and_size() -> None:
    channels = [{"name": f"c{i}", "register": r} for i, r in enumerate([0, 5, 40, 41, 200])]
    channels += [{"name": f"d{i}", "register": 300 + i} for i in range(130)]
    p = mp.parse_profile({"name": "t", "model": "t", "channels": channels})
    plan = mp.read_plan(p)
    assert plan[:3] == [mp.ReadBlock(3, 0, 6), mp.ReadBlock(3, 40, 2), mp.ReadBlock(3, 200, 1)]
    assert plan[3:] == [mp.ReadBlock(3, 300, 125), mp.ReadBlock(3, 425, 5)]


@pytest.mark.parametrize(
    ("patch", "where"),
    [
        ({"extra": 1}, "extra"),
        ({"channels": [{"name": "a", "register": 0, "type": "u64"}]}, "channels.0.type"),
        ({"channels": [{"name": "a", "register": 0}, {"name": "b", "register": 0}]}, "register 0x0000"),
        ({"channels": [{"name": "a", "register": 0, "type": "f32"}, {"name": "b", "register": 1}]}, "used by a"),
        ({"function_code": 6}, "function_code"),
        ({"status_words": [{"name": "s", "register": 9, "bits": [{"bit": 16, "name": "x", "meaning": "alarm"}]}]},
         "bits.0.bit"),
        ({"status_words": [{"name": "s", "register": 9, "bits": [{"bit": 1, "name": "x", "meaning": "loud"}]}]},
         "meaning"),
        ({"status_words": [{"name": "s", "register": 9,
                            "bits": [{"bit": 1, "name": "x", "meaning": "alarm", "channel": "nope"}]}]}, "nope"),
    ],
)
def test_invalid_profiles_are_rejected_with_key_path(patch: dict[str, object], where: str) -> None:
    data: dict[str, object] = {"name": "t", "model": "t", "channels": [{"name": "a", "register": 0}]}
    data.update(patch)
    with pytest.raises(mp.ProfileError) as info:
        mp.parse_profile(data)
    assert where in str(info.value)


def test_load_profile_from_path_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\nmodel: x\nchannels:\n  - {name: a, register: 0x10, unit: ppm, quantity: co_ppm}\n")
    assert mp.load_profile(path).channel("a").address == 0x10
    with pytest.raises(mp.ProfileError):
        mp.load_profile(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("name: [\n")
    with pytest.raises(mp.ProfileError):
        mp.load_profile(tmp_path / "bad.yaml")
