"""`python -m server.auth.cli`: bootstrap and manage users, places and tokens from the server's shell.

    create-user --username admin --role bureau_admin --password-stdin < secret.txt
    create-user --username li --role township_officer --township 城关镇 --generate-password
    create-user --username wang --role caregiver --point p001 --point p002
    create-place --township 城关镇 [--village 东关村]
    set-role / set-password / disable-user / enable-user / list-users
    create-token --name hr-export --role bureau_viewer --days 30      (prints the secret once)
    revoke-token 7
    purge                                                            (ended sessions, old failures)

There is no default password: give one on stdin, type it at the prompt, or let the tool generate one
and print it once. Every change is written to the audit log as actor cli:<os user>.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import secrets
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from pydantic import SecretStr, ValidationError

from server.errors import ConfigError

from . import repository
from .errors import AuthError
from .schemas import TokenCreate, UserCreate, UserUpdate
from .scopes import Role
from .service import AuthService
from .settings import AuthSettings

log = logging.getLogger(__name__)

GENERATED_PASSWORD_BYTES = 15  # 20 URL-safe characters


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except OSError:
        return "cli:unknown"


def _add_binding(p: argparse.ArgumentParser, role_required: bool = True) -> None:
    p.add_argument("--role", required=role_required, choices=[r.value for r in Role])
    p.add_argument("--township", help="township name (township_officer; with --village for village_officer)")
    p.add_argument("--village", help="village name within --township (village_officer)")
    p.add_argument("--point", action="append", default=[], help="meal point id (caregiver; repeatable)")
    p.add_argument("--create-places", action="store_true", help="add the township/village if unknown")


def _add_password(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--password-stdin", action="store_true", help="read the password from stdin's first line")
    group.add_argument("--generate-password", action="store_true", help="generate one and print it once")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m server.auth.cli", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dsn", help="PostgreSQL DSN (default: YANGYI_DB_DSN or the native deploy's)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("create-user", help="create a user")
    p.add_argument("--username", required=True)
    p.add_argument("--display-name")
    _add_binding(p)
    _add_password(p)

    p = sub.add_parser("set-role", help="change a user's role and binding")
    p.add_argument("--username", required=True)
    _add_binding(p)

    p = sub.add_parser("set-password", help="reset a user's password (ends their sessions)")
    p.add_argument("--username", required=True)
    _add_password(p)

    for name in ("disable-user", "enable-user"):
        p = sub.add_parser(name)
        p.add_argument("--username", required=True)

    sub.add_parser("list-users")

    p = sub.add_parser("create-place", help="add a township, or a village of a township")
    p.add_argument("--township", required=True)
    p.add_argument("--village")

    p = sub.add_parser("create-token", help="create an integration token and print its secret once")
    p.add_argument("--name", required=True)
    p.add_argument("--days", type=int)
    _add_binding(p)

    p = sub.add_parser("revoke-token")
    p.add_argument("token_id", type=int)

    p = sub.add_parser("purge", help="delete ended sessions and login failures older than --days")
    p.add_argument("--days", type=int, default=30)
    return parser


def _read_password(args: argparse.Namespace, username: str, out: Callable[[str], None]) -> str:
    if args.generate_password:
        password = secrets.token_urlsafe(GENERATED_PASSWORD_BYTES)
        out(f"generated password for {username}: {password}")
        return password
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass(f"password for {username}: ")
    if getpass.getpass("again: ") != first:
        raise AuthError("the passwords differ")
    return first


def _place_ids(conn: psycopg.Connection[Any], service: AuthService, args: argparse.Namespace, actor: str,
               now: datetime) -> tuple[int | None, int | None]:
    """Township and village ids the role needs, from their names (created on request)."""
    role = Role(args.role)
    if role not in (Role.TOWNSHIP_OFFICER, Role.VILLAGE_OFFICER):
        return None, None
    if not args.township:
        raise AuthError(f"{role} needs --township" + (" and --village" if role is Role.VILLAGE_OFFICER else ""))
    township_id = repository.township_id_by_name(conn, args.township)
    if township_id is None:
        if not args.create_places:
            raise AuthError(f"no township {args.township!r} (add it with create-place or --create-places)")
        township_id = service.create_township(conn, args.township, actor, now)
    if role is Role.TOWNSHIP_OFFICER:
        return township_id, None
    if not args.village:
        raise AuthError("village_officer needs --village")
    village_id = repository.village_id_by_name(conn, args.township, args.village)
    if village_id is None:
        if not args.create_places:
            raise AuthError(f"no village {args.village!r} in {args.township!r}")
        village_id = service.create_village(conn, township_id, args.village, actor, now)
    return None, village_id


def _user_id(conn: psycopg.Connection[Any], username: str) -> int:
    row = repository.user_by_name(conn, username.strip().lower())
    if row is None:
        raise AuthError(f"no user {username!r}")
    return int(row["id"])


def run(conn: psycopg.Connection[Any], service: AuthService, args: argparse.Namespace, now: datetime,
        out: Callable[[str], None] = print) -> None:
    """Carry out one parsed command in the connection's transaction."""
    actor = _actor()
    command = args.command
    if command == "create-user":
        username = args.username.strip().lower()
        township_id, village_id = _place_ids(conn, service, args, actor, now)
        password = _read_password(args, username, out)
        spec = UserCreate(username=username, display_name=args.display_name, password=SecretStr(password),
                          role=Role(args.role), township_id=township_id, village_id=village_id,
                          point_ids=args.point)
        user_id = service.create_user(conn, spec, actor, now)
        out(f"created user {username} (id {user_id}, {args.role})")
    elif command == "set-role":
        township_id, village_id = _place_ids(conn, service, args, actor, now)
        change = UserUpdate(role=Role(args.role), township_id=township_id, village_id=village_id,
                            point_ids=args.point)
        service.update_user(conn, _user_id(conn, args.username), change, actor, now)
        out(f"{args.username} is now {args.role}")
    elif command == "set-password":
        user_id = _user_id(conn, args.username)
        password = _read_password(args, args.username, out)
        service.update_user(conn, user_id, UserUpdate(password=SecretStr(password)), actor, now)
        out(f"password of {args.username} reset")
    elif command in ("disable-user", "enable-user"):
        disabled = command == "disable-user"
        service.update_user(conn, _user_id(conn, args.username), UserUpdate(disabled=disabled), actor, now)
        out(f"{args.username} {'disabled' if disabled else 'enabled'}")
    elif command == "list-users":
        for row in repository.list_users(conn):
            binding = row["township_id"] or row["village_id"] or ",".join(row["point_ids"]) or "-"
            out(f"{row['id']}\t{row['username']}\t{row['role']}\t{binding}\t{'disabled' if row['disabled'] else ''}")
    elif command == "create-place":
        township_id = repository.township_id_by_name(conn, args.township)
        if township_id is None:
            township_id = service.create_township(conn, args.township, actor, now)
            out(f"township {args.township} id {township_id}")
        if args.village:
            village_id = service.create_village(conn, township_id, args.village, actor, now)
            out(f"village {args.village} id {village_id}")
    elif command == "create-token":
        township_id, village_id = _place_ids(conn, service, args, actor, now)
        new = service.create_token(conn, TokenCreate(name=args.name, role=Role(args.role), township_id=township_id,
                                                     village_id=village_id, point_ids=args.point,
                                                     days=args.days), actor, now)
        out(f"token {new.token_id}: {new.secret}")
    elif command == "revoke-token":
        service.revoke_token(conn, args.token_id, actor, now)
        out(f"token {args.token_id} revoked")
    elif command == "purge":
        before = now - timedelta(days=args.days)
        sessions = repository.delete_sessions_ended_before(conn, before)
        failures = repository.delete_login_failures_before(conn, before)
        out(f"deleted {sessions} ended sessions and {failures} login failures")


def main(argv: list[str] | None = None, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> int:
    """Console entry point; 0 on success, 1 when the command was refused, 2 on bad settings."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        from server.settings import load_settings

        dsn = args.dsn or load_settings().db.resolved_dsn()
        service = AuthService(AuthSettings())
    except (ConfigError, ValidationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        with psycopg.connect(dsn) as conn:
            run(conn, service, args, clock())
            conn.commit()
    except (AuthError, ValidationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except psycopg.Error as exc:
        print(f"database error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
