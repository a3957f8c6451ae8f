"""Exceptions raised by mrkl.

Every error of the MRKL layer derives from :class:`MRKLError`; model runtime errors
derive from :class:`BackendError` (re-exported here). Messages name what was wrong and, where it
helps, what would be accepted instead.
"""

from __future__ import annotations

from llm_backends.errors import BackendError, ModelNotFoundError  # re-exported: backends know nothing of mrkl

__all__ = [
    "MRKLError",
    "InvalidQuestionError",
    "ArgumentError",
    "ExpertError",
    "RegistryError",
    "RoutingError",
    "BackendError",
    "ModelNotFoundError",
]


class MRKLError(Exception):
    """Base class of every error raised by mrkl."""


class InvalidQuestionError(MRKLError, ValueError):
    """The question is empty, only whitespace, or longer than the configured limit."""


class ArgumentError(MRKLError, ValueError):
    """Arguments for an expert do not validate against its ``Args`` schema.

    Attributes:
        expert: name of the expert whose schema rejected the arguments.
        details: the validation messages (one string per problem).
    """

    def __init__(self, expert: str, details: list[str]):
        self.expert = expert
        self.details = list(details)
        super().__init__(f"invalid arguments for expert '{expert}': " + "; ".join(self.details))


class ExpertError(MRKLError):
    """An expert could not produce a result for valid arguments.

    Raised from ``Expert.run`` for problems the user (or the router) can fix:
    an unknown table, an expression that is not allowed, a division by zero.
    The message is shown to the user and given to the router when it repairs
    its arguments, so it should name what was wrong and what is allowed.
    """


class RegistryError(MRKLError, KeyError):
    """Unknown expert name, or a name registered twice."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class RoutingError(MRKLError):
    """The router could not produce a usable decision (e.g. unparseable model output)."""
