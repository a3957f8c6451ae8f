"""Decisions, traces and answers: the record of what a MRKL system did for one question.

``RouteDecision`` is the router's output (expert or none, arguments, scores, raw
model output). ``Step`` records one expert call (or the fallback), with timings
in seconds. ``Trace`` collects the steps; ``Answer`` carries the text and the trace.
All of them turn into JSON-compatible dicts with ``to_dict()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["RouteDecision", "Step", "Trace", "Answer", "jsonable"]


def jsonable(value: Any) -> Any:
    """Convert a value to something ``json.dumps`` accepts (sympy objects, models, sets → str / dict / list)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return jsonable(dump(mode="json"))
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return jsonable(to_dict())
    return str(value)


@dataclass
class RouteDecision:
    """The router's decision for one question (nothing has been run yet).

    Attributes:
        question: the question as routed.
        expert: chosen expert name, or ``None`` for "no expert fits" (fallback to the LM).
        args: validated arguments as a JSON-compatible dict (``None`` when no expert or invalid).
        confidence: probability of the chosen option among all options, in [0, 1].
        scores: option name → router score (log-probability for the LLM router), "none" included.
        alternatives: other options, best first, as ``(name, probability)``.
        raw_output: the model's raw argument text, last attempt.
        attempts: each argument-extraction attempt: ``{"raw": str, "error": str | None}``.
        error: why the decision is unusable (invalid arguments after repair, bad output), else ``None``.
        reason: short human-readable reason for the choice (e.g. "score margin", "below threshold").
        timings: stage → seconds (``"choose_expert"``, ``"extract_args"``; a two-stage router
            adds ``"embedding_shortlist"``).
        shortlist: the experts a first stage kept for the second, best first, as
            ``(name, score)`` (cosine similarity for the embedding shortlist); empty when none.
        notes: remarks on how the decision was made (e.g. a stage that was unavailable).
        timings: stage → seconds (``"choose_expert"``, ``"extract_args"``).
        pcw_windows: parallel context windows the expert choice used (0: an ordinary prompt).
    """

    question: str
    expert: str | None
    args: dict[str, Any] | None = None
    confidence: float = 0.0
    scores: dict[str, float] = field(default_factory=dict)
    alternatives: list[tuple[str, float]] = field(default_factory=list)
    raw_output: str = ""
    attempts: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    reason: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    shortlist: list[tuple[str, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    pcw_windows: int = 0

    @property
    def ok(self) -> bool:
        """True when an expert was chosen and its arguments validated."""
        return self.expert is not None and self.args is not None and self.error is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict of every field."""
        return {
            "question": self.question,
            "expert": self.expert,
            "args": jsonable(self.args),
            "confidence": self.confidence,
            "scores": dict(self.scores),
            "alternatives": [list(a) for a in self.alternatives],
            "raw_output": self.raw_output,
            "attempts": jsonable(self.attempts),
            "error": self.error,
            "reason": self.reason,
            "timings": dict(self.timings),
            "shortlist": [list(a) for a in self.shortlist],
            "notes": list(self.notes),
            "pcw_windows": self.pcw_windows,
        }


@dataclass
class Step:
    """One executed step: an expert call, or the language model as fallback expert.

    Attributes:
        expert: the expert's name (``"fallback_lm"`` for the fallback).
        args: the validated arguments (dict), or ``None``.
        raw_output: raw model output that produced the arguments (or the fallback's reply).
        result: the expert's ``ExpertResult.value`` (JSON-compatible form in ``to_dict``).
        result_text: the expert's ``ExpertResult.text``.
        sources: where the result came from.
        error: the error message when the step failed, else ``None``.
        timings: stage → seconds (``"run"``, ``"compose"``, ...).
    """

    expert: str
    args: dict[str, Any] | None = None
    raw_output: str = ""
    result: Any = None
    result_text: str = ""
    sources: list[str] = field(default_factory=list)
    error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict of every field."""
        return {
            "expert": self.expert,
            "args": jsonable(self.args),
            "raw_output": self.raw_output,
            "result": jsonable(self.result),
            "result_text": self.result_text,
            "sources": list(self.sources),
            "error": self.error,
            "timings": dict(self.timings),
        }


@dataclass
class Trace:
    """Everything done for one question.

    Attributes:
        question: the question.
        decision: the router's decision (``None`` if routing itself failed).
        steps: executed steps in order (expert attempts, then the fallback if used).
        fallback: True when the language model answered by itself.
        fallback_reason: why (no expert fits, invalid arguments, expert error ...).
        timings: stage → seconds (``"route"``, ``"run"``, ``"total"``).
    """

    question: str
    decision: RouteDecision | None = None
    steps: list[Step] = field(default_factory=list)
    fallback: bool = False
    fallback_reason: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict of every field."""
        return {
            "question": self.question,
            "decision": self.decision.to_dict() if self.decision else None,
            "steps": [s.to_dict() for s in self.steps],
            "fallback": self.fallback,
            "fallback_reason": self.fallback_reason,
            "timings": dict(self.timings),
        }

    def format(self) -> str:
        """A few human-readable lines describing the trace (for ``mrkl ask --trace``)."""
        lines = []
        d = self.decision
        if d is not None:
            alts = ", ".join(f"{n} {p:.2f}" for n, p in d.alternatives[:3])
            lines.append(
                f"route: {d.expert or 'none'} (confidence {d.confidence:.2f}{'; next: ' + alts if alts else ''})"
            )
            if d.shortlist:
                took = d.timings.get("embedding_shortlist")
                lines.append(
                    "  shortlist: "
                    + ", ".join(f"{n} {s:.2f}" for n, s in d.shortlist)
                    + (f" (embeddings, {took * 1000:.0f} ms)" if took is not None else "")
                )
            for note in d.notes:
                lines.append(f"  note: {note}")
            if d.pcw_windows:
                lines.append(f"  expert choice over {d.pcw_windows} parallel context windows")
            for i, a in enumerate(d.attempts, 1):
                lines.append(f"  attempt {i}: {a.get('raw', '')!r}" + (f" -> {a['error']}" if a.get("error") else ""))
            if d.error:
                lines.append(f"  routing error: {d.error}")
        for s in self.steps:
            lines.append(f"step {s.expert}: args={jsonable(s.args)}")
            if s.error:
                lines.append(f"  error: {s.error}")
            elif s.result_text:
                lines.append(f"  result: {s.result_text[:500]}")
            if s.sources:
                lines.append(f"  sources: {', '.join(s.sources)}")
        if self.fallback:
            lines.append(f"fallback: the language model answered by itself ({self.fallback_reason})")
        if self.timings:
            lines.append("timings: " + ", ".join(f"{k} {v:.2f}s" for k, v in self.timings.items()))
        return "\n".join(lines)


@dataclass
class Answer:
    """The answer to a question.

    Attributes:
        text: the answer for a person.
        value: the machine-readable result of the last successful expert (``None`` for the fallback).
        expert: the expert that answered (``"fallback_lm"`` when the LM answered by itself).
        trace: the full :class:`Trace`.
    """

    text: str
    value: Any
    expert: str
    trace: Trace

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict: text, value, expert, trace."""
        return {"text": self.text, "value": jsonable(self.value), "expert": self.expert, "trace": self.trace.to_dict()}

    def __str__(self) -> str:
        return self.text
