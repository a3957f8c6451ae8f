"""Local language models through Hugging Face transformers (CPU or GPU).

:class:`TransformersBackend` loads a Hugging Face model folder or a GGUF file
(see :mod:`llm_backends.resolve`), generates greedily with a KV cache, and scores
continuations by their summed log-probability. A GGUF model is converted once to
a safetensors cache folder so later loads skip the dequantization.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Sequence

from llm_backends.base import Capabilities, ChatMessage
from llm_backends.errors import BackendError
from llm_backends.resolve import DEFAULT_MODEL, ResolvedModel, gguf_cache_folder, resolve_model

__all__ = ["TransformersBackend"]

log = logging.getLogger(__name__)
_COMPLETE_MARKER = ".mrkl-complete"


def _default_progress(message: str) -> None:
    print(f"[mrkl] {message}", file=sys.stderr, flush=True)


class TransformersBackend:
    """A local causal language model (any Hugging Face model folder or GGUF file).

    Args:
        model: alias (default ``"smollm2-135m-instruct"``), ``.gguf`` path or model folder.
        device: torch device string, ``"cpu"`` (default) or ``"cuda"``.
        dtype: torch dtype name for the weights (``"float32"`` default on CPU,
            ``"bfloat16"`` default on CUDA).
        progress: callable receiving one-line progress messages while loading;
            default prints to stderr; ``None`` is silent.
        prompt_cache_tokens: ``score`` keeps the KV cache of recent prompts (LRU) up to
            this many tokens in all (fp32 SmolLM2-135M: about 46 KB a token), so fixed
            prompts such as the router's expert cards are encoded once.

    Attributes:
        name: display name of the model.
        load_seconds: wall-clock seconds the load took.
        loaded_from: ``"gguf"`` (dequantized now), ``"cache"`` (safetensors copy) or ``"folder"``.

    Raises:
        ModelNotFoundError: the model cannot be resolved locally.
        BackendError: transformers failed to load it.

    Thread safety: calls are serialised with a lock (one forward pass at a time).
    """

    capabilities = Capabilities(score=True, constrained_decoding=True, pcw=True, tool_calling=False)

    def __init__(
        self,
        model: str | os.PathLike[str] = DEFAULT_MODEL,
        *,
        device: str = "cpu",
        dtype: str | None = None,
        progress: Callable[[str], None] | None = _default_progress,
        prompt_cache_tokens: int = 8192,
    ) -> None:
        import torch

        self._torch = torch
        self._lock = threading.RLock()
        self._prompt_cache: OrderedDict[tuple[int, ...], tuple[Any, Any]] = OrderedDict()
        self.prompt_cache_tokens = prompt_cache_tokens
        self._progress = progress or (lambda _m: None)
        self.device = device
        dtype_name = dtype or ("bfloat16" if device.startswith("cuda") else "float32")
        try:
            self.dtype = getattr(torch, dtype_name)
        except AttributeError:
            raise BackendError(f"unknown dtype '{dtype_name}'") from None
        self.resolved: ResolvedModel = resolve_model(model)
        self.name = self.resolved.name
        t0 = time.perf_counter()
        self.model, self.tokenizer, self.loaded_from = self._load(self.resolved)
        self.model.to(device=device, dtype=self.dtype)
        self.model.eval()
        self.load_seconds = time.perf_counter() - t0
        eos = self.tokenizer.eos_token_id
        self._eos_ids = {eos} if isinstance(eos, int) else set(eos or [])
        gen_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        if isinstance(gen_eos, int):
            self._eos_ids.add(gen_eos)
        elif gen_eos:
            self._eos_ids.update(gen_eos)

    # ------------------------------------------------------------------ loading
    def _load(self, resolved: ResolvedModel) -> tuple[Any, Any, str]:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            if resolved.kind == "folder":
                self._progress(f"loading model folder {resolved.path}")
                tok = AutoTokenizer.from_pretrained(resolved.path, local_files_only=True)
                from llm_backends.compression.nemotron_nas import is_nemotron_nas_folder, load_nemotron_nas

                if is_nemotron_nas_folder(resolved.path):  # heterogeneous Llama (Puzzle / FFN Fusion output)
                    return load_nemotron_nas(resolved.path, dtype=self.dtype), tok, "folder"
                model = AutoModelForCausalLM.from_pretrained(resolved.path, local_files_only=True, dtype=self.dtype)
                return model, tok, "folder"
            cache = gguf_cache_folder(resolved.path)
            if (cache / _COMPLETE_MARKER).is_file():
                self._progress(f"loading {resolved.name} from cache {cache}")
                tok = AutoTokenizer.from_pretrained(cache, local_files_only=True)
                model = AutoModelForCausalLM.from_pretrained(cache, local_files_only=True, dtype=self.dtype)
                return model, tok, "cache"
            self._progress(
                f"first load of {resolved.path.name}: dequantizing GGUF (about 25 s on 2 CPU cores), "
                f"then caching a safetensors copy in {cache}"
            )
            folder, name = str(resolved.path.parent), resolved.path.name
            tok = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, local_files_only=True)
            self._write_cache(model, tok, cache)
            return model, tok, "gguf"
        except BackendError:
            raise
        except Exception as exc:  # transformers raises many types; report one clearly
            raise BackendError(f"could not load model '{resolved.name}' from {resolved.path}: {exc}") from exc

    def _write_cache(self, model: Any, tok: Any, cache: Path) -> None:
        """Save a plain safetensors copy (GGUF quantizer dropped) atomically; failures only warn."""
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=cache.name + ".", dir=cache.parent))
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            (tmp / _COMPLETE_MARKER).write_text("ok\n")
            if cache.exists():
                shutil.rmtree(cache, ignore_errors=True)
            tmp.rename(cache)
            self._progress(f"cached safetensors copy in {cache}")
        except OSError as exc:  # a read-only home must not stop the model from working
            log.warning("could not write model cache %s: %s", cache, exc)
            self._progress(f"warning: could not write the model cache ({exc}); the next load will convert again")

    # ---------------------------------------------------------------- tokens
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens added."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def count_tokens(self, text: str) -> int:
        """Number of tokens ``text`` encodes to (no special tokens)."""
        return len(self.encode(text))

    @property
    def max_context(self) -> int:
        """Longest sequence (tokens) the model was trained for."""
        return int(getattr(self.model.config, "max_position_embeddings", 2048) or 2048)

    def apply_chat_template(self, messages: Sequence[ChatMessage], *, add_generation_prompt: bool = True) -> str:
        """The chat rendered as the model's prompt text (its own chat template)."""
        if not getattr(self.tokenizer, "chat_template", None):
            text = "".join(f"{m['role']}: {m['content']}\n" for m in messages)
            return text + ("assistant: " if add_generation_prompt else "")
        return self.tokenizer.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=add_generation_prompt
        )

    # ------------------------------------------------------------- inference
    def _forward(self, ids: list[int], past: Any = None) -> tuple[Any, Any]:
        torch = self._torch
        input_ids = torch.tensor([ids], dtype=torch.long, device=self.device)
        out = self.model(input_ids=input_ids, cache=past, use_cache=True)
        return out.logits[0].float(), out.cache

    def _check_length(self, n: int, extra: int) -> None:
        if n + extra > self.max_context:
            raise BackendError(
                f"prompt of {n} tokens plus {extra} new tokens exceeds the model's context of {self.max_context} tokens"
            )

    def generate_ids(
        self,
        prompt_ids: list[int],
        *,
        max_new_tokens: int = 128,
        stop: Sequence[str] = (),
        logits_hook: Callable[[list[int], Any], Any] | None = None,
    ) -> str:
        """Greedy decoding from token ids; see :meth:`generate`.

        ``logits_hook(generated_ids, logits) -> logits`` (optional) is called before each
        step with the ids generated so far and the next-token logits (1-D float tensor,
        vocabulary size); the argmax is taken over what it returns. A grammar mask
        (:class:`llm_backends.constrained.JSONSchemaConstraint`) plugs in here.
        """
        torch = self._torch
        if not prompt_ids:
            raise BackendError("empty prompt")
        self._check_length(len(prompt_ids), max_new_tokens)
        with self._lock, torch.inference_mode():
            logits, past, fed = self._prefill(prompt_ids)
            out_ids: list[int] = []
            text = ""
            for _ in range(max_new_tokens):
                last = logits[-1] if logits_hook is None else logits_hook(out_ids, logits[-1])
                nxt = int(torch.argmax(last))
                if logits_hook is not None and not bool(torch.isfinite(last[nxt])):
                    break  # the hook allows no token at all
                if nxt in self._eos_ids:
                    break
                out_ids.append(nxt)
                text = self.tokenizer.decode(out_ids, skip_special_tokens=True)
                if stop and any(s in text for s in stop):
                    break
                logits, past = self._forward([nxt], past)
                fed.append(nxt)
            self._gen_cache = (fed, past)
        if stop:
            cut = min((text.find(s) for s in stop if s in text), default=-1)
            if cut >= 0:
                text = text[:cut]
        return text

    def _prefill(self, prompt_ids: list[int]) -> tuple[Any, Any, list[int]]:
        """Run the prompt, reusing the KV cache of the previous generation's common prefix.

        Successive prompts that extend one another (argument-by-argument decoding appends
        each value and the next key) then cost only their new tokens. Returns the logits of
        the tokens run, the cache and the token ids the cache now covers.
        """
        prev_ids, prev_past = getattr(self, "_gen_cache", (None, None))
        self._gen_cache = (None, None)
        common = 0
        if prev_ids is not None:
            limit = min(len(prev_ids), len(prompt_ids) - 1)  # always run at least one token
            while common < limit and prev_ids[common] == prompt_ids[common]:
                common += 1
        if common >= 8:
            if len(prev_ids) > common:
                prev_past.crop(-(len(prev_ids) - common))  # transformers 5: negative = tokens to remove
            logits, past = self._forward(prompt_ids[common:], prev_past)
        else:
            logits, past = self._forward(prompt_ids)
        return logits, past, list(prompt_ids)

    def generate(
        self,
        prompt: str,
        *,
        max_new_tokens: int = 128,
        stop: Sequence[str] = (),
        logits_hook: Callable[[list[int], Any], Any] | None = None,
    ) -> str:
        """Greedy continuation of a raw prompt (no chat template applied).

        Args:
            prompt: text to continue.
            max_new_tokens: upper bound on new tokens.
            stop: generation ends once any of these strings appears; the text is cut before it.
            logits_hook: optional mask/bias applied before each greedy step (see :meth:`generate_ids`).

        Returns:
            The generated text only.

        Raises:
            BackendError: empty prompt, or prompt + max_new_tokens longer than the model context.
        """
        return self.generate_ids(self.encode(prompt), max_new_tokens=max_new_tokens, stop=stop, logits_hook=logits_hook)

    def chat(self, messages: Sequence[ChatMessage], *, max_new_tokens: int = 256, stop: Sequence[str] = ()) -> str:
        """Greedy assistant reply, with the model's chat template (SmolLM2: ChatML)."""
        prompt = self.apply_chat_template(messages, add_generation_prompt=True)
        return self.generate(prompt, max_new_tokens=max_new_tokens, stop=tuple(stop) + ("<|im_end|>",)).strip()

    def score(self, prompt: str, continuations: Sequence[str]) -> list[float]:
        """Summed log-probability of each continuation after ``prompt``.

        The prompt is encoded once (or taken from the prompt cache); each continuation
        (tokenized on its own and appended) is run on the prompt's KV cache, which is
        then cropped back to the prompt.

        Args:
            prompt: shared context (non-empty).
            continuations: candidate texts; each must encode to at least one token.

        Returns:
            ``[Σ_t log p(c_t | prompt, c_<t) for c in continuations]``, natural log, each ≤ 0.

        Raises:
            BackendError: empty prompt or continuation, or too long for the context.
        """
        torch = self._torch
        prompt_ids = self.encode(prompt)
        if not prompt_ids:
            raise BackendError("empty prompt")
        cont_ids = [self.encode(c) for c in continuations]
        for c, ids in zip(continuations, cont_ids):
            if not ids:
                raise BackendError(f"continuation {c!r} encodes to no tokens")
        self._check_length(len(prompt_ids), max((len(c) for c in cont_ids), default=0))
        scores: list[float] = []
        key = tuple(prompt_ids)
        with self._lock, torch.inference_mode():
            entry = self._prompt_cache.pop(key, None)
            if entry is None:
                logits, past = self._forward(prompt_ids)
                entry = (past, torch.log_softmax(logits[-1], dim=-1))
            past, last = entry
            for ids in cont_ids:
                total = float(last[ids[0]])
                if len(ids) > 1:
                    more, past = self._forward(ids[:-1], past)
                    logp = torch.log_softmax(more, dim=-1)
                    total += float(logp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].sum())
                    past.crop(-(len(ids) - 1))  # transformers 5: negative = tokens to remove
                scores.append(total)
            self._remember(key, (past, last))
        return scores

    def _remember(self, key: tuple[int, ...], entry: tuple[Any, Any]) -> None:
        """Keep a prompt's KV cache (LRU, at most ``prompt_cache_tokens`` tokens in all)."""
        if len(key) > self.prompt_cache_tokens:
            return
        self._prompt_cache[key] = entry
        while sum(len(k) for k in self._prompt_cache) > self.prompt_cache_tokens:
            self._prompt_cache.popitem(last=False)

    def clear_prompt_cache(self) -> None:
        """Drop every cached prompt KV state."""
        with self._lock:
            self._prompt_cache.clear()
            self._gen_cache = (None, None)

    # ------------------------------------------------ parallel context windows
    # Thin wrappers over llm_backends.pcw (Ratner et al., ACL 2023); see that module.
    def pcw_context(self, windows: Sequence[str], *, bos_id: int | None | str = "auto") -> Any:
        """Encode context windows once for Parallel Context Windows; re-use the result for many tasks.

        Args:
            windows: the windows' texts (each non-empty), e.g. few-shot examples split B ways.
            bos_id: the shared first token of every window (kept once); ``"auto"`` = the
                tokenizer's BOS (SmolLM2: ``<|im_start|>``), ``None`` = no shared token.

        Returns:
            A :class:`llm_backends.pcw.PCWContext`.

        Raises:
            BackendError: no window, an empty window, or one longer than the model's context.
        """
        from llm_backends import pcw

        if bos_id == "auto":
            bos_id = self.tokenizer.bos_token_id
        ids = [self.encode(w) for w in windows]
        with self._lock, self._torch.inference_mode():
            return pcw.encode_windows(self.model, ids, bos_id=bos_id, max_context=self.max_context)

    def pcw_generate(self, ctx: Any, task: str, *, max_new_tokens: int = 128, stop: Sequence[str] = ()) -> str:
        """Greedy continuation of ``task`` attending to every window of ``ctx`` (nothing re-encoded).

        Raises:
            BackendError: empty task, or longest window + task + max_new_tokens beyond the context.
        """
        from llm_backends import pcw

        task_ids = self.encode(task)
        if not task_ids:
            raise BackendError("empty prompt")
        with self._lock, self._torch.inference_mode():
            return pcw.greedy_generate(
                self.model, self.tokenizer, ctx, task_ids, max_new_tokens=max_new_tokens,
                eos_ids=self._eos_ids, stop=stop, max_context=self.max_context,
            )

    def pcw_classify(
        self,
        ctx: Any,
        task: str,
        labels: Sequence[str],
        *,
        content_free: Sequence[str] | None = None,
        ensemble: bool = False,
        ensemble_weights: Sequence[float] | None = None,
        top_first: int | None = None,
    ) -> Any:
        """Restricted-label classification of ``task`` on the windows of ``ctx``.

        Each label (a continuation of ``task``, e.g. ``" card arrival\n"``) is scored by
        its log-probability; only tokens that continue a valid label (a token trie over
        the labels) are read.

        Args:
            ctx: from :meth:`pcw_context`.
            task: the task text after the windows (e.g. ``"Question: ...\nIntent:"``).
            labels: the closed label set (distinct, each at least one token).
            content_free: task texts with the content removed (e.g. the task with the
                question replaced by ``"N/A"``): apply contextual calibration (Zhao et al., 2021).
            ensemble: score each window alone and combine (parallel ensemble,
                Yang et al., 2023) instead of PCW.
            ensemble_weights: per-window weights of the ensemble (default uniform).
            top_first: score only the labels under the ``top_first`` most probable valid
                first tokens (others get probability 0); ``None`` scores all exactly.

        Returns:
            :class:`llm_backends.pcw.LabelScores`.

        Raises:
            BackendError: empty task or label set, repeated labels, or too long for the context.
        """
        from llm_backends import pcw

        task_ids = self.encode(task)
        if not task_ids:
            raise BackendError("empty prompt")
        if not labels:
            raise BackendError("no labels to classify into")
        trie = pcw.LabelTrie([self.encode(lab) for lab in labels])
        need = ctx.max_window_length + len(task_ids) + trie.max_depth
        if need > self.max_context:
            raise BackendError(f"longest window + task + label need {need} positions; the model has {self.max_context}")
        cf = [self.encode(t) for t in content_free] if content_free else None
        if cf is not None and any(not t for t in cf):
            raise BackendError("a content-free task encodes to no tokens")
        with self._lock, self._torch.inference_mode():
            if ensemble:
                return pcw.ensemble_classify(
                    self.model, ctx, task_ids, labels, trie, weights=ensemble_weights, content_free_tasks=cf,
                    top_first=top_first,
                )
            return pcw.classify(self.model, ctx, task_ids, labels, trie, content_free_tasks=cf, top_first=top_first)

    def pcw_classify_batch(
        self,
        ctx: Any,
        tasks: Sequence[str],
        labels: Sequence[str],
        *,
        content_free: Sequence[str] | None = None,
        top_first: int | None = None,
    ) -> list[Any]:
        """:meth:`pcw_classify` for many tasks on the same windows, packed into two forward passes.

        Returns:
            One :class:`llm_backends.pcw.LabelScores` per task.

        Raises:
            BackendError: no task, an empty task or label set, or too long for the context.
        """
        from llm_backends import pcw

        if not labels:
            raise BackendError("no labels to classify into")
        task_ids = [self.encode(t) for t in tasks]
        if not task_ids or any(not t for t in task_ids):
            raise BackendError("empty prompt")
        trie = pcw.LabelTrie([self.encode(lab) for lab in labels])
        need = ctx.max_window_length + max(len(t) for t in task_ids) + trie.max_depth
        if need > self.max_context:
            raise BackendError(f"longest window + task + label need {need} positions; the model has {self.max_context}")
        cf = [self.encode(t) for t in content_free] if content_free else None
        with self._lock, self._torch.inference_mode():
            return pcw.classify_batch(self.model, ctx, task_ids, labels, trie, content_free_tasks=cf, top_first=top_first)

    def __repr__(self) -> str:
        return f"TransformersBackend(model={self.name!r}, device={self.device!r}, loaded_from={self.loaded_from!r})"
