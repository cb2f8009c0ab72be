"""Login, sessions, CSRF, rate limits, tokens, users and the audit log against the real TimescaleDB."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from server.auth.settings import CookieSecure

from .conftest import PASSWORD, Apps, County, login, rows

pytestmark = pytest.mark.integration

LOGIN = "/api/v1/auth/login"
ME = "/api/v1/auth/me"


def audit_rows(dsn: str, target: str) -> list[tuple[Any, ...]]:
    """Entries about target, leaving out the fixture's own set-up (actor 'test')."""
    return rows(dsn, "SELECT actor, action, ip, ok, detail, time FROM audit_log"
                     " WHERE target = %s AND actor <> 'test' ORDER BY id", target)


def test_login_sets_a_secure_httponly_lax_cookie_and_a_server_side_session(
        apps: Apps, county: County, tsdb_dsn: str) -> None:
    client = apps.client(ip="10.1.0.1")
    user = county.users["officer_a"]
    resp = client.post(LOGIN, json={"username": user.upper(), "password": PASSWORD})  # names are case-blind
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["role"] == "township_officer" and body["township_id"] == county.township_ids["A"]
    assert body["scope"]["township_ids"] == [county.township_ids["A"]] and body["csrf_token"]
    cookie = resp.headers["set-cookie"]
    for attribute in ("HttpOnly", "Secure", "SameSite=lax", "Path=/", "Max-Age=28800"):
        assert attribute in cookie
    value = client.cookies["yangyi_session"]
    stored = rows(tsdb_dsn, "SELECT s.id_hash, s.ip FROM auth_sessions s JOIN auth_users u ON u.id = s.user_id"
                            " WHERE u.username = %s", user)
    assert stored == [(hashlib.sha256(value.encode()).digest(), "10.1.0.1")]  # the cookie itself is not stored
    assert client.get(ME).json()["name"] == user
    actions = [(r[0], r[1], r[2], r[3]) for r in audit_rows(tsdb_dsn, f"user:{user}")]
    assert ("user:" + user, "login", "10.1.0.1", True) in actions


def test_cookie_secure_follows_the_setting(apps: Apps, county: County) -> None:
    resp = apps.client(https=False).post(LOGIN, json={"username": county.users["viewer"], "password": PASSWORD})
    assert "HttpOnly" in resp.headers["set-cookie"] and "Secure" not in resp.headers["set-cookie"]
    forced = apps.client(apps.app(cookie_secure=CookieSecure.ALWAYS), https=False)
    resp = forced.post(LOGIN, json={"username": county.users["viewer"], "password": PASSWORD})
    assert "Secure" in resp.headers["set-cookie"]


def test_wrong_password_and_unknown_user_look_alike_and_are_audited(
        apps: Apps, county: County, tsdb_dsn: str) -> None:
    client = apps.client(ip="10.1.0.2")
    user = county.users["caregiver"]
    wrong = client.post(LOGIN, json={"username": user, "password": "not-the-password"})
    unknown = client.post(LOGIN, json={"username": f"nobody.{county.uid}", "password": PASSWORD})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert "yangyi_session" not in client.cookies
    assert client.get(ME).status_code == 401
    failed = audit_rows(tsdb_dsn, f"user:{user}")
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in failed] == [
        ("anonymous", "login.failed", "10.1.0.2", False, {"reason": "bad_password"})]
    assert audit_rows(tsdb_dsn, f"user:nobody.{county.uid}")[0][4] == {"reason": "unknown_user"}


def test_logout_ends_the_session_on_the_server(apps: Apps, county: County, tsdb_dsn: str) -> None:
    client = apps.client()
    csrf = login(client, county.users["viewer"])
    cookie = client.cookies["yangyi_session"]
    assert client.post("/api/v1/auth/logout").status_code == 403  # cookie auth, no CSRF header
    assert client.get(ME).status_code == 200
    resp = client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf})
    assert resp.status_code == 204 and 'yangyi_session=""' in resp.headers["set-cookie"]
    # A browser that kept the cookie gets nothing from it.
    replay = apps.client()
    replay.cookies.set("yangyi_session", cookie)
    assert replay.get(ME).status_code == 401
    assert [r[1] for r in audit_rows(tsdb_dsn, f"user:{county.users['viewer']}")] == ["login", "logout"]


def test_session_ends_after_idle_time(apps: Apps, county: County) -> None:
    client = apps.client()
    login(client, county.users["viewer"])
    apps.clock.advance(minutes=29)
    assert client.get(ME).status_code == 200  # use renews the idle timer
    apps.clock.advance(minutes=29)
    assert client.get(ME).status_code == 200
    apps.clock.advance(minutes=30)
    assert client.get(ME).status_code == 401


def test_session_ends_at_its_absolute_end_despite_use(apps: Apps, county: County) -> None:
    client = apps.client()
    login(client, county.users["viewer"])
    for _ in range(15):
        apps.clock.advance(minutes=29)
        assert client.get(ME).status_code == 200
    apps.clock.advance(minutes=60)  # 7 h 15 + 29 min idle-ok, but past 8 h
    assert client.get(ME).status_code == 401


def test_rate_limit_per_account_then_the_window_slides(apps: Apps, county: County, tsdb_dsn: str) -> None:
    app = apps.app()
    user = county.users["village_a1"]
    for n in range(3):
        ip_client = apps.client(app)  # a different address each time: the account limit applies
        assert ip_client.post(LOGIN, json={"username": user, "password": f"guess-{n}"}).status_code == 401
        apps.clock.advance(seconds=10)
    client = apps.client(app)
    blocked = client.post(LOGIN, json={"username": user, "password": PASSWORD})  # even the right password
    assert blocked.status_code == 429
    assert blocked.headers["retry-after"] == "30"  # first failure at t0, window 60 s, now t0+30
    throttled = [r for r in audit_rows(tsdb_dsn, f"user:{user}") if r[1] == "login.throttled"]
    assert len(throttled) == 1 and throttled[0][4] == {"retry_after_s": 30}
    apps.clock.advance(seconds=30)
    assert client.post(LOGIN, json={"username": user, "password": PASSWORD}).status_code == 200
    # Success clears the account's failures: three more tries are allowed at once.
    assert rows(tsdb_dsn, "SELECT count(*) FROM auth_login_failures WHERE username = %s", user) == [(0,)]


def test_rate_limit_per_address(apps: Apps, county: County) -> None:
    app = apps.app()
    attacker = apps.client(app, ip="10.66.0.1")
    for n in range(6):
        resp = attacker.post(LOGIN, json={"username": f"spray{n}.{county.uid}", "password": "Password123!"})
        assert resp.status_code == 401
    resp = attacker.post(LOGIN, json={"username": county.users["admin"], "password": PASSWORD})
    assert resp.status_code == 429
    # The same account from another address is not locked out by the sprayer.
    assert apps.client(app, ip="10.66.0.2").post(
        LOGIN, json={"username": county.users["admin"], "password": PASSWORD}).status_code == 200


def test_argon2_at_rest_and_rehash_when_parameters_change(apps: Apps, county: County, tsdb_dsn: str) -> None:
    user = county.users["officer_b"]
    (stored,) = rows(tsdb_dsn, "SELECT password_hash FROM auth_users WHERE username = %s", user)[0]
    assert stored.startswith("$argon2id$v=19$m=8,t=1,p=1$") and PASSWORD not in stored
    login(apps.client(apps.app(argon2_time_cost=2, argon2_memory_kib=16)), user)
    (rehashed,) = rows(tsdb_dsn, "SELECT password_hash FROM auth_users WHERE username = %s", user)[0]
    assert rehashed.startswith("$argon2id$v=19$m=16,t=2,p=1$")
    logins = [r for r in audit_rows(tsdb_dsn, f"user:{user}") if r[1] == "login"]
    assert logins[-1][4] == {"rehashed": True}
    login(apps.client(apps.app(argon2_time_cost=2, argon2_memory_kib=16)), user)  # the new hash verifies


def test_disabled_user_cannot_sign_in_and_loses_sessions(apps: Apps, county: County) -> None:
    app = apps.app()
    officer = apps.client(app)
    login(officer, county.users["officer_b"])
    admin = apps.client(app)
    csrf = login(admin, county.users["admin"])
    resp = admin.patch(f"/api/v1/auth/users/{county.user_ids['officer_b']}", json={"disabled": True},
                       headers={"X-CSRF-Token": csrf})
    assert resp.status_code == 200 and resp.json()["disabled"] is True
    assert officer.get(ME).status_code == 401
    assert apps.client(app).post(LOGIN, json={"username": county.users["officer_b"], "password": PASSWORD}
                                 ).status_code == 401


def test_admin_manages_users_with_csrf_and_every_change_is_audited(
        apps: Apps, county: County, tsdb_dsn: str) -> None:
    admin = apps.client(ip="10.2.0.1")
    csrf = login(admin, county.users["admin"])
    new = {"username": f"li.{county.uid}", "password": "li-si-2026-06", "role": "township_officer",
           "township_id": county.township_ids["A"], "display_name": "李四"}
    assert admin.post("/api/v1/auth/users", json=new).status_code == 403  # no CSRF header
    assert admin.post("/api/v1/auth/users", json=new, headers={"X-CSRF-Token": "forged"}).status_code == 403
    created = admin.post("/api/v1/auth/users", json=new, headers={"X-CSRF-Token": csrf})
    assert created.status_code == 201, created.text
    user = created.json()
    assert "password" not in json.dumps(user) and user["role"] == "township_officer"
    assert admin.post("/api/v1/auth/users", json=new, headers={"X-CSRF-Token": csrf}).status_code == 409
    bad = {**new, "username": f"wu.{county.uid}", "role": "village_officer"}  # village officer without village
    assert admin.post("/api/v1/auth/users", json=bad, headers={"X-CSRF-Token": csrf}).status_code == 422
    change = {"role": "village_officer", "village_id": county.village_ids["a2"]}
    resp = admin.patch(f"/api/v1/auth/users/{user['id']}", json=change, headers={"X-CSRF-Token": csrf})
    assert resp.status_code == 200 and resp.json()["village_id"] == county.village_ids["a2"]
    entries = audit_rows(tsdb_dsn, f"user:{new['username']}")
    assert [(r[0], r[1], r[2]) for r in entries] == [
        (f"user:{county.users['admin']}", "user.create", "10.2.0.1"),
        (f"user:{county.users['admin']}", "user.role_change", "10.2.0.1")]
    assert entries[1][4]["from"]["role"] == "township_officer"
    assert entries[1][4]["to"] == {"role": "village_officer", "township_id": None,
                                   "village_id": county.village_ids["a2"], "point_ids": []}
    assert entries[0][5] == apps.clock()  # audit time is the injected clock's
    # The new user signs in with the village role at once.
    assert login(apps.client(), new["username"], new["password"])
    # Only a bureau admin manages users and reads the audit log.
    officer = apps.client()
    login(officer, county.users["officer_a"])
    for path in ("/api/v1/auth/users", "/api/v1/auth/tokens", "/api/v1/auth/audit"):
        assert officer.get(path).status_code == 403
    log = admin.get("/api/v1/auth/audit", params={"target": f"user:{new['username']}"}).json()
    assert [e["action"] for e in log] == ["login", "user.role_change", "user.create"]


def test_integration_tokens_scoped_hashed_revocable_and_expiring(
        apps: Apps, county: County, tsdb_dsn: str) -> None:
    app = apps.app()
    admin = apps.client(app)
    csrf = login(admin, county.users["admin"])
    spec = {"name": f"export-{county.uid}", "role": "village_officer", "village_id": county.village_ids["b1"],
            "days": 30}
    created = admin.post("/api/v1/auth/tokens", json=spec, headers={"X-CSRF-Token": csrf})
    assert created.status_code == 201, created.text
    token, token_id = created.json()["token"], created.json()["id"]
    # Stored only as SHA-256: no column holds the secret.
    stored = rows(tsdb_dsn, "SELECT t::text, token_hash FROM auth_tokens t WHERE id = %s", token_id)[0]
    assert token not in stored[0] and stored[1] == hashlib.sha256(token.encode()).digest()
    assert "token" not in admin.get("/api/v1/auth/tokens").json()[-1]

    bot = apps.client(app)
    bearer = {"Authorization": f"Bearer {token}"}
    me = bot.get(ME, headers=bearer).json()
    assert me["kind"] == "token" and me["scope"]["village_ids"] == [county.village_ids["b1"]]
    places = bot.get("/api/v1/places", headers=bearer).json()
    assert [p["id"] for t in places["townships"] for v in t["villages"] for p in v["points"]] == \
        [county.points["b1"]]
    assert bot.get(f"/api/v1/points/{county.points['a1']}", headers=bearer).status_code == 404
    assert bot.get(f"/api/v1/points/{county.points['b1']}", headers=bearer).status_code == 200
    # Tokens need no CSRF header (no ambient credential), but may not mint credentials.
    assert bot.post("/api/v1/auth/tokens", json=spec, headers=bearer).status_code == 403
    # A bad bearer is refused outright, never a fall-back to a cookie in the same jar.
    assert admin.get(ME, headers={"Authorization": "Bearer yyt_forged"}).status_code == 401

    assert admin.delete(f"/api/v1/auth/tokens/{token_id}", headers={"X-CSRF-Token": csrf}).status_code == 204
    assert bot.get(ME, headers=bearer).status_code == 401
    assert [r[1] for r in audit_rows(tsdb_dsn, f"token:{token_id}")] == ["token.create", "token.revoke"]

    short = admin.post("/api/v1/auth/tokens", json={**spec, "days": 1}, headers={"X-CSRF-Token": csrf}).json()
    assert bot.get(ME, headers={"Authorization": f"Bearer {short['token']}"}).status_code == 200
    apps.clock.advance(days=1)
    assert bot.get(ME, headers={"Authorization": f"Bearer {short['token']}"}).status_code == 401
    assert admin.get(ME).status_code == 401  # the admin's session ended too (8 h)
    csrf = login(admin, county.users["admin"])
    too_long = admin.post("/api/v1/auth/tokens", json={**spec, "days": 400}, headers={"X-CSRF-Token": csrf})
    assert too_long.status_code == 422 and "at most 366 days" in too_long.text


def test_own_password_change_ends_other_sessions(apps: Apps, county: County, tsdb_dsn: str) -> None:
    app = apps.app()
    elsewhere = apps.client(app)
    login(elsewhere, county.users["caregiver"])
    client = apps.client(app)
    csrf = login(client, county.users["caregiver"])
    body = {"current_password": "wrong-current-pw", "new_password": "new-caregiver-pw"}
    assert client.post("/api/v1/auth/password", json=body, headers={"X-CSRF-Token": csrf}).status_code == 401
    body["current_password"] = PASSWORD
    assert client.post("/api/v1/auth/password", json=body, headers={"X-CSRF-Token": csrf}).status_code == 204
    assert client.get(ME).status_code == 200 and elsewhere.get(ME).status_code == 401
    login(apps.client(), county.users["caregiver"], "new-caregiver-pw")
    actions = [(r[1], r[3]) for r in audit_rows(tsdb_dsn, f"user:{county.users['caregiver']}")]
    assert ("password.change", False) in actions and ("password.change", True) in actions


def test_admin_adds_places_and_only_the_admin(apps: Apps, county: County, tsdb_dsn: str) -> None:
    admin = apps.client()
    csrf = login(admin, county.users["admin"])
    h = {"X-CSRF-Token": csrf}
    town = admin.post("/api/v1/places/townships", json={"name": f"新镇{county.uid}"}, headers=h)
    assert town.status_code == 201
    assert admin.post("/api/v1/places/townships", json={"name": f"新镇{county.uid}"}, headers=h).status_code == 409
    village = admin.post("/api/v1/places/villages", json={"township_id": town.json()["id"], "name": "新村"}, headers=h)
    assert village.status_code == 201
    assert admin.post("/api/v1/places/villages", json={"township_id": 99999999, "name": "x"}, headers=h
                      ).status_code == 422
    tree = admin.get("/api/v1/places").json()
    assert {"id": town.json()["id"], "name": f"新镇{county.uid}", "points_without_village": [],
            "villages": [{"id": village.json()["id"], "name": "新村", "points": []}]} in tree["townships"]
    assert [r[1] for r in audit_rows(tsdb_dsn, f"township:{town.json()['id']}")] == ["place.create"]
    officer = apps.client()
    csrf = login(officer, county.users["officer_a"])
    assert officer.post("/api/v1/places/townships", json={"name": f"私镇{county.uid}"},
                        headers={"X-CSRF-Token": csrf}).status_code == 403
