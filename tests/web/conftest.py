"""Web UI fixtures: a seeded county in a database of its own, the real server in a thread, users of
every role, and Debian's Chromium driven by Playwright (deploy/native/browser.sh installs it)."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from server.web.seed import County, seed_county

from ..conftest import scratch_database

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "web"
CHROMIUM = os.environ.get("YANGYI_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PASSWORD = "web-test-password-1"
POINTS = 40  # two townships of ten villages
DAYS = 29  # four weeks back for "expected", plus today


@dataclass(frozen=True)
class WebUser:
    username: str
    role: str
    township: str | None = None
    point_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class WebSite:
    base_url: str
    dsn: str
    county: County
    users: dict[str, WebUser]
    now: datetime

    def points_of(self, township: str) -> list[str]:
        return [p.id for p in self.county.points if p.township == township]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _make_users(conn: psycopg.Connection[Any], county: County, prefix: str) -> dict[str, WebUser]:
    from server.auth.schemas import UserCreate
    from server.auth.service import AuthService
    from server.auth.settings import AuthSettings

    service = AuthService(AuthSettings())
    town = county.townships[0]
    village = next(p.village for p in county.points if p.township == town)
    tid = conn.execute("SELECT id FROM townships WHERE name = %s", (town,)).fetchone()
    vid = conn.execute("SELECT v.id FROM villages v JOIN townships t ON t.id = v.township_id"
                       " WHERE t.name = %s AND v.name = %s", (town, village)).fetchone()
    assert tid is not None and vid is not None
    first_point = next(p.id for p in county.points if p.village == village)
    specs = {
        "admin": ({"role": "bureau_admin"}, WebUser(f"{prefix}admin", "bureau_admin")),
        "viewer": ({"role": "bureau_viewer"}, WebUser(f"{prefix}viewer", "bureau_viewer")),
        "township": ({"role": "township_officer", "township_id": tid[0]},
                     WebUser(f"{prefix}town", "township_officer", township=town)),
        "village": ({"role": "village_officer", "village_id": vid[0]},
                    WebUser(f"{prefix}village", "village_officer", township=town)),
        "caregiver": ({"role": "caregiver", "point_ids": [first_point]},
                      WebUser(f"{prefix}care", "caregiver", township=town, point_ids=(first_point,))),
    }
    for binding, user in specs.values():
        spec = UserCreate.model_validate({"username": user.username, "password": PASSWORD,
                                          "display_name": user.username, **binding})
        service.create_user(conn, spec, "tests", datetime.now(UTC))
    conn.commit()
    return {k: u for k, (_, u) in specs.items()}


@pytest.fixture(scope="session")
def web_site(tsdb_admin_dsn: str, mqtt_server_account: Any) -> Iterator[WebSite]:
    """A migrated database of its own with a seeded county and users, served by the real app (uvicorn)."""
    import uvicorn
    from pydantic import SecretStr

    from server.app import create_app
    from server.settings import DbSettings, MqttSettings, Settings

    with scratch_database(tsdb_admin_dsn, "web") as dsn:
        now = datetime.now(UTC)
        prefix = f"w{uuid.uuid4().hex[:4]}"
        with psycopg.connect(dsn) as conn:
            county = seed_county(conn, now, POINTS, DAYS, prefix=prefix, alert_fraction=0.15)
            users = _make_users(conn, county, prefix)
        acct = mqtt_server_account
        settings = Settings(db=DbSettings(dsn=SecretStr(dsn)),
                            mqtt=MqttSettings(host=acct.host, port=acct.port, username=acct.username,
                                              password=SecretStr(acct.password)))
        port = _free_port()
        app = create_app(settings)
        # Event streams never end by themselves: at shutdown give them 2 s, then cancel them.
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                               timeout_graceful_shutdown=2))
        thread = threading.Thread(target=server.run, name="web-uvicorn", daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                pytest.fail("the web server did not start")
            time.sleep(0.05)
        try:
            yield WebSite(f"http://127.0.0.1:{port}", dsn, county, users, now)
        finally:
            server.should_exit = True
            thread.join(timeout=15)
            feed = getattr(getattr(app.state, "alert_api", None), "feed", None)
            if feed is not None:
                feed.stop()  # its LISTEN connection, before the database goes


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's Chromium under Playwright (never a downloaded browser)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}; run `bash deploy/native/browser.sh install`")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def shot(page: Any, name: str) -> Path:
    """Save a full-page screenshot under test-artifacts/web/."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def login(page: Any, site: WebSite, user: WebUser, lang: str = "zh") -> None:
    """Sign in through the login page as a person would."""
    page.goto(f"{site.base_url}/login?lang={lang}")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{site.base_url}/", timeout=15000)
