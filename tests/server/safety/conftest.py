"""Safety API fixtures: the telemetry API's (an API on the session database with a fixed clock, seeding)."""

from __future__ import annotations

from ..telemetry.conftest import NOW, api, seed, seeder  # noqa: F401 - fixtures and helpers shared as they are
