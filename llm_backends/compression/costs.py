"""Measured costs of every sub-block variant, for Puzzle's search (Bercovich et al., 2024, §4.2).

Puzzle's MIP needs, for every (layer, sub-block) option, what it costs on the
target hardware.  A variant's cost does not depend on its layer (same shapes), so
each distinct :class:`AttentionConfig` / :class:`FFNConfig` is measured once:

* ``decode_ms`` — latency of one new token at batch 1 with a KV cache of
  ``context`` positions;
* ``prefill_ms`` — latency of a ``prompt_tokens``-token prompt at batch 1, no cache;
* ``param_bytes`` — its parameters (its RMSNorm included) in the model's dtype;
* ``kv_bytes_per_token`` — KV-cache bytes one token adds: ``2·n_kv·head_dim·itemsize``
  for GQA, 0 for linear / no-op.

Latencies are measured *in context*: a :class:`HeteroLlamaForCausalLM` whose
``stack_layers`` layers all have that variant beside the parent's other sub-block
(an attention variant with the parent FFN, an FFN variant with the parent
attention), minus the same stack with the variant replaced by a no-op, divided by
``stack_layers``.  The fixed ``overhead`` (embedding lookup, per-layer loop, final
norm, ``lm_head``) is the parent stack minus its per-layer costs, so a model's
predicted latency is ``overhead + Σ_layers (attention cost + FFN cost)``
(:meth:`CostTable.predict`), exact for the parent stack by construction.
Each latency is the median of ``rounds × repeats`` timed calls (each round
starts with ``warmup`` untimed ones), with a fixed thread count, under
``torch.inference_mode``; the stacks are timed call by call round-robin, so that
load from other processes hits all of them alike (on this shared VM the parent's
decode time switched between ~60 and ~92 ms for minutes at a time with the load of
other jobs; a minimum over rounds then compared models measured in different phases).  Per-variant latencies are
clamped at 0 (a variant cannot be faster than nothing; tiny differences can come
out negative from noise).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import torch

from llm_backends.compression.blocks import AttentionConfig, BlockConfig, FFNConfig
from llm_backends.compression.library import attention_name as attention_key
from llm_backends.compression.library import ffn_name as ffn_key
from llm_backends.compression.library import variant_config
from llm_backends.compression.model import HeteroCache, HeteroDecoderLayer, HeteroLlamaForCausalLM

__all__ = [
    "BUDGET_NAMES",
    "CostTable",
    "attention_key",
    "ffn_key",
    "default_variants",
    "measure_costs",
    "measure_model_latency",
]

#: The cost names of a :class:`CostTable` (and the budget names the MIP understands).
BUDGET_NAMES = ("decode_ms", "prefill_ms", "param_bytes", "kv_bytes_per_token")
_LATENCIES = ("decode_ms", "prefill_ms")


@dataclass
class CostTable:
    """Per-variant costs of one model family on one machine.

    Attributes:
        attention: ``{attention key: {cost name: value}}`` (keys from :func:`attention_key`;
            cost names :data:`BUDGET_NAMES`; ms, ms, bytes, bytes per token).
        ffn: ``{FFN key: {cost name: value}}`` (keys from :func:`ffn_key`).
        overhead: ``{cost name: value}`` that every architecture pays (embeddings, final
            norm, ``lm_head``, the layer loop); KV bytes 0.
        settings: how it was measured (threads, context, prompt_tokens, dtype, torch,
            repeats, rounds, warmup, stack_layers, statistic, date, hidden/heads).
    """

    attention: dict[str, dict[str, float]]
    ffn: dict[str, dict[str, float]]
    overhead: dict[str, float]
    settings: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------ lookup
    def attention_cost(self, cfg: AttentionConfig) -> dict[str, float]:
        """Costs of one attention variant.

        Raises:
            ValueError: the variant was not measured (the message lists those that were).
        """
        key = attention_key(cfg)
        if key not in self.attention:
            raise ValueError(f"no cost measured for attention variant {key!r}; the table has {sorted(self.attention)}")
        return dict(self.attention[key])

    def ffn_cost(self, cfg: FFNConfig) -> dict[str, float]:
        """Costs of one FFN variant (ValueError if it was not measured)."""
        key = ffn_key(cfg)
        if key not in self.ffn:
            raise ValueError(f"no cost measured for FFN variant {key!r}; the table has {sorted(self.ffn)}")
        return dict(self.ffn[key])

    def option_costs(self, options: Sequence[AttentionConfig | FFNConfig]) -> dict[str, list[float]]:
        """Costs of one MIP group's options: ``{cost name: [value per option]}``
        (a row of the ``costs`` argument of :func:`llm_backends.compression.mip.solve_mip`)."""
        rows: dict[str, list[float]] = {b: [] for b in BUDGET_NAMES}
        for opt in options:
            c = self.attention_cost(opt) if isinstance(opt, AttentionConfig) else self.ffn_cost(opt)
            for b in BUDGET_NAMES:
                rows[b].append(float(c[b]))
        return rows

    def group_costs(self, groups: Sequence[Sequence[AttentionConfig | FFNConfig]]) -> dict[str, list[list[float]]]:
        """The ``costs`` argument of :func:`~llm_backends.compression.mip.solve_mip` for ``groups``
        (one sequence of options per (layer, sub-block) slot): ``{cost name: [[value per option] per group]}``;
        pass ``overhead=table.overhead`` beside it.  ValueError for an unmeasured variant."""
        out: dict[str, list[list[float]]] = {b: [] for b in BUDGET_NAMES}
        for opts in groups:
            rows = self.option_costs(opts)
            for b in BUDGET_NAMES:
                out[b].append(rows[b])
        return out

    def predict(self, block_configs: Iterable[BlockConfig]) -> dict[str, float]:
        """Predicted whole-model costs: ``overhead + Σ_layers (attention + FFN)``.

        Args:
            block_configs: one :class:`BlockConfig` per layer (e.g. ``model.block_configs``).

        Returns:
            ``{cost name: value}`` for every name in :data:`BUDGET_NAMES`
            (``kv_bytes_per_token`` summed over layers, i.e. per token of context).

        Raises:
            ValueError: a variant the table lacks.
        """
        total = {b: float(self.overhead.get(b, 0.0)) for b in BUDGET_NAMES}
        for block in block_configs:
            a, f = self.attention_cost(block.attention), self.ffn_cost(block.ffn)
            for b in BUDGET_NAMES:
                total[b] += a[b] + f[b]
        return total

    # ------------------------------------------------------------ (de)serialise
    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (``{"attention", "ffn", "overhead", "settings"}``)."""
        return {
            "attention": {k: dict(v) for k, v in self.attention.items()},
            "ffn": {k: dict(v) for k, v in self.ffn.items()},
            "overhead": dict(self.overhead),
            "settings": dict(self.settings),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CostTable":
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: a missing section, an unparsable variant key, or a missing /
                non-finite / negative cost.
        """
        if not isinstance(d, Mapping):
            raise ValueError(f"a cost table must be a JSON object, got {type(d).__name__}")
        for sec in ("attention", "ffn", "overhead"):
            if not isinstance(d.get(sec), Mapping):
                raise ValueError(f"cost table lacks the {sec!r} section")

        def costs(where: str, c: Any) -> dict[str, float]:
            if not isinstance(c, Mapping):
                raise ValueError(f"{where} must be an object of costs")
            out = {}
            for b in BUDGET_NAMES:
                v = c.get(b)
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                    raise ValueError(f"{where}[{b!r}] must be a finite number >= 0, got {v!r}")
                out[b] = float(v)
            return out

        att = {}
        for k, c in d["attention"].items():
            variant_config("attention", k)
            att[k] = costs(f"attention[{k!r}]", c)
        ffn = {}
        for k, c in d["ffn"].items():
            variant_config("ffn", k)
            ffn[k] = costs(f"ffn[{k!r}]", c)
        return cls(att, ffn, costs("overhead", d["overhead"]), dict(d.get("settings") or {}))

    def save(self, path: str | Path) -> Path:
        """Write the table as JSON (parent folders created); returns the path."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return p

    @classmethod
    def load(cls, path: str | Path) -> "CostTable":
        """Read a table written by :meth:`save`.

        Raises:
            FileNotFoundError: no such file.  ValueError: not JSON, or not a cost table.
        """
        p = Path(path)
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{p} is not valid JSON: {e}") from None
        return cls.from_dict(d)


# ------------------------------------------------------------------ structure
def default_variants(model: HeteroLlamaForCausalLM) -> tuple[list[AttentionConfig], list[FFNConfig]]:
    """Puzzle's block library for ``model`` (issue 7 / paper §3) plus every variant the model has.

    Attention: GQA with the config's KV heads, 1 KV head, linear, no-op.  FFN: SwiGLU
    of the config's width × {1, 3/4, 1/2, 1/4}, linear, no-op.
    """
    cfg = model.config
    n_kv = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    att = [AttentionConfig("gqa", n_kv), AttentionConfig("gqa", 1), AttentionConfig("linear"), AttentionConfig("no_op")]
    w = cfg.intermediate_size
    ffn = [FFNConfig("swiglu", max(1, int(w * r))) for r in (1, 0.75, 0.5, 0.25)]
    ffn += [FFNConfig("linear"), FFNConfig("no_op")]
    for b in model.block_configs:
        att.append(b.attention)
        ffn.append(FFNConfig(b.ffn.kind, b.ffn.intermediate_size))
    att_u = list({attention_key(a): a for a in att}.values())
    ffn_u = list({ffn_key(f): f for f in ffn}.values())
    return att_u, ffn_u


def _dtype(model: HeteroLlamaForCausalLM) -> torch.dtype:
    return next(model.parameters()).dtype


def _layer_dims(model: HeteroLlamaForCausalLM) -> tuple[int, int, int, float]:
    cfg = model.config
    hidden, n_heads = cfg.hidden_size, cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or hidden // n_heads
    return hidden, n_heads, head_dim, cfg.rms_norm_eps


def _sub_block_param_count(model: HeteroLlamaForCausalLM, block: BlockConfig) -> int:
    hidden, n_heads, head_dim, eps = _layer_dims(model)
    with torch.device("meta"):
        layer = HeteroDecoderLayer(block, hidden, n_heads, head_dim, eps)
    return sum(p.numel() for p in layer.parameters())


def _structural(model: HeteroLlamaForCausalLM, att: Sequence[AttentionConfig], ffn: Sequence[FFNConfig]):
    itemsize = torch.empty((), dtype=_dtype(model)).element_size()
    _, _, head_dim, _ = _layer_dims(model)
    noop_a, noop_f = AttentionConfig("no_op"), FFNConfig("no_op")
    a_cost = {}
    for a in att:
        n = _sub_block_param_count(model, BlockConfig(a, noop_f))
        kv = 2 * a.n_kv_heads * head_dim * itemsize if a.kind == "gqa" else 0
        a_cost[attention_key(a)] = {"param_bytes": float(n * itemsize), "kv_bytes_per_token": float(kv)}
    f_cost = {}
    for f in ffn:
        n = _sub_block_param_count(model, BlockConfig(noop_a, f))
        f_cost[ffn_key(f)] = {"param_bytes": float(n * itemsize), "kv_bytes_per_token": 0.0}
    distinct = {id(p): p for p in model.parameters()}
    layer_ids = {id(p) for p in model.model.layers.parameters()}
    overhead_params = sum(p.numel() for i, p in distinct.items() if i not in layer_ids)
    return a_cost, f_cost, {"param_bytes": float(overhead_params * itemsize), "kv_bytes_per_token": 0.0}, itemsize


# ------------------------------------------------------------------ timing
@contextlib.contextmanager
def _threads(n: int | None, flush_denormal: bool = True):
    old = torch.get_num_threads()
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"threads must be an integer >= 1, got {n!r}")
        torch.set_num_threads(n)
    flushed = bool(flush_denormal) and torch.set_flush_denormal(True)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(old)
        if flushed:
            torch.set_flush_denormal(False)


def _random_cache(model: HeteroLlamaForCausalLM, context: int, dtype: torch.dtype, device: torch.device) -> HeteroCache:
    _, _, head_dim, _ = _layer_dims(model)
    cache = HeteroCache(len(model.layers))
    g = torch.Generator(device="cpu").manual_seed(0)
    for i, b in enumerate(model.block_configs):
        if b.attention.kind == "gqa":
            shape = (1, b.attention.n_kv_heads, context, head_dim)
            k = torch.randn(shape, generator=g).to(dtype=dtype, device=device)
            v = torch.randn(shape, generator=g).to(dtype=dtype, device=device)
            cache.layers[i] = (k, v)
    cache.length = context
    return cache


class _Timer:
    """Decode and prefill calls of one model, ready to be timed."""

    def __init__(self, model: HeteroLlamaForCausalLM, context: int, prompt_tokens: int) -> None:
        p = next(model.parameters())
        self.model, self.context = model, context
        vocab = model.config.vocab_size
        self.cache = _random_cache(model, context, p.dtype, p.device)
        self.token = torch.tensor([[min(1, vocab - 1)]], device=p.device)
        g = torch.Generator(device="cpu").manual_seed(1)
        self.prompt = torch.randint(0, vocab, (1, prompt_tokens), generator=g).to(p.device)

    def decode(self) -> float:
        t0 = time.perf_counter()
        self.model(self.token, cache=self.cache, use_cache=True)
        dt = time.perf_counter() - t0
        self.cache.crop(self.context)
        return dt * 1000.0

    def prefill(self) -> float:
        t0 = time.perf_counter()
        self.model(self.prompt)
        return (time.perf_counter() - t0) * 1000.0


def _check_timing_args(context: int, prompt_tokens: int, repeats: int, prefill_repeats: int, warmup: int, rounds: int):
    for name, v, lo in (
        ("context", context, 1),
        ("prompt_tokens", prompt_tokens, 1),
        ("repeats", repeats, 1),
        ("prefill_repeats", prefill_repeats, 1),
        ("warmup", warmup, 0),
        ("rounds", rounds, 1),
    ):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")


def _time_models(
    models: Mapping[str, HeteroLlamaForCausalLM],
    *,
    context: int,
    prompt_tokens: int,
    repeats: int,
    prefill_repeats: int,
    warmup: int,
    rounds: int,
    prefill: bool,
    progress: bool,
) -> dict[str, dict[str, float]]:
    """``{name: {"decode_ms", "prefill_ms"}}``: median of all timed calls, interleaved call by call."""
    timers = {}
    for name, m in models.items():
        max_pos = getattr(m.config, "max_position_embeddings", None)
        if max_pos is not None and max(context + 1, prompt_tokens) > max_pos:
            raise ValueError(
                f"context {context} / prompt_tokens {prompt_tokens} exceed the model's {max_pos} positions"
            )
        timers[name] = _Timer(m, context, prompt_tokens)
    samples: dict[str, dict[str, list[float]]] = {n: {"decode_ms": [], "prefill_ms": []} for n in models}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=rounds, desc="timing rounds", unit="round")
    with torch.inference_mode():
        for _ in range(rounds):
            # warm-up, then single calls round-robin over the models, so that every model
            # sees the same machine load and none keeps its weights hot in the caches
            for t in timers.values():
                for _ in range(warmup):
                    t.decode()
            for _ in range(repeats):
                for name, t in timers.items():
                    samples[name]["decode_ms"].append(t.decode())
            if prefill:
                for t in timers.values():
                    for _ in range(min(warmup, 1)):
                        t.prefill()
                for _ in range(prefill_repeats):
                    for name, t in timers.items():
                        samples[name]["prefill_ms"].append(t.prefill())
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return {
        n: {k: statistics.median(v) if v else float("nan") for k, v in per.items()} for n, per in samples.items()
    }


def measure_model_latency(
    model: HeteroLlamaForCausalLM,
    *,
    context: int = 512,
    prompt_tokens: int = 700,
    threads: int | None = None,
    repeats: int = 20,
    prefill_repeats: int = 3,
    warmup: int = 3,
    rounds: int = 3,
    prefill: bool = True,
    flush_denormal: bool = True,
) -> dict[str, float]:
    """Measured whole-model latency, the same way :func:`measure_costs` times its stacks.

    Args:
        model: any :class:`HeteroLlamaForCausalLM` (its own weights and dtype/device).
        context: KV-cache positions before the decoded token (the cache is random, which
            does not change the time).
        prompt_tokens: prefill length (random token ids; no cache).
        threads: torch intra-op threads during the measurement (``None``: the current
            setting); restored afterwards.
        repeats / prefill_repeats: timed calls per round; warmup: untimed calls first.
        rounds: the result is the median over all rounds' timed calls.
        prefill: also time prefill (else ``prefill_ms`` is NaN).
        flush_denormal: time with ``torch.set_flush_denormal(True)`` (turned off again
            afterwards).  Subnormal floats (e.g. softmax/SiLU underflow on the random
            KV cache) are slow on x86 CPUs; flushing keeps the timing independent of the
            values.  (A 60-vs-92 ms swing first blamed on them was machine load: see the
            module docstring.)

    Returns:
        ``{"decode_ms": ms per token at batch 1, "prefill_ms": ms per prompt at batch 1}``.

    Raises:
        ValueError: non-positive counts, or a context/prompt longer than the model's positions.
    """
    _check_timing_args(context, prompt_tokens, repeats, prefill_repeats, warmup, rounds)
    with _threads(threads, flush_denormal):
        out = _time_models(
            {"model": model},
            context=context,
            prompt_tokens=prompt_tokens,
            repeats=repeats,
            prefill_repeats=prefill_repeats,
            warmup=warmup,
            rounds=rounds,
            prefill=prefill,
            progress=False,
        )
    return out["model"]


def _stack(model: HeteroLlamaForCausalLM, block: BlockConfig, layers: int) -> HeteroLlamaForCausalLM:
    """A model of ``layers`` copies of ``block`` (random weights) sharing ``model``'s embeddings, norm, head."""
    p = next(model.parameters())
    with torch.random.fork_rng():
        torch.manual_seed(0)
        m = HeteroLlamaForCausalLM(model.config, [block] * layers)
    m.model.embed_tokens = model.model.embed_tokens
    m.model.norm = model.model.norm
    m.model.rotary_emb = model.model.rotary_emb
    m.lm_head = model.lm_head
    m.model.layers.to(dtype=p.dtype, device=p.device)
    return m.eval()


def measure_costs(
    model: HeteroLlamaForCausalLM,
    attention_variants: Sequence[AttentionConfig] | None = None,
    ffn_variants: Sequence[FFNConfig] | None = None,
    *,
    context: int = 512,
    prompt_tokens: int = 700,
    threads: int | None = None,
    repeats: int = 20,
    prefill_repeats: int = 3,
    warmup: int = 3,
    rounds: int = 3,
    stack_layers: int | None = None,
    prefill: bool = True,
    progress: bool = False,
    reference_models: Mapping[str, HeteroLlamaForCausalLM] | None = None,
    flush_denormal: bool = True,
    in_parent_context: bool = True,
) -> CostTable:
    """Measure a :class:`CostTable` for ``model``'s family on this machine (Puzzle, §4.2 costs).

    Args:
        model: a :class:`HeteroLlamaForCausalLM`; its config, dtype, device, embeddings and
            ``lm_head`` are used (its layers are not timed themselves).
        attention_variants / ffn_variants: the variants to measure (default
            :func:`default_variants`); no-op is always added.
        context, prompt_tokens, threads, repeats, prefill_repeats, warmup, rounds, prefill,
        flush_denormal: as :func:`measure_model_latency`.
        stack_layers: layers of each timing stack (default: the model's layer count, so
            cache and memory traffic resemble the real model's).
        progress: show a tqdm bar.
        in_parent_context: time each attention variant in layers whose FFN is the parent's
            (config ``intermediate_size``) and each FFN variant beside the parent's attention
            (config KV heads), subtracting the same stack with that sub-block no-op; the
            overhead is then the parent stack minus its per-layer costs.  This keeps the
            caches and memory traffic of the real model (prefill underpredicted the parent
            by ~20% when every variant was timed beside a no-op).  ``False``: time each
            variant beside a no-op and take the all-no-op stack as the overhead.
        reference_models: whole models to time in the same interleaved rounds as the
            stacks (as :func:`measure_model_latency` would), so that predicted and measured
            latency see the same machine load; their results go to
            ``settings["reference_latency"]`` ``{name: {"decode_ms", "prefill_ms"}}``.

    Returns:
        :class:`CostTable`; latencies in ms, sizes in bytes of the model's dtype.  With
        ``prefill=False`` every ``prefill_ms`` is 0 and ``settings["prefill"]`` is False.

    Raises:
        ValueError: bad counts, an invalid variant (e.g. KV heads not dividing the heads),
            a context/prompt longer than the model's positions.
    """
    _check_timing_args(context, prompt_tokens, repeats, prefill_repeats, warmup, rounds)
    if attention_variants is None or ffn_variants is None:
        da, df = default_variants(model)
        attention_variants = da if attention_variants is None else attention_variants
        ffn_variants = df if ffn_variants is None else ffn_variants
    att = list({attention_key(a): a for a in [*attention_variants, AttentionConfig("no_op")]}.values())
    ffn = list(
        {ffn_key(f): FFNConfig(f.kind, f.intermediate_size) for f in [*ffn_variants, FFNConfig("no_op")]}.values()
    )
    layers = len(model.layers) if stack_layers is None else stack_layers
    if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
        raise ValueError(f"stack_layers must be an integer >= 1, got {stack_layers!r}")
    n_heads = model.config.num_attention_heads
    for a in att:
        if a.kind == "gqa" and n_heads % a.n_kv_heads:
            raise ValueError(f"attention variant gqa{a.n_kv_heads}: KV heads must divide the {n_heads} query heads")

    noop_a, noop_f = AttentionConfig("no_op"), FFNConfig("no_op")
    if in_parent_context:
        partner = BlockConfig(
            AttentionConfig("gqa", getattr(model.config, "num_key_value_heads", None) or n_heads),
            FFNConfig("swiglu", model.config.intermediate_size),
        )
    else:
        partner = BlockConfig(noop_a, noop_f)
    pa, pf = attention_key(partner.attention), ffn_key(partner.ffn)
    if pa not in {attention_key(a) for a in att}:
        att.append(partner.attention)
    if pf not in {ffn_key(f) for f in ffn}:
        ffn.append(partner.ffn)
    a_cost, f_cost, overhead, itemsize = _structural(model, att, ffn)
    # one stack of the partner block; every variant stack borrows the partner's other sub-block
    partner_stack = _stack(model, partner, layers)
    stacks: dict[str, HeteroLlamaForCausalLM] = {"partner": partner_stack}
    variants = [("a:" + attention_key(a), BlockConfig(a, noop_f), "ffn") for a in att if attention_key(a) != pa]
    variants += [("f:" + ffn_key(f), BlockConfig(noop_a, f), "attention") for f in ffn if ffn_key(f) != pf]
    for name, block, borrowed in variants:
        m = _stack(model, block, layers)
        for mine, theirs in zip(m.layers, partner_stack.layers):
            norm, sub = theirs.sub_block(borrowed)
            if sub is not None:
                mine.put_sub_block(borrowed, norm, sub)
        stacks[name] = m
    for name, m in (reference_models or {}).items():
        stacks["r:" + str(name)] = m
    with _threads(threads, flush_denormal) as n_threads:
        timed = _time_models(
            stacks,
            context=context,
            prompt_tokens=prompt_tokens,
            repeats=repeats,
            prefill_repeats=prefill_repeats,
            warmup=warmup,
            rounds=rounds,
            prefill=prefill,
            progress=progress,
        )
    timed["a:" + pa] = timed["f:" + pf] = timed["partner"]
    keys = _LATENCIES if prefill else ("decode_ms",)
    raw: dict[str, dict[str, float]] = {}
    for prefix, table, noop_name in (("a:", a_cost, "a:noop"), ("f:", f_cost, "f:noop")):
        for key in table:
            t, t0 = timed[prefix + key], timed[noop_name]
            per_layer = {k: (t[k] - t0[k]) / layers if k in keys else 0.0 for k in _LATENCIES}
            raw[prefix + key] = per_layer
            table[key].update({k: max(0.0, v) for k, v in per_layer.items()})
    for table in (a_cost, f_cost):
        table["noop"].update({"decode_ms": 0.0, "prefill_ms": 0.0})
    for k in _LATENCIES:
        if k in keys:
            inner = layers * (a_cost[pa][k] + f_cost[pf][k])
            overhead[k] = max(0.0, timed["partner"][k] - inner)
        else:
            overhead[k] = 0.0
    cfg = model.config
    settings = {
        "threads": n_threads,
        "context": context,
        "prompt_tokens": prompt_tokens,
        "batch": 1,
        "dtype": str(_dtype(model)).replace("torch.", ""),
        "device": str(next(model.parameters()).device),
        "torch": torch.__version__,
        "repeats": repeats,
        "prefill_repeats": prefill_repeats,
        "warmup": warmup,
        "rounds": rounds,
        "stack_layers": layers,
        "prefill": prefill,
        "flush_denormal": bool(flush_denormal),
        "in_parent_context": bool(in_parent_context),
        "partner_block": partner.describe(),
        "statistic": "median of all rounds x repeats calls, round-robin over stacks; per-layer = (stack with the variant - stack with "
        "that sub-block no-op) / stack_layers, the other sub-block being partner_block",
        "raw_per_layer_ms": raw,
        "hidden_size": cfg.hidden_size,
        "num_attention_heads": cfg.num_attention_heads,
        "num_hidden_layers": len(model.layers),
        "reference_latency": {n[2:]: t for n, t in timed.items() if n.startswith("r:")},
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    return CostTable(a_cost, f_cost, overhead, settings)
