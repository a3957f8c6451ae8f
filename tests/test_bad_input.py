"""Bad input through the whole system with the real experts: a clear error or the fallback, never a crash."""

from __future__ import annotations

import json
import time

import pytest

from conftest import ScriptedBackend, card_scorer
from experts import builtin_experts
from mrkl import FALLBACK, MRKL
from router import LLMRouter


def _system(backend):
    return MRKL(experts=builtin_experts(), backend=backend, router=LLMRouter(backend))


@pytest.mark.parametrize(
    "expression, message",
    [
        ("__import__('os').system('echo pwned')", "not allowed"),
        ("().__class__.__bases__[0].__subclasses__()", "not allowed"),
        ("open('/etc/passwd').read()", "not allowed"),
        ("9**9**9", "too large"),
        ("factorial(10**9)", "too large"),
    ],
)
def test_hostile_expression_is_refused_then_falls_back(expression, message):
    raw = json.dumps({"expression": expression})[2:]  # what the model writes after the '{"' prefill
    backend = ScriptedBackend(card_scorer("calculator"), outputs=[raw, raw], chat_reply="I can't compute that.")
    t0 = time.perf_counter()
    answer = _system(backend).ask("compute this")
    assert time.perf_counter() - t0 < 5
    assert answer.expert == FALLBACK
    errors = [s.error for s in answer.trace.steps if s.error]
    assert errors and message in errors[0].lower(), errors
    assert "expert 'calculator' failed" in answer.trace.fallback_reason
    assert answer.text.startswith("(expert 'calculator' failed: ") and answer.text.endswith("\nI can't compute that.")


def test_unknown_table_is_repaired_with_the_list_of_tables():
    outputs = ['table": "Songs", "aggregate": "count"}', 'table": "Track", "aggregate": "count"}']
    backend = ScriptedBackend(card_scorer("database"), outputs=outputs)
    answer = _system(backend).ask("how many songs are there?")
    first = answer.trace.steps[0].error
    assert first.startswith("unknown table 'Songs'") and "Track" in first
    assert answer.expert == "database" and answer.value == 3503
    repair_prompt = [p for kind, p in backend.calls if kind == "generate"][-1]
    assert "Error: unknown table 'Songs'" in repair_prompt


def test_unknown_column_twice_ends_in_the_fallback_with_the_reason():
    bad = 'table": "Customer", "where": {"Nation": "Brazil"}}'
    backend = ScriptedBackend(card_scorer("database"), outputs=[bad, bad], chat_reply="no idea")
    answer = _system(backend).ask("which customers live in Brazil?")
    assert answer.expert == FALLBACK and answer.text.endswith("the language model answered instead)\nno idea")
    assert "unknown column 'Nation'" in answer.trace.fallback_reason
    assert "unknown column 'Nation'" in answer.text  # the user sees why the expert did not answer
    assert "Country" in answer.trace.steps[0].error  # the error lists the real columns


def test_sql_injection_in_a_value_matches_nothing_and_changes_nothing():
    evil = json.dumps({"table": "Track", "aggregate": "count", "where": {"Name": "x'; DROP TABLE Track; --"}})[2:]
    backend = ScriptedBackend(card_scorer("database"), outputs=[evil])
    system = _system(backend)
    assert system.ask("count tracks named x").value == 0
    db = system.registry.get("database")
    count = db.run(db.parse_args({"table": "Track", "aggregate": "count"}))
    assert count.value == 3503


def test_model_emitting_garbage_everywhere_still_gets_an_answer():
    backend = ScriptedBackend(lambda p, c: float("nan"), generator=lambda p: "\x00\x01 ]]] {{{", chat_reply="fallback")
    answer = _system(backend).ask("what is 2 plus 2?")
    assert answer.expert == FALLBACK and answer.text == "fallback"
    assert "unusable scores" in answer.trace.fallback_reason
    json.dumps(answer.to_dict())


def test_garbage_arguments_from_the_model_fall_back_with_the_parse_error():
    backend = ScriptedBackend(card_scorer("calculator"), generator=lambda p: "\x00\x01 ]]] {{{", chat_reply="fallback")
    answer = _system(backend).ask("compute the thing I mentioned")
    assert answer.expert == FALLBACK
    assert "not valid JSON" in answer.trace.decision.error


def test_garbage_arguments_are_rescued_by_the_calculators_own_parser():
    backend = ScriptedBackend(card_scorer("calculator"), generator=lambda p: "\x00\x01 ]]] {{{")
    answer = _system(backend).ask("what is 2 plus 2?")
    assert answer.expert == "calculator" and answer.value == 4
    assert answer.trace.steps[-1].raw_output == "(expert's symbolic parser)"


def test_a_looping_fallback_answer_keeps_each_sentence_once():
    looping = "A cat is a cat. " * 20 + "\nCats purr.\nCats purr."
    backend = ScriptedBackend(card_scorer("none"), chat_reply=looping)
    answer = _system(backend).ask("tell me a joke about cats")
    assert answer.expert == FALLBACK
    assert answer.text == "A cat is a cat.\nCats purr."
    assert answer.trace.steps[-1].raw_output == looping  # the trace keeps what the model wrote
