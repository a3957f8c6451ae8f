"""The ``Router`` protocol: what the MRKL orchestrator needs of a router."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from mrkl.expert import Expert
from mrkl.registry import ExpertRegistry
from mrkl.trace import RouteDecision

__all__ = ["Router"]


@runtime_checkable
class Router(Protocol):
    """Chooses an expert (or none) for a question and extracts its arguments.

    Implementations: :class:`router.llm_router.LLMRouter`, :class:`router.embedding.EmbeddingRouter`,
    :class:`router.two_stage.TwoStageRouter`.
    """

    def route(self, question: str, registry: ExpertRegistry) -> RouteDecision:
        """Decide; nothing is run. ``decision.expert`` is None when no expert fits."""
        ...

    def repair_args(
        self, question: str, expert: Expert, previous: str, error: str
    ) -> tuple[dict[str, Any] | None, str, str | None]:
        """Re-extract arguments after ``previous`` failed with ``error``: ``(args, raw, error)``."""
        ...
