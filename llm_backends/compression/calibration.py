"""Calibration and evaluation text for compression: the parent's own generations plus the project's docs.

No corpus is downloaded. Two sources:

* **self-distillation text**: the parent model's greedy replies (chat template applied)
  to :data:`PROMPTS`, varied questions (arithmetic, facts, how-to, code, writing,
  routing-style requests). Generated once and cached as JSON under
  ``$MRKL_CACHE_DIR/compression/`` keyed by the model's weights fingerprint and the
  generation settings. Distilling on the teacher's own outputs is the usual
  data-free recipe (e.g. Puzzle, Bercovich et al., 2024, §5 uses distillation data;
  here the parent supplies it).
* **project docs**: ``README.md`` and the module docstrings of the mrkl packages.

Each source becomes one token stream (texts joined by EOS) cut into windows of
``seq_len`` tokens; every ``heldout_every``-th window is held out for evaluation
(perplexity), the rest calibrate and distil.
"""

from __future__ import annotations

import ast
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

__all__ = ["PROMPTS", "CalibrationData", "self_generated_texts", "project_doc_texts", "build_calibration", "weights_fingerprint", "compression_cache_dir"]

ROOT = Path(__file__).resolve().parents[2]

#: varied prompts for the parent's self-distillation text
PROMPTS: tuple[str, ...] = (
    "What is 17 times 23? Explain the steps.",
    "Explain what a prime number is, with examples.",
    "Write a short poem about the sea.",
    "What is the capital of Australia, and why is it not Sydney?",
    "How do I reverse a list in Python?",
    "Give three tips for a good night's sleep.",
    "Summarise the plot of Romeo and Juliet in a few sentences.",
    "What causes the seasons on Earth?",
    "Convert 5 kilometres to miles.",
    "Write an SQL query that counts the customers in each country.",
    "What is photosynthesis?",
    "Translate 'good morning, how are you?' into French.",
    "How many tracks are on a typical music album?",
    "Describe the water cycle for a ten-year-old.",
    "What is the difference between a list and a tuple in Python?",
    "Why is the sky blue?",
    "Solve for x: 3x + 7 = 22.",
    "Write a friendly email asking a colleague for a meeting next week.",
    "What were the main causes of the First World War?",
    "Explain recursion with a simple example.",
    "What is 15% of 2,340?",
    "List five countries in South America.",
    "How does a refrigerator keep food cold?",
    "Tell me a fun fact about octopuses.",
    "What is the boiling point of water in Fahrenheit?",
    "How do vaccines work?",
    "Write a haiku about autumn leaves.",
    "What does a database index do?",
    "Give me a recipe for a simple tomato pasta.",
    "Who wrote 'Pride and Prejudice', and what is it about?",
    "What is the square root of 144, and how can you check it?",
    "Explain what an API is.",
    "What is the weather usually like in London in spring?",
    "How do I compute the average of a list of numbers?",
    "Why do leaves change colour in autumn?",
    "What is the tallest mountain in the world?",
    "Describe how a bill becomes a law.",
    "Which customers bought the most albums? How would you find out?",
    "Explain the difference between weather and climate.",
    "What is machine learning, in two sentences?",
)


@dataclass
class CalibrationData:
    """Token windows for calibration, distillation and evaluation.

    Attributes:
        train: ``(N, seq_len)`` long tensor of windows used for scoring / distillation.
        heldout: ``(M, seq_len)`` long tensor of held-out windows (perplexity).
        counts: token counts per source and split, e.g. ``{"self_generated/train": 2560, ...}``.
        seq_len: window length in tokens.
        heldout_sources: the source name of each held-out window.
    """

    train: torch.Tensor
    heldout: torch.Tensor
    counts: dict[str, int] = field(default_factory=dict)
    seq_len: int = 128
    heldout_sources: list[str] = field(default_factory=list)

    def heldout_of(self, source: str) -> torch.Tensor:
        """Held-out windows of one source (``"self_generated"`` or ``"project_docs"``)."""
        idx = [i for i, s in enumerate(self.heldout_sources) if s == source]
        return self.heldout[idx]

    def describe(self) -> str:
        """One line with the token counts."""
        return ", ".join(f"{k} {v} tokens" for k, v in self.counts.items())


def weights_fingerprint(model: Any) -> str:
    """16 hex digits identifying ``model``'s weights: name, shape and up to 1024 evenly spaced
    values of every tensor, plus the per-layer block configs when the model has them (so two
    models differing in any tensor or any layer's architecture differ). Keys every compression cache."""
    h = hashlib.sha256()
    for name, p in model.state_dict().items():
        flat = p.detach().flatten()
        step = max(1, flat.numel() // 1024)
        h.update(f"{name}{tuple(p.shape)}".encode())
        h.update(flat[::step].float().numpy().tobytes())
    blocks = getattr(model, "block_configs", None)
    if blocks is not None:
        h.update("|".join(b.describe() for b in blocks).encode())
    return h.hexdigest()[:16]


def compression_cache_dir() -> Path:
    """``<mrkl cache>/compression``: where calibration text, scores and Puzzle libraries are cached."""
    from llm_backends.resolve import cache_dir

    return cache_dir() / "compression"


@torch.no_grad()
def self_generated_texts(
    model: Any,
    tokenizer: Any,
    prompts: tuple[str, ...] = PROMPTS,
    max_new_tokens: int = 96,
    cache: bool = True,
    progress: Callable[[str], None] | None = None,
) -> list[str]:
    """The parent's greedy chat replies to ``prompts``, each rendered as a full chat (prompt + reply).

    Args:
        model: a causal LM taking ``input_ids`` and ``cache``/``use_cache`` (a
            :class:`~llm_backends.compression.model.HeteroLlamaForCausalLM`).
        tokenizer: its tokenizer (chat template used when it has one).
        prompts: user messages.
        max_new_tokens: cap on each reply.
        cache: read/write the JSON cache under ``$MRKL_CACHE_DIR/compression``; an
            unreadable cache is regenerated, an unwritable one only skipped.
        progress: receives one line per generated reply.

    Returns:
        One text per prompt.
    """
    key = hashlib.sha256(json.dumps([weights_fingerprint(model), list(prompts), max_new_tokens]).encode()).hexdigest()[:16]
    path = compression_cache_dir() / f"selfgen-{key}.json"
    if cache and path.is_file():
        try:
            texts = json.loads(path.read_text())
            if isinstance(texts, list) and len(texts) == len(prompts) and all(isinstance(t, str) for t in texts):
                return texts
        except (OSError, ValueError):
            pass
    eos = tokenizer.eos_token_id
    eos_ids = {eos} if isinstance(eos, int) else set(eos or [])
    texts = []
    device = next(model.parameters()).device
    for n, prompt in enumerate(prompts, 1):
        if getattr(tokenizer, "chat_template", None):
            rendered = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
        else:
            rendered = f"user: {prompt}\nassistant: "
        ids = tokenizer(rendered, add_special_tokens=False, return_tensors="pt")["input_ids"].to(device)
        out = model(ids, use_cache=True)
        new: list[int] = []
        for _ in range(max_new_tokens):
            nxt = int(out.logits[0, -1].argmax())
            if nxt in eos_ids:
                break
            new.append(nxt)
            out = model(torch.tensor([[nxt]], device=device), cache=out.cache, use_cache=True)
        texts.append(rendered + tokenizer.decode(new, skip_special_tokens=False))
        if progress:
            progress(f"self-distillation text {n}/{len(prompts)}: {len(new)} tokens")
    if cache:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(texts, ensure_ascii=False, indent=1))
            tmp.replace(path)
        except OSError:
            pass
    return texts


def project_doc_texts(root: Path = ROOT) -> list[str]:
    """The project's docs: ``README.md`` and the module docstrings of ``mrkl``, ``router``,
    ``experts`` and ``llm_backends`` (files that fail to parse are skipped)."""
    texts = []
    readme = root / "README.md"
    if readme.is_file():
        texts.append(readme.read_text(encoding="utf-8"))
    for pkg in ("mrkl", "router", "experts", "llm_backends"):
        for f in sorted((root / pkg).rglob("*.py")):
            try:
                doc = ast.get_docstring(ast.parse(f.read_text(encoding="utf-8")))
            except (OSError, SyntaxError, ValueError):
                continue
            if doc and len(doc) > 80:
                texts.append(doc)
    return texts


def _windows(texts: list[str], tokenizer: Any, seq_len: int) -> torch.Tensor:
    eos = tokenizer.eos_token_id if isinstance(tokenizer.eos_token_id, int) else 0
    stream: list[int] = []
    for t in texts:
        stream += list(tokenizer(t, add_special_tokens=False)["input_ids"]) + [eos]
    n = len(stream) // seq_len
    return torch.tensor(stream[: n * seq_len], dtype=torch.long).view(n, seq_len)


def build_calibration(
    model: Any,
    tokenizer: Any,
    seq_len: int = 128,
    heldout_every: int = 4,
    max_new_tokens: int = 96,
    prompts: tuple[str, ...] | None = None,
    include_docs: bool = True,
    progress: Callable[[str], None] | None = None,
) -> CalibrationData:
    """Self-generated text (see :func:`self_generated_texts`; ``prompts`` default :data:`PROMPTS`)
    plus the project docs, as token windows.

    Raises:
        ValueError: ``seq_len < 2``, ``heldout_every < 2``, or too little text for one window of each split.
    """
    if seq_len < 2 or heldout_every < 2:
        raise ValueError("seq_len and heldout_every must be at least 2")
    prompts = PROMPTS if prompts is None else prompts
    sources = {"self_generated": self_generated_texts(model, tokenizer, prompts, max_new_tokens, progress=progress)}
    if include_docs:
        sources["project_docs"] = project_doc_texts()
    train, held, counts, held_src = [], [], {}, []
    for name, texts in sources.items():
        w = _windows(texts, tokenizer, seq_len)
        mask = torch.arange(len(w)) % heldout_every == heldout_every - 1
        train.append(w[~mask])
        held.append(w[mask])
        held_src += [name] * int(mask.sum())
        counts[f"{name}/train"] = int((~mask).sum()) * seq_len
        counts[f"{name}/heldout"] = int(mask.sum()) * seq_len
    tr, he = torch.cat(train), torch.cat(held)
    if len(tr) == 0 or len(he) == 0:
        raise ValueError("not enough calibration text for one training and one held-out window")
    # interleave the sources so that a prefix of `train` mixes both
    g = torch.Generator().manual_seed(0)
    tr = tr[torch.randperm(len(tr), generator=g)]
    return CalibrationData(tr, he, counts, seq_len, held_src)
