"""Routing examples packed into Parallel Context Windows for the expert choice.

With many experts, each with several routing examples, the examples no longer fit
one prompt (or cost too much attention). Parallel Context Windows (Ratner et al.,
ACL 2023, Sec. 2) split them into B windows that are encoded independently (each
with positions 0..n-1) and that the question then attends to all at once; the
mechanism lives in :mod:`llm_backends.pcw`. This module decides *what* goes into
the windows:

* :func:`pack_windows` splits examples into B windows balanced by token length
  (longest-processing-time greedy: each example, longest first, goes to the window
  with the fewest tokens so far), keeping the examples' given order inside a window;
* :class:`PCWExpertChooser` renders every option's routing examples, uses PCW when
  they exceed one window's budget, scores the options by restricted-label
  classification (``" name\\n"`` after ``"Question: ...\\nExpert:"``) with contextual
  calibration (Zhao et al., 2021) by default, and keeps the encoded windows across
  questions (they are encoded once per set of experts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

__all__ = ["pack_windows", "windows_needed", "format_example", "PCWExpertChooser", "PCWChoice"]


def format_example(question: str, option: str) -> str:
    """One routing example as window text: ``"Question: {question}\\nExpert: {option}\\n\\n"``."""
    return f"Question: {' '.join(question.split())}\nExpert: {option}\n\n"


def windows_needed(lengths: Sequence[int], budget: int) -> int:
    """The fewest windows of ``budget`` tokens that could hold items of these lengths (≥ 1).

    Raises:
        ValueError: ``budget`` < 1.
    """
    if budget < 1:
        raise ValueError(f"window budget must be at least 1 token, got {budget}")
    return max(1, math.ceil(sum(lengths) / budget))


def pack_windows(lengths: Sequence[int], num_windows: int) -> list[list[int]]:
    """Split items into ``num_windows`` windows with token totals as equal as possible.

    Greedy longest-first (LPT) assignment to the window with the smallest total so
    far; ties go to the lower window index. Inside each window the items keep their
    given order (so an interleaving of experts chosen by the caller survives).

    Args:
        lengths: token length of every item (≥ 0).
        num_windows: B ≥ 1. More windows than items leaves no window empty: B is
            capped at the number of items.

    Returns:
        For each window, the indices of its items (ascending). Every index appears once.

    Raises:
        ValueError: ``num_windows`` < 1, no items, or a negative length.
    """
    if num_windows < 1:
        raise ValueError(f"the number of windows must be at least 1, got {num_windows}")
    if not lengths:
        raise ValueError("no examples to pack")
    if any(n < 0 for n in lengths):
        raise ValueError("token lengths must be non-negative")
    b = min(num_windows, len(lengths))
    totals = [0] * b
    windows: list[list[int]] = [[] for _ in range(b)]
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        w = min(range(b), key=lambda k: (totals[k], k))
        windows[w].append(i)
        totals[w] += lengths[i]
    return [sorted(w) for w in windows]


@dataclass
class PCWChoice:
    """Option scores from the PCW expert choice.

    Attributes:
        scores: option → log-probability (calibrated and renormalised over the options
            when ``calibrated``), the order of the options given.
        num_windows: B, the windows used.
        window_tokens: tokens of each window.
        calibrated: contextual calibration was applied.
    """

    scores: dict[str, float]
    num_windows: int
    window_tokens: list[int]
    calibrated: bool


class PCWExpertChooser:
    """Expert choice over routing examples packed into B parallel context windows.

    Args:
        backend: a backend with ``count_tokens``, ``pcw_context`` and ``pcw_classify``
            (:class:`llm_backends.transformers_backend.TransformersBackend`).
        num_windows: B ≥ 2, the windows used once the examples exceed one window.
        window_tokens: one window's budget; examples totalling at most this many
            tokens fit one ordinary prompt, and :meth:`choose` returns None.
        calibrate: apply contextual calibration with the content-free question ``"N/A"``.
        max_contexts: encoded window sets kept (LRU), each for one set of experts.

    Raises:
        ValueError: ``num_windows`` < 2 or ``window_tokens`` < 1.
    """

    TASK = "Question: {question}\nExpert:"
    CONTENT_FREE = "N/A"

    def __init__(
        self,
        backend: Any,
        num_windows: int,
        *,
        window_tokens: int = 1024,
        calibrate: bool = True,
        max_contexts: int = 4,
    ) -> None:
        if num_windows < 2:
            raise ValueError(f"PCW needs at least 2 windows, got {num_windows}")
        if window_tokens < 1:
            raise ValueError(f"window budget must be at least 1 token, got {window_tokens}")
        self.backend = backend
        self.num_windows = num_windows
        self.window_tokens = window_tokens
        self.calibrate = calibrate
        self.max_contexts = max_contexts
        self._contexts: dict[tuple[str, ...], Any] = {}

    @staticmethod
    def supported(backend: Any) -> bool:
        """True when ``backend`` implements PCW (``pcw_context`` and ``pcw_classify``)."""
        return callable(getattr(backend, "pcw_context", None)) and callable(getattr(backend, "pcw_classify", None))

    def windows(self, options: Sequence[tuple[str, Sequence[str]]]) -> list[str] | None:
        """The window texts for these options, or None when all examples fit one window's budget.

        Examples are interleaved round-robin across options (so no option's examples
        sit together), then packed into B windows balanced by token length.

        Args:
            options: ``(option name, its example questions)`` for every option, "none" included.
        """
        order: list[str] = []
        for i in range(max((len(qs) for _n, qs in options), default=0)):
            order.extend(format_example(qs[i], name) for name, qs in options if i < len(qs))
        if not order:
            return None
        count: Callable[[str], int] = self.backend.count_tokens
        lengths = [count(t) for t in order]
        if sum(lengths) <= self.window_tokens:
            return None
        return ["".join(order[i] for i in w) for w in pack_windows(lengths, self.num_windows)]

    def choose(self, question: str, options: Sequence[tuple[str, Sequence[str]]]) -> PCWChoice | None:
        """Score every option for ``question`` over the PCW windows; None when PCW is not needed or not supported.

        Raises:
            BackendError: the backend failed (e.g. a window longer than the model's context).
        """
        if not self.supported(self.backend):
            return None
        texts = self.windows(options)
        if texts is None:
            return None
        key = tuple(texts)
        ctx = self._contexts.pop(key, None)
        if ctx is None:
            ctx = self.backend.pcw_context(texts)
        self._contexts[key] = ctx  # most recently used last
        while len(self._contexts) > self.max_contexts:
            self._contexts.pop(next(iter(self._contexts)))
        names = [name for name, _qs in options]
        content_free = [self.TASK.format(question=self.CONTENT_FREE)] if self.calibrate else None
        res = self.backend.pcw_classify(
            ctx, self.TASK.format(question=" ".join(question.split())), [f" {n}\n" for n in names],
            content_free=content_free,
        )
        scores = {n: (math.log(p) if p > 0 else -math.inf) for n, p in zip(names, res.probs)}
        return PCWChoice(scores, ctx.num_windows, list(ctx.lengths), bool(res.calibrated))
