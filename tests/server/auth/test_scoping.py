"""Scopes against the real database: each role's places, the SQL filter, and no way for one township
to read another's points or devices through the auth router or the guarded point routers."""

from __future__ import annotations

import re
from typing import Any

import psycopg
import pytest
from fastapi import FastAPI
from psycopg import sql

from server.auth.scopes import Principal, PrincipalKind, Role, scope_for

from .conftest import Apps, County, login, rows

pytestmark = pytest.mark.integration

# Who sees which of the county's points (keys of County.points).
VISIBLE = {
    "admin": {"a1", "a2", "a0", "b1", "x"},
    "viewer": {"a1", "a2", "a0", "b1", "x"},
    "officer_a": {"a1", "a2", "a0"},
    "officer_b": {"b1"},
    "village_a1": {"a1"},
    "caregiver": {"a2", "b1"},
}
SCOPED = ("officer_a", "officer_b", "village_a1", "caregiver")


def principal(county: County, key: str, dsn: str) -> Principal:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT role, township_id, village_id,"
                           " ARRAY(SELECT point_id FROM auth_user_points WHERE user_id = u.id)"
                           " FROM auth_users u WHERE id = %s", (county.user_ids[key],)).fetchone()
    assert row is not None
    return Principal(PrincipalKind.USER, county.user_ids[key], key, Role(row[0]), row[1], row[2], frozenset(row[3]))


@pytest.mark.parametrize("key", sorted(VISIBLE))
def test_sql_filter_selects_exactly_the_scope(county: County, tsdb_dsn: str, key: str) -> None:
    where = scope_for(principal(county, key, tsdb_dsn)).sql_filter("d.point_id")
    query = sql.SQL("SELECT DISTINCT d.point_id FROM devices d WHERE d.point_id LIKE %s AND {}").format(where.sql)
    with psycopg.connect(tsdb_dsn) as conn:
        found = {r[0] for r in conn.execute(query, (f"{county.uid}-%", *where.params))}
    assert found == county.pts(*VISIBLE[key])


@pytest.mark.parametrize("key", sorted(VISIBLE))
def test_places_tree_per_role(apps: Apps, county: County, key: str) -> None:
    client = apps.client()
    login(client, county.users[key])
    tree = client.get("/api/v1/places").json()
    mine = {p["id"] for t in tree["townships"] for v in t["villages"] for p in v["points"]} | {
        p["id"] for t in tree["townships"] for p in t["points_without_village"]} | {
        p["id"] for p in tree["unplaced_points"]}
    assert {p for p in mine if p.startswith(county.uid)} == county.pts(*VISIBLE[key])
    names = {t["name"] for t in tree["townships"]}
    if key == "officer_a":
        assert county.township_names["B"] not in names
        villages = {v["name"] for t in tree["townships"] for v in t["villages"]}
        assert villages == {county.village_names["a1"], county.village_names["a2"]}
    if key == "village_a1":
        assert [v["name"] for t in tree["townships"] for v in t["villages"]] == [county.village_names["a1"]]


def get_paths(app: FastAPI) -> list[str]:
    """Every GET path the application serves, from its OpenAPI description."""
    return [path for path, ops in app.openapi()["paths"].items() if "get" in ops]


def point_routes(app: FastAPI) -> list[str]:
    return [p for p in get_paths(app) if "{point_id}" in p]


PUBLIC_PATHS = {"/health", "/api/v1/alert-ack"}

# Values for every required query parameter a GET route may have (extra ones are ignored).
QUERY = {"day": "2026-06-03", "from": "2026-06-01", "to": "2026-06-03", "month": "2026-06",
         "start": "2026-06-01T00:00:00Z", "end": "2026-06-04T00:00:00Z"}


PATH_DEFAULTS = {"month": "2026-06", "day": "2026-06-03"}


def fill(path: str, values: dict[str, Any]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: str(values.get(m.group(1), PATH_DEFAULTS.get(m.group(1), 1))), path)


@pytest.mark.parametrize("key", SCOPED)
def test_no_endpoint_leaks_points_outside_the_scope(apps: Apps, county: County, key: str) -> None:
    app = apps.app()
    client = apps.client(app)
    login(client, county.users[key])
    inside, outside = county.pts(*VISIBLE[key]), county.all_points - county.pts(*VISIBLE[key])
    routes = point_routes(app)
    # The registry (point, devices), telemetry and check-in routes all sit behind the guard.
    assert {"/api/v1/points/{point_id}", "/api/v1/points/{point_id}/devices",
            "/api/v1/points/{point_id}/readings/latest", "/api/v1/points/{point_id}/diners"} <= set(routes)
    params = QUERY
    for path in routes:
        for point in outside:
            resp = client.get(fill(path, {"point_id": point}), params=params)
            assert resp.status_code == 404, (path, point, resp.text)
            assert resp.json() == {"detail": f"no meal point {point!r}"}  # as for a point that does not exist
        if path.endswith("/stream"):
            continue  # server-sent events never end; outside points were refused above, before streaming
        for point in inside:
            resp = client.get(fill(path, {"point_id": point}), params=params)
            if path.count("{") == 1:
                assert resp.status_code == 200, (path, point, resp.text)
            else:  # another id in the path (an alert, an inspection): that object may not exist, the point does
                assert resp.status_code in (200, 404), (path, point, resp.text)
                assert resp.json() != {"detail": f"no meal point {point!r}"}, (path, point)
    # Every other GET route (auth, places, lists) answers without a trace of the points outside.
    other = county.users["officer_b" if key != "officer_b" else "officer_a"]
    values = {"user_id": county.user_ids["admin"], "token_id": 1}
    others = [p for p in get_paths(app) if "{point_id}" not in p and not p.endswith("/stream")]
    assert {"/api/v1/places", "/api/v1/auth/me", "/api/v1/auth/users", "/api/v1/points"} <= set(others)
    for path in others:
        resp = client.get(fill(path, values), params=params)
        assert resp.status_code in (200, 403, 404), (path, resp.status_code)
        for point in outside:
            assert point not in resp.text, (path, point)
        assert other not in resp.text
        if key in ("officer_a", "village_a1"):
            assert county.township_names["B"] not in resp.text, path


def test_township_officer_reads_own_points_only(apps: Apps, county: County) -> None:
    client = apps.client()
    login(client, county.users["officer_a"])
    own = client.get(f"/api/v1/points/{county.points['a1']}").json()
    assert own["township"] == county.township_names["A"] and own["devices"] == 2
    devices = client.get(f"/api/v1/points/{county.points['a0']}/devices").json()
    assert {d["device_id"] for d in devices} == {"reader1", "gas1"}
    assert client.get(f"/api/v1/points/{county.points['b1']}/devices").status_code == 404
    # The registry's list is scope-aware: the township's points and nothing else.
    listed_points = {p["id"] for p in client.get("/api/v1/points").json()}
    assert {p for p in listed_points if p.startswith(county.uid)} == county.pts("a1", "a2", "a0")
    # The scope-aware list pattern returns the township's devices and nothing else.
    listed = client.get("/api/v1/pattern/devices").json()
    assert {d["point_id"] for d in listed if d["point_id"].startswith(county.uid)} == county.pts("a1", "a2", "a0")
    assert client.get("/api/v1/pattern/unfiltered").status_code == 403


def test_county_roles_read_everything(apps: Apps, county: County) -> None:
    client = apps.client()
    login(client, county.users["viewer"])
    listed = {p["id"] for p in client.get("/api/v1/points").json()}
    assert county.all_points <= listed
    assert client.get(f"/api/v1/points/{county.points['x']}/devices").status_code == 200
    assert client.get("/api/v1/points/no-such-point").status_code == 404  # the registry's own 404
    assert client.get("/api/v1/pattern/unfiltered").status_code == 200


def test_anonymous_gets_nothing(apps: Apps, county: County) -> None:
    client = apps.client()
    paths = get_paths(client.app)
    assert len(paths) >= 12
    opened = []
    for path in paths:
        resp = client.get(fill(path, {"point_id": county.points["a1"]}), params=QUERY, follow_redirects=False)
        if resp.status_code != 401:
            opened.append(path)
            assert county.points["a1"] not in resp.text, path
    # Open on purpose: the health probe and the signed acknowledge link (its token is the credential).
    assert set(opened) <= PUBLIC_PATHS, sorted(set(opened) - PUBLIC_PATHS)


def test_caregiver_binding_and_places_follow_registry_changes(apps: Apps, county: County, tsdb_dsn: str) -> None:
    """A point moved to another township in the registry moves out of the old officer's scope."""
    client = apps.client()
    login(client, county.users["officer_b"])
    assert client.get(f"/api/v1/points/{county.points['x']}").status_code == 404
    with psycopg.connect(tsdb_dsn) as conn:
        conn.execute("UPDATE meal_points SET township = %s, village = %s WHERE id = %s",
                     (county.township_names["B"], f"新村{county.uid}", county.points["x"]))
    assert client.get(f"/api/v1/points/{county.points['x']}").status_code == 200
    tree = client.get("/api/v1/places").json()
    villages = {v["name"]: [p["id"] for p in v["points"]] for t in tree["townships"] for v in t["villages"]}
    assert villages[f"新村{county.uid}"] == [county.points["x"]]  # the trigger added the new village


def test_other_domains_audit_through_the_auditor_inside_the_scope(apps: Apps, county: County, tsdb_dsn: str) -> None:
    client = apps.client(ip="10.3.0.1")
    csrf = login(client, county.users["village_a1"])
    own, other = county.points["a1"], county.points["a2"]
    assert client.post(f"/api/v1/pattern/points/{own}/ack").status_code == 403  # cookie without CSRF
    assert client.post(f"/api/v1/pattern/points/{other}/ack", headers={"X-CSRF-Token": csrf}).status_code == 404
    resp = client.post(f"/api/v1/pattern/points/{own}/ack", headers={"X-CSRF-Token": csrf})
    assert resp.status_code == 200
    entries = rows(tsdb_dsn, "SELECT id, actor, action, ip, detail, time FROM audit_log WHERE target LIKE %s",
                   f"point:{county.uid}-%")
    assert entries == [(resp.json()["audit_id"], f"user:{county.users['village_a1']}", "pattern.ack", "10.3.0.1",
                        {"note": "checked on site"}, apps.clock())]
