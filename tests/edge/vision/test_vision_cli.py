"""`yangyi-vision`: config check with key paths, local counting of a recording, debug on/status/off."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from edge.vision.cli import main


def _config(tmp_path: Path, **camera: object) -> Path:
    data = {"type": "camera", "camera": {
        "device_id": "door", "period_s": 10,
        "counter": {"width": 160, "height": 120},
        "debug": {"directory": str(tmp_path / "dbg"), "request_file": str(tmp_path / "dbg.request")},
        **camera}}
    path = tmp_path / "camera.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_check_config_prints_each_error_with_its_key_path(tmp_path, capsys):
    good = _config(tmp_path, source="rtsp://cam/1")
    assert main(["--config", str(good), "check-config"]) == 0
    assert "valid (camera door" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"camera": {"sourc": 1, "counter": {"fps": -1}}}))
    assert main(["--config", str(bad), "check-config"]) == 2
    err = capsys.readouterr().err
    assert "sourc: Extra inputs are not permitted" in err
    assert "counter.fps: Input should be greater than 0" in err


def test_count_a_synthetic_recording(tmp_path, capsys):
    video = tmp_path / "pairs.avi"
    assert main(["synth", "side_by_side", str(video), "--size", "160x120"]) == 0
    truth = json.loads(capsys.readouterr().out)
    assert main(["--config", str(_config(tmp_path)), "count", str(video)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[-1] == {"total_entries": truth["entries"], "total_exits": truth["exits"]}
    counts = [ln for ln in lines if ln.get("channel") == "count"]
    assert sum(c["entries"] for c in counts) == truth["entries"]
    assert not (tmp_path / "dbg").exists()


def test_debug_on_status_off(tmp_path, capsys):
    cfg = str(_config(tmp_path))
    assert main(["--config", cfg, "debug", "on", "--minutes", "5"]) == 2  # operator and reason required
    assert main(["--config", cfg, "debug", "on", "--minutes", "500", "--operator", "李", "--reason", "aim"]) == 0
    assert "30 min" in capsys.readouterr().out  # capped at max_minutes
    assert main(["--config", cfg, "debug", "status"]) == 0
    assert "debug mode ON until" in capsys.readouterr().out
    assert main(["--config", cfg, "debug", "off"]) == 0
    assert main(["--config", cfg, "debug", "status"]) == 0
    assert capsys.readouterr().out.strip().endswith("debug mode off")
