"""Model compression: heterogeneous Llama blocks, Nemotron-NAS export, attention removal, FFN Fusion.

* :mod:`.blocks` — per-layer :class:`BlockConfig` (attention GQA/linear/no-op, FFN SwiGLU/linear/no-op, fused FFN).
* :mod:`.model` — :class:`HeteroLlamaForCausalLM`, built from any HF Llama with :func:`from_hf_llama`.
* :mod:`.nemotron_nas` — save/load in the DeciLM / Nemotron-NAS format (vLLM ``nemotron_nas``, llama.cpp ``deci``;
  vLLM does not implement ``replace_with_linear``).
* :mod:`.calibration` — self-distillation text from the parent model plus the project's docs.
* :mod:`.scoring` — replace-one-block scoring (KL to the parent) and attention removal (Puzzle, §4).
* :mod:`.fusion` — FFN Fusion (Bercovich et al., 2025): dependency matrix, run selection, fusion.
* :mod:`.distill` — short global distillation against the parent.
* :mod:`.pipeline` — the steps behind ``mrkl compress analyze`` and ``mrkl compress fuse``.
"""

from llm_backends.compression.blocks import AttentionConfig, BlockConfig, FFNConfig
from llm_backends.compression.model import HeteroCache, HeteroLlamaForCausalLM, from_hf_llama
from llm_backends.compression.nemotron_nas import (
    is_nemotron_nas_folder,
    load_nemotron_nas,
    save_nemotron_nas,
    validate_nemotron_nas_config,
)

__all__ = [
    "AttentionConfig",
    "BlockConfig",
    "FFNConfig",
    "HeteroCache",
    "HeteroLlamaForCausalLM",
    "from_hf_llama",
    "is_nemotron_nas_folder",
    "load_nemotron_nas",
    "save_nemotron_nas",
    "validate_nemotron_nas_config",
]
