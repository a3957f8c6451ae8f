""""None of these experts" as a calibrated score: embedding similarity minus ungrounded arguments.

Benchmarks of function calling (BFCL's *irrelevance* category; Yan et al., 2024) pair a
question with functions on the same topic that still cannot answer it ("What is the
best way to reduce CO2 emissions?" against ``emission_estimator(distance, fuel, ...)``).
Topic similarity alone cannot tell these apart; what gives them away is that the
function's required arguments are nowhere in the question.

:class:`RelevanceGate` scores the best expert as

    s = cos(question, expert) − λ · u

where ``cos`` is the embedding router's similarity and ``u`` the share of the expert's
required (non-boolean) arguments whose decoded values are not grounded in the question
(:func:`router.arguments.grounded_in`). "None" is the option with the constant score τ;
the expert is called only when ``s ≥ τ``. :meth:`RelevanceGate.fit` picks (λ, τ) on
labelled examples by balanced accuracy of call / no-call, the same criterion the
embedding router's own ``fit`` uses for τ alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from router.arguments import grounded_in

__all__ = ["RelevanceGate", "ungrounded_share"]


def ungrounded_share(args: dict[str, Any] | None, schema: dict[str, Any], question: str) -> float:
    """Share (0..1) of the schema's required non-boolean arguments not grounded in ``question``.

    A required argument missing from ``args`` counts as ungrounded; ``args=None`` (no
    arguments could be decoded) gives 1.0; a schema without such arguments gives 0.0.
    """
    req = [k for k in schema.get("required", []) if (schema.get("properties", {}).get(k) or {}).get("type") != "boolean"]
    if not req:
        return 0.0
    if args is None:
        return 1.0
    bad = 0
    for k in req:
        if k not in args or not grounded_in(args[k], question, name=k, used_numbers=None):
            bad += 1
    return bad / len(req)


@dataclass
class RelevanceGate:
    """Call the best expert only when ``cos − λ·u ≥ τ`` (see the module docstring).

    Attributes:
        weight: λ, the penalty per unit of ungrounded share.
        threshold: τ, the score of "none".
        report: what :meth:`fit` measured (n, balanced accuracy, call rates).
    """

    weight: float = 0.3
    threshold: float = 0.35
    report: dict[str, Any] = field(default_factory=dict)

    def score(self, similarity: float, ungrounded: float) -> float:
        """The expert's score ``cos − λ·u``."""
        return float(similarity) - self.weight * float(ungrounded)

    def accepts(self, similarity: float, ungrounded: float) -> bool:
        """True when the expert's score beats "none"."""
        return self.score(similarity, ungrounded) >= self.threshold

    def fit(
        self,
        rows: Sequence[tuple[float, float, bool]],
        weights: Sequence[float] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.6),
        *,
        min_no_call: float | None = None,
    ) -> dict[str, Any]:
        """Pick (λ, τ) on labelled questions.

        Without ``min_no_call``: maximise the balanced accuracy of call / no-call. With it
        (an operating point, like choosing a precision target): among the (λ, τ) whose
        no-call rate on the should-not-call questions is at least ``min_no_call``,
        maximise the call rate on the should-call ones (ties: the higher balanced
        accuracy); if none reaches it, fall back to balanced accuracy.

        Args:
            rows: ``(similarity, ungrounded share, should call)`` per labelled question.
            weights: the λ grid; τ is searched over the midpoints between the sorted scores.
            min_no_call: the wanted no-call rate on irrelevant questions (0..1), or None.

        Returns:
            The report (also kept in :attr:`report`).

        Raises:
            ValueError: no rows, or only one class among them.
        """
        if not rows:
            raise ValueError("RelevanceGate.fit needs labelled rows")
        sim = np.array([r[0] for r in rows], dtype=float)
        ung = np.array([r[1] for r in rows], dtype=float)
        y = np.array([bool(r[2]) for r in rows])
        if y.all() or (~y).all():
            raise ValueError("RelevanceGate.fit needs questions that should and should not call an expert")
        best = (-1.0, 0.0, 0.0)
        target: tuple[float, float, float, float] | None = None  # (call rate, bacc, λ, τ)
        for lam in weights:
            s = sim - lam * ung
            cand = np.unique(s)
            taus = np.concatenate([[cand[0] - 1e-6], (cand[:-1] + cand[1:]) / 2, [cand[-1] + 1e-6]])
            for tau in taus:
                call = s >= tau
                rel, irr = float(call[y].mean()), float((~call[~y]).mean())
                bacc = 0.5 * (rel + irr)
                if bacc > best[0] + 1e-12:
                    best = (float(bacc), float(lam), float(tau))
                if min_no_call is not None and irr >= min_no_call - 1e-12:
                    if target is None or (rel, bacc) > (target[0] + 1e-12, target[1] + 1e-12):
                        target = (rel, bacc, float(lam), float(tau))
        if target is not None:
            best = (target[1], target[2], target[3])
        self.weight, self.threshold = best[1], best[2]
        call = (sim - self.weight * ung) >= self.threshold
        self.report = {
            "n": int(len(rows)),
            "weight": self.weight,
            "threshold": self.threshold,
            "balanced_accuracy": best[0],
            "objective": "balanced accuracy" if target is None else f"most calls with no-call >= {min_no_call}",
            "call_rate_relevant": float(call[y].mean()),
            "no_call_rate_irrelevant": float((~call[~y]).mean()),
        }
        return self.report
