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


# ------------------------------------------------------------ FFN Fusion
from llm_backends.compression.fusion import (  # noqa: E402
    dependency_matrix,
    ffn_runs,
    fuse_ffns,
    fuse_groups,
    parallel_ffn_sum,
    parent_layer_map,
    plot_dependency_matrix,
    select_fusion_groups,
)
from llm_backends.compression.scoring import (  # noqa: E402
    kl_divergence,
    remove_attention,
    score_attention_removal,
)


def _tiny64(layers: int = 6) -> "object":
    model = from_hf_llama(_tiny_hf(layers=layers, dtype=torch.float64))
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for layer in model.layers:  # norms of weight 1 would hide a folding mistake
            layer.post_attention_layernorm.weight.copy_(1 + 0.3 * torch.randn(96, generator=g, dtype=torch.float64))
    return model


def test_fused_block_equals_parallel_sum_float64():
    model = remove_attention(_tiny64(), [2, 3, 4])
    assert ffn_runs(model) == [[1, 2, 3, 4]]
    fused = fuse_ffns(model, [1, 2, 3, 4])
    assert len(fused.layers) == 3
    assert fused.layers[1].block_config.ffn == FFNConfig("swiglu", 4 * 256, (1, 2, 3, 4))
    assert parent_layer_map(fused) == [(0,), (1, 2, 3, 4), (5,)]
    x = torch.randn(2, 7, 96, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        diff = (fused.layers[1].ffn_delta(x) - parallel_ffn_sum(model, [1, 2, 3, 4], x)).abs().max().item()
    assert diff < 1e-5  # observed ~1e-16
    # the whole fused model equals the attention-removed model with the run computed in parallel
    ids = _ids()
    with torch.no_grad():
        B, T = ids.shape
        h = model.model.embed_tokens(ids)
        cos, sin = model.rope(torch.arange(T).expand(B, T), h)
        h, _ = model.layers[0](h, cos, sin)
        d, _ = model.layers[1].attention_delta(h, cos, sin)
        h = h + d
        h = h + parallel_ffn_sum(model, [1, 2, 3, 4], h)
        h, _ = model.layers[5](h, cos, sin)
        ref = model.logits_from_hidden(h)
        assert (fused(ids).logits - ref).abs().max().item() < 1e-10
        # and differs from the sequential model (fusion is an approximation of it)
        assert (model(ids).logits - ref).abs().max().item() > 1e-6
    assert fused.sequential_depth() == 6 + 6 - 3 - 3  # 3 attentions removed, 4 FFNs became 1


def test_fuse_rejects_what_cannot_be_fused():
    model = remove_attention(_tiny64(), [3])
    with pytest.raises(ValueError, match="attention between"):
        fuse_ffns(model, [1, 2, 3])
    with pytest.raises(ValueError, match="consecutive"):
        fuse_ffns(model, [2, 4])
    with pytest.raises(ValueError, match="consecutive"):
        fuse_ffns(model, [2])
    model.layers[3].set_ffn(FFNConfig("linear"))
    with pytest.raises(ValueError, match="SwiGLU"):
        fuse_ffns(model, [2, 3])
    with pytest.raises(ValueError):
        remove_attention(model, [9])


def test_fused_model_saves_as_wide_ffn(tmp_path):
    model = remove_attention(_tiny64(), [2, 3])
    fused = fuse_groups(model, [[1, 2, 3]])
    save_nemotron_nas(fused, tmp_path / "f")
    cfg = json.loads((tmp_path / "f" / "config.json").read_text())
    assert cfg["num_hidden_layers"] == 4
    # width 3·256 for hidden 96: ffn_mult = 3·768 / (2·96) = 12 = 4·3
    assert cfg["block_configs"][1]["ffn"] == {"ffn_mult": 12.0, "no_op": False, "replace_with_linear": False}
    assert cfg["mrkl_compression"]["fused_from"] == [None, [1, 2, 3], None, None]
    loaded = load_nemotron_nas(tmp_path / "f")
    assert parent_layer_map(loaded) == [(0,), (1, 2, 3), (4,), (5,)]
    ids = _ids()
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, fused(ids).logits)


def test_dependency_matrix_values_and_heatmap(tmp_path):
    model = remove_attention(_tiny64(5), [2, 3])
    with torch.no_grad():
        model.layers[1].mlp.down_proj.weight.zero_()  # FFN 1 contributes nothing
    M = dependency_matrix(model, _ids(12, 3), batch_size=2)
    assert M.shape == (5, 5)
    assert torch.isnan(M[torch.tril_indices(5, 5)[0], torch.tril_indices(5, 5)[1]]).all()
    assert torch.allclose(M[1, 2:], torch.zeros(3, dtype=M.dtype), atol=1e-6)  # removing a zero FFN changes nothing
    upper = M[0, 1:]
    assert ((upper >= 0) & (upper <= 2)).all() and upper[1:].max() > 1e-4
    png = plot_dependency_matrix(M, tmp_path / "dep.png", [2, 3])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_select_fusion_groups_threshold_and_last():
    model = remove_attention(_tiny64(7), [2, 3, 4, 5])
    assert ffn_runs(model) == [[1, 2, 3, 4, 5]]
    M = torch.full((7, 7), 0.01)
    M[2, 4] = 0.5  # FFN 4 depends on FFN 2
    plan = select_fusion_groups(model, M, threshold=0.1)
    assert plan.groups == [[1, 2, 3], [4, 5]]
    assert select_fusion_groups(model).groups == [[1, 2, 3, 4, 5]]
    assert select_fusion_groups(model, exclude_last=True).groups == [[1, 2, 3, 4]]
    with pytest.raises(ValueError):
        select_fusion_groups(model, None, threshold=0.1)


# ---------------------------------------------------------------- scoring
def test_replace_one_block_scores_find_a_useless_attention():
    model = from_hf_llama(_tiny_hf(layers=4))
    with torch.no_grad():
        model.layers[2].self_attn.o_proj.weight.zero_()  # attention of layer 2 adds nothing
    ids = _ids(16, 4)
    scores = score_attention_removal(model, ids, linear=True, batch_size=2)
    assert scores.tokens == 64
    assert scores.kl_no_op[2] == pytest.approx(0.0, abs=1e-7)
    assert all(k > 1e-5 for i, k in enumerate(scores.kl_no_op) if i != 2)
    assert scores.kl_linear[2] == pytest.approx(0.0, abs=1e-5)  # least squares recovers the zero map
    assert scores.lowest(1) == [2]
    with pytest.raises(ValueError):
        scores.lowest(5)
    removed = remove_attention(model, [2])
    assert score_attention_removal(removed, ids, linear=False).kl_no_op[2] != score_attention_removal(removed, ids, linear=False).kl_no_op[2]  # nan
    assert float(kl_divergence(torch.zeros(3, 5), torch.zeros(3, 5))) == 0.0


# ----------------------------------------------------------- distillation
def test_distillation_lowers_kl_and_resumes(tmp_path):
    from llm_backends.compression.distill import distill
    from llm_backends.compression.evaluate import kl_to_parent

    parent = from_hf_llama(_tiny_hf(layers=4))
    for p in parent.parameters():
        p.requires_grad_(False)
    student = fuse_groups(remove_attention(parent, [2, 3]), [[1, 2, 3]])
    windows = _ids(16, 8)
    before = kl_to_parent(student, parent, windows)
    ckpt = tmp_path / "ck.pt"
    r1 = distill(student, parent, windows, steps=4, batch_size=4, lr=3e-3, checkpoint=ckpt, save_every=2, show_progress=False)
    assert (r1.steps, r1.resumed_from, len(r1.losses)) == (4, 0, 4) and ckpt.is_file()
    r2 = distill(student, parent, windows, steps=8, batch_size=4, lr=3e-3, checkpoint=ckpt, save_every=2, show_progress=False)
    assert (r2.steps, r2.resumed_from, len(r2.losses)) == (8, 4, 4)
    after = kl_to_parent(student, parent, windows)
    assert after < 0.8 * before
    other = remove_attention(parent, [1])
    with pytest.raises(ValueError, match="another architecture"):
        distill(other, parent, windows, steps=2, checkpoint=ckpt, show_progress=False)


# ------------------------------------------------------------ calibration
class _CharTokenizer:
    """Characters as token ids (mod 100), id 100 = EOS; enough for calibration plumbing."""

    eos_token_id = 100
    chat_template = None

    def __call__(self, text, add_special_tokens=False, return_tensors=None):
        ids = [ord(c) % 100 for c in text]
        return {"input_ids": torch.tensor([ids]) if return_tensors == "pt" else ids}

    def decode(self, ids, skip_special_tokens=False):
        return "".join(chr(65 + i % 26) for i in ids)


def test_calibration_generates_caches_and_splits(tmp_path, monkeypatch):
    from llm_backends.compression import calibration as cal

    monkeypatch.setenv("MRKL_CACHE_DIR", str(tmp_path))
    model = from_hf_llama(_tiny_hf(layers=2))
    tok = _CharTokenizer()
    texts = cal.self_generated_texts(model, tok, prompts=("hello there", "what is two plus two?"), max_new_tokens=5)
    assert len(texts) == 2 and texts[0].startswith("user: hello there\nassistant: ")
    assert len(texts[0]) == len("user: hello there\nassistant: ") + 5  # no EOS in a random model's first 5 tokens
    cached = list((tmp_path / "compression").glob("selfgen-*.json"))
    assert len(cached) == 1 and json.loads(cached[0].read_text()) == texts
    docs = cal.project_doc_texts()
    assert docs and "mrkl" in docs[0].lower()
    data = cal.build_calibration(model, tok, seq_len=32, heldout_every=4, max_new_tokens=5, prompts=("hello there",) * 3)
    assert data.train.shape[1] == 32 and data.heldout.shape[1] == 32
    assert data.counts["project_docs/heldout"] > 0 and data.counts["self_generated/train"] >= 32
    assert sum(data.counts.values()) == (len(data.train) + len(data.heldout)) * 32
    with pytest.raises(ValueError):
        cal.build_calibration(model, tok, seq_len=1)


# ------------------------------------------------------- the real SmolLM2
@pytest.mark.slow
def test_real_model_equals_hf_and_serves_from_nemotron_nas_folder(smollm2, tmp_path):
    from llm_backends.transformers_backend import TransformersBackend

    model = from_hf_llama(smollm2.model)
    ids = torch.tensor([smollm2.encode("The capital of France is Paris. The capital of Italy is")])
    with torch.no_grad():
        assert (model(ids).logits - smollm2.model(ids).logits).abs().max().item() <= 1e-4
    assert model.sequential_depth() == 60 and len(model.layers) == 30
    folder = save_nemotron_nas(model, tmp_path / "parent", tokenizer=smollm2.tokenizer)
    validate_nemotron_nas_config(json.loads((folder / "config.json").read_text()))
    served = TransformersBackend(str(folder), progress=None)
    assert type(served.model).__name__ == "HeteroLlamaForCausalLM"
    prompt = "The capital of France is"
    assert served.generate(prompt, max_new_tokens=8) == smollm2.generate(prompt, max_new_tokens=8)
    assert served.score("2 + 2 =", [" 4", " 5"]) == pytest.approx(smollm2.score("2 + 2 =", [" 4", " 5"]), abs=1e-4)


@pytest.mark.slow
def test_real_model_fused_run_is_exact_and_reloads(smollm2, tmp_path):
    parent = from_hf_llama(smollm2.model)
    removed = remove_attention(parent, [20, 21, 22])
    fused = fuse_ffns(removed, [19, 20, 21, 22])
    assert len(fused.layers) == 27 and fused.sequential_depth() == 54
    attention = 2 * 576 * 576 + 2 * 576 * 192 + 576  # q, o, k, v and the input norm
    assert fused.num_parameters() == parent.num_parameters() - 3 * attention - 3 * 576  # and 3 FFN norms folded
    ids = torch.tensor([smollm2.encode("Explain what a prime number is.")])
    with torch.no_grad():
        h = removed.run_layers(removed.model.embed_tokens(ids), 0, 19)
        cos, sin = removed.rope(torch.arange(ids.shape[1]).unsqueeze(0), h)
        d, _ = removed.layers[19].attention_delta(h, cos, sin)
        x = h + d
        diff = (fused.layers[19].ffn_delta(x) - parallel_ffn_sum(removed, [19, 20, 21, 22], x)).abs().max().item()
    assert diff < 1e-4  # float32 on real weights
    folder = save_nemotron_nas(fused, tmp_path / "fused", tokenizer=smollm2.tokenizer)
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["block_configs"][19]["ffn"]["ffn_mult"] == 16.0  # 4 FFNs of 1536 = one of 6144
    loaded = load_nemotron_nas(folder)
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, fused(ids).logits)


@pytest.mark.slow
def test_cli_compress_fuse_and_ask_on_a_tiny_llama(tiny_llama, tmp_path, monkeypatch):
    """The whole CLI path on a tiny random Llama with SmolLM2's tokenizer (seconds, not minutes)."""
    from typer.testing import CliRunner

    from llm_backends.compression import calibration
    from mrkl.cli import app

    monkeypatch.setenv("MRKL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(calibration, "PROMPTS", calibration.PROMPTS[:6])  # a short self-generated set
    src = tiny_llama(layers=6, kv_heads=1)
    runner = CliRunner()
    out = tmp_path / "fused"
    res = runner.invoke(app, ["compress", "fuse", "--model", str(src), "--remove-attention", "3", "--out", str(out), "--distill-steps", "2", "--windows", "2", "--include-last"])
    assert res.exit_code == 0, res.output
    cfg_out = json.loads((out / "config.json").read_text())
    validate_nemotron_nas_config(cfg_out)
    # 3 attentions gone; each attention-free layer's FFN fused with the FFN before it (none before layer 0)
    saved = 6 - cfg_out["num_hidden_layers"]
    assert saved in (2, 3)
    assert f"sequential depth 12 -> {12 - 3 - saved}" in res.output
    assert (out / "distill-checkpoint.pt").is_file() and (out / "tokenizer.json").is_file()
    # a random tiny model routes at random: what matters is that the folder serves the whole system
    res = runner.invoke(app, ["ask", "--model", str(out), "--trace", "what is fifty seven plus three?"])
    assert res.exit_code == 0 and "answered by:" in res.output and "timings:" in res.output, res.output
    res = runner.invoke(app, ["compress", "analyze", "--model", str(src), "--remove-attention", "2", "--windows", "1", "--out", str(tmp_path / "an")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "an" / "dependency.png").is_file() and "layer  attention->no-op" in res.output
    res = runner.invoke(app, ["compress", "fuse", "--model", str(src), "--remove-attention", "99", "--out", str(tmp_path / "x")])
    assert res.exit_code == 1 and "cannot remove 99 attentions" in res.output
    res = runner.invoke(app, ["compress", "fuse", "--model", str(tmp_path / "nowhere"), "--remove-attention", "1", "--out", str(tmp_path / "y")])
    assert res.exit_code == 1 and "error:" in res.output
