"""A heterogeneous Llama: every decoder layer has its own attention and FFN sub-block.

The architecture is the Llama decoder (pre-norm residual blocks, RMSNorm, RoPE,
SwiGLU) in which each layer may differ (Puzzle, Bercovich et al., 2024, §2;
the DeciLM / Nemotron-NAS checkpoints). Parameter names are Llama's, so a
state dict moves between this model, ``LlamaForCausalLM`` and Nemotron-NAS
safetensors without renaming:

* attention ``gqa``: ``self_attn.{q,k,v,o}_proj.weight``; ``linear``:
  ``self_attn.linear_attn.weight`` (``hidden×hidden``, current token only);
  ``no_op``: no ``input_layernorm`` and no attention weights;
* FFN ``swiglu``: ``mlp.{gate,up,down}_proj.weight``; ``linear``:
  ``mlp.linear_mlp.weight``; ``no_op``: no ``post_attention_layernorm``.

With every block at the parent's configuration the logits equal those of
``transformers.LlamaForCausalLM`` (tests: ≤ 1e-4 absolute in float32, ≤ 1e-9 in float64).
Sequences in a batch share one length (no padding mask).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from llm_backends.compression.blocks import AttentionConfig, BlockConfig, FFNConfig

__all__ = ["HeteroLlamaForCausalLM", "HeteroCache", "HeteroOutput", "from_hf_llama", "parent_block_config"]


class RMSNorm(nn.Module):
    """Root-mean-square layer norm (Zhang & Sennrich, 2019), computed in float32 as in HF Llama."""

    def __init__(self, hidden_size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        h = x.to(torch.float32) if dtype in (torch.float16, torch.bfloat16) else x
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class GQAttention(nn.Module):
    """Grouped-query attention (Ainslie et al., 2023) with RoPE and an optional KV cache.

    Input ``(B, T, hidden)``; ``n_heads`` query heads share ``n_kv_heads`` key/value heads.
    """

    def __init__(self, hidden: int, n_heads: int, n_kv_heads: int, head_dim: int) -> None:
        super().__init__()
        if n_heads % n_kv_heads:
            raise ValueError(f"n_kv_heads={n_kv_heads} must divide n_heads={n_heads}")
        self.n_heads, self.n_kv_heads, self.head_dim = n_heads, n_kv_heads, head_dim
        self.q_proj = nn.Linear(hidden, n_heads * head_dim, bias=False)
        self.k_proj = nn.Linear(hidden, n_kv_heads * head_dim, bias=False)
        self.v_proj = nn.Linear(hidden, n_kv_heads * head_dim, bias=False)
        self.o_proj = nn.Linear(n_heads * head_dim, hidden, bias=False)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        past: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        c, s = cos.unsqueeze(1), sin.unsqueeze(1)
        q = q * c + _rotate_half(q) * s
        k = k * c + _rotate_half(k) * s
        past_len = 0
        if past is not None:
            past_len = past[0].shape[2]
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        group = self.n_heads // self.n_kv_heads
        kk = k.repeat_interleave(group, dim=1) if group > 1 else k
        vv = v.repeat_interleave(group, dim=1) if group > 1 else v
        if T == 1:
            out = F.scaled_dot_product_attention(q, kk, vv)
        elif past_len == 0:
            out = F.scaled_dot_product_attention(q, kk, vv, is_causal=True)
        else:
            mask = torch.ones(T, past_len + T, dtype=torch.bool, device=x.device).tril(diagonal=past_len)
            out = F.scaled_dot_product_attention(q, kk, vv, attn_mask=mask)
        out = out.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim)
        return self.o_proj(out), (k, v)


class LinearAttention(nn.Module):
    """Attention replaced by one ``hidden×hidden`` matrix on the current token (Puzzle's "linear" variant)."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.linear_attn = nn.Linear(hidden, hidden, bias=False)

    def forward(self, x: torch.Tensor, *_: Any) -> tuple[torch.Tensor, None]:
        return self.linear_attn(x), None


class SwiGLU(nn.Module):
    """``down(silu(gate(x)) * up(x))`` (Shazeer, 2020); width = ``intermediate_size``."""

    def __init__(self, hidden: int, intermediate_size: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(hidden, intermediate_size, bias=False)
        self.up_proj = nn.Linear(hidden, intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LinearMLP(nn.Module):
    """FFN replaced by one ``hidden×hidden`` matrix."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.linear_mlp = nn.Linear(hidden, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_mlp(x)


class HeteroDecoderLayer(nn.Module):
    """One pre-norm decoder layer ``h + attn(norm(h))`` then ``h + ffn(norm(h))``; either part may be absent."""

    def __init__(self, block: BlockConfig, hidden: int, n_heads: int, head_dim: int, eps: float) -> None:
        super().__init__()
        self.hidden, self.n_heads, self.head_dim, self.eps = hidden, n_heads, head_dim, eps
        self.input_layernorm: RMSNorm | None = None
        self.self_attn: nn.Module | None = None
        self.post_attention_layernorm: RMSNorm | None = None
        self.mlp: nn.Module | None = None
        self.fused_from: tuple[int, ...] = ()
        self.set_attention(block.attention)
        self.set_ffn(block.ffn)

    # -------------------------------------------------------------- structure
    #: the (norm, module) attribute names of each sub-block kind
    SUB_BLOCKS = {"attention": ("input_layernorm", "self_attn"), "ffn": ("post_attention_layernorm", "mlp")}

    def sub_block(self, kind: str) -> tuple[RMSNorm | None, nn.Module | None]:
        """``(norm, module)`` of the layer's ``"attention"`` or ``"ffn"`` (the modules themselves, not copies).

        Raises:
            ValueError: another kind.
        """
        if kind not in self.SUB_BLOCKS:
            raise ValueError(f"kind must be 'attention' or 'ffn', got {kind!r}")
        norm, module = self.SUB_BLOCKS[kind]
        return getattr(self, norm), getattr(self, module)

    def put_sub_block(self, kind: str, norm: RMSNorm | None, module: nn.Module | None) -> None:
        """Make ``(norm, module)`` the layer's ``"attention"`` or ``"ffn"`` as given (not copied; the
        block config is not updated). Raises ValueError for another kind."""
        if kind not in self.SUB_BLOCKS:
            raise ValueError(f"kind must be 'attention' or 'ffn', got {kind!r}")
        norm_attr, module_attr = self.SUB_BLOCKS[kind]
        setattr(self, norm_attr, norm)
        setattr(self, module_attr, module)

    def set_attention(self, cfg: AttentionConfig) -> None:
        """Replace the attention sub-block by a freshly initialised one of ``cfg`` (no-op removes it)."""
        if cfg.kind == "no_op":
            self.input_layernorm, self.self_attn = None, None
            return
        if self.input_layernorm is None:
            self.input_layernorm = RMSNorm(self.hidden, self.eps)
        if cfg.kind == "gqa":
            self.self_attn = GQAttention(self.hidden, self.n_heads, cfg.n_kv_heads, self.head_dim)
        else:
            self.self_attn = LinearAttention(self.hidden)

    def set_ffn(self, cfg: FFNConfig) -> None:
        """Replace the FFN sub-block by a freshly initialised one of ``cfg`` (no-op removes it)."""
        self.fused_from = tuple(cfg.fused_from)
        if cfg.kind == "no_op":
            self.post_attention_layernorm, self.mlp = None, None
            return
        if self.post_attention_layernorm is None:
            self.post_attention_layernorm = RMSNorm(self.hidden, self.eps)
        self.mlp = SwiGLU(self.hidden, cfg.intermediate_size) if cfg.kind == "swiglu" else LinearMLP(self.hidden)

    @property
    def block_config(self) -> BlockConfig:
        """The layer's :class:`BlockConfig`, read from its modules."""
        a = self.self_attn
        if a is None:
            att = AttentionConfig("no_op")
        elif isinstance(a, GQAttention):
            att = AttentionConfig("gqa", a.n_kv_heads)
        else:
            att = AttentionConfig("linear")
        m = self.mlp
        if m is None:
            ffn = FFNConfig("no_op")
        elif isinstance(m, SwiGLU):
            ffn = FFNConfig("swiglu", m.gate_proj.out_features, self.fused_from)
        else:
            ffn = FFNConfig("linear")
        return BlockConfig(att, ffn)

    # -------------------------------------------------------------- compute
    def attention_delta(
        self, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, past: Any = None
    ) -> tuple[torch.Tensor | None, Any]:
        """The attention sub-block's contribution to the residual (``None`` for no-op) and its new KV."""
        if self.self_attn is None:
            return None, None
        return self.self_attn(self.input_layernorm(h), cos, sin, past)

    def ffn_delta(self, h: torch.Tensor) -> torch.Tensor | None:
        """The FFN sub-block's contribution ``ffn(norm(h))`` (``None`` for no-op)."""
        if self.mlp is None:
            return None
        return self.mlp(self.post_attention_layernorm(h))

    def forward(self, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, past: Any = None) -> tuple[torch.Tensor, Any]:
        delta, kv = self.attention_delta(h, cos, sin, past)
        if delta is not None:
            h = h + delta
        delta = self.ffn_delta(h)
        if delta is not None:
            h = h + delta
        return h, kv


class HeteroCache:
    """KV cache of a :class:`HeteroLlamaForCausalLM`: one ``(k, v)`` per GQA layer, ``None`` elsewhere.

    Tensors are ``(B, n_kv_heads, T, head_dim)``. Updated in place by each forward.
    """

    def __init__(self, n_layers: int) -> None:
        self.layers: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * n_layers
        self.length = 0

    def get_seq_length(self) -> int:
        """Number of cached positions."""
        return self.length

    def crop(self, max_length: int) -> None:
        """Keep the first ``max_length`` positions; a negative value removes that many from the end
        (the convention of transformers' ``DynamicCache.crop``)."""
        keep = self.length + max_length if max_length < 0 else min(max_length, self.length)
        if keep < 0:
            raise ValueError(f"cannot crop {-max_length} positions from a cache of {self.length}")
        self.layers = [None if kv is None else (kv[0][:, :, :keep], kv[1][:, :, :keep]) for kv in self.layers]
        self.length = keep


@dataclass
class HeteroOutput:
    """Forward result.

    Attributes:
        logits: ``(B, T, vocab)`` next-token logits.
        cache: the updated :class:`HeteroCache` (``None`` unless ``use_cache``).
        hidden_states: residual stream before layer 0 and after each layer
            (``n_layers + 1`` tensors ``(B, T, hidden)``, before the final norm), if asked.
    """

    logits: torch.Tensor
    cache: HeteroCache | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


class _Backbone(nn.Module):
    def __init__(self, vocab: int, hidden: int, layers: list[HeteroDecoderLayer], eps: float, rotary: nn.Module) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(vocab, hidden)
        self.layers = nn.ModuleList(layers)
        self.norm = RMSNorm(hidden, eps)
        self.rotary_emb = rotary


class HeteroLlamaForCausalLM(nn.Module):
    """A Llama whose every layer has its own :class:`BlockConfig`.

    Args:
        config: the parent ``transformers.LlamaConfig`` (vocabulary, hidden size, heads,
            RoPE, norms); its per-layer ``intermediate_size`` / ``num_key_value_heads``
            are ignored in favour of ``block_configs``.
        block_configs: one :class:`BlockConfig` per layer.

    Raises:
        ValueError: a config this model cannot represent (attention or MLP biases,
            an activation other than SiLU, a KV head count not dividing the heads).

    Attributes:
        config: the ``LlamaConfig`` (``max_position_embeddings`` etc.).
        model: embeddings, layers, final norm; ``lm_head``: the output projection
            (tied to the embeddings when ``config.tie_word_embeddings``).
    """

    def __init__(self, config: Any, block_configs: Sequence[BlockConfig]) -> None:
        super().__init__()
        from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

        if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
            raise ValueError("attention / MLP biases are not supported")
        if getattr(config, "hidden_act", "silu") != "silu":
            raise ValueError(f"only SiLU (SwiGLU) FFNs are supported, got {config.hidden_act!r}")
        if not block_configs:
            raise ValueError("a model needs at least one layer")
        self.config = config
        self.generation_config = None
        hidden, n_heads = config.hidden_size, config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or hidden // n_heads
        eps = config.rms_norm_eps
        layers = [HeteroDecoderLayer(b, hidden, n_heads, head_dim, eps) for b in block_configs]
        self.model = _Backbone(config.vocab_size, hidden, layers, eps, LlamaRotaryEmbedding(config))
        self.lm_head = nn.Linear(hidden, config.vocab_size, bias=False)
        if getattr(config, "tie_word_embeddings", False):
            self.lm_head.weight = self.model.embed_tokens.weight

    # ------------------------------------------------------------ structure
    @property
    def layers(self) -> nn.ModuleList:
        """The decoder layers (:class:`HeteroDecoderLayer`)."""
        return self.model.layers

    @property
    def block_configs(self) -> list[BlockConfig]:
        """Each layer's :class:`BlockConfig`, read from the modules."""
        return [layer.block_config for layer in self.model.layers]

    @property
    def tied(self) -> bool:
        """Whether ``lm_head`` shares the embedding matrix."""
        return self.lm_head.weight is self.model.embed_tokens.weight

    def sequential_depth(self) -> int:
        """Sub-blocks that must run one after another: non-no-op attentions plus non-no-op FFNs
        (a fused FFN counts once). The parent SmolLM2-135M has 60."""
        return sum((b.attention.kind != "no_op") + (b.ffn.kind != "no_op") for b in self.block_configs)

    def num_parameters(self) -> int:
        """Distinct parameters (tied embeddings counted once)."""
        return sum(p.numel() for p in {id(p): p for p in self.parameters()}.values())

    def describe(self) -> str:
        """One line per layer, e.g. ``"  3 noop+swiglu1536"``."""
        return "\n".join(f"{i:3d} {b.describe()}" for i, b in enumerate(self.block_configs))

    # ------------------------------------------------------------ compute
    def rope(self, position_ids: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """RoPE ``cos, sin`` of shape ``(B, T, head_dim)`` for ``position_ids`` ``(B, T)``."""
        return self.model.rotary_emb(like, position_ids)

    def forward(
        self,
        input_ids: torch.Tensor,
        cache: HeteroCache | None = None,
        use_cache: bool = False,
        position_ids: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        attention_mask: torch.Tensor | None = None,
        **_: Any,
    ) -> HeteroOutput:
        """Run the model.

        Args:
            input_ids: ``(B, T)`` token ids (long).
            cache: a :class:`HeteroCache` from an earlier call (positions continue after it);
                updated in place.
            use_cache: return the cache (a new one if ``cache`` is None).
            position_ids: ``(B, T)``; default ``past .. past+T-1``.
            output_hidden_states: also return the residual stream after each layer.
            attention_mask: accepted for API compatibility; must be all ones (no padding).

        Returns:
            :class:`HeteroOutput`.

        Raises:
            ValueError: a padding mask, or input that is not ``(B, T)`` with ``T ≥ 1``.
        """
        if input_ids.dim() != 2 or input_ids.shape[1] == 0:
            raise ValueError(f"input_ids must be (batch, tokens) with tokens >= 1, got {tuple(input_ids.shape)}")
        if attention_mask is not None and not bool(attention_mask.all()):
            raise ValueError("padding masks are not supported: give sequences of one length")
        if use_cache and cache is None:
            cache = HeteroCache(len(self.model.layers))
        past = cache.length if cache is not None else 0
        B, T = input_ids.shape
        if position_ids is None:
            position_ids = torch.arange(past, past + T, device=input_ids.device).unsqueeze(0).expand(B, T)
        h = self.model.embed_tokens(input_ids)
        cos, sin = self.rope(position_ids, h)
        hidden = [h] if output_hidden_states else None
        for i, layer in enumerate(self.model.layers):
            h, kv = layer(h, cos, sin, cache.layers[i] if cache is not None else None)
            if cache is not None and kv is not None:
                cache.layers[i] = kv
            if hidden is not None:
                hidden.append(h)
        if cache is not None:
            cache.length = past + T
        logits = self.lm_head(self.model.norm(h))
        return HeteroOutput(logits, cache if (use_cache or cache is not None) else None, tuple(hidden) if hidden else None)

    def run_layers(
        self, h: torch.Tensor, start: int, stop: int | None = None, position_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Residual stream after layers ``start..stop-1`` given the stream ``h`` ``(B, T, hidden)`` before
        layer ``start`` (no cache; positions ``0..T-1`` by default)."""
        B, T, _ = h.shape
        if position_ids is None:
            position_ids = torch.arange(T, device=h.device).unsqueeze(0).expand(B, T)
        cos, sin = self.rope(position_ids, h)
        for layer in self.model.layers[start:stop]:
            h, _ = layer(h, cos, sin)
        return h

    def logits_from_hidden(self, h: torch.Tensor) -> torch.Tensor:
        """``lm_head(norm(h))``: logits ``(B, T, vocab)`` from the last residual stream."""
        return self.lm_head(self.model.norm(h))

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, max_new_tokens: int = 32, use_cache: bool = True) -> torch.Tensor:
        """Greedy decoding. ``input_ids`` ``(B, T)`` → ``(B, T + max_new_tokens)`` (no early stop).

        With ``use_cache=False`` every step re-runs the whole sequence (a reference for tests)."""
        ids = input_ids
        if not use_cache:
            for _ in range(max_new_tokens):
                nxt = self(ids).logits[:, -1].argmax(-1, keepdim=True)
                ids = torch.cat([ids, nxt], dim=1)
            return ids
        out = self(ids, use_cache=True)
        for _ in range(max_new_tokens):
            nxt = out.logits[:, -1].argmax(-1, keepdim=True)
            ids = torch.cat([ids, nxt], dim=1)
            out = self(nxt, cache=out.cache, use_cache=True)
        return ids

    def clone(self) -> "HeteroLlamaForCausalLM":
        """A deep copy (independent weights)."""
        return copy.deepcopy(self)


def parent_block_config(config: Any) -> BlockConfig:
    """The :class:`BlockConfig` of every layer of a plain Llama ``config``."""
    n_kv = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    return BlockConfig(AttentionConfig("gqa", n_kv), FFNConfig("swiglu", config.intermediate_size))


def from_hf_llama(hf_model: Any, block_configs: Iterable[BlockConfig] | None = None) -> HeteroLlamaForCausalLM:
    """A :class:`HeteroLlamaForCausalLM` with the weights of a ``transformers`` Llama.

    Args:
        hf_model: a ``LlamaForCausalLM`` (any checkpoint with Llama's architecture: ``model_type``
            ``"llama"``, no biases, SiLU).
        block_configs: ignored unless given; then it must equal the parent's configuration
            for every layer (variants are made afterwards with :mod:`llm_backends.compression.variants`).

    Returns:
        The model in the dtype of ``hf_model``'s weights, in eval mode, on CPU/the same device.

    Raises:
        ValueError: not a Llama model, or weights missing.
    """
    config = copy.deepcopy(hf_model.config)
    if getattr(config, "model_type", None) != "llama":
        raise ValueError(f"expected a Llama model (model_type 'llama'), got {getattr(config, 'model_type', None)!r}")
    blocks = [parent_block_config(config)] * config.num_hidden_layers
    if block_configs is not None and list(block_configs) != blocks:
        raise ValueError("from_hf_llama builds the parent architecture; derive variants afterwards")
    p = next(hf_model.parameters())
    model = HeteroLlamaForCausalLM(config, blocks).to(dtype=p.dtype, device=p.device)
    state = {k: v for k, v in hf_model.state_dict().items() if "rotary_emb" not in k}
    if model.tied:
        state.pop("lm_head.weight", None)
    own = {k for k in model.state_dict() if "rotary_emb" not in k and not (model.tied and k == "lm_head.weight")}
    missing = own - set(state)
    if missing:
        raise ValueError(f"the Llama checkpoint lacks {sorted(missing)[:5]}")
    model.load_state_dict(state, strict=False)
    return model.eval()
