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
  :class:`transformers.DynamicCache` of ``L = 1 + Σ_i (n_i - 1)`` tokens (BOS once).
  A :class:`PCWContext` holds them and is re-used for many questions: each
  question builds a fresh cache from the stored tensors (``DynamicCache.update``
  concatenates into new tensors, so the stored ones are never modified).
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
  a PCW task runs; on the CPU the same happens. This is a speed cost, not an
  error.

Only models whose layers all use full attention are supported (no sliding window).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

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
    "ensemble_classify",
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

        Raises:
            ValueError: no index, or an index out of range.
        """
        idx = list(indices)
        if not idx or any(not 0 <= i < self.num_windows for i in idx):
            raise ValueError(f"window indices must be a non-empty subset of 0..{self.num_windows - 1}, got {idx}")
        return PCWContext(
            windows=[self.windows[i] for i in idx],
            bos_id=self.bos_id,
            bos_kv=self.bos_kv,
            window_kv=[self.window_kv[i] for i in idx],
            lengths=[self.lengths[i] for i in idx],
        )

    def __repr__(self) -> str:
        return f"PCWContext(B={self.num_windows}, lengths={self.lengths}, cached_tokens={self.cached_tokens})"


def _check_full_attention(model: Any) -> None:
    cfg = model.config.get_text_config(decoder=True) if hasattr(model.config, "get_text_config") else model.config
    types = getattr(cfg, "layer_types", None) or []
    if any(t != "full_attention" for t in types) or getattr(cfg, "sliding_window", None) and getattr(
        cfg, "use_sliding_window", True
    ):
        raise BackendError("Parallel Context Windows need a model whose layers all use full attention (no sliding window)")


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

    Call it under ``torch.inference_mode()``.
    """
    import time

    import torch

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


def context_cache(model: Any, ctx: PCWContext) -> Any:
    """A fresh ``DynamicCache`` holding ``[BOS | window 1 | ... | window B]`` (L tokens); ``ctx`` is not modified."""
    import torch
    from transformers import DynamicCache

    n_layers = len(ctx.window_kv[0])
    data = []
    for layer in range(n_layers):
        keys = ([ctx.bos_kv[layer][0]] if ctx.bos_kv else []) + [kv[layer][0] for kv in ctx.window_kv]
        values = ([ctx.bos_kv[layer][1]] if ctx.bos_kv else []) + [kv[layer][1] for kv in ctx.window_kv]
        data.append((torch.cat(keys, dim=-2), torch.cat(values, dim=-2)))
    return DynamicCache(data, config=model.config)


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
    import torch

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
    import torch

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
        import torch

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


def label_logprobs(model: Any, ctx: PCWContext, task_ids: Sequence[int], trie: LabelTrie) -> Any:
    """``log p(label | windows, task)`` of every label of ``trie``, in two forward passes.

    Pass 1 runs the task (:func:`task_forward`); its last logits give every label's
    first token. Pass 2 runs the trie's internal nodes as one sequence with the
    additive 4D mask of :meth:`LabelTrie.attention_mask` and position ids
    ``W + T + depth - 1``; node j's logits give the next token of every label
    passing through j. Only tokens that continue a valid label are read.

    Returns:
        float32 tensor ``[n_labels]``.
    """
    import torch

    device = next(model.parameters()).device
    logits, cache, pos = task_forward(model, ctx, task_ids)
    first = torch.log_softmax(logits[-1], dim=-1)
    node_logp = None
    if trie.nodes:
        n_past = cache.get_seq_length()
        dtype = next(model.parameters()).dtype
        mask = trie.attention_mask(n_past, dtype, device)
        ids = torch.tensor([[tok for _p, tok, _d in trie.nodes]], dtype=torch.long, device=device)
        start = int(pos[0, -1]) + 1
        position_ids = torch.tensor([[start + d - 1 for _p, _t, d in trie.nodes]], dtype=torch.long, device=device)
        out = model(input_ids=ids, attention_mask=mask, position_ids=position_ids, cache=cache, use_cache=True)
        node_logp = torch.log_softmax(out.logits[0].float(), dim=-1)
    scores = []
    for ids, path in zip(trie.label_ids, trie.paths):
        total = first[ids[0]]
        for node, tok in zip(path, ids[1:]):
            total = total + node_logp[node, tok]
        scores.append(total)
    return torch.stack(scores)


def _calibrated(logprobs: Any, cf_probs: Any) -> Any:
    """Contextual calibration: ``p̂ ∝ p / p_cf`` over the labels (log domain, renormalised)."""
    import torch

    p = torch.log_softmax(logprobs, dim=-1)
    return torch.softmax(p - torch.log(cf_probs.clamp_min(1e-30)), dim=-1)


def content_free_probs(
    model: Any, ctx: PCWContext, trie: LabelTrie, content_free_tasks: Sequence[Sequence[int]]
) -> Any:
    """Mean label distribution for content-free tasks (e.g. ``"N/A"``) in ``ctx``; cached on the context."""
    import torch

    key = (tuple(tuple(t) for t in content_free_tasks), tuple(tuple(ids) for ids in trie.label_ids))
    hit = ctx.calibration.get(key)
    if hit is None:
        probs = [torch.softmax(label_logprobs(model, ctx, t, trie), dim=-1) for t in content_free_tasks]
        hit = torch.stack(probs).mean(dim=0)
        hit = hit / hit.sum()
        ctx.calibration[key] = hit
    return hit


def classify(
    model: Any,
    ctx: PCWContext,
    task_ids: Sequence[int],
    labels: Sequence[str],
    trie: LabelTrie,
    *,
    content_free_tasks: Sequence[Sequence[int]] | None = None,
) -> LabelScores:
    """Restricted-label classification on the windows, optionally with contextual calibration.

    Calibration (Zhao et al., 2021, "Calibrate Before Use", ICML, Sec. 5): the label
    distribution the model gives content-free task inputs (``"N/A"``, ...) in the same
    windows estimates its bias; each label's probability is divided by it and the
    result renormalised over the labels. The content-free distribution is computed
    once per context and label set.

    Returns:
        :class:`LabelScores`.
    """
    import torch

    lp = label_logprobs(model, ctx, task_ids, trie)
    if content_free_tasks:
        cf = content_free_probs(model, ctx, trie, content_free_tasks)
        probs = _calibrated(lp, cf)
        return LabelScores(list(labels), lp.tolist(), probs.tolist(), True, ctx.num_windows, cf.tolist())
    return LabelScores(list(labels), lp.tolist(), torch.softmax(lp, dim=-1).tolist(), False, ctx.num_windows)


def ensemble_classify(
    model: Any,
    ctx: PCWContext,
    task_ids: Sequence[int],
    labels: Sequence[str],
    trie: LabelTrie,
    *,
    weights: Sequence[float] | None = None,
    content_free_tasks: Sequence[Sequence[int]] | None = None,
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
    import torch

    b = ctx.num_windows
    w = torch.tensor(list(weights) if weights is not None else [1.0] * b, dtype=torch.float32)
    if w.numel() != b or bool((w < 0).any()) or float(w.sum()) <= 0:
        raise ValueError(f"weights must be {b} non-negative numbers with a positive sum")
    w = w / w.sum()
    total = None
    for i in range(b):
        one = ctx.subset([i])
        lp = label_logprobs(model, one, task_ids, trie)
        if content_free_tasks:
            logp = torch.log(_calibrated(lp, content_free_probs(model, one, trie, content_free_tasks)))
        else:
            logp = torch.log_softmax(lp, dim=-1)
        total = w[i] * logp if total is None else total + w[i] * logp
    probs = torch.softmax(total, dim=-1)
    return LabelScores(list(labels), total.tolist(), probs.tolist(), bool(content_free_tasks), b)


# --------------------------------------------------------------------------- reference
def single_pass_logits(model: Any, windows: Sequence[Sequence[int]], task_ids: Sequence[int], *, bos_id: int | None) -> Any:
    """PCW in one forward pass with an explicit 4D mask (reference recipe, no cache).

    The sequence is ``[BOS | window 1 | ... | window B | task]``; window tokens attend
    causally within their window and to the BOS, task tokens to everything before them;
    position ids restart at 1 in every window (BOS = 0) and the task starts at W.
    The mask is additive float, as eager attention requires.

    Returns:
        float32 logits ``[T, vocab]`` of the task tokens.
    """
    import torch

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


def log_softmax_list(scores: Sequence[float]) -> list[float]:
    """Natural-log softmax of a list of floats (helper for callers without torch)."""
    top = max(scores)
    z = math.log(sum(math.exp(s - top) for s in scores)) + top
    return [s - z for s in scores]
