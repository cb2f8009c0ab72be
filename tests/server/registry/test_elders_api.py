"""Elders, categories and cards through the API on the real database; rosters retained on the real broker."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest

from .conftest import make_point, resident_id, retained_roster

pytestmark = pytest.mark.integration


def new_elder(client, point, **over):
    body = {"name": "张三明", "id_number": resident_id("19480315"), "phone": "13812341234",
            "address": "某某县东山镇东山村3组12号", "hukou_local": True, **over}
    r = client.post(f"/api/v1/points/{point}/elders", json=body)
    assert r.status_code == 201, r.text
    return r.json()


@pytest.fixture
def place(tsdb_dsn, unique_point_id):
    township_id, village_id = make_point(tsdb_dsn, unique_point_id, f"镇{unique_point_id}", f"村{unique_point_id}")
    return unique_point_id, township_id, village_id


def test_create_derives_birth_and_sex_and_publishes_the_roster(api_as, place, mqtt_server_account):
    point, _, village = place
    admin = api_as("bureau_admin")
    number = resident_id("19480315", male=False)
    out = new_elder(admin, point, id_number=number[:-1] + number[-1].lower(),
                    categories=[{"category": "dibao", "evidence": "低保证 2024-017", "valid_from": "2024-01-01"}])
    elder = out["elder"]
    assert elder["id_number"] == number.upper()
    assert elder["birth_date"] == "1948-03-15"
    assert elder["sex"] == "female"
    assert elder["village_id"] == village and elder["home_point_id"] == point
    assert elder["categories"][0]["category"] == "dibao"
    assert elder["id"].startswith("E")
    assert out["rosters_published"] is True
    version = out["rosters"][point]
    roster = retained_roster(mqtt_server_account, point)
    assert roster is not None and roster.version == version
    assert [(e.card_id, e.elder_id, e.label, e.eligible) for e in roster.entries] == [
        ("ID:" + number.upper(), elder["id"], "张*明", True)]


def test_bad_id_number_and_duplicates_are_refused(api_as, place):
    point, _, _ = place
    admin = api_as("bureau_admin")
    good = resident_id()
    bad = good[:-1] + ("0" if good[-1] != "0" else "1")
    r = admin.post(f"/api/v1/points/{point}/elders", json={"name": "李四", "id_number": bad, "hukou_local": True})
    assert r.status_code == 422 and "check character" in r.text
    new_elder(admin, point, id_number=good)
    r = admin.post(f"/api/v1/points/{point}/elders", json={"name": "李四", "id_number": good, "hukou_local": True})
    assert r.status_code == 409
    r = admin.post(f"/api/v1/points/{point}/elders",
                   json={"name": "王五", "id_number": resident_id(), "hukou_local": True,
                         "resident_since": "2010-01-01"})
    assert r.status_code == 422


def test_card_lifecycle_keeps_history_and_one_active_card(api_as, place, clock, mqtt_server_account, tsdb_dsn):
    point, _, _ = place
    admin = api_as("bureau_admin")
    elder = new_elder(admin, point)["elder"]
    base = f"/api/v1/points/{point}/elders/{elder['id']}"
    t0 = clock.now
    r = admin.post(f"{base}/cards", json={"card": "0012345678", "format": "em_hex"})
    assert r.status_code == 200, r.text
    assert [c["card_id"] for c in r.json()["elder"]["cards"]] == ["EM:0012345678"]
    v1 = r.json()["rosters"][point]
    # A second card while one is active: refused; replace instead.
    assert admin.post(f"{base}/cards", json={"card": "EM:00000000AA"}).status_code == 409
    # The same card for another elder while still bound: refused.
    other = new_elder(admin, point)["elder"]
    r = admin.post(f"/api/v1/points/{point}/elders/{other['id']}/cards", json={"card": "EM:0012345678"})
    assert r.status_code == 409 and "still bound" in r.text

    clock.now = t0 + timedelta(days=3)
    r = admin.post(f"{base}/cards/EM:0012345678/lost", json={})
    assert r.status_code == 200, r.text
    lost = r.json()
    assert lost["elder"]["cards"][0]["state"] == "lost"
    assert lost["rosters"][point] > v1
    roster = retained_roster(mqtt_server_account, point)
    assert roster is not None and "EM:0012345678" not in {e.card_id for e in roster.entries}

    clock.now = t0 + timedelta(days=4)
    # 3283263748 is 0xC3B2A104: a USB reader printing the UID little-endian as decimal.
    r = admin.post(f"{base}/cards/replace", json={"card": "3283263748", "format": "uid_dec", "reversed": True})
    assert r.status_code == 200, r.text
    cards = r.json()["elder"]["cards"]
    assert [(c["card_id"], c["state"]) for c in cards] == [("EM:0012345678", "lost"), ("UID:04A1B2C3", "active")]
    roster = retained_roster(mqtt_server_account, point)
    assert roster is not None
    assert {e.card_id for e in roster.entries if e.elder_id == elder["id"]} == {
        "UID:04A1B2C3", "ID:" + elder["id_number"]}
    assert roster.version == r.json()["rosters"][point] > lost["rosters"][point]

    # The lost card, once released, may go to someone else; its history stays.
    clock.now = t0 + timedelta(days=5)
    assert admin.post(f"{base}/cards/EM:0012345678/release").status_code == 200
    r = admin.post(f"/api/v1/points/{point}/elders/{other['id']}/cards", json={"card": "EM:0012345678"})
    assert r.status_code == 200, r.text
    with psycopg.connect(tsdb_dsn) as conn:
        rows = conn.execute("SELECT elder_id, state, bound_to IS NULL FROM cards WHERE card_id = 'EM:0012345678'"
                            " ORDER BY bound_from").fetchall()
    assert rows == [(elder["id"], "lost", False), (other["id"], "active", True)]


def test_status_change_removes_the_elder_from_the_roster(api_as, place, mqtt_server_account):
    point, _, _ = place
    admin = api_as("bureau_admin")
    elder = new_elder(admin, point)["elder"]
    r = admin.patch(f"/api/v1/points/{point}/elders/{elder['id']}", json={"status": "deceased"})
    assert r.status_code == 422  # needs a date
    r = admin.patch(f"/api/v1/points/{point}/elders/{elder['id']}",
                    json={"status": "deceased", "status_date": "2026-01-02"})
    assert r.status_code == 200, r.text
    assert r.json()["elder"]["status"] == "deceased"
    roster = retained_roster(mqtt_server_account, point)
    assert roster is not None and roster.entries == []
    assert admin.post(f"/api/v1/points/{point}/elders/{elder['id']}/cards",
                      json={"card": "EM:0000000001"}).status_code == 409


def test_roster_versions_only_move_forward_and_unchanged_content_keeps_the_version(api_as, place):
    point, _, _ = place
    admin = api_as("bureau_admin")
    first = admin.get(f"/api/v1/points/{point}/roster").json()
    again = admin.get(f"/api/v1/points/{point}/roster").json()
    assert again["version"] == first["version"]
    young = new_elder(admin, point, id_number=resident_id("19800101"))
    r = admin.get(f"/api/v1/points/{point}/roster").json()
    assert r["version"] == young["rosters"][point] > first["version"]
    (entry,) = [e for e in r["entries"] if e["elder_id"] == young["elder"]["id"]]
    assert entry["eligible"] is False  # under 70 and no category
    out = admin.post(f"/api/v1/points/{point}/elders/{young['elder']['id']}/categories",
                     json={"category": "disabled", "evidence": "残疾证 X1", "valid_from": "2020-01-01"}).json()
    r = admin.get(f"/api/v1/points/{point}/roster").json()
    assert r["version"] == out["rosters"][point] > young["rosters"][point]
    assert [e["eligible"] for e in r["entries"] if e["elder_id"] == young["elder"]["id"]] == [True]


def test_masking_by_role_and_scope(api_as, place, tsdb_dsn, unique_point_id):
    point, township, village = place
    admin = api_as("bureau_admin")
    elder = new_elder(admin, point,
                      categories=[{"category": "tekun", "evidence": "特困证 9", "valid_from": "2023-05-01"}])["elder"]
    url = f"/api/v1/points/{point}/elders/{elder['id']}"

    viewer = api_as("bureau_viewer").get(url).json()
    assert viewer["name"] == "张*明"
    assert viewer["id_number"] == elder["id_number"][:2] + "*" * 13 + elder["id_number"][-3:]
    assert viewer["phone"] == "138****1234" and viewer["birth_date"] is None
    assert viewer["address"].endswith("东山镇")
    assert viewer["categories"][0]["category"] == "***" and viewer["categories"][0]["evidence"] is None

    officer = api_as("village_officer", village_id=village)
    seen = officer.get(url).json()
    assert seen["name"] == "张三明" and seen["phone"] == "13812341234"
    assert seen["categories"][0]["category"] == "tekun"
    assert "*" in seen["id_number"]
    # A village officer writes inside their village only.
    other_point = unique_point_id + "x"
    make_point(tsdb_dsn, other_point, f"镇{other_point}", f"村{other_point}")
    assert officer.post(f"/api/v1/points/{other_point}/elders",
                        json={"name": "赵六", "id_number": resident_id(), "hukou_local": True}).status_code == 404
    assert officer.post(f"/api/v1/points/{point}/elders",
                        json={"name": "赵六", "id_number": resident_id(), "hukou_local": True}).status_code == 201
    # County-wide routes are for bureau roles; caregivers read but do not write.
    assert officer.get("/api/v1/elders").status_code == 403
    caregiver = api_as("caregiver", point_ids=[point])
    assert caregiver.get(url).status_code == 200
    assert caregiver.post(f"/api/v1/points/{point}/elders",
                          json={"name": "钱七", "id_number": resident_id(), "hukou_local": True}).status_code == 403
    assert api_as("township_officer", township_id=township).get(url).json()["categories"][0]["category"] == "tekun"


def test_create_with_a_card_binds_it_and_lists_it_on_the_roster(api_as, place, mqtt_server_account):
    point, _, _ = place
    admin = api_as("bureau_admin")
    # Cards bind once per database (tests share it): this test's own, via the reader's W26 printing.
    out = new_elder(admin, point, card={"card": "052,22136", "format": "em_w26", "em_high": 0x13})
    assert [(c["card_id"], c["state"]) for c in out["elder"]["cards"]] == [("EM:0013345678", "active")]
    roster = retained_roster(mqtt_server_account, point)
    assert roster is not None and "EM:0013345678" in {e.card_id for e in roster.entries}
    r = admin.post(f"/api/v1/points/{point}/elders", json={
        "name": "周九", "id_number": resident_id(), "hukou_local": True, "card": {"card": "12345"}})
    assert r.status_code == 422 and "format" in r.text
