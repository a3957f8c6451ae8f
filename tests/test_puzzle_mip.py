"""Puzzle's search (mip.py): exact MIP vs brute force, greedy baseline, budgets, errors."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from llm_backends.compression.mip import (
    InfeasibleBudgetError,
    SearchResult,
    evaluate_choice,
    greedy_search,
    solve_mip,
)


def _brute_force(scores, costs, budgets, overhead=None, allowed=None):
    """Best (objective, choice) over every combination, or None if none is feasible."""
    overhead = overhead or {}
    best = None
    for choice in itertools.product(*[range(len(s)) for s in scores]):
        if allowed is not None and not all(allowed[g][j] for g, j in enumerate(choice)):
            continue
        tot = {b: overhead.get(b, 0.0) + sum(costs[b][g][j] for g, j in enumerate(choice)) for b in budgets}
        if any(tot[b] > budgets[b] + 1e-9 for b in budgets):
            continue
        obj = sum(scores[g][j] for g, j in enumerate(choice))
        if best is None or obj < best[0] - 1e-12:
            best = (obj, choice)
    return best


# A layer-like instance: 3 layers × (attention, FFN) = 6 groups.
# attention options: parent (score 0, 10 ms), 1 KV head (score 1, 8 ms), no-op (score 5, 0 ms)
# FFN options: parent (0, 20 ms), half (2, 10 ms), no-op (9, 0 ms)
ATT = ([0.0, 1.0, 5.0], [10.0, 8.0, 0.0])
FFN = ([0.0, 2.0, 9.0], [20.0, 10.0, 0.0])


def _layers(n=3, att_scores=None):
    scores, ms = [], []
    for i in range(n):
        scores += [list(att_scores[i]) if att_scores else list(ATT[0]), list(FFN[0])]
        ms += [list(ATT[1]), list(FFN[1])]
    return scores, {"decode_ms": ms}


def test_hand_made_instance_known_optimum():
    scores, costs = _layers()
    # parent = 90 ms; overhead 10 ms; budget 80 ms => need to save 20 ms from the layers.
    # Options saving >= 20 ms: one FFN halved (10 ms, score 2) + one attention to 1 KV (2 ms, 1) ... = 12 ms: too little;
    # two FFNs halved: 20 ms at score 4; one attention no-op (10) + one FFN halved (10): score 7;
    # one FFN no-op (20): score 9.  Optimum: two FFNs halved, score 4.
    res = solve_mip(scores, costs, {"decode_ms": 80.0}, overhead={"decode_ms": 10.0})
    assert isinstance(res, SearchResult)
    assert res.method == "mip" and res.optimal and res.feasible and res.status == "optimal"
    assert res.objective == pytest.approx(4.0)
    assert res.totals["decode_ms"] == pytest.approx(80.0)
    ffn_choices = [res.choice[g] for g in (1, 3, 5)]
    assert sorted(ffn_choices) == [0, 1, 1]
    assert [res.choice[g] for g in (0, 2, 4)] == [0, 0, 0]
    assert _brute_force(scores, costs, {"decode_ms": 80.0}, {"decode_ms": 10.0})[0] == pytest.approx(4.0)


def test_loose_budget_keeps_parent():
    scores, costs = _layers()
    res = solve_mip(scores, costs, {"decode_ms": 1000.0})
    assert res.choice == (0,) * 6 and res.objective == 0.0
    g = greedy_search(scores, costs, {"decode_ms": 1000.0})
    assert g.choice == (0,) * 6 and g.steps == 0 and g.feasible


@pytest.mark.parametrize("seed", range(8))
def test_mip_matches_brute_force_on_random_instances(seed):
    rng = np.random.default_rng(seed)
    G = int(rng.integers(3, 6))
    sizes = [int(rng.integers(2, 5)) for _ in range(G)]
    scores = [list(np.concatenate([[0.0], rng.uniform(0, 5, n - 1)])) for n in sizes]
    costs = {
        "ms": [list(np.concatenate([[10.0], rng.uniform(0, 10, n - 1)])) for n in sizes],
        "bytes": [list(rng.integers(0, 100, n).astype(float)) for n in sizes],
    }
    allowed = [[True] + list(rng.random(n - 1) > 0.2) for n in sizes]
    budgets = {"ms": 10.0 * G * float(rng.uniform(0.4, 0.9)), "bytes": float(sum(max(c) for c in costs["bytes"])) * 0.6}
    overhead = {"ms": 1.5}
    budgets["ms"] += 1.5
    ref = _brute_force(scores, costs, budgets, overhead, allowed)
    if ref is None:
        with pytest.raises(InfeasibleBudgetError):
            solve_mip(scores, costs, budgets, overhead=overhead, allowed=allowed)
        return
    res = solve_mip(scores, costs, budgets, overhead=overhead, allowed=allowed)
    assert res.optimal and res.feasible
    assert res.objective == pytest.approx(ref[0], abs=1e-9)
    for b, lim in budgets.items():
        assert res.totals[b] <= lim + 1e-9
    assert all(allowed[g][j] for g, j in enumerate(res.choice))
    # greedy never beats the proven optimum, and when feasible it respects every budget too
    gr = greedy_search(scores, costs, budgets, overhead=overhead, allowed=allowed)
    if gr.feasible:
        assert gr.objective >= res.objective - 1e-9
        for b, lim in budgets.items():
            assert gr.totals[b] <= lim + 1e-9
    obj, tot = evaluate_choice(res.choice, scores, costs, overhead)
    assert obj == pytest.approx(res.objective) and tot == pytest.approx(res.totals)


def test_greedy_strictly_worse_than_mip():
    # Group A: parent (0, 10 ms) | mid (1, 5 ms) | cheap (10, 0 ms);  group B: parent (0, 10 ms) | cheap (3, 0 ms).
    # Budget 10 ms from a parent of 20 ms.  Greedy's first swap is A→mid (1 per 5 ms is the best ratio),
    # then it still needs 5 ms and takes B→cheap: score 4.  The MIP keeps A and drops B: score 3.
    scores = [[0.0, 1.0, 10.0], [0.0, 3.0]]
    costs = {"ms": [[10.0, 5.0, 0.0], [10.0, 0.0]]}
    mip = solve_mip(scores, costs, {"ms": 10.0})
    gr = greedy_search(scores, costs, {"ms": 10.0})
    assert mip.choice == (0, 1) and mip.objective == pytest.approx(3.0)
    assert gr.choice == (1, 1) and gr.objective == pytest.approx(4.0) and gr.steps == 2
    assert gr.feasible and gr.status == "budgets met" and gr.method == "greedy" and not gr.optimal
    assert gr.totals["ms"] <= 10.0 and mip.totals["ms"] <= 10.0
    assert gr.objective > mip.objective


def test_infeasible_budget_names_budget_and_minimum():
    scores, costs = _layers()
    # cheapest everywhere: 0 ms of layers + 10 ms overhead > 5 ms
    for search in (solve_mip, greedy_search):
        with pytest.raises(InfeasibleBudgetError, match=r"decode_ms.*10") as err:
            search(scores, costs, {"decode_ms": 5.0}, overhead={"decode_ms": 10.0})
        assert isinstance(err.value, ValueError)
        assert err.value.budget == "decode_ms" and err.value.minimum == pytest.approx(10.0)


def test_jointly_infeasible_budgets():
    # option 0 is fast but big, option 1 small but slow: each budget alone reachable, not both.
    scores = [[0.0, 1.0]]
    costs = {"ms": [[1.0, 10.0]], "bytes": [[10.0, 1.0]]}
    with pytest.raises(InfeasibleBudgetError, match="together|at once"):
        solve_mip(scores, costs, {"ms": 5.0, "bytes": 5.0})
    assert not greedy_search(scores, costs, {"ms": 5.0, "bytes": 5.0}).feasible


def test_allowed_mask_respected():
    # the best option (a 'linear' replacement, index 1) is forbidden => the next best is taken
    scores = [[0.0, 0.5, 4.0], [0.0, 0.5, 4.0]]
    costs = {"ms": [[10.0, 1.0, 0.0], [10.0, 1.0, 0.0]]}
    allowed = [[True, False, True], [True, False, True]]
    free = solve_mip(scores, costs, {"ms": 11.0})
    assert 1 in free.choice and free.objective == pytest.approx(0.5)
    res = solve_mip(scores, costs, {"ms": 11.0}, allowed=allowed)
    assert 1 not in res.choice and res.objective == pytest.approx(4.0) and res.totals["ms"] <= 11.0
    gr = greedy_search(scores, costs, {"ms": 11.0}, allowed=allowed)
    assert 1 not in gr.choice and gr.feasible
    # a mask that forbids the only way to meet the budget is infeasible
    with pytest.raises(InfeasibleBudgetError, match="ms"):
        solve_mip(scores, costs, {"ms": 5.0}, allowed=[[True, False, False], [True, True, True]])


def test_multiple_budgets_at_once():
    # 4 groups; latency and memory pull in different directions.
    scores = [[0.0, 1.0, 2.5, 6.0]] * 4
    ms = [[10.0, 9.0, 4.0, 0.0]] * 4
    mem = [[100.0, 40.0, 90.0, 0.0]] * 4
    kv = [[3.0, 1.0, 3.0, 0.0]] * 4
    costs = {"decode_ms": ms, "param_bytes": mem, "kv_bytes_per_token": kv}
    budgets = {"decode_ms": 30.0, "param_bytes": 250.0, "kv_bytes_per_token": 8.0}
    res = solve_mip(scores, costs, budgets)
    ref = _brute_force(scores, costs, budgets)
    assert res.objective == pytest.approx(ref[0])
    for b, lim in budgets.items():
        assert res.totals[b] <= lim + 1e-9
    # dropping one budget can only help, and the result then violates it (otherwise it was not binding)
    looser = solve_mip(scores, costs, {"decode_ms": 30.0, "kv_bytes_per_token": 8.0})
    assert looser.objective <= res.objective
    gr = greedy_search(scores, costs, budgets)
    assert gr.feasible and gr.objective >= res.objective - 1e-9
    for b, lim in budgets.items():
        assert gr.totals[b] <= lim + 1e-9
    # totals are reported for every cost, with or without a budget
    assert set(looser.totals) == set(costs)


def test_to_dict_is_json():
    import json

    scores, costs = _layers(2)
    d = solve_mip(scores, costs, {"decode_ms": 50.0}).to_dict()
    assert json.loads(json.dumps(d))["method"] == "mip" and len(d["choice"]) == 4


@pytest.mark.parametrize(
    "scores,costs,budgets,match",
    [
        ([[0.0, float("nan")]], {"ms": [[1.0, 0.0]]}, {"ms": 1.0}, "NaN"),
        ([[0.0, -1.0]], {"ms": [[1.0, 0.0]]}, {"ms": 1.0}, "negative"),
        ([[0.0, 1.0]], {"ms": [[1.0, 0.0, 3.0]]}, {"ms": 1.0}, "shape"),
        ([[0.0, 1.0]], {"ms": [[1.0, 0.0], [1.0, 0.0]]}, {"ms": 1.0}, "groups"),
        ([[0.0, 1.0]], {"ms": [[1.0, 0.0]]}, {"latency": 1.0}, "unknown budget 'latency'"),
        ([[0.0, 1.0]], {"ms": [[1.0, 0.0]]}, {"ms": float("nan")}, "finite"),
        ([], {"ms": []}, {"ms": 1.0}, "at least one group"),
        ([[]], {"ms": [[]]}, {"ms": 1.0}, "non-empty"),
        ([[0.0, 1.0]], {"ms": [[1.0, float("inf")]]}, {"ms": 1.0}, "NaN or infinity"),
    ],
)
def test_bad_input_is_a_clear_error(scores, costs, budgets, match):
    for search in (solve_mip, greedy_search):
        with pytest.raises(ValueError, match=match):
            search(scores, costs, budgets)


def test_bad_allowed_and_overhead():
    scores, costs = [[0.0, 1.0]], {"ms": [[1.0, 0.0]]}
    with pytest.raises(ValueError, match="allowed"):
        solve_mip(scores, costs, {"ms": 1.0}, allowed=[[True]])
    with pytest.raises(InfeasibleBudgetError, match="no allowed option"):
        solve_mip(scores, costs, {"ms": 1.0}, allowed=[[False, False]])
    with pytest.raises(ValueError, match="overhead for unknown cost"):
        solve_mip(scores, costs, {"ms": 1.0}, overhead={"bytes": 1.0})
    with pytest.raises(ValueError, match="choice"):
        evaluate_choice([2], scores, costs)


def test_larger_instance_solves_quickly_and_respects_budget():
    # the real problem's size: 30 layers × (4 attention + 6 FFN options)
    rng = np.random.default_rng(0)
    scores, ms = [], []
    for _ in range(30):
        scores.append([0.0, *rng.uniform(0.01, 1, 3)])
        ms.append([1.0, 0.7, 0.1, 0.0])
        scores.append([0.0, *rng.uniform(0.01, 1, 5)])
        ms.append([2.0, 1.6, 1.1, 0.6, 0.1, 0.0])
    res = solve_mip(scores, {"ms": ms}, {"ms": 60.0}, overhead={"ms": 5.0}, time_limit=30)
    assert res.feasible and res.totals["ms"] <= 60.0 + 1e-9
    gr = greedy_search(scores, {"ms": ms}, {"ms": 60.0}, overhead={"ms": 5.0})
    assert gr.feasible and gr.objective >= res.objective - 1e-9
    assert math.isfinite(res.solve_time_s)
