"""Retention: drop_chunks per table; diner events kept by default."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from server.db.maintenance import licensed_features, main, plan, run_once
from server.errors import ConfigError
from server.settings import RetentionSettings

NOW = datetime(2026, 6, 3, tzinfo=UTC)


def test_plan_skips_tables_kept_for_ever() -> None:
    actions = plan({"telemetry": 30, "diner_events": None, "dead_letters": 7}, NOW)
    assert [(a.table, a.older_than, a.hypertable) for a in actions] == [
        ("telemetry", NOW - timedelta(days=30), True), ("dead_letters", NOW - timedelta(days=7), False)]
    assert "diner_events" not in {a.table for a in plan(RetentionSettings().per_table(), NOW)}


def test_plan_rejects_unknown_tables() -> None:
    with pytest.raises(ConfigError):
        plan({"meal_points": 1}, NOW)


@pytest.mark.integration
def test_retention_drops_old_chunks_but_keeps_diner_events(private_dsn: str, unique_point_id: str) -> None:
    point = unique_point_id
    now = datetime.now(UTC)
    old, recent = now - timedelta(days=200), now - timedelta(hours=1)
    with psycopg.connect(private_dsn, autocommit=True) as conn:
        assert licensed_features(conn) is False  # Apache edition here
        for t in (old, recent):
            conn.execute("INSERT INTO telemetry (time, point_id, device_id, seq, channel, value)"
                         " VALUES (%s, %s, 'd', 1, 'c', 1.0)", (t, point))
            conn.execute("INSERT INTO diner_events (time, point_id, device_id, seq, kind, method, card_id,"
                         " decision, clock_synced) VALUES (%s, %s, 'r', 1, 'tap', 'card', 'c1', 'accepted', true)",
                         (t, point))
        conn.execute("INSERT INTO dead_letters (received_at, topic, payload, reason) VALUES (%s, %s, '', 'x')",
                     (old, f"yangyi/v1/{point}/d/telemetry"))
        removed = run_once(conn, RetentionSettings(), now)
        assert removed["telemetry"] >= 1 and removed["dead_letters"] >= 1 and "diner_events" not in removed
        assert conn.execute("SELECT count(*) FROM telemetry WHERE point_id=%s", (point,)).fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM diner_events WHERE point_id=%s", (point,)).fetchone() == (2,)
        assert conn.execute("SELECT count(*) FROM dead_letters WHERE topic LIKE %s",
                            (f"yangyi/v1/{point}/%",)).fetchone() == (0,)


@pytest.mark.integration
def test_console_script_once(private_dsn: str) -> None:
    assert main(["--dsn", private_dsn, "--once"]) == 0
