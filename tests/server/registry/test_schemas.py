"""Boundary models of the registry: card printings to canonical ids, elder validation."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from server.registry.elders_schemas import CardIn, ElderCreate, ElderUpdate

from .conftest import resident_id


@pytest.mark.parametrize(("card", "fmt", "extra", "canonical"), [
    ("EM:0012345678", None, {}, "EM:0012345678"),
    ("em:0012345678", None, {}, None),  # canonical ids are upper-case prefixed; anything else needs a format
    ("0012345678", "em_hex", {}, "EM:0012345678"),
    ("0305419896", "em_dec", {}, "EM:0012345678"),
    ("052,22136", "em_w26", {"em_high": 0x12}, "EM:0012345678"),
    ("UID:04a1b2c3", None, {}, "UID:04A1B2C3"),
    ("3283263748", "uid_dec", {"reversed": True}, "UID:04A1B2C3"),
    ("04:a1:b2:c3", "uid_hex", {}, "UID:04A1B2C3"),
    ("12345", None, {}, None),
    ("GGGGGGGGGG", "em_hex", {}, None),
    ("11010519491231002X", "resident_id", {}, None),  # ID cards are implicit, never bound
])
def test_card_printings_map_to_one_canonical_id(card, fmt, extra, canonical):
    spec = CardIn.model_validate({"card": card, "format": fmt, **extra})
    if canonical is None:
        with pytest.raises(ValueError):
            spec.canonical()
    else:
        assert spec.canonical() == canonical


def test_elder_create_checks_the_id_number_and_residence():
    good = resident_id("19450707")
    assert ElderCreate.model_validate({"name": "张三", "id_number": good.lower(), "hukou_local": True}
                                      ).id_number == good.upper()
    with pytest.raises(ValidationError, match="check character"):
        ElderCreate.model_validate({"name": "张三", "id_number": good[:-1] + ("1" if good[-1] != "1" else "2"),
                                    "hukou_local": True})
    with pytest.raises(ValidationError, match="non-local"):
        ElderCreate.model_validate({"name": "张三", "id_number": good, "hukou_local": True,
                                    "resident_since": "2001-01-01"})
    with pytest.raises(ValidationError):
        ElderCreate.model_validate({"name": "张三", "id_number": good, "hukou_local": True, "extra": 1})
    with pytest.raises(ValidationError, match="blank"):
        ElderCreate.model_validate({"name": "  ", "id_number": good, "hukou_local": True})


def test_elder_update_status_needs_its_date():
    with pytest.raises(ValidationError, match="status_date"):
        ElderUpdate.model_validate({"status": "moved"})
    with pytest.raises(ValidationError):
        ElderUpdate.model_validate({"status": "active", "status_date": "2026-01-01"})
    spec = ElderUpdate.model_validate({"status": "moved", "status_date": "2026-01-01", "phone": None})
    assert spec.model_fields_set == {"status", "status_date", "phone"}
