"""One exception family for every mistake a user can make.

The CLI catches :class:`JaxsteerError`, prints its one-line message and exits with status 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class JaxsteerError(Exception):
    """Base class: a user-facing problem with one-line message naming the input and the expectation."""


class ConfigError(JaxsteerError, ValueError):
    """A configuration (model config.json, YAML experiment config, CLI flag) is invalid."""


class CheckpointError(JaxsteerError, ValueError):
    """A weights folder or file is missing, truncated, or does not match the config."""


class InputError(JaxsteerError, ValueError):
    """Arrays passed to the model (token ids, masks, steering vectors, gammas) are invalid."""


class DataError(JaxsteerError, ValueError):
    """A dataset file is missing, has the wrong columns, or a split is empty."""


class OfflineError(JaxsteerError, OSError):
    """A hub id was given but the hub cannot be reached."""
