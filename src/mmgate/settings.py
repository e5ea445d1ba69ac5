"""Settings dataclasses built from a config section.

Each section's defaults live in its dataclass; `workflow/schemas/config.schema.yaml` repeats
them for users, and a test holds the two equal. A key the dataclass does not know is an error
here too (not only in the schema), so a setting can never be accepted and then ignored.
"""

from __future__ import annotations

import difflib
from typing import Any, Mapping, TypeVar

from .errors import ConfigError

T = TypeVar("T", bound="FromConfig")


class FromConfig:
    section: str = ""  # the config section this class reads, for error messages

    @classmethod
    def from_config(cls: type[T], config: Mapping[str, Any] | None) -> T:
        fields = cls.__dataclass_fields__  # type: ignore[attr-defined]
        config = dict(config or {})
        unknown = sorted(set(config) - set(fields))
        if unknown:
            where = cls.section or cls.__name__
            hints = [f"{k!r} (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(k, fields, 1)) else repr(k)
                     for k in unknown]
            raise ConfigError(f"{where}: unknown setting(s) {', '.join(hints)}; known: {sorted(fields)}")
        return cls(**config)
