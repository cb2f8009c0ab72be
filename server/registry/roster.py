"""Per-point rosters (card → elder, masked label, eligibility hint) and their retained MQTT publish.

Who is on a point's roster: every ACTIVE elder whose home point it is or whose village it serves
(meal_point_places). Each elder appears with their resident ID card (``ID:<number>``, implicit:
ID-card readers work without enrolment) and, if they have one, their active issued card. The label
is the masked name (张*明); `eligible` is a HINT for the reader's feedback — non-local hukou without
a long-term-residence date is not eligible; otherwise age ≥ ELIGIBLE_AGE [A, the county's 70] on
the day the roster is built, or any category valid that day. The subsidy settlement re-decides
with the full policy; the hint never decides money.

Versions only move forward: a roster is rebuilt whenever a change may affect it; when its content
(hash of the sorted entries) changed, its version becomes max(previous + 1, unix milliseconds), so a
restored database cannot issue a version an agent already holds and ignores. The build and the
version bump happen in the caller's transaction; publishing happens after the commit (so a
published version is always a committed one) as a RETAINED QoS 1 message on
yangyi/v1/<point>/roster with the server's account. A failed publish leaves published_version
behind version; `yangyi-registry publish-rosters --pending` sends those.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from firmware_bridge import cardid, residentid
from firmware_bridge.contract import PointChannel, Roster, RosterEntry, point_topic
from server.errors import ServerError
from server.settings import MqttSettings
from server.subsidy.masking import mask_name

from . import elders_repository as repo

log = logging.getLogger(__name__)

ELIGIBLE_AGE = 70  # [A] the county's rule (DOMAIN.md); a hint only
PUBLISH_TIMEOUT_SECONDS = 10.0
LABEL_MAX = 32


class PublishError(ServerError):
    """The broker could not be reached or did not acknowledge a roster."""


def eligible_hint(row: Mapping[str, Any], today: date) -> bool:
    """The reader's hint: resident (local or long-term) and 70+ or a category valid today."""
    if not row["hukou_local"] and (row["resident_since"] is None or row["resident_since"] > today):
        return False
    born: date = row["birth_date"]
    age = today.year - born.year - int((today.month, today.day) < (born.month, born.day))
    return age >= ELIGIBLE_AGE or bool(row["has_category"])


def entries_from_rows(rows: Iterable[Mapping[str, Any]], today: date) -> list[RosterEntry]:
    """Roster entries (sorted by card id) for roster_rows(): the ID card and the active card of each elder."""
    out: list[RosterEntry] = []
    for row in rows:
        label = mask_name(row["name"])[:LABEL_MAX]
        eligible = eligible_hint(row, today)
        out.append(RosterEntry(card_id=cardid.ID_PREFIX + residentid.parse(row["id_number"]).number,
                               elder_id=row["id"], label=label, eligible=eligible))
        if row["card_id"] is not None:
            out.append(RosterEntry(card_id=row["card_id"], elder_id=row["id"], label=label, eligible=eligible))
    out.sort(key=lambda e: e.card_id)
    return out


def content_hash(entries: Iterable[RosterEntry]) -> str:
    """SHA-256 of the entries in canonical JSON (sorted keys, entries in the given order)."""
    doc = [e.model_dump(mode="json") for e in entries]
    return hashlib.sha256(json.dumps(doc, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def next_version(previous: int | None, now: datetime) -> int:
    """A version greater than `previous` and not below the current unix time in milliseconds."""
    millis = int(now.timestamp() * 1000)
    return millis if previous is None else max(previous + 1, millis)


@dataclass(frozen=True, slots=True)
class Built:
    roster: Roster
    changed: bool


def build(conn: psycopg.Connection[Any], point_id: str, now: datetime, timezone: str = "Asia/Shanghai") -> Built:
    """Build the point's roster in the caller's transaction; bump and store its version if it changed."""
    repo.lock_roster(conn, point_id)
    today = now.astimezone(ZoneInfo(timezone)).date()
    entries = entries_from_rows(repo.roster_rows(conn, point_id, today), today)
    digest = content_hash(entries)
    state = repo.roster_state(conn, point_id, lock=True)
    if state is not None and state["content_hash"] == digest:
        return Built(Roster(point=point_id, version=state["version"], issued_at=state["built_at"],
                            entries=entries), changed=False)
    version = next_version(state["version"] if state else None, now)
    repo.save_roster_state(conn, point_id, version, digest, len(entries), now)
    log.info("roster of %s: version %d, %d entries", point_id, version, len(entries))
    return Built(Roster(point=point_id, version=version, issued_at=now, entries=entries), changed=True)


def rebuild(conn: psycopg.Connection[Any], point_ids: Iterable[str], now: datetime,
            timezone: str = "Asia/Shanghai") -> dict[str, Built]:
    return {p: build(conn, p, now, timezone) for p in sorted(set(point_ids))}


class RosterPublisher:
    """Publishes rosters retained at QoS 1 over one short MQTT connection, waiting for each PUBACK."""

    def __init__(self, settings: MqttSettings, timeout_s: float = PUBLISH_TIMEOUT_SECONDS) -> None:
        self.settings = settings
        self.timeout_s = timeout_s

    def publish(self, rosters: Iterable[Roster]) -> list[str]:
        """Publish each roster; return the point ids acknowledged; raise PublishError if none could be sent."""
        todo = list(rosters)
        if not todo:
            return []
        s = self.settings
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"yangyi-roster-{uuid.uuid4().hex[:12]}",
                             protocol=mqtt.MQTTv5)
        client.username_pw_set(s.username, s.resolved_password())
        connected = threading.Event()
        refused: list[str] = []

        def on_connect(_c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            if reason.is_failure:
                refused.append(str(reason))
            connected.set()

        client.on_connect = on_connect
        try:
            client.connect(s.host, s.port, keepalive=30)
        except OSError as exc:
            raise PublishError(f"cannot reach the broker at {s.host}:{s.port}: {exc}") from exc
        client.loop_start()
        try:
            if not connected.wait(self.timeout_s) or refused:
                raise PublishError(f"broker did not accept the connection: {refused or 'timeout'}")
            infos = [(r.point, client.publish(point_topic(r.point, PointChannel.ROSTER), r.to_bytes(), qos=1,
                                              retain=True)) for r in todo]
            done: list[str] = []
            for point, info in infos:
                info.wait_for_publish(self.timeout_s)
                if info.is_published():
                    done.append(point)
                else:
                    log.warning("roster of %s not acknowledged by the broker", point)
            if not done:
                raise PublishError("no roster was acknowledged by the broker")
            return done
        finally:
            client.disconnect()
            client.loop_stop()


def publish_built(conn: psycopg.Connection[Any], publisher: RosterPublisher, rosters: Iterable[Roster],
                  now: datetime) -> bool:
    """Publish COMMITTED rosters, then record and commit what the broker acknowledged.

    Returns False if any roster was not sent (it stays pending for `publish-rosters --pending`).
    """
    todo = list(rosters)
    if not todo:
        return True
    try:
        done = publisher.publish(todo)
    except PublishError as exc:
        log.warning("rosters of %s not published: %s", ", ".join(r.point for r in todo), exc)
        return False
    versions = {r.point: r.version for r in todo}
    for point in done:
        repo.mark_published(conn, point, versions[point], now)
    conn.commit()
    return len(done) == len(todo)
