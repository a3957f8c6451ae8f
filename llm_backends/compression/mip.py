"""Puzzle's architecture search: one option per slot under resource budgets.

Puzzle (Bercovich et al., 2024, "Puzzle: Distillation-Based NAS for
Inference-Optimized LLMs", §4.2) picks, for every layer's attention and FFN
*slot*, one alternative from the block library so that the summed
replace-one-block score is minimal while the summed hardware costs stay within
budgets.  This is a multiple-choice knapsack problem with several knapsacks,
solved exactly as a mixed-integer linear program:

* one binary ``x[g, j]`` per (group ``g``, option ``j``);
* ``Σ_j x[g, j] = 1`` for every group (exactly one option per slot);
* ``overhead[b] + Σ_{g,j} cost[b][g][j] · x[g, j] ≤ budget[b]`` for every budget ``b``;
* ``x[g, j] = 0`` where ``allowed[g][j]`` is false (e.g. ``--vllm-compatible`` forbids
  linear replacements);
* minimise ``Σ_{g,j} score[g][j] · x[g, j]``.

:func:`solve_mip` solves it with ``scipy.optimize.milp`` (HiGHS branch and cut).
:func:`greedy_search` is the baseline the paper compares against (§6: MIP 78.4 vs
greedy 70.7 MMLU at equal budget before uptraining); both return a
:class:`SearchResult`.

Inputs (shared by both functions):

* ``scores``: ``G`` sequences of floats ``≥ 0`` (lower is better; e.g. the KL
  divergence of the whole model from its parent when only that option replaces the
  parent's block).  Groups may have different numbers of options ``J_g ≥ 1``.
* ``costs``: ``{budget name: G sequences of J_g floats}``, e.g. ``"decode_ms"``,
  ``"prefill_ms"``, ``"param_bytes"``, ``"kv_bytes_per_token"`` (units are the
  caller's; the names need only match ``budgets``/``overhead``).
* ``budgets``: ``{budget name: upper bound}`` on the total (overhead included);
  every name must be a key of ``costs``.  Cost names without a budget are only reported.
* ``overhead``: ``{budget name: constant}`` added to the total whatever is chosen
  (embeddings, final norm, ``lm_head``); default 0.
* ``allowed``: optional ``G`` sequences of ``J_g`` bools.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

__all__ = ["SearchResult", "InfeasibleBudgetError", "solve_mip", "greedy_search", "evaluate_choice"]


class InfeasibleBudgetError(ValueError):
    """No choice of options satisfies the budgets.

    Attributes:
        budget: the budget that cannot be met on its own (``None`` when each budget can be
            met alone but not all together).
        minimum: the smallest total achievable for that budget (overhead included), or ``None``.
        limit: the requested upper bound, or ``None``.
    """

    def __init__(self, message: str, budget: str | None = None, minimum: float | None = None, limit: float | None = None):
        super().__init__(message)
        self.budget, self.minimum, self.limit = budget, minimum, limit


@dataclass
class SearchResult:
    """The chosen architecture of a search.

    Attributes:
        choice: option index chosen for each group (length ``G``).
        objective: ``Σ_g score[g][choice[g]]``.
        totals: ``{cost name: overhead + Σ_g cost[g][choice[g]]}`` for every cost given.
        budgets: the budgets the search was run with.
        feasible: every budget holds for ``choice``.
        optimal: the solver proved ``choice`` optimal (always ``False`` for greedy).
        status: solver message (``"optimal"``, ``"time limit, feasible"``, ``"budgets met"``, ...).
        solve_time_s: wall-clock seconds of the search.
        method: ``"mip"`` or ``"greedy"``.
        steps: number of swaps greedy made (0 for the MIP).
    """

    choice: tuple[int, ...]
    objective: float
    totals: dict[str, float]
    budgets: dict[str, float]
    feasible: bool
    optimal: bool
    status: str
    solve_time_s: float
    method: str
    steps: int = 0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """A JSON-serialisable dict."""
        return {
            "choice": list(self.choice),
            "objective": self.objective,
            "totals": dict(self.totals),
            "budgets": dict(self.budgets),
            "feasible": self.feasible,
            "optimal": self.optimal,
            "status": self.status,
            "solve_time_s": self.solve_time_s,
            "method": self.method,
            "steps": self.steps,
        }


# ------------------------------------------------------------------ validation
@dataclass
class _Problem:
    scores: list[np.ndarray]
    costs: dict[str, list[np.ndarray]]
    budgets: dict[str, float]
    overhead: dict[str, float]
    allowed: list[np.ndarray]

    @property
    def sizes(self) -> list[int]:
        return [len(s) for s in self.scores]


def _finite(x: float, what: str) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {x!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{what} must be finite, got {v}")
    return v


def _validate(scores, costs, budgets, overhead, allowed) -> _Problem:
    if scores is None or len(scores) == 0:
        raise ValueError("scores must have at least one group")
    sc: list[np.ndarray] = []
    for g, row in enumerate(scores):
        try:
            a = np.asarray(row, dtype=float)
        except (TypeError, ValueError):
            raise ValueError(f"scores[{g}] must be a sequence of numbers") from None
        if a.ndim != 1 or a.size == 0:
            raise ValueError(f"scores[{g}] must be a non-empty 1-D sequence, got shape {a.shape}")
        if np.isnan(a).any() or np.isinf(a).any():
            raise ValueError(f"scores[{g}] contains NaN or infinity: {a.tolist()}")
        if (a < 0).any():
            raise ValueError(f"scores[{g}] contains a negative score: {a.tolist()} (scores must be >= 0)")
        sc.append(a)
    sizes = [len(a) for a in sc]
    if not isinstance(costs, Mapping):
        raise ValueError("costs must be a mapping {budget name: per-group option costs}")
    cs: dict[str, list[np.ndarray]] = {}
    for name, table in costs.items():
        if table is None or len(table) != len(sc):
            raise ValueError(f"costs[{name!r}] has {0 if table is None else len(table)} groups, scores has {len(sc)}")
        rows = []
        for g, row in enumerate(table):
            try:
                a = np.asarray(row, dtype=float)
            except (TypeError, ValueError):
                raise ValueError(f"costs[{name!r}][{g}] must be a sequence of numbers") from None
            if a.shape != (sizes[g],):
                raise ValueError(f"costs[{name!r}][{g}] has shape {a.shape}, expected ({sizes[g]},) like scores[{g}]")
            if not np.isfinite(a).all():
                raise ValueError(f"costs[{name!r}][{g}] contains NaN or infinity: {a.tolist()}")
            rows.append(a)
        cs[str(name)] = rows
    if not isinstance(budgets, Mapping):
        raise ValueError("budgets must be a mapping {budget name: upper bound}")
    bd: dict[str, float] = {}
    for name, limit in budgets.items():
        if name not in cs:
            raise ValueError(f"unknown budget {name!r}: no costs given for it (costs have {sorted(cs)})")
        bd[str(name)] = _finite(limit, f"budget {name!r}")
    ov: dict[str, float] = {}
    for name, value in (overhead or {}).items():
        if name not in cs:
            raise ValueError(f"overhead for unknown cost {name!r} (costs have {sorted(cs)})")
        ov[str(name)] = _finite(value, f"overhead {name!r}")
    if allowed is None:
        al = [np.ones(n, dtype=bool) for n in sizes]
    else:
        if len(allowed) != len(sc):
            raise ValueError(f"allowed has {len(allowed)} groups, scores has {len(sc)}")
        al = []
        for g, row in enumerate(allowed):
            a = np.asarray(row)
            if a.shape != (sizes[g],):
                raise ValueError(f"allowed[{g}] has shape {a.shape}, expected ({sizes[g]},)")
            a = a.astype(bool)
            if not a.any():
                raise InfeasibleBudgetError(f"group {g} has no allowed option")
            al.append(a)
    return _Problem(sc, cs, bd, ov, al)


def _check_each_budget(p: _Problem) -> None:
    """Raise InfeasibleBudgetError when a budget is unreachable even with its cheapest allowed options."""
    for name, limit in p.budgets.items():
        minimum = p.overhead.get(name, 0.0) + sum(float(c[a].min()) for c, a in zip(p.costs[name], p.allowed))
        if minimum > limit * (1 + 1e-12) + 1e-12:
            raise InfeasibleBudgetError(
                f"budget {name!r} <= {limit:g} is infeasible: the cheapest allowed option in every group "
                f"gives {minimum:g} (overhead included)",
                budget=name,
                minimum=minimum,
                limit=limit,
            )


def _totals(p: _Problem, choice: Sequence[int]) -> dict[str, float]:
    return {
        name: p.overhead.get(name, 0.0) + float(sum(rows[g][j] for g, j in enumerate(choice)))
        for name, rows in p.costs.items()
    }


def _holds(totals: Mapping[str, float], budgets: Mapping[str, float]) -> bool:
    return all(totals[b] <= lim + 1e-9 * max(1.0, abs(lim)) for b, lim in budgets.items())


def evaluate_choice(
    choice: Sequence[int],
    scores: Sequence[Sequence[float]],
    costs: Mapping[str, Sequence[Sequence[float]]],
    overhead: Mapping[str, float] | None = None,
) -> tuple[float, dict[str, float]]:
    """Objective and totals of a given ``choice`` (one option index per group).

    Returns:
        ``(Σ score, {cost name: overhead + Σ cost})``.

    Raises:
        ValueError: malformed inputs, or ``choice`` of the wrong length / out of range.
    """
    p = _validate(scores, costs, {}, overhead, None)
    if len(choice) != len(p.scores) or any(not 0 <= int(j) < n for j, n in zip(choice, p.sizes)):
        raise ValueError(f"choice {list(choice)} does not pick one valid option in each of {len(p.scores)} groups")
    return float(sum(p.scores[g][j] for g, j in enumerate(choice))), _totals(p, choice)


# ------------------------------------------------------------------ MIP
def solve_mip(
    scores: Sequence[Sequence[float]],
    costs: Mapping[str, Sequence[Sequence[float]]],
    budgets: Mapping[str, float],
    *,
    overhead: Mapping[str, float] | None = None,
    allowed: Sequence[Sequence[bool]] | None = None,
    time_limit: float | None = 60.0,
    mip_rel_gap: float = 0.0,
) -> SearchResult:
    """Exact Puzzle search (Bercovich et al., 2024, §4.2) with ``scipy.optimize.milp`` (HiGHS).

    Args:
        scores, costs, budgets, overhead, allowed: see the module docstring (``G`` groups,
            ``J_g`` options each).
        time_limit: seconds HiGHS may run (``None``: no limit).  On the limit the best
            feasible choice found is returned with ``optimal=False``.
        mip_rel_gap: relative optimality gap at which HiGHS stops (0 = prove optimality).

    Returns:
        :class:`SearchResult` with ``method="mip"``.

    Raises:
        InfeasibleBudgetError: a budget is below what its cheapest allowed options give
            (message names it and the minimum), the budgets cannot hold together, or the
            time limit passed before any feasible choice was found.
        ValueError: ragged/mismatched shapes, NaN/infinite/negative scores, a budget name
            without costs.
    """
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import csr_array

    p = _validate(scores, costs, budgets, overhead, allowed)
    _check_each_budget(p)
    t0 = time.perf_counter()
    sizes = p.sizes
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    n = int(offsets[-1])
    c = np.concatenate(p.scores)
    rows = np.repeat(np.arange(len(sizes)), sizes)
    a_eq = csr_array((np.ones(n), (rows, np.arange(n))), shape=(len(sizes), n))
    constraints = [LinearConstraint(a_eq, 1, 1)]
    names = list(p.budgets)
    if names:
        a_cost = np.stack([np.concatenate(p.costs[b]) for b in names])
        ub = np.array([p.budgets[b] - p.overhead.get(b, 0.0) for b in names])
        # a tiny slack so that a total equal to the budget (up to float rounding) stays feasible
        ub = ub + 1e-9 * np.maximum(1.0, np.abs(np.array([p.budgets[b] for b in names])))
        constraints.append(LinearConstraint(a_cost, -np.inf, ub))
    upper = np.concatenate(p.allowed).astype(float)
    options = {"mip_rel_gap": float(mip_rel_gap), "disp": False}
    if time_limit is not None:
        options["time_limit"] = float(time_limit)
    res = milp(c, constraints=constraints, integrality=np.ones(n), bounds=Bounds(np.zeros(n), upper), options=options)
    elapsed = time.perf_counter() - t0
    if res.x is None:
        if res.status == 2:
            raise InfeasibleBudgetError(
                f"the budgets {p.budgets} cannot all hold at once (each alone is reachable): {res.message}"
            )
        raise InfeasibleBudgetError(f"HiGHS found no feasible choice (status {res.status}: {res.message})")
    x = np.asarray(res.x)
    choice = tuple(int(np.argmax(x[offsets[g] : offsets[g + 1]])) for g in range(len(sizes)))
    totals = _totals(p, choice)
    status = {0: "optimal", 1: "time limit, feasible"}.get(res.status, f"status {res.status}: {res.message}")
    return SearchResult(
        choice=choice,
        objective=float(sum(p.scores[g][j] for g, j in enumerate(choice))),
        totals=totals,
        budgets=dict(p.budgets),
        feasible=_holds(totals, p.budgets),
        optimal=res.status == 0 and mip_rel_gap == 0.0,
        status=status,
        solve_time_s=elapsed,
        method="mip",
        extra={"mip_gap": getattr(res, "mip_gap", None)},
    )


# ------------------------------------------------------------------ greedy
def greedy_search(
    scores: Sequence[Sequence[float]],
    costs: Mapping[str, Sequence[Sequence[float]]],
    budgets: Mapping[str, float],
    *,
    overhead: Mapping[str, float] | None = None,
    allowed: Sequence[Sequence[bool]] | None = None,
    time_limit: float | None = None,
    mip_rel_gap: float = 0.0,
) -> SearchResult:
    """Greedy baseline for the Puzzle search (Bercovich et al., 2024, §6 compares it with the MIP).

    Rule, exactly:

    1. Start in every group from its allowed option of lowest score (ties: the lowest
       sum of its costs over the budgeted names, then the lowest index) — the parent
       when the parent's score is 0.
    2. Normalise budget ``b`` by ``n_b`` = the starting total of ``b`` (overhead
       included; ``|budget|`` or 1 if that is 0).  The *excess* of a state is
       ``E = Σ_b max(0, total_b − budget_b) / n_b`` over the budgets.
    3. While ``E > 0``: among all single swaps (one group to another allowed option)
       that strictly lower ``E``, take the one with the smallest
       ``(score_new − score_old) / (E_old − E_new)`` — the least score paid per unit of
       normalised excess removed (ties: the larger excess reduction, then the lowest
       group and option index).  Swaps that break a budget that held raise ``E`` by
       that amount, so they are only taken when they pay for themselves.
    4. Stop when ``E = 0`` (status ``"budgets met"``) or when no swap lowers ``E``
       (status ``"stuck"``, ``feasible=False``).  ``E`` strictly decreases, so it ends.

    The signature equals :func:`solve_mip` (``time_limit``/``mip_rel_gap`` are accepted
    and ignored) so the two can be swapped.

    Returns:
        :class:`SearchResult` with ``method="greedy"``, ``optimal=False``.

    Raises:
        InfeasibleBudgetError, ValueError: as :func:`solve_mip` (the per-budget check).
    """
    del time_limit, mip_rel_gap
    p = _validate(scores, costs, budgets, overhead, allowed)
    _check_each_budget(p)
    t0 = time.perf_counter()
    names = list(p.budgets)
    G = len(p.scores)

    def summed_cost(g: int, j: int) -> float:
        return sum(p.costs[b][g][j] for b in names)

    choice = []
    for g in range(G):
        cands = [j for j in range(p.sizes[g]) if p.allowed[g][j]]
        choice.append(min(cands, key=lambda j: (p.scores[g][j], summed_cost(g, j), j)))
    totals = _totals(p, choice)
    scale = {}
    for b in names:
        t = abs(totals[b])
        scale[b] = t if t > 0 else (abs(p.budgets[b]) if p.budgets[b] != 0 else 1.0)

    def excess(tot: Mapping[str, float]) -> float:
        return sum(max(0.0, tot[b] - p.budgets[b]) / scale[b] for b in names)

    steps = 0
    e = excess(totals)
    tol = 1e-12
    while e > tol and not _holds(totals, p.budgets):
        best = None  # (ratio, -gain, g, j)
        for g in range(G):
            cur = choice[g]
            for j in range(p.sizes[g]):
                if j == cur or not p.allowed[g][j]:
                    continue
                new = {b: totals[b] - p.costs[b][g][cur] + p.costs[b][g][j] for b in names}
                gain = e - excess(new)
                if gain <= tol:
                    continue
                key = ((p.scores[g][j] - p.scores[g][cur]) / gain, -gain, g, j)
                if best is None or key < best:
                    best = key
        if best is None:
            break
        _, _, g, j = best
        cur = choice[g]
        for b, rows in p.costs.items():
            totals[b] = totals[b] - rows[g][cur] + rows[g][j]
        choice[g] = j
        steps += 1
        e = excess(totals)
    totals = _totals(p, choice)  # recompute exactly (no drift from running sums)
    feasible = _holds(totals, p.budgets)
    return SearchResult(
        choice=tuple(choice),
        objective=float(sum(p.scores[g][j] for g, j in enumerate(choice))),
        totals=totals,
        budgets=dict(p.budgets),
        feasible=feasible,
        optimal=False,
        status="budgets met" if feasible else "stuck",
        solve_time_s=time.perf_counter() - t0,
        method="greedy",
        steps=steps,
    )
