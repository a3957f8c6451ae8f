"""FFN Fusion (Bercovich et al., 2025, "FFN Fusion: Rethinking Sequential Computation in LLMs").

After attention removal a model holds runs of consecutive FFNs with no attention
between them: FFN ``a`` followed by the FFNs of layers ``a+1..b`` whose attention
is a no-op. FFN Fusion replaces such a run by one wide FFN applied to the run's
input, ``x + Σ_k FFN_k(x)`` (§3), computed in one step instead of ``b−a+1``.

* :func:`dependency_matrix` — how much FFN ``j``'s output changes when FFN ``i``
  (``i < j``) is removed: ``M[i, j] = 1 − cos(f_j(x), f_j^{¬i}(x))`` averaged over tokens
  (§3.2, Fig. 2). Low values mean the FFNs barely depend on each other.
* :func:`ffn_runs` / :func:`select_fusion_groups` — candidate runs and the groups to fuse.
* :func:`fuse_ffns` — the exact fusion: each layer's RMSNorm weight ``γ_k`` is folded into its
  gate/up matrices (``W (γ ⊙ n(x)) = (W diag γ) n(x)``), gate/up rows and down columns are
  concatenated, and the fused block's norm weight is 1, so the fused block equals the
  parallel sum ``Σ_k FFN_k(norm_k(x))`` up to rounding.
* :func:`plot_dependency_matrix` — the heatmap (matplotlib, PNG).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from llm_backends.compression.blocks import FFNConfig
from llm_backends.compression.model import HeteroLlamaForCausalLM, SwiGLU

__all__ = [
    "dependency_matrix",
    "ffn_runs",
    "select_fusion_groups",
    "fuse_ffns",
    "fuse_groups",
    "parallel_ffn_sum",
    "parent_layer_map",
    "plot_dependency_matrix",
    "FusionPlan",
]


def parent_layer_map(model: HeteroLlamaForCausalLM) -> list[tuple[int, ...]]:
    """For each layer of ``model``, the parent layers it stands for (a fused layer: several)."""
    out, p = [], 0
    for layer in model.layers:
        if layer.fused_from:
            out.append(tuple(layer.fused_from))
            p = max(layer.fused_from) + 1
        else:
            out.append((p,))
            p += 1
    return out


def ffn_runs(model: HeteroLlamaForCausalLM) -> list[list[int]]:
    """Maximal runs ``[a, a+1, .., b]`` (``b > a``) of layers whose FFNs follow one another with no
    attention between them: layers ``a+1..b`` have no-op attention; all FFNs in a run are SwiGLU."""
    runs, cur = [], []
    for i, layer in enumerate(model.layers):
        swiglu = isinstance(layer.mlp, SwiGLU)
        if cur and layer.self_attn is None and swiglu:
            cur.append(i)
            continue
        if len(cur) > 1:
            runs.append(cur)
        cur = [i] if swiglu else []
    if len(cur) > 1:
        runs.append(cur)
    return runs


@torch.no_grad()
def dependency_matrix(
    model: HeteroLlamaForCausalLM,
    windows: torch.Tensor,
    batch_size: int = 4,
    progress: Callable[[str], None] | None = None,
) -> torch.Tensor:
    """Pairwise FFN dependency ``M[i, j]`` (FFN Fusion, §3.2, Fig. 2).

    ``M[i, j]`` for ``i < j`` is the cosine distance ``1 − cos(f_j, f_j^{¬i})`` between FFN ``j``'s
    output contribution in the model and in the model with FFN ``i`` removed, averaged over the
    calibration tokens; entries with ``i ≥ j`` or a no-op FFN are ``nan``.

    Args:
        model: the model to analyse (typically after attention removal).
        windows: ``(N, T)`` token windows.

    Returns:
        ``(L, L)`` float32 tensor, ``L`` = number of layers.
    """
    L = len(model.layers)
    M = torch.full((L, L), float("nan"))
    sums = torch.zeros(L, L)
    n_tok = 0
    for s in range(0, len(windows), batch_size):
        batch = windows[s : s + batch_size]
        B, T = batch.shape
        out = model(batch, output_hidden_states=True)
        hs = out.hidden_states
        pos = torch.arange(T).unsqueeze(0).expand(B, T)
        cos, sin = model.rope(pos, hs[0])
        # reference FFN contributions: rerun each layer's attention to get the FFN input
        ref = []
        for j, layer in enumerate(model.layers):
            h = hs[j]
            d, _ = layer.attention_delta(h, cos, sin)
            if d is not None:
                h = h + d
            ref.append(layer.ffn_delta(h))
        for i, layer_i in enumerate(model.layers):
            if layer_i.mlp is None:
                continue
            h = hs[i]
            d, _ = layer_i.attention_delta(h, cos, sin)
            if d is not None:
                h = h + d  # FFN i removed: skip its delta
            for j in range(i + 1, L):
                layer = model.layers[j]
                d, _ = layer.attention_delta(h, cos, sin)
                if d is not None:
                    h = h + d
                f = layer.ffn_delta(h)
                if f is not None:
                    sums[i, j] += (1 - F.cosine_similarity(f.float(), ref[j].float(), dim=-1)).sum()
                    h = h + f
        n_tok += B * T
        if progress:
            progress(f"dependency matrix: {min(s + batch_size, len(windows))}/{len(windows)} windows")
    for i in range(L):
        for j in range(i + 1, L):
            if model.layers[i].mlp is not None and model.layers[j].mlp is not None:
                M[i, j] = sums[i, j] / n_tok
    return M


@dataclass
class FusionPlan:
    """Groups of layers to fuse, and how they were chosen.

    Attributes:
        groups: lists of consecutive layer indices (each of length ≥ 2).
        runs: the candidate runs (see :func:`ffn_runs`).
        threshold: the dependency threshold used (``None``: whole runs).
        exclude_last: whether each run's last FFN was left out.
    """

    groups: list[list[int]]
    runs: list[list[int]]
    threshold: float | None
    exclude_last: bool


def select_fusion_groups(
    model: HeteroLlamaForCausalLM,
    dependency: torch.Tensor | None = None,
    threshold: float | None = None,
    exclude_last: bool = False,
) -> FusionPlan:
    """Choose the FFN groups to fuse among the runs of :func:`ffn_runs`.

    A run is split wherever adding the next FFN would make some pair inside the group
    more dependent than ``threshold`` (``M[i, j] > threshold``, see :func:`dependency_matrix`);
    ``threshold=None`` keeps whole runs. With ``exclude_last`` each run's final FFN (the one
    feeding the next attention, which the paper found costly to fuse, §4) stays apart.

    Raises:
        ValueError: ``threshold`` given without a ``dependency`` matrix of the model's size.
    """
    L = len(model.layers)
    if threshold is not None and (dependency is None or tuple(dependency.shape) != (L, L)):
        raise ValueError(f"a threshold needs the ({L}, {L}) dependency matrix")
    runs = ffn_runs(model)
    groups = []
    for run in runs:
        run = run[:-1] if exclude_last else run
        group: list[int] = []
        for j in run:
            if group and threshold is not None and any(float(dependency[i, j]) > threshold for i in group):
                if len(group) > 1:
                    groups.append(group)
                group = []
            group.append(j)
        if len(group) > 1:
            groups.append(group)
    return FusionPlan(groups, runs, threshold, exclude_last)


def parallel_ffn_sum(model: HeteroLlamaForCausalLM, layers: Sequence[int], x: torch.Tensor) -> torch.Tensor:
    """``Σ_k FFN_k(norm_k(x))`` over ``layers``, every FFN fed the same input ``x`` ``(B, T, hidden)``
    (the computation fusion makes exact)."""
    return sum(model.layers[k].ffn_delta(x) for k in layers)


@torch.no_grad()
def fuse_ffns(model: HeteroLlamaForCausalLM, layers: Sequence[int]) -> HeteroLlamaForCausalLM:
    """A copy of ``model`` in which the FFNs of the consecutive ``layers`` run as one wide SwiGLU.

    The fused layer sits at ``layers[0]`` with that layer's attention, a norm of weight 1, and
    an FFN of width ``Σ w_k`` whose gate/up rows are ``W_k diag(γ_k)`` and down columns ``D_k``;
    layers ``layers[1:]`` disappear (FFN Fusion, §3.1).

    Raises:
        ValueError: fewer than two layers, not consecutive, an FFN that is not SwiGLU, or
            attention between them (a later layer whose attention is not a no-op).
    """
    layers = list(layers)
    if len(layers) < 2 or layers != list(range(layers[0], layers[0] + len(layers))):
        raise ValueError(f"fuse_ffns needs at least two consecutive layers, got {layers}")
    if layers[0] < 0 or layers[-1] >= len(model.layers):
        raise ValueError(f"layers {layers} out of range 0..{len(model.layers) - 1}")
    src = [model.layers[k] for k in layers]
    if any(not isinstance(l.mlp, SwiGLU) for l in src):
        raise ValueError(f"layers {layers}: every FFN must be SwiGLU to fuse")
    if any(l.self_attn is not None for l in src[1:]):
        raise ValueError(f"layers {layers}: attention between the FFNs; only attention-free runs can be fused")
    pmap = parent_layer_map(model)
    fused_from = tuple(p for k in layers for p in pmap[k])
    gate, up, down = [], [], []
    for l in src:
        g = l.post_attention_layernorm.weight
        gate.append(l.mlp.gate_proj.weight * g[None, :])
        up.append(l.mlp.up_proj.weight * g[None, :])
        down.append(l.mlp.down_proj.weight)
    out = model.clone()
    first = out.layers[layers[0]]
    width = sum(w.shape[0] for w in gate)
    first.set_ffn(FFNConfig("swiglu", width, fused_from))
    ref = next(model.parameters())
    first.to(dtype=ref.dtype, device=ref.device)
    first.post_attention_layernorm.weight.fill_(1.0)
    first.mlp.gate_proj.weight.copy_(torch.cat(gate, 0))
    first.mlp.up_proj.weight.copy_(torch.cat(up, 0))
    first.mlp.down_proj.weight.copy_(torch.cat(down, 1))
    out.model.layers = torch.nn.ModuleList(m for k, m in enumerate(out.layers) if k not in layers[1:])
    return out


def fuse_groups(model: HeteroLlamaForCausalLM, groups: Sequence[Sequence[int]]) -> HeteroLlamaForCausalLM:
    """Fuse several disjoint groups (indices refer to ``model``); later groups first, so indices stay valid."""
    out = model
    for g in sorted(groups, key=lambda g: -g[0]):
        out = fuse_ffns(out, g)
    return out if out is not model else model.clone()


def plot_dependency_matrix(
    M: torch.Tensor,
    path: str | Path,
    attention_free: Sequence[int] = (),
    title: str = "FFN dependency (cosine distance of FFN j's output when FFN i is removed)",
) -> Path:
    """Save ``M`` as a heatmap PNG (rows: removed FFN ``i``; columns: affected FFN ``j``).

    Layers in ``attention_free`` are marked with a tick on both axes. Returns the path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    L = M.shape[0]
    fig, ax = plt.subplots(figsize=(7.5, 6.5), dpi=120)
    from matplotlib.colors import LogNorm

    data = M.clone().float().numpy()
    finite = data[data == data]
    positive = finite[finite > 0]
    # log colour scale: one early FFN (layer 0) is often far more depended on than the rest
    norm = LogNorm(vmin=max(float(positive.min()), 1e-6), vmax=float(positive.max())) if positive.size else None
    im = ax.imshow(data.clip(min=1e-6), cmap="viridis", origin="upper", interpolation="nearest", norm=norm)
    fig.colorbar(im, ax=ax, label="1 − cos(f_j, f_j without FFN i)  (log scale)")
    ticks = list(range(L))
    labels = [f"{k}*" if k in set(attention_free) else str(k) for k in ticks]
    ax.set_xticks(ticks, labels, fontsize=6, rotation=90)
    ax.set_yticks(ticks, labels, fontsize=6)
    ax.set_xlabel("FFN j (affected)   * = layer without attention")
    ax.set_ylabel("FFN i (removed)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
