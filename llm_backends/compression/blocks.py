"""Per-layer block configurations of a heterogeneous Llama (Puzzle / Nemotron-NAS style).

Every decoder layer has its own :class:`BlockConfig`: an :class:`AttentionConfig`
(grouped-query attention with some number of KV heads, a linear map on the current
token, or no-op) and an :class:`FFNConfig` (SwiGLU of some intermediate width, a
linear map, or no-op). A *fused* FFN (FFN Fusion, Bercovich et al., 2025, §3) is a
SwiGLU whose width is the sum of the widths it replaces; ``fused_from`` keeps the
parent layers it stands for.

The serialised form is the DeciLM / Nemotron-NAS ``block_configs`` entry
(Bercovich et al., 2024, "Puzzle", App. on the Nemotron-51B checkpoint format):
attention ``{"n_heads_in_group", "no_op", "replace_with_linear"}`` and FFN
``{"ffn_mult", "no_op", "replace_with_linear"}`` where the SwiGLU intermediate
size is ``round_up(int(2 * ffn_mult * hidden / 3), 256)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "AttentionConfig",
    "FFNConfig",
    "BlockConfig",
    "ffn_mult_to_intermediate_size",
    "intermediate_size_to_ffn_mult",
]

ATTENTION_KINDS = ("gqa", "linear", "no_op")
FFN_KINDS = ("swiglu", "linear", "no_op")


def ffn_mult_to_intermediate_size(ffn_mult: float, hidden_size: int) -> int:
    """SwiGLU width of a Nemotron-NAS ``ffn_mult``: ``int(2·ffn_mult·hidden/3)`` rounded up to a multiple of 256."""
    size = int(2 * ffn_mult * hidden_size / 3)
    return size if size % 256 == 0 else size + 256 - size % 256


def intermediate_size_to_ffn_mult(intermediate_size: int, hidden_size: int) -> float:
    """The ``ffn_mult`` whose width (see :func:`ffn_mult_to_intermediate_size`) is ``intermediate_size``.

    Raises:
        ValueError: no ``ffn_mult`` gives this width (it is not a multiple of 256), so the
            Nemotron-NAS format cannot express it.
    """
    mult = 3 * intermediate_size / (2 * hidden_size)
    if ffn_mult_to_intermediate_size(mult, hidden_size) != intermediate_size:
        raise ValueError(
            f"FFN width {intermediate_size} cannot be written as a Nemotron-NAS ffn_mult "
            f"(widths are rounded up to a multiple of 256)"
        )
    return mult


@dataclass(frozen=True)
class AttentionConfig:
    """One layer's attention sub-block.

    Attributes:
        kind: ``"gqa"`` (grouped-query attention), ``"linear"`` (one ``hidden×hidden``
            matrix applied to the current token's normalised state) or ``"no_op"``.
        n_kv_heads: number of key/value heads (``gqa`` only); must divide the query heads.
    """

    kind: str = "gqa"
    n_kv_heads: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ATTENTION_KINDS:
            raise ValueError(f"attention kind must be one of {ATTENTION_KINDS}, got {self.kind!r}")
        if self.kind == "gqa" and (self.n_kv_heads is None or self.n_kv_heads < 1):
            raise ValueError("gqa attention needs n_kv_heads >= 1")

    @property
    def no_op(self) -> bool:
        return self.kind == "no_op"

    def to_nemotron_nas(self, n_heads: int) -> dict[str, Any]:
        """The Nemotron-NAS ``attention`` dict for a model with ``n_heads`` query heads."""
        return {
            "n_heads_in_group": n_heads // self.n_kv_heads if self.kind == "gqa" else None,
            "no_op": self.kind == "no_op",
            "replace_with_linear": self.kind == "linear",
        }

    @classmethod
    def from_nemotron_nas(cls, d: dict[str, Any], n_heads: int) -> "AttentionConfig":
        """Parse a Nemotron-NAS ``attention`` dict.

        Raises:
            ValueError: contradictory flags, or ``n_heads_in_group`` missing / not dividing ``n_heads``.
        """
        no_op, linear = bool(d.get("no_op", False)), bool(d.get("replace_with_linear", False))
        if no_op and linear:
            raise ValueError("attention block has both no_op and replace_with_linear")
        if no_op:
            return cls("no_op")
        if linear:
            return cls("linear")
        group = d.get("n_heads_in_group")
        if not isinstance(group, int) or group < 1 or n_heads % group:
            raise ValueError(f"attention n_heads_in_group={group!r} must be a positive divisor of {n_heads} heads")
        return cls("gqa", n_heads // group)


@dataclass(frozen=True)
class FFNConfig:
    """One layer's feed-forward sub-block.

    Attributes:
        kind: ``"swiglu"``, ``"linear"`` (one ``hidden×hidden`` matrix) or ``"no_op"``.
        intermediate_size: SwiGLU width (``swiglu`` only).
        fused_from: parent layer indices whose FFNs this one computes in parallel
            (FFN Fusion); empty for an ordinary block.
    """

    kind: str = "swiglu"
    intermediate_size: int | None = None
    fused_from: tuple[int, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.kind not in FFN_KINDS:
            raise ValueError(f"ffn kind must be one of {FFN_KINDS}, got {self.kind!r}")
        if self.kind == "swiglu" and (self.intermediate_size is None or self.intermediate_size < 1):
            raise ValueError("swiglu ffn needs intermediate_size >= 1")
        if self.fused_from and self.kind != "swiglu":
            raise ValueError("only a swiglu ffn can be fused")

    @property
    def no_op(self) -> bool:
        return self.kind == "no_op"

    def to_nemotron_nas(self, hidden_size: int) -> dict[str, Any]:
        """The Nemotron-NAS ``ffn`` dict (raises ValueError for a width the format cannot express)."""
        return {
            "ffn_mult": intermediate_size_to_ffn_mult(self.intermediate_size, hidden_size)
            if self.kind == "swiglu"
            else None,
            "no_op": self.kind == "no_op",
            "replace_with_linear": self.kind == "linear",
        }

    @classmethod
    def from_nemotron_nas(cls, d: dict[str, Any], hidden_size: int, fused_from: tuple[int, ...] = ()) -> "FFNConfig":
        """Parse a Nemotron-NAS ``ffn`` dict (ValueError on contradictory flags or a missing ``ffn_mult``)."""
        no_op, linear = bool(d.get("no_op", False)), bool(d.get("replace_with_linear", False))
        if no_op and linear:
            raise ValueError("ffn block has both no_op and replace_with_linear")
        if no_op:
            return cls("no_op")
        if linear:
            return cls("linear")
        mult = d.get("ffn_mult")
        if not isinstance(mult, (int, float)) or isinstance(mult, bool) or mult <= 0:
            raise ValueError(f"ffn ffn_mult={mult!r} must be a positive number")
        return cls("swiglu", ffn_mult_to_intermediate_size(float(mult), hidden_size), tuple(fused_from))


@dataclass(frozen=True)
class BlockConfig:
    """One decoder layer: its attention and its FFN sub-block."""

    attention: AttentionConfig
    ffn: FFNConfig

    def describe(self) -> str:
        """Short text such as ``"gqa3+swiglu1536"`` or ``"noop+swiglu4608[3,4,5]"``."""
        a = {"gqa": f"gqa{self.attention.n_kv_heads}", "linear": "linear", "no_op": "noop"}[self.attention.kind]
        f = {"swiglu": f"swiglu{self.ffn.intermediate_size}", "linear": "linear", "no_op": "noop"}[self.ffn.kind]
        if self.ffn.fused_from:
            f += "[" + ",".join(map(str, self.ffn.fused_from)) + "]"
        return f"{a}+{f}"
