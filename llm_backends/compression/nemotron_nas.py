"""Save and load a heterogeneous Llama in the DeciLM / Nemotron-NAS checkpoint format.

A folder holds ``model.safetensors`` (Llama tensor names; see
:mod:`llm_backends.compression.model`), the tokenizer files, and ``config.json``
with ``architectures: ["DeciLMForCausalLM"]``, ``model_type: "nemotron-nas"`` and
one ``block_configs`` entry per layer::

    {"attention": {"n_heads_in_group": 3, "no_op": false, "replace_with_linear": false},
     "ffn": {"ffn_mult": 4.0, "no_op": false, "replace_with_linear": false}}

(``num_key_value_heads`` and ``intermediate_size`` are ``null``: they vary per layer.)
The FFN width is ``round_up(int(2·ffn_mult·hidden/3), 256)``; a fused run of ``k``
SwiGLU FFNs of width 1536 (hidden 576) is one FFN of width ``k·1536``, ``ffn_mult = 4k``.
This is the layout of NVIDIA's Llama-Nemotron checkpoints, served by vLLM
(``nemotron_nas``) and llama.cpp (``deci`` architecture). **vLLM's
``nemotron_nas`` does not implement ``replace_with_linear``**: export models with
no-op or GQA attention / no-op or SwiGLU FFNs only, if vLLM is the target. mrkl's
own provenance (which parent layers a fused FFN replaces) sits in the extra key
``mrkl_compression``; other readers ignore it.

A SwiGLU width the format cannot express (not a multiple of 256, e.g. Puzzle's 1152 or 384
for SmolLM2) is written zero-padded to the next multiple of 256: the extra channels have
zero gate, up and down weights, so they add ``silu(0)·0 = 0`` and the function is unchanged
for every reader; ``mrkl_compression.intermediate_sizes`` keeps the true widths, and
:func:`load_nemotron_nas` trims the padding off again. No ``auto_map`` / remote code is
written, so plain ``transformers`` cannot load the folder; mrkl's
``TransformersBackend`` loads it with :func:`load_nemotron_nas`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from llm_backends.compression.blocks import AttentionConfig, BlockConfig, FFNConfig
from llm_backends.compression.model import HeteroLlamaForCausalLM

__all__ = ["save_nemotron_nas", "load_nemotron_nas", "validate_nemotron_nas_config", "is_nemotron_nas_folder"]

MODEL_TYPE = "nemotron-nas"
ARCHITECTURE = "DeciLMForCausalLM"
WEIGHTS = "model.safetensors"


def is_nemotron_nas_folder(path: str | os.PathLike[str]) -> bool:
    """True when ``path/config.json`` exists and says ``model_type: "nemotron-nas"`` (unreadable: False)."""
    try:
        return json.loads((Path(path) / "config.json").read_text()).get("model_type") == MODEL_TYPE
    except (OSError, ValueError, AttributeError):
        return False


def validate_nemotron_nas_config(config: dict[str, Any]) -> None:
    """Check the Nemotron-NAS fields of a ``config.json`` dict.

    Raises:
        ValueError: listing every problem: wrong ``architectures`` / ``model_type``, a
            ``block_configs`` length that differs from ``num_hidden_layers``, a missing or
            mistyped ``attention`` (``n_heads_in_group``, ``no_op``, ``replace_with_linear``) or
            ``ffn`` (``ffn_mult``, ``no_op``, ``replace_with_linear``) field, contradictory flags,
            ``n_heads_in_group`` not dividing ``num_attention_heads``.
    """
    errors: list[str] = []
    if config.get("architectures") != [ARCHITECTURE]:
        errors.append(f"architectures must be [{ARCHITECTURE!r}], got {config.get('architectures')!r}")
    if config.get("model_type") != MODEL_TYPE:
        errors.append(f"model_type must be {MODEL_TYPE!r}, got {config.get('model_type')!r}")
    for key in ("hidden_size", "num_attention_heads", "num_hidden_layers", "vocab_size"):
        if not isinstance(config.get(key), int) or config[key] < 1:
            errors.append(f"{key} must be a positive integer, got {config.get(key)!r}")
    blocks = config.get("block_configs")
    if not isinstance(blocks, list):
        errors.append("block_configs must be a list")
        blocks = []
    elif isinstance(config.get("num_hidden_layers"), int) and len(blocks) != config["num_hidden_layers"]:
        errors.append(f"block_configs has {len(blocks)} entries but num_hidden_layers is {config['num_hidden_layers']}")
    n_heads = config.get("num_attention_heads") if isinstance(config.get("num_attention_heads"), int) else None
    for i, b in enumerate(blocks):
        if not isinstance(b, dict) or not isinstance(b.get("attention"), dict) or not isinstance(b.get("ffn"), dict):
            errors.append(f"block {i}: needs 'attention' and 'ffn' objects")
            continue
        att, ffn = b["attention"], b["ffn"]
        for part, d, keys in (("attention", att, ("n_heads_in_group",)), ("ffn", ffn, ("ffn_mult",))):
            for flag in ("no_op", "replace_with_linear"):
                if not isinstance(d.get(flag), bool):
                    errors.append(f"block {i}: {part}.{flag} must be true/false, got {d.get(flag)!r}")
            if keys[0] not in d:
                errors.append(f"block {i}: {part}.{keys[0]} is missing")
            if d.get("no_op") is True and d.get("replace_with_linear") is True:
                errors.append(f"block {i}: {part} is both no_op and replace_with_linear")
        if not att.get("no_op") and not att.get("replace_with_linear"):
            g = att.get("n_heads_in_group")
            if not isinstance(g, int) or isinstance(g, bool) or g < 1 or (n_heads and n_heads % g):
                errors.append(f"block {i}: attention.n_heads_in_group={g!r} must divide num_attention_heads={n_heads}")
        if not ffn.get("no_op") and not ffn.get("replace_with_linear"):
            m = ffn.get("ffn_mult")
            if not isinstance(m, (int, float)) or isinstance(m, bool) or m <= 0:
                errors.append(f"block {i}: ffn.ffn_mult={m!r} must be a positive number")
    if errors:
        raise ValueError("invalid Nemotron-NAS config: " + "; ".join(errors))


def _padded_width(width: int) -> int:
    return width if width % 256 == 0 else width + 256 - width % 256


def _stored_block(b: BlockConfig) -> BlockConfig:
    """``b`` with its SwiGLU width padded to what the format can express."""
    if b.ffn.kind != "swiglu" or b.ffn.intermediate_size % 256 == 0:
        return b
    return BlockConfig(b.attention, FFNConfig("swiglu", _padded_width(b.ffn.intermediate_size), b.ffn.fused_from))


def _padded_state(model: HeteroLlamaForCausalLM) -> dict[str, torch.Tensor]:
    """The state dict with every SwiGLU zero-padded to a multiple of 256 channels."""
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items() if "rotary_emb" not in k}
    for i, b in enumerate(model.block_configs):
        if b.ffn.kind != "swiglu" or b.ffn.intermediate_size % 256 == 0:
            continue
        extra = _padded_width(b.ffn.intermediate_size) - b.ffn.intermediate_size
        pre = f"model.layers.{i}.mlp."
        for name in ("gate_proj", "up_proj"):
            w = state[pre + name + ".weight"]
            state[pre + name + ".weight"] = torch.cat([w, w.new_zeros(extra, w.shape[1])]).contiguous()
        w = state[pre + "down_proj.weight"]
        state[pre + "down_proj.weight"] = torch.cat([w, w.new_zeros(w.shape[0], extra)], dim=1).contiguous()
    return state


def _config_dict(model: HeteroLlamaForCausalLM, extra: dict[str, Any] | None) -> dict[str, Any]:
    cfg = model.config.to_dict()
    hidden, n_heads = cfg["hidden_size"], cfg["num_attention_heads"]
    true_blocks = model.block_configs
    blocks = [_stored_block(b) for b in true_blocks]
    cfg.update(
        architectures=[ARCHITECTURE],
        model_type=MODEL_TYPE,
        num_hidden_layers=len(blocks),
        num_key_value_heads=None,
        intermediate_size=None,
        tie_word_embeddings=model.tied,
        dtype=str(next(model.parameters()).dtype).removeprefix("torch."),
        block_configs=[{"attention": b.attention.to_nemotron_nas(n_heads), "ffn": b.ffn.to_nemotron_nas(hidden)} for b in blocks],
    )
    for key in ("auto_map", "_name_or_path", "transformers_version", "torch_dtype"):
        cfg.pop(key, None)
    cfg["mrkl_compression"] = {
        "fused_from": [list(b.ffn.fused_from) if b.ffn.fused_from else None for b in blocks],
        **(extra or {}),
    }
    if blocks != true_blocks:
        cfg["mrkl_compression"]["intermediate_sizes"] = [b.ffn.intermediate_size for b in true_blocks]
    return cfg


def save_nemotron_nas(
    model: HeteroLlamaForCausalLM,
    out_dir: str | os.PathLike[str],
    tokenizer: Any = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` (and ``tokenizer``) as a Nemotron-NAS folder.

    Args:
        model: the model; weights are written in their current dtype.
        out_dir: folder (created; existing files of the same names are replaced).
        tokenizer: a transformers tokenizer to save beside it (``mrkl ask --model DIR`` needs one).
        extra: JSON-able facts stored under ``config["mrkl_compression"]`` (e.g. the removed layers).

    Returns:
        The folder path.

    Raises:
        OSError: the folder cannot be written.
    """
    from safetensors.torch import save_file

    out = Path(out_dir)
    cfg = _config_dict(model, extra)
    validate_nemotron_nas_config(cfg)
    out.mkdir(parents=True, exist_ok=True)
    state = _padded_state(model)
    if model.tied:
        state.pop("lm_head.weight", None)
    tmp = out / (WEIGHTS + ".tmp")
    save_file(state, str(tmp), metadata={"format": "pt"})
    tmp.replace(out / WEIGHTS)
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    eos = model.config.eos_token_id
    gen = {"bos_token_id": model.config.bos_token_id, "eos_token_id": eos, "do_sample": False}
    (out / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
    return out


def _trim_padding(
    blocks: list[BlockConfig], state: dict[str, torch.Tensor], sizes: list[Any]
) -> tuple[list[BlockConfig], dict[str, torch.Tensor]]:
    """Undo :func:`_padded_state` where the padded channels are all zero (otherwise keep them)."""
    out = list(blocks)
    for i, (b, w) in enumerate(zip(blocks, sizes)):
        if b.ffn.kind != "swiglu" or not isinstance(w, int) or not 0 < w < b.ffn.intermediate_size:
            continue
        pre = f"model.layers.{i}.mlp."
        g, u, d = state[pre + "gate_proj.weight"], state[pre + "up_proj.weight"], state[pre + "down_proj.weight"]
        if g[w:].any() or u[w:].any() or d[:, w:].any():
            continue
        state[pre + "gate_proj.weight"], state[pre + "up_proj.weight"] = g[:w].contiguous(), u[:w].contiguous()
        state[pre + "down_proj.weight"] = d[:, :w].contiguous()
        out[i] = BlockConfig(b.attention, FFNConfig("swiglu", w, b.ffn.fused_from))
    return out, state


def load_nemotron_nas(
    path: str | os.PathLike[str], dtype: torch.dtype | None = None, device: str = "cpu"
) -> HeteroLlamaForCausalLM:
    """Load a Nemotron-NAS folder written by :func:`save_nemotron_nas` (or NVIDIA's, if it uses only
    the block kinds listed in the module docstring).

    Args:
        path: the folder.
        dtype: convert the weights to this dtype (default: as stored).
        device: torch device.

    Returns:
        The model in eval mode; tensors equal the stored ones bit for bit when ``dtype`` is None.

    Raises:
        ValueError: invalid ``config.json`` (see :func:`validate_nemotron_nas_config`), or weights
            missing / unexpected / of the wrong shape.
        FileNotFoundError: no ``config.json`` or no ``*.safetensors``.
    """
    from safetensors.torch import load_file
    from transformers import LlamaConfig

    folder = Path(path)
    cfg_file = folder / "config.json"
    if not cfg_file.is_file():
        raise FileNotFoundError(f"{folder} has no config.json")
    try:
        cfg = json.loads(cfg_file.read_text())
    except ValueError as exc:
        raise ValueError(f"{cfg_file} is not valid JSON: {exc}") from None
    validate_nemotron_nas_config(cfg)
    hidden, n_heads = cfg["hidden_size"], cfg["num_attention_heads"]
    fused = (cfg.get("mrkl_compression") or {}).get("fused_from") or [None] * len(cfg["block_configs"])
    blocks = [
        BlockConfig(
            AttentionConfig.from_nemotron_nas(b["attention"], n_heads),
            FFNConfig.from_nemotron_nas(b["ffn"], hidden, tuple(f or ())),
        )
        for b, f in zip(cfg["block_configs"], fused)
    ]
    llama = {k: v for k, v in cfg.items() if k not in ("block_configs", "mrkl_compression", "architectures", "model_type", "auto_map")}
    n_kv = next((b.attention.n_kv_heads for b in blocks if b.attention.kind == "gqa"), n_heads)
    width = next((b.ffn.intermediate_size for b in blocks if b.ffn.kind == "swiglu"), 4 * hidden)
    llama.update(num_key_value_heads=n_kv, intermediate_size=width, architectures=["LlamaForCausalLM"])
    config = LlamaConfig(**llama)
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder} has no .safetensors weights")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_file(str(f)))
    with torch.device("meta"):
        model = HeteroLlamaForCausalLM(config, blocks)
    expected = {k: v for k, v in model.state_dict().items() if "rotary_emb" not in k}
    if model.tied:
        expected.pop("lm_head.weight", None)
    missing, unexpected = set(expected) - set(state), set(state) - set(expected)
    if missing or unexpected:
        raise ValueError(
            f"weights do not match block_configs: missing {sorted(missing)[:4]}, unexpected {sorted(unexpected)[:4]}"
        )
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise ValueError(f"weight {k} has shape {tuple(state[k].shape)}, block_configs need {tuple(v.shape)}")
    true_sizes = (cfg.get("mrkl_compression") or {}).get("intermediate_sizes")
    if isinstance(true_sizes, list) and len(true_sizes) == len(blocks):
        blocks, state = _trim_padding(blocks, state, true_sizes)
        with torch.device("meta"):
            model = HeteroLlamaForCausalLM(config, blocks)
    tied = model.tied
    model.load_state_dict(state, strict=False, assign=True)
    if tied:
        model.lm_head.weight = model.model.embed_tokens.weight
    # the rotary buffers were built on the meta device: rebuild them
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    model.model.rotary_emb = LlamaRotaryEmbedding(config)
    model.to(device=device)
    if dtype is not None:
        model.to(dtype=dtype)
    return model.eval()
