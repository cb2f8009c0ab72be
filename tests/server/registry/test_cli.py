"""yangyi-registry publish-rosters and roster against the real database and broker."""

from __future__ import annotations

import json

import pytest

from server.registry import cli

from .conftest import make_point, resident_id, retained_roster

pytestmark = pytest.mark.integration


def test_publish_rosters_sends_pending_and_all(tsdb_dsn, mqtt_server_account, unique_point_id, api_as, monkeypatch,
                                              capsys):
    point = unique_point_id
    make_point(tsdb_dsn, point, f"镇{point}", f"村{point}")
    monkeypatch.setenv("YANGYI_DB_DSN", tsdb_dsn)
    monkeypatch.setenv("YANGYI_MQTT_HOST", mqtt_server_account.host)
    monkeypatch.setenv("YANGYI_MQTT_PORT", str(mqtt_server_account.port))
    monkeypatch.setenv("YANGYI_MQTT_PASSWORD", mqtt_server_account.password)
    # A broker that cannot be reached: the change commits, its roster stays pending.
    admin = api_as("bureau_admin")
    admin.app.state.roster_publisher = cli.roster.RosterPublisher(_unreachable(), timeout_s=1)
    r = admin.post(f"/api/v1/points/{point}/elders",
                   json={"name": "孙八", "id_number": resident_id("19400101"), "hukou_local": True})
    assert r.status_code == 201 and r.json()["rosters_published"] is False
    assert retained_roster(mqtt_server_account, point, timeout=1) is None
    assert cli.main(["publish-rosters", "--pending"]) == 0
    assert "published" in capsys.readouterr().out
    got = retained_roster(mqtt_server_account, point)
    assert got is not None and got.version == r.json()["rosters"][point] and len(got.entries) == 1
    assert cli.main(["roster", "--point", point]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["version"] == got.version
    assert cli.main(["publish-rosters", "--point", point]) == 0
    assert cli.main(["publish-rosters", "--point", "no-such-point"]) == 2


def _unreachable():
    from pydantic import SecretStr

    from server.settings import MqttSettings

    return MqttSettings(host="127.0.0.1", port=1, username="nobody", password=SecretStr("x"))
