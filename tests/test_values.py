"""Value normalisation for argument extraction (router/values.py) and its use in router/arguments.py."""

import pytest

from router.arguments import _distinct_items, _pick_expression, field_schema, grounded_in
from router.values import (
    implied_value,
    is_expression_argument,
    math_expressions,
    normalize_expression,
    number_text,
    question_numbers,
)


@pytest.mark.parametrize(
    "text, numbers",
    [
        ("a=-3, b = 1,500 and 9.8; x2 is not", ["-3", "1500", "9.8"]),
        ("first-year revenue of $1M, then 2.5 billion", ["1000000", "2500000000"]),
        ("a revenue of 1 million dollars", ["1000000"]),
        ("revenue of $1,000,000 and €3k", ["1000000", "3000"]),
        ("3bn users and 4 mn visits", ["3000000000", "4000000"]),
        ("charges of 1e-9 and 2E-9 at 0.05", ["1e-9", "2E-9", "0.05"]),
        ("twenty five apples, zero pears, one hundred and five plums", ["25", "0", "105"]),
        ("a dozen eggs and a million thanks", ["12", "1000000"]),
        ("which one of them is 5m tall and weighs 3t", ["5", "3"]),  # units, not scales
        ("forty-two", ["42"]),
        ("the GCD of two numbers, 40 and 50", ["40", "50", "2"]),  # words after digits
        ("a two-sample t-test on a six-sided die", []),  # compound modifiers
        ("the first-year revenue of $1M", ["1000000"]),
        ("no numbers here", []),
        ("", []),
    ],
)
def test_question_numbers(text, numbers):
    assert question_numbers(text) == numbers


def test_question_numbers_bad_input_is_empty():
    assert question_numbers(None) == []
    assert question_numbers(12) == []


def test_number_text():
    assert number_text(1e6) == "1000000"
    assert number_text(2.5) == "2.5"
    assert number_text(1e-9) == "1e-09"
    assert number_text(float("inf")) == "inf"


@pytest.mark.parametrize(
    "name, desc, question, value",
    [
        ("initial_velocity", "", "Calculate the final speed of an object dropped from 100 m.", 0.0),
        ("initial_speed", "", "What is the final speed of an object dropped from rest after 5 s?", 0.0),
        ("u", "The initial velocity in m/s", "A car starts from rest and accelerates at 4 m/s^2.", 0.0),
        ("initial_velocity", "", "A car with initial velocity of 10 m/s, then dropped", None),  # written: not implied
        ("initial_velocity", "", "A ball thrown at 5 m/s", None),  # nothing implies 0
        ("final_velocity", "", "dropped from rest", None),  # not an initial velocity
        ("height", "initial height", "dropped from rest", None),  # not a velocity
    ],
)
def test_implied_value(name, desc, question, value):
    assert implied_value(name, {"type": "number", "description": desc}, question) == value


def test_implied_value_bad_input():
    assert implied_value("initial_velocity", None, "dropped") == 0.0
    assert implied_value("initial_velocity", {}, None) is None
    assert implied_value(None, {}, "dropped") is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "question, exprs",
    [
        ("Calculate the area under the curve y=x^2 from x=1 to x=3.", ["x**2"]),
        ("Calculate the derivative of the function 3x^2 + 2x - 1.", ["3x**2 + 2x - 1"]),
        ("from x = -2 to x = 3 for the function y = x^3 using simpson", ["x**3"]),
        ("the derivative of f(x) = 3x^2 at x = 2", ["3x**2"]),
        ("integrate sin(x) + x^2 from 0 to pi", ["sin(x) + x**2"]),
        ("the functions 3x + 2 and 2x^3", ["3x + 2", "2x**3"]),
        ("roots with coefficients a=1, b=-3, c=2", []),  # assignments, not expressions
        ("Is a good idea? 5 - 3", []),  # no variable
        ("", []),
    ],
)
def test_math_expressions(question, exprs):
    assert math_expressions(question) == exprs


def test_expression_arguments():
    assert is_expression_argument("function", {"type": "string", "description": "The function to integrate."})
    assert is_expression_argument("f", {"type": "string", "description": "The polynomial, e.g. 'x^3'"})
    assert not is_expression_argument("function", {"type": "integer"})
    assert not is_expression_argument("city", {"type": "string", "description": "A city"})
    assert not is_expression_argument("function", None)
    assert normalize_expression("3x ^ 2 + x^3") == "3x**2 + x**3"


def test_pick_expression_takes_the_questions_expression():
    q = "Calculate the area under the curve y=x^2 from x=1 to x=3."
    assert _pick_expression("the area under the curve y=x^2 from x=1 to x=3", q) == "x**2"
    q2 = "Compare 3x + 2 with 2x^3"
    assert _pick_expression("2x^3", q2) == "2x**3"
    assert _pick_expression("][", q2) == "3x + 2"  # nothing matches: the first expression
    assert _pick_expression("x^2", "no expression in words") == "x**2"
    assert _pick_expression(5, q) == 5


def test_grounding_reads_normalised_numbers():
    assert grounded_in(1000000, "first-year revenue of $1M")
    assert grounded_in(0, "assuming the initial velocity is zero")
    assert grounded_in(1e-9, "a charge of 1e-9 coulombs")
    assert not grounded_in(1, "first-year revenue of $1M")


def test_field_schema_and_distinct_items():
    from router.arguments import VALUE_START

    assert field_schema({"type": "array", "items": {"type": "string"}}, True) == {
        "type": "array", "items": {"type": "string", "pattern": VALUE_START}, "minItems": 1}
    assert "minItems" not in field_schema({"type": "array"}, False)
    assert field_schema({"type": "array", "minItems": 0}, True)["minItems"] == 0  # the schema's own word wins
    assert field_schema({"type": "string"}, True) == {"type": "string", "pattern": VALUE_START}
    assert field_schema({"type": "string", "pattern": "^[A-Z]+$"}, True) == {"type": "string", "pattern": "^[A-Z]+$"}
    assert field_schema({"type": "string"}, False) == {"type": "string"}
    assert field_schema({"type": "string", "enum": ["a"]}, True) == {"type": "string", "enum": ["a"]}
    assert _distinct_items(' ["employees", "employees", "employees", "empl') == 1
    assert _distinct_items("[1, 2, 3, 1, 2, 3, 1") == 3
    assert _distinct_items('["a\\", b", "c", ') == 2
    assert _distinct_items("") == 1


def test_ungrounded_share_accepts_implied_values_and_expressions():
    from router.relevance import ungrounded_share

    schema = {
        "type": "object",
        "properties": {
            "initial_velocity": {"type": "number"},
            "height": {"type": "number"},
            "function": {"type": "string", "description": "The function to integrate."},
        },
        "required": ["initial_velocity", "height", "function"],
    }
    q = "An object dropped from 100 m; integrate y = x^2."
    assert ungrounded_share({"initial_velocity": 0, "height": 100, "function": "x**2"}, schema, q) == 0.0
    assert ungrounded_share({"initial_velocity": 5, "height": 100, "function": "x**3"}, schema, q) == pytest.approx(2 / 3)


# ---------------------------------------------------------------- the gate's margin term
def test_relevance_gate_margin_term_is_calibrated():
    from router.relevance import RelevanceGate

    # relevant questions that clearly prefer one of several functions (large margin, modest similarity),
    # irrelevant ones with a high similarity but no clear preference, and single-function ones (margin 0)
    rows = [(0.40, 0.0, True, 0.20), (0.38, 0.0, True, 0.25), (0.60, 0.0, True, 0.0), (0.55, 0.0, True, 0.0),
            (0.45, 0.0, False, 0.02), (0.50, 0.0, False, 0.0), (0.30, 0.0, False, 0.05), (0.20, 0.0, False, 0.0)]
    gate = RelevanceGate()
    assert gate.fit(rows)["balanced_accuracy"] < 1.0  # similarity alone cannot separate them
    report = gate.fit(rows, margin_weights=(0.0, 0.5, 1.0))
    assert report["balanced_accuracy"] == 1.0 and gate.margin_weight > 0
    assert all(gate.accepts(s, u, m) == y for s, u, y, m in rows)
    assert gate.score(0.4, 0.0, -1.0) == gate.score(0.4, 0.0, 0.0)  # a negative margin gives no bonus
    assert gate.score(0.4, 0.0, float("nan")) == gate.score(0.4, 0.0)


def test_relevance_gate_prefers_no_margin_when_it_does_not_help():
    from router.relevance import RelevanceGate

    rows = [(0.6, 0.0, True, 0.3), (0.5, 0.0, True, 0.0), (0.3, 0.0, False, 0.3), (0.2, 0.0, False, 0.0)]
    gate = RelevanceGate()
    gate.fit(rows, margin_weights=(0.0, 0.5, 1.0))
    assert gate.margin_weight == 0.0 and gate.report["balanced_accuracy"] == 1.0


def test_relevance_gate_rejects_bad_rows():
    from router.relevance import RelevanceGate

    with pytest.raises(ValueError, match="should_call"):
        RelevanceGate().fit([(0.5, 0.0)])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="finite"):
        RelevanceGate().fit([(float("nan"), 0.0, True), (0.2, 0.0, False)])


def test_mixed_functions_adds_other_questions_functions():
    from mrkl.bfcl import BFCLCase, mixed_functions

    cases = [BFCLCase(f"irrelevance_{i}", f"q{i}", [{"name": f"f{i}"}], None) for i in range(4)]
    mixed = mixed_functions(cases)
    assert [c.id for c in mixed] == [f"irrelevance_{i}+mixed" for i in range(4)]
    assert [f["name"] for f in mixed[0].functions] == ["f0", "f1", "f2"]
    assert [f["name"] for f in mixed[3].functions] == ["f3", "f0", "f1"]  # cyclic
    assert all(c.ground_truth is None for c in mixed)
    assert mixed_functions(cases[:1]) == []
    two = mixed_functions(cases[:2])
    assert [f["name"] for f in two[0].functions] == ["f0", "f1"]  # no duplicate when it wraps around


def test_optional_grounding_ignores_word_counts():
    q = "the hypotenuse given the other two sides as 4 and 5"
    assert grounded_in(2, q) and not grounded_in(2, q, number_words=False)
    assert grounded_in(4, q, number_words=False)
    assert question_numbers(q, words=False) == ["4", "5"]


def test_copy_bias_continues_exponent_numbers():
    from llm_backends.constrained import CopyBias

    vocab = {"1": 1, "e": 2, "-9": 3, "-": 4, "9": 5, "10": 6, " 1": 7}
    enc = lambda t: [vocab[t]] if t in vocab else [vocab.get(t[:1], 99)]  # noqa: E731
    bias = CopyBias(enc, "charges of 1e-9 and 2e-9", mode="number", numbers=["1e-9", "2e-9"])
    toks, can_end = bias.continuations("1e")
    assert toks == {vocab["-9"]} and not can_end  # after "1e" the span goes on with "-9", not a new number
    toks, can_end = bias.continuations("1e-9")
    assert can_end


def test_ungrounded_share_counts_each_written_number_once():
    from router.relevance import ungrounded_share

    schema = {"type": "object", "properties": {k: {"type": "number"} for k in "abc"}, "required": ["a", "b", "c"]}
    assert ungrounded_share({"a": 0, "b": 0, "c": 0}, schema, "roots of bx + c = 0") == pytest.approx(2 / 3)
    assert ungrounded_share({"a": 1, "b": 1, "c": 2}, schema, "a=1, b=1, c=2") == 0.0


def test_unit_mismatch_by_dimensionality():
    from router.values import unit_mismatch

    speed = {"type": "string", "description": "The unit to return the velocity in. If not provided, the default is km/h."}
    radius = {"type": "string", "description": "The unit of measurement for the radius. Default is 'cm'."}
    assert unit_mismatch("unit", speed, "kilometers")  # a length where a speed is meant
    assert not unit_mismatch("unit", speed, "mph")
    assert not unit_mismatch("unit", radius, "inches")
    assert not unit_mismatch("unit", radius, "units")  # dimensionless / unknown: no opinion
    assert not unit_mismatch("unit", radius, "blorbs")
    assert unit_mismatch("unit", {"type": "string", "default": "km"}, "hours")
    assert not unit_mismatch("unit", {"type": "string", "description": "The unit."}, "kg")  # no default given
    assert not unit_mismatch("city", {"description": "Default is Paris"}, "kg")  # not a unit argument
    assert not unit_mismatch("unit", None, "kg") and not unit_mismatch("unit", speed, 5)


def test_copy_bias_orders_array_numbers_and_keeps_the_first_bonus():
    from llm_backends.constrained import CopyBias

    enc = lambda t: [ord(t[0])] if t else []  # noqa: E731 - one "token" per first character
    bias = CopyBias(enc, "points A(3,4) and B(1,2)", mode="json", numbers=["3", "4", "1", "2"], first_bonus=2.0, number_items=True)
    toks, _ = bias.continuations(" [")
    assert toks == {ord(c) for c in "3412 "} and ord("3") in bias._first_toks
    bias.continuations(" [3, ")
    assert ord("4") in bias._first_toks and ord("3") not in bias._first_toks  # 3 is written: 4 is the first unused number
    plain = CopyBias(enc, "points A(3,4)", mode="json", numbers=["3", "4"])
    assert plain.continuations(" [") == (set(), False)  # not an array of numbers: no proposal before a digit
    # a number keeps its first-bonus through its digits: "1000000" over "1200000" after "1"
    num = CopyBias(enc, "revenues of $1M and $1.2M", mode="number", numbers=["1000000", "1200000"], first_bonus=2.0)
    num.continuations("1")
    assert num._first_toks == {ord("0")}


def test_free_form_objects_stay_open_and_required_ones_non_empty():
    from llm_backends.constrained import close_objects

    assert close_objects({"type": "object"}) == {"type": "object"}
    assert close_objects({"type": "object", "properties": {}})["additionalProperties"] is False
    assert field_schema({"type": "object"}, True)["minProperties"] == 1
    assert "minProperties" not in field_schema({"type": "object", "properties": {"a": {}}}, True)


# ---------------------------------------------------------------- the real model
def _decoder(backend):
    """``run(schema, question) -> args``: per-field constrained decoding with grounded optionals on ``backend``."""
    import json

    from router.arguments import ConstrainedArguments

    dec = ConstrainedArguments(backend)

    def run(schema, q):
        prompt = f"Arguments (JSON schema): {json.dumps(schema)}\nQuestion: {q}\nArguments:"
        return dec.extract(prompt, schema, q, per_field=True, ground_optional=True)[0]

    return run


@pytest.mark.slow
def test_decoder_reads_scales_implied_zeros_expressions_and_free_maps(smollm2):
    run = _decoder(smollm2)

    num = {"type": "number"}
    fall = {"type": "object", "properties": {"initial_velocity": num, "height": num}, "required": ["initial_velocity", "height"]}
    assert run(fall, "Calculate the final speed of an object dropped from 100 m without air resistance.") == {"initial_velocity": 0.0, "height": 100}
    rev = {"type": "object", "properties": {"revenue": {"type": "integer"}, "years": {"type": "integer"}}, "required": ["revenue", "years"]}
    assert run(rev, "Project a first-year revenue of $1.2M over five years") == {"revenue": 1200000, "years": 5}
    area = {"type": "object", "properties": {"function": {"type": "string", "description": "The mathematical function as a string."},
                                             "interval": {"type": "array", "items": num}}, "required": ["function", "interval"]}
    got = run(area, "Calculate the area under the curve y=x^2 from x=1 to x=3.")
    assert got["function"] == "x**2" and got["interval"] == [1, 3]
    grades = {"type": "object", "properties": {"gradeDict": {"type": "object"}}, "required": ["gradeDict"]}
    assert run(grades, "Average grade of John with scores {'math':90, 'science':75}")["gradeDict"] != {}


def test_field_numbers_convert_percentages_and_units_for_the_argument():
    from router.relevance import ungrounded_share
    from router.values import described_unit, field_numbers

    q = "an LC circuit with capacitance of 100µF and inductance of 50mH"
    assert field_numbers(q, {"description": "The inductance (L) in henries (H)."}) == ["0.05", "100"]  # henries first
    assert field_numbers(q, {"description": "The capacitance (C) in farads (F)."}) == ["0.0001", "50"]
    rate = {"description": "The annual interest rate, as a decimal. E.g. 5% would be 0.05."}
    assert field_numbers("a rate of 5% over 10 years", rate) == ["0.05", "10"]
    traits = "trait A contributes 40% and B 60%; A has a value of 0.8 and B 0.7"
    assert field_numbers(traits, {"description": "Percentage contributions of each trait, which must sum to 1."}) == ["0.4", "0.6", "0.8", "0.7"]
    assert field_numbers(traits, {"description": "Trait values, decimal numbers between 0 and 1."}) == ["40", "60", "0.8", "0.7"]  # no percent asked
    assert field_numbers("height of 180 cm", {"description": "Height in centimeters."}) == ["180"]  # already the unit
    assert field_numbers("5 blorbs", {"description": "in meters"}) == ["5"]  # unknown unit: as written
    assert field_numbers(None, None) == [] and field_numbers("5 m", None) == ["5"]
    assert described_unit({"description": "The radius in the unit given."}) is None
    schema = {"type": "object", "properties": {"inductance": {"type": "number", "description": "The inductance (L) in henries (H)."}},
              "required": ["inductance"]}
    assert ungrounded_share({"inductance": 0.05}, schema, q) == 0.0
    assert ungrounded_share({"inductance": 0.5}, schema, q) == 1.0


def test_number_mentions_give_offsets():
    from router.values import number_mentions

    q = "an LC circuit with capacitance of 100µF and inductance of 50mH"
    assert number_mentions(q) == [("100", 34), ("50", 58)]
    assert number_mentions("two numbers, 40 and 50") == [("40", 13), ("50", 20), ("2", 0)]
    assert number_mentions(None) == []


# ------------------------------------------------------- described options, flags, snapping, names
def test_described_options_read_closed_sets_not_examples():
    from router.values import described_options

    phase = {"type": "string", "description": "Phase transition. Can be 'melting', 'freezing', 'vaporization', 'condensation'."}
    assert described_options(phase) == ["melting", "freezing", "vaporization", "condensation"]
    fuel = {"type": "string", "description": "'gas' refers to a gasoline vehicle, 'diesel' to a diesel one and 'EV' to an electric one."}
    assert described_options(fuel) == ["gas", "diesel", "EV"]
    dup = {"type": "string", "description": 'Method: "trapezoid" or "simpson". One of the two; default "trapezoid".'}
    assert described_options(dup) == ["trapezoid", "simpson"]
    assert described_options({"type": "string", "description": "The city, e.g. 'Los Angeles, CA' or 'Boston, MA'."}) is None
    meal = {"type": "string", "description": "The restaurant's dishes; it can be one of 'breakfast', 'lunch'. Default 'lunch'"}
    assert described_options(meal) == ["breakfast", "lunch"]  # the apostrophe of "restaurant's" opens no quote
    assert described_options({"type": "string", "description": "Options: 'single', 'double', 'deluxe', etc."}) is None
    assert described_options({"type": "string", "description": "A city such as 'Boston' or 'Paris'. Either is fine."}) is None
    assert described_options({"type": "string", "description": "Can be 'one'."}) is None  # a single value is no choice
    assert described_options({"type": "string", "enum": ["a", "b"], "description": "Can be 'a', 'b'."}) is None
    assert described_options({"type": "integer", "description": "Can be '1', '2'."}) is None
    assert described_options(None) is None and described_options({"type": "string"}) is None


@pytest.mark.parametrize(
    "name,question,value",
    [
        ("detailed", "Find me detailed information about the structure of human cell", True),
        ("detail", "Give me the details of the case", True),
        ("include_human_impact", "Forecast forest growth for 5 years including human impact.", True),
        ("calculate_years_ago", "Calculate how many years ago was the Ice age?", True),
        ("fullName", "Return the full name of the author", True),
        ("artistic_interests", "I'm talkative and have few artistic interests", False),
        ("include_tolls", "Route from A to B without tolls", False),
        ("avoid_tolls", "Route from A to B without tolls", True),
        ("avoid_tolls", "Route from A to B avoiding tolls", True),
        ("avoid_tolls", "The fastest route from A to B with toll roads avoided.", True),  # a negation after the mention
        ("include_tolls", "Route from A to B, tolls excluded", False),
        ("not_detailed", "Give me detailed info", False),
        ("exclude_weekends", "Count days including weekends", False),
        ("exclude_weekends", "Count days excluding weekends", True),
        ("hide_details", "show details", False),
        ("case_sensitive", "search case-insensitive", False),
        ("detailed", "a few detailed facts", True),  # "a few" is no negation
        ("detailed", "I'm not sure, detailed info please", True),  # another clause
        ("formatted", "Get the prime factors of 60", None),
        ("include_description", "Search for Python books", None),
    ],
)
def test_flag_mentioned(name, question, value):
    from router.values import flag_mentioned

    assert flag_mentioned(name, question) is value


def test_flag_mentioned_bad_input():
    from router.values import flag_mentioned

    assert flag_mentioned("detailed", None) is None and flag_mentioned(None, "detailed") is None  # type: ignore[arg-type]
    assert flag_mentioned("", "anything") is None and flag_mentioned("is_x", "is x") is None


def test_snap_number_fixes_the_place_of_the_questions_digits():
    from router.values import snap_number

    assert snap_number(85000000, ["213000000", "8500000"]) == 8500000  # "8.5 million" written with a zero too many
    assert isinstance(snap_number(85000000, ["8500000"]), int)
    assert snap_number(50, ["0.05", "100"]) == 0.05  # 50mH where henries are asked
    assert snap_number(0.85, ["8.5"]) == 8.5
    assert snap_number(7, ["7", "70"]) == 7  # already a question number
    assert snap_number(3, ["30", "300"]) == 3  # two candidates: ambiguous, unchanged
    assert snap_number(-5, ["5"]) == -5  # the sign is part of the digits
    assert snap_number(12, ["3", "4"]) == 12  # no candidate has these digits
    assert snap_number(10**400, ["1"]) == 10**400 and snap_number(float("inf"), ["1"]) == float("inf")
    assert snap_number(True, ["1"]) is True and snap_number("85", ["8.5"]) == "85" and snap_number(85, []) == 85


def test_name_overlap_shares_of_name_words():
    from router.relevance import name_overlap

    assert name_overlap("What is the binomial probability of 3 heads?", "calc_binomial_prob") == pytest.approx(1 / 3)
    assert name_overlap("Find the density of iron", "calculate_density") == 1.0  # "calculate" is not counted
    assert name_overlap("Weather in Paris", "getStockPrice") == 0.0
    assert name_overlap("anything", "get_info") == 0.0  # no content word: 0
    assert name_overlap(None, "x") == 0.0  # type: ignore[arg-type]


def test_relevance_gate_name_term_is_calibrated():
    from router.relevance import RelevanceGate

    # relevant questions have the same similarity as irrelevant ones but name the function
    rows = [(0.4, 0.0, True, 0.0, 1.0), (0.45, 0.0, True, 0.0, 0.5), (0.5, 0.0, True, 0.0, 1.0),
            (0.45, 0.0, False, 0.0, 0.0), (0.5, 0.0, False, 0.0, 0.0), (0.42, 0.0, False, 0.0, 0.0)]
    gate = RelevanceGate()
    rep = gate.fit(rows, weights=(0.0,), name_weights=(0.0, 0.2))
    assert rep["name_weight"] == 0.2 and rep["balanced_accuracy"] == 1.0
    assert all(gate.accepts(s, u, m, n) == y for s, u, y, m, n in rows)
    assert gate.score(0.4, 0.0, 0.0, float("nan")) == gate.score(0.4, 0.0) == gate.score(0.4, 0.0, None, None)  # type: ignore[arg-type]
    # five-value rows keep their margin: the margin term separates these, the name term cannot
    by_margin = [(0.4, 0.0, True, 0.3, 0.0), (0.45, 0.0, True, 0.2, 0.0), (0.45, 0.0, False, 0.0, 0.0), (0.5, 0.0, False, 0.0, 0.0)]
    rep = RelevanceGate().fit(by_margin, weights=(0.0,), margin_weights=(0.0, 1.0))
    assert rep["margin_weight"] == 1.0 and rep["balanced_accuracy"] == 1.0
    plain = RelevanceGate()
    assert plain.fit(rows, weights=(0.0,))["balanced_accuracy"] < 1.0  # without the name term it cannot separate them
    with pytest.raises(ValueError):
        gate.fit([(0.1, 0.0, True, 0.0, 0.0, 0.0, 9.0)])


@pytest.mark.slow
def test_decoder_keeps_described_options_named_flags_and_ends_runaway_strings(smollm2):
    run = _decoder(smollm2)

    phase = {"type": "object", "required": ["mass", "phase_transition"], "properties": {
        "mass": {"type": "integer", "description": "Mass in grams."},
        "phase_transition": {"type": "string", "description": "Phase transition. Can be 'melting', 'freezing', 'vaporization', 'condensation'."},
        "substance": {"type": "string", "description": "The substance, default is 'water'"}}}
    got = run(phase, "Energy released when 100g of water goes through freezing?")
    assert got == {"mass": 100, "phase_transition": "freezing", "substance": "water"}
    cell = {"type": "object", "required": ["cell_type"], "properties": {
        "cell_type": {"type": "string"}, "detailed": {"type": "boolean", "default": False}, "include_images": {"type": "boolean"}}}
    got = run(cell, "Find me detailed information about the structure of human cell")
    assert got["detailed"] is True and "include_images" not in got and got["cell_type"] in ("human", "cell", "human cell")
    case = {"type": "object", "required": ["case_id", "details"], "properties": {
        "case_id": {"type": "string", "description": "The ID of the legal case."},
        "details": {"type": "boolean", "description": "True if need the detail info. "}}}
    got = run(case, "How to obtain the detailed case information of the 'R vs Adams' legal case?")
    assert got["details"] is True and isinstance(got["case_id"], str) and 0 < len(got["case_id"]) <= 32
    from llm_backends.errors import BackendError

    with pytest.raises(BackendError, match="not a finite number"):  # never Infinity in the JSON
        run({"type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"]}, "Value: 1e400")


def test_rates_are_fractions_unless_the_description_asks_for_percent():
    from router.values import field_numbers

    q = "Future value of $5000 at an annual interest rate of 5% for 3 years"
    assert field_numbers(q, {"type": "number", "description": "The annual interest rate of the investment."}) == ["5000", "0.05", "3"]
    assert field_numbers(q, {"type": "number", "description": "The interest rate for a year as a percentage."}) == ["5000", "5", "3"]
    assert field_numbers(q, {"type": "integer", "description": "The annual depreciation rate."}) == ["5000", "5", "3"]
    assert field_numbers(q, {"type": "number", "description": "The principal."}) == ["5000", "5", "3"]


def test_bracketed_number_lists_are_items_not_thousands():
    from llm_backends.constrained import number_spans
    from router.values import question_numbers

    q = "NPV of cash_flows=[200,300,400,500] at 10% after an outlay of 1,500 and points (1.5,2.5)"
    assert question_numbers(q) == ["200", "300", "400", "500", "10", "1500", "1.5", "2.5"]
    assert number_spans(q) == ["200", "300", "400", "500", "10", "1500", "1.5", "2.5"]
    people = "a population (1,500,000) next to (3,4) and (1, 500)"
    assert question_numbers(people) == number_spans(people) == ["1500000", "3", "4", "1", "500"]


def test_a_list_that_runs_into_the_next_written_list_is_cut_back():
    from router.values import bracket_lists, first_written_list

    q = "Compare group1 [12.4, 15.6, 11.2] and group2 (e.g., 10.5, 9.8) at 0.05"
    assert bracket_lists(q) == [[12.4, 15.6, 11.2], [10.5, 9.8]]
    assert first_written_list([12.4, 15.6, 11.2, 10.5, 9.8], q) == [12.4, 15.6, 11.2]
    assert first_written_list([12.4, 15.6, 11.2, 10.5], q) == [12.4, 15.6, 11.2]
    assert first_written_list([12.4, 15.6, 11.2], q) == [12.4, 15.6, 11.2]  # already one list
    assert first_written_list([10.5, 9.8, 0.05], q) == [10.5, 9.8, 0.05]  # runs on into a number that is no list
    assert first_written_list([12.4, 15.6, 11.2, 10.5], q, used=[[12.4, 15.6, 11.2]]) == [12.4, 15.6, 11.2, 10.5]
    assert first_written_list("x", q) == "x" and first_written_list([True, 1], q) == [True, 1] and bracket_lists(None) == []


def test_function_words_alone_do_not_ground_a_string():
    q = "Find all the records of the year in my table"
    assert grounded_in("records", q) and grounded_in("the year", q)
    assert not grounded_in("the", q) and not grounded_in("of my", q) and not grounded_in("in", q)


def test_feet_and_inches_are_one_length():
    from router.values import field_numbers

    q = "Will a person of weight 150lbs and height 5ft 10in get type 2 diabetes?"
    # the height first, the weight (another kind of unit) last
    assert field_numbers(q, {"type": "integer", "description": "Height of the person in inches."}) == ["70", "2", "150"]
    assert field_numbers(q, {"type": "number", "description": "Height in centimeters."}) == ["177.8", "2", "150"]
    assert field_numbers(q, {"type": "integer", "description": "Weight of the person in lbs."}) == ["150", "2", "5", "10"]
    assert field_numbers("a 6 ft tall man", {"type": "integer", "description": "Height in inches."}) == ["72"]


def test_numbers_of_the_arguments_kind_come_first():
    from router.values import described_unit, field_numbers, question_numbers

    q = "Final velocity after accelerating at 2 meters/second^2 for 5 seconds, starting from 10 meters/second."
    assert question_numbers(q) == ["2", "5", "10"]  # the exponent of second^2 is no number
    assert described_unit({"description": "The acceleration in meters/second^2."}) == "meters/second^2"
    assert field_numbers(q, {"description": "The initial velocity in meters/second."}) == ["10", "2", "5"]
    assert field_numbers(q, {"description": "The acceleration in meters/second^2."}) == ["2", "5", "10"]
    assert field_numbers(q, {"description": "The time in seconds."}) == ["5", "2", "10"]
    wire = "Magnetic field 10 meters away from a wire carrying a current of 20 Amperes."
    assert field_numbers(wire, {"description": "The current through the wire in Amperes."}) == ["20", "10"]
    assert field_numbers(wire, {"description": "The distance from the wire."}) == ["10", "20"]  # no unit named: as written


@pytest.mark.parametrize(
    "options,question,value",
    [
        (["sedentary", "lightly active", "active"], "a person who is lightly active", "lightly active"),
        (["six_months", "year", "five_years"], "precipitation for the last six months", "six_months"),
        (["spades", "clubs", "hearts"], "odds of drawing a heart card", "hearts"),
        (["Vegan", "Vegetarian"], "a restaurant with vegan food", "Vegan"),
        (["asc", "desc"], "sort in ascending order", None),  # not written: the model decides
        (["celsius", "fahrenheit"], "convert Celsius to Fahrenheit", None),  # two named: the model decides
        (None, "anything", None),
        (["a", 3], "a 3", None),
    ],
)
def test_named_option(options, question, value):
    from router.values import named_option

    assert named_option(options, question) == value


def test_converted_numbers_remember_how_the_question_wrote_them():
    from router.values import numbers_of_kind, written_numbers

    q = "Resonant frequency with capacitance of 100µF and inductance of 50mH."
    henries = {"description": "The inductance in henries (H)."}
    assert numbers_of_kind(q, henries) == ["0.05"] and written_numbers(q, henries) == {"0.05": "50"}
    assert numbers_of_kind(q, {"description": "Rounding digits."}) == [] and written_numbers(None, henries) == {}


def test_optional_strings_do_not_repeat_what_other_arguments_took():
    from router.arguments import _taken

    assert _taken("Ronaldo", ["Cristiano Ronaldo"], []) and _taken("Tom Brady", ["brady"], [])
    assert _taken("2021", ["Lakers"], [2021.0]) and not _taken("2021", [], [2020.0])
    assert not _taken("Ron", ["Cristiano Ronaldo"], [])  # not on a word boundary
    assert not _taken("Premier League", ["Manchester United"], []) and not _taken(3, ["3"], [3.0]) and not _taken(" ", ["x"], [])


def test_named_options_lists_every_option_the_question_writes():
    from router.values import named_options

    diets = ["Vegan", "Vegetarian", "Gluten-free"]
    assert named_options(diets, "a vegan and gluten free place") == ["Vegan", "Gluten-free"]
    assert named_options(diets, "anything") == [] and named_options(None, "x") == []
    assert named_options(["active", "lightly active"], "lightly active people") == ["lightly active"]


def test_review_edge_cases_of_stated_values_and_repairs():
    from router.arguments import _Taken, _fits, _repaired, field_schema, stated_value
    from router.values import first_written_list, flag_mentioned, named_option, named_options, snap_number

    # stated values keep the schema's limits
    colors = {"type": "array", "items": {"type": "string", "enum": ["red", "green", "blue"]}, "maxItems": 1}
    found, value = stated_value("colors", colors, "Paint the houses red and blue")
    assert found and value == ["red", "blue"] and not _fits(value, colors)
    assert named_options(["red", "red", "blue"], "Show red items") == ["red"]  # duplicates count once
    # ordinary words are no negations, options are matched by span, codes as written
    assert flag_mentioned("include_count", "Apply a discount and include the count") is True
    assert flag_mentioned("format_as_ratio", "detailed information, format it as a ratio") is True
    assert flag_mentioned("in_stock", "only in-stock items") is True
    assert named_option(["male", "female"], "Compare male and female runners") is None
    assert named_option(["C", "C++"], "C or C++?") is None and named_option(["C", "C++"], "Learn C++ fast") == "C++"
    assert named_option(["US", "UK", "DE"], "Tell us the weather in Berlin") is None
    assert named_option(["US", "UK"], "Weather in the US") == "US"
    # limits the schema sets are not overridden; bad input is no crash
    assert field_schema({"type": "array", "maxItems": 0}, True) == {"type": "array", "maxItems": 0}
    assert field_schema({"type": "string", "maxLength": 0}, True) == {"type": "string", "maxLength": 0}
    assert field_schema(None, True) is None and stated_value("x", None, "q") == (False, None)  # type: ignore[arg-type]
    assert _repaired(3, "x", None, "q", _Taken(), drop_taken_items=False) == 3  # type: ignore[arg-type]
    assert snap_number(5, [None]) == 5 and snap_number(1, ["1e-9"]) == 1  # nine orders of magnitude is no misplaced point
    assert first_written_list([1, 2, 3], "[1, 2] and [3, 4]", used=5) == [1, 2]  # type: ignore[arg-type]
    taken = _Taken()
    taken.add(10**400, "q", {})
    assert taken.numbers == []


def test_plain_number_runs_are_written_lists_and_a_dropped_first_item_comes_back():
    from router.values import first_written_list, written_lists

    q = "dataset_A with the values 12, 24, 36 and dataset_B with the values 15, 30, 45."
    assert written_lists(q) == [[12, 24, 36], [15, 30, 45]]
    assert first_written_list([12, 24, 36, 15, 30, 45], q) == [12, 24, 36]
    assert first_written_list([15, 30, 45], q) == [15, 30, 45]
    # a run needs "N, N, N": thousands separators and pairs are no list
    assert written_lists("a city of 1,500,000 people and 2, 3 more") == []
    g = "group1 (e.g., 12.4, 15.6, 11.2, 18.9) and group2 (e.g., 10.5, 9.8, 15.2, 13.8) at level 0.05"
    # group1 that runs on into group2 and past it is cut back to group1
    assert first_written_list([12.4, 15.6, 11.2, 18.9, 10.5, 9.8, 15.2, 13.8, 0.05], g) == [12.4, 15.6, 11.2, 18.9]
    npv = "cash flows [-50000, 10000, 15000, 20000] at 8%"
    assert first_written_list([10000, 15000, 20000], npv) == [-50000, 10000, 15000, 20000]
    assert first_written_list([15000, 20000], npv) == [15000, 20000]  # two items short: not this rule
    assert written_lists(None) == [] and written_lists("") == []


def test_counted_number_reads_a_count_written_next_to_what_it_counts():
    from router.values import counted_number

    tickets = {"type": "integer", "description": "Number of tickets required. Default is 1."}
    assert counted_number("num_tickets", tickets, "Get me two tickets for the next Eminem concert.") == 2
    events = {"type": "integer", "description": "Number of events to return. Default is 5."}
    assert counted_number("count", events, "Find ten major historical events of the 16th century.") == 10
    traits = {"type": "integer", "description": "The number of top traits to return"}
    assert counted_number("trait_count", traits, "Find three personality traits of joggers.") == 3
    days = {"type": "integer", "description": "Number of days"}
    assert counted_number("days", days, "Air quality in San Jose for the next 3 days") == 3
    # no count next to the noun, two different counts, a fraction, a non-integer argument: None
    assert counted_number("count", events, "Find events in 2020.") is None
    assert counted_number("days", days, "Apple for 5 days and Google for 3 days") is None
    assert counted_number("days", days, "for 2.5 days") is None
    assert counted_number("days", {"type": "number", "description": "Number of days"}, "for 3 days") is None
    assert counted_number("days", days, None) is None and counted_number("days", None, "3 days") is None


def test_a_us_city_gets_its_state_where_the_description_asks_for_city_and_state():
    from router.values import city_state_style, with_state

    code = {"type": "string", "description": "The city and state, e.g. Los Angeles, CA"}
    named = {"type": "string", "description": "The city, e.g. Chicago, Illinois"}
    plain = {"type": "string", "description": "The city, e.g. London"}
    assert city_state_style(code) == "code" and city_state_style(named) == "name" and city_state_style(plain) is None
    assert city_state_style({"type": "string", "description": "In the format City, State."}) == "code"
    assert with_state("Chicago", "code") == "Chicago, IL"
    assert with_state("New York", "code") == "New York, NY"
    assert with_state("Portland", "name") == "Portland, Oregon"  # the most populous Portland
    assert with_state("Paris", "code") == "Paris"  # the largest Paris is not American
    assert with_state("Los Angeles, CA", "code") == "Los Angeles, CA"  # already has a state
    assert with_state("Chicago", None) == "Chicago" and with_state(5, "code") == 5 and with_state("", "code") == ""


def test_question_spans_are_whole_words_without_outer_function_words_or_quotes():
    from router.values import question_spans, span_pattern

    q = "Get the case 'R vs Adams' in Los Angeles, CA. Then stop."
    spans = question_spans(q)
    assert "R vs Adams" in spans and "Los Angeles, CA" in spans and "case" in spans
    assert "the case" not in spans and "Adams in" not in spans  # no outer function word
    assert not any("'" in s for s in spans)  # no span crosses the quotes
    assert "CA. Then" not in spans  # nor a sentence end
    assert "Adams" not in question_spans(q, exclude=["adams"])
    pattern = span_pattern(q)
    import re

    assert re.fullmatch(pattern[1:-1], "R vs Adams") and re.fullmatch(pattern[1:-1], "Los Angeles, CA")
    assert not re.fullmatch(pattern[1:-1], "Los Angeles CA")
    assert question_spans(None) == [] and span_pattern("the of a") is None


def test_stated_unit_takes_the_questions_unit_of_the_default_kind():
    from router.values import stated_unit

    radius = {"type": "string", "description": "The unit of measurement for the radius. Default is 'cm'."}
    assert stated_unit("unit", radius, "The circumference of a circle with a radius of 4 inches?") == "inches"
    speed = {"type": "string", "description": "The unit in which the speed should be calculated, default is m/s."}
    assert stated_unit("to_unit", speed, "The speed in km/h of a car that went 450 meters in 20 seconds.") == "km/h"
    # two different lengths, no unit of the kind, no default, not a unit argument, an enum: None
    assert stated_unit("unit", radius, "A wall 3 m by 4 ft") is None
    assert stated_unit("unit", radius, "It took 20 seconds") is None
    assert stated_unit("unit", {"type": "string", "description": "The unit."}, "4 inches") is None
    assert stated_unit("city", radius, "4 inches") is None
    assert stated_unit("unit", {**radius, "enum": ["cm", "in"]}, "4 inches") is None
    assert stated_unit("unit", radius, None) is None


def test_question_dates_and_the_described_format():
    import datetime as dt

    from router.values import described_date_format, question_dates, stated_date

    assert [d for _s, d in question_dates("closing March.11, 2022 and Jun.20,2023")] == [dt.date(2022, 3, 11), dt.date(2023, 6, 20)]
    assert [d for _s, d in question_dates("born 01-01-1980, seen 2022/08/16, June01 2023")] == [
        dt.date(1980, 1, 1), dt.date(2022, 8, 16), dt.date(2023, 6, 1)]
    assert [d for _s, d in question_dates("from 2023 April 4th to April 8th")] == [dt.date(2023, 4, 4), dt.date(2023, 4, 8)]
    assert [d for _s, d in question_dates("starting from 10th December 2022")] == [dt.date(2022, 12, 10)]
    assert question_dates("on 15th October") == []  # no year anywhere: not guessed
    assert question_dates("3/4 cup and 2.5/3.5 and 2023-02-30") == []  # fractions, an impossible date
    assert question_dates(None) == []
    assert described_date_format({"description": "Must be in MM-DD-YYYY format."}) == "%m-%d-%Y"
    assert described_date_format({"description": "in the format of MM-DD-YYY."}) == "%m-%d-%Y"
    assert described_date_format({"description": "The date (month-day-year)."}) == "%m-%d-%Y"
    assert described_date_format({"description": "e.g., 2022-04-28"}) == "%Y-%m-%d"
    assert described_date_format({"description": "The date."}) is None and described_date_format(None) is None
    iso = {"type": "string", "description": "The check-out date in the format YYYY-MM-DD."}
    assert stated_date("check_out_date", iso, "from 2023 April 4th to April 8th") == "2023-04-08"
    assert stated_date("check_in_date", iso, "from 2023 April 4th to April 8th") == "2023-04-04"
    assert stated_date("date", iso, "from 2023 April 4th to April 8th") is None  # which one: the model decides
    us = {"type": "string", "description": "Start date in the format of MM-DD-YYY."}
    assert stated_date("start_date", us, "filed after January 1, 2021") == "01-01-2021"
    assert stated_date("date", {"type": "string", "description": "The date."}, "on Jan 28, 2021") == "2021-01-28"
    assert stated_date("location", iso, "on Jan 28, 2021") is None and stated_date("date", iso, "no date") is None


def test_compounding_words_are_periods_per_year():
    from router.values import compounding_periods

    n = {"type": "integer", "description": "The number of times that interest is compounded per unit time."}
    assert compounding_periods("n", n, "$5000 at 3% for 5 years, compounded quarterly.") == 4
    assert compounding_periods("compounding_periods_per_year", {"type": "integer", "description": "periods"},
                               "a $5000 investment at 5% in 3 years with monthly compounding") == 12
    assert compounding_periods("n", n, "compounded semi-annually") == 2
    assert compounding_periods("n", n, "paid monthly and compounded daily") is None  # two words: no guess
    assert compounding_periods("n", n, "paid monthly") is None  # no compounding in the question
    assert compounding_periods("years", {"type": "integer", "description": "years"}, "compounded monthly") is None
    assert compounding_periods("n", {"type": "string", "description": "compounded"}, "compounded monthly") is None
    assert compounding_periods("n", n, None) is None


def test_whole_name_puts_back_the_capitalised_words_before_a_copied_name():
    from router.values import whole_name

    assert whole_name("League", "What is the ranking of Manchester United in Premier League?") == "Premier League"
    assert whole_name("Liga", "the ranking of Barcelona in the 2021 La Liga season") == "La Liga"
    assert whole_name("Warcraft", "players in the game 'World of Warcraft' in 2020") == "World of Warcraft"
    assert whole_name("Museum of Art", "hours of the Metropolitan Museum of Art.") == "Metropolitan Museum of Art"
    assert whole_name("Manchester United", "Get Manchester United games") == "Manchester United"  # "Get" starts the sentence
    assert whole_name("Clippers", "between Lakers and Clippers") == "Clippers"  # two names
    assert whole_name("Boston", "a restaurant in Boston") == "Boston"
    assert whole_name("Adams", "the case 'R vs Adams'") == "Adams"  # not across the quote... nor lower-case words
    assert whole_name("york", "in New York") == "york" and whole_name(5, "x") == 5 and whole_name("A", None) == "A"


def test_counts_and_dates_that_two_arguments_could_claim_are_left_to_the_model():
    from router.values import counted_number, stated_date

    card = {"type": "integer", "description": "Number of cards"}
    others = {"desired_cards": card, "total_cards": {"type": "integer", "description": "Total number of cards"}}
    assert counted_number("total_cards", card, "a deck of 52 cards", others) is None
    dice = {"dice_number": {"type": "integer", "description": "Number of dice"},
            "dice_faces": {"type": "integer", "description": "Number of faces on each die"}}
    q = "the odds of rolling a 7 with two dice"
    assert counted_number("dice_number", dice["dice_number"], q, dice) == 2
    assert counted_number("dice_faces", dice["dice_faces"], q, dice) is None  # the head noun is "faces"
    # not a count argument; generic "times"; a number before "and <noun>"
    assert counted_number("height", {"type": "integer", "description": "The height"}, "base 10 and height 5") is None
    times = {"type": "integer", "description": "Number of times the event occurred."}
    assert counted_number("num_success", times, "60 heads if I flip a coin 100 times") is None
    iso = {"type": "string", "description": "YYYY-MM-DD"}
    stay = {"start_date": iso, "end_date": iso}
    q = "a room for 3 nights starting from 1st June 2022"
    assert stated_date("start_date", iso, q, stay) == "2022-06-01" and stated_date("end_date", iso, q, stay) is None


def test_a_stated_unit_that_is_the_default_is_written_as_the_default():
    from router.values import stated_unit

    miles = {"type": "string", "description": "The unit of measure for the distance. Default is miles."}
    assert stated_unit("units", miles, "the distance between Boston and Washington in mile?") == "miles"
    assert stated_unit("units", miles, "the distance between Boston and Washington in km?") == "km"


def test_whole_name_stops_at_stop_words():
    from router.values import whole_name

    assert whole_name("John Doe", "Find the details of the Lawyer John Doe", {"lawyer", "name"}) == "John Doe"
    assert whole_name("B1004", "the building Id B1004 floors", {"building", "id"}) == "B1004"
    q = "Find the price of a Fender American Professional II Stratocaster in Rosewood."
    assert whole_name("American Professional II Stratocaster", q, {"fender", "rosewood"}) == "American Professional II Stratocaster"
    assert whole_name("American Professional II Stratocaster", q) == "Fender American Professional II Stratocaster"


def test_areas_are_a_unit_kind_and_a_coverage_per_gallon_is_an_area():
    from router.values import described_unit, field_numbers, numbers_of_kind

    cover = {"type": "integer", "description": "The area in square feet that one gallon of paint can cover."}
    q = "paint for a wall of 30 feet by 12 feet with a brand that covers 400 square feet per gallon"
    assert described_unit(cover) == "square feet"
    assert numbers_of_kind(q, cover) == ["400"] and field_numbers(q, cover)[0] == "400"
    length = {"type": "integer", "description": "Length of the wall in feet."}
    assert numbers_of_kind(q, length) == ["30", "12"]
    per = {"type": "integer", "description": "Coverage per gallon in square feet."}
    assert numbers_of_kind("a wall of 20ft by 12ft; 1 gallon covers 350 sq.ft, minus a 15 sq ft window", per) == ["350", "15"]
    dist = {"type": "number", "description": "The distance in miles."}
    assert numbers_of_kind("drove 120 miles at 60 miles per hour", dist) == ["120"]  # a speed is no distance


def _bfcl_args(backend, name, params, required, question):
    """Arguments mrkl's BFCL pipeline decodes for one function (the real argument prompt)."""
    import json

    from mrkl.bfcl import experts_for
    from router.llm_router import LLMRouter

    fn = {"name": name, "description": name.replace("_", " "), "parameters": {"type": "dict", "properties": params, "required": required}}
    router = LLMRouter(backend, constrained=True, per_field=True, ground_optional=True, repair=False)
    _args, raw, err = router.extract_args(question, experts_for([fn])[0])
    assert err is None, err
    return json.loads(raw)


@pytest.mark.slow
def test_decoder_writes_dates_cities_counts_units_and_whole_names_as_the_schema_asks(smollm2):
    s = {"type": "string"}
    got = _bfcl_args(smollm2, "lawsuit_search", {
        "company": {**s, "description": "The company."},
        "start_date": {**s, "description": "Start of the date range, in the format of MM-DD-YYYY."}}, ["company", "start_date"],
        "Search for lawsuits against the company 'Google' filed after January 1, 2021.")
    assert got == {"company": "Google", "start_date": "01-01-2021"}
    got = _bfcl_args(smollm2, "lawyer.find_nearby", {
        "city": {**s, "description": "The city and state, e.g. Chicago, IL."},
        "fee": {"type": "integer", "description": "Hourly fee charged by lawyer"}}, ["city", "fee"],
        "Find a lawyer charging less than 400 dollars per hour in Chicago.")
    assert got == {"city": "Chicago, IL", "fee": 400}
    got = _bfcl_args(smollm2, "concert_booking.book_ticket", {
        "artist": {**s, "description": "The artist."}, "city": {**s, "description": "The city."},
        "num_tickets": {"type": "integer", "description": "Number of tickets required. Default is 1."}}, ["artist", "city"],
        "Get me two tickets for next Eminem concert in New York City.")
    assert got["num_tickets"] == 2 and got["artist"] == "Eminem"
    got = _bfcl_args(smollm2, "calculate_circumference", {
        "radius": {"type": "integer", "description": "The radius of the circle."},
        "unit": {**s, "description": "The unit of measurement for the radius. Default is 'cm'."}}, ["radius"],
        "What is the circumference of a circle with a radius of 4 inches?")
    assert got == {"radius": 4, "unit": "inches"}
    got = _bfcl_args(smollm2, "sports_ranking", {
        "team": {**s, "description": "Name of the team."}, "league": {**s, "description": "Name of the league."},
        "season": {"type": "integer", "description": "Season year."}}, ["team", "league"],
        "What's the ranking of Barcelona in the 2021 La Liga season?")
    assert got["team"] == "Barcelona" and got["league"] == "La Liga"


def test_relative_periods_and_short_spans():
    from router.values import question_spans, relative_period

    days = {"type": "integer", "description": "Number of days for the forecast."}
    assert relative_period("days", days, "air quality of New York for the next week?") == 7
    assert relative_period("days_ahead", {"type": "integer", "description": "days from now"}, "upcoming month rock concerts") == 30
    assert relative_period("months", {"type": "integer", "description": "Number of future months."}, "prices for the next month") == 1
    assert relative_period("duration", {"type": "integer", "description": "The period in years."}, "over the past decade") == 10
    assert relative_period("days", days, "next week and next month") is None  # two periods
    assert relative_period("weeks", {"type": "integer"}, "the past decade") is None  # a decade in weeks: no convention here
    assert relative_period("city", {"type": "string"}, "next week") is None and relative_period("days", days, None) is None
    q = "Plants for a hill slope, in terms of erosion prevention."
    assert "hill slope" in question_spans(q, max_words=4, commas=False)
    assert not any("," in s for s in question_spans(q, commas=False)) and "slope, in terms" in question_spans(q)


def test_review_findings_on_the_value_readers():
    from router.values import (
        bracket_lists, compounding_periods, counted_number, described_date_format, question_dates, question_spans,
        relative_period, stated_date, whole_name, written_lists,
    )

    # title-case and all-caps questions: capitals mark no names
    assert whole_name("BOSTON", "WHAT IS THE WEATHER IN BOSTON") == "BOSTON"
    assert whole_name("York", "What Is The Population Of New York?") == "York"
    assert whole_name("Boston", "what is up in Boston", 5) == "Boston"  # a stray stop_words argument
    # a date-and-time format is not a date format
    dt_desc = {"type": "string", "description": "Start date and time in format YYYY-MM-DDTHH:MM:SS"}
    assert described_date_format(dt_desc) is None and stated_date("start_date", dt_desc, "on March 11, 2022 at 10am") is None
    cp = {"type": "integer", "description": "the number of times that interest is compounded per unit time"}
    assert compounding_periods("n", cp, "5% compounded semi annually") == 2
    # thousands are no list; a date is no list; "may" the verb is no month; no year below 1000
    assert bracket_lists("a population (1,500,000) and (3,4)") == [[3, 4]] and written_lists("(1,500,000)") == []
    assert written_lists("On March 1, 2020, 3 people came") == []
    assert question_dates("I may 10 times visit on 2023-01-01")[0][1].month == 1 and len(question_dates("I may 10 times visit")) == 0
    assert question_dates("on 0999-03-11") == []
    # nullable types; the unit of a relative period must be what the argument counts
    assert counted_number("num_tickets", {"type": ["integer", "null"], "description": "Number of tickets"}, "two tickets") == 2
    assert counted_number("num_tickets", {"type": "integer", "description": "Number of tickets"}, "99999999999999999999999 tickets") is None
    assert relative_period("max_results", {"type": "integer", "description": "results from the last days"}, "the last week") is None
    assert relative_period("limit", {"type": "integer", "description": "The number of days to look back"}, "the past week") == 7
    assert question_spans("a b", max_words=None) == ["b"]  # the default length, not a TypeError ("a" alone is a function word)


def test_values_that_only_name_the_call():
    from router.arguments import call_words, names_the_call

    props = {"weight": {}, "height": {}, "unit": {}}
    words = call_words("unit", props, "calculate_bmi")
    assert words == {"weight", "height", "calculate", "bmi"}  # not the argument's own name
    assert names_the_call("weight", words) and names_the_call("Weights", words)  # singular and plural alike
    assert not names_the_call("metric", words) and not names_the_call("weight in kg", words)
    assert names_the_call("instrument", call_words("make", {"budget": {}, "type": {}, "make": {}}, "find_instrument"))
    assert names_the_call("Safeway", call_words("location", {"location": {}, "items": {}}, "safeway.order"))
    assert not names_the_call("", words) and not names_the_call(3, words) and not names_the_call("weight", set())  # type: ignore[arg-type]
    assert call_words("x", None, None) == set()  # type: ignore[arg-type]


def test_question_spans_keep_filters_spans():
    from router.values import question_spans, span_pattern

    q = "Search for lawsuits filed against Apple in Santa Clara County."
    spans = question_spans(q, max_words=4, keep=lambda s: "apple" not in s.lower())
    assert "Santa Clara County" in spans and not any("Apple" in s for s in spans)
    assert span_pattern("Apple", keep=lambda s: False) is None


def test_missing_numbers_flags_functions_the_question_cannot_feed():
    from router.relevance import missing_numbers

    roots = {"properties": {"a": {"type": "number"}, "b": {"type": "number"}, "c": {"type": "number"}, "kind": {"type": "string"}},
             "required": ["a", "b", "c", "kind"]}
    assert missing_numbers("What is the roots of linear equation bx + c = 0?", roots) == 1.0  # one number for three
    assert missing_numbers("Roots of 2x^2 + 3x + 1 = 0", roots) == 0.0
    assert missing_numbers("Roots with a two, b three and c four", roots) == 0.0  # number words count
    optional = {"properties": {"a": {"type": "number"}}, "required": []}
    assert missing_numbers("What is the best way to reduce CO2 emissions?", optional) == 0.0  # only required ones count
    assert missing_numbers(None, roots) == 0.0 and missing_numbers("x", {"required": ["a"]}) == 0.0  # type: ignore[arg-type]


def test_relevance_gate_missing_numbers_term_is_calibrated():
    from router.relevance import RelevanceGate

    # the irrelevant questions are as similar as the relevant ones but cannot supply the numbers
    rows = [(0.5, 0.0, True, 0.0, 0.0, 0.0), (0.45, 0.0, True, 0.0, 0.0, 0.0), (0.55, 0.0, True, 0.0, 0.0, 1.0),
            (0.5, 0.0, False, 0.0, 0.0, 1.0), (0.47, 0.0, False, 0.0, 0.0, 1.0), (0.3, 0.0, False, 0.0, 0.0, 0.0)]
    gate = RelevanceGate()
    rep = gate.fit(rows, weights=(0.0,), number_weights=(0.0, 0.1, 0.2))
    assert rep["number_weight"] == 0.1 and rep["balanced_accuracy"] == 1.0
    assert all(gate.accepts(s, u, m, n, r) == y for s, u, y, m, n, r in rows)
    assert RelevanceGate().fit(rows, weights=(0.0,))["balanced_accuracy"] < 1.0  # similarity alone cannot separate them
    assert gate.score(0.5, 0.0, 0.0, 0.0, float("nan")) == gate.score(0.5, 0.0)  # a bad value counts as 0


@pytest.mark.slow
def test_decoder_does_not_fill_arguments_with_words_of_the_call(smollm2):
    s = {"type": "string"}
    got = _bfcl_args(smollm2, "calculate_bmi", {
        "weight": {"type": "integer", "description": "Weight of the person in kilograms."},
        "height": {"type": "integer", "description": "Height of the person in centimeters."},
        "unit": {**s, "description": "Optional parameter to choose between 'imperial' and 'metric' systems. Default is 'metric'."}},
        ["weight", "height"], "Can you calculate my Body Mass Index (BMI) given my weight is 70 kg and height is 180 cm?")
    assert got == {"weight": 70, "height": 180}  # the model wrote unit="weight"
    got = _bfcl_args(smollm2, "find_restaurant", {
        "location": {**s, "description": "The location where user wants to search for a restaurant."},
        "type": {**s, "description": "The type of the cuisine/restaurant."},
        "diet_option": {**s, "description": "Special dietary preferences."}}, ["location", "type", "diet_option"],
        "Can I find an Italian restaurant with Gluten-free options near Brooklyn?")
    assert got == {"location": "Brooklyn", "type": "Italian", "diet_option": "Gluten-free"}  # the model wrote type="restaurant"


def test_whole_token_gives_back_paths_and_codes_whole():
    from router.values import whole_token

    q = "Who was the victim in the case docket numbered 2022/AL2562 in California?"
    assert whole_token("AL2562", q) == "2022/AL2562"
    assert whole_token("California", q) == "California" and whole_token("2022", q) == "2022"  # a number alone is not extended
    assert whole_token("myfMRI.nii", "Analyze my fMRI data in ~/data/myfMRI.nii from a multi-band sequence.") == "~/data/myfMRI.nii"
    assert whole_token("mole", "Calculate the molecular weight of Glucose (C6H12O6) in grams/mole.", unit=True) == "grams/mole"
    assert whole_token("mole", "Calculate the molecular weight of Glucose in grams/mole.") == "mole"  # not a unit argument
    for v, q in (("USD", "the current USD/JPY exchange rate"), ("Boston", "flights NYC/Boston"), ("TCP", "the TCP/IP stack")):
        assert whole_token(v, q) == v  # two words joined by a slash are a pair, not one value
    assert whole_token("my_data.json", "Train on the provided data my_data.") == "my_data"  # an extension the model added
    assert whole_token("plasma_membrane", "proteins in the plasma membrane?") == "plasma_membrane"
    assert whole_token("Paris", "Flights Paris/London") == "Paris"  # two names, not one path
    assert whole_token("or", "yes and/or no") == "or"  # too short to be a code
    assert whole_token("data", "both ~/data/a.csv and ~/data/b.csv") == "data"  # two candidates: unchanged
    assert whole_token(5, "x") == 5 and whole_token("a", None) == "a"  # type: ignore[arg-type]


def test_clock_hour_on_a_24_hour_clock():
    from router.values import clock_hour

    d = {"type": "integer", "description": "Preferred latest closing time. E.g. 11 means 11 PM. This is in 24 hour format."}
    assert clock_hour("operating_hours", d, "Find a vegan restaurant that opens until at least 11 PM.") == 23
    assert clock_hour("operating_hours", d, "closing after 7:30 a.m.") is None  # minutes: not a whole hour
    assert clock_hour("operating_hours", d, "closing after 7:00 p.m.") == 19
    assert clock_hour("time", {"type": "integer", "description": "Time in 24-hour format as HHMM, e.g. 1430."}, "an alarm for 6 am") is None
    assert clock_hour("minute", d, "at 6 pm") is None
    assert clock_hour("operating_hours", d, "at 12 AM") == 0 and clock_hour("operating_hours", d, "at 12 pm") == 12
    assert clock_hour("operating_hours", d, "from 9am to 5 p.m.") is None  # two times: not stated
    assert clock_hour("operating_hours", {"type": "integer", "description": "closing hour"}, "until 11 PM") is None
    assert clock_hour("operating_hours", d, "until 13 pm") is None and clock_hour("operating_hours", d, None) is None  # type: ignore[arg-type]


def test_call_word_at_an_end_marks_a_copied_clause():
    from router.arguments import call_word_end

    assert call_word_end("the scientist that first proposed the theory of evolution", {"scientist", "discovery"}) == "first"
    assert call_word_end("Santa Clara county", {"county", "entity"}) == "last"
    assert call_word_end("recipe for brownies", {"recipe", "type"}) == "first"
    assert call_word_end("Natural History Museum", {"museum"}) is None  # a capitalised word belongs to the name
    assert call_word_end("county", {"county"}) is None  # one word: names_the_call's case
    assert call_word_end("your_dataset_name", {"dataset"}) is None  # an identifier the question writes
    assert call_word_end("salt lake city", {"city"}) is None and call_word_end("kansas city", {"city"}) is None  # lower-case names
    assert call_word_end("2020-2021 season", {"season"}) == "last"
    assert call_word_end("x**3", {"x"}) is None and call_word_end("Boston", set()) is None
    assert call_word_end(None, {"x"}) is None  # type: ignore[arg-type]


@pytest.mark.slow
def test_decoder_takes_the_value_not_the_clause_around_it(smollm2):
    s = {"type": "string"}
    got = _bfcl_args(smollm2, "get_scientist_for_discovery", {
        "discovery": {**s, "description": "The scientific discovery or theory."}}, ["discovery"],
        "Who is the scientist that first proposed the theory of evolution?")
    assert got == {"discovery": "theory of evolution"}  # the model copied "the scientist that first proposed ..."
    got = _bfcl_args(smollm2, "sports_stats.get_performance", {
        "player_name": {**s, "description": "Name of the player."},
        "tournament": {**s, "description": "Name of the soccer tournament."},
        "season": {**s, "description": "Specific season in format 'YYYY-YYYY'."}}, ["player_name", "tournament", "season"],
        "Calculate the overall goal and assist of soccer player Messi in La Liga 2020-2021 season")
    assert got == {"player_name": "Messi", "tournament": "La Liga", "season": "2020-2021"}


def test_ordered_pairs_follow_the_question():
    from router.arguments import in_question_order

    q = "Find out how genetically similar a human and a chimp are in percentage."
    assert in_question_order({"species1": "chimp", "species2": "human", "format": "percentage"}, q) == {
        "species1": "human", "species2": "chimp", "format": "percentage"}
    route = {"start_location": "Los Angeles", "end_location": "San Francisco"}
    assert in_question_order(route, "San Francisco is where I end and Los Angeles where I start") == route  # a direction: words decide
    money = {"from_currency": "USD", "to_currency": "EUR"}
    assert in_question_order(money, "How many EUR is 100 USD?") == money
    assert in_question_order({"team_1": "Lakers", "team_2": "Clippers"}, "Clippers vs Lakers") == {"team_1": "Clippers", "team_2": "Lakers"}
    assert in_question_order({"species1": "chimp", "species2": "human"}, q, decoded={"species1"}) == {"species1": "chimp", "species2": "human"}
    assert in_question_order(None, q) is None and in_question_order({"a1": 1, "a2": 2}, q) == {"a1": 1, "a2": 2}  # type: ignore[arg-type]


def test_named_numbers_undo_an_exchange_of_two_numbers():
    from router.arguments import named_numbers_swapped
    from router.values import named_number

    props = {"total_payout": {"type": "integer"}, "outstanding_shares": {"type": "integer"}}
    q = "What's the quarterly dividend per share of a company with 100 million outstanding shares and total dividend payout of 50 million USD?"
    assert named_number("outstanding_shares", props["outstanding_shares"], q, props) == 100000000
    assert named_number("total_payout", props["total_payout"], q, props) == 50000000
    swapped = named_numbers_swapped({"total_payout": 100000000, "outstanding_shares": 50000000}, props, q)
    assert swapped == {"total_payout": 50000000, "outstanding_shares": 100000000} and isinstance(swapped["total_payout"], int)
    right = {"total_payout": 50000000, "outstanding_shares": 100000000}
    assert named_numbers_swapped(right, props, q) == right
    # a converted value is no exchange: 5% as 0.05 stays
    rate = {"principal": {"type": "integer"}, "annual_interest_rate": {"type": "number"}}
    got = {"principal": 5000, "annual_interest_rate": 0.05}
    assert named_numbers_swapped(got, rate, "a $5000 investment with an annual interest rate of 5%", None) == got
    sides = {"side1": {"type": "integer"}, "side2": {"type": "integer"}}
    assert named_number("side1", sides["side1"], "sides 3 and 4", sides) is None  # the names share every word
    assert named_number("x", {"type": "string"}, "x 3", {}) is None and named_numbers_swapped(None, props, q) is None  # type: ignore[arg-type]


def test_described_examples_and_inflected_options_are_stated():
    from router.arguments import stated_value
    from router.values import described_examples, named_option

    case = {"type": "string", "description": "Type of the lawsuit, e.g., 'IPR', 'Patent', 'Commercial', etc. Default is 'all'."}
    assert described_examples(case) == ["IPR", "Patent", "Commercial", "all"]
    assert stated_value("case_type", case, "Find details of patent lawsuits involving the company 'Apple Inc.' from 2010.") == (True, "Patent")
    assert stated_value("case_type", case, "Find lawsuits involving Apple") == (False, None)
    key = {"type": "string", "description": "The key of the melody, e.g. 'C' for C major."}
    assert stated_value("key", key, "What is the musical scale of C# major?") == (False, None)  # "C" is not named in "C#"
    expr = {"type": "string", "description": "The function, e.g. 'x^3'."}
    assert stated_value("function", expr, "Integrate x^3 from -2 to 3") == (False, None)  # an expression is not an example
    assert described_examples({"type": "string", "description": "One of 'a' or 'b'."}) is None  # a closed set is not examples
    assert named_option(["basic", "detailed"], "punishments for theft in California in detail.") == "detailed"
    assert named_option(["basic", "detailed"], "a basic report") == "basic" and named_option(["basic", "detailed"], "theft") is None
    assert named_option(["limited", "full"], "with no limit") is None  # a negated stem names nothing


def test_a_date_the_question_does_not_write_is_invented():
    from router.arguments import invented

    assert invented("{2023-01-01T00:00:00Z}", "Convert time 3pm from New York time zone to London time zone.", "time")
    assert invented("2022-01-01", "Get information about the pop concerts in New York for next month.", "date")
    assert not invented("2022-03-11", "Get the stock price of Amazon on March 11, 2022.", "date")  # a rewrite of the question's date


def test_plural_es_is_read_as_plural():
    from router.values import _without_plural_s, named_options

    assert [_without_plural_s(w) for w in ("hearts", "weaknesses", "matches", "boxes", "gas", "weakness", "class")] == [
        "heart", "weakness", "match", "box", "gas", "weakness", "class"]
    assert named_options(["strengths", "weaknesses"], "Get me strength and weakness traits for ENFJ.") == ["strengths", "weaknesses"]


def test_implied_deck_size_and_die_sides():
    from router.values import implied_value

    deck = {"type": "integer", "description": "Number of cards in the deck."}
    assert implied_value("deck_size", deck, "What is the probability of getting a full house in poker?") == 52
    assert implied_value("deck_size", deck, "Shuffle an Uno deck") is None  # another deck
    assert implied_value("deck_size", deck, "a 40-card deck") is None  # the question says how many
    assert implied_value("total_cards", {"type": "integer", "description": "Total cards in the deck."}, "a heart from a deck of 52 cards") is None
    die = {"type": "integer", "description": "Number of sides on each die."}
    assert implied_value("sides_per_die", die, "the probability of rolling a sum of 7 on a roll of two dice") == 6
    assert implied_value("sides_per_die", die, "rolling two 20-sided dice") is None and implied_value("sides_per_die", die, "roll 2d20") is None
    assert implied_value("number_of_rolls", {"type": "integer", "description": "How many times the die is rolled."}, "roll a die twice") is None
    for q in ("a deck of 54 cards", "the deck has 48 cards", "a deck of cards with 2 jokers", "a deck of forty cards"):
        assert implied_value("deck_size", deck, q) is None, q  # the question says how many, or another deck
    assert implied_value("deck_size", deck, "a deck of playing cards") == 52
    assert implied_value("cards_drawn", deck, "draw 5 cards from a standard deck") is None  # not the deck's size
    assert implied_value("target_face", die, "probability of rolling a 4 on a die") is None  # a face, not the faces
    assert implied_value("num_dice", die, "roll a die") is None
    for q in ("a die with eight faces", "an octahedral die", "a die numbered 1 to 20"):
        assert implied_value("dice_faces", die, q) is None, q


def test_a_dictionary_the_question_writes_is_stated():
    from router.arguments import stated_value
    from router.values import written_mapping

    q = "Calculate the average grade for John who has these scores {'math':90, 'science':75, 'history':82} across subjects."
    assert written_mapping(q) == {"math": 90, "science": 75, "history": 82}
    assert written_mapping('config {"a": [1, 2]}') == {"a": [1, 2]} and written_mapping("{x}") is None
    assert written_mapping("{'a': 1} and {'b': 2}") is None  # two dictionaries: the model decides
    assert written_mapping("{__import__('os').system('ls'): 1}") is None  # a literal, never code
    assert written_mapping(None) is None and written_mapping("{" * 20000) is None  # type: ignore[arg-type]
    free = {"type": "object", "description": "A dictionary where keys represent subjects and values represent scores"}
    assert stated_value("gradeDict", free, q) == (True, {"math": 90, "science": 75, "history": 82})
    assert stated_value("gradeDict", {**free, "additionalProperties": {"type": "string"}}, q) == (False, None)  # scores are no strings
    assert stated_value("cfg", {"type": "object", "properties": {"a": {"type": "integer"}}}, q) == (False, None)


def test_superscript_units_have_a_kind():
    from router.values import _dimensionality, unit_mismatch

    density = {"type": "string", "description": "The unit of density. Default is kg/m³"}
    assert str(_dimensionality("kg/m³")) == "[mass] / [length] ** 3" and str(_dimensionality("m²")) == "[length] ** 2"
    assert unit_mismatch("unit", density, "kg")  # a mass where a density is meant: not grounded by "45 kg"
    assert not unit_mismatch("unit", density, "g/cm³")


def test_polynomial_coefficients_and_intervals_are_read_from_the_question():
    from router.arguments import stated_value
    from router.values import polynomial_coefficients, written_interval

    q = "Calculate the area under the curve y=3x^2 + 2x - 4, between x = -1 and x = 2."
    poly = {"type": "array", "items": {"type": "number"}, "description": "The coefficients of the polynomial, in decreasing order of exponent."}
    assert polynomial_coefficients("polynomial", poly, q) == [3.0, 2.0, -4.0]
    low_first = {**poly, "description": "Coefficients, lowest degree first."}
    assert polynomial_coefficients("coefficients", low_first, q) == [-4.0, 2.0, 3.0]
    assert polynomial_coefficients("polynomial", poly, "the area under sin(x) + 1") is None  # no polynomial
    assert polynomial_coefficients("polynomial", poly, "roots of y = x(x+1)") == [1.0, 1.0, 0.0]
    for bad in ("y = (x+1)^100000", "y = x^(9^9^9)", "y = 9^9^9 x + 1", "y = x^99999999 + 1", "y = x^(10^10)"):
        assert polynomial_coefficients("polynomial", poly, bad) is None, bad  # refused at once, never expanded
    assert polynomial_coefficients("values", {"type": "array", "items": {"type": "number"}}, q) is None  # not asked for
    limits = {"type": "array", "items": {"type": "number"}, "description": "The lower and upper limit of the integration interval."}
    assert written_interval("limits", limits, q) == [-1.0, 2.0]
    assert written_interval("year_range", {"type": "array", "items": {"type": "integer"}}, "cases from 2015 to 2021") == [2015, 2021]
    assert written_interval("limits", limits, "from 1 to 2 and from 3 to 4") is None  # two intervals
    assert stated_value("limits", limits, q) == (True, [-1.0, 2.0])
    assert polynomial_coefficients("p", None, q) is None and written_interval("l", limits, None) is None  # type: ignore[arg-type]


def test_compass_letters_sign_coordinates():
    from router.values import with_compass_sign

    q = "Calculate the distance between two GPS coordinates (33.4484 N, 112.0740 W) and (34.0522 N, 118.2437 W) in miles."
    assert with_compass_sign([33.4484, 112.074], q) == [33.4484, -112.074]
    assert with_compass_sign(118.2437, q) == -118.2437 and with_compass_sign(34.0522, q) == 34.0522
    assert with_compass_sign(5, "a 5 W light bulb") == 5  # watts, not a coordinate
    assert with_compass_sign([-33.9, 151.2], "Sydney is at 33.9 S, 151.2 E") == [-33.9, 151.2]  # already signed
    assert with_compass_sign("x", q) == "x" and with_compass_sign(3, None) == 3  # type: ignore[arg-type]


def test_review_findings_on_the_new_rules():
    from router.arguments import invented, names_the_call
    from router.llm_router import parse_json_object
    from router.relevance import RelevanceGate, missing_numbers
    from router.values import _dimensionality, _without_plural_s, implied_value, named_option, named_options
    from router.values import with_compass_sign, written_interval, written_mapping

    assert with_compass_sign(20, "A motor exerts a force of 40 N with a power output of 20 W.") == 20  # newtons and watts
    assert with_compass_sign(300, "a 300 W solar panel at 34 N, 118 W") == 300
    assert written_interval("range", {"type": "array", "items": {"type": "integer"}}, "5 random numbers from 1 to 10,000") == [1, 10000]
    assert written_mapping("Similarity of {'a': {1, 2, 3}, 'b': {2, 3}}") is None  # sets are no JSON
    assert written_mapping('{"a": ' + "[" * 3000 + "]" * 3000 + "}") is None  # too deep: no RecursionError
    assert [_without_plural_s(w) for w in ("news", "status", "Paris", "lens", "Mars")] == ["news", "status", "Paris", "lens", "Mars"]
    assert named_option(["news", "reviews", "sports"], "Any new articles about Apple?") is None
    assert named_option(["vegan", "vegetarian", "keto"], "a dinner recipe that is not vegan") is None
    assert named_options(["nuts", "dairy"], "snacks with nuts but no dairy") == ["nuts"]
    from router.arguments import stated_value

    avoid = {"type": "array", "items": {"type": "string", "enum": ["tolls", "highways", "ferries"]}}
    q = "Get me the directions from New York to Los Angeles avoiding highways and toll roads."
    assert stated_value("avoid", avoid, q) == (True, ["tolls", "highways"])  # a negative name takes the negated mentions
    assert implied_value("initial_velocity", {"type": "number"}, "A ball is released at 15 m/s") is None  # a written speed
    assert _dimensionality("N·m") == _dimensionality("J") and _dimensionality(None) is None  # a torque is an energy in kind
    assert not invented("Zürich", "weather in Zurich", "city") and not invented("new_york_city", "hotels in new york city", "city")
    assert names_the_call("x", "x") is False  # type: ignore[arg-type]
    assert missing_numbers("x", {"properties": {"a": {"type": ["integer", "null"]}}, "required": ["a"]}) == 1.0
    assert missing_numbers("x", {"properties": {"a": {"type": "integer"}}, "required": [["a"]]}) == 0.0
    for text, where in (('{"where": {"AlbumId": 100000000000000000000000000', "a number"), ('{"a": NaN}', "NaN"), ('{"a": 1e99999}', "finite")):
        with pytest.raises(ValueError, match=where):
            parse_json_object(text)
    with pytest.raises(ValueError):
        parse_json_object(None)  # type: ignore[arg-type]
    rows = [(0.5, 0.0, True), (0.3, 0.0, False)]
    for bad in ((), (float("nan"),), (-0.1,)):
        with pytest.raises(ValueError, match="weights"):
            RelevanceGate().fit(rows, number_weights=bad)


def test_values_of_the_wrong_kind_are_recognised():
    """misfit: a time phrase, or a year another argument is for, in a place or topic; another argument's
    allowed value; a name where an e-mail address is asked. Titles, zip codes and pairs are left alone."""
    from router.arguments import misfit, not_an_email, numeric_text_argument, other_option, without_content

    assert [without_content(v) for v in ("2020", "12", "past 5", "the last 3 years")] == [True] * 4
    assert [without_content(v) for v in ("Route 66", "5th avenue", "Mississippi river", "", 12, "A")] == [False] * 6
    place = {"type": "string", "description": "The name of the location."}
    turtles = {"location": place, "year": {"type": "integer", "description": "The year of the data requested."}}
    q = "Find out the population and species of turtles in Mississippi river in 2020."
    assert misfit("2020", "location", place, turtles, q) and not misfit("Mississippi river", "location", place, turtles, q)
    assert misfit("past 5", "topic", {"type": "string"}, {}, "cases in the past 5 years")
    book = {"title": {"type": "string", "description": "The title of the book."}}
    assert not misfit("1984", "title", book["title"], book, "Find the book 1984 by George Orwell")  # no year argument
    movie = {"movie": {"type": "string"}, "year": {"type": "integer"}}
    assert not misfit("2012", "movie", movie["movie"], movie, "Who directed the movie 2012 released in 2009?")  # 2009 is the year
    assert not misfit("10001", "location", place, {"location": place}, "pizza near 10001") and not misfit("Next", "store", {}, {}, "x")
    assert numeric_text_argument("zip_code", {"type": "string"}) and numeric_text_argument("time_frame", {"type": "string"})
    assert numeric_text_argument("when", {"type": "string", "format": "date"}) and numeric_text_argument("season", {"type": "string"})
    props = {"name": {"type": "string"}, "source": {"type": "string", "enum": ["scriptures", "historical records"]}}
    assert other_option("historical record", "name", props) and other_option("Historical Records", "name", props)
    assert not other_option("Jesus Christ", "name", props) and not other_option("scriptures", "source", props)
    described = {"topic": {"type": "string"}, "style": {"type": "string", "description": "One of 'formal' or 'casual'."}}
    assert other_option("formal", "topic", described) and not other_option("formal dinner", "topic", described)
    units = {"from_unit": {"type": "string", "enum": ["meters", "feet"]}, "to_unit": {"type": "string"}}
    assert not other_option("feet", "to_unit", units)  # a pair may share a value
    assert not other_option("?", "name", {"order": {"type": "string", "enum": ["", "asc"]}})  # no words, no match
    cc = {"type": "string", "description": "The email address to carbon copy."}
    assert not_an_email("John Doe", "cc", cc) and not not_an_email("jd@example.com", "cc", cc)
    assert not_an_email("John", "user_email", {"type": "string"}) and not_an_email("John", "email_address", {})
    assert not not_an_email("Meeting", "subject", {"type": "string", "description": "The subject of the email."})
    assert not not_an_email("Quarterly results", "email_subject", {"type": "string"})


def test_trailing_number_of_another_argument_and_tidy_lists():
    from router.arguments import tidy_items, trailing_value_removed

    assert trailing_value_removed("Criminal Law Amendment Act of 2013", [2013], "the Act of 2013") == "Criminal Law Amendment Act"
    assert trailing_value_removed("Criminal Law Amendment Act of 2013", [2014], "the Act of 2013") == "Criminal Law Amendment Act of 2013"
    assert trailing_value_removed("2013", [2013], "in 2013") == "2013"  # nothing but the number stays
    assert trailing_value_removed("Act of 2013", [True], "x") == "Act of 2013"  # a flag is no number
    q = "Give me a recipe for a vegetarian pasta with cheese for 2 servings."
    assert tidy_items(["cheese", "pasta", "Cheese", "pasta with cheese"], q) == ["pasta", "cheese"]
    assert tidy_items(["Lakers", "Clippers"], "the game between Clippers and Lakers") == ["Clippers", "Lakers"]
    assert tidy_items(["x", "Lakers"], "Lakers") == ["Lakers", "x"]  # unwritten items last, in their order
    assert tidy_items(["a", 1], "a 1") == ["a", 1] and tidy_items([], "q") == [] and tidy_items("a", "a") == "a"
    assert tidy_items(["New York", "York", "New York City"], "New York City and York") == ["New York", "New York City", "York"]
    assert "Bosnia and Herzegovina" in tidy_items(["Bosnia and Herzegovina", "Bosnia", "Herzegovina"], "Bosnia and Herzegovina")
    assert trailing_value_removed("War of 1812", [1812], "the War of 1812") == "War of 1812"  # a name stays
    import time

    t0 = time.perf_counter()
    trailing_value_removed("a" + " " * 9000 + "x", [5], "q")
    tidy_items([f"item {i}" for i in range(2000)], "q")
    assert time.perf_counter() - t0 < 1.0  # no quadratic regex work on long input


def test_twice_and_thrice_are_numbers():
    assert question_numbers("rolling a six on a six-sided die twice in a row") == ["6", "2"]
    assert question_numbers("roll it thrice, then 4 more") == ["4", "3"]
    assert question_numbers("do it at once") == []


def test_unquoted_lower_case_examples_of_a_description():
    """Lower-case examples listed without quotes are examples too; proper names show a format and are not."""
    from router.values import described_examples, named_option

    def ex(desc):
        return described_examples({"type": "string", "description": desc})

    assert ex("The specific field of law e.g., constitutional law, criminal law, etc.") == ["constitutional law", "criminal law"]
    assert ex("Type of the artwork. E.g., painting, sculpture, installation.") == ["painting", "sculpture", "installation"]
    assert ex("The genre such as rock or jazz.") == ["rock", "jazz"]
    assert ex("The city and state, e.g. San Francisco, CA") is None  # a format, not a kind
    assert ex("The location of the museum, e.g., Paris, France.") is None  # city, country: a format
    assert ex("The team, e.g. Lakers, and the season") is None  # the list ran on into the sentence
    assert ex("such as rock, pop, jazz and so on") == ["rock", "pop", "jazz"] and ex("such as a, a, a") is None
    assert ex("Type, e.g., 'IPR', 'Patent'") == ["IPR", "Patent"]  # quoted ones first, as before
    assert ex("The medium, e.g. oil") is None  # one item is no list
    assert named_option(ex("Type of the artwork. E.g., painting, sculpture, installation."), "famous contemporary sculptures") == "sculpture"


def test_the_opening_words_of_the_question_are_no_value():
    from router.arguments import opens_question

    assert opens_question("Search for famous", "Search for famous contemporary sculptures in New York.")
    assert opens_question("Fetch", "Fetch the NBA standings") and opens_question("What's the ranking", "What's the ranking of the Lakers?")
    q = "I want to find 5 restaurants nearby my location, Manhattan."
    assert opens_question(q, q)
    assert not opens_question("Lakers", "Lakers games tonight")  # not a request word
    assert opens_question("Find", "Find restaurants in Boston")  # the request word alone
    assert not opens_question("New York", "Search in New York") and not opens_question(None, "x")
    assert not opens_question("When Harry Met Sally", "When Harry Met Sally reviews")  # a title


def test_kind_arguments_take_the_modifier_and_untyped_values_lose_an_unwritten_extension():
    from router.arguments import kind_modifier
    from router.values import described_examples, whole_token

    assert kind_modifier("gas-fueled car", "fuel_type") == "gas"
    assert kind_modifier("renewable energy sources", "energy_type") == "renewable"
    assert kind_modifier("diesel", "fuel_type") == "diesel"  # no noun to cut
    assert kind_modifier("energy drinks", "energy_type") == "energy drinks"  # starts with the noun
    assert kind_modifier("Italian cuisine", "cuisine") == "Italian cuisine"  # not a kind argument
    assert kind_modifier("Italian cuisine", "cuisine_type") == "Italian cuisine"  # ends with the noun: may be the name
    assert kind_modifier("living room", "room_type") == "living room" and kind_modifier("ex-fuel", "fuel_type") == "ex-fuel"
    assert kind_modifier("carbon fiber car", "car_type") == "carbon fiber car"  # "carbon" is no "car"
    assert kind_modifier("rock concert", "event_type") == "rock concert" and kind_modifier(3, "fuel_type") == 3
    assert whole_token("my_data.json", "on the provided data my_data.") == "my_data"
    assert described_examples({"type": "string", "description": "Type of the room e.g. Living room, Bathroom etc."}) == ["Living room", "Bathroom"]


def test_title_case_examples_after_e_g_colon():
    from router.values import described_examples, named_option

    ex = described_examples({"type": "string", "description": "The musical scale to be used. E.g: C Major, A Minor, etc."})
    assert ex == ["C Major", "A Minor"] and named_option(ex, "notes of C major scale") == "C Major"
    assert described_examples({"type": "string", "description": "The city and state, e.g. San Francisco, CA"}) is None
