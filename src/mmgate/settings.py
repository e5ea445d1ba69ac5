"""Settings dataclasses built from a config section (the schema has already rejected unknown keys)."""

from __future__ import annotations

from typing import Any, Mapping, TypeVar

T = TypeVar("T", bound="FromConfig")


class FromConfig:
    @classmethod
    def from_config(cls: type[T], config: Mapping[str, Any]) -> T:
        return cls(**{k: v for k, v in config.items() if k in cls.__dataclass_fields__})  # type: ignore[attr-defined]
