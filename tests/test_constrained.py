"""Constrained argument decoding: copy bias, grounding, the relevance gate; with the real model (slow)."""

from __future__ import annotations

import json

import pytest
import torch

from llm_backends.constrained import CopyBias, number_spans
from router.arguments import documented_default, grounded_in
from router.relevance import RelevanceGate, ungrounded_share


def char_encode(text: str) -> list[int]:
    return [ord(c) for c in text]


def boosted(bias: CopyBias, text: str) -> set[str]:
    out = bias(text, torch.zeros(256))
    return {chr(i) for i in torch.nonzero(out > 0).flatten().tolist()}


def test_number_spans():
    assert number_spans("a=-3, b = 1,500 and 9.8; x2 is not") == ["-3", "1500", "9.8"]


def test_number_copy_bias_prefers_unused_numbers_in_order():
    src = "coefficients a = 3, b = -11, and c = -4"
    bias = CopyBias(char_encode, src, mode="number", bonus=4.0, end_ids=[ord(",")], first_bonus=2.0)
    out = bias(" ", torch.zeros(256))
    assert out[ord("3")] == 6.0 and out[ord("-")] == 4.0 and out[ord("7")] == 0.0
    assert boosted(bias, " -1") == {"1"}  # continues -11
    assert boosted(bias, " -11") == {","}  # -11 is complete: the end gets the bonus
    used = CopyBias(char_encode, src, mode="number", bonus=4.0, used_numbers=["3"], first_bonus=2.0)
    out = used(" ", torch.zeros(256))
    assert out[ord("3")] == 0.0 and out[ord("-")] == 6.0  # 3 is taken; -11 is now the first


def test_string_copy_bias_follows_question_spans():
    src = "Weather in New York today?"
    bias = CopyBias(char_encode, src, mode="string", bonus=3.0, end_ids=[ord('"')])
    assert {"W", "i", "N", "Y", "t"} <= boosted(bias, ' "')  # any word start
    assert boosted(bias, ' "New') == {" ", '"'}  # continue to " York", or end at the word boundary
    assert boosted(bias, ' "Ne') == {"w"}  # no end inside a word
    assert boosted(bias, ' "Boston') == set()  # not a span: no bias
    assert boosted(bias, ' "New York", "x": 1') == set()  # outside any string


def test_bias_never_revives_masked_tokens():
    bias = CopyBias(char_encode, "value 42", mode="number", bonus=5.0)
    logits = torch.full((256,), -torch.inf)
    logits[ord("4")] = 0.0
    out = bias(" ", logits)
    assert out[ord("4")] == 5.0 and torch.isinf(out[ord("2")])


def test_grounding_and_defaults():
    q = "Find a vegan restaurant in New York open until 11 PM with a detailed menu"
    assert grounded_in("New York", q) and not grounded_in("Boston", q)
    assert grounded_in(11, q) and not grounded_in(12, q)
    assert not grounded_in(11, q, used_numbers=[11.0])  # the only 11 is taken
    assert grounded_in(True, q, name="detailed") and not grounded_in(True, q, name="include_photos")
    assert not grounded_in(False, q, name="detailed")
    assert grounded_in(["New York", "vegan"], q) and not grounded_in([], q)
    assert not grounded_in([11, 5], q) and not grounded_in([11], q, used_numbers=[11.0])
    assert documented_default({"type": "boolean", "description": "Return formatted string. Default is true."}) is True
    assert documented_default({"type": "boolean", "description": "Whether to round (default: False)"}) is False
    assert documented_default({"type": "integer", "default": 3}) == 3
    assert documented_default({"type": "boolean", "description": "Round it."}) is None


def test_ungrounded_share():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"}, "c": {"type": "boolean"}},
              "required": ["a", "b", "c"]}
    assert ungrounded_share({"a": 5, "b": "Paris", "c": True}, schema, "5 nights in Paris") == 0.0
    assert ungrounded_share({"a": 7, "b": "Paris", "c": True}, schema, "5 nights in Paris") == 0.5
    assert ungrounded_share(None, schema, "anything") == 1.0
    assert ungrounded_share({}, {"type": "object", "properties": {}}, "q") == 0.0


def test_relevance_gate_fit_separates_with_the_grounding_penalty():
    # topically similar but unanswerable questions (high similarity, ungrounded arguments)
    rows = [(0.6, 0.0, True), (0.55, 0.0, True), (0.5, 0.5, True), (0.45, 0.0, True),
            (0.6, 1.0, False), (0.58, 1.0, False), (0.2, 0.5, False), (0.1, 1.0, False)]
    gate = RelevanceGate()
    report = gate.fit(rows)
    assert report["balanced_accuracy"] == 1.0 and gate.weight > 0
    assert all(gate.accepts(s, u) == y for s, u, y in rows)
    with pytest.raises(ValueError, match="should and should not"):
        gate.fit([(0.5, 0.0, True)])
    with pytest.raises(ValueError, match="needs labelled rows"):
        gate.fit([])


# ---------------------------------------------------------------- the real model
NESTED = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "nights": {"type": "integer"},
        "room": {"type": "string", "enum": ["single", "double", "suite"]},
        "guests": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}, "required": ["name", "age"]}},
    },
    "required": ["city", "nights", "room", "guests"],
}


def _valid_nested(obj):
    return (
        isinstance(obj, dict) and set(obj) == set(NESTED["properties"])
        and isinstance(obj["city"], str) and isinstance(obj["nights"], int) and obj["room"] in ("single", "double", "suite")
        and all(set(g) == {"name", "age"} and isinstance(g["age"], int) for g in obj["guests"])
    )


@pytest.mark.slow
def test_constrained_decoding_is_valid_json_even_from_a_garbage_model(smollm2):
    from llm_backends.constrained import JSONSchemaConstraint

    prompt = "Book 3 nights in Lisbon, double room, for Ana (34).\nArguments (JSON):"
    gen = torch.Generator().manual_seed(0)
    noise = 50.0  # logits swamped by noise: a model that emits garbage
    hook = JSONSchemaConstraint(smollm2.tokenizer, NESTED)

    def noisy(ids, logits):
        return hook(ids, logits + noise * torch.randn(logits.shape, generator=gen))

    text = smollm2.generate(prompt, max_new_tokens=80, logits_hook=noisy)
    # every prefix the mask allowed is valid: complete → schema-valid JSON; cut by the
    # budget → not accepted (the router then reports "not complete", never broken JSON)
    assert _valid_nested(json.loads(text)) if hook.accepted else text.lstrip().startswith("{")


@pytest.mark.slow
def test_router_copies_signed_numbers_and_skips_invented_optionals(smollm2):
    from router.arguments import ConstrainedArguments

    schema = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}, "c": {"type": "integer"},
                                               "precision": {"type": "integer", "description": "decimal places"}},
              "required": ["a", "b", "c"]}
    q = "Find the roots of a quadratic equation with coefficients a = 3, b = -11, and c = -4."
    prompt = f"Function: solve_quadratic\nArguments (JSON schema): {json.dumps(schema)}\nQuestion: {q}\nArguments:"
    args, raw = ConstrainedArguments(smollm2).extract(prompt, schema, q, per_field=True, ground_optional=True)
    assert args == {"a": 3, "b": -11, "c": -4}
    assert json.loads(raw) == args


@pytest.mark.slow
def test_prefix_kv_reuse_gives_the_same_text(smollm2):
    base = "Question: Find the area of a triangle with base 10 and height 5.\nArguments: {\"base\":"
    longer = base + ' 10, "height":'
    smollm2.clear_prompt_cache()
    smollm2.generate(base, max_new_tokens=3)
    reused = smollm2.generate(longer, max_new_tokens=3)  # runs only the new tokens
    smollm2.clear_prompt_cache()
    fresh = smollm2.generate(longer, max_new_tokens=3)
    assert reused == fresh and fresh.strip()


def test_relevance_gate_operating_point():
    rows = [(0.6, 0.0, True), (0.5, 0.0, True), (0.4, 0.0, True), (0.3, 0.0, True),
            (0.45, 0.0, False), (0.35, 0.0, False), (0.2, 0.0, False), (0.1, 0.0, False)]
    gate = RelevanceGate()
    gate.fit(rows, min_no_call=1.0)  # no irrelevant question may be called
    assert 0.45 < gate.threshold <= 0.5 and gate.report["no_call_rate_irrelevant"] == 1.0
    assert gate.report["call_rate_relevant"] == 0.5
    gate.fit(rows, min_no_call=0.75)  # one of four may be called: one more relevant call
    assert gate.report["call_rate_relevant"] == 0.75 and gate.report["no_call_rate_irrelevant"] == 0.75


def test_allowed_tokens_unpacks_llguidance_bitmasks():
    from llm_backends.constrained import allowed_tokens

    mask = torch.zeros(3, dtype=torch.int32)
    for tok in (0, 5, 31, 32, 63, 70):
        mask[tok // 32] |= torch.tensor(1 << (tok % 32), dtype=torch.int64).to(torch.int32)  # bit 31 makes the word negative
    got = allowed_tokens(mask, 71)
    assert got.dtype == torch.bool and got.shape == (71,)
    assert torch.nonzero(got).flatten().tolist() == [0, 5, 31, 32, 63, 70]


def test_string_copy_bias_skips_spans_other_arguments_took():
    src = "Compare AGTC against reference AGGC"
    bias = CopyBias(char_encode, src, mode="string", bonus=3.0, end_ids=[ord('"')], used_strings=["AGTC"])
    starts = boosted(bias, ' "')
    assert "A" in starts  # 'AGGC' still starts with A
    fresh = CopyBias(char_encode, "Sequence AGTC", mode="string", bonus=3.0, used_strings=["agtc"])
    assert "A" not in boosted(fresh, ' "') and "S" in boosted(fresh, ' "')  # case-insensitive
    assert boosted(fresh, ' "AG') == {"T"}  # once written, the span is still followed


def test_invented_strings_are_placeholders_not_rewrites():
    from router.arguments import invented

    q = "Find the highest grossing bank in the U.S for year 2020, with detail on March 11, 2022."
    assert invented("the_country_to_get_data_from", q)
    assert invented("object", q) and invented("Ace", q)
    assert not invented("U.S", q) and not invented("bank", q)
    assert not invented("detailed", q)  # an inflection of "detail"
    assert not invented("2022-03-11", q)  # a date rewritten, not invented
    assert not invented("", q) and not invented(5, q) and not invented("x", None)  # type: ignore[arg-type]


def test_an_arguments_own_name_is_no_value_and_shared_spans_are_found():
    from router.arguments import _shared_with, invented

    q = "Get the highest scoring player of game 'Valorant' in 2022 season."
    assert invented("game", q, "game") and invented("contract", "a rental contract", "contract_type")
    assert not invented("Valorant", q, "game") and not invented("game", q)  # without the name: a word of the question
    args = {"game": "2022", "year": 2022}
    spans = {"game": (10, 17)}
    assert _shared_with("2022", args, spans, q) == "game"
    assert _shared_with("Valorant", args, spans, q) is None
    assert _shared_with("2022", args, spans, q + " Also 2022.") is None  # written twice: both may take it
    assert _shared_with(5, args, spans, q) is None and _shared_with("", args, spans, q) is None


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, q, params, want",
    [
        (
            "get_restaurant", "Get the highest rated sushi restaurant in Boston, that opens on Sundays.",
            {"cuisine": "Cuisine of the restaurant.", "location": "City where the restaurant is located."},
            {"cuisine": "sushi", "location": "Boston"},
        ),
        (
            "get_metal_price", "Get current Gold price per ounce.",
            {"metal": "The metal whose price needs to be fetched.", "measure": "The measure unit for price, like 'ounce' or 'kg'."},
            {"metal": "Gold", "measure": "ounce"},
        ),
        (
            "estimate_population", "Estimate the population of pandas in the wild in China.",
            {"species": "The species for which population needs to be estimated.", "country": "The country where the species lives."},
            {"species": "pandas", "country": "China"},
        ),
    ],
)
def test_required_strings_are_spans_of_the_question_and_do_not_share_one(smollm2, name, q, params, want):
    """Decoded with the real argument prompt: two arguments do not take one span (the model scores
    which keeps it), and a placeholder the model invents is decoded again as a span of the question."""
    import json

    from mrkl.bfcl import experts_for
    from router.arguments import invented
    from router.llm_router import LLMRouter

    fn = {"name": name, "description": name.replace("_", " "), "parameters": {
        "type": "dict", "properties": {k: {"type": "string", "description": d} for k, d in params.items()}, "required": list(params)}}
    router = LLMRouter(smollm2, constrained=True, per_field=True, ground_optional=True, repair=False)
    _args, raw, err = router.extract_args(q, experts_for([fn])[0])
    assert err is None
    args = json.loads(raw)
    assert not any(invented(v, q, k) for k, v in args.items())
    assert args == want


def test_a_string_that_runs_into_another_arguments_value_is_cut_before_it():
    from router.arguments import trailing_value_removed as cut

    q = "Get me information about Natural History Museum in London including timings"
    assert cut("Natural History Museum in London", ["London", ["timings"]], q) == "Natural History Museum"
    assert cut("London 2022/08/16", ["08-16-2022"], "What is the air quality index in London 2022/08/16?") == "London"
    assert cut("New York, NY", ["NY"], "in New York, NY") == "New York, NY"  # a comma and a 2-letter code: kept
    assert cut("London", ["London"], "in London") == "London"  # nothing left before the tail
    assert cut("2022/08/16", [], "in London 2022/08/16") == "2022/08/16"
    assert cut(5, ["x"], "q") == 5 and cut("a b", ["b"], None) == "a b"  # type: ignore[arg-type]


def test_codes_are_knowledge_not_inventions():
    from router.arguments import invented

    q = "Provide me the official crime rate of violent crime in San Francisco in 2020."
    assert not invented("CA", q) and not invented("USA", q)
    assert invented("Ca", q) or invented("california_state_code", q)


def test_list_items_the_question_does_not_write_are_dropped():
    from router.arguments import _grounded_items

    strings = {"type": "array", "items": {"type": "string"}}
    q = "Find the market performance of the S&P 500 and the Dow Jones over the past 5 days."
    assert _grounded_items(["S&P 500", "Dow Jones", "Dow Jones_2022"], strings, q) == ["S&P 500", "Dow Jones"]
    assert _grounded_items(["engine_size", "fuel"], strings, "engine size and fuel") == ["engine_size", "fuel"]
    assert _grounded_items(["x1", "x2"], strings, q) == ["x1", "x2"]  # none written: the model's guess stands
    enum = {"type": "array", "items": {"type": "string", "enum": ["a", "bb"]}}
    assert _grounded_items(["bb"], enum, q) == ["bb"]
    assert _grounded_items(["Dow Jones", "zz"], {**strings, "minItems": 2}, q) == ["Dow Jones", "zz"]
    assert _grounded_items([1, 2], {"type": "array", "items": {"type": "integer"}}, q) == [1, 2]


def test_list_items_that_are_another_arguments_value_are_dropped():
    from router.arguments import _without_other_values

    strings = {"type": "array", "items": {"type": "string"}}
    assert _without_other_values(["Age", "Income", "Purchase_Amount"], strings, ["Purchase_Amount", True]) == ["Age", "Income"]
    assert _without_other_values(["Purchase_Amount"], strings, ["Purchase_Amount"]) == ["Purchase_Amount"]  # nothing left
    assert _without_other_values(["a"], {"type": "array", "items": {"type": "string", "enum": ["a"]}}, ["a"]) == ["a"]
    assert _without_other_values("x", {"type": "string"}, ["x"]) == "x"


def test_copy_bias_starts_words_after_an_opening_quote_not_after_an_apostrophe():
    from llm_backends.constrained import CopyBias

    src = 'the user\'s game \'Ticket to Ride\' and "Dune"'
    bias = CopyBias(lambda t: [ord(c) for c in t], src, mode="string")
    starts = {src[i : i + 4] for i in bias.starts}
    assert {"Tick", "Dune", "user"} <= starts and "s ga" not in starts


def test_own_name_matches_singular_and_plural():
    from router.arguments import _own_name

    assert _own_name("trophies", "trophy") and _own_name("month", "month") and _own_name("Contracts", "contract_type")
    assert not _own_name("Fortnite", "game") and not _own_name("", "game") and not _own_name("month", "")


def test_names_with_of_are_not_cut_and_bad_others_are_no_crash():
    from router.arguments import trailing_value_removed as cut

    assert cut("Museum of London", ["London"], "the Museum of London in London") == "Museum of London"
    assert cut("Bank of America", ["America"], "Bank of America") == "Bank of America"
    assert cut("x", None, "q") == "x"  # type: ignore[arg-type]


@pytest.mark.slow
def test_stated_values_are_not_snapped_and_repairs_keep_the_schema(smollm2):
    from llm_backends.errors import BackendError
    from router.arguments import ConstrainedArguments

    dec = ConstrainedArguments(smollm2)

    def run(schema, q):
        prompt = f"Arguments (JSON schema): {json.dumps(schema)}\nQuestion: {q}\nArguments:"
        return dec.extract(prompt, schema, q, per_field=True, ground_optional=True)[0]

    n = {"type": "object", "required": ["n"], "properties": {
        "n": {"type": "integer", "description": "the number of times that interest is compounded per unit time"}}}
    assert run(n, "Invest $12000 at 5% compounded monthly for 3 years") == {"n": 12}  # not 12000
    capped = {"type": "object", "required": ["num_tickets"], "properties": {
        "num_tickets": {"type": "integer", "maximum": 10, "description": "Number of tickets"}}}
    assert 0 <= run(capped, "Book 25 tickets for the concert")["num_tickets"] <= 10
    short = {"type": "object", "required": ["location"], "properties": {
        "location": {"type": "string", "maxLength": 10, "description": "The city and state, e.g. San Francisco, CA"}}}
    assert len(run(short, "What's the weather in Portland?")["location"]) <= 10
    try:
        got = run({"type": "object", "properties": {"a": "string", "b": None}, "required": ["a"]}, "a is hello")
    except BackendError:
        got = None
    assert got is None or isinstance(got, dict)  # a clear error or a result, never an AttributeError


@pytest.mark.slow
def test_values_of_the_wrong_kind_are_decoded_again_or_dropped(smollm2):
    """A year copied into a place is decoded again ("Mississippi river"); a name in an optional
    e-mail argument is dropped; a number stated for a later argument is not reused by an earlier one."""
    from router.arguments import ConstrainedArguments

    dec = ConstrainedArguments(smollm2)

    def run(schema, q):
        prompt = f"Arguments (JSON schema): {json.dumps(schema)}\nQuestion: {q}\nArguments:"
        return dec.extract(prompt, schema, q, per_field=True, ground_optional=True)[0]

    turtles = {"type": "object", "required": ["location"], "properties": {
        "location": {"type": "string", "description": "The name of the location."},
        "year": {"type": "integer", "description": "The year of the data requested. Default is 2001."}}}
    got = run(turtles, "Find out the population and species of turtles in Mississippi river in 2020.")
    assert got["location"].startswith("Mississippi") and got["year"] == 2020  # not location="2020"
    mail = {"type": "object", "required": ["to", "subject"], "properties": {
        "to": {"type": "string", "description": "The email address to send to."},
        "subject": {"type": "string", "description": "The subject of the email."},
        "cc": {"type": "string", "description": "The email address to carbon copy. Default is empty if not specified."}}}
    got = run(mail, "Send an email to John Doe at john.doe@example.com with the subject 'Meeting'.")
    assert got == {"to": "john.doe@example.com", "subject": "Meeting"}
    dice = {"type": "object", "required": ["number", "dice_number"], "properties": {
        "number": {"type": "integer", "description": "The number for which the odds are calculated."},
        "dice_number": {"type": "integer", "description": "The number of dice involved in the roll."}}}
    assert run(dice, "Calculate the odds of rolling a 7 with two dice in the board game Monopoly.") == {"number": 7, "dice_number": 2}
