""""None of these experts" as a calibrated score: embedding similarity minus ungrounded arguments.

Benchmarks of function calling (BFCL's *irrelevance* category; Yan et al., 2024) pair a
question with functions on the same topic that still cannot answer it ("What is the
best way to reduce CO2 emissions?" against ``emission_estimator(distance, fuel, ...)``).
Topic similarity alone cannot tell these apart; what gives them away is that the
function's required arguments are nowhere in the question.

:class:`RelevanceGate` scores the best expert as

    s = cos(question, expert) − λ · u + μ · m + ν · n − κ · r

where ``cos`` is the embedding router's similarity, ``u`` the share of the expert's
required (non-boolean) arguments whose decoded values are not grounded in the question
(:func:`router.arguments.grounded_in`), and ``m`` the *margin* of the best expert over the
runner-up (``cos₁ − cos₂``; 0 when there is only one candidate): a question that
clearly prefers one of several experts speaks of that expert; ``n`` the share of the
expert's name words the question writes (:func:`name_overlap`), the lexical half of
hybrid (sparse + dense) retrieval: "binomial probability" in the question and
``calc_binomial_prob`` share two of three words; ``r`` is 1 when the expert requires more
numbers than the question writes (:func:`missing_numbers`: "What is the best way to reduce
CO2 emissions?" gives ``emission_estimator`` none of its distances and rates), else 0,
known before any argument is decoded. "None" is the option
with the constant score τ; the expert is called only when ``s ≥ τ``.
:meth:`RelevanceGate.fit` picks (λ, μ, ν, κ, τ) on labelled examples by balanced accuracy of
call / no-call (or at an operating point), the same criterion the embedding router's
own ``fit`` uses for τ alone. To calibrate μ honestly the labelled examples must include
should-not-call questions with several candidates too (see
:meth:`mrkl.bfcl.MRKLSystem.calibrate`, which mixes other questions' functions in).
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from router.arguments import _numbers_of, grounded_in
from router.values import field_numbers, implied_value, is_expression_argument, math_expressions, question_numbers

__all__ = ["RelevanceGate", "ungrounded_share", "name_overlap", "missing_numbers"]

_NAME_STOP = frozenset(
    "the a an of to in for and or with by on at from is are be get set find calculate compute "
    "fetch retrieve search lookup query make create run do info data value values number".split()
)


def _stems(text: str) -> set[str]:
    """5-letter prefixes of the words (3+ letters, not stop words) of ``text``; snake_case and camelCase split."""
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", str(text))
    return {w[:5] for w in re.split(r"[^a-z0-9]+", spaced.lower()) if len(w) >= 3 and w not in _NAME_STOP}


def name_overlap(question: str, name: str) -> float:
    """Share (0..1) of an expert's name words that the question writes.

    Words are split on ``_``, ``.`` and camelCase, compared by their first five letters
    (``probability`` / ``prob`` do not match, ``binomial`` / ``binomial`` do), verbs
    that every API name starts with ("get", "calculate", "find", ...) left out. A name
    with no such word gives 0.0; so does bad input.

    Args:
        question: the user's question.
        name: the expert's (function's) name, e.g. ``"calc_binomial_prob"``.
    """
    if not isinstance(question, str) or not isinstance(name, str):
        return 0.0
    words = _stems(name)
    if not words:
        return 0.0
    return len(words & _stems(question)) / len(words)


def missing_numbers(question: str, schema: dict[str, Any]) -> float:
    """1.0 when the schema requires more numbers than the question writes, else 0.0.

    Counts the required arguments of type ``integer`` or ``number`` and the numbers the
    question writes (digits and number words, :func:`router.values.question_numbers`). On
    the whole BFCL files this flags 76 of 240 *irrelevance* questions and 20 of 600 relevant
    ones; it is a schema-only version of the ungrounded share, so it needs no decoding.
    A nullable number (``["integer", "null"]``) counts; names are counted once. Bad input (a
    non-string question, a schema without properties, a ``required`` that is not a list) gives 0.0.
    Values the question implies without writing numbers (a deck's 52 cards, "next week") are
    not counted, so such questions get 1.0: one reason the weight κ is calibrated, not fixed.
    """
    if not isinstance(question, str) or not isinstance(schema, dict) or not isinstance(schema.get("properties"), dict):
        return 0.0
    props = schema["properties"]
    required = schema.get("required")
    if not isinstance(required, (list, tuple)):
        return 0.0

    def numeric(prop: Any) -> bool:
        t = prop.get("type") if isinstance(prop, dict) else None
        types = [t] if isinstance(t, str) else t if isinstance(t, list) else []
        return any(x in ("integer", "number") for x in types)

    req = {k for k in required if isinstance(k, str) and numeric(props.get(k))}
    return 1.0 if len(req) > len(question_numbers(question)) else 0.0


def ungrounded_share(args: dict[str, Any] | None, schema: dict[str, Any], question: str) -> float:
    """Share (0..1) of the schema's required non-boolean arguments not grounded in ``question``.

    A number grounds one argument per time the question writes it (``"bx + c = 0"`` grounds
    one of ``a``, ``b``, ``c`` with 0, not all three). A value counts as grounded when the question writes it (:func:`router.arguments.grounded_in`)
    or means it (an implied number, or the question's expression in Python syntax; see
    :mod:`router.values`). A required argument missing from ``args`` counts as ungrounded; ``args=None`` (no
    arguments could be decoded) gives 1.0; a schema without such arguments gives 0.0.
    """
    req = [k for k in schema.get("required", []) if (schema.get("properties", {}).get(k) or {}).get("type") != "boolean"]
    if not req:
        return 0.0
    if args is None:
        return 1.0
    bad = 0
    props = schema.get("properties", {})
    used: list[float] = []
    for k in req:
        if k not in args:
            bad += 1
        elif grounded_in(args[k], question, name=k, used_numbers=used):
            used.extend(_numbers_of(args[k]) if not isinstance(args[k], str) else [])
        elif not _normalised_from(k, props.get(k), args[k], question):
            bad += 1
    return bad / len(req)


def _normalised_from(name: str, prop: Any, value: Any, question: str) -> bool:
    """True when ``value`` is what the question means though it does not write it: an implied
    number ("dropped" → initial velocity 0), a number converted to the argument's unit or
    from a percentage (:func:`router.values.field_numbers`), or the question's math
    expression in Python syntax."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        implied = implied_value(name, prop if isinstance(prop, dict) else None, question)
        if implied is not None and float(implied) == float(value):
            return True
        converted = field_numbers(question, prop if isinstance(prop, dict) else None)
        return any(math.isclose(float(n), float(value)) for n in converted if n not in question_numbers(question))
    if isinstance(value, str) and is_expression_argument(name, prop if isinstance(prop, dict) else None):
        return value in math_expressions(question)
    return False


def _bonus_column(values: np.ndarray) -> np.ndarray:
    """A column of margins, overlaps or missing-number flags as :func:`_bonus` reads each: NaN and negatives are 0."""
    return np.where(np.isfinite(values) & (values > 0), values, 0.0)


def _bonus(x: Any) -> float:
    """A margin or overlap as a bonus term: a finite positive number, else 0.0 (None, NaN, negative, not a number)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return 0.0
    return v if math.isfinite(v) and v > 0 else 0.0


@dataclass
class RelevanceGate:
    """Call the best expert only when ``cos − λ·u + μ·m + ν·n − κ·r ≥ τ`` (see the module docstring).

    Attributes:
        weight: λ, the penalty per unit of ungrounded share.
        threshold: τ, the score of "none".
        margin_weight: μ, the bonus per unit of margin over the runner-up expert (0: off).
        name_weight: ν, the bonus per unit of name overlap (:func:`name_overlap`; 0: off).
        number_weight: κ, the penalty when the expert requires more numbers than the question
            writes (:func:`missing_numbers`; 0: off).
        report: what :meth:`fit` measured (n, balanced accuracy, call rates).
    """

    weight: float = 0.3
    threshold: float = 0.35
    report: dict[str, Any] = field(default_factory=dict)
    margin_weight: float = 0.0
    name_weight: float = 0.0
    number_weight: float = 0.0

    def score(self, similarity: float, ungrounded: float, margin: float = 0.0, name: float = 0.0, missing: float = 0.0) -> float:
        """The expert's score ``cos − λ·u + μ·m + ν·n − κ·r`` (``margin`` m ≥ 0, name overlap n and
        missing numbers r in 0..1; a negative or non-finite one counts as 0)."""
        m, n, r = _bonus(margin), _bonus(name), _bonus(missing)
        return float(similarity) - self.weight * float(ungrounded) + self.margin_weight * m + self.name_weight * n - self.number_weight * r

    def accepts(self, similarity: float, ungrounded: float, margin: float = 0.0, name: float = 0.0, missing: float = 0.0) -> bool:
        """True when the expert's score beats "none"."""
        return self.score(similarity, ungrounded, margin, name, missing) >= self.threshold

    def fit(
        self,
        rows: Sequence[tuple[float, ...]],
        weights: Sequence[float] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.6),
        *,
        min_no_call: float | None = None,
        margin_weights: Sequence[float] = (0.0,),
        name_weights: Sequence[float] = (0.0,),
        number_weights: Sequence[float] = (0.0,),
    ) -> dict[str, Any]:
        """Pick (λ, μ, ν, κ, τ) on labelled questions.

        Without ``min_no_call``: maximise the balanced accuracy of call / no-call. With it
        (an operating point, like choosing a precision target): among the (λ, τ) whose
        no-call rate on the should-not-call questions is at least ``min_no_call``,
        maximise the call rate on the should-call ones (ties: the higher balanced
        accuracy); if none reaches it, fall back to balanced accuracy.

        Args:
            rows: ``(similarity, ungrounded share, should call)``, ``(similarity,
                ungrounded share, should call, margin)``, ``(..., margin, name overlap)`` or
                ``(..., margin, name overlap, missing numbers)`` per labelled question.
            weights: the λ grid; τ is searched over the midpoints between the sorted scores.
            min_no_call: the wanted no-call rate on irrelevant questions (0..1), or None.
            margin_weights: the μ grid (default ``(0.0,)``: no margin term). Ties go to the
                earlier grid values, so list 0 first to prefer the simpler gate.
            name_weights: the ν grid (default ``(0.0,)``: no name term); ties as for μ.
            number_weights: the κ grid (default ``(0.0,)``: no missing-numbers term); ties as for μ.

        Returns:
            The report (also kept in :attr:`report`).

        Raises:
            ValueError: no rows, rows of the wrong shape, only one class among them, or an
                empty grid or a weight that is negative or not finite.
        """
        if not rows:
            raise ValueError("RelevanceGate.fit needs labelled rows")
        for label, grid in (("weights", weights), ("margin_weights", margin_weights), ("name_weights", name_weights), ("number_weights", number_weights)):
            values = list(grid) if isinstance(grid, (list, tuple)) else []
            if not values or not all(isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) and w >= 0 for w in values):
                raise ValueError(f"RelevanceGate.fit: {label} must be a non-empty list of finite weights >= 0, got {grid!r}")
        if not isinstance(rows, (list, tuple)) or any(not isinstance(r, (list, tuple)) or len(r) not in (3, 4, 5, 6) for r in rows):
            raise ValueError("RelevanceGate.fit rows are (similarity, ungrounded, should_call[, margin[, name overlap[, missing numbers]]])")
        sim = np.array([r[0] for r in rows], dtype=float)
        ung = np.array([r[1] for r in rows], dtype=float)
        y = np.array([bool(r[2]) for r in rows])
        mar = np.array([r[3] if len(r) >= 4 else 0.0 for r in rows], dtype=float)
        mar = _bonus_column(mar)
        nam = np.array([r[4] if len(r) >= 5 else 0.0 for r in rows], dtype=float)
        nam = _bonus_column(nam)
        mis = np.array([r[5] if len(r) == 6 else 0.0 for r in rows], dtype=float)
        mis = _bonus_column(mis)
        if not (np.isfinite(sim).all() and np.isfinite(ung).all()):
            raise ValueError("RelevanceGate.fit needs finite similarities and ungrounded shares")
        if y.all() or (~y).all():
            raise ValueError("RelevanceGate.fit needs questions that should and should not call an expert")
        best = (-1.0, 0.0, 0.0, 0.0, 0.0, 0.0)  # (bacc, λ, τ, μ, ν, κ)
        target: tuple[float, ...] | None = None  # (call rate, bacc, λ, τ, μ, ν, κ)
        # grid order kept from the nested loops (κ outermost, λ innermost): ties go to the earlier values
        for kappa, nu, mu, lam in itertools.product(number_weights, name_weights, margin_weights, weights):
            s = sim - lam * ung + mu * mar + nu * nam - kappa * mis
            cand = np.unique(s)
            taus = np.concatenate([[cand[0] - 1e-6], (cand[:-1] + cand[1:]) / 2, [cand[-1] + 1e-6]])
            for tau in taus:
                call = s >= tau
                rel, irr = float(call[y].mean()), float((~call[~y]).mean())
                bacc = 0.5 * (rel + irr)
                if bacc > best[0] + 1e-12:
                    best = (float(bacc), float(lam), float(tau), float(mu), float(nu), float(kappa))
                if min_no_call is not None and irr >= min_no_call - 1e-12:
                    if target is None or (rel, bacc) > (target[0] + 1e-12, target[1] + 1e-12):
                        target = (rel, bacc, float(lam), float(tau), float(mu), float(nu), float(kappa))
        if target is not None:
            best = target[1:]
        self.weight, self.threshold, self.margin_weight, self.name_weight, self.number_weight = best[1], best[2], best[3], best[4], best[5]
        call = (sim - self.weight * ung + self.margin_weight * mar + self.name_weight * nam - self.number_weight * mis) >= self.threshold
        self.report = {
            "n": int(len(rows)),
            "weight": self.weight,
            "margin_weight": self.margin_weight,
            "name_weight": self.name_weight,
            "number_weight": self.number_weight,
            "threshold": self.threshold,
            "balanced_accuracy": best[0],
            "objective": "balanced accuracy" if target is None else f"most calls with no-call >= {min_no_call}",
            "call_rate_relevant": float(call[y].mean()),
            "no_call_rate_irrelevant": float((~call[~y]).mean()),
        }
        return self.report
