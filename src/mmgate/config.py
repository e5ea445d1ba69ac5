"""Config validation against `workflow/schemas/config.schema.yaml`, with messages naming the key."""

from __future__ import annotations

import copy
import glob as globlib
from pathlib import Path
from typing import Any, Mapping

import yaml

from .errors import ConfigError

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


def _key_path(parts) -> str:
    return ".".join(str(p) for p in parts) or "(top level)"


def _fill_defaults(config: dict[str, Any], schema: Mapping[str, Any]) -> None:
    for key, sub in schema.get("properties", {}).items():
        if key not in config and "default" in sub:
            config[key] = copy.deepcopy(sub["default"])
        if isinstance(config.get(key), dict) and sub.get("type") == "object":
            _fill_defaults(config[key], sub)


def validate_config(config: Mapping[str, Any], schema_path: str | Path = SCHEMA_PATH, source: str = "config.yaml") -> dict[str, Any]:
    """Validate and return a copy with schema defaults filled in; raise ConfigError naming every bad key."""
    import jsonschema

    schema = yaml.safe_load(Path(schema_path).read_text())
    config = copy.deepcopy(dict(config))
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = []
        for err in errors:
            where = _key_path(err.absolute_path)
            if err.validator == "additionalProperties":
                allowed = sorted(err.schema.get("properties", {}))
                lines.append(f"  - {where}: {err.message} (allowed keys here: {allowed})")
            elif err.validator == "required":
                lines.append(f"  - {where}: {err.message}")
            else:
                lines.append(f"  - {where}: {err.message}")
        raise ConfigError(f"{source} does not match {schema_path}:\n" + "\n".join(lines))
    _fill_defaults(config, schema)
    return config


def load_config(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot read the config ({err}).") from err
    return validate_config(raw, source=str(path))


def expand_paths(patterns: list[str] | None) -> list[str]:
    """Files named by paths or glob patterns, in a stable order; a plain path is kept even if missing."""
    files: list[str] = []
    for pattern in patterns or []:
        if any(ch in pattern for ch in "*?["):
            files += sorted(globlib.glob(pattern))
        else:
            files.append(pattern)
    return list(dict.fromkeys(files))
