"""A representative handful of real questions through the real SmolLM2-135M, end to end (slow).

Greedy decoding is deterministic, so the answers' values are asserted exactly.
The whole question file runs in ``benchmarks/questions.py``.
"""

from __future__ import annotations

import pytest

from mrkl import FALLBACK, MRKL
from mrkl.evaluation import answer_matches
from router import LLMRouter
from router.two_stage import TwoStageRouter

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def system(smollm2):
    """The LLM router over all experts, explicitly: these tests check its own argument extraction."""
    return MRKL(backend=smollm2, router=LLMRouter(smollm2))


@pytest.fixture(scope="module")
def default_system(smollm2):
    """MRKL's default router: embedding shortlist, LLM choice, the expert's own parser first."""
    return MRKL(backend=smollm2)


@pytest.mark.parametrize(
    "question, expert, value, args",
    [
        ("what is fifty seven plus three?", "calculator", 60, {"expression": "57 + 3"}),
        ("15% of 2,340", "calculator", 351, None),
        ("solve 3x + 7 = 22", "calculator", [5], None),
        ("How many albums does Led Zeppelin have?", "database", 14, None),
        ("How many tracks are on the album Master Of Puppets?", "database", 8, None),
        ("How many customers live in the USA?", "database", 13, None),
        ("subtract 9 from 30 and double it", "calculator", 42, None),
    ],
)
def test_expert_questions_get_the_right_value(system, question, expert, value, args):
    answer = system.ask(question)
    assert answer.expert == expert, answer.trace.format()
    assert not answer.trace.fallback
    assert answer.value == value, answer.trace.format()
    if args is not None:
        assert answer.trace.decision.args == args
    assert answer.trace.decision.confidence > 0.5


def test_database_answer_lists_the_customers(system):
    answer = system.ask("Which customers live in Canada?")
    assert answer.expert == "database", answer.trace.format()
    expected = ["François Tremblay", "Mark Philips", "Jennifer Peterson", "Robert Brown", "Edward Francis",
                "Martha Silk", "Aaron Mitchell", "Ellie Sullivan"]
    assert answer_matches(answer.text, expected), answer.text
    assert "database:Customer" in answer.trace.steps[-1].sources


def test_question_no_expert_covers_goes_to_the_language_model(system):
    # (not an encyclopedia question: those now go to the wikipedia expert)
    answer = system.ask("Tell me a joke about computers.")
    assert answer.expert == FALLBACK
    assert answer.trace.decision.expert is None
    assert answer.trace.fallback_reason.startswith("no expert fits")
    assert answer.text.strip()  # the model said something


def test_default_two_stage_system_answers_with_shortlist_and_stage_timings(default_system):
    assert isinstance(default_system.router, TwoStageRouter)
    answer = default_system.ask("what is fifty seven plus three?")
    d = answer.trace.decision
    assert answer.expert == "calculator" and answer.value == 60
    assert d.args == {"expression": "what is fifty seven plus three?"}  # the calculator's own parser
    assert d.raw_output == "(expert's symbolic parser)"
    assert [n for n, _ in d.shortlist][0] == "calculator" and len(d.shortlist) == 3  # k = 3 of the built-in experts
    assert {"embedding_shortlist", "choose_expert", "extract_args"} <= set(d.timings)
    answer = default_system.ask("How many albums does Led Zeppelin have?")
    assert answer.expert == "database" and answer.value == 14, answer.trace.format()
    assert answer.trace.decision.shortlist[0][0] == "database"
