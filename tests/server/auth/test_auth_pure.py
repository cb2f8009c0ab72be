"""Pure auth logic: argon2 hashing and rehash, the sliding window, scopes, SQL filters, masking."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from psycopg import sql

from server.auth.errors import AuthInputError
from server.auth.passwords import Passwords
from server.auth.ratelimit import SlidingWindow, combine
from server.auth.scopes import (
    MASKED_CATEGORY,
    Place,
    Principal,
    PrincipalKind,
    Role,
    Scope,
    Sensitive,
    masker_for,
    scope_for,
)

T0 = datetime(2026, 6, 3, 9, 0, tzinfo=UTC)
CHEAP = {"time_cost": 1, "memory_kib": 8, "parallelism": 1}


# ---- passwords ------------------------------------------------------------------------------------


def test_argon2id_hash_verifies_and_rejects() -> None:
    pw = Passwords(**CHEAP)
    stored = pw.hash("correct horse battery")
    assert stored.startswith("$argon2id$v=19$m=8,t=1,p=1$")
    assert "correct horse" not in stored
    assert pw.verify(stored, "correct horse battery")
    assert not pw.verify(stored, "correct horse batterY")
    assert pw.hash("correct horse battery") != stored  # salted


def test_missing_or_malformed_hash_is_a_mismatch_not_a_crash() -> None:
    pw = Passwords(**CHEAP)
    assert pw.verify(None, "yangyi-no-such-account") is False
    assert pw.verify("not-a-hash", "whatever") is False
    assert pw.verify("$2b$12$abcdefghijklmnopqrstuv", "whatever") is False


def test_rehash_needed_when_parameters_change() -> None:
    old = Passwords(**CHEAP)
    stored = old.hash("a long enough pass")
    assert not old.needs_rehash(stored)
    stronger = Passwords(time_cost=2, memory_kib=16, parallelism=1)
    assert stronger.needs_rehash(stored)
    assert stronger.verify(stored, "a long enough pass")  # old hashes still verify
    assert not stronger.needs_rehash(stronger.hash("a long enough pass"))
    assert stronger.needs_rehash("garbage")


def test_password_policy() -> None:
    pw = Passwords(**CHEAP, min_length=10)
    with pytest.raises(AuthInputError, match="at least 10"):
        pw.check_policy("short", "li")
    with pytest.raises(AuthInputError, match="user name"):
        pw.check_policy("zhangsan.officer", "Zhangsan.Officer")
    pw.check_policy("zhangsan.officer!", "zhangsan.officer")


# ---- sliding window -------------------------------------------------------------------------------


def test_window_allows_up_to_limit_minus_one_failures() -> None:
    w = SlidingWindow(3, timedelta(seconds=60))
    assert w.check([], T0).allowed
    assert w.check([T0 - timedelta(seconds=5)] * 2, T0).allowed
    verdict = w.check([T0 - timedelta(seconds=s) for s in (50, 20, 5)], T0)
    assert not verdict.allowed and verdict.retry_after_s == 10  # the one at -50 s ages out at +10 s


def test_window_slides_and_ignores_old_and_future_failures() -> None:
    w = SlidingWindow(2, timedelta(seconds=60))
    failures = [T0 - timedelta(seconds=61), T0 - timedelta(seconds=60), T0 - timedelta(seconds=1),
                T0 + timedelta(seconds=5)]
    assert w.check(failures, T0).allowed  # only -1 s is inside (now-60, now]
    four = [T0 - timedelta(seconds=s) for s in (40, 30, 20, 10)]
    verdict = w.check(four, T0)
    # Three must age out to leave one (below the limit of two): the one at -20 s leaves at +40 s.
    assert not verdict.allowed and verdict.retry_after_s == 40
    assert not w.check(four, T0 + timedelta(seconds=39)).allowed
    assert w.check(four, T0 + timedelta(seconds=40)).allowed


def test_retry_after_is_at_least_one_second() -> None:
    w = SlidingWindow(1, timedelta(seconds=60))
    verdict = w.check([T0 - timedelta(seconds=59, milliseconds=999)], T0)
    assert not verdict.allowed and verdict.retry_after_s == 1


def test_combine_takes_the_longest_wait() -> None:
    w = SlidingWindow(1, timedelta(seconds=60))
    a, b = w.check([T0 - timedelta(seconds=10)], T0), w.check([T0 - timedelta(seconds=40)], T0)
    assert combine(a, b).retry_after_s == 50
    assert combine(w.check([], T0), w.check([], T0)).allowed


# ---- scopes ---------------------------------------------------------------------------------------


def principal(role: Role, **kw: object) -> Principal:
    return Principal(kind=PrincipalKind.USER, id=1, name="u", role=role, **kw)  # type: ignore[arg-type]


A1, A2, A0 = Place("pa1", 10, 100), Place("pa2", 10, 101), Place("pa0", 10, None)
B1, X = Place("pb1", 20, 200), Place("px", None, None)
ALL = (A1, A2, A0, B1, X)


@pytest.mark.parametrize(("role", "kw", "visible"), [
    (Role.BUREAU_ADMIN, {}, {"pa1", "pa2", "pa0", "pb1", "px"}),
    (Role.BUREAU_VIEWER, {}, {"pa1", "pa2", "pa0", "pb1", "px"}),
    (Role.TOWNSHIP_OFFICER, {"township_id": 10}, {"pa1", "pa2", "pa0"}),
    (Role.TOWNSHIP_OFFICER, {"township_id": 20}, {"pb1"}),
    (Role.VILLAGE_OFFICER, {"village_id": 100}, {"pa1"}),
    (Role.CAREGIVER, {"point_ids": frozenset({"pa2", "pb1"})}, {"pa2", "pb1"}),
    # A binding missing for the role fails closed.
    (Role.TOWNSHIP_OFFICER, {}, set()),
    (Role.VILLAGE_OFFICER, {"township_id": 10}, set()),
    (Role.CAREGIVER, {}, set()),
])
def test_each_role_sees_its_places(role: Role, kw: dict[str, object], visible: set[str]) -> None:
    scope = scope_for(principal(role, **kw))
    assert {p.point_id for p in ALL if scope.allows(p)} == visible
    assert scope.empty is (not visible)


def test_tokens_are_scoped_like_their_role() -> None:
    token = Principal(kind=PrincipalKind.TOKEN, id=7, name="export", role=Role.VILLAGE_OFFICER, village_id=200)
    assert {p.point_id for p in ALL if scope_for(token).allows(p)} == {"pb1"}
    assert token.actor == "token:7"


def render(composable: sql.Composable) -> str:
    return composable.as_string(None)


def test_sql_filter_fragments() -> None:
    assert render(Scope(county=True).sql_filter().sql) == "TRUE"
    assert Scope(county=True).sql_filter().params == ()
    assert render(Scope().sql_filter().sql) == "FALSE"
    township = Scope(township_ids=frozenset({20, 10})).sql_filter("d.point_id")
    assert render(township.sql) == (
        '("d"."point_id" IN (SELECT point_id FROM meal_point_places WHERE township_id = ANY(%s)))')
    assert township.params == ([10, 20],)
    mixed = Scope(village_ids=frozenset({5}), point_ids=frozenset({"p2", "p1"})).sql_filter()
    assert render(mixed.sql) == ('("point_id" IN (SELECT point_id FROM meal_point_places WHERE village_id = ANY(%s))'
                                 ' OR "point_id" = ANY(%s))')
    assert mixed.params == ([5], ["p1", "p2"])


# ---- masking --------------------------------------------------------------------------------------

ELDER = {"name": "张三明", "id_number": "110105194912310021", "phone": "13812341234", "category": "低保"}
FIELDS = {"id_number": Sensitive.ID_NUMBER, "phone": Sensitive.PHONE, "category": Sensitive.CATEGORY}


@pytest.mark.parametrize(("role", "id_clear", "phone_clear", "category_clear"), [
    (Role.BUREAU_ADMIN, True, True, True),
    (Role.BUREAU_VIEWER, False, False, False),
    (Role.TOWNSHIP_OFFICER, False, False, True),
    (Role.VILLAGE_OFFICER, False, True, True),
    (Role.CAREGIVER, False, True, False),
])
def test_masking_by_role(role: Role, id_clear: bool, phone_clear: bool, category_clear: bool) -> None:
    out = masker_for(role).record(ELDER, FIELDS)
    assert out["name"] == ELDER["name"]
    assert out["id_number"] == (ELDER["id_number"] if id_clear else "11*************021")
    assert out["phone"] == (ELDER["phone"] if phone_clear else "138****1234")
    assert out["category"] == (ELDER["category"] if category_clear else MASKED_CATEGORY)
    assert ELDER["id_number"] == "110105194912310021"  # the input is not modified


def test_masking_keeps_none_and_ignores_absent_fields() -> None:
    masker = masker_for(Role.BUREAU_VIEWER)
    assert masker.record({"phone": None}, FIELDS) == {"phone": None}
    assert masker.value(Sensitive.CATEGORY, None) is None
