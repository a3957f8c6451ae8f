"""Heterogeneous Llama, Nemotron-NAS export, attention removal and FFN Fusion.

Fast tests use a tiny random Llama (4 layers, hidden 96); slow ones the real SmolLM2-135M-Instruct.
"""

from __future__ import annotations

import json

import pytest
import torch

from llm_backends.compression import (
    AttentionConfig,
    BlockConfig,
    FFNConfig,
    from_hf_llama,
    load_nemotron_nas,
    save_nemotron_nas,
    validate_nemotron_nas_config,
)
from llm_backends.compression.blocks import ffn_mult_to_intermediate_size, intermediate_size_to_ffn_mult


def _tiny_hf(layers: int = 4, dtype: torch.dtype = torch.float32, tie: bool = True):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=101,
        hidden_size=96,
        intermediate_size=256,
        num_hidden_layers=layers,
        num_attention_heads=6,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=tie,
        rope_parameters={"rope_theta": 10000.0, "rope_type": "default"},
    )
    return LlamaForCausalLM(cfg).to(dtype).eval()


@pytest.fixture
def tiny():
    return from_hf_llama(_tiny_hf())


def _ids(n: int = 13, batch: int = 2, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 101, (batch, n), generator=g)


# ----------------------------------------------------------------- model
@pytest.mark.parametrize("tie", [True, False])
def test_parent_config_logits_equal_hf_float32(tie):
    hf = _tiny_hf(tie=tie)
    model = from_hf_llama(hf)
    ids = _ids()
    with torch.no_grad():
        diff = (hf(ids).logits - model(ids).logits).abs().max().item()
    assert diff <= 1e-5  # tolerance: 1e-5 absolute in float32 (the same kernels: observed 0)
    assert model.num_parameters() == sum(p.numel() for p in hf.parameters())
    assert model.sequential_depth() == 8


def test_parent_config_logits_equal_hf_float64():
    hf = _tiny_hf(dtype=torch.float64)
    model = from_hf_llama(hf)
    ids = _ids()
    with torch.no_grad():
        diff = (hf(ids).logits - model(ids).logits).abs().max().item()
    # HF's RMSNorm rounds through float32 even for float64 input; ours stays float64: 1e-6 bound
    assert diff <= 1e-6


def test_kv_cache_generation_equals_no_cache(tiny):
    tiny.layers[1].set_attention(AttentionConfig("no_op"))
    tiny.layers[2].set_attention(AttentionConfig("linear"))
    torch.nn.init.normal_(tiny.layers[2].self_attn.linear_attn.weight, std=0.05)
    ids = _ids(7)
    with_cache = tiny.generate(ids, max_new_tokens=12, use_cache=True)
    without = tiny.generate(ids, max_new_tokens=12, use_cache=False)
    assert with_cache.shape == (2, 19)
    assert torch.equal(with_cache, without)


def test_cache_logits_match_full_forward_and_crop(tiny):
    ids = _ids(10, batch=1)
    with torch.no_grad():
        full = tiny(ids).logits
        out = tiny(ids[:, :6], use_cache=True)
        rest = tiny(ids[:, 6:], cache=out.cache, use_cache=True)
        assert torch.allclose(rest.logits, full[:, 6:], atol=1e-5)
        rest.cache.crop(-4)  # remove the last 4 positions: back to the 6-token prefix
        assert rest.cache.get_seq_length() == 6
        again = tiny(ids[:, 6:], cache=rest.cache, use_cache=True)
    assert torch.allclose(again.logits, full[:, 6:], atol=1e-5)


def test_block_config_validation_and_bad_input(tiny):
    with pytest.raises(ValueError):
        AttentionConfig("gqa")  # needs n_kv_heads
    with pytest.raises(ValueError):
        FFNConfig("conv")
    with pytest.raises(ValueError):
        tiny.layers[0].set_attention(AttentionConfig("gqa", 4))  # 4 does not divide 6 heads
    with pytest.raises(ValueError):
        tiny(torch.zeros(1, 0, dtype=torch.long))
    with pytest.raises(ValueError):
        tiny(_ids(4, 1), attention_mask=torch.tensor([[0, 1, 1, 1]]))


def test_ffn_mult_width_rule():
    assert ffn_mult_to_intermediate_size(4.0, 576) == 1536
    assert ffn_mult_to_intermediate_size(12.0, 576) == 4608  # fused run of 3 FFNs of 1536
    assert ffn_mult_to_intermediate_size(1.0, 576) == 512  # 384 rounded up to 256·2
    assert intermediate_size_to_ffn_mult(3 * 1536, 576) == 12.0
    with pytest.raises(ValueError):
        intermediate_size_to_ffn_mult(1000, 576)


# ------------------------------------------------------------ save / load
def test_save_load_round_trip_bit_exact(tiny, tmp_path):
    tiny.layers[0].set_attention(AttentionConfig("gqa", 1))
    tiny.layers[1].set_attention(AttentionConfig("no_op"))
    tiny.layers[2].set_attention(AttentionConfig("linear"))
    tiny.layers[3].set_ffn(FFNConfig("linear"))
    tiny.layers[1].set_ffn(FFNConfig("no_op"))
    save_nemotron_nas(tiny, tmp_path / "m", extra={"note": "test"})
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    validate_nemotron_nas_config(cfg)
    assert cfg["architectures"] == ["DeciLMForCausalLM"] and cfg["model_type"] == "nemotron-nas"
    assert cfg["num_hidden_layers"] == 4 and len(cfg["block_configs"]) == 4
    assert cfg["block_configs"][0]["attention"] == {"n_heads_in_group": 6, "no_op": False, "replace_with_linear": False}
    assert cfg["block_configs"][1] == {
        "attention": {"n_heads_in_group": None, "no_op": True, "replace_with_linear": False},
        "ffn": {"ffn_mult": None, "no_op": True, "replace_with_linear": False},
    }
    assert cfg["block_configs"][2]["attention"]["replace_with_linear"] is True
    assert cfg["block_configs"][3]["ffn"]["replace_with_linear"] is True
    assert cfg["block_configs"][0]["ffn"]["ffn_mult"] == 4.0  # 2·4·96/3 = 256
    assert cfg["mrkl_compression"]["note"] == "test"
    loaded = load_nemotron_nas(tmp_path / "m")
    assert loaded.block_configs == tiny.block_configs
    a, b = tiny.state_dict(), loaded.state_dict()
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    ids = _ids()
    with torch.no_grad():
        assert torch.equal(tiny(ids).logits, loaded(ids).logits)


def test_load_rejects_bad_config_and_weights(tiny, tmp_path):
    save_nemotron_nas(tiny, tmp_path / "m")
    cfg_path = tmp_path / "m" / "config.json"
    good = json.loads(cfg_path.read_text())
    bad = dict(good, block_configs=good["block_configs"][:3])
    with pytest.raises(ValueError, match="block_configs has 3 entries"):
        validate_nemotron_nas_config(bad)
    bad = json.loads(json.dumps(good))
    bad["block_configs"][0]["attention"]["n_heads_in_group"] = 4
    bad["block_configs"][1]["ffn"]["no_op"] = "yes"
    with pytest.raises(ValueError, match="n_heads_in_group=4.*ffn.no_op"):
        validate_nemotron_nas_config(bad)
    with pytest.raises(ValueError, match="architectures"):
        validate_nemotron_nas_config(dict(good, architectures=["LlamaForCausalLM"]))
    # config says layer 0 has no attention, but the weights have it
    bad = json.loads(json.dumps(good))
    bad["block_configs"][0]["attention"] = {"n_heads_in_group": None, "no_op": True, "replace_with_linear": False}
    cfg_path.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="unexpected"):
        load_nemotron_nas(tmp_path / "m")
    cfg_path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_nemotron_nas(tmp_path / "m")
    with pytest.raises(FileNotFoundError):
        load_nemotron_nas(tmp_path / "nothing")
