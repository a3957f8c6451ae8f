"""BFCL harness: schema conversion, AST scoring, data loading, baselines, bad input."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from mrkl.bfcl import (
    BFCLCase,
    BFCLExpert,
    BFCLSchemaError,
    NaiveSystem,
    ast_match,
    evaluate,
    experts_for,
    format_table,
    load_cases,
    score_case,
    to_json_schema,
)
from mrkl.errors import ArgumentError, MRKLError

AREA = {
    "name": "geometry.area",
    "description": "Calculate the area of a triangle.",
    "parameters": {
        "type": "dict",
        "properties": {
            "base": {"type": "integer", "description": "The base."},
            "height": {"type": "float", "description": "The height."},
            "unit": {"type": "string", "enum": ["cm", "m"], "description": "Unit."},
            "tags": {"type": "array", "items": {"type": "string"}},
            "point": {"type": "tuple", "items": {"type": "integer"}},
            "extra": {"type": "any"},
            "opts": {"type": "dict", "properties": {"round": {"type": "boolean"}}, "required": ["round"]},
        },
        "required": ["base", "height"],
    },
}
GT = {"geometry.area": {"base": [10], "height": [5.0], "unit": ["cm", ""], "tags": [""], "point": [""], "extra": [""], "opts": [""]}}


def test_bfcl_types_map_to_json_schema():
    s = to_json_schema(AREA["parameters"])
    p = s["properties"]
    assert s["type"] == "object" and s["required"] == ["base", "height"] and s["additionalProperties"] is False
    assert p["base"]["type"] == "integer" and p["height"]["type"] == "number"
    assert p["unit"] == {"description": "Unit.", "enum": ["cm", "m"], "type": "string"}
    assert p["tags"] == {"type": "array", "items": {"type": "string"}}
    assert p["point"] == {"type": "array", "items": {"type": "integer"}}
    assert p["extra"] == {}
    assert p["opts"]["properties"]["round"] == {"type": "boolean"} and p["opts"]["required"] == ["round"]


def test_expert_from_bfcl_function_validates_arguments():
    e = BFCLExpert(AREA)
    assert e.name == "geometry_area" and e.function_name == "geometry.area"
    assert e.parse_args({"base": 3, "height": 2.5, "unit": "m", "opts": {"round": True}}).base == 3
    with pytest.raises(ArgumentError):
        e.parse_args({"base": 3})  # height missing
    with pytest.raises(ArgumentError):
        e.parse_args({"base": 3, "height": 1, "unit": "km"})  # not in the enum
    with pytest.raises(ArgumentError):
        e.parse_args({"base": 3, "height": 1, "colour": "red"})  # unknown key
    # names made unique when two functions sanitise alike
    a, b = experts_for([{**AREA, "name": "a.b"}, {**AREA, "name": "a_b"}])
    assert (a.name, b.name) == ("a_b", "a_b_2")


@pytest.mark.parametrize(
    "params, message",
    [
        ({"type": "dict", "properties": {"m": {"type": "HashMap"}}}, "unsupported type 'HashMap'"),
        ({"type": "dict", "properties": {"u": {"type": "string", "enum": []}}}, "empty enum"),
        (
            {"type": "dict", "properties": {"n": {"$ref": "#/$defs/Node"}},
             "$defs": {"Node": {"type": "dict", "properties": {"next": {"$ref": "#/$defs/Node"}}}}},
            "recursive $ref",
        ),
        ({"type": "dict", "properties": {"n": {"$ref": "#/$defs/Missing"}}}, "names no definition"),
        ({"type": "dict", "properties": {"n": {"$ref": "http://example.com/s.json"}}}, "only local $ref"),
        ({"type": "dict", "properties": {"a": {"type": "integer"}}, "required": ["b"]}, "unknown properties"),
    ],
)
def test_unsupported_schemas_raise_clear_errors(params, message):
    with pytest.raises(BFCLSchemaError) as info:
        BFCLExpert({"name": "f", "description": "d", "parameters": params})
    assert message in str(info.value)
    assert "f.parameters" in str(info.value)  # the path names where


def test_non_recursive_ref_is_inlined():
    s = to_json_schema({"type": "dict", "properties": {"p": {"$ref": "#/$defs/P"}}, "$defs": {"P": {"type": "integer"}}})
    assert s["properties"]["p"] == {"type": "integer"}


def test_ast_rules():
    f = AREA
    assert ast_match(("geometry.area", {"base": 10, "height": 5}), f, GT) == (True, "")
    assert ast_match(("geometry.area", {"base": 10, "height": 5.0, "unit": "cm"}), f, GT)[0]
    assert ast_match(("geometry.area", {"base": 10, "height": 5, "unit": "m"}), f, GT)[1].startswith("unit=")
    assert ast_match(("other", {"base": 10, "height": 5}), f, GT)[1].startswith("wrong function")
    assert ast_match(("geometry.area", {"base": 10}), f, GT) == (False, "missing required height")
    assert ast_match(("geometry.area", {"base": 10, "height": 5, "x": 1}), f, GT) == (False, "unknown parameter x")
    assert not ast_match(("geometry.area", {"base": 10.0, "height": 5}), f, GT)[0]  # a float for an integer
    assert not ast_match(("geometry.area", {"base": True, "height": 5}), f, GT)[0]  # a bool is not a number
    assert ast_match(None, f, GT) == (False, "no call")
    # an optional parameter without "" must be given
    gt2 = {"geometry.area": {"base": [10], "height": [5.0], "unit": ["cm"]}}
    assert ast_match(("geometry.area", {"base": 10, "height": 5}), f, gt2) == (False, "missing unit")


def test_ast_strings_lists_and_dicts():
    f = {"name": "g", "parameters": {"type": "dict", "properties": {
        "city": {"type": "string"}, "stops": {"type": "array", "items": {"type": "string"}},
        "o": {"type": "dict", "properties": {"k": {"type": "integer"}}}}, "required": ["city"]}}
    gt = {"g": {"city": ["New York, NY"], "stops": [["A", "B"], ""], "o": [{"k": [1]}, ""]}}
    assert ast_match(("g", {"city": "New York, NY"}), f, gt)[0]
    # BFCL's checker normalises strings; strict mode compares them exactly
    assert ast_match(("g", {"city": "new york ny"}), f, gt)[0]
    assert not ast_match(("g", {"city": "new york ny"}), f, gt, strict_strings=True)[0]
    assert ast_match(("g", {"city": "New York, NY", "stops": ["A", "B"]}), f, gt)[0]
    assert not ast_match(("g", {"city": "New York, NY", "stops": ["B", "A"]}), f, gt)[0]
    assert ast_match(("g", {"city": "New York, NY", "o": {"k": 1}}), f, gt)[0]
    assert not ast_match(("g", {"city": "New York, NY", "o": {"k": 2}}), f, gt)[0]


@pytest.fixture
def bfcl_dir(tmp_path):
    qs = [
        {"id": "simple_python_0", "question": [[{"role": "user", "content": "Area of a triangle with base 10 and height 5?"}]], "function": [AREA]},
        {"id": "simple_python_1", "question": [[{"role": "user", "content": "Area with base 3 and height 2?"}]], "function": [AREA]},
    ]
    ans = [{"id": "simple_python_0", "ground_truth": [GT]}, {"id": "simple_python_1", "ground_truth": [{"geometry.area": {"base": [3], "height": [2.0]}}]}]
    irr = [{"id": "irrelevance_0", "question": [[{"role": "user", "content": "Who wrote Hamlet?"}]], "function": [AREA]}]
    (tmp_path / "possible_answer").mkdir()
    (tmp_path / "BFCL_v4_simple_python.json").write_text("\n".join(json.dumps(q) for q in qs) + "\n")
    (tmp_path / "possible_answer" / "BFCL_v4_simple_python.json").write_text("\n".join(json.dumps(a) for a in ans) + "\n")
    (tmp_path / "BFCL_v4_irrelevance.json").write_text(json.dumps(irr[0]) + "\n")
    return tmp_path


def test_load_cases(bfcl_dir):
    cases = load_cases(bfcl_dir, "simple")
    assert [c.id for c in cases] == ["simple_python_0", "simple_python_1"]
    assert cases[0].question.startswith("Area of a triangle") and cases[0].ground_truth == GT
    irr = load_cases(bfcl_dir, "irrelevance")
    assert irr[0].ground_truth is None
    with pytest.raises(MRKLError, match="unknown BFCL category"):
        load_cases(bfcl_dir, "parallel")
    with pytest.raises(MRKLError, match="no BFCL file"):
        load_cases(bfcl_dir, "multiple")
    (bfcl_dir / "BFCL_v4_irrelevance.json").write_text("{not json\n")
    with pytest.raises(MRKLError, match=":1: not JSON"):
        load_cases(bfcl_dir, "irrelevance")
    # valid JSON of the wrong shape: clear errors naming file and line, never a traceback
    (bfcl_dir / "BFCL_v4_irrelevance.json").write_text("[1, 2]\n")
    with pytest.raises(MRKLError, match="irrelevance.json:1: expected a JSON object with an id"):
        load_cases(bfcl_dir, "irrelevance")
    (bfcl_dir / "BFCL_v4_irrelevance.json").write_text(json.dumps({"id": "x", "question": "not turns"}) + "\n")
    with pytest.raises(MRKLError, match=":1: 'question' must be a list of turns"):
        load_cases(bfcl_dir, "irrelevance")
    answers = bfcl_dir / "possible_answer" / "BFCL_v4_simple_python.json"
    for bad in ({"id": "simple_python_0", "ground_truth": []}, {"id": "simple_python_0"}, [1, 2]):
        answers.write_text(json.dumps(bad) + "\n")
        with pytest.raises(MRKLError, match="simple_python.json:1: expected an object with an id and a non-empty ground_truth"):
            load_cases(bfcl_dir, "simple")


def test_naive_baseline_scores_garbage_as_invalid_and_text_as_no_call(bfcl_dir, scripted):
    replies = iter([
        '{"name": "geometry.area", "arguments": {"base": 10, "height": 5}}',  # right
        '{"name": "geometry.area", "arguments": {"base": 3, "height": ',  # broken JSON
        "Shakespeare wrote Hamlet.",  # text: no call (right for irrelevance)
    ])
    backend = scripted()
    backend.chat = lambda messages, **kw: next(replies)
    rows = evaluate(backend, bfcl_dir, ["simple", "irrelevance"], systems=["naive"])
    simple, irr = rows
    assert (simple.n, simple.exact, simple.valid_json) == (2, 0.5, 0.5)
    assert simple.cases[1].reason == "output is not valid JSON"
    assert (irr.n, irr.exact, irr.valid_json) == (1, 1.0, 1.0)  # no call where none fits: nothing to parse
    assert irr.cases[0].valid_json is None and irr.cases[0].raw == "Shakespeare wrote Hamlet."
    assert "naive" in format_table(rows) and "50.0%" in format_table(rows)


def test_irrelevance_scoring_counts_any_call_as_wrong():
    case = BFCLCase("irrelevance_0", "Who wrote Hamlet?", [AREA], None)
    from mrkl.bfcl import Prediction

    assert score_case(case, Prediction(None))[:3] == (True, True, True)
    assert score_case(case, Prediction(("geometry.area", {"base": 1, "height": 1}), valid_json=True))[0] is False


def test_unsupported_schema_in_a_question_is_a_scored_miss_not_a_crash(tmp_path, scripted):
    bad = {"name": "f", "description": "d", "parameters": {"type": "dict", "properties": {"x": {"type": "HashMap"}}}}
    (tmp_path / "possible_answer").mkdir()
    (tmp_path / "BFCL_v4_simple_python.json").write_text(json.dumps({"id": "s0", "question": [[{"role": "user", "content": "q"}]], "function": [bad]}) + "\n")
    (tmp_path / "possible_answer" / "BFCL_v4_simple_python.json").write_text(json.dumps({"id": "s0", "ground_truth": [{"f": {"x": [1]}}]}) + "\n")
    rows = evaluate(scripted(), tmp_path, ["simple"], systems=["naive"])
    assert rows[0].exact == 0.0 and "unsupported type 'HashMap'" in rows[0].cases[0].reason


def test_cli_rejects_unknown_category_and_baseline(tmp_path):
    from mrkl.cli import app

    r = CliRunner().invoke(app, ["eval", "bfcl", "--category", "parallel", "--data", str(tmp_path)])
    assert r.exit_code == 2 and "unknown category 'parallel'" in r.output
    r = CliRunner().invoke(app, ["eval", "bfcl", "--category", "simple", "--data", str(tmp_path), "--baseline", "smart"])
    assert r.exit_code == 2 and "unknown baseline 'smart'" in r.output


def test_five_hundred_functions_become_experts_quickly():
    import time

    funcs = [{"name": f"tool.f{i}", "description": f"Tool number {i}.",
              "parameters": {"type": "dict", "properties": {"x": {"type": "integer"}}, "required": ["x"]}} for i in range(500)]
    t0 = time.perf_counter()
    exps = experts_for(funcs)
    assert len({e.name for e in exps}) == 500 and exps[499].function_name == "tool.f499"
    assert time.perf_counter() - t0 < 20


@pytest.mark.slow
def test_mrkl_falls_back_on_a_question_in_another_language_or_off_topic(smollm2):
    from mrkl.bfcl import MRKLSystem

    system = MRKLSystem(smollm2)
    for q in ("Quelle est la capitale de la France ?", "Who wrote Hamlet?"):
        pred = system.predict(BFCLCase("x", q, [AREA], None))
        assert pred.call is None and pred.note.startswith("fallback to the language model"), pred
    pred = system.predict(BFCLCase("y", "Area of a triangle with base 10 and height 5", [AREA], GT))
    assert pred.call == ("geometry.area", {"base": 10, "height": 5.0}) and pred.valid_json


def test_offset_evaluates_a_later_slice(bfcl_dir, scripted):
    backend = scripted()
    backend.chat = lambda messages, **kw: '{"name": "geometry.area", "arguments": {"base": 3, "height": 2}}'
    rows = evaluate(backend, bfcl_dir, ["simple"], systems=["naive"], limit=1, offset=1)
    assert [c.id for c in rows[0].cases] == ["simple_python_1"] and rows[0].exact == 1.0
    assert evaluate(backend, bfcl_dir, ["simple"], systems=["naive"], offset=5)[0].n == 0  # past the end: nothing
    with pytest.raises(MRKLError, match="offset"):
        evaluate(backend, bfcl_dir, ["simple"], systems=["naive"], offset=-1)


def test_stage_p50_is_printed_for_timed_systems():
    from mrkl.bfcl import CaseResult, Summary

    cases = [CaseResult(f"s{i}", True, True, True, True, 0.1, None, "", timings={"embedding_rank": t, "argument_decoding": 2 * t})
             for i, t in enumerate([0.01, 0.02, 0.03])]
    row = Summary("mrkl", "simple", 3, 1.0, 1.0, 1.0, 1.0, 0.1, cases)
    assert row.stage_p50() == {"embedding_rank": 0.02, "argument_decoding": 0.04}
    assert row.row()["stage_p50_seconds"]["argument_decoding"] == 0.04
    assert row.row()["settings"] == {}
    tuned = Summary("mrkl", "simple", 3, 1.0, 1.0, 1.0, 1.0, 0.1, cases, settings={"threshold": 0.48, "margin_weight": 0.5})
    assert tuned.row()["settings"]["threshold"] == 0.48  # the JSON report says which none score was used
    text = format_table([row, Summary("naive", "simple", 0, 0, 0, 0, 1.0, 0.0)])
    assert "mrkl/simple embedding_rank 20, argument_decoding 40" in text and "naive/simple" not in text


def _fn(name, desc, props, required):
    return {"name": name, "description": desc,
            "parameters": {"type": "dict", "properties": {p: {"type": t} for p, t in props.items()}, "required": required}}


BY_DATE = _fn("weather.by_coordinates_date", "Historical weather by coordinates and date.", {"coordinates": "string", "date": "string"}, ["coordinates", "date"])
FORECAST = _fn("weather.forecast", "Weather forecast for coordinates.", {"coordinates": "string", "days_ahead": "integer"}, ["coordinates", "days_ahead"])
ROOTS = _fn("find_roots", "Roots of ax^2 + bx + c = 0.", {"a": "float", "b": "float", "c": "float"}, ["a", "b", "c"])


class _FakeRanker:
    """An embedding router stand-in: fixed similarities per (question, function name)."""

    def __init__(self, sims):
        self.sims = sims

    def rank(self, question, experts):
        from router.embedding import Ranking

        scored = sorted(((self.sims[(question, e.function_name)], e.name) for e in experts), reverse=True)
        return Ranking([n for _s, n in scored], [s for s, _n in scored])


def _fake_system(sims, args, **kw):
    """MRKLSystem with a fake ranker and fixed decoded arguments per function (no model)."""
    from mrkl.bfcl import MRKLSystem
    from router.relevance import RelevanceGate

    class Fake(MRKLSystem):
        def __init__(self):  # noqa: D107 - the parts MRKLSystem.__init__ builds, without a model
            self.router, self.gate, self.fit_report, self._cache = _FakeRanker(sims), RelevanceGate(), {}, {}
            self.margin_weights = kw.get("margin_weights", (0.0,))
            self.name_weights = kw.get("name_weights", (0.0,))
            self.number_weights = kw.get("number_weights", (0.0,))
            self.rerank_k, self.rerank_weights, self.rerank_weight = 2, kw.get("rerank_weights", (0.0, 0.1, 0.3)), 0.0
            self.decodes = 0

        def _arguments(self, case, expert):
            self.decodes += 1
            a = args[(case.question, expert.function_name)]
            return a, json.dumps(a), None

    return Fake()


def test_rerank_by_grounding_is_calibrated_and_picks_the_supplied_function():
    q1, q2 = "Weather at 46.6,1.9 on 2019-12-13?", "Temperature at 40.7,-74.0 on 2020-01-05?"
    q3, q4 = "Roots of bx + c = 0?", "Best way to cut CO2?"
    sims = {(q1, "weather.forecast"): 0.50, (q1, "weather.by_coordinates_date"): 0.48,
            (q2, "weather.forecast"): 0.56, (q2, "weather.by_coordinates_date"): 0.49,
            (q3, "find_roots"): 0.6, (q4, "find_roots"): 0.1}
    args = {(q1, "weather.forecast"): {"coordinates": "46.6,1.9", "days_ahead": 7},
            (q1, "weather.by_coordinates_date"): {"coordinates": "46.6,1.9", "date": "2019-12-13"},
            (q2, "weather.forecast"): {"coordinates": "40.7,-74.0", "days_ahead": 3},
            (q2, "weather.by_coordinates_date"): {"coordinates": "40.7,-74.0", "date": "2020-01-05"},
            (q3, "find_roots"): {"a": 0, "b": 0, "c": 0}, (q4, "find_roots"): {"a": 1, "b": 2, "c": 3}}
    gt = {"weather.by_coordinates_date": {"coordinates": ["46.6,1.9"], "date": ["2019-12-13"]}}
    rel = [BFCLCase("multiple_1", q2, [FORECAST, BY_DATE], {"weather.by_coordinates_date": {}})]
    irr = [BFCLCase("irrelevance_0", q3, [ROOTS], None), BFCLCase("irrelevance_1", q4, [ROOTS], None)]
    system = _fake_system(sims, args)
    report = system.calibrate(rel, irr)
    assert system.rerank_weight == 0.3 and report["rerank_right"] == "1/1"  # 0.1 cannot flip 0.56 vs 0.49 (u 0.5): 0.3 can
    pred = system.predict(BFCLCase("multiple_0", q1, [FORECAST, BY_DATE], gt))
    assert pred.call == ("weather.by_coordinates_date", args[(q1, "weather.by_coordinates_date")])
    assert set(pred.timings) == {"embedding_rank", "argument_decoding"}
    # without the rerank the embedding's first choice stands, and only it is decoded
    plain = _fake_system(sims, args, rerank_weights=(0.0,))
    plain.calibrate(rel, irr)
    plain.decodes = 0
    pred = plain.predict(BFCLCase("multiple_0", q1, [FORECAST, BY_DATE], gt))
    assert plain.rerank_weight == 0.0 and plain.decodes == 1
    assert (pred.call or ("",))[0] == "weather.forecast" or "weather.forecast" in pred.note


def test_gate_declines_an_on_topic_function_whose_numbers_the_question_lacks():
    q_ok, q_bad, q_off = "Roots of 2x^2 + 3x + 1 = 0 with a=2, b=3, c=1", "Roots of bx + c = 0?", "Who wrote Hamlet?"
    sims = {(q_ok, "find_roots"): 0.6, (q_bad, "find_roots"): 0.62, (q_off, "find_roots"): 0.05}
    args = {(q_ok, "find_roots"): {"a": 2, "b": 3, "c": 1}, (q_bad, "find_roots"): {"a": 0, "b": 0, "c": 0},
            (q_off, "find_roots"): {"a": 1, "b": 1, "c": 1}}
    system = _fake_system(sims, args)
    system.calibrate([BFCLCase("s0", q_ok, [ROOTS], {"find_roots": {}})], [BFCLCase("i0", q_bad, [ROOTS], None), BFCLCase("i1", q_off, [ROOTS], None)])
    assert system.gate.weight > 0
    assert system.predict(BFCLCase("s0", q_ok, [ROOTS], None)).call is not None
    bad = system.predict(BFCLCase("i0", q_bad, [ROOTS], None))
    assert bad.call is None and "ungrounded 0.67" in bad.note


def test_property_names_pydantic_refuses_validate_and_dump_under_their_own_name():
    e = BFCLExpert({"name": "create_player_profile", "parameters": {"type": "dict", "properties": {
        "player_name": {"type": "string"}, "_class": {"type": "string"}, "model_config": {"type": "integer"},
        "from": {"type": "string"}, "f__class": {"type": "string"}}, "required": ["player_name", "_class"]}})
    args = e.parse_args({"player_name": "Ann", "_class": "Warrior", "model_config": 3, "from": "x", "f__class": "y"})
    assert args.model_dump(mode="json") == {"player_name": "Ann", "_class": "Warrior", "model_config": 3, "from": "x", "f__class": "y"}
    with pytest.raises(ArgumentError) as info:
        e.parse_args({"player_name": "Ann"})
    assert "_class" in str(info.value)
    with pytest.raises(ArgumentError):
        e.parse_args({"player_name": "Ann", "_class": "W", "level": 3})  # unknown names still refused


def test_choice_column_counts_the_function_chosen_before_the_none_decision(bfcl_dir, scripted):
    """A relevant question the none score declines is wrong for ``expert`` but its ranked choice still counts for ``choice``."""
    from mrkl.bfcl import Prediction, choice_right

    case = BFCLCase("simple_0", "area of a triangle with base 10 and height 5", [AREA], {"geometry.area": {"base": [10], "height": [5]}})
    declined = Prediction(None, "", None, "fallback to the language model", candidate="geometry.area")
    assert choice_right(case, declined) and not score_case(case, declined)[2]
    assert not choice_right(case, Prediction(None, "", None, "fallback", candidate="other.fn"))
    assert choice_right(case, Prediction(("geometry.area", {"base": 10, "height": 5}))) and not choice_right(case, Prediction(None))
    irr = BFCLCase("irrelevance_0", "Who wrote Hamlet?", [AREA], None)
    assert choice_right(irr, declined) and not choice_right(irr, Prediction(("geometry.area", {})))
    assert not choice_right(case, Prediction(("other.fn", {}), candidate="geometry.area"))  # the call made counts
    assert choice_right(BFCLCase("x", "q", [AREA], {}), Prediction(None))  # no answer given: no call is right, no crash
    backend = scripted()
    backend.chat = lambda messages, **kw: '{"name": "geometry.area", "arguments": {"base": 10, "height": 5}}'
    rows = evaluate(backend, bfcl_dir, ["simple"], systems=["naive"])
    assert rows[0].expert_choice == rows[0].expert == 1.0 and rows[0].cases[0].choice_right
    assert "choice" in format_table(rows).splitlines()[0]
