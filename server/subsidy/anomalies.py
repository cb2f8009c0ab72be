"""Anomaly flags on a settled month: prompts for the bureau to look, never reasons to exclude a tap.

Kinds and their default thresholds (all [A], settings in AnomalySettings):

- camera_excess      subsidised card taps (deliveries excluded: they never pass the camera) in a
                     point's meal slot exceed the camera's count by more than `camera_excess_min`
                     (2) AND by more than `camera_excess_ratio` (10 %) of the camera count.
- two_points         one card tapped at two or more meal points on the same local date.
- repeated_taps      one elder's card tapped `repeat_taps_min` (3) or more times for one meal slot.
- spike              a day's subsidised meals at a point above `spike_factor` (1.5) × the point's
                     median over its serving days and at least `spike_min_extra` (5) meals above it,
                     judged once the point served on `spike_min_days` (5) days; the flag says when
                     the day is among the month's last `spike_tail_days` (5).
- roster_same_set    the same set of elders (at least `roster_min_size`, 5) subsidised on at least
                     `roster_min_days` (10) days that make at least `roster_same_share` (80 %) of
                     the point's serving days: real diners come and go.
- roster_constant_count   (only when roster_same_set did not fire) daily counts at a point that vary
                     by at most `roster_count_spread` (1) over at least `roster_min_days` serving days
                     with at least `roster_min_size` meals each.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, tzinfo
from decimal import Decimal
from enum import StrEnum
from statistics import median
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from firmware_bridge.contract.messages import DinerKind, Meal
from server.subsidy.records import CameraCount, Exclusion, ExclusionReason, MealLine, Tap
from server.vision.crosscheck import DEFAULT_EXCESS_RATIO, DEFAULT_MIN_EXCESS, checkins_exceed

MEAL_ORDER = {m: i for i, m in enumerate(Meal)}


class AnomalyKind(StrEnum):
    CAMERA_EXCESS = "camera_excess"
    TWO_POINTS = "two_points"
    REPEATED_TAPS = "repeated_taps"
    SPIKE = "spike"
    ROSTER_SAME_SET = "roster_same_set"
    ROSTER_CONSTANT_COUNT = "roster_constant_count"


KIND_ORDER = {k: i for i, k in enumerate(AnomalyKind)}


class AnomalySettings(BaseModel):
    """Thresholds of the anomaly flags (see the module docstring)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    camera_excess_min: int = Field(default=DEFAULT_MIN_EXCESS, ge=0)
    camera_excess_ratio: Decimal = Field(default=DEFAULT_EXCESS_RATIO, ge=0)
    repeat_taps_min: int = Field(default=3, ge=2)
    spike_factor: Decimal = Field(default=Decimal("1.5"), gt=1)
    spike_min_extra: int = Field(default=5, ge=1)
    spike_min_days: int = Field(default=5, ge=2)
    spike_tail_days: int = Field(default=5, ge=0, le=31)
    roster_min_days: int = Field(default=10, ge=2)
    roster_min_size: int = Field(default=5, ge=1)
    roster_same_share: Decimal = Field(default=Decimal("0.8"), gt=0, le=1)
    roster_count_spread: int = Field(default=1, ge=0)


@dataclass(frozen=True, slots=True)
class AnomalyFlag:
    kind: AnomalyKind
    point_id: str
    day: date | None = None
    meal: Meal | None = None
    card_id: str | None = None
    detail: str = ""
    figures: tuple[tuple[str, str], ...] = ()

    def sort_key(self) -> tuple[Any, ...]:
        return (
            self.point_id,
            KIND_ORDER[self.kind],
            self.day or date.min,
            MEAL_ORDER[self.meal] if self.meal else -1,
            self.card_id or "",
        )

    def canonical(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "point": self.point_id,
            "day": self.day,
            "meal": self.meal,
            "card": self.card_id,
            "detail": self.detail,
            "figures": dict(self.figures),
        }


def camera_excess(
    lines: Sequence[MealLine], camera: Sequence[CameraCount], settings: AnomalySettings
) -> list[AnomalyFlag]:
    """Meal slots where subsidised card taps exceed the camera's head count."""
    taps: Counter[tuple[str, date, Meal]] = Counter(
        (ln.tap.point_id, ln.day, ln.meal) for ln in lines if ln.tap.kind is DinerKind.TAP
    )
    flags = []
    for c in camera:
        n = taps.get((c.point_id, c.day, c.meal), 0)
        # The one definition, shared with the camera API (server.vision.crosscheck).
        if checkins_exceed(n, c.count, settings.camera_excess_min, settings.camera_excess_ratio):
            flags.append(
                AnomalyFlag(
                    AnomalyKind.CAMERA_EXCESS,
                    c.point_id,
                    c.day,
                    c.meal,
                    detail=f"{n} subsidised taps, camera counted {c.count}",
                    figures=(("camera", str(c.count)), ("taps", str(n))),
                )
            )
    return flags


def two_points(taps: Sequence[Tap], tz: tzinfo) -> list[AnomalyFlag]:
    """Cards seen at two or more points on one local date (every tap, subsidised or not)."""
    seen: dict[tuple[str, date], set[str]] = defaultdict(set)
    for t in taps:
        seen[(t.card_id, t.time.astimezone(tz).date())].add(t.point_id)
    flags = []
    for (card, day), where in seen.items():
        if len(where) > 1:
            ordered = sorted(where)
            for point in ordered:
                flags.append(
                    AnomalyFlag(
                        AnomalyKind.TWO_POINTS,
                        point,
                        day,
                        card_id=card,
                        detail="same card at " + ", ".join(ordered),
                        figures=(("points", str(len(ordered))),),
                    )
                )
    return flags


def repeated_taps(exclusions: Sequence[Exclusion], settings: AnomalySettings) -> list[AnomalyFlag]:
    """An elder's card tapped many times for one meal slot."""
    repeats: Counter[tuple[str, str, date, Meal]] = Counter()
    for ex in exclusions:
        if ex.reason is ExclusionReason.REPEAT and ex.day is not None and ex.meal is not None:
            repeats[(ex.tap.point_id, ex.tap.card_id, ex.day, ex.meal)] += 1
    flags = []
    for (point, card, day, meal), n in repeats.items():
        if n + 1 >= settings.repeat_taps_min:
            flags.append(
                AnomalyFlag(
                    AnomalyKind.REPEATED_TAPS,
                    point,
                    day,
                    meal,
                    card,
                    detail=f"{n + 1} taps for one meal",
                    figures=(("taps", str(n + 1)),),
                )
            )
    return flags


def _daily(lines: Sequence[MealLine]) -> dict[str, dict[date, list[str]]]:
    per: dict[str, dict[date, list[str]]] = defaultdict(lambda: defaultdict(list))
    for ln in lines:
        per[ln.tap.point_id][ln.day].append(ln.elder_id)
    return per


def spikes(lines: Sequence[MealLine], month_last_day: date, settings: AnomalySettings) -> list[AnomalyFlag]:
    """Days far above the point's median of subsidised meals, noting the month's last days."""
    flags = []
    for point, days in _daily(lines).items():
        if len(days) < settings.spike_min_days:
            continue
        counts = {d: len(elders) for d, elders in days.items()}
        mid = Decimal(str(median(counts.values())))
        for day, n in counts.items():
            if n > settings.spike_factor * mid and n - mid >= settings.spike_min_extra:
                tail = (month_last_day - day).days < settings.spike_tail_days
                flags.append(
                    AnomalyFlag(
                        AnomalyKind.SPIKE,
                        point,
                        day,
                        detail=f"{n} meals against a median of {mid}" + (" at month end" if tail else ""),
                        figures=(("meals", str(n)), ("median", str(mid)), ("month_end", str(tail).lower())),
                    )
                )
    return flags


def roster_patterns(lines: Sequence[MealLine], settings: AnomalySettings) -> list[AnomalyFlag]:
    """Points billing the same set of elders, or the same count, day after day."""
    flags = []
    for point, days in _daily(lines).items():
        serving = len(days)
        if serving < settings.roster_min_days:
            continue
        sets = Counter(frozenset(elders) for elders in days.values())
        # The most frequent set; ties broken by the sorted members so the choice is deterministic.
        top, same = min(sets.items(), key=lambda kv: (-kv[1], sorted(kv[0])))
        if (
            len(top) >= settings.roster_min_size
            and same >= settings.roster_min_days
            and Decimal(same) >= settings.roster_same_share * serving
        ):
            flags.append(
                AnomalyFlag(
                    AnomalyKind.ROSTER_SAME_SET,
                    point,
                    detail=f"the same {len(top)} elders on {same} of {serving} serving days",
                    figures=(("days", str(same)), ("serving_days", str(serving)), ("elders", str(len(top)))),
                )
            )
            continue
        counts = [len(elders) for elders in days.values()]
        if min(counts) >= settings.roster_min_size and max(counts) - min(counts) <= settings.roster_count_spread:
            flags.append(
                AnomalyFlag(
                    AnomalyKind.ROSTER_CONSTANT_COUNT,
                    point,
                    detail=f"between {min(counts)} and {max(counts)} meals on each of {serving} serving days",
                    figures=(("min", str(min(counts))), ("max", str(max(counts))), ("serving_days", str(serving))),
                )
            )
    return flags


def find_anomalies(
    taps: Sequence[Tap],
    lines: Sequence[MealLine],
    exclusions: Sequence[Exclusion],
    camera: Sequence[CameraCount],
    *,
    tz: tzinfo,
    month_last_day: date,
    settings: AnomalySettings,
) -> tuple[AnomalyFlag, ...]:
    """All flags for a settled month, in a deterministic order."""
    flags = [
        *camera_excess(lines, camera, settings),
        *two_points(taps, tz),
        *repeated_taps(exclusions, settings),
        *spikes(lines, month_last_day, settings),
        *roster_patterns(lines, settings),
    ]
    return tuple(sorted(flags, key=AnomalyFlag.sort_key))
