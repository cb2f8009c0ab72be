"""Roster rules without a database: eligibility hint, entries, hash and forward-only versions."""

from __future__ import annotations

from datetime import UTC, date, datetime

from firmware_bridge.contract import RosterEntry
from server.registry import roster

from .conftest import resident_id

TODAY = date(2026, 6, 3)


def row(**over):
    base = {"id": "E00000001", "name": "欧阳娜娜", "id_number": resident_id("19560604"), "birth_date": date(1956, 6, 4),
            "hukou_local": True, "resident_since": None, "card_id": None, "has_category": False}
    return {**base, **over}


def test_eligible_hint_counts_age_on_the_day_and_residence():
    assert not roster.eligible_hint(row(), TODAY)  # 70 tomorrow
    assert roster.eligible_hint(row(), date(2026, 6, 4))
    assert roster.eligible_hint(row(birth_date=date(1980, 1, 1), has_category=True), TODAY)
    assert not roster.eligible_hint(row(birth_date=date(1940, 1, 1), hukou_local=False), TODAY)
    assert roster.eligible_hint(row(birth_date=date(1940, 1, 1), hukou_local=False,
                                    resident_since=date(2010, 1, 1)), TODAY)
    assert not roster.eligible_hint(row(birth_date=date(1940, 1, 1), hukou_local=False,
                                        resident_since=date(2026, 7, 1)), TODAY)


def test_entries_carry_the_id_card_and_the_active_card_with_a_masked_label():
    r = row(card_id="EM:0012345678", birth_date=date(1940, 1, 1))
    entries = roster.entries_from_rows([r], TODAY)
    assert [(e.card_id, e.label, e.eligible) for e in entries] == [
        ("EM:0012345678", "欧**娜", True), ("ID:" + r["id_number"], "欧**娜", True)]


def test_hash_is_content_only_and_versions_only_move_forward():
    a = [RosterEntry(card_id="EM:0000000001", elder_id="E1", label="张*")]
    b = [RosterEntry(card_id="EM:0000000001", elder_id="E1", label="张*", eligible=False)]
    assert roster.content_hash(a) == roster.content_hash(list(a))
    assert roster.content_hash(a) != roster.content_hash(b)
    now = datetime(2026, 6, 3, 4, 0, tzinfo=UTC)
    millis = int(now.timestamp() * 1000)
    assert roster.next_version(None, now) == millis
    assert roster.next_version(5, now) == millis
    assert roster.next_version(millis + 10, now) == millis + 11  # a clock behind the stored version
