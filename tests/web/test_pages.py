"""The web pages over HTTP against the real server and database: sessions, scopes, languages, assets."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import psycopg
import pytest

from server.web import service
from server.web.i18n import TEXT, Lang, pick_lang, text

from .conftest import PASSWORD, WebSite, WebUser

pytestmark = pytest.mark.integration


def db_query(dsn: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql).fetchall()


@contextmanager
def client_for(site: WebSite, user: WebUser) -> Iterator[httpx.Client]:
    """A client signed in through the login API (session cookie)."""
    with httpx.Client(base_url=site.base_url, timeout=30) as client:
        r = client.post("/api/v1/auth/login", json={"username": user.username, "password": PASSWORD})
        assert r.status_code == 200, r.text
        yield client


def test_pages_need_a_session_and_redirect_to_login(web_site: WebSite) -> None:
    with httpx.Client(base_url=web_site.base_url) as anon:
        for path in ("/", "/alerts", f"/points/{web_site.county.points[0].id}"):
            r = anon.get(path, follow_redirects=False)
            assert r.status_code == 303, path
            assert r.headers["location"].startswith("/login?next=")
        assert anon.get("/login").status_code == 200
        assert anon.get("/events/alerts").status_code == 401


def test_login_next_is_never_an_open_redirect(web_site: WebSite) -> None:
    with httpx.Client(base_url=web_site.base_url) as anon:
        page = anon.get("/login", params={"next": "//evil.example/x"}).text
        assert 'data-next="/"' in page
        page = anon.get("/login", params={"next": "/alerts?state=open"}).text
        assert 'data-next="/alerts?state=open"' in page


def test_overview_counts_match_the_database(web_site: WebSite) -> None:
    points = len(web_site.county.points)
    # Meals served today in the whole county, straight from diner_events with the local day's bounds.
    today_sql = ("SELECT count(*) FROM diner_events WHERE decision = 'accepted' AND time >="
                 " date_trunc('day', now() AT TIME ZONE 'Asia/Shanghai') AT TIME ZONE 'Asia/Shanghai'")
    with client_for(web_site, web_site.users["viewer"]) as c:
        # Figures may be up to TODAY_TTL_S old (other tests add taps): poll until they agree.
        deadline = time.monotonic() + service.TODAY_TTL_S + service.OVERVIEW_TTL_S + 5
        while True:
            html = c.get("/").text
            tile = re.search(r'id="tile-diners">.*?<div class="big">(\d+)</div>', html, re.S)
            assert tile is not None
            (today,), = db_query(web_site.dsn, today_sql)
            (open_alerts,), = db_query(web_site.dsn, "SELECT count(*) FROM alerts WHERE state <> 'resolved'")
            shown = sum(int(n) for n in re.findall(r'data-severity="\w+">[^<]*<b>(\d+)</b>', html))
            if (int(tile.group(1)), shown) == (today, open_alerts) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    assert int(tile.group(1)) == today
    assert f"<small>/{points}</small>" in html
    assert shown == open_alerts > 0


def test_township_officer_sees_only_their_township(web_site: WebSite) -> None:
    officer = web_site.users["township"]
    assert officer.township is not None
    mine = set(web_site.points_of(officer.township))
    others = {p.id for p in web_site.county.points} - mine
    assert mine and others
    with client_for(web_site, officer) as c:
        html = c.get("/").text
        shown = set(re.findall(r'<tr class="point" data-point="([^"]+)"', html))
        assert shown == mine
        assert c.get(f"/points/{sorted(others)[0]}").status_code == 404
        assert c.get(f"/points/{sorted(mine)[0]}").status_code == 200
        alerts_html = c.get("/alerts").text
        assert not any(f'data-point="{p}"' in alerts_html for p in others)
        other_town = next(t for t in web_site.county.townships if t != officer.township)
        assert c.get("/overview/township", params={"name": other_town}).status_code == 404
        fragment = c.get("/overview/township", params={"name": officer.township})
        assert set(re.findall(r'data-point="([^"]+)"', fragment.text)) == mine


def test_county_overview_folds_townships_and_opens_one(web_site: WebSite) -> None:
    with client_for(web_site, web_site.users["viewer"]) as c:
        html = c.get("/").text
        assert html.count('<tbody class="township"') == len(web_site.county.townships)
        assert 'class="point"' not in html
        town = web_site.county.townships[0]
        fragment = c.get("/overview/township", params={"name": town}).text
        assert set(re.findall(r'data-point="([^"]+)"', fragment)) == set(web_site.points_of(town))


def test_caregiver_sees_only_their_point(web_site: WebSite) -> None:
    care = web_site.users["caregiver"]
    with client_for(web_site, care) as c:
        shown = set(re.findall(r'<tr class="point" data-point="([^"]+)"', c.get("/").text))
        assert shown == set(care.point_ids)


def test_language_switch_by_query_sets_a_cookie(web_site: WebSite) -> None:
    with client_for(web_site, web_site.users["viewer"]) as c:
        assert "全县总览" in c.get("/").text
        r = c.get("/", params={"lang": "en"})
        assert "County overview" in r.text and r.cookies.get("yangyi_lang") == "en"
        assert "County overview" in c.get("/").text
        assert "全县总览" in c.get("/", params={"lang": "zh"}).text


def test_point_page_shows_meals_sensors_and_devices(web_site: WebSite) -> None:
    point = web_site.county.points[0]
    with client_for(web_site, web_site.users["admin"]) as c:
        html = c.get(f"/points/{point.id}", params={"lang": "en"}).text
        assert 'id="sensors"' in html and 'data-url="/api/v1/points/' in html
        assert html.count("<tr data-device=") == (5 if point.camera else 4)
        series = c.get(re.search(r'data-url="([^"]+)"', html).group(1))  # type: ignore[union-attr]
        assert series.status_code == 200 and series.json()["points"]


def test_static_assets_are_vendored_and_confined(web_site: WebSite) -> None:
    with httpx.Client(base_url=web_site.base_url) as anon:
        for path in ("/static/vendor/htmx-2.0.11.min.js", "/static/vendor/echarts-6.1.0.common.min.js",
                     "/static/app.css", "/static/app.js"):
            r = anon.get(path)
            assert r.status_code == 200 and len(r.content) > 1000, path
        assert anon.get("/static/../router.py").status_code == 404
        assert anon.get("/static/%2e%2e/router.py").status_code == 404
        html = anon.get("/login").text
        assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing from a CDN


def test_every_text_has_both_languages() -> None:
    for key, (zh, en) in TEXT.items():
        assert zh.strip() and en.strip(), key
    assert text("nav.alerts", Lang.ZH) == "告警" and text("nav.alerts", Lang.EN) == "Alerts"
    assert text("no.such.key", Lang.EN) == "no.such.key"
    assert pick_lang(None, None) is Lang.ZH and pick_lang("en", "zh") is Lang.EN and pick_lang("xx", "en") is Lang.EN


def test_every_alert_event_and_state_has_a_label() -> None:
    """A new kind of timeline event must get its words on the pages and in the ledger workbook."""
    from server.alerts.lifecycle import AlertState, EventKind
    from server.ledger.export import EVENT_ZH, STATE_ZH

    for kind in EventKind:
        assert f"event.{kind.value}" in TEXT, kind
        assert kind.value in EVENT_ZH, kind
    for state in AlertState:
        assert state.value in STATE_ZH, state
