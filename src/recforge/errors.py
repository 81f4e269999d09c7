"""Errors that the CLI and the service turn into one clear line (never a traceback)."""

from __future__ import annotations


class RecforgeError(Exception):
    """Base of every error recforge raises on purpose; its message is one readable line."""


class DataError(RecforgeError, ValueError):
    """Input data is missing, malformed, or inconsistent (bad column, non-numeric rating...)."""


class ConfigError(RecforgeError, ValueError):
    """A model or benchmark configuration is invalid."""


class ArtifactError(RecforgeError):
    """A saved model directory is missing, corrupt, truncated or not a recforge artifact."""


class UnknownIdError(RecforgeError, KeyError):
    """A user or item ID is not known to the model or dataset."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown ID"


class NotFittedError(RecforgeError):
    """A model was used before `fit` or `load`."""


class DistributedError(RecforgeError):
    """A data-parallel run failed: a training process exited with an error, or this process
    cannot take its place in the group (no GPU for it). Unlike input errors, which every
    process meets alike, it is about one process, which reports it whatever its rank."""
