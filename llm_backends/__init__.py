"""Model runtimes for mrkl: the :class:`LLMBackend` protocol and its implementations.

This package depends on nothing else in mrkl, so it can be used on its own.
``TransformersBackend`` is imported lazily (it pulls in torch).
"""

from llm_backends.base import Capabilities, ChatMessage, LLMBackend
from llm_backends.errors import BackendError, ModelNotFoundError
from llm_backends.resolve import ALIASES, DEFAULT_MODEL, resolve_model

__all__ = [
    "LLMBackend",
    "Capabilities",
    "ChatMessage",
    "BackendError",
    "ModelNotFoundError",
    "ALIASES",
    "DEFAULT_MODEL",
    "resolve_model",
    "TransformersBackend",
    "load_backend",
]


def __getattr__(name: str):
    if name == "TransformersBackend":
        from llm_backends.transformers_backend import TransformersBackend

        return TransformersBackend
    raise AttributeError(name)


def load_backend(model: str = DEFAULT_MODEL, **kwargs):
    """Load a local model as a :class:`TransformersBackend` (see its arguments)."""
    from llm_backends.transformers_backend import TransformersBackend

    return TransformersBackend(model, **kwargs)
