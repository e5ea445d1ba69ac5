"""Errors that stop a whole job. Each message names the file, the field and the fix."""

from __future__ import annotations


class MMGateError(Exception):
    """Base class: a condition that makes a whole job's result wrong."""


class TokenSpaceError(MMGateError):
    """`token_space.json` is malformed or inconsistent."""


class GoldenSetError(MMGateError):
    """The golden set has bad rows; the message lists every one of them."""


class ConfigError(MMGateError):
    """`config.yaml` does not match the schema or points at missing files."""


class CheckpointError(MMGateError):
    """A checkpoint cannot be found, inspected or loaded."""


class TokenSpaceMismatch(MMGateError):
    """P0.1 failed: some artifact disagrees with `token_space.json`."""


class TemplateError(MMGateError):
    """A prompt template names an unknown placeholder or special token."""
