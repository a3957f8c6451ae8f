"""``LangChainBackend``: any langchain-core ``BaseChatModel`` as an :class:`~llm_backends.base.LLMBackend`.

This lets a MRKL system run on any chat model LangChain integrates (hosted APIs,
local servers, LangChain's fake models in tests). A chat model only returns
text, so the backend offers ``generate`` and ``chat`` but no ``score``:
``capabilities.score`` is False and :meth:`LangChainBackend.score` raises
:class:`~llm_backends.errors.BackendError`. The LLM router then chooses experts
by generating a name instead of scoring options (see ``router/llm_router.py``).

``langchain-core`` is imported when a backend is created, not when this module is.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from llm_backends.base import Capabilities, ChatMessage
from llm_backends.errors import BackendError

__all__ = ["LangChainBackend", "message_text"]

_ROLE_TO_TYPE = {"system": "system", "user": "human", "human": "human", "assistant": "ai", "ai": "ai"}


def message_text(message: Any) -> str:
    """The plain text of a LangChain message (or string).

    ``AIMessage.content`` is either a string or a list of content blocks (strings,
    or dicts with ``{"type": "text", "text": ...}``); the text blocks are joined and
    everything else (images, tool calls, reasoning blocks) is dropped.
    """
    content = getattr(message, "content", message)
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for block in content or []:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and block.get("type") == "text":
            parts.append(str(block.get("text", "")))
    return "".join(parts)


def _cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to the first stop string, after dropping leading blank lines and an opening code fence.

    Chat models often open a reply with a newline or a Markdown fence (e.g. a fenced json block);
    cutting at a stop of ``"\n"`` would then leave nothing.
    """
    if not stop:
        return text
    text = text.lstrip("\n\r ")
    if text.startswith("```"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
        text = text.replace("```", "")
    cut = len(text)
    for s in stop:
        if s:
            i = text.find(s)
            if 0 <= i < cut:
                cut = i
    return text[:cut]


class LangChainBackend:
    """Wrap a langchain-core ``BaseChatModel`` as an ``LLMBackend``.

    Args:
        model: any ``langchain_core.language_models.BaseChatModel`` instance.
        name: display name; default the model's ``_llm_type`` (e.g. ``"generic-fake-chat-model"``).
        max_tokens_kwarg: the keyword under which the model takes a generation budget
            (``"max_tokens"`` for most API models, ``"num_predict"`` for Ollama, ...).
            When set, ``max_new_tokens`` is passed under that name with every call;
            when None (default) the model's own limit applies, since an unknown keyword
            makes some models fail.
        pass_stop: pass ``stop`` to the model (most chat models accept it). The text is
            always also cut at the first stop string here, for models that ignore it.

    Capabilities: ``score=False`` (a chat model returns text, not log-probabilities of
    given continuations); ``tool_calling`` is True when the model's class implements
    ``bind_tools``.

    ``generate(prompt)`` sends the raw prompt as a single user message: a chat model has
    no raw-completion mode, so a prompt written for completion (e.g. ending in
    ``"Arguments: {\\""``) is answered as a chat turn. Stop strings and the prefill
    convention of the router still work because the reply is cut at the first stop.

    Raises (on construction):
        TypeError: ``model`` is not a ``BaseChatModel``.
        BackendError: ``langchain-core`` is not installed.
    """

    def __init__(
        self,
        model: Any,
        *,
        name: str | None = None,
        max_tokens_kwarg: str | None = None,
        pass_stop: bool = True,
    ) -> None:
        try:
            from langchain_core.language_models import BaseChatModel
        except ImportError as exc:  # pragma: no cover - langchain-core is a dependency
            raise BackendError("LangChainBackend needs langchain-core: pip install langchain-core") from exc
        if not isinstance(model, BaseChatModel):
            raise TypeError(f"LangChainBackend wraps a langchain-core BaseChatModel, got {type(model).__name__}")
        self.model = model
        self.max_tokens_kwarg = max_tokens_kwarg
        self.pass_stop = pass_stop
        try:
            llm_type = model._llm_type
        except Exception:  # noqa: BLE001 - a display name is not worth failing for
            llm_type = type(model).__name__
        self.name = name or f"langchain:{llm_type}"
        tool_calling = type(model).bind_tools is not BaseChatModel.bind_tools
        self.capabilities = Capabilities(score=False, constrained_decoding=False, pcw=False, tool_calling=tool_calling)

    # ------------------------------------------------------------ text
    def _messages(self, messages: Sequence[ChatMessage]) -> list[Any]:
        from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

        classes = {"system": SystemMessage, "human": HumanMessage, "ai": AIMessage}
        out = []
        for i, m in enumerate(messages):
            try:
                role, content = m["role"], m["content"]
            except (KeyError, TypeError):
                raise BackendError(f"chat message {i} must be a dict with 'role' and 'content', got {m!r}") from None
            kind = _ROLE_TO_TYPE.get(str(role).lower())
            if kind is None:
                raise BackendError(f"chat message {i} has unknown role {role!r} (system, user or assistant)")
            out.append(classes[kind](content=str(content)))
        return out

    def _invoke(self, lc_messages: list[Any], max_new_tokens: int, stop: Sequence[str]) -> str:
        kwargs: dict[str, Any] = {}
        if self.max_tokens_kwarg:
            kwargs[self.max_tokens_kwarg] = int(max_new_tokens)
        if self.pass_stop and stop:
            kwargs["stop"] = [s for s in stop if s]
        try:
            reply = self.model.invoke(lc_messages, **kwargs)
        except StopIteration:
            raise BackendError(f"the chat model {self.name} has no more replies") from None
        except Exception as exc:  # noqa: BLE001 - any provider error becomes one BackendError
            raise BackendError(f"the chat model {self.name} failed: {type(exc).__name__}: {exc}") from exc
        return _cut_at_stop(message_text(reply), stop)

    def generate(self, prompt: str, *, max_new_tokens: int = 128, stop: Sequence[str] = ()) -> str:
        """The chat model's reply to ``prompt`` sent as one user message, cut before the first stop string.

        Raises:
            BackendError: the model failed (network, provider error, a fake model out of replies).
        """
        from langchain_core.messages import HumanMessage

        return self._invoke([HumanMessage(content=prompt)], max_new_tokens, stop)

    def chat(self, messages: Sequence[ChatMessage], *, max_new_tokens: int = 256, stop: Sequence[str] = ()) -> str:
        """The chat model's reply to ``messages`` (roles system / user / assistant).

        Raises:
            BackendError: a malformed message, or the model failed.
        """
        return self._invoke(self._messages(messages), max_new_tokens, stop)

    def score(self, prompt: str, continuations: Sequence[str]) -> list[float]:
        """Not supported: a chat model cannot score given continuations.

        Raises:
            BackendError: always; check ``capabilities.score`` first.
        """
        raise BackendError(
            f"{self.name} cannot score continuations (a LangChain chat model returns text only); "
            "capabilities.score is False"
        )

    def count_tokens(self, text: str) -> int:
        """Tokens in ``text`` by the model's own tokenizer when it has one, else an estimate.

        LangChain's default token counter downloads the GPT-2 tokenizer from the
        hub, which mrkl never does; for models without their own ``get_token_ids``
        (or ``custom_get_token_ids``) the count is estimated as ``ceil(chars / 4)``.
        """
        from langchain_core.language_models import BaseLanguageModel

        own = getattr(self.model, "custom_get_token_ids", None) is not None or (
            type(self.model).get_token_ids is not BaseLanguageModel.get_token_ids
        )
        if own:
            try:
                return int(self.model.get_num_tokens(text))
            except Exception:  # noqa: BLE001 - fall back to the estimate
                pass
        return math.ceil(len(text) / 4)

    def __repr__(self) -> str:
        return f"<LangChainBackend {self.name}>"
