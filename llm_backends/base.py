"""The ``LLMBackend`` protocol: what the router and the orchestrator need of a language model.

A backend turns text into text (``generate``, ``chat``) and scores given
continuations of a prompt (``score``): the log-probability the model assigns to
each continuation, summed over its tokens. Scoring a closed set of
continuations is how the router makes restricted choices (which expert, or
"none") without parsing free text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence, TypedDict, runtime_checkable

__all__ = ["LLMBackend", "Capabilities", "ChatMessage"]


class ChatMessage(TypedDict):
    """One chat turn: ``role`` is "system", "user" or "assistant"."""

    role: str
    content: str


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do beyond the protocol's minimum.

    Attributes:
        score: ``score`` returns real log-probabilities (local models); False for
            HTTP backends that cannot score arbitrary continuations.
        constrained_decoding: generation can be restricted by a grammar / JSON schema.
        pcw: Parallel Context Windows (Ratner et al., 2023) are supported.
        tool_calling: the backend accepts tool / function schemas natively.
    """

    score: bool = True
    constrained_decoding: bool = False
    pcw: bool = False
    tool_calling: bool = False


@runtime_checkable
class LLMBackend(Protocol):
    """A language model as mrkl uses it.

    Implementations: :class:`llm_backends.transformers_backend.TransformersBackend`
    (local Hugging Face folders and GGUF files).
    """

    name: str
    capabilities: Capabilities

    def generate(self, prompt: str, *, max_new_tokens: int = 128, stop: Sequence[str] = ()) -> str:
        """Greedy continuation of a raw prompt (no chat template).

        Args:
            prompt: the text to continue.
            max_new_tokens: upper bound on generated tokens.
            stop: strings that end generation; the returned text is cut before the first one.

        Returns:
            The generated text only (not the prompt).
        """
        ...

    def chat(self, messages: Sequence[ChatMessage], *, max_new_tokens: int = 256, stop: Sequence[str] = ()) -> str:
        """Greedy assistant reply to a chat, using the model's chat template."""
        ...

    def score(self, prompt: str, continuations: Sequence[str]) -> list[float]:
        """Summed log-probability (natural log, ≤ 0) of each continuation given the prompt.

        Args:
            prompt: shared context.
            continuations: candidate texts appended directly to the prompt.

        Returns:
            One float per continuation, in order: Σ_t log p(c_t | prompt, c_<t).
        """
        ...

    def count_tokens(self, text: str) -> int:
        """Number of tokens ``text`` encodes to (without special tokens)."""
        ...
