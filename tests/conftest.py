"""Shared fixtures: a scripted backend for fast tests, the real SmolLM2 for slow ones."""

from __future__ import annotations

import os
from typing import Callable, Sequence

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from llm_backends.base import Capabilities  # noqa: E402


class ScriptedBackend:
    """A deterministic stand-in for a language model.

    ``score`` returns ``scorer(prompt, continuation)`` for each continuation;
    ``generate`` pops the next scripted output (or calls ``generator``);
    ``chat`` returns ``chat_reply``. Every call is recorded.
    """

    name = "scripted"
    capabilities = Capabilities(score=True)

    def __init__(
        self,
        scorer: Callable[[str, str], float] | None = None,
        outputs: Sequence[str] = (),
        chat_reply: str = "I am the fallback.",
        generator: Callable[[str], str] | None = None,
    ) -> None:
        self.scorer = scorer or (lambda p, c: -1.0)
        self.outputs = list(outputs)
        self.chat_reply = chat_reply
        self.generator = generator
        self.calls: list[tuple[str, str]] = []

    def score(self, prompt: str, continuations: Sequence[str]) -> list[float]:
        self.calls.append(("score", prompt))
        return [self.scorer(prompt, c) for c in continuations]

    def generate(self, prompt: str, *, max_new_tokens: int = 128, stop: Sequence[str] = ()) -> str:
        self.calls.append(("generate", prompt))
        if self.generator is not None:
            return self.generator(prompt)
        if not self.outputs:
            raise AssertionError("ScriptedBackend ran out of scripted outputs")
        return self.outputs.pop(0)

    def chat(self, messages, *, max_new_tokens: int = 256, stop: Sequence[str] = ()) -> str:
        self.calls.append(("chat", messages[-1]["content"]))
        return self.chat_reply

    def count_tokens(self, text: str) -> int:
        return len(text.split())


def card_scorer(preferred: str) -> Callable[[str, str], float]:
    """Channel scoring stand-in: the card of ``preferred`` gives the question the highest score."""

    def scorer(prompt: str, continuation: str) -> float:
        return -1.0 if prompt.startswith(f"Expert: {preferred}\n") else -9.0

    return scorer


@pytest.fixture
def scripted():
    return ScriptedBackend


@pytest.fixture(scope="session")
def smollm2():
    """The real SmolLM2-135M-Instruct (converted from its GGUF once, then cached)."""
    from llm_backends.transformers_backend import TransformersBackend

    return TransformersBackend("smollm2-135m-instruct", progress=None)


@pytest.fixture
def tiny_llama(smollm2, tmp_path):
    """``make(layers, kv_heads) -> folder``: a tiny random Llama (hidden 48, 3 heads, FFN 256,
    seed 0) saved with SmolLM2's tokenizer under ``tmp_path/"tiny"``, for CLI tests that take seconds."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    def make(layers: int, kv_heads: int):
        torch.manual_seed(0)
        cfg = LlamaConfig(
            vocab_size=len(smollm2.tokenizer), hidden_size=48, intermediate_size=256, num_hidden_layers=layers,
            num_attention_heads=3, num_key_value_heads=kv_heads, max_position_embeddings=2048, tie_word_embeddings=True,
            rope_parameters={"rope_theta": 10000.0, "rope_type": "default"}, eos_token_id=smollm2.tokenizer.eos_token_id,
        )
        src = tmp_path / "tiny"
        LlamaForCausalLM(cfg).save_pretrained(src)
        smollm2.tokenizer.save_pretrained(src)
        return src

    return make
