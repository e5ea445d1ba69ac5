"""Config validation against `workflow/schemas/config.schema.yaml`, with messages naming the key.

The schema's task-keyed sections (templates, task_modalities, the training log's loss columns) get
their keys from `mmgate.tasks` when it is loaded (`load_schema`), so the YAML lists no task.
"""

from __future__ import annotations

import copy
import glob as globlib
from pathlib import Path
from typing import Any, Mapping

import yaml

from .errors import ConfigError
from .tasks import TASK_TABLE

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"
PER_TASK = "x-per-task"  # the schema's mark of an object with a property per task: {field: <Task attribute>, schema: ...}


def load_schema(schema_path: str | Path = SCHEMA_PATH) -> dict[str, Any]:
    """The config schema, each object marked `x-per-task: {field, schema}` given one property per task
    of `mmgate.tasks.TASK_TABLE` (named by that Task attribute, with that schema) beside its own.

        >>> schema = load_schema()
        >>> list(schema["properties"]["templates"]["properties"])
        ['t2a', 't2i', 'a2t', 'i2t']
        >>> [k for k in schema["properties"]["report"]["properties"]["training_log_columns"]["properties"] if "2" in k]
        ['t2a_avg', 't2i_avg', 'a2t_avg', 'i2t_avg']
    """
    schema = yaml.safe_load(Path(schema_path).read_text())
    _fill_per_task(schema, schema_path)
    return schema


def _fill_per_task(node: Any, source: str | Path) -> None:
    if isinstance(node, list):
        for item in node:
            _fill_per_task(item, source)
    if not isinstance(node, dict):
        return
    mark = node.pop(PER_TASK, None)
    if mark is not None:
        properties = node.setdefault("properties", {})
        for task in TASK_TABLE:
            name = getattr(task, mark["field"])
            if name in properties:
                raise ConfigError(f"{source}: {name!r} is listed and also given by {PER_TASK}; list it in one place")
            properties[name] = copy.deepcopy(mark["schema"])
    for value in node.values():
        _fill_per_task(value, source)


def _key_path(parts) -> str:
    return ".".join(str(p) for p in parts) or "(top level)"


def _fill_defaults(config: dict[str, Any], schema: Mapping[str, Any]) -> None:
    for key, sub in schema.get("properties", {}).items():
        if key not in config and "default" in sub:
            config[key] = copy.deepcopy(sub["default"])
        elif key not in config and sub.get("type") == "object" and "properties" in sub:
            config[key] = {}  # a section left out gets its defaults, never another config's values
        if isinstance(config.get(key), dict) and sub.get("type") == "object":
            _fill_defaults(config[key], sub)


_SCALARS = {"integer": int, "number": (int, float), "boolean": bool}


def _typed_strings(config: dict[str, Any], schema: Mapping[str, Any]) -> None:
    """Read '4' as 4 where the schema wants a number (or 'true' where a boolean): Snakemake's
    `--config key={nested: 4}` (and a profile's `config:`) hands nested values over as strings."""
    for key, sub in schema.get("properties", {}).items():
        value = config.get(key)
        if isinstance(value, dict):
            _typed_strings(value, sub)
        elif isinstance(value, str):
            types = sub.get("type")
            types = [types] if isinstance(types, str) else list(types or [])
            if "string" in types or not any(t in _SCALARS for t in types):
                continue
            try:
                parsed = yaml.safe_load(value)
            except yaml.YAMLError:
                continue
            if (parsed is None and "null" in types) or any(
                    isinstance(parsed, _SCALARS[t]) and (t == "boolean") == isinstance(parsed, bool)
                    for t in types if t in _SCALARS):
                config[key] = parsed


def validate_config(config: Mapping[str, Any], schema_path: str | Path = SCHEMA_PATH, source: str = "config.yaml") -> dict[str, Any]:
    """Validate and return a copy with schema defaults filled in; raise ConfigError naming every bad key."""
    import jsonschema

    schema = load_schema(schema_path)
    config = copy.deepcopy(dict(config))
    _typed_strings(config, schema)
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
    return canonical(config, schema)


UNORDERED_KEEP = ("checkpoints",)  # mappings whose order the user chose (the order checkpoints are listed in)


def canonical(value: Any, schema: Mapping[str, Any] | None = None, key: str | None = None) -> Any:
    """The config as jobs see it in their params: every mapping's keys sorted and every `number` of the
    schema a float, so that reordering keys, writing a default out or `1` for `1.0` changes no param
    (Snakemake compares params by their repr) and reruns nothing.

        >>> canonical({"b": 1, "a": {"d": 2, "c": 3}}) == {"a": {"c": 3, "d": 2}, "b": 1}
        True
        >>> list(canonical({"b": 1, "a": 2}))
        ['a', 'b']
        >>> canonical({"temperature": 1}, {"properties": {"temperature": {"type": "number"}}})
        {'temperature': 1.0}
    """
    schema = schema or {}
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        items = value.items() if key in UNORDERED_KEEP else sorted(value.items(), key=lambda kv: str(kv[0]))
        extra = schema.get("additionalProperties")
        return {k: canonical(v, properties.get(k) or (extra if isinstance(extra, dict) else {}), k) for k, v in items}
    if isinstance(value, list):
        items = schema.get("items")
        return [canonical(v, items if isinstance(items, dict) else {}) for v in value]
    types = schema.get("type")
    types = [types] if isinstance(types, str) else list(types or [])
    if "number" in types and "integer" not in types and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


class _StrictLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key given twice in one mapping (PyYAML silently keeps the last)."""


def _no_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(f"{key_node.start_mark.name}, line {key_node.start_mark.line + 1}: key {key!r} is given twice "
                              f"(first on line {seen[key] + 1}); YAML would silently keep the last one. Remove one.")
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def read_yaml(path: str | Path) -> Any:
    """YAML from a file, refusing duplicate keys, with errors that name the file."""
    path = Path(path)
    try:
        loader = _StrictLoader(path.read_text())
        loader.name = str(path)  # marks (and so errors) name the file
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot read the config ({err}).") from err


def load_config(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        raw = read_yaml(path) or {}
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
