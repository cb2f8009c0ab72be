"""Check-in end to end through the real pieces.

EM4100 simulator frames → a pty → a real agent process (card_em4100 input, check-in, outbox) → the
real broker → a real ingest worker process → TimescaleDB → the API (distinct elders per meal). The
registry API publishes the point's roster retained; the agent applies it and decides with it.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from firmware_bridge import residentid
from firmware_bridge.sim import Tap
from firmware_bridge.sim.em4100 import encode_tap
from firmware_bridge.sim.pty import Pty

from .conftest import AgentProc, db_query, wait_until

pytestmark = pytest.mark.integration

TZ = ZoneInfo("Asia/Shanghai")
ALL_DAY = {"timezone": "Asia/Shanghai", "windows": [{"meal": "lunch", "start": "00:00", "end": "23:59:59.999999"}]}
FRAME_GAP_SECONDS = 0.03


def resident_id(n: int) -> str:
    """A valid resident ID number, unique per test run, born 1945."""
    first17 = f"{uuid.uuid4().int % 10**6:06d}19450101{n % 1000:03d}"
    return first17 + residentid.check_char(first17)


class Cards:
    """EM4100 card numbers (10 hex digits) unique to one test: cards bind once per database."""

    def __init__(self) -> None:
        self.prefix = uuid.uuid4().int % 0xFFFF

    def __call__(self, n: int) -> str:
        return f"{self.prefix:04X}{n:06X}"


def place_point(dsn: str, point: str) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute("INSERT INTO meal_points (id, name, township, village) VALUES (%s, %s, %s, %s)",
                     (point, "e2e point", f"镇{point}", f"村{point}"))


def register(api: Any, point: str, n: int, card: str | None) -> dict[str, Any]:
    """Register an elder at the point, with a card if given; return the change (with roster versions)."""
    body: dict[str, Any] = {"name": f"老人{n:03d}", "id_number": resident_id(n), "hukou_local": True}
    if card is not None:
        body["card"] = {"card": card}
    r = api.post(f"/api/v1/points/{point}/elders", json=body)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    assert out["rosters_published"], "roster not published"
    return out


def reader_config(link: Path) -> dict[str, Any]:
    return {"type": "card_em4100", "device_id": "reader1", "port": str(link), "debounce_s": 0,
            "reopen_min_s": 0.2, "reopen_max_s": 1}


def play(pty: Pty, cards: list[str]) -> None:
    """Tap each card (10 hex digits) once, as the EM4100 simulator writes them."""
    for card in cards:
        pty.write(encode_tap(Tap(card=card)))
        time.sleep(FRAME_GAP_SECONDS)


def taps_logged(agent: AgentProc) -> int:
    """Feedback lines the agent's LoggingIndicator wrote (one per tap, after the outbox commit)."""
    return agent.log_text().count("[reader1] ")


def decisions(dsn: str, point: str) -> list[tuple[str, str]]:
    rows = db_query(dsn, "SELECT card_id, decision FROM diner_events WHERE point_id = %s AND device_id = 'reader1'"
                         " ORDER BY seq", point)
    return [(r[0], r[1]) for r in rows]


def today() -> str:
    return datetime.now(TZ).date().isoformat()


def lunch(api: Any, point: str) -> dict[str, Any]:
    r = api.get(f"/api/v1/points/{point}/served", params={"from": today()})
    assert r.status_code == 200, r.text
    return next((m for m in r.json()["meals"] if m["meal"] == "lunch"), {"elders": 0, "events": 0})


def test_taps_on_a_pty_reach_the_api_as_distinct_elders(tsdb_dsn, e2e_point, ingest_factory, agent_factory,
                                                        api_factory, tmp_path):
    point, card = e2e_point.id, Cards()
    place_point(tsdb_dsn, point)
    admin = api_factory("bureau_admin")
    register(admin, point, 1, "EM:" + card(0xa1))
    version = register(admin, point, 2, "EM:" + card(0xb2))["rosters"][point]
    ingest_factory()
    with Pty(tmp_path / "reader0") as pty:
        agent = agent_factory({"checkin": ALL_DAY, "inputs": [reader_config(tmp_path / "reader0")]})
        agent.wait_log(f"roster v{version} applied")
        agent.wait_log("card reader reader1 open at")
        play(pty, [card(0xa1), card(0xa1), card(0xb2), card(0xff)])
        wait_until(lambda: len(decisions(tsdb_dsn, point)) == 4, 30, "4 taps in the database")
    assert decisions(tsdb_dsn, point) == [("EM:" + card(0xa1), "accepted"), ("EM:" + card(0xa1), "repeat"),
                                          ("EM:" + card(0xb2), "accepted"), ("EM:" + card(0xff), "unknown_card")]
    meal = lunch(api_factory(), point)
    assert (meal["elders"], meal["at_point"], meal["events"], meal["unknown_card_events"]) == (2, 2, 4, 1)
    unknown = admin.get(f"/api/v1/points/{point}/unknown-cards").json()
    assert [(u["card_id"], u["taps"]) for u in unknown] == [("EM:" + card(0xff), 1)]


def test_reader_unplugged_and_plugged_back_recovers_without_restarting_the_agent(
        tsdb_dsn, e2e_point, ingest_factory, agent_factory, api_factory, tmp_path):
    point, card = e2e_point.id, Cards()
    place_point(tsdb_dsn, point)
    version = register(api_factory("bureau_admin"), point, 1, "EM:" + card(0xa1))["rosters"][point]
    ingest_factory()
    link = tmp_path / "reader0"
    pty = Pty(link)
    pty.open()
    try:
        agent = agent_factory({"checkin": ALL_DAY, "inputs": [reader_config(link)]})
        agent.wait_log(f"roster v{version} applied")
        agent.wait_log("card reader reader1 open at")
        play(pty, [card(0xa1)])
        wait_until(lambda: len(decisions(tsdb_dsn, point)) == 1, 30, "the first tap")
        pty.close()  # the USB adapter pulled out: the node and the link are gone
        agent.wait_log("unavailable", timeout=20)
        time.sleep(1.0)  # stay unplugged across a few reopen attempts
        pty.open()  # plugged back in: a new node behind the same link
        agent.wait_log("card reader reader1 open at", count=2, timeout=20)
        play(pty, [card(0xa1), card(0xc3)])
        wait_until(lambda: len(decisions(tsdb_dsn, point)) == 3, 30, "taps after the replug")
    finally:
        pty.close()
    assert agent.running, "the agent kept running"
    assert agent.log_text().count("starting:") == 1, "the agent was not restarted"
    assert decisions(tsdb_dsn, point) == [("EM:" + card(0xa1), "accepted"), ("EM:" + card(0xa1), "repeat"),
                                          ("EM:" + card(0xc3), "unknown_card")]


def test_a_day_offline_arrives_once_after_reconnection(tsdb_dsn, e2e_point, private_broker, mqtt_server_account,
                                                       ingest_factory, agent_factory, api_factory, tmp_path):
    point, card = e2e_point.id, Cards()
    place_point(tsdb_dsn, point)
    private_broker.reload()  # learn the point's account, made after the broker started
    server = private_broker.account(mqtt_server_account)
    admin = api_factory("bureau_admin", mqtt_account=server)  # rosters retained on the private broker
    elders = 30
    version = 0
    for n in range(elders):
        version = register(admin, point, n, "EM:" + card(0x1000 + n))["rosters"][point]
    ingest_factory(account=server)
    link = tmp_path / "reader0"
    with Pty(link) as pty:
        agent = agent_factory({"checkin": ALL_DAY, "inputs": [reader_config(link)]},
                              account=private_broker.account(e2e_point.account))
        agent.wait_log(f"roster v{version} applied")
        agent.wait_log("card reader reader1 open at")
        private_broker.stop()
        agent.wait_log("disconnected (", timeout=20)
        # The day, compressed: every elder taps at breakfast time, again at lunch and at dinner (one
        # all-day window, so the 2nd and 3rd are repeats), and five strangers try their cards.
        day = [card(0x1000 + n) for _ in range(3) for n in range(elders)]
        day += [card(0x2000 + n) for n in range(5)]
        play(pty, day)
        wait_until(lambda: taps_logged(agent) == len(day), 30, f"{len(day)} taps recorded offline")
        assert decisions(tsdb_dsn, point) == [], "nothing can arrive while the broker is down"
        private_broker.start()
        wait_until(lambda: len(decisions(tsdb_dsn, point)) >= len(day), 30, "every tap after reconnection")
        time.sleep(1.0)  # a late duplicate would land now
    rows = db_query(tsdb_dsn, "SELECT count(*), count(DISTINCT seq), min(seq), max(seq) FROM diner_events"
                              " WHERE point_id = %s AND device_id = 'reader1'", point)
    assert rows == [(len(day), len(day), 0, len(day) - 1)]
    outcome = dict(db_query(tsdb_dsn, "SELECT decision, count(*) FROM diner_events WHERE point_id = %s"
                                      " GROUP BY 1", point))
    assert outcome == {"accepted": elders, "repeat": 2 * elders, "unknown_card": 5}
    meal = lunch(api_factory(), point)
    assert (meal["elders"], meal["events"]) == (elders, len(day))


def test_a_roster_change_on_the_server_changes_the_agents_next_decision(
        tsdb_dsn, e2e_point, ingest_factory, agent_factory, api_factory, tmp_path):
    point, card = e2e_point.id, Cards()
    place_point(tsdb_dsn, point)
    admin = api_factory("bureau_admin")
    version = register(admin, point, 1, "EM:" + card(0xa1))["rosters"][point]
    newcomer = register(admin, point, 2, None)
    ingest_factory()
    with Pty(tmp_path / "reader0") as pty:
        agent = agent_factory({"checkin": ALL_DAY, "inputs": [reader_config(tmp_path / "reader0")]})
        agent.wait_log(f"roster v{newcomer['rosters'][point]} applied")
        agent.wait_log("card reader reader1 open at")
        play(pty, [card(0xd4)])
        wait_until(lambda: len(decisions(tsdb_dsn, point)) == 1, 30, "the stranger's tap")
        r = admin.post(f"/api/v1/points/{point}/elders/{newcomer['elder']['id']}/cards",
                       json={"card": "EM:" + card(0xd4)})
        assert r.status_code == 200 and r.json()["rosters_published"], r.text
        new_version = r.json()["rosters"][point]
        assert new_version > version
        agent.wait_log(f"roster v{new_version} applied", timeout=20)
        play(pty, [card(0xd4)])
        wait_until(lambda: len(decisions(tsdb_dsn, point)) == 2, 30, "the second tap")
    assert decisions(tsdb_dsn, point) == [("EM:" + card(0xd4), "unknown_card"), ("EM:" + card(0xd4), "accepted")]
    assert "登记成功" in agent.log_text().rsplit("[reader1] ", 1)[1]
