"""Data files shipped as package resources (profiles, scenarios): loading by name or path, error text."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml
from pydantic import ValidationError


def shipped_dir(package: str) -> Path:
    """The folder of a package's shipped YAML files."""
    return Path(str(resources.files(package)))


def shipped_names(package: str) -> list[str]:
    """Names (file stems) of the YAML files a package ships."""
    return sorted(p.stem for p in shipped_dir(package).glob("*.yaml"))


def read_yaml(name_or_path: str | Path, package: str, error: type[Exception], what: str) -> tuple[object, str]:
    """Load a shipped file by name (no suffix) or any file by path; raise `error` if it cannot be read."""
    path = Path(name_or_path)
    if not path.suffix:
        path = shipped_dir(package) / f"{name_or_path}.yaml"
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")), str(path)
    except (OSError, yaml.YAMLError) as exc:
        raise error(f"cannot read {what} {path}: {exc}") from exc


def key_path_errors(exc: ValidationError) -> str:
    """Every validation error on its own line, led by its key path (a.b.0.c: message)."""
    return "\n  ".join(f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors())
