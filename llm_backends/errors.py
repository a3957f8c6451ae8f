"""Errors of the model runtimes (this package depends on nothing else in mrkl)."""

from __future__ import annotations


class BackendError(RuntimeError):
    """A language-model backend failed: load failure, bad request, unusable output."""


class ModelNotFoundError(BackendError, FileNotFoundError):
    """A model name or path could not be resolved to local files (hub downloads are never made)."""
