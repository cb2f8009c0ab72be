"""SQL of alerts: alert rows and versions, the timeline, attempts, contacts, edge commands, presence."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from server.auth.scopes import Scope

from .escalation import Attempt, Contact, Endpoint, NoticeKind, Role
from .lifecycle import Acknowledgement, Alert, AlertState, Confirmation, TimelineEvent
from .rules import ConditionKey, Hazard, Severity

Conn = psycopg.Connection[Any]
NOTIFY_CHANNEL = "yangyi_alerts"
NOTIFY_MAX_BYTES = 7900  # PostgreSQL refuses payloads of 8000 bytes or more

_ALERT_COLUMNS = (
    "id", "point_id", "device_id", "condition", "hazard", "severity", "peak_severity", "state", "source",
    "opened_at", "last_seen", "count", "last_value", "unit", "threshold", "message", "active",
    "clear_pending_since", "cleared_at", "ack_by", "ack_at", "ack_channel", "confirmed_by", "confirmed_at",
    "confirm_note", "resolved_at", "resolved_by", "previous_id", "corroborated_at",
)
ALERT_SELECT = ", ".join(_ALERT_COLUMNS) + ", version"


# ---- alerts ---------------------------------------------------------------------------------------


def alert_from_row(r: Sequence[Any]) -> tuple[Alert, int]:
    """An Alert and its version from a row selected with ALERT_SELECT."""
    (aid, point, device, cond, hazard, sev, peak, state, source, opened, last_seen, count, value, unit,
     threshold, message, active, pending, cleared, ack_by, ack_at, ack_ch, conf_by, conf_at, conf_note,
     resolved_at, resolved_by, previous, corroborated_at, version) = r
    alert = Alert(
        id=aid, key=ConditionKey(point, device, cond), hazard=Hazard(hazard), severity=Severity(sev),
        peak_severity=Severity(peak), opened_at=opened, last_seen=last_seen, state=AlertState(state),
        source=source, count=count, last_value=value, unit=unit, threshold=threshold, message=message,
        active=active, clear_pending_since=pending, cleared_at=cleared,
        ack=Acknowledgement(ack_by, ack_at, ack_ch) if ack_by is not None else None,
        confirmation=Confirmation(conf_by, conf_at, conf_note) if conf_by is not None else None,
        resolved_at=resolved_at, resolved_by=resolved_by, previous_id=previous, corroborated_at=corroborated_at,
    )
    return alert, int(version)


def _values(a: Alert) -> tuple[Any, ...]:
    return (
        a.id, a.key.point, a.key.device, a.key.condition, a.hazard.value, a.severity.value,
        a.peak_severity.value, a.state.value, a.source, a.opened_at, a.last_seen, a.count, a.last_value, a.unit,
        a.threshold, a.message, a.active, a.clear_pending_since, a.cleared_at,
        a.ack.by if a.ack else None, a.ack.at if a.ack else None, a.ack.channel if a.ack else None,
        a.confirmation.by if a.confirmation else None, a.confirmation.at if a.confirmation else None,
        a.confirmation.note if a.confirmation else None, a.resolved_at, a.resolved_by, a.previous_id,
        a.corroborated_at,
    )


def insert_alert(conn: Conn, a: Alert) -> bool:
    """Insert a new alert (version 1); False when another unresolved alert holds its condition."""
    cols = ", ".join(_ALERT_COLUMNS)
    marks = ", ".join(["%s"] * len(_ALERT_COLUMNS))
    row = conn.execute(
        f"INSERT INTO alerts ({cols}) VALUES ({marks}) ON CONFLICT DO NOTHING RETURNING version",
        _values(a)).fetchone()
    return row is not None


def update_alert(conn: Conn, a: Alert, expected_version: int) -> int | None:
    """Write the alert if nobody changed it since `expected_version`; the new version, or None."""
    sets = ", ".join(f"{c} = %s" for c in _ALERT_COLUMNS[1:])
    row = conn.execute(
        f"UPDATE alerts SET {sets}, version = version + 1, updated_at = now()"
        " WHERE id = %s AND version = %s RETURNING version",
        (*_values(a)[1:], a.id, expected_version)).fetchone()
    return None if row is None else int(row[0])


def get_alert(conn: Conn, alert_id: str, *, for_update: bool = False) -> tuple[Alert, int] | None:
    lock = " FOR UPDATE" if for_update else ""
    row = conn.execute(f"SELECT {ALERT_SELECT} FROM alerts WHERE id = %s{lock}", (alert_id,)).fetchone()
    return None if row is None else alert_from_row(row)


def active_alert(conn: Conn, key: ConditionKey) -> tuple[Alert, int] | None:
    row = conn.execute(
        f"SELECT {ALERT_SELECT} FROM alerts WHERE point_id = %s AND device_id = %s AND condition = %s"
        " AND state <> 'resolved'", (key.point, key.device, key.condition)).fetchone()
    return None if row is None else alert_from_row(row)


def unresolved(conn: Conn, point: str = "+") -> list[tuple[Alert, int]]:
    where = "state <> 'resolved'" + ("" if point == "+" else " AND point_id = %s")
    params: tuple[Any, ...] = () if point == "+" else (point,)
    rows = conn.execute(f"SELECT {ALERT_SELECT} FROM alerts WHERE {where} ORDER BY opened_at", params)
    return [alert_from_row(r) for r in rows.fetchall()]


def open_alerts(conn: Conn, point: str = "+") -> list[Alert]:
    """Alerts nobody has acknowledged yet (the escalation's work list)."""
    where = "state = 'open'" + ("" if point == "+" else " AND point_id = %s")
    params: tuple[Any, ...] = () if point == "+" else (point,)
    rows = conn.execute(f"SELECT {ALERT_SELECT} FROM alerts WHERE {where} ORDER BY opened_at", params)
    return [alert_from_row(r)[0] for r in rows.fetchall()]


def unresolved_versions(conn: Conn, point: str = "+") -> dict[str, int]:
    where = "state <> 'resolved'" + ("" if point == "+" else " AND point_id = %s")
    params: tuple[Any, ...] = () if point == "+" else (point,)
    return {r[0]: int(r[1]) for r in conn.execute(f"SELECT id, version FROM alerts WHERE {where}",
                                                    params).fetchall()}


def last_resolved(conn: Conn, since: datetime, point: str = "+") -> list[tuple[Alert, int]]:
    """The newest resolved alert of each condition since `since` (so a recurrence names it)."""
    where = "state = 'resolved' AND resolved_at >= %s" + ("" if point == "+" else " AND point_id = %s")
    params: tuple[Any, ...] = (since,) if point == "+" else (since, point)
    rows = conn.execute(
        f"SELECT DISTINCT ON (point_id, device_id, condition) {ALERT_SELECT} FROM alerts WHERE {where}"
        " ORDER BY point_id, device_id, condition, resolved_at DESC", params)
    return [alert_from_row(r) for r in rows.fetchall()]


def insert_events(conn: Conn, events: Iterable[TimelineEvent]) -> None:
    rows = [(e.alert_id, e.at, e.kind.value, e.actor, e.channel, Jsonb(dict(e.detail))) for e in events]
    if rows:
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO alert_events (alert_id, time, kind, actor, channel, detail)"
                            " VALUES (%s, %s, %s, %s, %s, %s)", rows)


def notify(conn: Conn, payload: dict[str, Any]) -> None:
    """Announce a change to other processes when the transaction commits."""
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str)
    if len(text.encode()) > NOTIFY_MAX_BYTES:
        payload = {k: v for k, v in payload.items() if k not in ("message", "text")}
        text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str)
    conn.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, text))


def alert_notice(a: Alert, version: int, events: Sequence[TimelineEvent]) -> dict[str, Any]:
    """The NOTIFY payload of an alert change."""
    return {
        "type": "alert", "alert_id": a.id, "point_id": a.key.point, "device_id": a.key.device,
        "condition": a.key.condition, "state": a.state.value, "severity": a.severity.value,
        "hazard": a.hazard.value, "active": a.active, "version": version,
        "events": [e.kind.value for e in events], "message": a.message[:500],
    }


# ---- attempts ---------------------------------------------------------------------------------------


def insert_attempts(conn: Conn, attempts: Iterable[Attempt]) -> None:
    rows = [(a.alert_id, a.person_id, a.role.value, a.channel, a.address, a.kind.value, a.round, a.attempt, a.at,
             a.ok, a.status, (a.response or "")[:2000] or None, (a.error or "")[:2000] or None) for a in attempts]
    if rows:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO alert_notifications (alert_id, person_id, role, channel, address, kind, round,"
                " attempt, time, ok, status, response, error) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
                " %s, %s, %s)", rows)


def attempts(conn: Conn, alert_ids: Sequence[str], person_ids: Sequence[str], since: datetime) -> list[Attempt]:
    """Every attempt for these alerts, and every attempt to these people since `since` (rate limit)."""
    rows = conn.execute(
        "SELECT alert_id, person_id, role, channel, address, kind, round, attempt, time, ok, status, response,"
        " error FROM alert_notifications WHERE alert_id = ANY(%s) OR (person_id = ANY(%s) AND time >= %s)"
        " ORDER BY time, id", (list(alert_ids), list(person_ids), since)).fetchall()
    return [Attempt(r[0], r[1], Role(r[2]), r[3], r[4], NoticeKind(r[5]), r[6], r[7], r[8], r[9], r[10], r[11],
                    r[12]) for r in rows]


# ---- contacts ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredContact:
    contact: Contact
    quiet_hours: bool


def _contact(r: dict[str, Any]) -> StoredContact:
    endpoints = tuple(Endpoint(str(e["channel"]), str(e["address"])) for e in (r["endpoints"] or []))
    return StoredContact(Contact(str(r["id"]), r["name"], Role(r["role"]), endpoints, r["mobile"]),
                         bool(r["quiet_hours"]))


def contacts_for_point(conn: Conn, point_id: str) -> list[StoredContact]:
    """The point's caregivers, its village's safety officers and its township's leaders (active ones)."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT c.id, c.name, c.role, c.mobile, c.endpoints, c.quiet_hours FROM alert_contacts c"
            " WHERE c.active AND ("
            "  (c.role = 'caregiver' AND c.id IN (SELECT contact_id FROM alert_contact_points WHERE point_id = %s))"
            "  OR (c.role = 'village_officer' AND c.village_id ="
            "      (SELECT village_id FROM meal_point_places WHERE point_id = %s))"
            "  OR (c.role = 'township_leader' AND c.township_id ="
            "      (SELECT township_id FROM meal_point_places WHERE point_id = %s)))"
            " ORDER BY c.id", (point_id, point_id, point_id)).fetchall()
    return [_contact(r) for r in rows]


def contacts_for_points(conn: Conn, point_ids: Sequence[str]) -> dict[str, list[StoredContact]]:
    """contacts_for_point for many points in one query."""
    out: dict[str, list[StoredContact]] = {p: [] for p in point_ids}
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT p.point_id, c.id, c.name, c.role, c.mobile, c.endpoints, c.quiet_hours"
            " FROM unnest(%s::text[]) AS p(point_id)"
            " LEFT JOIN meal_point_places mp ON mp.point_id = p.point_id"
            " JOIN alert_contacts c ON c.active AND ("
            "  (c.role = 'caregiver' AND EXISTS (SELECT 1 FROM alert_contact_points cp"
            "      WHERE cp.contact_id = c.id AND cp.point_id = p.point_id))"
            "  OR (c.role = 'village_officer' AND c.village_id = mp.village_id)"
            "  OR (c.role = 'township_leader' AND c.township_id = mp.township_id))"
            " ORDER BY p.point_id, c.id", (list(point_ids),)).fetchall()
    for r in rows:
        out[r["point_id"]].append(_contact(r))
    return out


CONTACT_SELECT = (
    "SELECT c.id, c.name, c.role, c.township_id, c.village_id, c.user_id, c.mobile, c.endpoints, c.quiet_hours,"
    " c.active, c.created_at, c.updated_at,"
    " coalesce((SELECT array_agg(point_id ORDER BY point_id) FROM alert_contact_points WHERE contact_id = c.id),"
    " '{}') AS point_ids FROM alert_contacts c"
)


def list_contacts(conn: Conn, point_id: str | None = None) -> list[dict[str, Any]]:
    where, params = "", ()
    if point_id is not None:
        ids = [int(c.contact.person_id) for c in contacts_for_point(conn, point_id)]
        where, params = " WHERE c.id = ANY(%s)", (ids,)  # type: ignore[assignment]
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"{CONTACT_SELECT}{where} ORDER BY c.id", params).fetchall()


def get_contact(conn: Conn, contact_id: int) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"{CONTACT_SELECT} WHERE c.id = %s", (contact_id,)).fetchone()


def insert_contact(conn: Conn, fields: dict[str, Any], point_ids: Sequence[str]) -> int:
    row = conn.execute(
        "INSERT INTO alert_contacts (name, role, township_id, village_id, user_id, mobile, endpoints, quiet_hours,"
        " active) VALUES (%(name)s, %(role)s, %(township_id)s, %(village_id)s, %(user_id)s, %(mobile)s,"
        " %(endpoints)s, %(quiet_hours)s, %(active)s) RETURNING id",
        {**fields, "endpoints": Jsonb(fields["endpoints"])}).fetchone()
    assert row is not None
    set_contact_points(conn, int(row[0]), point_ids)
    return int(row[0])


def update_contact(conn: Conn, contact_id: int, fields: dict[str, Any]) -> bool:
    if not fields:
        return get_contact(conn, contact_id) is not None
    values = {k: Jsonb(v) if k == "endpoints" else v for k, v in fields.items()}
    sets = sql.SQL(", ").join(sql.SQL("{} = {}").format(sql.Identifier(k), sql.Placeholder(k)) for k in values)
    query = sql.SQL("UPDATE alert_contacts SET {}, updated_at = now() WHERE id = %(id)s RETURNING id").format(sets)
    return conn.execute(query, {**values, "id": contact_id}).fetchone() is not None


def set_contact_points(conn: Conn, contact_id: int, point_ids: Sequence[str]) -> None:
    conn.execute("DELETE FROM alert_contact_points WHERE contact_id = %s", (contact_id,))
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO alert_contact_points (contact_id, point_id) VALUES (%s, %s)",
                        [(contact_id, p) for p in sorted(set(point_ids))])


def delete_contact(conn: Conn, contact_id: int) -> bool:
    return conn.execute("DELETE FROM alert_contacts WHERE id = %s RETURNING id", (contact_id,)).fetchone() is not None


def contact_ids_of_user(conn: Conn, user_id: int) -> list[str]:
    return [str(r[0]) for r in conn.execute("SELECT id FROM alert_contacts WHERE user_id = %s AND active",
                                            (user_id,)).fetchall()]


# ---- points and devices -----------------------------------------------------------------------------


def point_names(conn: Conn, point_ids: Sequence[str]) -> dict[str, str]:
    rows = conn.execute(
        "SELECT id, coalesce(nullif(btrim(name), ''), id) FROM meal_points"
        " WHERE id = ANY(%s)", (list(point_ids),)).fetchall()
    return {r[0]: r[1] for r in rows}


def known_devices(conn: Conn, point: str = "+") -> list[tuple[str, str, str | None, str | None, int | None,
                                                                datetime | None]]:
    where = "" if point == "+" else " WHERE point_id = %s"
    params: tuple[Any, ...] = () if point == "+" else (point,)
    rows = conn.execute("SELECT point_id, device_id, role, state, heartbeat_s, greatest(last_seen, status_ts)"
                        f" FROM devices{where}", params).fetchall()
    return [(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]


# ---- commands to the edge -------------------------------------------------------------------------


def enqueue_command(conn: Conn, cmd_id: str, alert_id: str | None, point_id: str, payload: bytes,
                    at: datetime) -> None:
    conn.execute("INSERT INTO alert_commands (cmd_id, alert_id, point_id, payload, created_at)"
                 " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (cmd_id) DO NOTHING",
                 (cmd_id, alert_id, point_id, payload, at))


def pending_commands(conn: Conn, point: str = "+", limit: int = 100) -> list[tuple[int, str, str, bytes]]:
    where = "sent_at IS NULL" + ("" if point == "+" else " AND point_id = %s")
    params: tuple[Any, ...] = (limit,) if point == "+" else (point, limit)
    rows = conn.execute(f"SELECT id, cmd_id, point_id, payload FROM alert_commands WHERE {where}"
                        " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED", params).fetchall()
    return [(int(r[0]), r[1], r[2], bytes(r[3])) for r in rows]


def mark_command(conn: Conn, command_id: int, sent_at: datetime | None, error: str | None) -> None:
    conn.execute("UPDATE alert_commands SET sent_at = %s, tries = tries + 1, last_error = %s WHERE id = %s",
                 (sent_at, error, command_id))


# ---- in-app presence ----------------------------------------------------------------------------------


def touch_presence(conn: Conn, session_id: str, person_id: str, at: datetime) -> None:
    conn.execute("INSERT INTO alert_inapp_sessions (session_id, person_id, seen_at) VALUES (%s, %s, %s)"
                 " ON CONFLICT (session_id) DO UPDATE SET seen_at = excluded.seen_at", (session_id, person_id, at))


def drop_presence(conn: Conn, session_id: str) -> None:
    conn.execute("DELETE FROM alert_inapp_sessions WHERE session_id = %s", (session_id,))


def present(conn: Conn, person_id: str, since: datetime) -> int:
    row = conn.execute("SELECT count(*) FROM alert_inapp_sessions WHERE person_id = %s AND seen_at >= %s",
                       (person_id, since)).fetchone()
    return int(row[0]) if row else 0


# ---- API queries ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AlertFilter:
    point_id: str | None = None
    states: tuple[str, ...] = ()
    hazard: str | None = None
    min_severity: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100


_RANK_SQL = "CASE {} WHEN 'info' THEN 0 WHEN 'warning' THEN 1 WHEN 'alarm' THEN 2 ELSE 3 END"


def list_alerts(conn: Conn, f: AlertFilter, scope: Scope) -> list[tuple[Alert, int]]:
    parts: list[sql.Composable] = []
    params: list[Any] = []
    scope_sql = scope.sql_filter("point_id")
    parts.append(scope_sql.sql)
    params.extend(scope_sql.params)
    if f.point_id is not None:
        parts.append(sql.SQL("point_id = %s"))
        params.append(f.point_id)
    if f.states:
        parts.append(sql.SQL("state = ANY(%s)"))
        params.append(list(f.states))
    if f.hazard is not None:
        parts.append(sql.SQL("hazard = %s"))
        params.append(f.hazard)
    if f.min_severity is not None:
        parts.append(sql.SQL(_RANK_SQL.format("peak_severity") + " >= " + _RANK_SQL.format("%s")))
        params.append(f.min_severity)
    if f.since is not None:
        parts.append(sql.SQL("opened_at >= %s"))
        params.append(f.since)
    if f.until is not None:
        parts.append(sql.SQL("opened_at < %s"))
        params.append(f.until)
    query = sql.SQL("SELECT " + ALERT_SELECT + " FROM alerts WHERE {} ORDER BY opened_at DESC LIMIT %s").format(
        sql.SQL(" AND ").join(parts))
    params.append(f.limit)
    return [alert_from_row(r) for r in conn.execute(query, params).fetchall()]


def timeline(conn: Conn, alert_id: str) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT time, kind, actor, channel, detail FROM alert_events WHERE alert_id = %s"
                           " ORDER BY time, id", (alert_id,)).fetchall()


def notifications(conn: Conn, alert_id: str) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT time, person_id, role, channel, address, kind, round, attempt, ok, status, error"
            " FROM alert_notifications WHERE alert_id = %s ORDER BY time, id", (alert_id,)).fetchall()
