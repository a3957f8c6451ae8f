"""Puzzle's block library: cheaper alternatives of every sub-block, initialised from the parent.

Puzzle (Bercovich et al., 2024, "Puzzle: Distillation-Based NAS for Inference-Optimized
LLMs", §3.1 "Block library construction") replaces each parent layer's attention and
FFN by one of a few cheaper *variants*. The default library for a Llama parent:

* attention: GQA with the parent's KV heads | GQA with 1 KV head | linear | no-op;
* FFN: SwiGLU of intermediate size 1536 (SmolLM2's parent) | 1152 | 768 | 384 (i.e. the
  parent width × 1, 3/4, 1/2, 1/4) | linear | no-op.

Initialisation follows the paper's public implementation (§3.1 and its appendix on
initialisation):

* fewer KV heads: the KV heads of each merged group are **averaged** (key and value
  projections); query and output projections are copied;
* narrower FFN: the intermediate channels with the largest mean activation magnitude
  ``|silu(x·W_gate)·(x·W_up)|`` on calibration tokens are kept (rows of gate/up, columns
  of down);
* linear attention: ``W_o · W_v`` (with each KV head repeated for its query heads), the
  map attention computes when a token attends only to itself;
* linear FFN: ``W_down · W_up`` (the SwiGLU with its gate taken as identity).

Variants are *sub-block modules*: an attention variant is the pair (input RMSNorm, attention
module), an FFN variant the pair (post-attention RMSNorm, FFN module); the norm starts as a
copy of the parent's. No-op variants hold nothing.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from llm_backends.compression.blocks import AttentionConfig, FFNConfig
from llm_backends.compression.model import (
    GQAttention,
    HeteroDecoderLayer,
    LinearAttention,
    LinearMLP,
    RMSNorm,
    SwiGLU,
)

__all__ = [
    "LibrarySpec",
    "SubBlock",
    "attention_name",
    "ffn_name",
    "variant_config",
    "init_attention_variant",
    "init_ffn_variant",
    "ffn_channel_importance",
    "parent_sub_block",
    "build_layer_variants",
    "empty_sub_block",
]


def attention_name(cfg: AttentionConfig) -> str:
    """Short name of an attention variant: ``"gqa3"``, ``"gqa1"``, ``"linear"``, ``"noop"``."""
    return {"gqa": f"gqa{cfg.n_kv_heads}", "linear": "linear", "no_op": "noop"}[cfg.kind]


def variant_config(kind: str, name: str) -> AttentionConfig | FFNConfig:
    """Inverse of :func:`attention_name` (``kind="attention"``) / :func:`ffn_name` (``kind="ffn"``).

    Raises:
        ValueError: an unknown kind or name.
    """
    try:
        if kind == "attention":
            return AttentionConfig("gqa", int(name[3:])) if name.startswith("gqa") else AttentionConfig({"linear": "linear", "noop": "no_op"}[name])
        if kind == "ffn":
            return FFNConfig("swiglu", int(name[6:])) if name.startswith("swiglu") else FFNConfig({"linear": "linear", "noop": "no_op"}[name])
    except (KeyError, ValueError):
        pass
    raise ValueError(f"unknown {kind} variant {name!r}")


def ffn_name(cfg: FFNConfig) -> str:
    """Short name of an FFN variant: ``"swiglu1536"``, ``"linear"``, ``"noop"``."""
    return {"swiglu": f"swiglu{cfg.intermediate_size}", "linear": "linear", "no_op": "noop"}[cfg.kind]


@dataclass(frozen=True)
class LibrarySpec:
    """Which variants the library holds for every layer.

    Attributes:
        kv_heads: KV-head counts of the GQA variants (each must divide the query heads);
            ``None`` entries mean "the parent's".
        ffn_fractions: SwiGLU widths as fractions of the parent's intermediate size
            (rounded to a multiple of 64).
        ffn_widths: explicit SwiGLU widths; when given they replace ``ffn_fractions``.
        linear: include the linear attention and linear FFN variants (Puzzle's
            ``replace_with_linear``; vLLM's ``nemotron_nas`` does not serve them).
        no_op: include the no-op variants.
    """

    kv_heads: tuple[int | None, ...] = (None, 1)
    ffn_fractions: tuple[float, ...] = (1.0, 0.75, 0.5, 0.25)
    ffn_widths: tuple[int, ...] | None = None
    linear: bool = True
    no_op: bool = True

    def attention_variants(self, config: Any) -> list[AttentionConfig]:
        """The attention variants for a parent Llama ``config`` (parent first).

        Raises:
            ValueError: a KV-head count that does not divide the query heads or exceeds the parent's.
        """
        n_heads = config.num_attention_heads
        parent_kv = getattr(config, "num_key_value_heads", None) or n_heads
        out: list[AttentionConfig] = []
        for k in self.kv_heads:
            k = parent_kv if k is None else int(k)
            if k < 1 or n_heads % k or k > parent_kv:
                raise ValueError(f"{k} KV heads: must divide the {n_heads} query heads and be at most the parent's {parent_kv}")
            cfg = AttentionConfig("gqa", k)
            if cfg not in out:
                out.append(cfg)
        if AttentionConfig("gqa", parent_kv) not in out:
            out.insert(0, AttentionConfig("gqa", parent_kv))
        out.sort(key=lambda c: -c.n_kv_heads)
        if self.linear:
            out.append(AttentionConfig("linear"))
        if self.no_op:
            out.append(AttentionConfig("no_op"))
        return out

    def ffn_variants(self, config: Any) -> list[FFNConfig]:
        """The FFN variants for a parent Llama ``config`` (parent width first).

        Raises:
            ValueError: a width that is not positive or exceeds the parent's.
        """
        parent = config.intermediate_size
        widths = list(self.ffn_widths) if self.ffn_widths else [max(64, int(round(parent * f / 64)) * 64) for f in self.ffn_fractions]
        if parent not in widths:
            widths.append(parent)
        for w in widths:
            if not 0 < w <= parent:
                raise ValueError(f"FFN width {w} must be in 1..{parent} (the parent's intermediate size)")
        out = [FFNConfig("swiglu", w) for w in sorted(set(widths), reverse=True)]
        if self.linear:
            out.append(FFNConfig("linear"))
        if self.no_op:
            out.append(FFNConfig("no_op"))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "kv_heads": list(self.kv_heads),
            "ffn_fractions": list(self.ffn_fractions),
            "ffn_widths": list(self.ffn_widths) if self.ffn_widths else None,
            "linear": self.linear,
            "no_op": self.no_op,
        }


class SubBlock(nn.Module):
    """One sub-block variant: ``delta = module(norm(h))`` added to the residual ``h``.

    Attributes:
        kind: ``"attention"`` or ``"ffn"``.
        config: its :class:`AttentionConfig` / :class:`FFNConfig`.
        norm: RMSNorm (``None`` for no-op).
        module: the attention / FFN module (``None`` for no-op).
    """

    def __init__(self, kind: str, config: AttentionConfig | FFNConfig, norm: RMSNorm | None, module: nn.Module | None) -> None:
        super().__init__()
        self.kind, self.config = kind, config
        self.norm, self.module = norm, module

    @property
    def name(self) -> str:
        return attention_name(self.config) if self.kind == "attention" else ffn_name(self.config)

    def delta(self, h: torch.Tensor, cos: torch.Tensor | None = None, sin: torch.Tensor | None = None) -> torch.Tensor | None:
        """The contribution to the residual for ``h`` ``(B, T, hidden)`` (``None`` for no-op);
        attention needs RoPE ``cos, sin`` ``(B, T, head_dim)`` and runs causally without a cache."""
        if self.module is None:
            return None
        x = self.norm(h)
        if self.kind == "attention":
            return self.module(x, cos, sin, None)[0]
        return self.module(x)

    def install(self, layer: HeteroDecoderLayer) -> None:
        """Put copies of this variant's modules into ``layer`` (replacing its sub-block)."""
        norm = copy.deepcopy(self.norm) if self.norm is not None else None
        mod = copy.deepcopy(self.module) if self.module is not None else None
        layer.put_sub_block(self.kind, norm, mod)
        if self.kind == "ffn":
            layer.fused_from = ()


def empty_sub_block(kind: str, cfg: AttentionConfig | FFNConfig, parent: HeteroDecoderLayer) -> SubBlock:
    """A freshly initialised (untrained) sub-block of ``cfg`` shaped for ``parent``'s model, in its dtype
    (used to load stored variant weights)."""
    from llm_backends.compression.blocks import BlockConfig

    tmp = HeteroDecoderLayer(
        BlockConfig(cfg if kind == "attention" else AttentionConfig("no_op"), cfg if kind == "ffn" else FFNConfig("no_op")),
        parent.hidden,
        parent.n_heads,
        parent.head_dim,
        parent.eps,
    )
    dtype = next(parent.parameters()).dtype
    tmp.to(dtype)
    return SubBlock(kind, cfg, *tmp.sub_block(kind))


def parent_sub_block(layer: HeteroDecoderLayer, kind: str) -> SubBlock:
    """The parent layer's own attention or FFN as a :class:`SubBlock` (modules shared, not copied)."""
    norm, module = layer.sub_block(kind)  # ValueError for another kind
    return SubBlock(kind, layer.block_config.attention if kind == "attention" else layer.block_config.ffn, norm, module)


@torch.no_grad()
def init_attention_variant(layer: HeteroDecoderLayer, cfg: AttentionConfig) -> SubBlock:
    """A variant of ``layer``'s GQA attention, initialised from it (see the module docstring).

    Args:
        layer: a parent layer whose attention is :class:`GQAttention`.
        cfg: the variant; a GQA variant's KV heads must divide the parent's.

    Returns:
        A :class:`SubBlock` with new tensors (the parent is not modified), in the parent's dtype.

    Raises:
        ValueError: the parent layer has no GQA attention, or the KV heads cannot be merged evenly.
    """
    parent = layer.self_attn
    if not isinstance(parent, GQAttention):
        raise ValueError("the parent layer has no GQA attention to derive variants from")
    if cfg.kind == "no_op":
        return SubBlock("attention", cfg, None, None)
    norm = copy.deepcopy(layer.input_layernorm)
    hd, nh, nkv = parent.head_dim, parent.n_heads, parent.n_kv_heads
    hidden = parent.q_proj.in_features
    dtype = parent.q_proj.weight.dtype
    if cfg.kind == "linear":
        wv = parent.v_proj.weight.view(nkv, hd, hidden).repeat_interleave(nh // nkv, dim=0).reshape(nh * hd, hidden)
        lin = LinearAttention(hidden).to(dtype)
        lin.linear_attn.weight.copy_(parent.o_proj.weight @ wv)
        return SubBlock("attention", cfg, norm, lin)
    k = cfg.n_kv_heads
    if nkv % k:
        raise ValueError(f"cannot merge {nkv} KV heads into {k} (not a divisor)")
    att = GQAttention(hidden, nh, k, hd).to(dtype)
    att.q_proj.weight.copy_(parent.q_proj.weight)
    att.o_proj.weight.copy_(parent.o_proj.weight)
    # consecutive KV heads share query groups in repeat_interleave order, so merge consecutive heads
    for src, dst in ((parent.k_proj, att.k_proj), (parent.v_proj, att.v_proj)):
        dst.weight.copy_(src.weight.view(k, nkv // k, hd, hidden).mean(dim=1).reshape(k * hd, hidden))
    return SubBlock("attention", cfg, norm, att)


@torch.no_grad()
def ffn_channel_importance(layer: HeteroDecoderLayer, ffn_inputs: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Mean activation magnitude of each SwiGLU channel, ``mean |silu(x·W_gate)·(x·W_up)|``.

    Args:
        layer: a parent layer with a SwiGLU FFN.
        ffn_inputs: ``(..., hidden)`` residual stream entering the FFN sub-block (before its norm).
        chunk: tokens per step (memory).

    Returns:
        ``(intermediate_size,)`` float32 tensor.

    Raises:
        ValueError: the layer's FFN is not a SwiGLU.
    """
    mlp = layer.mlp
    if not isinstance(mlp, SwiGLU):
        raise ValueError("the parent layer has no SwiGLU FFN")
    x = ffn_inputs.reshape(-1, ffn_inputs.shape[-1])
    total = torch.zeros(mlp.gate_proj.out_features, dtype=torch.float32)
    for i in range(0, len(x), chunk):
        n = layer.post_attention_layernorm(x[i : i + chunk])
        act = torch.nn.functional.silu(mlp.gate_proj(n)) * mlp.up_proj(n)
        total += act.abs().float().sum(0)
    return total / max(len(x), 1)


@torch.no_grad()
def init_ffn_variant(layer: HeteroDecoderLayer, cfg: FFNConfig, importance: torch.Tensor | None = None) -> SubBlock:
    """A variant of ``layer``'s SwiGLU FFN, initialised from it (see the module docstring).

    Args:
        layer: a parent layer with a SwiGLU FFN.
        cfg: the variant.
        importance: ``(intermediate_size,)`` channel scores from :func:`ffn_channel_importance`;
            required for a narrower SwiGLU.

    Returns:
        A :class:`SubBlock` with new tensors in the parent's dtype.

    Raises:
        ValueError: no SwiGLU parent, a width above the parent's, or a narrower width without ``importance``.
    """
    mlp = layer.mlp
    if not isinstance(mlp, SwiGLU):
        raise ValueError("the parent layer has no SwiGLU FFN to derive variants from")
    if cfg.kind == "no_op":
        return SubBlock("ffn", cfg, None, None)
    norm = copy.deepcopy(layer.post_attention_layernorm)
    hidden, width = mlp.gate_proj.in_features, mlp.gate_proj.out_features
    dtype = mlp.gate_proj.weight.dtype
    if cfg.kind == "linear":
        lin = LinearMLP(hidden).to(dtype)
        lin.linear_mlp.weight.copy_(mlp.down_proj.weight @ mlp.up_proj.weight)
        return SubBlock("ffn", cfg, norm, lin)
    w = cfg.intermediate_size
    if w > width:
        raise ValueError(f"FFN width {w} exceeds the parent's {width}")
    if w < width and (importance is None or importance.shape != (width,)):
        raise ValueError(f"a width-{w} FFN needs channel importances of shape ({width},)")
    keep = torch.arange(width) if w == width else importance.topk(w).indices.sort().values
    new = SwiGLU(hidden, w).to(dtype)
    new.gate_proj.weight.copy_(mlp.gate_proj.weight[keep])
    new.up_proj.weight.copy_(mlp.up_proj.weight[keep])
    new.down_proj.weight.copy_(mlp.down_proj.weight[:, keep])
    return SubBlock("ffn", cfg, norm, new)


def build_layer_variants(
    layer: HeteroDecoderLayer,
    attention: Sequence[AttentionConfig],
    ffn: Sequence[FFNConfig],
    ffn_inputs: torch.Tensor | None,
) -> tuple[dict[str, SubBlock], dict[str, SubBlock]]:
    """Initialised variants of one parent layer, keyed by :func:`attention_name` / :func:`ffn_name`.

    Args:
        ffn_inputs: ``(..., hidden)`` calibration residuals entering the FFN (for channel pruning;
            may be ``None`` when no narrower SwiGLU is asked for).
    """
    imp = ffn_channel_importance(layer, ffn_inputs) if ffn_inputs is not None and isinstance(layer.mlp, SwiGLU) else None
    att = {attention_name(c): init_attention_variant(layer, c) for c in attention}
    ff = {ffn_name(c): init_ffn_variant(layer, c, imp) for c in ffn}
    return att, ff
