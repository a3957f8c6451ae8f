"""The LLM router's prompts, scoring and JSON handling (scripted backend, fast)."""

from __future__ import annotations

import pytest

from conftest import ScriptedBackend
from mrkl import ExpertRegistry, expert
from router import NONE, LLMRouter, parse_json_object
from router.llm_router import lexical_similarity


@expert(examples=[("what is 2 plus 2", {"expression": "2 + 2"}), ("solve x + 1 = 3", {"expression": "x + 1 = 3"})])
def calc(expression: str) -> str:
    """Exact arithmetic and equations."""
    return expression


@expert(examples=[("how many albums are there", {"table": "Album"}), ("list the artists", {"table": "Artist"})])
def db(table: str) -> str:
    """Music store database. Tables: Album(AlbumId, Title, ArtistId), Artist(ArtistId, Name), Track(TrackId, Name, AlbumId, MediaTypeId, GenreId, Composer, Milliseconds, Bytes, UnitPrice), Customer(CustomerId, FirstName, LastName, Company, Address, City, State, Country)."""  # noqa: E501
    return table


@pytest.mark.parametrize(
    "text, expected",
    [
        ('{"a": 1}', {"a": 1}),
        ('  here you go: {"a": "x}"} trailing', {"a": "x}"}),
        ('{"a": {"b": [1, 2]}} {"c": 3}', {"a": {"b": [1, 2]}}),
        ("{'a': True, 'b': None}", {"a": True, "b": None}),
        ('{"a": 1,}', {"a": 1}),
        ('{"a": {"b": 1', {"a": {"b": 1}}),  # closing braces left out
        ('{"a": [1, 2], "b": "x"', {"a": [1, 2], "b": "x"}),
    ],
)
def test_parse_json_object_tolerates_common_model_slips(text, expected):
    assert parse_json_object(text) == expected


@pytest.mark.parametrize("text", ["", "no braces at all", '{"a" 1}', "{nonsense}", "[1, 2]"])
def test_parse_json_object_rejects_garbage_with_a_clear_message(text):
    with pytest.raises(ValueError, match="JSON"):
        parse_json_object(text)


@pytest.mark.parametrize(
    "text, where",
    [
        ('{"sql": "SELECT COUNT(*) FROM Album WHERE AlbumId = 100000000000', "a string"),
        ('{"a": "unterminated', "a string"),
        ('{"a": [1, 2', "a list"),
        ('{"a": {"b": [1, 2, 3', "a list"),
    ],
)
def test_parse_json_object_rejects_a_value_cut_off_by_the_token_budget(text, where):
    with pytest.raises(ValueError, match=f"stops inside {where}"):
        parse_json_object(text)


def test_lexical_similarity():
    assert lexical_similarity("How many genres are there?", "tracks in the Jazz genre") > 0
    assert lexical_similarity("the of a", "a the of") == 0.0
    assert lexical_similarity("album count", "album count") == 1.0


def test_channel_scoring_uses_one_card_per_option():
    backend = ScriptedBackend(lambda p, c: -2.0 if p.startswith("Expert: db\n") else -5.0)
    router = LLMRouter(backend)
    best, scores, probs = router.choose("how many artists are there?", [calc, db])
    assert best == "db" and list(scores) == ["calc", "db", NONE]
    assert probs["db"] == pytest.approx(1 / (1 + 2 * 2.718281828459045**-3), rel=1e-6)
    prompts = [p for kind, p in backend.calls if kind == "score"]
    assert len(prompts) == 3
    assert "- how many albums are there\n" in prompts[1] and prompts[1].endswith("-")
    assert prompts[2].startswith("Expert: none\n") and "Who wrote the play Hamlet?" in prompts[2]
    # a long description is cut to its first sentence on the card
    assert "What it does: Music store database.\n" in prompts[1]


def test_direct_scoring_scores_each_name_after_one_prompt():
    seen = []

    def scorer(prompt, cont):
        seen.append(cont)
        return {" calc": -0.5, " db": -3.0, " none": -1.0}[cont]

    router = LLMRouter(ScriptedBackend(scorer), choice="direct")
    best, _, probs = router.choose("what is 3 plus 4", [calc, db])
    assert best == "calc" and seen == [" calc", " db", " none"]
    prompt = router.choice_prompt("what is 3 plus 4", [calc, db])
    assert prompt.endswith("Expert:")
    # the most similar example comes last
    assert prompt.splitlines()[-5:] == ["Question: what is 2 plus 2", "Expert: calc", "", "Question: what is 3 plus 4", "Expert:"]


def test_unknown_choice_mode_is_refused():
    with pytest.raises(ValueError, match="channel"):
        LLMRouter(ScriptedBackend(), choice="vote")


def test_args_prompt_lists_schema_and_nearest_examples():
    router = LLMRouter(ScriptedBackend(), arg_examples=1)
    prompt = router.args_prompt("what is 7 plus 8", calc)
    assert '"expression":{"type":"string"}' in prompt
    assert "Question: what is 2 plus 2\nArguments: {\"expression\": \"2 + 2\"}" in prompt
    assert "solve x + 1" not in prompt  # only the nearest example
    assert prompt.endswith("Question: what is 7 plus 8\nArguments:")


def test_no_experts_means_no_decision():
    decision = LLMRouter(ScriptedBackend()).route("anything", ExpertRegistry())
    assert decision.expert is None and decision.reason == "no experts registered"
