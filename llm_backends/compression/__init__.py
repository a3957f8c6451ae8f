"""Model compression: heterogeneous Llama blocks, Nemotron-NAS export, attention removal, FFN Fusion, Puzzle.

* :mod:`.blocks` — per-layer :class:`BlockConfig` (attention GQA/linear/no-op, FFN SwiGLU/linear/no-op, fused FFN).
* :mod:`.model` — :class:`HeteroLlamaForCausalLM`, built from any HF Llama with :func:`from_hf_llama`.
* :mod:`.nemotron_nas` — save/load in the DeciLM / Nemotron-NAS format (vLLM ``nemotron_nas``, llama.cpp ``deci``;
  vLLM does not implement ``replace_with_linear``).
* :mod:`.calibration` — self-distillation text from the parent model plus the project's docs.
* :mod:`.scoring` — replace-one-block scoring (KL to the parent) and attention removal (Puzzle, §4).
* :mod:`.fusion` — FFN Fusion (Bercovich et al., 2025): dependency matrix, run selection, fusion.
* :mod:`.distill` — short global distillation against the parent.
* :mod:`.library` — Puzzle's block library (§3.1): cheaper attention / FFN variants initialised from the parent.
* :mod:`.bld` — blockwise local distillation of the library (§3.2), parallel and resumable.
* :mod:`.puzzle` — replace-one-block scores of the library, realise, search, and ``mrkl compress puzzle``'s pipeline.
* :mod:`.mip` — Puzzle's search (§4.2): :func:`solve_mip` (scipy ``milp``/HiGHS) and the :func:`greedy_search` baseline.
* :mod:`.costs` — measured per-variant costs (:class:`CostTable`, :func:`measure_costs`, :func:`measure_model_latency`).
* :mod:`.pipeline` — the steps behind ``mrkl compress analyze`` and ``mrkl compress fuse``.
"""

from llm_backends.compression.blocks import AttentionConfig, BlockConfig, FFNConfig
from llm_backends.compression.costs import CostTable, measure_costs, measure_model_latency
from llm_backends.compression.mip import InfeasibleBudgetError, SearchResult, greedy_search, solve_mip
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
    "CostTable",
    "FFNConfig",
    "HeteroCache",
    "HeteroLlamaForCausalLM",
    "InfeasibleBudgetError",
    "SearchResult",
    "from_hf_llama",
    "greedy_search",
    "is_nemotron_nas_folder",
    "load_nemotron_nas",
    "measure_costs",
    "measure_model_latency",
    "save_nemotron_nas",
    "solve_mip",
    "validate_nemotron_nas_config",
]
