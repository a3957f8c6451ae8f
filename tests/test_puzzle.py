"""Puzzle on a tiny random Llama: block library, blockwise distillation, scoring, realise, export.

(The MIP and greedy search are tested in ``test_puzzle_mip.py``, the cost table in ``test_puzzle_costs.py``.)
"""

from __future__ import annotations

import json
import os

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
from llm_backends.compression.bld import BLDSettings, BlockLibrary, cache_parent_activations, normalized_mse, train_library
from llm_backends.compression.library import (
    LibrarySpec,
    ffn_channel_importance,
    init_attention_variant,
    init_ffn_variant,
    parent_sub_block,
)
from llm_backends.compression.puzzle import arch_string, realise, score_library
from llm_backends.compression.scoring import score_attention_removal

from test_compression import _tiny_hf


@pytest.fixture
def tiny():
    return from_hf_llama(_tiny_hf(4))


def _windows(n: int = 12, t: int = 24, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 101, (n, t), generator=torch.Generator().manual_seed(seed))


def _rope(model, T: int, B: int = 1):
    pos = torch.arange(T).unsqueeze(0).expand(B, T)
    return model.rope(pos, torch.zeros(B, T, model.config.hidden_size))


def test_library_spec_variants_and_bad_input(tiny):
    spec = LibrarySpec()
    att = spec.attention_variants(tiny.config)
    ffn = spec.ffn_variants(tiny.config)
    assert att == [AttentionConfig("gqa", 2), AttentionConfig("gqa", 1), AttentionConfig("linear"), AttentionConfig("no_op")]
    assert [f.intermediate_size for f in ffn[:4]] == [256, 192, 128, 64] and [f.kind for f in ffn[4:]] == ["linear", "no_op"]
    vllm = LibrarySpec(linear=False)
    assert all(c.kind != "linear" for c in vllm.attention_variants(tiny.config) + vllm.ffn_variants(tiny.config))
    assert [f.intermediate_size for f in LibrarySpec(ffn_widths=(200, 100)).ffn_variants(tiny.config)[:3]] == [256, 200, 100]
    with pytest.raises(ValueError, match="must divide"):
        LibrarySpec(kv_heads=(4,)).attention_variants(tiny.config)
    with pytest.raises(ValueError, match="FFN width 512"):
        LibrarySpec(ffn_widths=(512,)).ffn_variants(tiny.config)


def test_layers_swap_sub_blocks_by_kind(tiny):
    layer = tiny.layers[0]
    norm, attn = layer.sub_block("attention")
    assert norm is layer.input_layernorm and attn is layer.self_attn
    assert layer.sub_block("ffn") == (layer.post_attention_layernorm, layer.mlp)
    layer.put_sub_block("attention", None, None)
    assert layer.self_attn is None and layer.input_layernorm is None
    layer.put_sub_block("attention", norm, attn)
    assert layer.self_attn is attn and layer.input_layernorm is norm
    with pytest.raises(ValueError, match="kind must be"):
        layer.sub_block("mlp")
    with pytest.raises(ValueError, match="kind must be"):
        layer.put_sub_block("norm", None, None)


@torch.no_grad()
def test_variant_shapes_and_initialisation_follow_the_paper(tiny):
    layer = tiny.layers[1]
    x = torch.randn(2, 7, 96)
    cos, sin = _rope(tiny, 7, 2)
    parent_att = parent_sub_block(layer, "attention")
    # the parent's own configuration is an exact copy
    same = init_attention_variant(layer, AttentionConfig("gqa", 2))
    assert torch.allclose(same.delta(x, cos, sin), parent_att.delta(x, cos, sin), atol=1e-6)
    # 1 KV head: key/value projections of the two heads averaged, shapes (head_dim, hidden)
    one = init_attention_variant(layer, AttentionConfig("gqa", 1))
    assert one.module.k_proj.weight.shape == (16, 96) and one.module.q_proj.weight.shape == (96, 96)
    k = layer.self_attn.k_proj.weight.view(2, 16, 96)
    assert torch.allclose(one.module.k_proj.weight, (k[0] + k[1]) / 2)
    # linear attention = W_o·W_v: exact for a single token (it can only attend to itself)
    lin = init_attention_variant(layer, AttentionConfig("linear"))
    assert lin.module.linear_attn.weight.shape == (96, 96)
    x1 = x[:, :1]
    c1, s1 = _rope(tiny, 1, 2)
    assert torch.allclose(lin.delta(x1), parent_att.delta(x1, c1, s1), atol=1e-5)
    assert init_attention_variant(layer, AttentionConfig("no_op")).delta(x) is None
    # FFN: linear = W_down·W_up; narrower SwiGLU keeps the channels of largest mean |activation|
    mlp = layer.mlp
    lf = init_ffn_variant(layer, FFNConfig("linear"))
    assert torch.allclose(lf.module.linear_mlp.weight, mlp.down_proj.weight @ mlp.up_proj.weight)
    imp = ffn_channel_importance(layer, x)
    assert imp.shape == (256,) and bool((imp >= 0).all())
    narrow = init_ffn_variant(layer, FFNConfig("swiglu", 64), imp)
    keep = imp.topk(64).indices.sort().values
    assert narrow.module.gate_proj.weight.shape == (64, 96) and narrow.module.down_proj.weight.shape == (96, 64)
    assert torch.equal(narrow.module.up_proj.weight, mlp.up_proj.weight[keep])
    # channels that contribute nothing are the ones pruned: zero them in a copy and pruning is exact
    dead = imp.topk(192, largest=False).indices
    lay2 = tiny.clone().layers[1]
    lay2.mlp.down_proj.weight[:, dead] = 0
    imp2 = ffn_channel_importance(lay2, x)
    imp2[dead] = -1.0  # tie-break: dead channels rank last
    exact = init_ffn_variant(lay2, FFNConfig("swiglu", 64), imp2)
    assert torch.allclose(exact.delta(x), parent_sub_block(lay2, "ffn").delta(x), atol=1e-5)
    with pytest.raises(ValueError, match="channel importances"):
        init_ffn_variant(layer, FFNConfig("swiglu", 64))
    with pytest.raises(ValueError, match="exceeds"):
        init_ffn_variant(layer, FFNConfig("swiglu", 300), imp)


def test_bld_lowers_the_loss_resumes_and_checks_its_cache(tiny, tmp_path):
    w = _windows(16, 64)  # 14 training windows: ~900 tokens, ten per weight of a 96-wide linear map's row
    acts = cache_parent_activations(tiny, w, tmp_path / "acts")
    assert (acts / "h003.pt").is_file() and torch.load(acts / "h000.pt").shape == (16, 64, 96)
    spec = LibrarySpec(kv_heads=(None, 1), ffn_fractions=(1.0, 0.5))
    res = train_library(tiny, acts, tmp_path / "bld", spec, BLDSettings(steps=60), show_progress=False)
    assert sorted(res) == [0, 1, 2, 3]
    for info in res.values():
        m = info["metrics"]
        assert m["attention"]["gqa2"]["loss"] == pytest.approx(0.0, abs=1e-10)  # the parent imitates itself
        assert m["attention"]["noop"]["loss"] == pytest.approx(1.0) and m["ffn"]["noop"]["loss"] == pytest.approx(1.0)
        for kind, name in (("attention", "gqa1"), ("attention", "linear"), ("ffn", "swiglu128"), ("ffn", "linear")):
            assert m[kind][name]["loss"] < m[kind][name]["loss_init"], (kind, name, m[kind][name])
    # a rerun resumes: nothing is retrained
    stamp = os.path.getmtime(tmp_path / "bld" / "layer002.pt")
    again = train_library(tiny, acts, tmp_path / "bld", spec, BLDSettings(steps=60), show_progress=False)
    assert os.path.getmtime(tmp_path / "bld" / "layer002.pt") == stamp and again[2] == res[2]
    lib = BlockLibrary.load(tiny, tmp_path / "bld")
    assert sorted(lib.variants[0]["ffn"]) == ["linear", "noop", "swiglu128", "swiglu256"]
    # the loaded variant reproduces its recorded held-out loss
    h = torch.load(acts / "h001.pt")[-2:]
    parent_ffn_in = h + parent_sub_block(tiny.layers[1], "attention").delta(h, *_rope(tiny, 64, 2))
    with torch.no_grad():
        y = parent_sub_block(tiny.layers[1], "ffn").delta(parent_ffn_in)
        got = float(normalized_mse(lib.variants[1]["ffn"]["swiglu128"].delta(parent_ffn_in), y))
    assert got == pytest.approx(res[1]["metrics"]["ffn"]["swiglu128"]["loss"], rel=1e-4)
    # activations of another model are refused; a missing cache is a clear error
    other = tiny.clone()
    with torch.no_grad():
        other.layers[3].mlp.up_proj.weight.mul_(1.01)  # differs in the last layer only
    with pytest.raises(ValueError, match="another model"):
        train_library(other, acts, tmp_path / "bld2", spec, show_progress=False)
    with pytest.raises(FileNotFoundError, match="cache_parent_activations"):
        train_library(tiny, tmp_path / "nowhere", tmp_path / "bld3", spec, show_progress=False)
    with pytest.raises(FileNotFoundError, match="lacks layer"):
        BlockLibrary.load(tiny, tmp_path / "bld3")


def test_bld_in_worker_processes_matches_in_process(tiny, tmp_path):
    w = _windows(8, 16)
    acts = cache_parent_activations(tiny, w, tmp_path / "acts")
    spec = LibrarySpec(kv_heads=(None,), ffn_fractions=(1.0, 0.5), linear=False)
    st = BLDSettings(steps=5)
    torch.set_num_threads(1)
    one = train_library(tiny, acts, tmp_path / "a", spec, st, workers=1, show_progress=False)
    two = train_library(tiny, acts, tmp_path / "b", spec, st, workers=2, show_progress=False)
    for i in range(4):
        a, b = one[i]["metrics"]["ffn"]["swiglu128"], two[i]["metrics"]["ffn"]["swiglu128"]
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)


@pytest.fixture(scope="module")
def parent():
    return from_hf_llama(_tiny_hf(4))


@pytest.fixture(scope="module")
def library(parent, tmp_path_factory):
    """One trained library shared by the scoring / realise / search tests (they leave the parent unchanged)."""
    tmp = tmp_path_factory.mktemp("lib")
    acts = cache_parent_activations(parent, _windows(12, 24), tmp / "acts")
    train_library(parent, acts, tmp / "bld", LibrarySpec(), BLDSettings(steps=10, lr=1e-3), show_progress=False)
    return BlockLibrary.load(parent, tmp / "bld")


def test_replace_one_block_scores(parent, library):
    held = _windows(4, 24, seed=5)
    before = parent(held).logits.clone()
    scores = score_library(parent, library, held, batch_size=3)
    assert torch.equal(parent(held).logits, before)  # the parent is restored
    assert scores.tokens == 96 and len(scores.kl) == 4
    ref = score_attention_removal(parent, held, linear=False)
    for i, row in enumerate(scores.kl):
        assert row["attention"]["gqa2"] == 0.0 and row["ffn"]["swiglu256"] == 0.0
        assert row["attention"]["noop"] == pytest.approx(ref.kl_no_op[i], rel=1e-4, abs=1e-7)
        assert all(v >= 0 for k in row.values() for v in k.values())
        assert set(row["ffn"]) == {"swiglu256", "swiglu192", "swiglu128", "swiglu64", "linear", "noop"}


@torch.no_grad()
def test_realised_model_equals_the_assembled_blocks_and_round_trips(parent, library, tmp_path):
    blocks = [
        BlockConfig(AttentionConfig("gqa", 1), FFNConfig("swiglu", 192)),
        BlockConfig(AttentionConfig("no_op"), FFNConfig("linear")),
        BlockConfig(AttentionConfig("linear"), FFNConfig("no_op")),
        BlockConfig(AttentionConfig("gqa", 2), FFNConfig("swiglu", 64)),
    ]
    model = realise(parent, library, blocks)
    assert model.block_configs == blocks
    assert arch_string(blocks, 256) == "16 -L L- 22"
    ids = _windows(2, 11, seed=3)
    # assemble by hand from the library's sub-blocks
    h = parent.model.embed_tokens(ids)
    cos, sin = _rope(parent, 11, 2)
    for i, b in enumerate(blocks):
        from llm_backends.compression.library import attention_name, ffn_name

        a = library.variants[i]["attention"][attention_name(b.attention)].delta(h, cos, sin)
        h = h + a if a is not None else h
        f = library.variants[i]["ffn"][ffn_name(b.ffn)].delta(h)
        h = h + f if f is not None else h
    assert torch.allclose(model(ids).logits, parent.logits_from_hidden(h), atol=1e-5)
    # the all-parent choice is the parent
    assert torch.allclose(realise(parent, library, parent.block_configs)(ids).logits, parent(ids).logits, atol=1e-6)
    # widths 192 and 64 are not multiples of 256: stored zero-padded, trimmed on load, bit-exact
    folder = save_nemotron_nas(model, tmp_path / "nas")
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["block_configs"][0]["ffn"]["ffn_mult"] == pytest.approx(3 * 256 / (2 * 96))
    assert cfg["mrkl_compression"]["intermediate_sizes"] == [192, None, None, 64]
    from safetensors.torch import load_file

    stored = load_file(str(folder / "model.safetensors"))
    assert stored["model.layers.0.mlp.gate_proj.weight"].shape == (256, 96)
    assert not stored["model.layers.0.mlp.down_proj.weight"][:, 192:].any()
    loaded = load_nemotron_nas(folder)
    assert loaded.block_configs == blocks
    assert torch.equal(loaded(ids).logits, model(ids).logits)
    with pytest.raises(ValueError, match="no attention variant"):
        realise(parent, library, [BlockConfig(AttentionConfig("gqa", 3), FFNConfig("no_op"))] + blocks[1:])
    with pytest.raises(ValueError, match="block configs"):
        realise(parent, library, blocks[:2])


def _fake_costs(parent):
    """A hand-made cost table: decode ms proportional to the sub-block's size, no-op free."""
    from llm_backends.compression.costs import CostTable

    def c(ms, params, kv=0.0):
        return {"decode_ms": ms, "prefill_ms": 10 * ms, "param_bytes": params * 4.0, "kv_bytes_per_token": kv}

    att = {"gqa2": c(1.0, 4 * 96 * 96, 128.0), "gqa1": c(0.8, 3 * 96 * 96, 64.0), "linear": c(0.3, 96 * 96), "noop": c(0.0, 0)}
    ffn = {f"swiglu{w}": c(w / 128, 3 * 96 * w) for w in (256, 192, 128, 64)}
    ffn |= {"linear": c(0.3, 96 * 96), "noop": c(0.0, 0)}
    return CostTable(att, ffn, c(2.0, 101 * 96))


def test_search_respects_budgets_and_vllm_compatibility(parent, library):
    from llm_backends.compression.mip import InfeasibleBudgetError
    from llm_backends.compression.puzzle import Budgets, search_architecture

    scores = score_library(parent, library, _windows(4, 24, seed=5))
    costs = _fake_costs(parent)
    parent_ms = costs.predict(parent.block_configs)["decode_ms"]  # 2 + 4·(1 + 2) = 14
    assert parent_ms == pytest.approx(14.0)
    blocks, res = search_architecture(parent, scores, costs, Budgets(decode_speedup=1.5))
    assert costs.predict(blocks)["decode_ms"] <= parent_ms / 1.5 + 1e-9 and res.feasible
    assert res.objective == pytest.approx(sum(scores.kl[i][k][n] for i, b in enumerate(blocks) for k, n in (("attention", _an(b)), ("ffn", _fn(b)))))
    g_blocks, g_res = search_architecture(parent, scores, costs, Budgets(decode_speedup=1.5), method="greedy")
    assert costs.predict(g_blocks)["decode_ms"] <= parent_ms / 1.5 + 1e-9
    assert res.objective <= g_res.objective + 1e-9  # the MIP is optimal
    v_blocks, _ = search_architecture(parent, scores, costs, Budgets(decode_speedup=1.5), vllm_compatible=True)
    assert all(b.attention.kind != "linear" and b.ffn.kind != "linear" for b in v_blocks)
    # several budgets at once: parameters and memory as well
    m_blocks, m_res = search_architecture(parent, scores, costs, Budgets(decode_speedup=1.2, params_millions=0.05, memory_mib=0.3, memory_context=64))
    pred = costs.predict(m_blocks)
    assert pred["param_bytes"] / 4 <= 0.05e6 and pred["param_bytes"] + 64 * pred["kv_bytes_per_token"] <= 0.3 * 2**20
    # a budget no architecture meets
    with pytest.raises(InfeasibleBudgetError, match="decode_ms"):
        search_architecture(parent, scores, costs, Budgets(decode_speedup=10.0))
    with pytest.raises(ValueError, match="at least one budget"):
        Budgets(decode_speedup=None)
    with pytest.raises(ValueError, match="method"):
        search_architecture(parent, scores, costs, Budgets(), method="annealing")


def _an(b):
    from llm_backends.compression.library import attention_name

    return attention_name(b.attention)


def _fn(b):
    from llm_backends.compression.library import ffn_name

    return ffn_name(b.ffn)


@pytest.mark.slow
def test_cli_compress_puzzle_on_a_tiny_llama(tiny_llama, tmp_path, monkeypatch):
    """`mrkl compress puzzle` end to end on a tiny random Llama with SmolLM2's tokenizer; the
    saved Nemotron-NAS folder serves `mrkl ask`, and a rerun reuses the whole library."""
    from typer.testing import CliRunner

    from llm_backends.compression import calibration
    from mrkl.cli import app

    monkeypatch.setenv("MRKL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(calibration, "PROMPTS", calibration.PROMPTS[:4])
    # the real measurements, with fewer repeats (timing quality is not under test here)
    import functools

    from llm_backends.compression import costs, puzzle

    quick = dict(repeats=3, prefill_repeats=1, warmup=1, rounds=1, prompt_tokens=64, context=64)
    monkeypatch.setattr(puzzle, "measure_costs", functools.partial(costs.measure_costs, **quick))
    monkeypatch.setattr(puzzle, "measure_model_latency", functools.partial(costs.measure_model_latency, **quick))
    src = tiny_llama(layers=4, kv_heads=3)
    runner = CliRunner()
    out, lib = tmp_path / "puzzled", tmp_path / "library"
    args = ["compress", "puzzle", "--model", str(src), "--target-speedup", "1.3", "--bld-steps", "3", "--workers", "1",
            "--library", str(lib), "--out", str(out), "--vllm-compatible"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    report = json.loads((out / "puzzle.json").read_text())
    assert report["mip"]["feasible"] and report["mip"]["totals"]["decode_ms"] <= report["mip"]["budgets"]["decode_ms"] + 1e-9
    assert report["predicted"]["puzzle"]["decode_ms"] <= report["predicted"]["parent"]["decode_ms"] / 1.3 + 1e-9
    assert "L" not in report["architecture"]  # --vllm-compatible: no linear replacements
    assert report["mip"]["objective"] <= report["greedy"]["objective"] + 1e-9
    assert (lib / "costs.json").is_file() and (lib / "calibration.pt").is_file() and (lib / "bld" / "layer003.pt").is_file()
    assert "MIP " in res.output and "greedy " in res.output and "measured  decode" in res.output
    cfg_out = json.loads((out / "config.json").read_text())
    validate_nemotron_nas_config(cfg_out)
    assert all(not b["attention"]["replace_with_linear"] and not b["ffn"]["replace_with_linear"] for b in cfg_out["block_configs"])
    loaded = load_nemotron_nas(out)
    assert arch_string(loaded.block_configs, 256) == report["architecture"]
    # a random tiny model routes at random: what matters is that the folder serves the whole system
    res = runner.invoke(app, ["ask", "--model", str(out), "--trace", "what is fifty seven plus three?"])
    assert res.exit_code == 0 and "answered by:" in res.output, res.output
    # a second search with another budget reuses the library: nothing is trained or measured again
    stamp = os.path.getmtime(lib / "bld" / "layer000.pt"), os.path.getmtime(lib / "costs.json")
    res = runner.invoke(app, ["compress", "puzzle", "--model", str(src), "--target-speedup", "1.1", "--bld-steps", "3",
                              "--workers", "1", "--library", str(lib), "--json"])
    assert res.exit_code == 0, res.output
    assert (os.path.getmtime(lib / "bld" / "layer000.pt"), os.path.getmtime(lib / "costs.json")) == stamp
    assert json.loads(res.output[res.output.index("{"):])["out_dir"] is None
    # budgets no architecture meets, and bad input, are clear errors
    res = runner.invoke(app, ["compress", "puzzle", "--model", str(src), "--target-speedup", "100000", "--library", str(lib), "--bld-steps", "3"])
    assert res.exit_code == 1 and "budget cannot be met" in res.output and "decode_ms" in res.output
    res = runner.invoke(app, ["compress", "puzzle", "--model", str(tmp_path / "nowhere"), "--library", str(lib)])
    assert res.exit_code == 1 and "error:" in res.output


def test_a_compressed_parent_and_bad_budgets_are_refused_before_any_work(tiny, tmp_path):
    from llm_backends.compression.bld import check_plain_parent
    from llm_backends.compression.puzzle import Budgets

    check_plain_parent(tiny)
    pruned = tiny.clone()
    pruned.layers[2].set_attention(AttentionConfig("no_op"))
    with pytest.raises(ValueError, match="plain Llama parent.*noop\\+swiglu256"):
        check_plain_parent(pruned)
    acts = cache_parent_activations(tiny, _windows(4, 8), tmp_path / "acts")
    with pytest.raises(ValueError, match="plain Llama parent"):
        train_library(pruned, acts, tmp_path / "bld", show_progress=False)
    for bad in (float("inf"), float("nan"), 0.0, -1.0):
        with pytest.raises(ValueError, match="positive finite"):
            Budgets(decode_speedup=bad)
