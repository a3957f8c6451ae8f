"""Replace-one-block scoring and attention removal (Puzzle, Bercovich et al., 2024, §4.1).

For each layer ``i`` and each cheaper attention variant (no-op; linear), the parent is
run with only that one block replaced, and the cost is the KL divergence
``KL(p_parent || p_variant)`` of the next-token distributions, averaged over the
calibration tokens (nats/token). Layers whose attention costs least are the ones
to remove. The linear variant is fitted first by least squares to the parent
attention's output on the calibration text (a closed-form local distillation of
Puzzle's blockwise distillation, §3).

The parent's residual stream before every layer is computed once, so a variant
of layer ``i`` only reruns layers ``i..N-1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from llm_backends.compression.blocks import AttentionConfig
from llm_backends.compression.model import HeteroLlamaForCausalLM, LinearAttention

__all__ = ["BlockScores", "ParentActivations", "kl_divergence", "fit_linear_attention", "score_attention_removal", "remove_attention"]


def kl_divergence(parent_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Mean over positions of ``KL(softmax(parent) || softmax(logits))`` in nats.

    Args:
        parent_logits, logits: ``(..., vocab)`` tensors of the same shape.

    Returns:
        A scalar tensor (float32 or the inputs' dtype if wider).
    """
    p = F.log_softmax(parent_logits.float(), dim=-1)
    q = F.log_softmax(logits.float(), dim=-1)
    return (p.exp() * (p - q)).sum(-1).mean()


@dataclass
class ParentActivations:
    """The parent's residual stream before each layer and its logits on calibration windows.

    Attributes:
        inputs: ``layer -> (B, T, hidden)`` residual before layer ``i`` (index ``N`` = after the last).
        logits: ``(B, T, vocab)`` parent logits.
    """

    inputs: list[torch.Tensor]
    logits: torch.Tensor

    @classmethod
    @torch.no_grad()
    def compute(cls, model: HeteroLlamaForCausalLM, windows: torch.Tensor) -> "ParentActivations":
        """Run ``model`` on ``windows`` ``(B, T)`` once, keeping every layer's input."""
        out = model(windows, output_hidden_states=True)
        return cls(list(out.hidden_states), out.logits)


@dataclass
class BlockScores:
    """Replace-one-block costs per layer.

    Attributes:
        kl_no_op: ``kl_no_op[i]``: KL (nats/token) when layer ``i``'s attention is a no-op
            (``nan`` where it already is one).
        kl_linear: the same with a fitted linear attention (empty if not scored).
        tokens: number of calibration tokens the KL averages over.
    """

    kl_no_op: list[float]
    kl_linear: list[float] = field(default_factory=list)
    tokens: int = 0

    def lowest(self, k: int, kind: str = "no_op") -> list[int]:
        """The ``k`` layers whose attention replacement costs least (sorted by layer).

        Raises:
            ValueError: ``k`` is negative or larger than the layers that still have attention.
        """
        costs = self.kl_no_op if kind == "no_op" else self.kl_linear
        scored = [(c, i) for i, c in enumerate(costs) if c == c]  # drop nan
        if not 0 <= k <= len(scored):
            raise ValueError(f"cannot remove {k} attentions: {len(scored)} layers have one")
        return sorted(i for _, i in sorted(scored)[:k])

    def to_dict(self) -> dict:
        return {"kl_no_op": self.kl_no_op, "kl_linear": self.kl_linear, "tokens": self.tokens}


@torch.no_grad()
def fit_linear_attention(
    model: HeteroLlamaForCausalLM, layer: int, acts: ParentActivations, ridge: float = 1e-3
) -> LinearAttention:
    """Least-squares ``hidden×hidden`` map from the normalised input to the attention output of ``layer``.

    Solves ``min_W ||X Wᵀ − Y||² + ridge·tr(XᵀX)/d·||W||²`` over the calibration tokens in float64.

    Raises:
        ValueError: the layer has no attention to imitate.
    """
    lay = model.layers[layer]
    if lay.self_attn is None:
        raise ValueError(f"layer {layer} has no attention")
    h = acts.inputs[layer]
    B, T, d = h.shape
    pos = torch.arange(T).unsqueeze(0).expand(B, T)
    cos, sin = model.rope(pos, h)
    y, _ = lay.attention_delta(h, cos, sin)
    x = lay.input_layernorm(h).reshape(-1, d).double()
    y = y.reshape(-1, d).double()
    xtx = x.T @ x
    xtx += torch.eye(d, dtype=xtx.dtype) * ridge * xtx.diagonal().mean()
    w = torch.linalg.solve(xtx, x.T @ y).T
    lin = LinearAttention(d).to(dtype=h.dtype)
    lin.linear_attn.weight.copy_(w.to(h.dtype))
    return lin


@torch.no_grad()
def kl_from_layer(model: HeteroLlamaForCausalLM, i: int, acts: Sequence[ParentActivations], weights: Sequence[float]) -> float:
    """KL (nats/token) of ``model``'s output from the parent's when run from layer ``i`` on the parent's
    residual streams: ``Σ weight · KL`` over the batches ``acts`` (the replace-one-block score of
    whatever sub-block layer ``i`` holds now)."""
    return sum(w * float(kl_divergence(a.logits, model.logits_from_hidden(model.run_layers(a.inputs[i], i)))) for a, w in zip(acts, weights))


def score_attention_removal(
    model: HeteroLlamaForCausalLM,
    windows: torch.Tensor,
    linear: bool = True,
    batch_size: int = 4,
    progress: Callable[[str], None] | None = None,
    fit_windows: torch.Tensor | None = None,
) -> BlockScores:
    """Replace-one-block KL for every layer's attention (no-op, and linear if ``linear``).

    Args:
        model: the parent (left unchanged).
        windows: ``(N, T)`` calibration token windows the KL is measured on.
        linear: also score a least-squares linear attention.
        fit_windows: ``(M, T)`` windows the linear maps are fitted on; they should differ from
            ``windows`` and hold well over ``hidden`` tokens (a ``hidden×hidden`` map fitted on the
            scoring tokens themselves would look nearly free). Default: ``windows`` (tests only).
        batch_size: windows per forward pass (memory: ``batch·T·vocab`` floats of logits).
        progress: receives one line per layer.

    Returns:
        :class:`BlockScores` (KL in nats/token, averaged over ``N·T`` tokens).
    """
    n_layers = len(model.layers)
    kl_no = [0.0] * n_layers
    kl_lin = [0.0] * n_layers if linear else []
    batches = [windows[i : i + batch_size] for i in range(0, len(windows), batch_size)]
    acts = [ParentActivations.compute(model, b) for b in batches]
    # one linear fit per layer over all windows
    fitted: dict[int, LinearAttention] = {}
    if linear:
        fit = windows if fit_windows is None else fit_windows
        fit_acts = [ParentActivations.compute(model, fit[i : i + batch_size]) for i in range(0, len(fit), batch_size)]
        for i in range(n_layers):
            if model.layers[i].self_attn is not None:
                merged = ParentActivations([torch.cat([a.inputs[i] for a in fit_acts])] * (i + 1), fit_acts[0].logits)
                fitted[i] = fit_linear_attention(model, i, merged)
        del fit_acts
    weights = [len(b) / len(windows) for b in batches]
    for i in range(n_layers):
        lay = model.layers[i]
        if lay.self_attn is None:
            kl_no[i] = float("nan")
            if linear:
                kl_lin[i] = float("nan")
            continue
        saved_norm, saved_attn = lay.sub_block("attention")
        try:
            lay.put_sub_block("attention", None, None)
            kl_no[i] = kl_from_layer(model, i, acts, weights)
            if linear:
                lay.put_sub_block("attention", saved_norm, fitted[i])
                kl_lin[i] = kl_from_layer(model, i, acts, weights)
        finally:
            lay.put_sub_block("attention", saved_norm, saved_attn)
        if progress:
            msg = f"layer {i}: KL no-op {kl_no[i]:.4f}"
            progress(msg + (f", linear {kl_lin[i]:.4f}" if linear else ""))
    return BlockScores(kl_no, kl_lin, int(windows.numel()))


def remove_attention(
    model: HeteroLlamaForCausalLM,
    layers: Sequence[int],
    kind: str = "no_op",
    calibration: torch.Tensor | None = None,
) -> HeteroLlamaForCausalLM:
    """A copy of ``model`` whose attention in ``layers`` is a no-op (or a fitted linear map).

    Args:
        kind: ``"no_op"`` or ``"linear"`` (then ``calibration`` windows ``(N, T)`` are required
            for the least-squares fit, see :func:`fit_linear_attention`).

    Raises:
        ValueError: a layer index out of range, or ``linear`` without calibration windows.
    """
    n = len(model.layers)
    bad = [i for i in layers if not 0 <= i < n]
    if bad:
        raise ValueError(f"layer indices {bad} out of range 0..{n - 1}")
    if kind not in ("no_op", "linear"):
        raise ValueError(f"kind must be 'no_op' or 'linear', got {kind!r}")
    if kind == "linear" and calibration is None:
        raise ValueError("a linear attention needs calibration windows to fit")
    out = model.clone()
    if kind == "linear":
        acts = ParentActivations.compute(model, calibration)
        for i in layers:
            if model.layers[i].self_attn is not None:
                out.layers[i].self_attn = fit_linear_attention(model, i, acts)
        return out
    for i in layers:
        out.layers[i].set_attention(AttentionConfig("no_op"))
    return out
