"""The embedding router: nearest routing examples under a sentence-embedding model.

Every expert is represented by the embeddings of its description and of its
routing examples' questions (all-MiniLM-L6-v2 by default; Reimers & Gurevych,
2019, "Sentence-BERT", Sec. 3). A question's score for an expert is an
aggregate of its cosine similarities with those texts (``"max"``, the default:
the nearest text; or ``"topk_mean"``: the mean of the ``top_n`` nearest, a
smoothed nearest neighbour), and the experts are ranked by it. This is the
"semantic router" recipe, and it answers in milliseconds, so it can shortlist
a few experts out of hundreds before a language model decides among them
(see :class:`router.two_stage.TwoStageRouter`).

"None of these experts" is an option of its own: its logit is the *none
threshold* τ. The probabilities of the options are a temperature-scaled
softmax over ``[s_1, ..., s_n, τ] / T`` (temperature scaling, Guo et al., 2017,
"On Calibration of Modern Neural Networks", Sec. 4.2), so "none" wins exactly
when the best similarity is below τ, and the winner's probability is the
router's confidence. :meth:`EmbeddingRouter.fit` tunes τ (balanced accuracy of
expert-or-none on labelled questions) and then T (negative log-likelihood of the
labels), on labelled pairs and, by default, on the experts' own routing examples
scored leave-one-out (each example is left out of its own expert's texts) plus
questions no expert should take.

Arguments are not this router's job: the chosen expert's own symbolic parser
(:meth:`mrkl.Expert.symbolic_args`) gives them when it understands the question,
else an optional ``arg_router`` (an :class:`router.LLMRouter`) extracts them for
that one expert.
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from mrkl.errors import ArgumentError
from mrkl.expert import SYMBOLIC_RAW, Expert, validated_symbolic_args
from mrkl.registry import ExpertRegistry
from mrkl.trace import RouteDecision

__all__ = [
    "EmbeddingRouter",
    "LabelledQuestion",
    "FitReport",
    "DEFAULT_NONE_THRESHOLD",
    "DEFAULT_TEMPERATURE",
    "AGGREGATES",
]

NONE = "none"
AGGREGATES = ("max", "topk_mean")

#: Before :meth:`EmbeddingRouter.fit`: cosine below which no expert fits, and the softmax temperature.
#: Both measured with all-MiniLM-L6-v2 on the built-in experts (leave-one-out) and the default
#: "none" questions; ``fit`` replaces them.
DEFAULT_NONE_THRESHOLD = 0.30
DEFAULT_TEMPERATURE = 0.05


@dataclass(frozen=True)
class LabelledQuestion:
    """A labelled routing question for :meth:`EmbeddingRouter.fit`.

    Attributes:
        question: the question.
        expert: the right expert's name, or ``None`` when no expert fits.
        experts: the candidate experts for this question; ``None`` means the experts
            passed to ``fit`` (a benchmark such as BFCL gives each question its own set).
    """

    question: str
    expert: str | None
    experts: tuple[Expert, ...] | None = None


@dataclass
class FitReport:
    """What :meth:`EmbeddingRouter.fit` found.

    Attributes:
        none_threshold: τ, the cosine below which no expert fits.
        temperature: T of the softmax over ``[scores..., τ] / T``.
        n: labelled questions used (``n_positive`` with an expert, ``n_negative`` without).
        accuracy: share of the n with the right decision (expert or none) at τ.
        balanced_accuracy: mean of the accuracy on positives and on negatives.
        expert_accuracy: share of the positives whose best-scored expert is right (no threshold).
        nll: mean negative log-likelihood of the labels at (τ, T).
        ece: expected calibration error of the confidence (10 equal-width bins).
    """

    none_threshold: float
    temperature: float
    n: int
    n_positive: int
    n_negative: int
    accuracy: float
    balanced_accuracy: float
    expert_accuracy: float
    nll: float
    ece: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict of every field."""
        return dict(self.__dict__)


@dataclass
class _ExpertTexts:
    fingerprint: str
    texts: list[str]
    vectors: np.ndarray  # (len(texts), dim) float32, unit rows


@dataclass
class Ranking:
    """The embedding router's view of one question.

    Attributes:
        experts: expert names, best first.
        scores: each expert's aggregated cosine similarity, same order, in [-1, 1].
        probabilities: option → calibrated probability (the experts and ``"none"``), summing to 1.
        seconds: wall time of the ranking (question embedding + scoring), in seconds.
    """

    experts: list[str]
    scores: list[float]
    probabilities: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def top(self, k: int) -> list[tuple[str, float]]:
        """The ``k`` best experts as ``(name, score)`` pairs."""
        return list(zip(self.experts[:k], self.scores[:k]))


class EmbeddingRouter:
    """Route a question to the expert whose description and routing examples it is nearest to.

    Args:
        encoder: an object with ``encode(texts, normalize_embeddings=True) -> np.ndarray``
            (a ``sentence_transformers.SentenceTransformer``); default
            :func:`llm_backends.embeddings.load_sentence_encoder` of ``model``, loaded on first use.
        model: embedding-model alias or folder used when ``encoder`` is None.
        aggregate: ``"max"`` (the nearest text) or ``"topk_mean"`` (mean of the ``top_n`` nearest).
        top_n: texts averaged by ``"topk_mean"``.
        include_description: embed each expert's description as one of its texts.
        include_name: write the expert's name, in words, before its description
            (``"calculate triangle area: Calculate the area of a triangle ..."``). A function
            name is part of its documentation in every tool-calling format; on BFCL it
            separates relevant from irrelevant questions better than the description
            alone (README.md, "Function-calling evaluation").
        none_threshold: τ (see the module docstring) until :meth:`fit` sets it.
        temperature: T until :meth:`fit` sets it.
        arg_router: a router with ``extract_args(question, expert)`` and ``repair_args``
            (an :class:`router.LLMRouter`), used when the chosen expert's own symbolic parser
            does not understand the question. Without one, such decisions carry an ``error``.
        batch_size: texts per encoder batch.

    Raises:
        ValueError: an unknown ``aggregate``, ``top_n < 1``, or a temperature ``<= 0``.

    The expert embeddings are cached per expert, keyed by a hash of its name, description
    and example questions: adding an expert embeds only that expert's texts, and an expert
    whose texts change is embedded again.
    """

    def __init__(
        self,
        encoder: Any = None,
        *,
        model: str = "all-minilm-l6-v2",
        aggregate: str = "max",
        top_n: int = 2,
        include_description: bool = True,
        include_name: bool = False,
        none_threshold: float = DEFAULT_NONE_THRESHOLD,
        temperature: float = DEFAULT_TEMPERATURE,
        arg_router: Any = None,
        batch_size: int = 64,
    ) -> None:
        if aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {AGGREGATES}, got {aggregate!r}")
        if top_n < 1:
            raise ValueError(f"top_n must be at least 1, got {top_n}")
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self._encoder = encoder
        self.model = model
        self.aggregate = aggregate
        self.top_n = top_n
        self.include_description = include_description
        self.include_name = include_name
        self.none_threshold = float(none_threshold)
        self.temperature = float(temperature)
        self.arg_router = arg_router
        self.batch_size = batch_size
        self.fit_report: FitReport | None = None
        self._cache: dict[str, _ExpertTexts] = {}
        self._lock = threading.Lock()
        #: texts embedded so far (a test and a benchmark read it to check the cache)
        self.texts_embedded = 0

    # ------------------------------------------------------------ embeddings
    @property
    def encoder(self) -> Any:
        """The sentence encoder (loaded on first use).

        Raises:
            ModelNotFoundError: the embedding model is not installed.
            BackendError: it failed to load.
        """
        if self._encoder is None:
            from llm_backends.embeddings import load_sentence_encoder

            self._encoder = load_sentence_encoder(self.model)
        return self._encoder

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm embeddings of ``texts``: float32 array of shape ``(len(texts), dim)``.

        Raises:
            ValueError: the encoder returned a wrong shape or non-finite values.
        """
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        vecs = self.encoder.encode(
            list(texts), normalize_embeddings=True, batch_size=self.batch_size, show_progress_bar=False
        )
        vecs = np.asarray(vecs, dtype=np.float32)
        if vecs.ndim != 2 or vecs.shape[0] != len(texts) or not np.all(np.isfinite(vecs)):
            raise ValueError(f"the encoder returned an unusable array of shape {vecs.shape} for {len(texts)} texts")
        self.texts_embedded += len(texts)
        return vecs

    def expert_texts(self, expert: Expert) -> list[str]:
        """The texts that stand for ``expert``: its description (if included), then its example questions.

        Duplicates and empty texts are dropped; an expert always has at least its description.
        """
        desc = " ".join(expert.description.split())
        if self.include_name:
            words = " ".join(w for w in re.split(r"[_.\W]+", re.sub(r"([a-z])([A-Z])", r"\1 \2", expert.name)) if w)
            desc = f"{words}: {desc}" if desc else words
        texts = [desc] if self.include_description else []
        texts += [" ".join(ex.question.split()) for ex in expert.examples]
        seen: set[str] = set()
        out = [t for t in texts if t and not (t in seen or seen.add(t))]
        return out or [" ".join(expert.description.split()) or expert.name]

    def _fingerprint(self, expert: Expert, texts: list[str]) -> str:
        h = hashlib.blake2b(digest_size=16)
        for t in [expert.name, *texts]:
            h.update(t.encode("utf-8", "replace"))
            h.update(b"\x00")
        return h.hexdigest()

    def prepare(self, experts: Iterable[Expert]) -> int:
        """Embed the texts of every expert not yet cached (or whose texts changed).

        Returns:
            How many texts were embedded now (0 when all were cached).
        """
        return self._ensure(experts)[1]

    def _ensure(self, experts: Iterable[Expert]) -> tuple[list[str], int]:
        """Cache keys of ``experts`` (a hash of name and texts), embedding the uncached ones: (keys, texts embedded)."""
        keys: list[str] = []
        todo: dict[str, list[str]] = {}
        for e in experts:
            texts = self.expert_texts(e)
            key = self._fingerprint(e, texts)
            keys.append(key)
            if key not in self._cache and key not in todo:
                todo[key] = texts
        if not todo:
            return keys, 0
        flat = [t for texts in todo.values() for t in texts]
        vecs = self.embed(flat)
        with self._lock:
            i = 0
            for key, texts in todo.items():
                self._cache[key] = _ExpertTexts(key, texts, vecs[i : i + len(texts)])
                i += len(texts)
        return keys, len(flat)

    # ------------------------------------------------------------ scores
    def _aggregate(self, sims: np.ndarray) -> float:
        if sims.size == 0:
            return -1.0
        if self.aggregate == "max" or sims.size == 1:
            return float(sims.max())
        n = min(self.top_n, sims.size)
        return float(np.sort(sims)[-n:].mean())

    def _scores_from_vector(
        self, qvec: np.ndarray, experts: Sequence[Expert], leave_out: str | None = None, owner: str | None = None
    ) -> np.ndarray:
        """Aggregated similarity of one question vector with each expert; ``leave_out`` is masked in ``owner``."""
        out = np.empty(len(experts), dtype=np.float64)
        keys, _ = self._ensure(experts)
        for i, (e, key) in enumerate(zip(experts, keys)):
            entry = self._cache[key]
            sims = entry.vectors @ qvec
            if leave_out is not None and e.name == owner:
                keep = np.array([t != leave_out for t in entry.texts])
                sims = sims[keep]
            out[i] = self._aggregate(sims)
        return out

    def _stacked(self, keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """The cached vectors of the experts with these keys stacked, and the start offset of each expert's rows."""
        mats = [self._cache[k].vectors for k in keys]
        offsets = np.cumsum([0] + [m.shape[0] for m in mats[:-1]])
        return np.concatenate(mats, axis=0), offsets

    def _aggregate_matrix(self, experts: Sequence[Expert], qvecs: np.ndarray) -> np.ndarray:
        """Aggregated similarities of several question vectors ``(n, dim)`` with each expert: ``(len(experts), n)``."""
        keys, _ = self._ensure(experts)
        mat, offsets = self._stacked(keys)
        sims = mat @ qvecs.T
        if self.aggregate == "max":
            return np.maximum.reduceat(sims, offsets, axis=0).astype(np.float64)
        bounds = list(offsets[1:]) + [sims.shape[0]]
        out = np.empty((len(experts), sims.shape[1]), dtype=np.float64)
        for i, (a, b) in enumerate(zip(offsets, bounds)):
            n = min(self.top_n, b - a)
            out[i] = np.sort(sims[a:b], axis=0)[-n:].mean(axis=0)
        return out

    def scores(self, question: str, experts: Sequence[Expert]) -> np.ndarray:
        """Aggregated cosine similarity of ``question`` with each expert, in the experts' order.

        Returns:
            float64 array of shape ``(len(experts),)``, values in [-1, 1].

        Raises:
            ValueError: the question is empty.
            ModelNotFoundError / BackendError: the embedding model cannot be loaded.
        """
        if not question or not question.strip():
            raise ValueError("the question is empty")
        experts = list(experts)
        if not experts:
            return np.zeros(0)
        qvec = self.embed([" ".join(question.split())])
        return self._aggregate_matrix(experts, qvec)[:, 0]

    def probabilities(self, scores: Sequence[float], names: Sequence[str]) -> dict[str, float]:
        """Calibrated probabilities of each expert and ``"none"``: softmax of ``[scores..., τ] / T``."""
        logits = np.append(np.asarray(scores, dtype=np.float64), self.none_threshold) / self.temperature
        logits -= logits.max()
        p = np.exp(logits)
        p /= p.sum()
        return {**{n: float(v) for n, v in zip(names, p[:-1])}, NONE: float(p[-1])}

    def rank(self, question: str, experts: ExpertRegistry | Iterable[Expert]) -> Ranking:
        """Rank every expert for ``question``, best first, with calibrated probabilities.

        Raises:
            ValueError: the question is empty.
            ModelNotFoundError / BackendError: the embedding model cannot be loaded.
        """
        t0 = time.perf_counter()
        experts = list(experts)
        s = self.scores(question, experts)
        order = np.argsort(-s, kind="stable")
        names = [experts[i].name for i in order]
        ranked = [float(s[i]) for i in order]
        return Ranking(names, ranked, self.probabilities(ranked, names), time.perf_counter() - t0)

    def shortlist(self, question: str, experts: ExpertRegistry | Iterable[Expert], k: int = 3) -> Ranking:
        """The ``k`` best experts (a :class:`Ranking` truncated to ``k``; probabilities over all)."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        r = self.rank(question, experts)
        return Ranking(r.experts[:k], r.scores[:k], r.probabilities, r.seconds)

    # ------------------------------------------------------------ fit
    def fit(
        self,
        experts: ExpertRegistry | Iterable[Expert],
        labelled: Iterable[LabelledQuestion | tuple[str, str | None]] = (),
        *,
        negatives: Iterable[str] | None = None,
        use_routing_examples: bool = True,
    ) -> FitReport:
        """Tune the none threshold τ and the temperature T on labelled questions.

        The data: ``labelled`` pairs ``(question, expert name or None)`` (or
        :class:`LabelledQuestion` with its own candidate experts), plus each expert's own
        routing examples scored leave-one-out (the example is left out of its own expert's
        texts; ``use_routing_examples``), plus ``negatives``, questions no expert should
        take (default: :data:`router.llm_router.DEFAULT_NONE_EXAMPLES`).

        τ maximises the balanced accuracy of "best expert if its score ≥ τ, else none"
        (the middle of the best interval); T then minimises the negative log-likelihood
        of the labels under the softmax of ``[scores..., τ] / T`` (temperature scaling,
        Guo et al., 2017, Sec. 4.2; scipy's bounded scalar minimiser over log T).

        Returns:
            A :class:`FitReport` (also kept as :attr:`fit_report`).

        Raises:
            ValueError: no usable labelled question, or a label names an expert not among
                the candidates.
        """
        from scipy.optimize import minimize_scalar

        from router.llm_router import DEFAULT_NONE_EXAMPLES

        experts = list(experts)
        items: list[tuple[str, str | None, tuple[Expert, ...], str | None]] = []  # q, label, candidates, leave-out owner
        for item in labelled:
            if isinstance(item, LabelledQuestion):
                q, label, cands = item.question, item.expert, item.experts
            else:
                q, label = item
                cands = None
            cands = tuple(cands) if cands is not None else tuple(experts)
            if label is not None and label not in {e.name for e in cands}:
                raise ValueError(f"labelled question {q!r} names expert {label!r}, which is not among its candidates")
            if q and q.strip():
                items.append((q, label, cands, None))
        if use_routing_examples:
            for e in experts:
                for ex in e.examples:
                    items.append((ex.question, e.name, tuple(experts), e.name))
        for q in DEFAULT_NONE_EXAMPLES if negatives is None else negatives:
            if q and q.strip():
                items.append((q, None, tuple(experts), None))
        items = [it for it in items if it[2]]
        if not items:
            raise ValueError("fit needs at least one labelled question with candidate experts")

        self.prepare({id(e): e for it in items for e in it[2]}.values())
        # questions that are already expert texts (the routing examples) reuse their cached vectors
        known = {t: v for entry in self._cache.values() for t, v in zip(entry.texts, entry.vectors)}
        texts = [" ".join(q.split()) for q, *_ in items]
        missing = sorted({t for t in texts if t not in known})
        if missing:
            known.update(zip(missing, self.embed(missing)))
        qvecs = np.stack([known[t] for t in texts])
        rows: list[tuple[np.ndarray, int]] = [None] * len(items)  # type: ignore[list-item]  # (scores, label or -1)
        groups: dict[tuple[str, ...], list[int]] = {}
        for i, (_q, _label, cands, _owner) in enumerate(items):
            groups.setdefault(tuple(c.name for c in cands), []).append(i)
        for names, idx in groups.items():
            cands = items[idx[0]][2]
            sims = self._aggregate_matrix(cands, qvecs[idx])  # (len(cands), len(idx))
            for col, i in enumerate(idx):
                q, label, _c, owner = items[i]
                s = sims[:, col].copy()
                if owner is not None:  # leave-one-out: the example is not one of its own expert's texts
                    j = names.index(owner)
                    s[j] = self._scores_from_vector(qvecs[i], [cands[j]], " ".join(q.split()), owner)[0]
                rows[i] = (s, -1 if label is None else names.index(label))

        best = np.array([r[0].max() for r in rows])
        argbest = np.array([int(r[0].argmax()) for r in rows])
        y = np.array([r[1] for r in rows])
        pos, neg = y >= 0, y < 0

        def decisions(tau: float) -> np.ndarray:
            return np.where(best >= tau, argbest, -1)

        def balanced(tau: float) -> float:
            right = decisions(tau) == y
            parts = [right[m].mean() for m in (pos, neg) if m.any()]
            return float(np.mean(parts))

        cuts = np.unique(best)
        candidates = np.concatenate([[cuts[0] - 1e-3], (cuts[:-1] + cuts[1:]) / 2, [cuts[-1] + 1e-3]])
        accs = np.array([balanced(t) for t in candidates])
        top = np.flatnonzero(accs >= accs.max() - 1e-12)
        # the middle of the longest run of best thresholds: the widest margin on both sides
        runs = np.split(top, np.flatnonzero(np.diff(top) != 1) + 1)
        run = max(runs, key=len)
        tau = float((candidates[run[0]] + candidates[run[-1]]) / 2)

        def nll(log_t: float) -> float:
            t = math.exp(log_t)
            total = 0.0
            for s, lab in rows:
                logits = np.append(s, tau) / t
                m = logits.max()
                lse = m + math.log(np.exp(logits - m).sum())
                total += lse - logits[lab if lab >= 0 else -1]
            return total / len(rows)

        res = minimize_scalar(nll, bounds=(math.log(1e-3), math.log(1.0)), method="bounded")
        temp = float(math.exp(res.x))
        self.none_threshold, self.temperature = tau, temp

        # calibration error of the confidence of each decision
        conf, right = [], []
        for (s, lab), d in zip(rows, decisions(tau)):
            names = [str(i) for i in range(len(s))]
            p = self.probabilities(s, names)
            conf.append(p[NONE] if d < 0 else p[str(d)])
            right.append(d == lab)
        conf_a, right_a = np.array(conf), np.array(right, dtype=float)
        bins = np.minimum((conf_a * 10).astype(int), 9)
        ece = float(sum(abs(conf_a[bins == b].mean() - right_a[bins == b].mean()) * (bins == b).mean() for b in np.unique(bins)))
        report = FitReport(
            none_threshold=tau,
            temperature=temp,
            n=len(rows),
            n_positive=int(pos.sum()),
            n_negative=int(neg.sum()),
            accuracy=float((decisions(tau) == y).mean()),
            balanced_accuracy=balanced(tau),
            expert_accuracy=float((argbest[pos] == y[pos]).mean()) if pos.any() else float("nan"),
            nll=float(res.fun),
            ece=ece,
        )
        self.fit_report = report
        return report

    # ------------------------------------------------------------ Router protocol
    def choose(self, question: str, experts: Sequence[Expert]) -> tuple[str | None, Ranking]:
        """The best expert, or None when its score is below the none threshold; and the ranking."""
        r = self.rank(question, experts)
        if not r.experts or r.scores[0] < self.none_threshold:
            return None, r
        return r.experts[0], r

    def route(self, question: str, registry: ExpertRegistry) -> RouteDecision:
        """Choose an expert (or none) by embeddings, then its arguments.

        Arguments come from the expert's own :meth:`~mrkl.Expert.symbolic_args`, else from
        ``arg_router.extract_args`` for that one expert (with one repair), else — for an
        expert whose arguments are all optional — its defaults; otherwise the decision
        carries an ``error`` saying no argument extractor is configured.

        Returns:
            A :class:`RouteDecision`; ``scores`` are cosine similarities (``"none"``: τ),
            ``confidence`` the calibrated probability of the choice; timings
            ``"embedding_rank"`` and ``"extract_args"`` in seconds.
        """
        experts = list(registry)
        decision = RouteDecision(question=question, expert=None)
        if not experts:
            decision.reason = "no experts registered"
            return decision
        try:
            best, r = self.choose(question, experts)
        except Exception as exc:  # noqa: BLE001 - a model that cannot load or bad input: a clear error
            decision.error = f"embedding routing failed: {exc}"
            return decision
        decision.timings["embedding_rank"] = r.seconds
        decision.scores = {**dict(zip(r.experts, r.scores)), NONE: self.none_threshold}
        chosen = best or NONE
        decision.confidence = r.probabilities[chosen]
        decision.alternatives = sorted(
            ((n, p) for n, p in r.probabilities.items() if n != chosen), key=lambda kv: kv[1], reverse=True
        )
        if best is None:
            decision.reason = f"no expert fits: best similarity {r.scores[0]:.2f} < none threshold {self.none_threshold:.2f}"
            return decision
        decision.expert = best
        decision.reason = f"nearest expert by embeddings (similarity {r.scores[0]:.2f})"
        t1 = time.perf_counter()
        args, raw, err = self._arguments(question, registry.get(best))
        decision.timings["extract_args"] = time.perf_counter() - t1
        decision.args, decision.raw_output, decision.error = args, raw, err
        decision.attempts.append({"raw": raw, "error": err})
        return decision

    def _arguments(self, question: str, expert: Expert) -> tuple[dict[str, Any] | None, str, str | None]:
        symbolic = validated_symbolic_args(expert, question)
        if symbolic is not None:
            return symbolic, SYMBOLIC_RAW, None
        if self.arg_router is not None:
            args, raw, err = self.arg_router.extract_args(question, expert)
            if err is not None and getattr(self.arg_router, "repair", True):
                args, raw, err = self.arg_router.repair_args(question, expert, raw, err)
            return args, raw, err
        try:
            return expert.parse_args({}).model_dump(mode="json"), "(defaults)", None
        except ArgumentError:
            return None, "", (
                f"expert '{expert.name}' needs arguments and the embedding router has no argument "
                "extractor: pass EmbeddingRouter(arg_router=LLMRouter(backend))"
            )

    def repair_args(
        self, question: str, expert: Expert, previous: str, error: str
    ) -> tuple[dict[str, Any] | None, str, str | None]:
        """Re-extract arguments with ``arg_router`` (showing ``previous`` and ``error``); without one, an error."""
        if self.arg_router is None:
            return None, previous, f"cannot repair the arguments without an arg_router ({error})"
        return self.arg_router.repair_args(question, expert, previous, error)
