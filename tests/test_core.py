"""The Expert API, the registry and the MRKL orchestrator, on a scripted backend (fast)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from pydantic import BaseModel

from conftest import ScriptedBackend, card_scorer
from mrkl import (
    FALLBACK,
    MRKL,
    ArgumentError,
    Expert,
    ExpertError,
    ExpertRegistry,
    ExpertResult,
    InvalidQuestionError,
    RegistryError,
    RoutingExample,
    expert,
)
from router import LLMRouter


@expert(
    examples=[("add 2 and 3", {"a": 2, "b": 3}), ("what is 10 plus 5", {"a": 10, "b": 5})],
    answer_template="The sum is {{ value }}.",
)
def add(a: int, b: int = 0) -> int:
    """Add two integers.

    Args:
        a: the first addend.
        b: the second addend.
    """
    return a + b


class Boom(Expert):
    name = "boom"
    description = "Always fails with a bug."

    class Args(BaseModel):
        x: int

    def run(self, args):
        raise ZeroDivisionError("bug inside")


# ----------------------------------------------------------------- @expert
def test_expert_decorator_builds_schema_and_runs():
    assert add.name == "add"
    assert add.description == "Add two integers."
    schema = add.args_schema()
    assert schema["required"] == ["a"]
    assert schema["properties"]["a"]["type"] == "integer"
    assert schema["properties"]["a"]["description"] == "the first addend."
    assert schema["properties"]["b"]["default"] == 0
    assert [e.question for e in add.examples] == ["add 2 and 3", "what is 10 plus 5"]
    args = add.parse_args({"a": 2, "b": "3"})
    result = add.run(args)
    assert result.value == 5 and result.text == "5"
    assert add.render_answer("q", args, result) == "The sum is 5."
    assert add(4, 5) == 9  # still callable like the function


def test_expert_decorator_rejects_untyped_and_varargs():
    with pytest.raises(TypeError, match="type hint"):

        @expert
        def f(x):  # noqa: ANN001
            """Doc."""

    with pytest.raises(TypeError, match=r"\*args"):

        @expert
        def g(*xs: int):
            """Doc."""


def test_expert_name_and_description_are_checked():
    with pytest.raises(ValueError, match="name"):
        expert(name="Bad Name")(lambda: 1)
    with pytest.raises(ValueError, match="description"):

        @expert
        def nodoc(x: int) -> int:
            return x


def test_parse_args_errors_name_the_field():
    with pytest.raises(ArgumentError) as exc:
        add.parse_args({"a": "not a number"})
    assert exc.value.expert == "add"
    assert any(d.startswith("a:") for d in exc.value.details)
    with pytest.raises(ArgumentError, match="c: Extra inputs are not permitted"):
        add.parse_args({"a": 1, "c": 2})
    with pytest.raises(ArgumentError, match="JSON object"):
        add.parse_args([1, 2])


async def _arun():
    return await add.arun(add.parse_args({"a": 1, "b": 2}))


def test_arun_default_runs_in_thread():
    import asyncio

    assert asyncio.run(_arun()).value == 3


# ----------------------------------------------------------------- registry
def test_registry_unique_names_lookup_and_schema():
    reg = ExpertRegistry([add])
    assert reg.names() == ["add"] and "add" in reg and len(reg) == 1
    with pytest.raises(RegistryError, match="already registered"):
        reg.register(add)
    with pytest.raises(RegistryError, match="known experts: add"):
        reg.get("nope")
    schema = reg.json_schema()
    assert schema[0]["name"] == "add" and schema[0]["origin"] == "user"
    json.dumps(schema)  # JSON-compatible
    reg.unregister("add")
    assert len(reg) == 0


def test_registry_loads_entry_point_plugins(monkeypatch):
    """Plugins come from the entry-point group mrkl.experts; a broken one is skipped and recorded."""

    class Plugin(Expert):
        name = "echo"
        description = "Echo the text back."

        class Args(BaseModel):
            text: str

        def run(self, args):
            return ExpertResult(value=args.text, text=args.text)

    def fake_entry_points(group):
        assert group == "mrkl.experts"
        dist = SimpleNamespace(name="demo-plugin")
        return [
            SimpleNamespace(name="echo", dist=dist, load=lambda: Plugin),
            SimpleNamespace(name="broken", dist=dist, load=lambda: (_ for _ in ()).throw(ImportError("no module x"))),
            SimpleNamespace(name="notexpert", dist=dist, load=lambda: 42),
        ]

    monkeypatch.setattr("mrkl.registry.entry_points", fake_entry_points)
    reg = ExpertRegistry()
    assert reg.load_plugins() == ["echo"]
    assert reg.origins["echo"] == "plugin:demo-plugin:echo"
    assert [label for label, _ in reg.load_errors] == ["demo-plugin:broken", "demo-plugin:notexpert"]
    assert "no module x" in reg.load_errors[0][1]


# ----------------------------------------------------------------- orchestrator
def _system(backend, *experts_):
    return MRKL(experts=list(experts_) or [add], backend=backend, router=LLMRouter(backend))


def test_ask_routes_runs_and_traces():
    backend = ScriptedBackend(card_scorer("add"), outputs=['a": 57, "b": 3}'])
    answer = _system(backend).ask("what is fifty seven plus three?")
    assert answer.text == "The sum is 60."
    assert answer.value == 60 and answer.expert == "add"
    d = answer.trace.decision
    assert d.expert == "add" and d.args == {"a": 57, "b": 3}
    assert d.confidence > 0.99 and set(d.scores) == {"add", "none"}
    assert not answer.trace.fallback
    step = answer.trace.steps[0]
    assert step.expert == "add" and step.result == 60 and step.error is None
    assert {"run", "compose"} <= set(step.timings)
    assert {"route", "run", "total"} <= set(answer.trace.timings)
    json.dumps(answer.to_dict())  # the whole trace is JSON-compatible


def test_route_only_runs_nothing():
    backend = ScriptedBackend(card_scorer("add"), outputs=['a": 1}'])
    decision = _system(backend).route("add 1")
    assert decision.expert == "add" and decision.args == {"a": 1, "b": 0}
    assert [c[0] for c in backend.calls].count("chat") == 0


def test_none_option_falls_back_to_the_language_model():
    backend = ScriptedBackend(card_scorer("none"), chat_reply="Jane Austen wrote it.")
    answer = _system(backend).ask("Who wrote Pride and Prejudice?")
    assert answer.expert == FALLBACK and answer.text == "Jane Austen wrote it."
    assert answer.trace.fallback and "no expert fits" in answer.trace.fallback_reason
    assert answer.trace.decision.expert is None
    assert answer.trace.steps[-1].expert == FALLBACK


def test_min_confidence_turns_a_weak_choice_into_none():
    backend = ScriptedBackend(lambda p, c: -1.0)  # every option equally likely
    router = LLMRouter(backend, min_confidence=0.9)
    decision = router.route("add 2 and 3", ExpertRegistry([add]))
    assert decision.expert is None and "below" in decision.reason


def test_invalid_json_is_repaired_once_then_accepted():
    backend = ScriptedBackend(card_scorer("add"), outputs=["this is not json", 'a": 2, "b": 3}'])
    answer = _system(backend).ask("add 2 and 3")
    d = answer.trace.decision
    assert answer.value == 5
    assert len(d.attempts) == 2 and "not valid JSON" in d.attempts[0]["error"]
    repair_prompt = backend.calls[-1][1] if backend.calls[-1][0] == "generate" else backend.calls[-2][1]
    assert "Error:" in repair_prompt and "Corrected arguments:" in repair_prompt


def test_unparseable_output_after_repair_is_a_clear_error_then_fallback():
    backend = ScriptedBackend(card_scorer("add"), outputs=["garbage ]]]", "still garbage"], chat_reply="fallback")
    answer = _system(backend).ask("add 2 and 3")
    assert answer.expert == FALLBACK and answer.text.endswith("; the language model answered instead)\nfallback")
    assert answer.text.startswith("(could not extract valid arguments for 'add': ")  # the user sees why
    assert "could not extract valid arguments for 'add'" in answer.trace.fallback_reason
    assert answer.trace.decision.error and answer.trace.steps[0].error


def test_schema_violation_is_reported_with_the_field():
    backend = ScriptedBackend(card_scorer("add"), outputs=['a": "x"}', 'b": 1}'])
    d = _system(backend).route("add x")
    assert d.args is None
    assert d.attempts[0]["error"].startswith("invalid arguments for expert 'add': a:")
    assert "a: Field required" in d.error


def test_expert_error_triggers_argument_repair():
    class Divide(Expert):
        name = "divide"
        description = "Divide two numbers."

        class Args(BaseModel):
            a: float
            b: float

        def run(self, args):
            if args.b == 0:
                raise ExpertError("division by zero: b must not be 0")
            return ExpertResult(value=args.a / args.b, text=f"{args.a / args.b:g}")

    backend = ScriptedBackend(card_scorer("divide"), outputs=['a": 10, "b": 0}', 'a": 10, "b": 2}'])
    answer = _system(backend, Divide()).ask("divide 10 by 2")
    assert answer.text == "5" and answer.expert == "divide"
    assert answer.trace.steps[0].error == "division by zero: b must not be 0"
    assert answer.trace.steps[1].error is None
    assert "division by zero" in backend.calls[-1][1]  # the repair prompt shows the error


def test_expert_bug_is_caught_and_answered_by_fallback():
    backend = ScriptedBackend(card_scorer("boom"), outputs=['x": 1}', 'x": 2}'], chat_reply="sorry")
    answer = _system(backend, Boom()).ask("explode")
    assert answer.expert == FALLBACK
    assert "ZeroDivisionError in expert 'boom': bug inside" in answer.trace.steps[0].error
    assert "expert 'boom' failed" in answer.trace.fallback_reason


@pytest.mark.parametrize(
    "question, message",
    [("", "empty"), ("   \n\t ", "empty"), ("x" * 50_000, "50,000 characters"), (None, "must be text")],
)
def test_bad_questions_get_a_clear_error(question, message):
    backend = ScriptedBackend()
    system = _system(backend)
    with pytest.raises(InvalidQuestionError, match=message):
        system.ask(question)
    with pytest.raises(InvalidQuestionError, match=message):
        system.route(question)
    assert backend.calls == []  # nothing reached the model


def test_backend_failure_during_routing_falls_back():
    from llm_backends.errors import BackendError

    class Failing(ScriptedBackend):
        def score(self, prompt, continuations):
            raise BackendError("prompt too long for the context")

    answer = _system(Failing(chat_reply="fallback")).ask("add 1 and 2")
    assert answer.expert == FALLBACK
    assert "prompt too long" in answer.trace.fallback_reason


def test_fallback_backend_failure_is_an_answer_not_a_crash():
    from llm_backends.errors import BackendError

    class Mute(ScriptedBackend):
        def chat(self, messages, **kw):
            raise BackendError("model crashed")

    answer = _system(Mute(card_scorer("none"))).ask("hello")
    assert answer.expert == FALLBACK and "model crashed" in answer.text
    assert answer.trace.steps[-1].error == "model crashed"


def test_routing_examples_of_decorated_expert_accept_tuple_or_object():
    @expert(examples=[RoutingExample("double 1", {"a": 1}), ("double 2", {"a": 2})])
    def double(a: int) -> int:
        """Double a number."""
        return 2 * a

    assert [(e.question, e.args) for e in double.examples] == [("double 1", {"a": 1}), ("double 2", {"a": 2})]


class Squarer(Expert):
    name = "square"
    description = "Square a number."

    class Args(BaseModel):
        n: int

    def symbolic_args(self, question):
        words = [w for w in question.replace("?", "").split() if w.isdigit()]
        return {"n": int(words[0])} if words else None

    def run(self, args):
        return ExpertResult(value=args.n**2, text=str(args.n**2))


def test_symbolic_parser_answers_even_when_model_arguments_are_invalid():
    backend = ScriptedBackend(card_scorer("square"), outputs=["nonsense", "more nonsense"])
    answer = _system(backend, Squarer()).ask("what is the square of 12?")
    assert answer.expert == "square" and answer.value == 144
    steps = answer.trace.steps
    assert len(steps) == 1 and steps[0].raw_output == "(expert's symbolic parser)" and steps[0].args == {"n": 12}


def test_symbolic_parser_goes_before_the_model_arguments():
    backend = ScriptedBackend(card_scorer("square"), outputs=['n": -1}'])

    class Picky(Squarer):
        def run(self, args):
            if args.n < 0:
                raise ExpertError("n must be positive")
            return super().run(args)

    answer = _system(backend, Picky()).ask("square 7 please")
    assert answer.value == 49 and len(answer.trace.steps) == 1
    assert [kind for kind, _ in backend.calls].count("generate") == 1  # no repair was needed


def test_without_a_symbolic_parse_the_failure_reason_is_kept():
    backend = ScriptedBackend(card_scorer("square"), outputs=["x", "y"], chat_reply="fallback")
    answer = _system(backend, Squarer()).ask("square it")
    assert answer.expert == FALLBACK
    assert answer.trace.fallback_reason.startswith("could not extract valid arguments for 'square'")
