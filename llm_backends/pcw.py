"""Parallel Context Windows (PCW) for Hugging Face causal language models.

Ratner et al., ACL 2023, "Parallel Context Windows for Large Language Models",
Sec. 2: a long context (here: many few-shot examples) is split into B windows.
Each window is encoded on its own, with position ids ``0..n_i-1``, so windows
never attend to each other and all re-use the positions the model was trained
on. One BOS token is shared: every window is encoded after the same BOS, and the
BOS keys/values are kept once (the other windows' BOS entries are dropped, they
are identical). The task tokens then attend to *every* window, and take position
ids from ``W = max_i n_i`` on (``n_i`` counts the BOS), as if each window had
been the only one right before them.

Mechanics (transformers 5.x, checked against 5.24):

* The windows' key/value tensors are concatenated along the sequence axis into a
  cache of ``L = 1 + Σ_i (n_i - 1)`` tokens (BOS once). A :class:`PCWContext` holds
  them and is re-used for many questions without re-encoding: the concatenation is
  written once into a buffer with spare room, and each question's cache
  (:func:`context_cache`, a ``DynamicCache`` whose layers write in place after slot
  L) starts again at L — ``DynamicLayer`` would instead copy the whole context on
  every forward pass.
* The task runs with an explicit 2D attention mask of ones over
  ``[all windows | task]`` (length ``L + T``) and **explicit** position ids
  ``W..W+T-1``. Left out, position ids would be derived from the cache length
  ``L`` (the model's forward) or from the mask's cumulative sum (``generate``);
  both are wrong for PCW. With a cache of length ``L``, transformers' causal mask
  lets task token ``t`` see all ``L`` window entries and task tokens ``≤ t``.
* Restricted-label scoring evaluates every label in one extra forward pass: the
  labels' tokenisations form a token trie whose nodes are laid out as one
  sequence (tree attention); an explicit 4D mask lets each node see all windows,
  the task and its own ancestors only. The 4D mask is **additive float** (0 or
  the dtype's minimum): transformers passes a 4D mask through unchanged, and its
  eager attention *adds* the mask to the scores, so a boolean 4D mask would be
  silently wrong there (True → +1, False → +0); SDPA takes float masks as well.
* Any custom mask makes transformers' SDPA path skip ``enable_gqa`` on CUDA
  (``use_gqa_in_sdpa`` requires ``attention_mask is None``), so grouped-query
  models (SmolLM2: 9 query / 3 KV heads) repeat keys/values per query head while
  a PCW task runs (one-token decoding steps pack the query heads instead); on the
  CPU the same happens. This is a speed cost, not an error.

Only models whose layers all use full attention are supported (no sliding window).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from llm_backends.errors import BackendError

__all__ = [
    "PCWContext",
    "LabelTrie",
    "LabelScores",
    "encode_windows",
    "context_cache",
    "task_forward",
    "greedy_generate",
    "label_logprobs",
    "classify",
    "classify_batch",
    "label_logprobs_batch",
    "ensemble_classify",
    "ensemble_combine",
    "single_pass_logits",
]


# --------------------------------------------------------------------------- context
@dataclass
class PCWContext:
    """Encoded parallel context windows, re-usable across many task inputs.

    Attributes:
        windows: token ids of each window, *without* the shared BOS (``list[list[int]]``).
        bos_id: the shared first token, or ``None`` when windows have none.
        bos_kv: per layer ``(key, value)`` of the shared BOS, each ``[1, kv_heads, 1, head_dim]``
            (empty list when ``bos_id`` is None).
        window_kv: per window, per layer ``(key, value)``, each ``[1, kv_heads, n_i - 1, head_dim]``
            (``n_i`` counting the BOS), in the model's dtype and device.
        lengths: ``n_i`` of each window, BOS included (the positions it used: ``0..n_i-1``).
        encode_seconds: wall-clock seconds spent encoding the windows.
        calibration: cache of content-free label probabilities, filled by :func:`classify`.
    """

    windows: list[list[int]]
    bos_id: int | None
    bos_kv: list[tuple[Any, Any]]
    window_kv: list[list[tuple[Any, Any]]]
    lengths: list[int]
    encode_seconds: float = 0.0
    calibration: dict[tuple, Any] = field(default_factory=dict, repr=False)
    _subsets: dict[tuple[int, ...], "PCWContext"] = field(default_factory=dict, repr=False)

    @property
    def num_windows(self) -> int:
        """B, the number of windows."""
        return len(self.windows)

    @property
    def max_window_length(self) -> int:
        """W = max n_i: the first task position id."""
        return max(self.lengths)

    @property
    def cached_tokens(self) -> int:
        """L = tokens in the concatenated cache (BOS once plus every window's own tokens)."""
        return (1 if self.bos_id is not None else 0) + sum(len(w) for w in self.windows)

    def subset(self, indices: Sequence[int]) -> "PCWContext":
        """A context made of some of these windows (tensors shared, nothing re-encoded).

        The same indices give the same object back, so its calibration cache is kept.

        Raises:
            ValueError: no index, or an index out of range.
        """
        idx = list(indices)
        if not idx or any(not 0 <= i < self.num_windows for i in idx):
            raise ValueError(f"window indices must be a non-empty subset of 0..{self.num_windows - 1}, got {idx}")
        hit = self._subsets.get(tuple(idx))
        if hit is not None:
            return hit
        hit = self._subsets[tuple(idx)] = PCWContext(
            windows=[self.windows[i] for i in idx],
            bos_id=self.bos_id,
            bos_kv=self.bos_kv,
            window_kv=[self.window_kv[i] for i in idx],
            lengths=[self.lengths[i] for i in idx],
        )
        return hit

    def release_buffers(self) -> None:
        """Free the task-cache buffers (a copy of the windows' keys/values, rebuilt on the next task)."""
        self.__dict__.pop("_buffers", None)
        for sub in self._subsets.values():
            sub.__dict__.pop("_buffers", None)

    def __repr__(self) -> str:
        return f"PCWContext(B={self.num_windows}, lengths={self.lengths}, cached_tokens={self.cached_tokens})"


def _check_full_attention(model: Any) -> None:
    cfg = model.config.get_text_config(decoder=True) if hasattr(model.config, "get_text_config") else model.config
    types = getattr(cfg, "layer_types", None) or []
    if any(t != "full_attention" for t in types) or getattr(cfg, "sliding_window", None) and getattr(
        cfg, "use_sliding_window", True
    ):
        raise BackendError("Parallel Context Windows need a model whose layers all use full attention (no sliding window)")


@torch.inference_mode()
def encode_windows(model: Any, windows: Sequence[Sequence[int]], *, bos_id: int | None, max_context: int) -> PCWContext:
    """Encode each window on its own (positions ``0..n_i-1``) and keep its keys/values.

    Args:
        model: a transformers causal LM (``model(input_ids=..., position_ids=..., use_cache=True)``).
        windows: token ids of each window, without BOS; each non-empty.
        bos_id: token encoded first in every window and kept once; ``None`` for no shared token.
        max_context: the model's trained context; each window (BOS included) must fit.

    Returns:
        A :class:`PCWContext`.

    Raises:
        BackendError: no window, an empty window, a window longer than ``max_context``,
            or a sliding-window model.

    Runs under ``torch.inference_mode()`` (so do all functions here).
    """
    import time

    _check_full_attention(model)
    if not windows:
        raise BackendError("PCW needs at least one context window")
    device = next(model.parameters()).device
    t0 = time.perf_counter()
    bos_kv: list[tuple[Any, Any]] = []
    window_kv: list[list[tuple[Any, Any]]] = []
    lengths: list[int] = []
    skip = 1 if bos_id is not None else 0
    for i, w in enumerate(windows):
        ids = ([bos_id] if bos_id is not None else []) + list(w)
        if not w:
            raise BackendError(f"PCW window {i} is empty")
        if len(ids) > max_context:
            raise BackendError(
                f"PCW window {i} has {len(ids)} tokens, more than the model's context of {max_context}; use more windows"
            )
        input_ids = torch.tensor([ids], dtype=torch.long, device=device)
        position_ids = torch.arange(len(ids), device=device).unsqueeze(0)
        out = model(input_ids=input_ids, position_ids=position_ids, use_cache=True)
        layers = out.cache.layers
        if bos_id is not None and not bos_kv:
            bos_kv = [(lay.keys[:, :, :1].clone(), lay.values[:, :, :1].clone()) for lay in layers]
        window_kv.append([(lay.keys[:, :, skip:].clone(), lay.values[:, :, skip:].clone()) for lay in layers])
        lengths.append(len(ids))
    return PCWContext(
        windows=[list(w) for w in windows],
        bos_id=bos_id,
        bos_kv=bos_kv,
        window_kv=window_kv,
        lengths=lengths,
        encode_seconds=time.perf_counter() - t0,
    )


def _prefix_buffers(ctx: PCWContext, reserve: int) -> list[list[Any]]:
    """Per layer ``[keys, values]`` buffers ``[1, kv_heads, L + reserve, head_dim]`` holding the context first.

    Built once per context (one copy of the window tensors) and re-used by every task;
    grown when a task needs more than the reserve.
    """
    bufs = ctx.__dict__.get("_buffers")
    if bufs is not None and bufs[0][0].shape[-2] >= ctx.cached_tokens + reserve:
        return bufs
    n_layers = len(ctx.window_kv[0])
    bufs = []
    for layer in range(n_layers):
        pair = []
        for j in (0, 1):
            parts = ([ctx.bos_kv[layer][j]] if ctx.bos_kv else []) + [kv[layer][j] for kv in ctx.window_kv]
            first = parts[0]
            buf = torch.empty(
                (*first.shape[:2], ctx.cached_tokens + reserve, first.shape[-1]), dtype=first.dtype, device=first.device
            )
            torch.cat(parts, dim=-2, out=buf[:, :, : ctx.cached_tokens])
            pair.append(buf)
        bufs.append(pair)
    ctx.__dict__["_buffers"] = bufs
    return bufs


@functools.lru_cache(maxsize=None)
def _prefix_layer_class() -> type:
    from transformers.cache_utils import DynamicLayer

    class PrefixLayer(DynamicLayer):
        """A cache layer over a preallocated buffer whose first L slots hold the windows.

        New keys/values are written in place after the current length and ``keys`` /
        ``values`` are views, so a task never copies the context (``DynamicLayer``
        would concatenate the whole cache on every forward). Each new task starts
        writing at L again, overwriting the previous task's entries: one task at a
        time per context (the backend's lock serialises them).
        """

        def __init__(self, buffers: list[Any], length: int) -> None:
            super().__init__()
            self.buffers = buffers
            self.length = length
            k, v = buffers
            self.device, self.is_initialized = k.device, True
            self.keys, self.values = k[:, :, :length], v[:, :, :length]

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
            t = key_states.shape[-2]
            k, v = self.buffers
            if self.length + t > k.shape[-2]:  # out of reserve: grow (copies once)
                extra = max(t, k.shape[-2] // 4)
                pad = (*k.shape[:2], extra, k.shape[-1])
                self.buffers = [torch.cat([b, b.new_empty(pad)], dim=-2) for b in self.buffers]
                k, v = self.buffers
            k[:, :, self.length : self.length + t] = key_states
            v[:, :, self.length : self.length + t] = value_states
            self.length += t
            self.keys, self.values = k[:, :, : self.length], v[:, :, : self.length]
            return self.keys, self.values

    return PrefixLayer


def context_cache(model: Any, ctx: PCWContext, reserve: int = 512) -> Any:
    """A cache holding ``[BOS | window 1 | ... | window B]`` (L tokens) for one task; ``ctx``'s windows are not modified.

    The cache writes new entries into a buffer kept on ``ctx`` after its first L
    slots (no per-task copy of the context); run one task at a time per context,
    under ``torch.inference_mode()`` (the buffers are inference tensors).
    """
    from transformers import DynamicCache

    bufs = _prefix_buffers(ctx, reserve)
    layer_cls = _prefix_layer_class()
    cache = DynamicCache(config=model.config)
    cache.layers = [layer_cls(pair, ctx.cached_tokens) for pair in bufs]
    return cache


@torch.inference_mode()
def task_forward(model: Any, ctx: PCWContext, task_ids: Sequence[int], cache: Any = None) -> tuple[Any, Any, Any]:
    """Run the task tokens on the windows: explicit 2D mask and position ids ``W..W+T-1``.

    Args:
        model: the causal LM.
        ctx: the encoded windows.
        task_ids: T ≥ 1 task token ids.
        cache: a cache from :func:`context_cache` (built when None); it is extended in place.

    Returns:
        ``(logits [T, vocab] float32, cache of L+T tokens, position_ids [1, T])``.

    Raises:
        BackendError: empty task.
    """
    if not task_ids:
        raise BackendError("empty PCW task")
    device = next(model.parameters()).device
    if cache is None:
        cache = context_cache(model, ctx)
    n_past = cache.get_seq_length()
    t = len(task_ids)
    input_ids = torch.tensor([list(task_ids)], dtype=torch.long, device=device)
    attention_mask = torch.ones(1, n_past + t, dtype=torch.long, device=device)
    position_ids = (ctx.max_window_length + torch.arange(t, device=device)).unsqueeze(0)
    out = model(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, cache=cache, use_cache=True
    )
    return out.logits[0].float(), out.cache, position_ids


@torch.inference_mode()
def greedy_generate(
    model: Any,
    tokenizer: Any,
    ctx: PCWContext,
    task_ids: Sequence[int],
    *,
    max_new_tokens: int,
    eos_ids: set[int],
    stop: Sequence[str] = (),
    max_context: int,
) -> str:
    """Free greedy continuation of the task on the windows (KV-cached decoding).

    Every new token attends to all windows, the task and the tokens before it; its
    position id continues ``W + T, W + T + 1, ...``.

    Returns:
        The generated text, cut before the first ``stop`` string.

    Raises:
        BackendError: empty task, or ``W + T + max_new_tokens`` beyond ``max_context``.
    """
    w, t = ctx.max_window_length, len(task_ids)
    if w + t + max_new_tokens > max_context:
        raise BackendError(
            f"longest window ({w}) + task ({t}) + {max_new_tokens} new tokens exceed the model's context of {max_context}"
        )
    device = next(model.parameters()).device
    logits, cache, pos = task_forward(model, ctx, task_ids)
    next_pos = int(pos[0, -1]) + 1
    out_ids: list[int] = []
    text = ""
    for _ in range(max_new_tokens):
        nxt = int(torch.argmax(logits[-1]))
        if nxt in eos_ids:
            break
        out_ids.append(nxt)
        text = tokenizer.decode(out_ids, skip_special_tokens=True)
        if (stop and any(s in text for s in stop)) or len(out_ids) == max_new_tokens:
            break
        n_past = cache.get_seq_length()
        out = model(
            input_ids=torch.tensor([[nxt]], dtype=torch.long, device=device),
            attention_mask=torch.ones(1, n_past + 1, dtype=torch.long, device=device),
            position_ids=torch.tensor([[next_pos]], dtype=torch.long, device=device),
            cache=cache,
            use_cache=True,
        )
        logits, cache = out.logits[0].float(), out.cache
        next_pos += 1
    if stop:
        cut = min((text.find(s) for s in stop if s in text), default=-1)
        if cut >= 0:
            text = text[:cut]
    return text


# --------------------------------------------------------------------------- labels
class LabelTrie:
    """A token trie over the tokenisations of a closed set of labels.

    Args:
        label_ids: token ids of each label (each non-empty; labels must differ).

    Attributes:
        nodes: ``(parent_node or -1, token, depth)`` for every internal node — a
            proper prefix of some label — in breadth-first order; depth 1 = first token.
        paths: per label, the node index of each of its proper prefixes (``len(ids) - 1`` entries).
        allowed: node index (``-1`` for the root) → the tokens that continue a valid label there.

    Raises:
        BackendError: an empty or repeated tokenisation.
    """

    def __init__(self, label_ids: Sequence[Sequence[int]]) -> None:
        seen: set[tuple[int, ...]] = set()
        for i, ids in enumerate(label_ids):
            if not ids:
                raise BackendError(f"label {i} encodes to no tokens")
            if tuple(ids) in seen:
                raise BackendError(f"labels {i} and an earlier one encode to the same tokens")
            seen.add(tuple(ids))
        self.label_ids = [list(ids) for ids in label_ids]
        index: dict[tuple[int, ...], int] = {}
        self.nodes: list[tuple[int, int, int]] = []
        depth = 1
        while True:
            new = False
            for ids in self.label_ids:
                if len(ids) > depth:  # the prefix of length `depth` has a child: an internal node
                    prefix = tuple(ids[:depth])
                    if prefix not in index:
                        parent = index[prefix[:-1]] if depth > 1 else -1
                        index[prefix] = len(self.nodes)
                        self.nodes.append((parent, prefix[-1], depth))
                        new = True
            if not new:
                break
            depth += 1
        self.paths = [[index[tuple(ids[:d])] for d in range(1, len(ids))] for ids in self.label_ids]
        self.allowed: dict[int, set[int]] = {}
        for ids, path in zip(self.label_ids, self.paths):
            for d, tok in enumerate(ids):
                self.allowed.setdefault(path[d - 1] if d else -1, set()).add(tok)

    @property
    def max_depth(self) -> int:
        """Longest label, in tokens."""
        return max(len(ids) for ids in self.label_ids)

    def attention_mask(self, n_prefix: int, dtype: Any, device: Any) -> Any:
        """Additive 4D mask ``[1, 1, N, n_prefix + N]`` for the trie nodes after ``n_prefix`` visible tokens.

        0 where a node may attend (every prefix token, its ancestors, itself), the
        dtype's minimum elsewhere — a float mask, correct for eager and SDPA attention.
        """
        n = len(self.nodes)
        allowed = torch.zeros(n, n, dtype=torch.bool)
        for j, (parent, _tok, _d) in enumerate(self.nodes):
            allowed[j, j] = True
            if parent >= 0:
                allowed[j] |= allowed[parent]
        full = torch.cat([torch.ones(n, n_prefix, dtype=torch.bool), allowed], dim=1)
        mask = torch.zeros(full.shape, dtype=dtype)
        mask.masked_fill_(~full, torch.finfo(dtype).min)
        return mask.to(device)[None, None]


@dataclass
class LabelScores:
    """Restricted-label classification result.

    Attributes:
        labels: the label texts, in the order given.
        logprobs: ``log p(label | windows, task)`` under the full vocabulary, summed over
            the label's tokens (natural log, ≤ 0), one per label.
        probs: probabilities over the labels (sum 1): softmax of ``logprobs``, or the
            calibrated distribution when ``calibrated``.
        calibrated: contextual calibration was applied.
        num_windows: B.
        content_free_probs: the content-free label distribution used for calibration, else None.
    """

    labels: list[str]
    logprobs: list[float]
    probs: list[float]
    calibrated: bool = False
    num_windows: int = 1
    content_free_probs: list[float] | None = None

    @property
    def best(self) -> str:
        """The most probable label."""
        return self.labels[max(range(len(self.labels)), key=lambda i: self.probs[i])]

    def as_dict(self) -> dict[str, float]:
        """label → probability."""
        return dict(zip(self.labels, self.probs))


def _kept_first(first: Any, firsts: list[int], top_first: int, first_bias: dict[int, float] | None) -> set[int]:
    """The ``top_first`` valid first tokens by log-probability, plus (with a bias) the ``top_first`` by biased score."""
    k = max(1, top_first)
    kept = set(sorted(firsts, key=lambda t: float(first[t]), reverse=True)[:k])
    if first_bias:
        kept |= set(sorted(firsts, key=lambda t: float(first[t]) + first_bias.get(t, 0.0), reverse=True)[:k])
    return kept


@torch.inference_mode()
def label_logprobs(
    model: Any,
    ctx: PCWContext,
    task_ids: Sequence[int],
    trie: LabelTrie,
    *,
    top_first: int | None = None,
    first_bias: dict[int, float] | None = None,
) -> Any:
    """``log p(label | windows, task)`` of the labels of ``trie``, in two forward passes.

    Pass 1 runs the task (:func:`task_forward`); its last logits give every label's
    first token. Pass 2 runs the trie's internal nodes as one sequence with the
    additive 4D mask of :meth:`LabelTrie.attention_mask` and position ids
    ``W + T + depth - 1``; node j's logits give the next token of every label
    passing through j. Only tokens that continue a valid label are read.

    Args:
        top_first: prune to the ``top_first`` most probable valid first tokens (a
            restricted beam of that width at the first token, exhaustive below it);
            labels outside score ``-inf``. ``None``: every label is scored exactly.
        first_bias: token → log-score added to the first-token log-probabilities
            for a second ranking (e.g. minus the content-free log-probability, for
            calibrated pruning): the first tokens kept are the ``top_first`` best by
            log-probability and the ``top_first`` best by biased score, so both the
            plain and the calibrated best label are searched; the returned scores never
            include the bias.

    Returns:
        float32 tensor ``[n_labels]`` (``-inf`` for pruned labels).
    """
    device = next(model.parameters()).device
    logits, cache, pos = task_forward(model, ctx, task_ids)
    first = torch.log_softmax(logits[-1], dim=-1)
    keep = list(range(len(trie.label_ids)))
    sub = trie
    if top_first is not None and top_first < len(trie.allowed[-1]):
        firsts = sorted(trie.allowed[-1])
        chosen = _kept_first(first, firsts, top_first, first_bias)
        keep = [i for i, ids in enumerate(trie.label_ids) if ids[0] in chosen]
        sub = LabelTrie([trie.label_ids[i] for i in keep])
    node_logp = None
    if sub.nodes:
        n_past = cache.get_seq_length()
        dtype = next(model.parameters()).dtype
        mask = sub.attention_mask(n_past, dtype, device)
        ids = torch.tensor([[tok for _p, tok, _d in sub.nodes]], dtype=torch.long, device=device)
        start = int(pos[0, -1]) + 1
        position_ids = torch.tensor([[start + d - 1 for _p, _t, d in sub.nodes]], dtype=torch.long, device=device)
        out = model(input_ids=ids, attention_mask=mask, position_ids=position_ids, cache=cache, use_cache=True)
        node_logp = torch.log_softmax(out.logits[0].float(), dim=-1)
    scores = torch.full((len(trie.label_ids),), float("-inf"))
    for i, ids, path in zip(keep, sub.label_ids, sub.paths):
        total = first[ids[0]]
        for node, tok in zip(path, ids[1:]):
            total = total + node_logp[node, tok]
        scores[i] = total
    return scores


def _additive(allowed: Any, dtype: Any, device: Any) -> Any:
    """Bool ``[q, k]`` → additive float mask ``[1, 1, q, k]`` (0 / dtype minimum)."""
    mask = torch.zeros(allowed.shape, dtype=dtype)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask.to(device)[None, None]


@torch.inference_mode()
def label_logprobs_batch(
    model: Any,
    ctx: PCWContext,
    tasks: Sequence[Sequence[int]],
    trie: LabelTrie,
    *,
    top_first: int | None = None,
    first_bias: dict[int, float] | None = None,
) -> Any:
    """:func:`label_logprobs` for many tasks at once, packed into two forward passes.

    The tasks are laid out one after another after the windows; an additive 4D mask
    lets each task see every window and its own earlier tokens only, and each task's
    position ids start at W. Then the (pruned) label tries of all tasks are packed the
    same way, each node seeing the windows, its own task and its own ancestors. The
    weights are read once per pass instead of once per task, which on a CPU is most
    of the cost for short tasks. The result equals :func:`label_logprobs` per task up
    to float summation order.

    Args:
        tasks: token ids of each task (each non-empty).
        top_first, first_bias: as in :func:`label_logprobs`.

    Returns:
        float32 tensor ``[n_tasks, n_labels]`` (``-inf`` for pruned labels).

    Raises:
        BackendError: no task or an empty task.
    """
    if not tasks or any(not t for t in tasks):
        raise BackendError("PCW needs at least one non-empty task")
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    w, n_ctx = ctx.max_window_length, ctx.cached_tokens
    # pass 1: all tasks, block-diagonal causal among themselves
    seg = torch.cat([torch.full((len(t),), i) for i, t in enumerate(tasks)])
    n1 = len(seg)
    pos1 = torch.cat([w + torch.arange(len(t)) for t in tasks])
    local = torch.tril(torch.ones(n1, n1, dtype=torch.bool)) & (seg[:, None] == seg[None, :])
    allowed1 = torch.cat([torch.ones(n1, n_ctx, dtype=torch.bool), local], dim=1)
    ends = torch.cumsum(torch.tensor([len(t) for t in tasks]), 0) - 1
    # sub-tries after pass 1 need at most every node per task
    cache = context_cache(model, ctx, reserve=n1 + len(tasks) * len(trie.nodes) + 8)
    out = model(
        input_ids=torch.tensor([[tok for t in tasks for tok in t]], device=device),
        attention_mask=_additive(allowed1, dtype, device),
        position_ids=pos1[None].to(device),
        cache=cache,
        use_cache=True,
    )
    first = torch.log_softmax(out.logits[0, ends].float(), dim=-1)  # [n_tasks, vocab]
    firsts = sorted(trie.allowed[-1])
    subs: list[tuple[list[int], LabelTrie]] = []
    for q in range(len(tasks)):
        keep = list(range(len(trie.label_ids)))
        sub = trie
        if top_first is not None and top_first < len(firsts):
            chosen = _kept_first(first[q], firsts, top_first, first_bias)
            keep = [i for i, ids in enumerate(trie.label_ids) if ids[0] in chosen]
            sub = LabelTrie([trie.label_ids[i] for i in keep])
        subs.append((keep, sub))
    # pass 2: every task's trie nodes
    offsets, node_ids, node_pos = [], [], []
    for q, (_keep, sub) in enumerate(subs):
        offsets.append(len(node_ids))
        for _p, tok, d in sub.nodes:
            node_ids.append(tok)
            node_pos.append(w + len(tasks[q]) + d - 1)
    n2 = len(node_ids)
    node_logp = None
    if n2:
        allowed2 = torch.zeros(n2, n_ctx + n1 + n2, dtype=torch.bool)
        allowed2[:, :n_ctx] = True
        for q, (_keep, sub) in enumerate(subs):
            o = offsets[q]
            m = len(sub.nodes)
            if not m:
                continue
            allowed2[o : o + m, n_ctx : n_ctx + n1] = (seg == q)[None, :]
            anc = torch.zeros(m, m, dtype=torch.bool)
            for j, (parent, _t, _d) in enumerate(sub.nodes):
                anc[j, j] = True
                if parent >= 0:
                    anc[j] |= anc[parent]
            allowed2[o : o + m, n_ctx + n1 + o : n_ctx + n1 + o + m] = anc
        out = model(
            input_ids=torch.tensor([node_ids], device=device),
            attention_mask=_additive(allowed2, dtype, device),
            position_ids=torch.tensor([node_pos], device=device),
            cache=cache,
            use_cache=True,
        )
        node_logp = torch.log_softmax(out.logits[0].float(), dim=-1)
    scores = torch.full((len(tasks), len(trie.label_ids)), float("-inf"))
    for q, (keep, sub) in enumerate(subs):
        for i, ids, path in zip(keep, sub.label_ids, sub.paths):
            total = first[q, ids[0]]
            for node, tok in zip(path, ids[1:]):
                total = total + node_logp[offsets[q] + node, tok]
            scores[q, i] = total
    return scores


@torch.inference_mode()
def classify_batch(
    model: Any,
    ctx: PCWContext,
    tasks: Sequence[Sequence[int]],
    labels: Sequence[str],
    trie: LabelTrie,
    *,
    content_free_tasks: Sequence[Sequence[int]] | None = None,
    top_first: int | None = None,
) -> list[LabelScores]:
    """:func:`classify` for many tasks on the same windows (two packed forward passes in all).

    Returns:
        One :class:`LabelScores` per task, in order.
    """
    cf = bias = None
    if content_free_tasks:
        cf = content_free_probs(model, ctx, trie, content_free_tasks)
        bias = _first_token_bias(trie, cf) if top_first is not None else None
    lp = label_logprobs_batch(model, ctx, tasks, trie, top_first=top_first, first_bias=bias)
    results = []
    for row in lp:
        if cf is not None:
            probs = _calibrated(row, cf)
            results.append(LabelScores(list(labels), row.tolist(), probs.tolist(), True, ctx.num_windows, cf.tolist()))
        else:
            probs = torch.softmax(row, dim=-1)
            results.append(LabelScores(list(labels), row.tolist(), probs.tolist(), False, ctx.num_windows))
    return results


def _calibrated(logprobs: Any, cf_probs: Any) -> Any:
    """Contextual calibration: ``p̂ ∝ p / p_cf`` over the labels (log domain, renormalised; -inf stays 0)."""
    p = torch.log_softmax(logprobs, dim=-1)
    return torch.softmax(p - torch.log(cf_probs.clamp_min(1e-30)), dim=-1)


@torch.inference_mode()
def content_free_probs(
    model: Any, ctx: PCWContext, trie: LabelTrie, content_free_tasks: Sequence[Sequence[int]]
) -> Any:
    """Mean label distribution (exact, over all labels) for content-free tasks in ``ctx``; cached on the context."""
    key = (tuple(tuple(t) for t in content_free_tasks), tuple(tuple(ids) for ids in trie.label_ids))
    hit = ctx.calibration.get(key)
    if hit is None:
        probs = torch.softmax(label_logprobs_batch(model, ctx, content_free_tasks, trie), dim=-1)
        hit = probs.mean(dim=0)
        hit = hit / hit.sum()
        ctx.calibration[key] = hit
    return hit


def _first_token_bias(trie: LabelTrie, cf: Any) -> dict[int, float]:
    """``-log p_cf(first token)``: the content-free label mass of each first token."""
    import math as _m

    mass: dict[int, float] = {}
    for ids, p in zip(trie.label_ids, cf.tolist()):
        mass[ids[0]] = mass.get(ids[0], 0.0) + p
    return {t: -_m.log(max(m, 1e-30)) for t, m in mass.items()}


@torch.inference_mode()
def classify(
    model: Any,
    ctx: PCWContext,
    task_ids: Sequence[int],
    labels: Sequence[str],
    trie: LabelTrie,
    *,
    content_free_tasks: Sequence[Sequence[int]] | None = None,
    top_first: int | None = None,
) -> LabelScores:
    """Restricted-label classification on the windows, optionally with contextual calibration.

    Calibration (Zhao et al., 2021, "Calibrate Before Use", ICML, Sec. 5): the label
    distribution the model gives content-free task inputs (``"N/A"``, ...) in the same
    windows estimates its bias; each label's probability is divided by it and the
    result renormalised over the labels. The content-free distribution is computed
    exactly once per context and label set (cached on ``ctx``).

    Args:
        top_first: see :func:`label_logprobs`; with calibration the first tokens are
            ranked by their calibrated probability.

    Returns:
        :class:`LabelScores`. ``logprobs`` are never calibrated; ``probs`` are when
        ``content_free_tasks`` is given.
    """
    if content_free_tasks:
        cf = content_free_probs(model, ctx, trie, content_free_tasks)
        bias = _first_token_bias(trie, cf) if top_first is not None else None
        lp = label_logprobs(model, ctx, task_ids, trie, top_first=top_first, first_bias=bias)
        probs = _calibrated(lp, cf)
        return LabelScores(list(labels), lp.tolist(), probs.tolist(), True, ctx.num_windows, cf.tolist())
    lp = label_logprobs(model, ctx, task_ids, trie, top_first=top_first)
    return LabelScores(list(labels), lp.tolist(), torch.softmax(lp, dim=-1).tolist(), False, ctx.num_windows)


@torch.inference_mode()
def ensemble_classify(
    model: Any,
    ctx: PCWContext,
    task_ids: Sequence[int],
    labels: Sequence[str],
    trie: LabelTrie,
    *,
    weights: Sequence[float] | None = None,
    content_free_tasks: Sequence[Sequence[int]] | None = None,
    top_first: int | None = None,
) -> LabelScores:
    """Parallel ensemble: each window alone, per-window label log-probabilities combined.

    Yang et al., 2023 ("Revisiting Parallel Context Windows: A Frustratingly Simple
    Alternative and Chain-of-Thought Deterioration", Sec. 3): run the task after each
    window separately (an ordinary prompt ``BOS + window_i + task``) and combine the
    label scores by a weighted sum, here of the per-window label log-probabilities
    normalised over the labels (calibrated per window when ``content_free_tasks`` is
    given). Costs B task passes per question instead of one.

    Args:
        weights: one non-negative weight per window (default uniform), normalised to sum 1.

    Returns:
        :class:`LabelScores` whose ``logprobs`` are the combined per-label scores and
        ``probs`` their softmax.

    Raises:
        ValueError: wrong number of weights, or weights that do not sum to a positive number.
    """
    parts = []
    for i in range(ctx.num_windows):
        one = ctx.subset([i])
        if content_free_tasks:
            cf = content_free_probs(model, one, trie, content_free_tasks)
            bias = _first_token_bias(trie, cf) if top_first is not None else None
            lp = label_logprobs(model, one, task_ids, trie, top_first=top_first, first_bias=bias)
            parts.append(LabelScores(list(labels), lp.tolist(), _calibrated(lp, cf).tolist(), True))
        else:
            lp = label_logprobs(model, one, task_ids, trie, top_first=top_first)
            parts.append(LabelScores(list(labels), lp.tolist(), torch.softmax(lp, dim=-1).tolist(), False))
    return ensemble_combine(parts, weights)


def ensemble_combine(parts: Sequence[LabelScores], weights: Sequence[float] | None = None) -> LabelScores:
    """Combine per-window results (same labels) by a weighted sum of their log label probabilities.

    ``score(l) = Σ_i w_i log p_i(l)`` with ``p_i`` each window's (calibrated or plain)
    distribution over the labels, floored at 1e-30 so a label pruned in one window
    is penalised, not excluded; ``probs`` is the softmax of the scores.

    Raises:
        ValueError: no part, or weights that are not ``len(parts)`` non-negative numbers with a positive sum.
    """
    b = len(parts)
    if not b:
        raise ValueError("nothing to combine")
    w = torch.tensor(list(weights) if weights is not None else [1.0] * b, dtype=torch.float32)
    if w.numel() != b or bool((w < 0).any()) or float(w.sum()) <= 0:
        raise ValueError(f"weights must be {b} non-negative numbers with a positive sum")
    w = w / w.sum()
    total = sum(w[i] * torch.log(torch.tensor(p.probs).clamp_min(1e-30)) for i, p in enumerate(parts))
    probs = torch.softmax(total, dim=-1)
    return LabelScores(list(parts[0].labels), total.tolist(), probs.tolist(), parts[0].calibrated, b)


# --------------------------------------------------------------------------- reference
@torch.inference_mode()
def single_pass_logits(model: Any, windows: Sequence[Sequence[int]], task_ids: Sequence[int], *, bos_id: int | None) -> Any:
    """PCW in one forward pass with an explicit 4D mask (reference recipe, no cache).

    The sequence is ``[BOS | window 1 | ... | window B | task]``; window tokens attend
    causally within their window and to the BOS, task tokens to everything before them;
    position ids restart at 1 in every window (BOS = 0) and the task starts at W.
    The mask is additive float, as eager attention requires.

    Returns:
        float32 logits ``[T, vocab]`` of the task tokens.
    """
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    head = [bos_id] if bos_id is not None else []
    ids = list(head)
    positions = list(range(len(head)))
    segment = [-1] * len(head)  # -1: shared (BOS), i: window i, B: task
    for i, w in enumerate(windows):
        ids += list(w)
        positions += list(range(len(head), len(head) + len(w)))
        segment += [i] * len(w)
    w_max = max(len(head) + len(w) for w in windows)
    b = len(windows)
    ids += list(task_ids)
    positions += list(range(w_max, w_max + len(task_ids)))
    segment += [b] * len(task_ids)
    n = len(ids)
    seg = torch.tensor(segment)
    causal = torch.tril(torch.ones(n, n, dtype=torch.bool))
    same = seg[:, None] == seg[None, :]
    shared = (seg[None, :] == -1).expand(n, n)
    task_row = (seg[:, None] == b).expand(n, n)
    allowed = causal & (same | shared | task_row)
    mask = torch.zeros(n, n, dtype=dtype)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    out = model(
        input_ids=torch.tensor([ids], device=device),
        attention_mask=mask.to(device)[None, None],
        position_ids=torch.tensor([positions], device=device),
        use_cache=False,
    )
    return out.logits[0, n - len(task_ids) :].float()
