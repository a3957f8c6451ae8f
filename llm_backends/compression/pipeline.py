"""The steps behind ``mrkl compress analyze`` and ``mrkl compress fuse``.

``analyze``: calibration text → replace-one-block attention scores → remove the ``K``
cheapest attentions → FFN dependency matrix (heatmap PNG) → candidate runs and the
measured cost of fusing each run's last FFN. ``compress``: the same up to the
removal, then fuse the selected groups, optionally distil, and save a Nemotron-NAS
folder that ``mrkl ask --model DIR`` serves.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from llm_backends.compression.blocks import intermediate_size_to_ffn_mult
from llm_backends.compression.calibration import CalibrationData, build_calibration, compression_cache_dir, weights_fingerprint
from llm_backends.compression.evaluate import kl_to_parent, perplexity
from llm_backends.compression.fusion import (
    dependency_matrix,
    ffn_runs,
    fuse_groups,
    plot_dependency_matrix,
    select_fusion_groups,
)
from llm_backends.compression.model import HeteroLlamaForCausalLM, from_hf_llama
from llm_backends.compression.nemotron_nas import is_nemotron_nas_folder, load_nemotron_nas, save_nemotron_nas
from llm_backends.compression.scoring import BlockScores, remove_attention, score_attention_removal

__all__ = ["load_model", "attention_scores", "analyze", "compress", "AnalysisResult", "CompressResult", "last_ffn_costs"]

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def load_model(model: str, progress: Progress | None = None) -> tuple[HeteroLlamaForCausalLM, Any, str]:
    """Load ``model`` (alias, GGUF, HF Llama folder or Nemotron-NAS folder) as a float32
    :class:`HeteroLlamaForCausalLM` with its tokenizer and display name.

    Raises:
        ModelNotFoundError / BackendError: as :class:`~llm_backends.transformers_backend.TransformersBackend`.
        ValueError: the model is not a Llama.
    """
    from llm_backends.transformers_backend import TransformersBackend

    backend = TransformersBackend(model, progress=progress)
    m = backend.model if isinstance(backend.model, HeteroLlamaForCausalLM) else from_hf_llama(backend.model)
    for p in m.parameters():
        p.requires_grad_(False)
    return m.float().eval(), backend.tokenizer, backend.name


def _cache_file(kind: str, model: HeteroLlamaForCausalLM, windows: torch.Tensor) -> Path:
    h = hashlib.sha256(weights_fingerprint(model).encode())
    h.update(windows.numpy().tobytes())
    return compression_cache_dir() / f"{kind}-{h.hexdigest()[:16]}.json"


def attention_scores(
    model: HeteroLlamaForCausalLM,
    windows: torch.Tensor,
    progress: Progress | None = None,
    cache: bool = True,
    fit_windows: torch.Tensor | None = None,
) -> BlockScores:
    """:func:`~llm_backends.compression.scoring.score_attention_removal` (no-op, and linear fitted on
    ``fit_windows`` when given), cached as JSON under ``$MRKL_CACHE_DIR/compression`` keyed by
    weights and windows."""
    key = windows if fit_windows is None else torch.cat([windows, fit_windows])
    path = _cache_file("scores", model, key)
    if cache and path.is_file():
        try:
            d = json.loads(path.read_text())
            return BlockScores(d["kl_no_op"], d["kl_linear"], d["tokens"])
        except (OSError, ValueError, KeyError):
            pass
    scores = score_attention_removal(model, windows, linear=fit_windows is not None, progress=progress, fit_windows=fit_windows)
    if cache:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(scores.to_dict()))
        except OSError:
            pass
    return scores


@torch.no_grad()
def last_ffn_costs(
    parent: HeteroLlamaForCausalLM, removed: HeteroLlamaForCausalLM, windows: torch.Tensor
) -> list[dict[str, Any]]:
    """For each FFN run of ``removed`` with at least 3 FFNs: KL to the parent when the whole run is
    fused and when the run without its last FFN is fused (the cost of the last FFN, FFN Fusion §4)."""
    base = kl_to_parent(removed, parent, windows)
    rows = []
    for run in ffn_runs(removed):
        if len(run) < 3:
            continue
        full = kl_to_parent(fuse_groups(removed, [run]), parent, windows)
        short = kl_to_parent(fuse_groups(removed, [run[:-1]]), parent, windows)
        rows.append({"run": run, "kl_unfused": base, "kl_fuse_all": full, "kl_fuse_without_last": short, "last_ffn_cost": full - short})
    return rows


@dataclass
class AnalysisResult:
    """Output of :func:`analyze` (also written as ``analysis.json``)."""

    model: str
    calibration_tokens: dict[str, int]
    scoring_tokens: int
    kl_no_op: list[float]
    kl_linear: list[float]
    removed_attention: list[int]
    runs: list[list[int]]
    dependency: list[list[float | None]]
    last_ffn: list[dict[str, Any]]
    heatmap: str
    seconds: float = 0.0


def _scored_parent(
    model_name: str, windows: int, fit_windows: int, progress: Progress
) -> tuple[HeteroLlamaForCausalLM, Any, str, CalibrationData, torch.Tensor, BlockScores]:
    """Load the parent, build its calibration text and score attention removal on it.

    The first ``windows`` training windows are scored; the next ``fit_windows`` fit the
    linear variants. ``analyze`` and ``compress`` share this, so they share the cached scores.

    Returns:
        ``(model, tokenizer, name, calibration, windows_scored, scores)``.
    """
    model, tok, name = load_model(model_name, progress)
    calib = build_calibration(model, tok, progress=progress)
    progress("calibration text: " + calib.describe())
    win = calib.train[:windows]
    fit = calib.train[windows : windows + fit_windows]
    scores = attention_scores(model, win, progress, fit_windows=fit if len(fit) else None)
    return model, tok, name, calib, win, scores


def analyze(
    model_name: str,
    out_dir: str | os.PathLike[str],
    remove_attention_k: int = 12,
    windows: int = 4,
    measure_last_ffn: bool = True,
    progress: Progress | None = None,
    fit_windows: int = 16,
) -> AnalysisResult:
    """Attention-removal scores, FFN dependency heatmap and run analysis of a model.

    Args:
        model_name: alias, GGUF file or model folder (HF Llama or Nemotron-NAS).
        out_dir: where ``analysis.json`` and ``dependency.png`` go (created).
        remove_attention_k: attentions removed (lowest no-op KL) before the dependency analysis.
        windows: calibration windows of 128 tokens used for scoring and the matrix.
        fit_windows: further windows the linear-attention variants are fitted on (0: score no-op only).
        measure_last_ffn: also measure the cost of fusing each run's last FFN.

    Raises:
        ValueError: ``windows < 1`` or ``remove_attention_k`` more than the layers with attention.
    """
    progress = progress or _quiet
    if windows < 1:
        raise ValueError("windows must be at least 1")
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model, tok, name, calib, win, scores = _scored_parent(model_name, windows, fit_windows, progress)
    layers = scores.lowest(remove_attention_k)
    progress(f"removing attention in layers {layers}")
    removed = remove_attention(model, layers)
    M = dependency_matrix(removed, win, progress=progress)
    free = [i for i, l in enumerate(removed.layers) if l.self_attn is None]
    png = plot_dependency_matrix(M, out / "dependency.png", free, title=f"{name}: FFN dependency, attention removed in {len(layers)} layers")
    lf = last_ffn_costs(model, removed, win) if measure_last_ffn else []
    res = AnalysisResult(
        name,
        calib.counts,
        int(win.numel()),
        scores.kl_no_op,
        scores.kl_linear,
        layers,
        ffn_runs(removed),
        [[None if v != v else round(float(v), 6) for v in row] for row in M],
        lf,
        str(png),
        time.perf_counter() - t0,
    )
    (out / "analysis.json").write_text(json.dumps(asdict(res), indent=1))
    return res


@dataclass
class CompressResult:
    """Output of :func:`compress` (also stored in the folder's ``config.json`` under ``mrkl_compression``)."""

    model: str
    out_dir: str
    removed_attention: list[int]
    fused_groups: list[list[int]]
    depth_parent: int
    depth_compressed: int
    params_parent: int
    params_compressed: int
    calibration_tokens: dict[str, int]
    heldout: dict[str, float] = field(default_factory=dict)
    distill_steps: int = 0
    seconds: float = 0.0


def compress(
    model_name: str,
    remove_attention_k: int,
    out_dir: str | os.PathLike[str],
    distill_steps: int = 0,
    threshold: float | None = None,
    exclude_last: bool = True,
    windows: int = 4,
    eval_windows: int = 8,
    progress: Progress | None = None,
    show_bar: bool = True,
    fit_windows: int = 16,
) -> CompressResult:
    """Remove the ``K`` cheapest attentions, fuse the resulting FFN runs, optionally distil, save.

    Args:
        model_name: alias, GGUF file or model folder.
        remove_attention_k: ``K`` attentions to remove (replace-one-block no-op KL, lowest first).
        out_dir: the Nemotron-NAS folder to write (weights, config, tokenizer).
        distill_steps: steps of :func:`~llm_backends.compression.distill.distill` (0: none);
            a checkpoint in ``out_dir/distill-checkpoint.pt`` makes a rerun resume.
        threshold: dependency threshold that splits runs (``None``: fuse whole runs).
        exclude_last: leave each run's last FFN unfused (default: on SmolLM2 fusing it cost
            +2.2 and +7.9 nats/token of KL on the two long runs, see README).
        windows: calibration windows (128 tokens) for scoring and the dependency matrix.
        eval_windows: held-out windows for the KL / perplexity report.

    Returns:
        :class:`CompressResult` (held-out perplexity and KL to the parent before and after).

    Raises:
        ValueError: bad ``K`` / ``windows``; OSError: ``out_dir`` not writable.
    """
    from llm_backends.compression.distill import distill

    progress = progress or _quiet
    if windows < 1 or remove_attention_k < 0:
        raise ValueError("windows must be >= 1 and remove_attention_k >= 0")
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    parent, tok, name, calib, win, scores = _scored_parent(model_name, windows, fit_windows, progress)
    layers = scores.lowest(remove_attention_k)
    progress(f"removing attention in layers {layers}")
    removed = remove_attention(parent, layers)
    M = dependency_matrix(removed, win, progress=progress) if threshold is not None else None
    plan = select_fusion_groups(removed, M, threshold, exclude_last)
    progress(f"fusing FFN groups {plan.groups}")
    fused = fuse_groups(removed, plan.groups)
    hidden = fused.config.hidden_size
    for b in fused.block_configs:  # fail before the long part if the format cannot express a width
        if b.ffn.kind == "swiglu":
            intermediate_size_to_ffn_mult(b.ffn.intermediate_size, hidden)
    held = calib.heldout[:eval_windows]
    heldout = {
        "ppl_parent": perplexity(parent, held),
        "ppl_attention_removed": perplexity(removed, held),
        "ppl_fused": perplexity(fused, held),
        "kl_fused": kl_to_parent(fused, parent, held),
    }
    if distill_steps > 0:
        res = distill(fused, parent, calib.train, distill_steps, checkpoint=out / "distill-checkpoint.pt", show_progress=show_bar)
        progress(f"distilled {res.steps} steps in {res.seconds:.0f} s (resumed from {res.resumed_from})")
        heldout["ppl_distilled"] = perplexity(fused, held)
        heldout["kl_distilled"] = kl_to_parent(fused, parent, held)
    result = CompressResult(
        name,
        str(out),
        layers,
        plan.groups,
        parent.sequential_depth(),
        fused.sequential_depth(),
        parent.num_parameters(),
        fused.num_parameters(),
        calib.counts,
        heldout,
        distill_steps,
        time.perf_counter() - t0,
    )
    save_nemotron_nas(fused, out, tokenizer=tok, extra={k: v for k, v in asdict(result).items() if k != "out_dir"})
    return result


__all__ += ["is_nemotron_nas_folder", "load_nemotron_nas"]
