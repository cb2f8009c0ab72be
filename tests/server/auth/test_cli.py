"""The bootstrap CLI against a fresh database: the first admin, places by name, no default password."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from server.auth.cli import main

from ..conftest import scratch_database
from .conftest import Apps, rows

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def fresh_dsn(tsdb_admin_dsn: str) -> Iterator[str]:
    """A database of its own: bootstrapping starts from no users at all."""
    with scratch_database(tsdb_admin_dsn, "auth") as dsn:
        yield dsn


def run(dsn: str, *argv: str, stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    old = sys.stdin, sys.stdout, sys.stderr
    sys.stdin, sys.stdout, sys.stderr = io.StringIO(stdin), out, err
    try:
        code = main(["--dsn", dsn, *argv])
    finally:
        sys.stdin, sys.stdout, sys.stderr = old
    return code, out.getvalue(), err.getvalue()


def test_bootstrap_first_admin_through_python_m(fresh_dsn: str) -> None:
    assert rows(fresh_dsn, "SELECT count(*) FROM auth_users") == [(0,)]
    proc = subprocess.run(
        [sys.executable, "-m", "server.auth.cli", "--dsn", fresh_dsn, "create-user", "--username", "Root.Admin",
         "--role", "bureau_admin", "--password-stdin"],
        input="first-admin-secret\n", capture_output=True, text=True, cwd=ROOT, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert "created user root.admin" in proc.stdout and "first-admin-secret" not in proc.stdout
    (hashed, role), = rows(fresh_dsn, "SELECT password_hash, role FROM auth_users WHERE username = 'root.admin'")
    # The production defaults: argon2id, 64 MiB, 3 passes, 4 lanes.
    assert hashed.startswith("$argon2id$v=19$m=65536,t=3,p=4$") and role == "bureau_admin"
    (actor, action), = rows(fresh_dsn, "SELECT actor, action FROM audit_log WHERE target = 'user:root.admin'")
    assert actor.startswith("cli:") and action == "user.create"


def test_places_by_name_and_generated_password_that_signs_in(fresh_dsn: str, apps: Apps) -> None:
    code, _, err = run(fresh_dsn, "create-user", "--username", "li", "--role", "township_officer",
                       "--township", "城关镇", "--generate-password")
    assert code == 1 and "no township '城关镇'" in err
    code, out, _ = run(fresh_dsn, "create-user", "--username", "li", "--role", "village_officer",
                       "--township", "城关镇", "--village", "东关村", "--create-places", "--generate-password")
    assert code == 0, out
    password = out.split("generated password for li: ")[1].split()[0]
    assert len(password) == 20
    apps.dsn = fresh_dsn
    client = apps.client()
    resp = client.post("/api/v1/auth/login", json={"username": "li", "password": password})
    assert resp.status_code == 200 and resp.json()["role"] == "village_officer"
    places = client.get("/api/v1/places").json()
    assert [(t["name"], [v["name"] for v in t["villages"]]) for t in places["townships"]] == [("城关镇", ["东关村"])]
    code, out, _ = run(fresh_dsn, "set-role", "--username", "li", "--role", "township_officer", "--township", "城关镇")
    assert code == 0 and client.get("/api/v1/auth/me").json()["role"] == "township_officer"


def test_short_password_refused_and_last_admin_kept(fresh_dsn: str) -> None:
    code, _, err = run(fresh_dsn, "create-user", "--username", "weak", "--role", "bureau_viewer",
                       "--password-stdin", stdin="short\n")
    assert code == 1 and "at least 10" in err
    code, _, err = run(fresh_dsn, "create-user", "--username", "wang", "--role", "caregiver", "--point", "nope",
                       "--password-stdin", stdin="caregiver-password\n")
    assert code == 1 and "no meal points ['nope']" in err
    run(fresh_dsn, "create-user", "--username", "solo", "--role", "bureau_admin", "--password-stdin",
        stdin="solo-admin-password\n")
    admins = rows(fresh_dsn, "SELECT username FROM auth_users WHERE role = 'bureau_admin' AND NOT disabled")
    for (name,) in admins[:-1]:
        assert run(fresh_dsn, "disable-user", "--username", name)[0] == 0
    code, _, err = run(fresh_dsn, "disable-user", "--username", admins[-1][0])
    assert code == 1 and "last active bureau admin" in err


def test_token_create_and_revoke(fresh_dsn: str) -> None:
    code, out, _ = run(fresh_dsn, "create-token", "--name", "hr-export", "--role", "bureau_viewer", "--days", "7")
    assert code == 0
    token_id, secret = out.strip().removeprefix("token ").split(": ")
    assert secret.startswith("yyt_")
    assert rows(fresh_dsn, "SELECT count(*) FROM auth_tokens WHERE token_hash = sha256(%s::bytea)", secret.encode()
                ) == [(1,)]
    assert run(fresh_dsn, "revoke-token", token_id)[0] == 0
    assert rows(fresh_dsn, "SELECT revoked_at IS NOT NULL FROM auth_tokens WHERE id = %s", int(token_id)) == [(True,)]
    assert run(fresh_dsn, "revoke-token", "999999")[0] == 1


def test_purge_drops_ended_sessions_and_old_failures(fresh_dsn: str) -> None:
    with psycopg.connect(fresh_dsn) as conn:
        conn.execute("INSERT INTO auth_login_failures (time, username, ip) VALUES"
                     " (now() - interval '40 days', 'old', '10.9.9.9'), (now(), 'new', '10.9.9.9')")
    code, out, _ = run(fresh_dsn, "purge", "--days", "30")
    assert code == 0 and "1 login failures" in out
    assert rows(fresh_dsn, "SELECT username FROM auth_login_failures WHERE ip = '10.9.9.9'") == [("new",)]
