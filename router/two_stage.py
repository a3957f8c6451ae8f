"""Two-stage routing: an embedding shortlist, then the LLM router among the shortlisted experts.

Stage 1 (:class:`router.embedding.EmbeddingRouter`, milliseconds): rank every
expert by the cosine similarity of the question with the expert's description
and routing examples, keep the top ``k``. Stage 2 (:class:`router.LLMRouter`):
score only those ``k`` experts and "none" under the language model; the chosen
expert's arguments come from its own symbolic parser when it understands the
question, else the LLM router decodes them. The language model's prompts hold only
the shortlisted experts, so routing scales to hundreds of experts at the cost
of ``k + 1`` scorings instead of ``n + 1`` (the retrieve-then-rerank pattern of
tool retrieval, e.g. Qin et al., 2023, "ToolLLM", Sec. 2.3; Patil et al., 2023,
"Gorilla", Sec. 3.2).

The trace (``RouteDecision``) carries the shortlist with its similarities and the
time of each stage: ``embedding_shortlist``, ``choose_expert``, ``extract_args``.
If the embedding model is missing or fails, the LLM router decides over all
experts and the decision's ``notes`` say so.
"""

from __future__ import annotations

import time
from typing import Any

from mrkl.expert import SYMBOLIC_RAW, Expert, validated_symbolic_args
from mrkl.registry import ExpertRegistry
from mrkl.trace import RouteDecision
from router.embedding import EmbeddingRouter
from router.llm_router import LLMRouter

__all__ = ["TwoStageRouter", "DEFAULT_SHORTLIST_K"]


def _has_parser(expert: Expert) -> bool:
    """Whether the expert overrides :meth:`mrkl.Expert.symbolic_args` (has a parser of its own)."""
    return getattr(type(expert), "symbolic_args", None) is not Expert.symbolic_args


DEFAULT_SHORTLIST_K = 3


class TwoStageRouter:
    """Embedding shortlist of ``k`` experts, then the LLM router decides among them (+ "none").

    Args:
        llm: the second stage, an :class:`router.LLMRouter` (anything with
            ``route(question, registry)`` and ``repair_args``).
        embedding: the first stage; default an :class:`EmbeddingRouter` on all-MiniLM-L6-v2.
        k: experts kept by the shortlist (default 3). With ``k`` or fewer experts the
            shortlist keeps all of them (still ranked, for the trace).
        auto_fit: fit the embedding router's none threshold and temperature
            (:meth:`EmbeddingRouter.fit`, leave-one-out on the experts' routing examples)
            the first time it meets a set of experts, and again when the set changes.
        none_gate: when True, a question whose best similarity is below the embedding
            router's none threshold goes to the fallback without asking the LLM (faster;
            off by default, so "none" is decided by the LLM router among the shortlist).
        symbolic_first: after the LLM router chose an expert, take the arguments from that
            expert's own symbolic parser (:meth:`mrkl.Expert.symbolic_args`) when it understands
            the question, and decode with the LLM only when it does not (MRKL, Karpas et al.,
            2022, Sec. 4: a symbolic parser is exact where a small model's extraction is not).

    Raises:
        ValueError: ``k < 1``.
    """

    def __init__(
        self,
        llm: Any,
        embedding: EmbeddingRouter | None = None,
        *,
        k: int = DEFAULT_SHORTLIST_K,
        auto_fit: bool = True,
        none_gate: bool = False,
        symbolic_first: bool = True,
    ) -> None:
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        self.llm = llm
        self.embedding = embedding if embedding is not None else EmbeddingRouter()
        self.k = k
        self.auto_fit = auto_fit
        self.none_gate = none_gate
        self.symbolic_first = symbolic_first
        self._fitted_on: frozenset[tuple[str, str]] | None = None

    # the LLM router's argument methods, for callers that use them directly
    def extract_args(self, question: str, expert: Expert, **kw: Any) -> tuple[dict[str, Any] | None, str, str | None]:
        """Arguments for ``expert`` from the LLM router (one attempt); see :meth:`LLMRouter.extract_args`."""
        return self.llm.extract_args(question, expert, **kw)

    def repair_args(
        self, question: str, expert: Expert, previous: str, error: str
    ) -> tuple[dict[str, Any] | None, str, str | None]:
        """Re-extract arguments with the LLM router, showing ``previous`` and ``error``."""
        return self.llm.repair_args(question, expert, previous, error)

    def _second_stage(self, question: str, sub: ExpertRegistry) -> RouteDecision:
        """The LLM router's expert choice among ``sub``; arguments from the expert's own parser when it has them.

        With ``symbolic_first`` and an :class:`LLMRouter`, the chosen expert's
        :meth:`~mrkl.Expert.symbolic_args` go first (exact, and no decoding); otherwise, or
        when the parser does not understand the question, the LLM router decodes the
        arguments (one repair). Any other second stage is asked ``route(question, sub)``.
        """
        if isinstance(self.llm, LLMRouter):
            return self.llm.route(question, sub, symbolic_first=self.symbolic_first)
        return self.llm.route(question, sub)

    def _parser_vote(self, question: str, ranked: list[Expert], decision: RouteDecision) -> None:
        """Overrule the LLM's expert when its own parser rejects the question and another expert's accepts it.

        A symbolic parser that understands the whole question is exact evidence of what the
        question is (MRKL, Karpas et al., 2022, Sec. 4), stronger than a small model's choice:
        "Double 33" is arithmetic though SmolLM2 picks ``units``. When the chosen expert has a
        parser of its own (:meth:`~mrkl.Expert.symbolic_args`) that does not understand the
        question, the first expert in embedding order (all experts, not only the shortlist) whose
        parser does understand it takes the question with those arguments. A parser that
        also accepts "hello" accepts anything and is no evidence (a search expert's whole
        question as its query). An expert without a parser of its own keeps the LLM's choice.
        ``decision`` is changed in place: its confidence becomes the model's probability of the new
        expert, the overruled one joins the alternatives, and its ``notes`` say so.
        """
        if decision.expert is None:
            return
        chosen = next((e for e in ranked if e.name == decision.expert), None)
        if chosen is None or not _has_parser(chosen) or decision.raw_output == SYMBOLIC_RAW:
            return  # no parser of its own, or the LLM router already took its parser's arguments
        for e in ranked:
            if e.name == chosen.name or not _has_parser(e) or validated_symbolic_args(e, "hello") is not None:
                continue
            args = validated_symbolic_args(e, question)
            if args is not None:
                decision.notes.append(
                    f"{e.name}'s own parser understands the question and {chosen.name}'s does not: "
                    f"{e.name} answers (the LLM router chose {chosen.name})"
                )
                alternatives = dict(decision.alternatives)  # the trace ranks the overruled choice among the others
                alternatives[chosen.name] = decision.confidence
                decision.confidence = alternatives.pop(e.name, 0.0)
                decision.alternatives = sorted(alternatives.items(), key=lambda kv: kv[1], reverse=True)
                decision.expert, decision.args, decision.error = e.name, args, None
                decision.raw_output = SYMBOLIC_RAW
                decision.attempts.append({"raw": SYMBOLIC_RAW, "error": None})
                decision.reason = f"{e.name}'s own parser understands the question"
                return

    def _maybe_fit(self, experts: list[Expert]) -> None:
        if not self.auto_fit:
            return
        key = frozenset((e.name, self.embedding._fingerprint(e, self.embedding.expert_texts(e))) for e in experts)
        if key != self._fitted_on:
            self.embedding.fit(experts)
            self._fitted_on = key

    def route(self, question: str, registry: ExpertRegistry) -> RouteDecision:
        """Shortlist by embeddings, then choose and extract arguments with the LLM router.

        Returns:
            The LLM router's :class:`RouteDecision` over the shortlist, with ``shortlist``
            (name, cosine similarity), ``timings["embedding_shortlist"]`` and, when the
            embedding stage was unavailable, a note in ``notes``.

        Raises:
            BackendError: as :meth:`LLMRouter.route` (the orchestrator turns it into a fallback).
        """
        experts = list(registry)
        if not experts:
            return RouteDecision(question=question, expert=None, reason="no experts registered")
        notes: list[str] = []
        try:
            try:
                self._maybe_fit(experts)
            except ValueError as exc:  # calibration only: the shortlist works with the current threshold
                notes.append(
                    f"embedding router not fitted ({exc}); its none threshold stays {self.embedding.none_threshold:.2f}"
                )
            t0 = time.perf_counter()  # a fit (once per expert set) is not part of this question's shortlist time
            ranking = self.embedding.rank(question, experts)
        except Exception as exc:  # noqa: BLE001 - a missing or broken embedding model: LLM over all experts
            decision = self.llm.route(question, registry)
            decision.notes.extend([*notes, f"embedding shortlist unavailable ({exc}); the LLM router scored all {len(experts)} experts"])
            return decision
        shortlist = ranking.top(self.k)
        took = time.perf_counter() - t0
        if self.none_gate and ranking.scores[0] < self.embedding.none_threshold:
            decision = RouteDecision(question=question, expert=None)
            decision.reason = (
                f"no expert fits: best similarity {ranking.scores[0]:.2f} < none threshold "
                f"{self.embedding.none_threshold:.2f} (embedding gate)"
            )
            decision.confidence = ranking.probabilities["none"]
            decision.shortlist = shortlist
            decision.timings["embedding_shortlist"] = took
            return decision
        sub = ExpertRegistry([registry.get(n) for n, _s in shortlist])
        decision = self._second_stage(question, sub)
        if self.symbolic_first and isinstance(self.llm, LLMRouter):
            self._parser_vote(question, [registry.get(n) for n in ranking.experts], decision)
        decision.shortlist = shortlist
        decision.timings = {"embedding_shortlist": took, **decision.timings}
        decision.notes.extend(notes)
        if len(experts) > self.k:
            decision.notes.append(f"LLM router chose among the top {self.k} of {len(experts)} experts by embeddings")
        return decision
