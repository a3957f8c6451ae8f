"""Puzzle end to end: block library → BLD → replace-one-block scores → measured costs → MIP → realise.

Puzzle (Bercovich et al., 2024, "Puzzle: Distillation-Based NAS for Inference-Optimized
LLMs"; Llama-3.1-Nemotron-51B):

1. **Block library** (§3.1, :mod:`.library`): every layer's attention and FFN get cheaper variants.
2. **Blockwise local distillation** (§3.2, :mod:`.bld`): each variant learns, on its own, to
   imitate the parent's sub-block from the parent's hidden states.
3. **Replace-one-block scoring** (§4.1, :func:`score_library`): KL divergence of the whole
   model's next-token distribution from the parent's when only that one sub-block is swapped,
   on held-out calibration windows; the parent's residual stream before every layer is computed
   once, so a score costs only the layers after the swapped one.
4. **Costs** (§4.2, :mod:`.costs`): each variant's decode and prefill latency measured on this
   machine, its parameter bytes and KV-cache bytes per token.
5. **Search** (§4.2, :mod:`.mip`): a mixed-integer program picks one variant per (layer,
   sub-block) minimising the summed scores under every budget; a greedy search at the same
   budget is the baseline the paper compares against.
6. **Realise** (:func:`realise`) the chosen architecture from the trained variants, optionally
   distil it globally against the parent (§5: hidden-state cosine + logit KL, see
   :mod:`.distill`), optionally fuse its attention-free FFN runs (FFN Fusion), and save it as a
   Nemotron-NAS folder.

The library (its calibration text, parent activations, trained variants, scores, cost table) lives in one folder
(default ``$MRKL_CACHE_DIR/compression/puzzle-<model id>``) so a second search with other
budgets reuses all of it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from llm_backends.compression.bld import BLDSettings, BlockLibrary, cache_parent_activations, check_plain_parent, train_library
from llm_backends.compression.calibration import compression_cache_dir, weights_fingerprint
from llm_backends.compression.blocks import AttentionConfig, BlockConfig, FFNConfig
from llm_backends.compression.costs import CostTable, measure_costs, measure_model_latency
from llm_backends.compression.library import LibrarySpec, attention_name, ffn_name, variant_config
from llm_backends.compression.mip import SearchResult, greedy_search, solve_mip
from llm_backends.compression.model import HeteroLlamaForCausalLM
from llm_backends.compression.scoring import ParentActivations, kl_from_layer

__all__ = [
    "LibraryScores",
    "PuzzleResult",
    "Budgets",
    "arch_string",
    "score_library",
    "realise",
    "search_architecture",
    "prepare_library",
    "PreparedLibrary",
    "run_puzzle",
]

Progress = Callable[[str], None]
KINDS = ("attention", "ffn")


def _quiet(_: str) -> None:
    pass


def arch_string(blocks: Sequence[BlockConfig], parent_width: int) -> str:
    """A compact per-layer architecture string, one token per layer separated by spaces.

    Each token is ``<attention><FFN>``: attention = number of KV heads, ``L`` (linear) or ``-``
    (no-op); FFN = SwiGLU width in eighths of ``parent_width`` (``8`` = the parent's; rounded),
    ``L`` or ``-``. A fused FFN is written as its width in eighths in brackets, e.g. ``-[16]``.
    Example: ``"38 34 -8 L- 1L"``.
    """
    out = []
    for b in blocks:
        a = {"gqa": str(b.attention.n_kv_heads), "linear": "L", "no_op": "-"}[b.attention.kind]
        if b.ffn.kind == "swiglu":
            e = str(max(1, round(8 * b.ffn.intermediate_size / parent_width)))
            f = f"[{e}]" if b.ffn.fused_from else e
        else:
            f = {"linear": "L", "no_op": "-"}[b.ffn.kind]
        out.append(a + f)
    return " ".join(out)


@dataclass
class LibraryScores:
    """Replace-one-block KL of every variant (Puzzle §4.1).

    Attributes:
        kl: ``kl[layer][kind][variant name]`` in nats/token (the parent's own variant: 0).
        tokens: calibration tokens the KL averages over.
    """

    kl: list[dict[str, dict[str, float]]]
    tokens: int

    def to_dict(self) -> dict[str, Any]:
        return {"kl": self.kl, "tokens": self.tokens}


@torch.no_grad()
def score_library(
    model: HeteroLlamaForCausalLM,
    library: BlockLibrary,
    windows: torch.Tensor,
    batch_size: int = 4,
    progress: Progress | None = None,
) -> LibraryScores:
    """Replace-one-block KL for every trained variant of every layer.

    Args:
        model: the parent (left unchanged on return).
        library: its trained variants (:class:`~llm_backends.compression.bld.BlockLibrary`).
        windows: ``(N, T)`` held-out calibration windows (not the BLD training windows).
        batch_size: windows per forward (memory: ``batch·T·vocab`` floats of logits, plus the
            parent's ``n_layers+1`` residual streams per batch).
        progress: one line per layer.

    Returns:
        :class:`LibraryScores`.

    Raises:
        ValueError: the library does not have one entry per layer of ``model``.
    """
    if len(library.variants) != len(model.layers):
        raise ValueError(f"the library has {len(library.variants)} layers, the model {len(model.layers)}")
    batches = [windows[i : i + batch_size] for i in range(0, len(windows), batch_size)]
    acts = [ParentActivations.compute(model, b) for b in batches]
    weights = [len(b) / len(windows) for b in batches]
    out: list[dict[str, dict[str, float]]] = []
    for i, layer in enumerate(model.layers):
        parent_names = {"attention": attention_name(layer.block_config.attention), "ffn": ffn_name(layer.block_config.ffn)}
        row: dict[str, dict[str, float]] = {k: {} for k in KINDS}
        for kind in KINDS:
            for name, sb in library.variants[i][kind].items():
                if name == parent_names[kind]:
                    row[kind][name] = 0.0
                    continue
                saved = layer.sub_block(kind)
                try:
                    layer.put_sub_block(kind, sb.norm, sb.module)
                    kl = kl_from_layer(model, i, acts, weights)
                finally:
                    layer.put_sub_block(kind, *saved)
                row[kind][name] = max(kl, 0.0)
        out.append(row)
        if progress:
            progress(f"scored layer {i}: " + ", ".join(f"{k} {n} {v:.3f}" for k in KINDS for n, v in row[k].items() if v > 0))
    return LibraryScores(out, int(windows.numel()))


def realise(parent: HeteroLlamaForCausalLM, library: BlockLibrary, blocks: Sequence[BlockConfig]) -> HeteroLlamaForCausalLM:
    """The parent with each layer's sub-blocks replaced by the library's trained variants of ``blocks``.

    Returns:
        A new model (copies of the variant weights; the parent and the library are unchanged).

    Raises:
        ValueError: wrong number of blocks, or a variant the library lacks.
    """
    if len(blocks) != len(parent.layers):
        raise ValueError(f"{len(blocks)} block configs for a {len(parent.layers)}-layer model")
    out = parent.clone()
    for i, b in enumerate(blocks):
        for kind, name in (("attention", attention_name(b.attention)), ("ffn", ffn_name(b.ffn))):
            sb = library.variants[i][kind].get(name)
            if sb is None:
                raise ValueError(f"layer {i} has no {kind} variant {name!r} in the library ({sorted(library.variants[i][kind])})")
            sb.install(out.layers[i])
    return out.eval()


@dataclass(frozen=True)
class Budgets:
    """Search budgets relative to the parent (``None``: not constrained).

    Attributes:
        decode_speedup: predicted batch-1 decode latency ≤ parent's / this.
        prefill_speedup: predicted prefill latency ≤ parent's / this.
        memory_mib: parameter bytes + KV-cache bytes of ``memory_context`` tokens ≤ this (MiB).
        params_millions: parameters ≤ this (millions).
        memory_context: context length (tokens, batch 1) the memory budget counts the KV cache for.
    """

    decode_speedup: float | None = 1.5
    prefill_speedup: float | None = None
    memory_mib: float | None = None
    params_millions: float | None = None
    memory_context: int = 4096

    def __post_init__(self) -> None:
        for name in ("decode_speedup", "prefill_speedup", "memory_mib", "params_millions"):
            v = getattr(self, name)
            if v is not None and not (0 < v < float("inf")):
                raise ValueError(f"budget {name} must be a positive finite number, got {v!r}")
        if not any(getattr(self, n) is not None for n in ("decode_speedup", "prefill_speedup", "memory_mib", "params_millions")):
            raise ValueError("give at least one budget (decode speed-up, prefill speed-up, memory or parameters)")


def _search_inputs(
    parent: HeteroLlamaForCausalLM, scores: LibraryScores, costs: CostTable, budgets: Budgets, vllm_compatible: bool
) -> tuple[list[list[float]], dict[str, list[list[float]]], dict[str, float], dict[str, float], list[list[bool]], list[list[AttentionConfig | FFNConfig]]]:
    itemsize = next(parent.parameters()).element_size()
    options: list[list[AttentionConfig | FFNConfig]] = []
    score_rows: list[list[float]] = []
    cost_rows: dict[str, list[list[float]]] = {}
    allowed: list[list[bool]] = []
    for row in scores.kl:
        for kind in KINDS:
            names = list(row[kind])
            cfgs = [variant_config(kind, n) for n in names]
            options.append(cfgs)
            score_rows.append([row[kind][n] for n in names])
            allowed.append([not (vllm_compatible and c.kind == "linear") for c in cfgs])
            oc = costs.option_costs(cfgs)
            derived = {
                "decode_ms": oc["decode_ms"],
                "prefill_ms": oc["prefill_ms"],
                "memory_bytes": [p + budgets.memory_context * kv for p, kv in zip(oc["param_bytes"], oc["kv_bytes_per_token"])],
                "params": [p / itemsize for p in oc["param_bytes"]],
            }
            for k, v in derived.items():
                cost_rows.setdefault(k, []).append(v)
    over = costs.overhead
    overhead = {
        "decode_ms": over.get("decode_ms", 0.0),
        "prefill_ms": over.get("prefill_ms", 0.0),
        "memory_bytes": over.get("param_bytes", 0.0),
        "params": over.get("param_bytes", 0.0) / itemsize,
    }
    pred = costs.predict(parent.block_configs)
    limits: dict[str, float] = {}
    if budgets.decode_speedup is not None:
        limits["decode_ms"] = pred["decode_ms"] / budgets.decode_speedup
    if budgets.prefill_speedup is not None:
        limits["prefill_ms"] = pred["prefill_ms"] / budgets.prefill_speedup
    if budgets.memory_mib is not None:
        limits["memory_bytes"] = budgets.memory_mib * 2**20
    if budgets.params_millions is not None:
        limits["params"] = budgets.params_millions * 1e6
    used = set(limits) | {"decode_ms", "prefill_ms"}
    return score_rows, {k: v for k, v in cost_rows.items() if k in used}, limits, {k: v for k, v in overhead.items() if k in used}, allowed, options


def _blocks_of(choice: Sequence[int], options: list[list[AttentionConfig | FFNConfig]]) -> list[BlockConfig]:
    picked = [opts[j] for opts, j in zip(options, choice)]
    return [BlockConfig(picked[2 * i], picked[2 * i + 1]) for i in range(len(picked) // 2)]


def search_architecture(
    parent: HeteroLlamaForCausalLM,
    scores: LibraryScores,
    costs: CostTable,
    budgets: Budgets,
    vllm_compatible: bool = False,
    method: str = "mip",
    time_limit: float | None = 60.0,
) -> tuple[list[BlockConfig], SearchResult]:
    """One variant per (layer, sub-block) under ``budgets``, by the MIP or the greedy baseline.

    Returns:
        The chosen :class:`BlockConfig` per layer and the :class:`~llm_backends.compression.mip.SearchResult`
        (its ``totals`` hold predicted ``decode_ms``/``prefill_ms`` and any budgeted cost).

    Raises:
        InfeasibleBudgetError: no architecture of the library meets the budgets (names the budget
            and the minimum reachable).
        ValueError: an unknown ``method``, or scores/costs that do not cover the library.
    """
    rows, cost_rows, limits, overhead, allowed, options = _search_inputs(parent, scores, costs, budgets, vllm_compatible)
    if method == "mip":
        res = solve_mip(rows, cost_rows, limits, overhead=overhead, allowed=allowed, time_limit=time_limit)
    elif method == "greedy":
        res = greedy_search(rows, cost_rows, limits, overhead=overhead, allowed=allowed)
    else:
        raise ValueError(f"method must be 'mip' or 'greedy', got {method!r}")
    return _blocks_of(res.choice, options), res


# ---------------------------------------------------------------- the pipeline
@dataclass
class PuzzleResult:
    """What :func:`run_puzzle` did (also saved as ``puzzle.json`` in the output folder).

    Attributes:
        architecture / greedy_architecture: :func:`arch_string` of the MIP's and greedy's choices
            (before any FFN fusion).
        mip / greedy: the two :class:`SearchResult` dicts (objective = summed KL, totals = predicted costs).
        predicted: predicted costs of ``parent``, ``puzzle`` (and ``final`` after fusion).
        measured: measured decode / prefill latency (ms) of ``parent`` and ``puzzle`` (same run; and
            ``fused`` after FFN Fusion, which the cost table does not predict).
        heldout: perplexity and KL to the parent on held-out windows for parent / greedy / puzzle
            (and after distillation).
    """

    model: str
    out_dir: str | None
    library_dir: str
    budgets: dict[str, Any]
    architecture: str
    greedy_architecture: str
    mip: dict[str, Any]
    greedy: dict[str, Any]
    predicted: dict[str, dict[str, float]]
    measured: dict[str, dict[str, float]]
    heldout: dict[str, float]
    calibration_tokens: dict[str, int]
    bld: dict[str, Any]
    params: dict[str, int]
    fused_groups: list[list[int]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def default_library_dir(parent: HeteroLlamaForCausalLM) -> Path:
    """``$MRKL_CACHE_DIR/compression/puzzle-<model id>`` (``~/.cache/mrkl`` by default)."""
    return compression_cache_dir() / f"puzzle-{weights_fingerprint(parent)}"


def _bld_summary(library: BlockLibrary) -> dict[str, Any]:
    """Mean held-out normalised MSE before/after BLD per variant name, over layers."""
    acc: dict[str, list[tuple[float, float]]] = {}
    tokens = 0
    for info in library.metrics.values():
        tokens = info.get("tokens", tokens)
        for kind, d in info["metrics"].items():
            for name, m in d.items():
                acc.setdefault(f"{kind}/{name}", []).append((m["loss_init"], m["loss"]))
    return {
        "tokens_per_layer": tokens,
        "mean_loss": {k: {"init": sum(a for a, _ in v) / len(v), "trained": sum(b for _, b in v) / len(v)} for k, v in acc.items()},
    }


def load_or_build_library(
    parent: HeteroLlamaForCausalLM,
    train_windows: torch.Tensor,
    library_dir: Path,
    spec: LibrarySpec,
    settings: BLDSettings,
    workers: int,
    progress: Progress,
    show_bar: bool = True,
) -> BlockLibrary:
    """Cache the parent's activations, run BLD for the layers not done yet, and load the library."""
    acts = library_dir / "activations"
    progress(f"caching parent activations on {train_windows.numel()} tokens in {acts}")
    cache_parent_activations(parent, train_windows, acts)
    progress(f"blockwise local distillation ({settings.steps} steps per variant, {workers} worker(s))")
    train_library(parent, acts, library_dir / "bld", spec, settings, workers=workers, show_progress=show_bar, progress=progress)
    return BlockLibrary.load(parent, library_dir / "bld")


def library_calibration(parent: HeteroLlamaForCausalLM, tokenizer: Any, library_dir: Path, progress: Progress) -> Any:
    """The library's calibration windows, frozen at its creation.

    The first call builds them (:func:`~llm_backends.compression.calibration.build_calibration`:
    the parent's own replies plus the project's docs) and writes ``calibration.pt`` into the
    library folder; later calls read that file, so a new version of the docs does not
    invalidate the cached activations, the trained variants and the scores.

    Returns:
        :class:`~llm_backends.compression.calibration.CalibrationData`.
    """
    from llm_backends.compression.calibration import CalibrationData, build_calibration

    path = library_dir / "calibration.pt"
    if path.is_file():
        try:
            d = torch.load(path, weights_only=False)
            return CalibrationData(d["train"], d["heldout"], d["counts"], d["seq_len"], d["heldout_sources"])
        except (OSError, KeyError, RuntimeError, ValueError) as exc:
            progress(f"unreadable {path} ({exc}); building the calibration text again")
    calib = build_calibration(parent, tokenizer, progress=progress)
    library_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(
        {"train": calib.train, "heldout": calib.heldout, "counts": calib.counts, "seq_len": calib.seq_len, "heldout_sources": calib.heldout_sources},
        tmp,
    )
    tmp.replace(path)
    return calib


def _scores_cached(parent, library, windows, library_dir: Path, progress: Progress) -> LibraryScores:
    sig = hashlib.sha256()
    sig.update(windows.numpy().tobytes())
    for f in sorted((library_dir / "bld").glob("layer*.json")):
        sig.update(f.read_bytes())
    path = library_dir / f"scores-{sig.hexdigest()[:16]}.json"
    if path.is_file():
        try:
            d = json.loads(path.read_text())
            return LibraryScores(d["kl"], d["tokens"])
        except (OSError, ValueError, KeyError):
            pass
    progress(f"replace-one-block scoring on {windows.numel()} held-out tokens")
    scores = score_library(parent, library, windows, progress=progress)
    path.write_text(json.dumps(scores.to_dict()))
    return scores


def _costs_cached(parent, spec: LibrarySpec, library_dir: Path, remeasure: bool, progress: Progress, threads: int | None) -> CostTable:
    path = library_dir / "costs.json"
    att, ffn = spec.attention_variants(parent.config), spec.ffn_variants(parent.config)
    if path.is_file() and not remeasure:
        try:
            table = CostTable.load(path)
            table.option_costs(att)
            table.option_costs(ffn)
            return table
        except (OSError, ValueError, KeyError):
            pass
    progress("measuring the cost of every variant on this machine")
    table = measure_costs(parent, att, ffn, threads=threads)
    table.save(path)
    return table


@dataclass
class PreparedLibrary:
    """A parent with its trained, scored and costed block library (see :func:`prepare_library`).

    Attributes:
        parent / tokenizer / name: the loaded parent (float32 :class:`HeteroLlamaForCausalLM`).
        library_dir: the library folder.
        calibration: its frozen :class:`~llm_backends.compression.calibration.CalibrationData`.
        score_windows / eval_windows: disjoint held-out windows ``(N, T)`` for scoring and for reports.
        library / scores / costs: the trained variants, their replace-one-block KL, the cost table.
        seconds: wall-clock seconds per step.
    """

    parent: HeteroLlamaForCausalLM
    tokenizer: Any
    name: str
    library_dir: Path
    calibration: Any
    score_windows: torch.Tensor
    eval_windows: torch.Tensor
    library: BlockLibrary
    scores: LibraryScores
    costs: CostTable
    seconds: dict[str, float] = field(default_factory=dict)


def prepare_library(
    model: str,
    spec: LibrarySpec = LibrarySpec(),
    bld: BLDSettings = BLDSettings(),
    workers: int = 1,
    score_windows: int = 8,
    eval_windows: int = 8,
    library_dir: str | os.PathLike[str] | None = None,
    remeasure_costs: bool = False,
    threads: int | None = None,
    progress: Progress | None = None,
    show_bar: bool = True,
) -> PreparedLibrary:
    """Load the parent and bring its library up to date: calibration text, BLD, scores, costs
    (each step reuses what the library folder already holds). Arguments as :func:`run_puzzle`.

    Raises:
        ValueError: the model is not a plain Llama, or too little held-out text.
    """
    from llm_backends.compression.pipeline import load_model

    progress = progress or _quiet
    secs: dict[str, float] = {}
    t = time.perf_counter()
    parent, tok, name = load_model(model, progress=progress)
    check_plain_parent(parent)
    lib_dir = Path(library_dir) if library_dir else default_library_dir(parent)
    lib_dir.mkdir(parents=True, exist_ok=True)
    (lib_dir / "spec.json").write_text(json.dumps({"model": name, "spec": spec.to_dict(), "bld": bld.to_dict()}, indent=1))
    calib = library_calibration(parent, tok, lib_dir, progress)
    held = calib.heldout
    if len(held) < 2:
        raise ValueError("too little held-out calibration text for scoring and evaluation")
    score_w, eval_w = held[::2][:score_windows], held[1::2][:eval_windows]
    progress(f"calibration: {calib.describe()}")
    secs["load_and_calibrate"] = time.perf_counter() - t
    t = time.perf_counter()
    library = load_or_build_library(parent, calib.train, lib_dir, spec, bld, workers, progress, show_bar)
    secs["bld"] = time.perf_counter() - t
    t = time.perf_counter()
    scores = _scores_cached(parent, library, score_w, lib_dir, progress)
    secs["scoring"] = time.perf_counter() - t
    t = time.perf_counter()
    costs = _costs_cached(parent, spec, lib_dir, remeasure_costs, progress, threads)
    secs["costs"] = time.perf_counter() - t
    return PreparedLibrary(parent, tok, name, lib_dir, calib, score_w, eval_w, library, scores, costs, secs)


def run_puzzle(
    model: str,
    out_dir: str | os.PathLike[str] | None,
    budgets: Budgets = Budgets(),
    vllm_compatible: bool = False,
    spec: LibrarySpec = LibrarySpec(),
    bld: BLDSettings = BLDSettings(),
    workers: int = 1,
    score_windows: int = 8,
    eval_windows: int = 8,
    distill_steps: int = 0,
    fuse: bool = False,
    library_dir: str | os.PathLike[str] | None = None,
    remeasure_costs: bool = False,
    measure: bool = True,
    threads: int | None = None,
    progress: Progress | None = None,
    show_bar: bool = True,
) -> PuzzleResult:
    """The whole Puzzle pipeline on ``model`` (see the module docstring).

    Args:
        model: alias, GGUF file or Llama model folder (the parent).
        out_dir: Nemotron-NAS folder to write (``None``: search and report only).
        budgets: :class:`Budgets` relative to the parent.
        vllm_compatible: exclude linear replacements (vLLM's ``nemotron_nas`` does not serve them).
        spec: the block library's variants.
        bld: blockwise-distillation settings.
        workers: BLD processes (one thread each).
        score_windows: held-out 128-token windows for replace-one-block scoring.
        eval_windows: other held-out windows for the perplexity / KL report.
        distill_steps: global distillation steps of the realised model (0: none).
        fuse: fuse the FFN runs of attention-free layers afterwards (FFN Fusion, each run's last
            FFN left apart).
        library_dir: where the library lives (default :func:`default_library_dir`).
        remeasure_costs: measure the cost table again even if the library has one.
        measure: measure the parent's and the result's latency side by side.
        threads: torch threads for the cost and latency measurements (default: current).

    Returns:
        :class:`PuzzleResult`.

    Raises:
        InfeasibleBudgetError: the budgets cannot be met by this library.
        ValueError / OSError / BackendError: bad model, settings or folders.
    """
    from llm_backends.compression.distill import distill
    from llm_backends.compression.evaluate import kl_to_parent, perplexity
    from llm_backends.compression.fusion import fuse_groups, select_fusion_groups
    from llm_backends.compression.nemotron_nas import save_nemotron_nas
    progress = progress or _quiet
    if out_dir is not None:  # fail now, not after an hour of distillation and scoring
        out_path = Path(out_dir)
        if out_path.exists() and not out_path.is_dir():
            raise ValueError(f"--out {out_path} exists and is not a folder")
        try:
            out_path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"cannot create the output folder {out_path}: {exc.strerror or exc}") from None
        if not os.access(out_path, os.W_OK):
            raise ValueError(f"the output folder {out_path} is not writable")
    prep = prepare_library(
        model, spec, bld, workers, score_windows, eval_windows, library_dir, remeasure_costs, threads, progress, show_bar
    )
    parent, tok, name, lib_dir = prep.parent, prep.tokenizer, prep.name, prep.library_dir
    calib, eval_w, library, scores, costs = prep.calibration, prep.eval_windows, prep.library, prep.scores, prep.costs
    secs = dict(prep.seconds)

    t = time.perf_counter()
    blocks, mip_res = search_architecture(parent, scores, costs, budgets, vllm_compatible, "mip")
    g_blocks, g_res = search_architecture(parent, scores, costs, budgets, vllm_compatible, "greedy")
    secs["search"] = time.perf_counter() - t
    width = parent.config.intermediate_size
    progress(f"MIP: {arch_string(blocks, width)} (summed KL {mip_res.objective:.3f})")
    progress(f"greedy: {arch_string(g_blocks, width)} (summed KL {g_res.objective:.3f})")

    puzzle_model = realise(parent, library, blocks)
    greedy_model = realise(parent, library, g_blocks)
    heldout = {
        "ppl_parent": perplexity(parent, eval_w),
        "ppl_greedy": perplexity(greedy_model, eval_w),
        "kl_greedy": kl_to_parent(greedy_model, parent, eval_w),
        "ppl_puzzle": perplexity(puzzle_model, eval_w),
        "kl_puzzle": kl_to_parent(puzzle_model, parent, eval_w),
    }
    del greedy_model
    if distill_steps > 0:
        t = time.perf_counter()
        # the resumable checkpoint lives in the library, named by the architecture (not in the output folder)
        arch_id = hashlib.sha256(arch_string(blocks, parent.config.intermediate_size).encode()).hexdigest()[:12]
        ckpt = lib_dir / f"distill-{arch_id}-{distill_steps}.pt"
        res = distill(puzzle_model, parent, calib.train, distill_steps, checkpoint=ckpt, show_progress=show_bar)
        progress(f"global distillation: {res.steps} steps in {res.seconds:.0f} s")
        heldout["ppl_distilled"] = perplexity(puzzle_model, eval_w)
        heldout["kl_distilled"] = kl_to_parent(puzzle_model, parent, eval_w)
        secs["distill"] = time.perf_counter() - t
    final = puzzle_model
    groups: list[list[int]] = []
    if fuse:
        plan = select_fusion_groups(puzzle_model, None, None, exclude_last=True)
        groups = plan.groups
        if not groups:
            progress("--fuse: no run of attention-free layers to fuse")
        if groups:
            final = fuse_groups(puzzle_model, groups)
            heldout["ppl_fused"] = perplexity(final, eval_w)
            heldout["kl_fused"] = kl_to_parent(final, parent, eval_w)
            progress(f"fused FFN groups {groups}")
    predicted = {"parent": costs.predict(parent.block_configs), "puzzle": costs.predict(blocks)}
    measured: dict[str, dict[str, float]] = {}
    if measure:
        t = time.perf_counter()
        measured["parent"] = measure_model_latency(parent, threads=threads)
        measured["puzzle"] = measure_model_latency(puzzle_model, threads=threads)
        if final is not puzzle_model:
            measured["fused"] = measure_model_latency(final, threads=threads)
        secs["measure"] = time.perf_counter() - t
    result = PuzzleResult(
        model=name,
        out_dir=str(out_dir) if out_dir else None,
        library_dir=str(lib_dir),
        budgets=asdict(budgets) | {"vllm_compatible": vllm_compatible},
        architecture=arch_string(blocks, width),
        greedy_architecture=arch_string(g_blocks, width),
        mip=mip_res.to_dict(),
        greedy=g_res.to_dict(),
        predicted=predicted,
        measured=measured,
        heldout=heldout,
        calibration_tokens=calib.counts,
        bld=_bld_summary(library),
        params={"parent": parent.num_parameters(), "puzzle": final.num_parameters()},
        fused_groups=groups,
        seconds=secs,
    )
    if out_dir:
        out = Path(out_dir)
        save_nemotron_nas(final, out, tokenizer=tok, extra={"puzzle": {k: v for k, v in asdict(result).items() if k not in ("out_dir",)}})
        (out / "puzzle.json").write_text(json.dumps(asdict(result), indent=1))
    return result
