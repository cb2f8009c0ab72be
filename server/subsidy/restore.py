"""Rebuild a Settlement from its canonical JSON (a signed snapshot), so it verifies against its hash.

The inverse of Settlement.canonical(): a restored settlement hashes to the same content hash, which
is how a stored snapshot is checked and how later corrections are compared with what was signed.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from firmware_bridge.contract.messages import DinerKind, Meal
from server.subsidy import canonical
from server.subsidy.anomalies import AnomalyFlag, AnomalyKind
from server.subsidy.errors import SnapshotIntegrityError
from server.subsidy.policy import Category, SubsidyPolicy
from server.subsidy.records import AdjustmentLine, Exclusion, ExclusionReason, MealLine, Month, Tap
from server.subsidy.settlement import CategoryTotal, InputsIdentity, Level, Settlement, Total


def _day(text: str | None) -> date | None:
    return date.fromisoformat(text) if text else None


def _meal(text: str | None) -> Meal | None:
    return Meal(text) if text else None


def _category(text: str | None) -> Category | None:
    return Category(text) if text else None


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _tap(d: dict[str, Any]) -> Tap:
    return Tap(d["point"], d["device"], d["seq"], _instant(d["time"]), d["card"], DinerKind(d["kind"]),
               _meal(d["meal"]))


def settlement_from_canonical(data: dict[str, Any]) -> Settlement:
    """The Settlement whose canonical() is `data`."""
    try:
        policies = tuple(
            SubsidyPolicy.model_validate_json(canonical.dumps(p["content"])) for p in data["policies"]
        )
        lines = tuple(
            MealLine(_tap(ln["tap"]), ln["elder"], date.fromisoformat(ln["day"]), Meal(ln["meal"]),
                     Category(ln["category"]), Decimal(ln["amount"]), ln["policy"])
            for ln in data["lines"]
        )
        exclusions = tuple(
            Exclusion(_tap(ex["tap"]), ExclusionReason(ex["reason"]), ex["detail"], ex["elder"], _day(ex["day"]),
                      _meal(ex["meal"]))
            for ex in data["exclusions"]
        )
        adjustments = tuple(
            AdjustmentLine(
                Month.parse(a["origin"]), a["point"],
                (a["tap"]["point"], a["tap"]["device"], a["tap"]["seq"], _instant(a["tap"]["time"])),
                a["elder"], _day(a["day"]), _meal(a["meal"]), _category(a["before"]["category"]),
                _category(a["after"]["category"]), Decimal(a["before"]["amount"]), Decimal(a["after"]["amount"]),
                a["note"],
            )
            for a in data["adjustments"]
        )
        totals = tuple(
            Total(
                Level(t["level"]), t["id"], t["name"], t["township"], t["village"],
                tuple(CategoryTotal(Category(c["category"]), c["meals"], Decimal(c["amount"]))
                      for c in t["by_category"]),
                t["meals"], Decimal(t["amount"]), Decimal(t["adjustments"]),
                tuple((ExclusionReason(e["reason"]), e["taps"]) for e in t["excluded"]), t["taps"],
            )
            for t in data["totals"]
        )
        anomalies = tuple(
            AnomalyFlag(AnomalyKind(a["kind"]), a["point"], _day(a["day"]), _meal(a["meal"]), a["card"], a["detail"],
                        tuple(sorted(a["figures"].items())))
            for a in data["anomalies"]
        )
        return Settlement(
            month=Month.parse(data["month"]),
            policies=policies,
            inputs=InputsIdentity(**data["inputs"]),
            lines=lines,
            exclusions=exclusions,
            adjustments=adjustments,
            totals=totals,
            anomalies=anomalies,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise SnapshotIntegrityError(f"snapshot content is not a settlement: {exc}") from exc


def settlement_from_text(content: str, expected_hash: str) -> Settlement:
    """Parse a snapshot's text and check that the rebuilt settlement hashes to `expected_hash`."""
    restored = settlement_from_canonical(json.loads(content))
    actual = canonical.sha256_hex(restored.canonical())
    if actual != expected_hash:
        raise SnapshotIntegrityError(f"restored snapshot hashes to {actual}, not {expected_hash}")
    return restored
