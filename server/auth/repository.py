"""SQL of auth: places, users, sessions, tokens, login failures and the audit log."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from .scopes import Place, Scope

Conn = psycopg.Connection[Any]

# ---- places ---------------------------------------------------------------------------------------


def insert_township(conn: Conn, name: str) -> int | None:
    """Insert a township; None when the name exists."""
    row = conn.execute("INSERT INTO townships (name) VALUES (%s) ON CONFLICT (name) DO NOTHING RETURNING id",
                       (name,)).fetchone()
    return None if row is None else int(row[0])


def insert_village(conn: Conn, township_id: int, name: str) -> int | None:
    """Insert a village; None when the township already has one of that name."""
    row = conn.execute(
        "INSERT INTO villages (township_id, name) VALUES (%s, %s) ON CONFLICT (township_id, name) DO NOTHING"
        " RETURNING id", (township_id, name)).fetchone()
    return None if row is None else int(row[0])


def township_id_by_name(conn: Conn, name: str) -> int | None:
    row = conn.execute("SELECT id FROM townships WHERE name = %s", (name,)).fetchone()
    return None if row is None else int(row[0])


def village_id_by_name(conn: Conn, township: str, village: str) -> int | None:
    row = conn.execute(
        "SELECT v.id FROM villages v JOIN townships t ON t.id = v.township_id WHERE t.name = %s AND v.name = %s",
        (township, village)).fetchone()
    return None if row is None else int(row[0])


def township_exists(conn: Conn, township_id: int) -> bool:
    return conn.execute("SELECT 1 FROM townships WHERE id = %s", (township_id,)).fetchone() is not None


def village_exists(conn: Conn, village_id: int) -> bool:
    return conn.execute("SELECT 1 FROM villages WHERE id = %s", (village_id,)).fetchone() is not None


def missing_points(conn: Conn, point_ids: Iterable[str]) -> list[str]:
    """The ids among point_ids that are not registered meal points."""
    wanted = sorted(set(point_ids))
    rows = conn.execute("SELECT id FROM meal_points WHERE id = ANY(%s)", (wanted,)).fetchall()
    found = {r[0] for r in rows}
    return [p for p in wanted if p not in found]


def point_place(conn: Conn, point_id: str) -> Place | None:
    row = conn.execute("SELECT point_id, township_id, village_id FROM meal_point_places WHERE point_id = %s",
                       (point_id,)).fetchone()
    return None if row is None else Place(row[0], row[1], row[2])


def points_in_scope(conn: Conn, scope: Scope) -> list[dict[str, Any]]:
    """Meal points in scope with their place ids and names."""
    where = scope.sql_filter("p.id")
    query = sql.SQL(
        "SELECT p.id, p.name, pp.township_id, p.township, pp.village_id, p.village"
        " FROM meal_points p JOIN meal_point_places pp ON pp.point_id = p.id WHERE {} ORDER BY p.id"
    ).format(where.sql)
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, where.params).fetchall()


def townships_in(conn: Conn, ids: Iterable[int] | None) -> list[dict[str, Any]]:
    """Townships by id (None: all)."""
    with conn.cursor(row_factory=dict_row) as cur:
        if ids is None:
            return cur.execute("SELECT id, name FROM townships ORDER BY name").fetchall()
        return cur.execute("SELECT id, name FROM townships WHERE id = ANY(%s) ORDER BY name",
                           (sorted(ids),)).fetchall()


def villages_in(conn: Conn, township_ids: Iterable[int] | None, village_ids: Iterable[int] = ()
                ) -> list[dict[str, Any]]:
    """Villages of the given townships plus the given villages (township_ids None: all)."""
    with conn.cursor(row_factory=dict_row) as cur:
        if township_ids is None:
            return cur.execute("SELECT id, township_id, name FROM villages ORDER BY township_id, name").fetchall()
        return cur.execute(
            "SELECT id, township_id, name FROM villages WHERE township_id = ANY(%s) OR id = ANY(%s)"
            " ORDER BY township_id, name", (sorted(township_ids), sorted(village_ids))).fetchall()


# ---- users ----------------------------------------------------------------------------------------

_USER_COLUMNS = """u.id, u.username, u.display_name, u.password_hash, u.role, u.township_id, u.village_id,
    u.disabled, u.created_at, u.updated_at,
    ARRAY(SELECT point_id FROM auth_user_points WHERE user_id = u.id ORDER BY point_id) AS point_ids"""


def insert_user(conn: Conn, *, username: str, display_name: str | None, password_hash: str, role: str,
                township_id: int | None, village_id: int | None, at: datetime) -> int | None:
    """Insert a user; None when the user name is taken."""
    row = conn.execute(
        "INSERT INTO auth_users (username, display_name, password_hash, role, township_id, village_id,"
        " created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (username) DO NOTHING RETURNING id",
        (username, display_name, password_hash, role, township_id, village_id, at, at)).fetchone()
    return None if row is None else int(row[0])


def set_user_points(conn: Conn, user_id: int, point_ids: Iterable[str]) -> None:
    conn.execute("DELETE FROM auth_user_points WHERE user_id = %s", (user_id,))
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO auth_user_points (user_id, point_id) VALUES (%s, %s)",
                        [(user_id, p) for p in sorted(set(point_ids))])


def user_by_name(conn: Conn, username: str) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"SELECT {_USER_COLUMNS} FROM auth_users u WHERE u.username = %s",
                           (username,)).fetchone()


def user_by_id(conn: Conn, user_id: int) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"SELECT {_USER_COLUMNS} FROM auth_users u WHERE u.id = %s", (user_id,)).fetchone()


def list_users(conn: Conn) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"SELECT {_USER_COLUMNS} FROM auth_users u ORDER BY u.username").fetchall()


def update_user(conn: Conn, user_id: int, at: datetime, **columns: Any) -> None:
    """Set the given columns (names fixed by the caller, values as parameters)."""
    allowed = {"display_name", "password_hash", "role", "township_id", "village_id", "disabled"}
    assert set(columns) <= allowed, set(columns) - allowed
    assignments: list[sql.Composable] = [sql.SQL("{} = %s").format(sql.Identifier(k)) for k in columns]
    assignments.append(sql.SQL("updated_at = %s"))
    conn.execute(sql.SQL("UPDATE auth_users SET {} WHERE id = %s").format(sql.SQL(", ").join(assignments)),
                 (*columns.values(), at, user_id))


def other_active_admins(conn: Conn, user_id: int) -> int:
    row = conn.execute("SELECT count(*) FROM auth_users WHERE role = 'bureau_admin' AND NOT disabled AND id <> %s",
                       (user_id,)).fetchone()
    return int(row[0]) if row else 0


# ---- sessions -------------------------------------------------------------------------------------


def insert_session(conn: Conn, *, key: bytes, user_id: int, csrf_token: str, at: datetime, expires_at: datetime,
                   ip: str | None, user_agent: str | None) -> None:
    conn.execute(
        "INSERT INTO auth_sessions (id_hash, user_id, csrf_token, created_at, last_seen_at, expires_at, ip,"
        " user_agent) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (key, user_id, csrf_token, at, at, expires_at, ip, user_agent))


def session_with_user(conn: Conn, key: bytes) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"SELECT s.csrf_token, s.last_seen_at, s.expires_at, s.revoked_at, {_USER_COLUMNS}"
            " FROM auth_sessions s JOIN auth_users u ON u.id = s.user_id WHERE s.id_hash = %s", (key,)).fetchone()


def touch_session(conn: Conn, key: bytes, at: datetime) -> None:
    conn.execute("UPDATE auth_sessions SET last_seen_at = %s WHERE id_hash = %s", (at, key))


def revoke_session(conn: Conn, key: bytes, at: datetime) -> bool:
    cur = conn.execute("UPDATE auth_sessions SET revoked_at = %s WHERE id_hash = %s AND revoked_at IS NULL",
                       (at, key))
    return cur.rowcount > 0


def revoke_user_sessions(conn: Conn, user_id: int, at: datetime, keep: bytes | None = None) -> int:
    """End the user's sessions, except the one keyed `keep` (the caller's own)."""
    cur = conn.execute("UPDATE auth_sessions SET revoked_at = %s WHERE user_id = %s AND revoked_at IS NULL"
                       " AND id_hash IS DISTINCT FROM %s", (at, user_id, keep))
    return cur.rowcount


def delete_sessions_ended_before(conn: Conn, before: datetime) -> int:
    """Housekeeping: drop sessions that expired or were revoked before `before`."""
    cur = conn.execute("DELETE FROM auth_sessions WHERE expires_at < %s OR revoked_at < %s", (before, before))
    return cur.rowcount


# ---- tokens ---------------------------------------------------------------------------------------

_TOKEN_COLUMNS = """t.id, t.name, t.role, t.township_id, t.village_id, t.created_by, t.created_at, t.expires_at,
    t.revoked_at, t.last_used_at,
    ARRAY(SELECT point_id FROM auth_token_points WHERE token_id = t.id ORDER BY point_id) AS point_ids"""  # noqa: S105 - column list


def insert_token(conn: Conn, *, name: str, token_hash: bytes, role: str, township_id: int | None,
                 village_id: int | None, created_by: int | None, at: datetime, expires_at: datetime) -> int:
    row = conn.execute(
        "INSERT INTO auth_tokens (name, token_hash, role, township_id, village_id, created_by, created_at,"
        " expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (name, token_hash, role, township_id, village_id, created_by, at, expires_at)).fetchone()
    assert row is not None
    return int(row[0])


def set_token_points(conn: Conn, token_id: int, point_ids: Iterable[str]) -> None:
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO auth_token_points (token_id, point_id) VALUES (%s, %s)",
                        [(token_id, p) for p in sorted(set(point_ids))])


def token_by_hash(conn: Conn, token_hash: bytes) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"SELECT {_TOKEN_COLUMNS} FROM auth_tokens t WHERE t.token_hash = %s",
                           (token_hash,)).fetchone()


def token_by_id(conn: Conn, token_id: int) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"SELECT {_TOKEN_COLUMNS} FROM auth_tokens t WHERE t.id = %s", (token_id,)).fetchone()


def list_tokens(conn: Conn) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"SELECT {_TOKEN_COLUMNS} FROM auth_tokens t ORDER BY t.id").fetchall()


def touch_token(conn: Conn, token_id: int, at: datetime) -> None:
    conn.execute("UPDATE auth_tokens SET last_used_at = %s WHERE id = %s", (at, token_id))


def revoke_token(conn: Conn, token_id: int, at: datetime) -> bool:
    cur = conn.execute("UPDATE auth_tokens SET revoked_at = %s WHERE id = %s AND revoked_at IS NULL",
                       (at, token_id))
    return cur.rowcount > 0


# ---- login failures -------------------------------------------------------------------------------


def insert_login_failure(conn: Conn, at: datetime, username: str, ip: str | None) -> None:
    conn.execute("INSERT INTO auth_login_failures (time, username, ip) VALUES (%s, %s, %s)", (at, username, ip))


def login_failures_since(conn: Conn, username: str, ip: str | None, since: datetime
                         ) -> tuple[list[datetime], list[datetime]]:
    """Failure times since `since` for the account and for the address."""
    account = [r[0] for r in conn.execute(
        "SELECT time FROM auth_login_failures WHERE username = %s AND time > %s", (username, since))]
    by_ip: list[datetime] = []
    if ip is not None:
        by_ip = [r[0] for r in conn.execute(
            "SELECT time FROM auth_login_failures WHERE ip = %s AND time > %s", (ip, since))]
    return account, by_ip


def clear_account_failures(conn: Conn, username: str) -> None:
    conn.execute("DELETE FROM auth_login_failures WHERE username = %s", (username,))


def delete_login_failures_before(conn: Conn, before: datetime) -> int:
    return conn.execute("DELETE FROM auth_login_failures WHERE time < %s", (before,)).rowcount


# ---- audit ----------------------------------------------------------------------------------------


def insert_audit(conn: Conn, *, at: datetime, actor: str, actor_user_id: int | None, action: str,
                 target: str | None, ip: str | None, ok: bool, detail: Jsonb) -> int:
    row = conn.execute(
        "INSERT INTO audit_log (time, actor, actor_user_id, action, target, ip, ok, detail)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (at, actor, actor_user_id, action, target, ip, ok, detail)).fetchone()
    assert row is not None
    return int(row[0])


def list_audit(conn: Conn, *, limit: int, action: str | None = None, actor: str | None = None,
               target: str | None = None, before_id: int | None = None) -> list[dict[str, Any]]:
    """Newest first, optionally filtered; page with before_id."""
    where: list[sql.Composable] = [sql.SQL("TRUE")]
    params: list[Any] = []
    for column, value in (("action", action), ("actor", actor), ("target", target)):
        if value is not None:
            where.append(sql.SQL("{} = %s").format(sql.Identifier(column)))
            params.append(value)
    if before_id is not None:
        where.append(sql.SQL("id < %s"))
        params.append(before_id)
    query = sql.SQL("SELECT id, time, actor, actor_user_id, action, target, ip, ok, detail FROM audit_log"
                    " WHERE {} ORDER BY id DESC LIMIT %s").format(sql.SQL(" AND ").join(where))
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, (*params, limit)).fetchall()
