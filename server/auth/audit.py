"""The audit log: who did what to what, from where, when. Other domains call `record` (or the
`Auditor` dependency in deps.py) inside their own transaction, so the entry commits with the change."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from . import repository
from .scopes import Principal, PrincipalKind

log = logging.getLogger(__name__)

ANONYMOUS = "anonymous"


def record(conn: psycopg.Connection[Any], *, actor: Principal | str, action: str, at: datetime,
           target: str | None = None, ip: str | None = None, ok: bool = True,
           detail: Mapping[str, Any] | None = None) -> int:
    """Append one entry; return its id. `action` is dotted, domain first: "user.create", "alert.ack"."""
    if isinstance(actor, Principal):
        name = actor.actor
        user_id = actor.id if actor.kind is PrincipalKind.USER else None
    else:
        name, user_id = actor, None
    entry_id = repository.insert_audit(conn, at=at, actor=name, actor_user_id=user_id, action=action,
                                       target=target, ip=ip, ok=ok, detail=Jsonb(dict(detail or {})))
    log.info("audit %s %s %s ok=%s", name, action, target, ok)
    return entry_id
