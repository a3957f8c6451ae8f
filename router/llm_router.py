"""The LLM router: expert choice by restricted scoring, argument extraction as validated JSON.

Following MRKL (Karpas et al., 2022, Sec. 2–4) the router has two jobs:

1. **Expert choice.** Every expert, plus ``"none"``, is an option scored under
   the language model; the probabilities are the softmax of the scores. Nothing
   is parsed from free text, so the choice is always one of the options. Two
   scorings (jinja2 templates in ``mrkl/prompts/``): *channel* (default) scores the
   question as a continuation of each option's card — name, description, example
   questions (Min et al., 2022, "Noisy Channel Language Model Prompting for
   Few-Shot Text Classification"); *direct* scores each option's name as a
   continuation of one prompt listing all experts and routing examples.
2. **Argument extraction.** The chosen expert's arguments are generated as one
   line of JSON after few-shot examples of that expert, parsed, and validated
   against the expert's pydantic ``Args``; on failure the model is re-asked once
   with its output and the validation error shown (repair). A decision that
   still fails carries a clear ``error``.

Few-shot examples are chosen per question by word overlap with the question
(nearest examples last, where a small model's recency bias helps), in the
spirit of Liu et al., 2022 ("What Makes Good In-Context Examples for GPT-3?").
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any, Sequence

from llm_backends.base import LLMBackend
from llm_backends.errors import BackendError
from mrkl.errors import ArgumentError
from mrkl.expert import SYMBOLIC_RAW, Expert, render_template, validated_symbolic_args
from mrkl.registry import ExpertRegistry
from mrkl.trace import RouteDecision

__all__ = ["LLMRouter", "NONE", "UNCHOSEN_SCORE", "DEFAULT_NONE_EXAMPLES", "parse_json_object", "lexical_similarity"]

NONE = "none"
#: Score of the options the model did not name under ``choice="generate"`` (exp() of it is 0.0).
UNCHOSEN_SCORE = -1e4

#: Routing examples for the "none" option: questions no tool answers.
DEFAULT_NONE_EXAMPLES: tuple[str, ...] = (
    "Who wrote the play Hamlet?",
    "Tell me a joke about cats.",
    "What is the capital of France?",
    "How are you today?",
    "Why is the sky blue?",
    "Write a haiku about autumn.",
    "Give me some tips for a job interview.",
    "What does the word ephemeral mean?",
)
_NONE_SUMMARY = "General knowledge, conversation, writing and advice: anything the other experts do not cover."

_WORD_RE = re.compile(r"[a-z0-9]+")
# question words ("how many", "which", "what") stay: they tell a count from a listing
_STOPWORDS = frozenset(
    "a an the of in on at to is are was were be do does did for and or "
    "with by from me my i you your it its this that there their they please tell give show".split()
)


def _words(text: str) -> set[str]:
    # content words, with a plural "s" dropped ("genres" ~ "genre")
    return {w[:-1] if len(w) > 3 and w.endswith("s") else w for w in _WORD_RE.findall(text.lower()) if w not in _STOPWORDS}


def lexical_similarity(a: str, b: str, weights: dict[str, float] | None = None) -> float:
    """Weighted Jaccard overlap of the content words of two texts, in [0, 1] (0 when either has none).

    Args:
        a, b: the texts.
        weights: word → weight (e.g. inverse document frequency); unlisted words weigh 1.
    """
    wa, wb = _words(a), _words(b)
    if not wa or not wb:
        return 0.0
    w = weights or {}
    union = sum(w.get(x, 1.0) for x in wa | wb)
    return sum(w.get(x, 1.0) for x in wa & wb) / union if union else 0.0


def idf_weights(texts: Sequence[str]) -> dict[str, float]:
    """Inverse document frequency ``log(1 + N / df)`` of every content word of ``texts``.

    Words that many examples share ("which", "how", "many") weigh less than the
    ones that tell examples apart ("customers", "genre").
    """
    df: dict[str, int] = {}
    for t in texts:
        for word in _words(t):
            df[word] = df.get(word, 0) + 1
    n = len(texts)
    return {word: math.log(1 + n / c) for word, c in df.items()}


def _load_prompt(name: str) -> str:
    return resources.files("mrkl.prompts").joinpath(name).read_text(encoding="utf-8")


_PY_LITERALS = {"True": "true", "False": "false", "None": "null"}


def parse_json_object(text: str) -> dict[str, Any]:
    """Extract the first JSON object from model output.

    Tolerates text around the object, Python literals (True/False/None) and
    single-quoted strings when plain JSON fails, and missing closing braces. Output cut
    off inside a string or a list, or inside a runaway number with braces still open (the
    token budget ran out while the model was writing a value, e.g. ``"... WHERE AlbumId =
    1000000000``), is rejected: the value is incomplete, and running an expert on it would
    answer a different question. ``NaN``, ``Infinity`` and numbers too large for a float
    are no JSON numbers and are rejected too.

    Args:
        text: raw model output.

    Returns:
        The decoded object.

    Raises:
        ValueError: no JSON object can be decoded, or the output stops inside a value (see
            above); the message quotes the output (shortened). Also for non-text input.
    """
    if not isinstance(text, str):
        raise ValueError(f"model output is not text: {type(text).__name__}")
    start = text.find("{")
    if start < 0:
        raise ValueError(f"no JSON object in model output {text[:120]!r}")
    candidate = _balanced(text[start:])
    attempts = [candidate]
    fixed = re.sub(r"\b(True|False|None)\b", lambda m: _PY_LITERALS[m.group(1)], candidate)
    if "'" in fixed and '"' not in fixed:
        fixed = fixed.replace("'", '"')
    fixed = re.sub(r",\s*([}\]])", r"\1", fixed)
    attempts.append(fixed)
    last_err: Exception | None = None
    for a in attempts:
        try:
            obj = json.loads(a, parse_constant=_no_constant, parse_float=_finite_float)
        except json.JSONDecodeError as exc:
            last_err = exc
            continue
        if isinstance(obj, dict):
            return obj
        raise ValueError(f"model output is JSON but not an object: {a[:120]!r}")
    raise ValueError(f"model output is not valid JSON ({last_err}): {text[:120]!r}")


def _no_constant(name: str) -> Any:
    raise ValueError(f"model output is not valid JSON: {name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"model output is not valid JSON: {text[:40]} is not a finite number")
    return value


def _balanced(text: str) -> str:
    """The prefix of ``text`` up to the brace that closes its first '{' (closing braces added if missing).

    Raises:
        ValueError: ``text`` ends inside a string, an unclosed list, or, with braces still open,
            inside a run of 16 or more digits (a cut-off value).
    """
    depth, in_str, esc = 0, False, False
    stack: list[str] = []
    for i, ch in enumerate(text):
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
            continue
        if ch == '"':
            in_str = True
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
            depth += 1
        elif ch in "}]":
            if stack:
                stack.pop()
            depth -= 1
            if depth == 0:
                return text[: i + 1]
    if in_str or "]" in stack:
        where = "a string" if in_str else "a list"
        raise ValueError(f"model output is not valid JSON: it stops inside {where} (cut off at the token limit?): {text[-120:]!r}")
    if stack and re.search(r"\d{16,}\s*$", text):
        # '{"where": {"AlbumId": 1000000000000000000…': a number the budget cut, not a closed object
        raise ValueError(f"model output is not valid JSON: it stops inside a number (cut off at the token limit?): {text[-120:]!r}")
    return text + "".join(reversed(stack))


@dataclass
class _Option:
    name: str
    summary: str


class LLMRouter:
    """Route a question to an expert (or none) and extract its arguments with a language model.

    Args:
        backend: any :class:`~llm_backends.base.LLMBackend` with ``score`` and ``generate``.
        examples_per_expert: example questions per option (expert card, or the
            direct prompt's few-shot examples, the most similar to the question).
        arg_examples: few-shot examples of the chosen expert in the argument prompt.
        none_examples: questions that no expert should take (the "none" option's examples).
        choice: ``"channel"`` (each option's card scores the question), ``"direct"`` (each
            option's name is scored after one prompt) or ``"generate"`` (the model writes the
            name after that prompt; for backends that cannot score, such as chat APIs); see
            :meth:`option_scores`. Default (None): ``"channel"`` when ``backend.capabilities.score``
            is true, else ``"generate"``. Asking for a scoring choice on a backend that cannot
            score raises ``ValueError``.
        min_confidence: if the best option's probability is below this, choose none.
        max_arg_tokens: generation budget for the arguments' JSON.
        repair: re-ask once with the validation error when arguments do not validate.
        choice_template / args_template: jinja2 sources overriding the packaged prompts.
        constrained: decode arguments under the expert's JSON schema (llguidance token mask
            plus a copy bias toward the question; :mod:`router.arguments`): ``True`` to
            use it, ``None`` when the backend supports it, ``False`` (default) for free
            generation with validation and repair. Off by default for now: on the built-in
            database expert's large schema, whole-object constrained decoding answered 5 of
            9 end-to-end questions against 9 of 9 for the few-shot free path (SmolLM2-135M).
        per_field: with constrained decoding, decode argument by argument.
        ground_optional: with ``per_field``, keep an optional argument only when its value
            is grounded in the question (never an invented optional value).
        copy_bonus: logit bonus toward question spans in constrained decoding (0: off).
        pcw_windows: B ≥ 2 turns on Parallel Context Windows for the expert choice
            (:mod:`router.pcw`): once all routing examples exceed ``pcw_window_tokens``,
            they are packed into B windows balanced by token length and the options are
            scored by restricted-label classification over them (calibrated unless
            ``pcw_calibrate`` is False); the decision's ``pcw_windows`` reports B (0 when
            the ordinary recipe ran). Needs a backend with PCW; others keep the ordinary recipe.
        pcw_window_tokens: one window's token budget (the threshold for PCW).

    On SmolLM2-135M the direct recipe (score each name after one prompt) prefers
    "none" for almost every question; the channel recipe routes far better (see the
    benchmark in ``benchmarks/questions.py``), so it is the default.
    """

    def __init__(
        self,
        backend: LLMBackend,
        *,
        examples_per_expert: int = 6,
        arg_examples: int = 6,
        none_examples: Sequence[str] = DEFAULT_NONE_EXAMPLES,
        choice: str | None = None,
        min_confidence: float = 0.0,
        max_arg_tokens: int = 96,
        repair: bool = True,
        choice_template: str | None = None,
        args_template: str | None = None,
        constrained: bool | None = False,
        per_field: bool = False,
        ground_optional: bool = False,
        copy_bonus: float = 4.0,
        pcw_windows: int | None = None,
        pcw_window_tokens: int = 1024,
        pcw_calibrate: bool = True,
    ) -> None:
        from router.arguments import ConstrainedArguments, supports_constrained

        self.backend = backend
        use = supports_constrained(backend) if constrained is None else constrained
        self.constrained = ConstrainedArguments(backend, copy_bonus=copy_bonus) if use else None
        self.per_field = per_field
        self.ground_optional = ground_optional
        self.examples_per_expert = examples_per_expert
        self.arg_examples = arg_examples
        self.none_examples = list(none_examples)
        can_score = getattr(getattr(backend, "capabilities", None), "score", True)
        self._local = threading.local()  # the last generated choice per thread, for the decision's reason
        if choice is None:
            choice = "channel" if can_score else "generate"
        if choice not in ("channel", "direct", "generate"):
            raise ValueError(f"choice must be 'channel', 'direct' or 'generate', got {choice!r}")
        if choice != "generate" and not can_score:
            raise ValueError(
                f"choice={choice!r} scores options, but the backend {getattr(backend, 'name', backend)!r} "
                "cannot score (capabilities.score is False); use choice='generate'"
            )
        self.choice = choice
        self.card_template = _load_prompt("expert_card.j2")
        self.min_confidence = min_confidence
        self.max_arg_tokens = max_arg_tokens
        self.repair = repair
        self.choice_template = choice_template or _load_prompt("route_choice.j2")
        self.args_template = args_template or _load_prompt("route_args.j2")
        if pcw_windows is not None and pcw_windows < 1:
            raise ValueError(f"pcw_windows must be at least 1, got {pcw_windows}")
        self.pcw_windows = pcw_windows
        self.pcw = None
        if pcw_windows and pcw_windows > 1:
            from router.pcw import PCWExpertChooser

            self.pcw = PCWExpertChooser(backend, pcw_windows, window_tokens=pcw_window_tokens, calibrate=pcw_calibrate)
        self.last_pcw_windows = 0

    # ------------------------------------------------------------ prompts
    @staticmethod
    def _summary(expert: Expert, limit: int = 240) -> str:
        """The description, or its first sentence when the whole is longer than ``limit`` characters."""
        text = " ".join(expert.description.split())
        if len(text) <= limit:
            return text
        first = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0]
        return first if len(first) <= limit else first[: limit - 3].rstrip() + "..."

    def _nearest(self, question: str, items: list[tuple[str, Any]], k: int) -> list[tuple[str, Any]]:
        """The k items whose question text is most similar to ``question`` (IDF-weighted), least similar first."""
        weights = idf_weights([q for q, _ in items])
        ranked = sorted(items, key=lambda it: lexical_similarity(question, it[0], weights), reverse=True)[:k]
        return list(reversed(ranked))

    def choice_prompt(self, question: str, experts: Sequence[Expert]) -> str:
        """The rendered expert-choice prompt (ends with ``"Expert:"``)."""
        pools: list[list[tuple[str, str]]] = [
            self._nearest(question, [(ex.question, e.name) for ex in e.examples], self.examples_per_expert)
            for e in experts
        ]
        pools.append(self._nearest(question, [(q, NONE) for q in self.none_examples], self.examples_per_expert))
        # interleave (round-robin) so no expert's examples sit all together at the end,
        # then let the overall most similar examples come last
        examples: list[tuple[str, str]] = []
        for i in range(max((len(p) for p in pools), default=0)):
            examples.extend(p[i] for p in pools if i < len(p))
        examples.sort(key=lambda it: lexical_similarity(question, it[0]))
        return render_template(
            self.choice_template,
            experts=[_Option(e.name, self._summary(e)) for e in experts],
            examples=[{"question": q, "expert": name} for q, name in examples],
            question=question,
        )

    @staticmethod
    def compact_schema(expert: Expert) -> str:
        """The expert's argument JSON schema as one compact line.

        Titles are dropped, and so are the descriptions of whole objects (model
        docstrings), which are long and repeat the expert's description; the
        descriptions of single properties stay.
        """

        def strip(node: Any) -> Any:
            if isinstance(node, dict):
                is_object = "properties" in node
                return {
                    k: strip(v) for k, v in node.items() if k != "title" and not (is_object and k == "description")
                }
            if isinstance(node, list):
                return [strip(v) for v in node]
            return node

        return json.dumps(strip(expert.args_schema()), separators=(",", ":"), ensure_ascii=False)

    def args_prompt(self, question: str, expert: Expert, *, previous: str | None = None, error: str | None = None) -> str:
        """The rendered argument-extraction prompt (ends with ``"Arguments:"`` or ``"Corrected arguments:"``)."""
        pairs = [(ex.question, ex.args) for ex in expert.examples]
        chosen = self._nearest(question, pairs, self.arg_examples)
        return render_template(
            self.args_template,
            expert=expert,
            schema=self.compact_schema(expert),
            examples=[
                {"question": q, "args_json": json.dumps(a, ensure_ascii=False, separators=(", ", ": "))}
                for q, a in chosen
            ],
            question=question,
            previous=previous,
            error=error,
        )

    # ------------------------------------------------------------ decisions
    def card_prompt(self, name: str, summary: str, questions: Sequence[str]) -> str:
        """An expert's card for channel scoring: name, summary and example questions, ending in ``"-"``."""
        return render_template(self.card_template, name=name, summary=summary, questions=list(questions))

    def option_scores(self, question: str, experts: Sequence[Expert]) -> dict[str, float]:
        """Log-probability score of every option (each expert, then ``"none"``) for ``question``.

        ``choice="channel"``: log p(question | option's card), the card being the option's
        name, description and up to ``examples_per_expert`` example questions (noisy-channel
        prompting, Min et al., 2022, ACL, Sec. 3). The question is the same text under every
        option, so the scores compare directly; each card is a fixed prompt, so a backend
        that caches prompt KV states pays for it once.

        ``choice="direct"``: log p(" name" | choice prompt listing all experts and routing
        examples), the summed log-probability of each option's name.

        ``choice="generate"`` (backends without ``score``): the model writes an option's name
        after the same prompt as ``"direct"``; the named option scores 0 and every other
        :data:`UNCHOSEN_SCORE` (a log-probability whose probability is 0). A reply that names
        no option makes ``"none"`` the choice.

        Raises:
            BackendError: the model failed (e.g. a prompt longer than its context).
        """
        names = [e.name for e in experts] + [NONE]
        if self.choice == "generate":
            chosen = self.generated_choice(question, experts)[0] or NONE
            return {n: 0.0 if n == chosen else UNCHOSEN_SCORE for n in names}
        self.last_pcw_windows = 0
        if self.pcw is not None:  # Parallel Context Windows over all routing examples (router/pcw.py)
            options = [(e.name, [ex.question for ex in e.examples]) for e in experts] + [(NONE, self.none_examples)]
            pcw_choice = self.pcw.choose(question, options)
            if pcw_choice is not None:
                self.last_pcw_windows = pcw_choice.num_windows
                return pcw_choice.scores
        if self.choice == "direct":
            raw = self.backend.score(self.choice_prompt(question, experts), [" " + n for n in names])
            return dict(zip(names, raw))
        k = self.examples_per_expert
        cards = [self.card_prompt(e.name, self._summary(e), [ex.question for ex in e.examples][:k]) for e in experts]
        cards.append(self.card_prompt(NONE, _NONE_SUMMARY, self.none_examples[:k]))
        return {n: self.backend.score(card, [" " + question])[0] for n, card in zip(names, cards)}

    def generated_choice(self, question: str, experts: Sequence[Expert]) -> tuple[str | None, str]:
        """The option the model names when asked to write it (``choice="generate"``).

        The reply to the direct prompt (ending in ``"Expert:"``) is matched to an option:
        the whole reply (lowercased, without quotes, backticks or final punctuation) equal
        to a name, else the option name that occurs first in it as a whole word.

        Returns:
            ``(name or None, raw reply)``; None when no option is named.

        Raises:
            BackendError: the model failed.
        """
        names = [e.name for e in experts] + [NONE]
        raw = self.backend.generate(self.choice_prompt(question, experts), max_new_tokens=16, stop=("\n",))
        self._local.raw = raw
        text = raw.strip().strip("`'\".,:;!*").strip().lower()
        if text in names:
            return text, raw
        hits = [(m.start(), n) for n in names if (m := re.search(rf"(?<![a-z0-9_]){re.escape(n)}(?![a-z0-9_])", text))]
        return (min(hits)[1] if hits else None), raw

    def choose(self, question: str, experts: Sequence[Expert]) -> tuple[str | None, dict[str, float], dict[str, float]]:
        """Score every expert and "none"; return (choice or None, scores, probabilities).

        The probabilities are the softmax of :meth:`option_scores`. The choice is None
        when "none" wins or the winner's probability is below ``min_confidence``.

        Raises:
            BackendError: the model failed (e.g. the prompt is longer than its context).
        """
        scores = self.option_scores(question, experts)
        if any(math.isnan(v) for v in scores.values()) or max(scores.values()) == -math.inf:
            raise BackendError(f"the model returned unusable scores (NaN, or -inf for every option): {scores}")
        names = list(scores)
        top = max(scores.values())
        exp = [math.exp(scores[n] - top) for n in names]
        z = sum(exp)
        probs = {n: v / z for n, v in zip(names, exp)}
        best = max(names, key=lambda n: probs[n])
        if best == NONE or probs[best] < self.min_confidence:
            return None, scores, probs
        return best, scores, probs

    def extract_args(
        self, question: str, expert: Expert, *, previous: str | None = None, error: str | None = None
    ) -> tuple[dict[str, Any] | None, str, str | None]:
        """Generate and validate arguments for ``expert``; one attempt.

        Args:
            question: the user's question.
            expert: the chosen expert.
            previous: earlier raw output to repair (with ``error``), or None for a first attempt.
            error: the message explaining what was wrong with ``previous``.

        Returns:
            ``(args, raw_output, error)``: validated args as a JSON-compatible dict and
            ``None``, or ``None`` and the error message.
        """
        if self.constrained is not None:
            prompt = self.args_prompt(question, expert, previous=previous, error=error)
            try:
                obj, raw = self.constrained.extract(
                    prompt, expert.args_schema(), question, per_field=self.per_field, ground_optional=self.ground_optional,
                    function_name=getattr(expert, "function_name", expert.name),
                )
                args = expert.parse_args(obj)
            except BackendError as exc:
                return None, "", f"constrained decoding of the arguments failed: {exc}"
            except ArgumentError as exc:
                return None, raw, str(exc)
            return args.model_dump(mode="json"), raw, None
        # the reply is prefilled with '{"' so the model starts a JSON object and a key
        prompt = self.args_prompt(question, expert, previous=previous, error=error) + ' {"'
        try:
            generated = self.backend.generate(prompt, max_new_tokens=self.max_arg_tokens, stop=("\n",))
        except BackendError as exc:
            return None, "", f"model failed while writing arguments: {exc}"
        raw = '{"' + generated
        if generated.lstrip().startswith("{"):
            raw = generated.strip()  # a chat model ignores the prefill and writes the whole object
        try:
            obj = parse_json_object(raw)
            args = expert.parse_args(obj)
        except (ValueError, ArgumentError) as exc:
            return None, raw, str(exc)
        return args.model_dump(mode="json"), raw, None

    def repair_args(self, question: str, expert: Expert, previous: str, error: str) -> tuple[dict[str, Any] | None, str, str | None]:
        """Re-ask for arguments, showing the previous output and what was wrong with it (one attempt)."""
        return self.extract_args(question, expert, previous=previous, error=error)

    def route(self, question: str, registry: ExpertRegistry, *, symbolic_first: bool = False) -> RouteDecision:
        """Choose an expert (or none) and extract validated arguments.

        Args:
            question: a non-empty question.
            registry: the experts to choose from.
            symbolic_first: try the chosen expert's own parser
                (:meth:`~mrkl.Expert.symbolic_args`) before decoding; when it understands
                the question its validated arguments are used as they are
                (``raw_output`` :data:`SYMBOLIC_RAW`), and nothing is decoded.

        Returns:
            A :class:`RouteDecision`. ``expert`` is None when no expert fits; ``error``
            is set (and ``args`` None) when arguments still fail after the repair.
        """
        experts = list(registry)
        decision = RouteDecision(question=question, expert=None)
        t0 = time.perf_counter()
        if not experts:
            decision.reason = "no experts registered"
            return decision
        try:
            best, scores, probs = self.choose(question, experts)
        except BackendError as exc:
            decision.error = f"expert choice failed: {exc}"
            decision.timings["choose_expert"] = time.perf_counter() - t0
            return decision
        decision.timings["choose_expert"] = time.perf_counter() - t0
        decision.scores = scores
        decision.pcw_windows = self.last_pcw_windows
        ranked = sorted(probs.items(), key=lambda kv: kv[1], reverse=True)
        top_name, top_p = ranked[0]
        decision.confidence = top_p
        decision.alternatives = [(n, p) for n, p in ranked if n != (best or NONE)]
        written = f" (the model wrote {getattr(self._local, 'raw', '')!r})" if self.choice == "generate" else ""
        if best is None:
            decision.reason = (
                "the router chose none" if top_name == NONE else f"confidence {top_p:.2f} below {self.min_confidence}"
            ) + written
            return decision
        decision.expert = best
        decision.reason = ("the expert the model named" if written else "highest-scoring expert") + written
        expert = registry.get(best)
        t1 = time.perf_counter()
        symbolic = validated_symbolic_args(expert, question) if symbolic_first else None
        if symbolic is not None:
            args, raw, err = symbolic, SYMBOLIC_RAW, None
            decision.attempts.append({"raw": raw, "error": None})
        else:
            args, raw, err = self.extract_args(question, expert)
            decision.attempts.append({"raw": raw, "error": err})
            if err is not None and self.repair:
                args, raw, err = self.repair_args(question, expert, raw, err)
                decision.attempts.append({"raw": raw, "error": err})
        decision.timings["extract_args"] = time.perf_counter() - t1
        decision.raw_output = raw
        decision.args = args
        decision.error = err
        return decision
