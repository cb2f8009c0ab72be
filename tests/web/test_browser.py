"""The web UI in a real browser: Debian's Chromium driven by Playwright against the real server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest

from .conftest import PASSWORD, WebSite, login, shot

pytestmark = pytest.mark.integration

ZONE = ZoneInfo("Asia/Shanghai")
ROLES = ["admin", "viewer", "township", "village", "caregiver"]


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    context.close()
    assert not errors, f"JavaScript errors: {errors}"


@pytest.mark.parametrize("role", ROLES)
def test_each_role_signs_in_and_sees_its_overview(page: Any, web_site: WebSite, role: str) -> None:
    user = web_site.users[role]
    page.goto(f"{web_site.base_url}/")
    page.wait_for_url("**/login?next=*")
    login(page, web_site, user)
    rows = page.locator("tr.point")
    shown = {rows.nth(i).get_attribute("data-point") for i in range(rows.count())}
    if role in ("admin", "viewer"):
        # County-wide: one folded row per township; opening one loads its villages and points in place.
        assert page.locator("h1").first.inner_text() == "全县总览"
        assert page.locator("tbody.township").count() == len(web_site.county.townships)
        assert not shown
        town = web_site.county.townships[1]
        page.click(f"tbody.township[data-township='{town}'] button.expand")
        page.wait_for_selector(f"tbody.township[data-township='{town}'] tr.point")
        rows = page.locator("tr.point")
        shown = {rows.nth(i).get_attribute("data-point") for i in range(rows.count())}
        assert shown == set(web_site.points_of(town))
    elif role == "township":
        assert shown == set(web_site.points_of(user.township or ""))
    elif role == "caregiver":
        assert shown == set(user.point_ids)
    else:
        assert shown and shown < set(web_site.points_of(user.township or ""))
    assert page.locator(".who").inner_text().startswith(user.username)
    shot(page, f"overview-{role}")


def test_wrong_password_shows_the_error_in_chinese(page: Any, web_site: WebSite) -> None:
    page.goto(f"{web_site.base_url}/login")
    page.fill("input[name=username]", web_site.users["viewer"].username)
    page.fill("input[name=password]", "not-the-password")
    page.click("button[type=submit]")
    page.wait_for_selector("#login-error:not([hidden])")
    assert page.inner_text("#login-error") == "用户名或密码错误"


def test_language_toggle_and_sign_out(page: Any, web_site: WebSite) -> None:
    login(page, web_site, web_site.users["viewer"])
    page.click("#lang-toggle")
    page.wait_for_selector("text=County overview")
    page.goto(f"{web_site.base_url}/")  # the cookie keeps English
    assert page.locator("h1").first.inner_text() == "County overview"
    page.click("#logout")
    page.wait_for_url("**/login")
    page.goto(f"{web_site.base_url}/")
    page.wait_for_url("**/login?next=*")


def test_meal_point_page_draws_sensor_charts_with_thresholds(page: Any, web_site: WebSite) -> None:
    point = next(p for p in web_site.county.points if p.camera)
    import psycopg

    with psycopg.connect(web_site.dsn) as conn:  # a tap and a camera count this minute, whatever the hour
        conn.execute("INSERT INTO diner_events (time, point_id, device_id, seq, kind, method, card_id, meal, decision,"
                     " clock_synced) VALUES (now(), %s, 'reader1', 999999, 'tap', 'card', 'EM:X1', 'lunch',"
                     " 'accepted', true)", (point.id,))
        conn.execute("INSERT INTO count_events (time, point_id, device_id, seq, period_s, entries, exits)"
                     " VALUES (now(), %s, 'cam1', 999999, 60, 2, 0)", (point.id,))
    login(page, web_site, web_site.users["admin"])
    page.goto(f"{web_site.base_url}/points/{point.id}")
    page.wait_for_function("document.querySelectorAll('figure.sensor[data-drawn]').length === 3", timeout=15000)
    gas = page.locator("figure.sensor", has_text="lel")
    assert int(gas.get_attribute("data-drawn") or 0) > 100  # a day of 1-minute buckets
    assert int(gas.get_attribute("data-thresholds") or 0) >= 1  # the 25 %LEL line at least
    assert page.locator("#camera-chart canvas").count() == 1
    shot(page, "point")


def test_phone_sized_overview_fits_the_screen(browser: Any, web_site: WebSite) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    pg = context.new_page()
    try:
        login(pg, web_site, web_site.users["township"])
        width = pg.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the page is {width}px wide on a 390px phone"
        shot(pg, "overview-phone")
    finally:
        context.close()


def _open_alert(site: WebSite, points: set[str]) -> tuple[str, str]:
    import psycopg

    with psycopg.connect(site.dsn) as conn:
        row = conn.execute("SELECT point_id, id FROM alerts WHERE state = 'open' AND point_id = ANY(%s)"
                           " ORDER BY opened_at LIMIT 1", (sorted(points),)).fetchone()
    assert row is not None, "the seeded county has no open alert in this scope"
    return row[0], row[1]


def test_alert_acknowledged_elsewhere_updates_the_page_live(page: Any, web_site: WebSite) -> None:
    officer = web_site.users["township"]
    point, alert = _open_alert(web_site, set(web_site.points_of(officer.township or "")))
    login(page, web_site, officer)
    page.goto(f"{web_site.base_url}/alerts")
    page.wait_for_selector("#live-state[data-connected='1']", timeout=10000)
    page.evaluate("window.__noReload = 1")
    card = page.locator(f"#alert-{alert}")
    assert card.get_attribute("data-state") == "open"
    # Someone else (the bureau administrator, through the API) acknowledges it.
    with httpx.Client(base_url=web_site.base_url, timeout=30) as admin:
        admin.post("/api/v1/auth/login", json={"username": web_site.users["admin"].username, "password": PASSWORD})
        csrf = admin.get("/api/v1/auth/me").json()["csrf_token"]
        r = admin.post(f"/api/v1/points/{point}/alerts/{alert}/ack", json={}, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 200, r.text
    page.wait_for_selector(f"#alert-{alert}[data-state='acknowledged']", timeout=10000)
    assert page.evaluate("window.__noReload") == 1  # updated in place, not reloaded
    assert web_site.users["admin"].username in card.inner_text()
    shot(page, "alerts-live")


def test_acknowledge_and_resolve_in_the_page_with_timeline(page: Any, web_site: WebSite) -> None:
    care = web_site.users["caregiver"]
    import psycopg

    # An alert of the caregiver's own point, not gas (no on-site confirmation), its condition gone.
    with psycopg.connect(web_site.dsn) as conn:
        conn.execute(
            "INSERT INTO alerts (id, point_id, device_id, condition, hazard, severity, peak_severity, state, source,"
            " opened_at, last_seen, message, active, cleared_at) VALUES ('Aweb1', %s, 'reader1', 'device.offline',"
            " 'device', 'warning', 'warning', 'open', 'server', now() - interval '5 minutes', now(), '读卡器离线',"
            " false, now())", (care.point_ids[0],))
        conn.execute("INSERT INTO alert_events (alert_id, time, kind, actor)"
                     " VALUES ('Aweb1', now(), 'opened', 'server')")
    login(page, web_site, care)
    page.goto(f"{web_site.base_url}/alerts?hazard=device")
    page.wait_for_selector("#live-state[data-connected='1']", timeout=10000)
    page.click("#alert-Aweb1 button.ack")
    page.wait_for_selector("#alert-Aweb1[data-state='acknowledged']", timeout=10000)
    page.click("#alert-Aweb1 details.resolve summary")
    page.fill("#alert-Aweb1 textarea[name=note]", "更换了读卡器数据线")
    page.click("#alert-Aweb1 form.resolve-form button[type=submit]")
    page.wait_for_selector("#alert-Aweb1", state="detached", timeout=10000)  # the active list drops it
    page.goto(f"{web_site.base_url}/alerts?state=resolved&hazard=device")
    page.click("#alert-Aweb1 details.tl summary")
    page.wait_for_selector("#alert-Aweb1 .timeline li[data-kind='resolved']", timeout=10000)
    kinds = page.locator("#alert-Aweb1 .timeline li").evaluate_all("els => els.map(e => e.dataset.kind)")
    assert kinds == ["opened", "acknowledged", "resolved"]
    shot(page, "alert-timeline")


def test_bureau_viewer_has_no_action_buttons(page: Any, web_site: WebSite) -> None:
    login(page, web_site, web_site.users["viewer"])
    page.goto(f"{web_site.base_url}/alerts")
    assert page.locator("article.alert").count() > 0
    assert page.locator("button.ack").count() == 0


def _id_number(body17: str) -> str:
    """A GB 11643 resident ID number: 17 digits and the ISO 7064 MOD 11-2 check character."""
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    total = sum(int(d) * w for d, w in zip(body17, weights, strict=True))
    return body17 + "10X98765432"[total % 11]


def test_caregiver_sees_masked_elders_and_records_a_daily_check(page: Any, web_site: WebSite) -> None:
    care = web_site.users["caregiver"]
    point = care.point_ids[0]
    id_number = _id_number("11010519440312002")
    with httpx.Client(base_url=web_site.base_url, timeout=30) as admin:
        admin.post("/api/v1/auth/login", json={"username": web_site.users["admin"].username, "password": PASSWORD})
        csrf = admin.get("/api/v1/auth/me").json()["csrf_token"]
        r = admin.post(f"/api/v1/points/{point}/elders", headers={"X-CSRF-Token": csrf},
                       json={"name": "王秀英", "id_number": id_number, "phone": "13812345678", "hukou_local": True})
        assert r.status_code == 201, r.text
    login(page, web_site, care)
    page.goto(f"{web_site.base_url}/points/{point}")
    page.click("#registry-link")
    page.wait_for_selector("#elders tr[data-elder]")
    row = page.locator("#elders tr[data-elder]", has_text="王秀英").inner_text()
    assert "王秀英" in row and "13812345678" in row  # caregivers call elders: phones in clear
    assert id_number not in row and id_number[:2] in row  # ID numbers masked for caregivers
    page.eval_on_selector("#inspection-form details", "d => { d.open = true; }")
    page.check("#inspection-form input[name=item1][value=fail]")
    page.fill("#inspection-form textarea[name=problem]", "燃气软管老化，已更换")
    page.click("#inspection-form button[type=submit]")
    page.wait_for_selector("#inspections tr[data-inspection] .tag.bad, #inspection-error:not([hidden])",
                           timeout=10000)
    assert page.locator("#inspection-error").is_hidden(), page.inner_text("#inspection-error")
    import psycopg

    with psycopg.connect(web_site.dsn) as conn:
        items = conn.execute(
            "SELECT i.kind, it.area, it.passed, i.inspector_role FROM ledger_inspections i"
            " JOIN ledger_inspection_items it ON it.inspection_id = i.id WHERE i.point_id = %s ORDER BY it.position",
            (point,)).fetchall()
        problems = conn.execute("SELECT description FROM ledger_problems WHERE point_id = %s", (point,)).fetchall()
    assert [(k, a, p) for k, a, p, _ in items][:2] == [("daily", "electricity", True), ("daily", "gas", False)]
    assert items[0][3] == "caregiver" and problems == [("燃气软管老化，已更换",)]
    shot(page, "registry-ledger")


def test_admin_settles_signs_and_downloads_the_settlement_xlsx(page: Any, web_site: WebSite, tmp_path: Any) -> None:
    from pathlib import Path

    import openpyxl

    from server.subsidy import service as subsidy_service

    month = web_site.now.astimezone(ZONE).strftime("%Y-%m")
    policy = (Path(subsidy_service.__file__).parent / "example_county.yaml").read_text(encoding="utf-8")
    with httpx.Client(base_url=web_site.base_url, timeout=60) as admin:
        admin.post("/api/v1/auth/login", json={"username": web_site.users["admin"].username, "password": PASSWORD})
        csrf = admin.get("/api/v1/auth/me").json()["csrf_token"]
        r = admin.post("/api/v1/subsidy/policies", json={"yaml": policy}, headers={"X-CSRF-Token": csrf})
        assert r.status_code in (201, 409), r.text
    login(page, web_site, web_site.users["admin"])
    page.goto(f"{web_site.base_url}/subsidy?month={month}")
    assert page.locator("#month-state").get_attribute("data-state") == "open"
    page.click("#subsidy-actions button[data-action=settle]")
    page.wait_for_selector("#subsidy-actions button[data-action=sign]", timeout=30000)
    page.click("#subsidy-actions button[data-action=sign]")
    page.wait_for_selector("#month-state[data-state=signed]", timeout=30000)
    county = page.locator("#totals tr[data-level=county]")
    meals, due = int(county.locator("td").nth(1).inner_text()), float(county.locator("td").nth(4).inner_text())
    assert meals > 0 and due > 0  # the seeded regulars are registered elders of 70 and over
    with page.expect_download() as info:
        page.click("#export-xlsx")
    path = tmp_path / "settlement.xlsx"
    info.value.save_as(str(path))
    book = openpyxl.load_workbook(path, read_only=True)
    rows = list(book["汇总"].iter_rows(values_only=True))
    header = next(i for i, r in enumerate(rows) if r and r[0] == "层级")
    county_row = rows[header + 1]  # the county comes first, as on the page
    assert int(county_row[3]) == meals and float(county_row[6]) == pytest.approx(due)
    assert len(book.sheetnames) == 1 + len(web_site.county.townships)  # a sheet per township
    shot(page, "subsidy")


def test_township_officer_sees_only_own_notices_and_no_month_actions(page: Any, web_site: WebSite) -> None:
    officer = web_site.users["township"]
    login(page, web_site, officer)
    page.goto(f"{web_site.base_url}/subsidy")
    assert page.locator("#subsidy-actions").count() == 0
    townships = set(page.locator("#notices tbody tr td:first-child").all_inner_texts())
    assert townships == {officer.township}


def _workbook(rows: list[list[Any]]) -> bytes:
    import io

    from openpyxl import Workbook

    from server.subsidy import importer

    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = importer.ELDERS_SHEET
    ws.append(list(importer.ELDER_COLUMNS))
    for r in rows:
        ws.append(r)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def test_admin_imports_the_registry_workbook_with_its_report(page: Any, web_site: WebSite, tmp_path: Any) -> None:
    point = web_site.county.points[0]
    good_id = _id_number("33012719380505001")
    bad_id = good_id[:17] + ("0" if good_id[17] != "0" else "1")
    row = ["", "周桂兰", good_id, "", "", point.township, point.village, "本地", None, "", None, None]
    bad, good = tmp_path / "bad.xlsx", tmp_path / "good.xlsx"
    bad.write_bytes(_workbook([row, [*row[:1], "吴", bad_id, *row[3:]]]))
    good.write_bytes(_workbook([row]))
    login(page, web_site, web_site.users["admin"])
    page.goto(f"{web_site.base_url}/points/{point.id}/registry")
    page.set_input_files("#import-form input[name=file]", str(bad))
    page.click("#import-form button[type=submit]")
    page.wait_for_selector("#import-problems:not([hidden]) tbody tr")
    problem = page.locator("#import-problems tbody tr").first.inner_text()
    assert "老人" in problem and "3" in problem and "身份证号" in problem
    assert "未写入" in page.inner_text("#import-summary") or "试导入" in page.inner_text("#import-summary")
    page.uncheck("#import-form input[name=dry_run]")
    page.set_input_files("#import-form input[name=file]", str(good))
    page.click("#import-form button[type=submit]")
    page.wait_for_function("document.querySelector('#import-summary').textContent.includes('已写入')")
    import psycopg

    with psycopg.connect(web_site.dsn) as conn:
        assert conn.execute("SELECT name FROM elders WHERE id_number = %s", (good_id,)).fetchall() == [("周桂兰",)]
    shot(page, "registry-import")


def test_admin_reopens_a_signed_month_and_a_village_officer_posts_the_notice(
    page: Any, web_site: WebSite
) -> None:
    from datetime import timedelta
    from pathlib import Path

    from server.subsidy import service as subsidy_service

    first = web_site.now.astimezone(ZONE).date().replace(day=1)
    month = (first - timedelta(days=1)).strftime("%Y-%m")  # last month: the one whose notice is due now
    policy = (Path(subsidy_service.__file__).parent / "example_county.yaml").read_text(encoding="utf-8")
    with httpx.Client(base_url=web_site.base_url, timeout=60) as admin:
        admin.post("/api/v1/auth/login", json={"username": web_site.users["admin"].username, "password": PASSWORD})
        headers = {"X-CSRF-Token": admin.get("/api/v1/auth/me").json()["csrf_token"]}
        r = admin.post("/api/v1/subsidy/policies", json={"yaml": policy}, headers=headers)
        assert r.status_code in (201, 409), r.text
        run = admin.post(f"/api/v1/subsidy/settlements/{month}/runs", json={}, headers=headers)
        assert run.status_code == 201, run.text
        r = admin.post(f"/api/v1/subsidy/settlements/{month}/sign", json={"run_id": run.json()["id"]}, headers=headers)
        assert r.status_code == 200, r.text
        assert admin.post(f"/api/v1/subsidy/notices/{month}/draft", json={}, headers=headers).status_code == 200

    login(page, web_site, web_site.users["admin"])
    page.goto(f"{web_site.base_url}/subsidy?month={month}")
    assert page.locator("#month-state").get_attribute("data-state") == "signed"
    assert page.locator("#subsidy-actions button[data-action=settle]").count() == 0
    # Differences since sign-off go into the next open month; the page says where and how much.
    page.click("#subsidy-actions button[data-action=corrections]")
    page.wait_for_selector("#subsidy-done:not([hidden])")
    into = first
    with httpx.Client(base_url=web_site.base_url, timeout=60) as admin:
        admin.post("/api/v1/auth/login", json={"username": web_site.users["admin"].username, "password": PASSWORD})
        while admin.get(f"/api/v1/subsidy/settlements/{into:%Y-%m}").json()["state"] == "signed":
            into = (into + timedelta(days=32)).replace(day=1)  # a signed month takes no adjustments
    assert f"已转入 {into:%Y-%m}" in page.locator("#subsidy-done").inner_text()
    # Reopening needs a reason: an empty one is refused in the page and nothing changes.
    page.click("#subsidy-actions button[data-action=reopen]")
    assert page.locator("#month-state").get_attribute("data-state") == "signed"
    page.fill("#reopen-reason", "村里补录了两位老人的登记")
    page.click("#subsidy-actions button[data-action=reopen]")
    page.wait_for_selector("#month-state[data-state=reopened]")
    assert "村里补录了两位老人的登记" in page.locator("#month-state .timeline").inner_text()

    officer = web_site.users["village"]
    context = page.context.browser.new_context(viewport={"width": 390, "height": 844}, locale="zh-CN")
    phone = context.new_page()
    try:
        login(phone, web_site, officer)
        phone.goto(f"{web_site.base_url}/subsidy?month={month}")
        forms = phone.locator("#notices form.publish-notice")
        assert forms.count() == 1  # only the officer's own village, drafted and not yet posted
        row = phone.locator("#notices tbody tr", has=phone.locator("form.publish-notice"))
        village = row.get_attribute("data-village")
        forms.first.locator("button[type=submit]").click()
        phone.wait_for_selector(f"#notices tr[data-village='{village}'][data-status^=published]")
        assert phone.locator("#notices form.publish-notice").count() == 0
        shot(phone, "notice-posted")
    finally:
        context.close()
    with psycopg.connect(web_site.dsn) as conn:
        row = conn.execute("SELECT published_on, published_by FROM subsidy_notices"
                           " WHERE month = %s AND village_id = %s", (f"{month}-01", int(village))).fetchone()
    assert row is not None and row[0] is not None and row[1]


def test_an_open_page_makes_the_caregiver_present_for_in_app_messages(browser: Any, web_site: WebSite) -> None:
    """The in-app channel counts as delivered only while one of the person's pages is open, and the
    message shows on whatever page that is (here the overview), not only on the alerts page."""
    import time
    from datetime import UTC, datetime

    from server.alerts.channels.base import Notification
    from server.alerts.service import PgInAppChannel

    carer = web_site.users["caregiver"]
    with psycopg.connect(web_site.dsn) as conn:
        row = conn.execute(
            "INSERT INTO alert_contacts (name, role, user_id, endpoints)"
            " SELECT '在线护理员', 'caregiver', id, '[{\"channel\": \"inapp\", \"address\": \"self\"}]'"
            " FROM auth_users WHERE username = %s RETURNING id", (carer.username,)).fetchone()
        conn.commit()
    assert row is not None
    person = str(row[0])
    channel = PgInAppChannel(web_site.dsn, lambda: datetime.now(UTC))
    note = Notification(alert_id="web-inapp-1", person_id=person, address=person, title="燃气报警",
                        text="厨房可燃气体 30 %LEL，请立即到场处置。", link="/alerts", severity="alarm", hazard="gas")
    assert not channel.send(note).ok  # nobody has a page open yet: fall through to the next channel

    context = browser.new_context(viewport={"width": 390, "height": 844}, locale="zh-CN")
    page = context.new_page()
    try:
        login(page, web_site, carer)
        page.goto(f"{web_site.base_url}/")
        deadline = time.monotonic() + 10
        while not (result := channel.send(note)).ok and time.monotonic() < deadline:
            time.sleep(0.2)  # the stream registers the page as it connects
        assert result.ok, result.error
        toast = page.wait_for_selector("#inapp-toasts .toast[data-alert=web-inapp-1]", timeout=10000)
        assert "30 %LEL" in toast.inner_text()
        shot(page, "inapp-toast")
        toast.query_selector("button").click()
        assert page.locator("#inapp-toasts .toast").count() == 0
    finally:
        context.close()
    deadline = time.monotonic() + 10
    while channel.send(note).ok and time.monotonic() < deadline:
        time.sleep(0.3)  # the server notices the closed stream within a second
    assert not channel.send(note).ok
