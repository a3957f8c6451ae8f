"""The embedding router: ranking, cache, fit (threshold + temperature), Router protocol, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from experts import builtin_experts
from mrkl import expert
from mrkl.registry import ExpertRegistry
from router import Router
from router.embedding import EmbeddingRouter, LabelledQuestion


@expert(examples=[("how long is the word banana?", {"word": "banana"}), ("count the letters in strawberry", {"word": "strawberry"})])
def word_length(word: str) -> int:
    """Count the letters of a word."""
    return len(word)


@expert(examples=[("what's the weather like in Oslo?", {"city": "Oslo"}), ("will it rain in Paris tomorrow?", {"city": "Paris"})])
def weather(city: str) -> str:
    """Current weather and forecast for a city."""
    return f"sunny in {city}"


@pytest.fixture(scope="module")
def fitted():
    experts = builtin_experts()
    r = EmbeddingRouter()
    report = r.fit(experts)
    return r, experts, report


def test_ranks_the_right_expert_first_with_calibrated_probabilities(fitted):
    r, experts, _ = fitted
    rk = r.rank("what is twelve times thirty four?", experts)
    assert rk.experts[0] == "calculator"
    assert rk.scores[0] > rk.scores[1]
    assert set(rk.probabilities) == {"calculator", "database", "none"}
    assert math.isclose(sum(rk.probabilities.values()), 1.0, rel_tol=1e-9)
    assert rk.probabilities["calculator"] > 0.5
    rk = r.rank("how many albums does AC/DC have?", experts)
    assert rk.experts[0] == "database"
    assert rk.seconds < 5.0


def test_fit_on_routing_examples_leave_one_out(fitted):
    r, _, report = fitted
    # 12 calculator examples + the database's own, leave-one-out, plus 8 default negatives
    assert report.n_negative == 8 and report.n_positive >= 12
    assert report.expert_accuracy >= 0.9
    assert report.balanced_accuracy >= 0.9
    assert 0.0 < report.none_threshold < 0.8
    assert 1e-3 <= report.temperature <= 1.0
    assert r.none_threshold == report.none_threshold and r.temperature == report.temperature
    assert 0.0 <= report.ece <= 1.0 and report.nll > 0


def test_off_topic_question_gets_none_and_route_says_why(fitted):
    r, experts, _ = fitted
    best, rk = r.choose("write a short poem about the sea", experts)
    assert best is None
    assert rk.probabilities["none"] > 0.5
    d = r.route("write a short poem about the sea", ExpertRegistry(experts))
    assert d.expert is None and "none threshold" in d.reason
    assert d.confidence == pytest.approx(rk.probabilities["none"])


def test_route_takes_arguments_from_the_symbolic_parser(fitted):
    r, experts, _ = fitted
    assert isinstance(r, Router)
    d = r.route("what is fifty seven plus three?", ExpertRegistry(experts))
    assert d.expert == "calculator" and d.ok
    assert d.args == {"expression": "what is fifty seven plus three?"}
    assert d.raw_output == "(expert's symbolic parser)"
    assert d.timings["embedding_rank"] > 0


def test_no_argument_extractor_is_a_clear_error():
    r = EmbeddingRouter()
    reg = ExpertRegistry([word_length, weather])
    d = r.route("how many letters does the word pineapple have?", reg)
    assert d.expert == "word_length"
    assert not d.ok and "arg_router" in d.error
    args, _raw, err = r.repair_args("q", word_length, "", "bad")
    assert args is None and "arg_router" in err


def test_arg_router_extracts_arguments_for_the_chosen_expert():
    calls = []

    class FakeArgs:
        repair = True

        def extract_args(self, question, expert):
            calls.append(expert.name)
            return {"city": "Rome"}, '{"city": "Rome"}', None

        def repair_args(self, *a):  # pragma: no cover - not reached
            raise AssertionError

    r = EmbeddingRouter(arg_router=FakeArgs())
    d = r.route("is it going to rain in Rome?", ExpertRegistry([word_length, weather]))
    assert d.expert == "weather" and d.args == {"city": "Rome"} and calls == ["weather"]


def test_cache_embeds_only_new_experts():
    r = EmbeddingRouter()
    experts = [word_length, weather]
    r.rank("hello there", experts)
    before = r.texts_embedded
    r.rank("another question", experts)
    assert r.texts_embedded == before + 1  # only the question
    r.rank("another question", [*experts, *builtin_experts()])
    calc, db = builtin_experts()
    added = len(r.expert_texts(calc)) + len(r.expert_texts(db))
    assert r.texts_embedded == before + 2 + added


def test_fit_with_labelled_pairs_and_per_question_candidates():
    r = EmbeddingRouter()
    rep = r.fit(
        [word_length, weather],
        [
            ("how many characters are in 'kiwi'?", "word_length"),
            ("is it sunny in Madrid?", "weather"),
            ("who painted the Mona Lisa?", None),
            LabelledQuestion("forecast for Berlin", "weather", (weather,)),
        ],
        negatives=["tell me a joke", "what is the capital of Peru?"],
        use_routing_examples=False,
    )
    assert rep.n == 6 and rep.n_positive == 3 and rep.n_negative == 3
    assert rep.accuracy == 1.0


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="aggregate"):
        EmbeddingRouter(aggregate="median")
    with pytest.raises(ValueError, match="temperature"):
        EmbeddingRouter(temperature=0)
    r = EmbeddingRouter()
    with pytest.raises(ValueError, match="empty"):
        r.scores("   ", [weather])
    with pytest.raises(ValueError, match="not among"):
        r.fit([weather], [("hi", "calculator")])
    with pytest.raises(ValueError, match="at least one"):
        r.fit([], [], negatives=[], use_routing_examples=False)
    d = r.route("anything", ExpertRegistry([]))
    assert d.expert is None and d.reason == "no experts registered"
    d = r.route("", ExpertRegistry([weather]))
    assert d.expert is None and "empty" in d.error


def test_encoder_that_returns_garbage_is_a_clear_error():
    class Garbage:
        def encode(self, texts, **kw):
            return np.full((len(texts), 4), np.nan, dtype=np.float32)

    r = EmbeddingRouter(encoder=Garbage())
    d = r.route("what is 2 plus 2?", ExpertRegistry([weather]))
    assert d.expert is None and "unusable array" in d.error


def test_question_in_another_language_routes_or_falls_back(fitted):
    r, experts, _ = fitted
    best, rk = r.choose("¿Cuántos álbumes tiene Led Zeppelin?", experts)
    assert best == "database"  # the names and the question's shape carry across languages
    assert rk.probabilities["calculator"] < 0.05


def test_an_expert_whose_texts_change_is_embedded_again():
    def lookup(name: str) -> str:
        """placeholder"""
        return name

    old = expert(lookup, name="lookup", description="Current weather and forecast for a city.")
    new = expert(lookup, name="lookup", description="Count the letters of a word.")
    r = EmbeddingRouter()
    q = "how many letters are in the word banana?"
    s_old = r.scores(q, [old])[0]
    s_new = r.scores(q, [new])[0]
    assert s_new > s_old + 0.1  # the new description is used, not the cached old one
    assert r.scores(q, [old])[0] == pytest.approx(s_old)
