"""Puzzle cost table (costs.py) on a tiny random Llama: structure only, no timing assertions."""

from __future__ import annotations

import json
import math

import pytest
import torch

from llm_backends.compression import AttentionConfig, BlockConfig, FFNConfig, from_hf_llama
from llm_backends.compression.costs import (
    BUDGET_NAMES,
    CostTable,
    attention_key,
    default_variants,
    ffn_key,
    measure_costs,
    measure_model_latency,
)
from llm_backends.compression.model import HeteroLlamaForCausalLM

from test_compression import _tiny_hf

FAST = dict(context=8, prompt_tokens=6, repeats=1, prefill_repeats=1, warmup=0, rounds=1, threads=1)


@pytest.fixture(scope="module")
def tiny():
    return from_hf_llama(_tiny_hf())


@pytest.fixture(scope="module")
def table(tiny):
    return measure_costs(tiny, **FAST)


def _bytes(params) -> int:
    return sum(p.numel() * p.element_size() for p in {id(p): p for p in params}.values())


def _mixed(tiny) -> HeteroLlamaForCausalLM:
    m = tiny.clone()
    m.layers[0].set_attention(AttentionConfig("gqa", 1))
    m.layers[0].set_ffn(FFNConfig("swiglu", 128))
    m.layers[1].set_attention(AttentionConfig("no_op"))
    m.layers[1].set_ffn(FFNConfig("linear"))
    m.layers[2].set_attention(AttentionConfig("linear"))
    m.layers[2].set_ffn(FFNConfig("no_op"))
    return m


def test_keys():
    assert attention_key(AttentionConfig("gqa", 3)) == "gqa3"
    assert attention_key(AttentionConfig("linear")) == "linear"
    assert attention_key(AttentionConfig("no_op")) == "noop"
    assert ffn_key(FFNConfig("swiglu", 1536)) == "swiglu1536"
    assert ffn_key(FFNConfig("swiglu", 4608, (3, 4, 5))) == "swiglu4608"
    assert ffn_key(FFNConfig("no_op")) == "noop"


def test_default_variants_are_the_puzzle_library(tiny):
    att, ffn = default_variants(tiny)
    assert [attention_key(a) for a in att] == ["gqa2", "gqa1", "linear", "noop"]
    assert [ffn_key(f) for f in ffn] == ["swiglu256", "swiglu192", "swiglu128", "swiglu64", "linear", "noop"]


def test_table_has_every_variant_and_sane_costs(table):
    assert set(table.attention) == {"gqa2", "gqa1", "linear", "noop"}
    assert set(table.ffn) == {"swiglu256", "swiglu192", "swiglu128", "swiglu64", "linear", "noop"}
    for part in (table.attention, table.ffn):
        for key, c in part.items():
            assert set(c) == set(BUDGET_NAMES)
            assert all(math.isfinite(v) and v >= 0 for v in c.values())
            if key == "noop":
                assert all(v == 0 for v in c.values())
            else:
                assert c["param_bytes"] > 0
    # latency overhead = parent stack minus its parts: >= 0 (clamped), its size is timing noise here
    assert table.overhead["decode_ms"] >= 0 and table.overhead["prefill_ms"] >= 0
    assert table.settings["partner_block"] == "gqa2+swiglu256" and table.settings["flush_denormal"] is True
    assert table.overhead["kv_bytes_per_token"] == 0
    s = table.settings
    assert s["threads"] == 1 and s["context"] == 8 and s["prompt_tokens"] == 6 and s["dtype"] == "float32"
    assert s["torch"] == torch.__version__ and s["stack_layers"] == 4 and s["rounds"] == 1


def test_param_and_kv_bytes_equal_counted_tensors(tiny, table):
    hidden, head_dim = 96, 96 // 6
    # parameter bytes of each variant = the tensors of a layer built with it (norm included)
    for layer_cfg in (
        BlockConfig(AttentionConfig("gqa", 2), FFNConfig("swiglu", 256)),
        BlockConfig(AttentionConfig("gqa", 1), FFNConfig("swiglu", 64)),
        BlockConfig(AttentionConfig("linear"), FFNConfig("linear")),
    ):
        m = HeteroLlamaForCausalLM(tiny.config, [layer_cfg])
        layer = m.layers[0]
        att_bytes = _bytes([*layer.input_layernorm.parameters(), *layer.self_attn.parameters()])
        ffn_bytes = _bytes([*layer.post_attention_layernorm.parameters(), *layer.mlp.parameters()])
        assert table.attention_cost(layer_cfg.attention)["param_bytes"] == att_bytes
        assert table.ffn_cost(layer_cfg.ffn)["param_bytes"] == ffn_bytes
    # hand count for the parent attention: norm + q,o (96x96) + k,v (96 x 2*16), float32
    assert table.attention["gqa2"]["param_bytes"] == 4 * (96 + 2 * 96 * 96 + 2 * 96 * 32)
    assert table.ffn["swiglu256"]["param_bytes"] == 4 * (96 + 3 * 96 * 256)
    # KV bytes per token: 2 (k and v) * n_kv * head_dim * 4 bytes
    assert table.attention["gqa2"]["kv_bytes_per_token"] == 2 * 2 * head_dim * 4
    assert table.attention["gqa1"]["kv_bytes_per_token"] == 2 * 1 * head_dim * 4
    assert table.attention["linear"]["kv_bytes_per_token"] == 0
    # the KV cache a real forward builds has exactly that many bytes per token
    ids = torch.randint(0, 101, (1, 5))
    with torch.inference_mode():
        cache = tiny(ids, use_cache=True).cache
    kv = sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in cache.layers if k is not None)
    assert table.predict(tiny.block_configs)["kv_bytes_per_token"] * 5 == kv
    del hidden


def test_predict_matches_model_tensors(tiny, table):
    for m in (tiny, _mixed(tiny)):
        pred = table.predict(m.block_configs)
        assert set(pred) == set(BUDGET_NAMES)
        assert pred["param_bytes"] == _bytes(m.parameters())
        n_kv = [b.attention.n_kv_heads for b in m.block_configs if b.attention.kind == "gqa"]
        assert pred["kv_bytes_per_token"] == sum(2 * k * 16 * 4 for k in n_kv)
        # the prediction is overhead + the sum of the parts
        for b in ("decode_ms", "prefill_ms"):
            parts = sum(table.attention_cost(x.attention)[b] + table.ffn_cost(x.ffn)[b] for x in m.block_configs)
            assert pred[b] == pytest.approx(table.overhead[b] + parts)
    # the all-no-op architecture costs exactly the overhead
    noop = [BlockConfig(AttentionConfig("no_op"), FFNConfig("no_op"))] * 4
    assert table.predict(noop) == pytest.approx(table.overhead)


def test_untied_head_counted_in_overhead():
    m = from_hf_llama(_tiny_hf(tie=False))
    t = measure_costs(m, [AttentionConfig("gqa", 2)], [FFNConfig("swiglu", 256)], **FAST)
    assert set(t.attention) == {"gqa2", "noop"} and set(t.ffn) == {"swiglu256", "noop"}
    assert t.predict(m.block_configs)["param_bytes"] == _bytes(m.parameters())
    assert t.overhead["param_bytes"] == 4 * (2 * 101 * 96 + 96)


def test_float64_bytes():
    m = from_hf_llama(_tiny_hf(dtype=torch.float64))
    t = measure_costs(m, [AttentionConfig("gqa", 1)], [FFNConfig("linear")], **FAST, prefill=False)
    assert t.settings["dtype"] == "float64" and t.settings["prefill"] is False
    assert t.attention["gqa1"]["kv_bytes_per_token"] == 2 * 16 * 8
    assert t.ffn["linear"]["param_bytes"] == 8 * (96 + 96 * 96)
    assert t.ffn["linear"]["prefill_ms"] == 0 and t.overhead["prefill_ms"] == 0


def test_option_costs_rows(table):
    opts = [AttentionConfig("gqa", 2), AttentionConfig("linear"), AttentionConfig("no_op")]
    rows = table.option_costs(opts)
    assert set(rows) == set(BUDGET_NAMES)
    assert rows["param_bytes"] == [table.attention[k]["param_bytes"] for k in ("gqa2", "linear", "noop")]
    assert rows["decode_ms"][2] == 0.0


def test_unknown_variant_is_clear_error(table):
    with pytest.raises(ValueError, match="gqa3.*gqa1"):
        table.attention_cost(AttentionConfig("gqa", 3))
    with pytest.raises(ValueError, match="swiglu999"):
        table.predict([BlockConfig(AttentionConfig("gqa", 2), FFNConfig("swiglu", 999))])


def test_json_round_trip(table, tmp_path):
    path = table.save(tmp_path / "sub" / "costs.json")
    again = CostTable.load(path)
    assert again.to_dict() == json.loads(json.dumps(table.to_dict()))
    assert again.attention == table.attention and again.ffn == table.ffn and again.overhead == table.overhead
    blocks = [BlockConfig(AttentionConfig("gqa", 1), FFNConfig("swiglu", 128))] * 4
    assert again.predict(blocks) == table.predict(blocks)


def test_bad_table_files(table, tmp_path):
    p = tmp_path / "bad.json"
    p.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        CostTable.load(p)
    with pytest.raises(FileNotFoundError):
        CostTable.load(tmp_path / "missing.json")
    d = table.to_dict()
    d["attention"]["gqa2"]["decode_ms"] = -1.0
    with pytest.raises(ValueError, match="decode_ms"):
        CostTable.from_dict(d)
    d = table.to_dict()
    d["ffn"]["mlp7"] = d["ffn"]["linear"]
    with pytest.raises(ValueError, match="mlp7"):
        CostTable.from_dict(d)
    with pytest.raises(ValueError, match="overhead"):
        CostTable.from_dict({"attention": {}, "ffn": {}})
    with pytest.raises(ValueError, match="JSON object"):
        CostTable.from_dict([1, 2])


def test_bad_arguments(tiny):
    with pytest.raises(ValueError, match="repeats"):
        measure_costs(tiny, **{**FAST, "repeats": 0})
    with pytest.raises(ValueError, match="threads"):
        measure_model_latency(tiny, **{**FAST, "threads": 0})
    with pytest.raises(ValueError, match="positions"):
        measure_model_latency(tiny, **{**FAST, "context": 1000})
    with pytest.raises(ValueError, match="divide"):
        measure_costs(tiny, [AttentionConfig("gqa", 4)], [FFNConfig("linear")], **FAST)
    with pytest.raises(ValueError, match="stack_layers"):
        measure_costs(tiny, **FAST, stack_layers=0)


def test_measure_model_latency_restores_threads_and_leaves_model_alone(tiny):
    before = torch.get_num_threads()
    state = {k: v.clone() for k, v in tiny.state_dict().items()}
    out = measure_model_latency(_mixed(tiny), **FAST)
    assert set(out) == {"decode_ms", "prefill_ms"} and out["decode_ms"] > 0 and out["prefill_ms"] > 0
    assert torch.get_num_threads() == before
    measure_costs(tiny, [AttentionConfig("linear")], [FFNConfig("linear")], **FAST)
    assert all(torch.equal(state[k], v) for k, v in tiny.state_dict().items())


def test_reference_models_timed_with_the_table(tiny):
    t = measure_costs(tiny, [AttentionConfig("linear")], [FFNConfig("linear")], reference_models={"mixed": _mixed(tiny)}, **FAST)
    ref = t.settings["reference_latency"]
    assert set(ref) == {"mixed"} and ref["mixed"]["decode_ms"] > 0 and ref["mixed"]["prefill_ms"] > 0
    assert "r:mixed" not in t.settings["raw_per_layer_ms"] and set(t.attention) == {"gqa2", "linear", "noop"}


def test_isolated_mode_overhead_is_the_all_noop_stack(tiny):
    t = measure_costs(tiny, [AttentionConfig("linear")], [FFNConfig("linear")], in_parent_context=False, **FAST)
    assert t.settings["partner_block"] == "noop+noop" and t.settings["in_parent_context"] is False
    assert t.overhead["decode_ms"] > 0 and t.overhead["prefill_ms"] > 0
    assert set(t.attention) == {"linear", "noop"} and set(t.ffn) == {"linear", "noop"}


def test_partner_block_always_measured(tiny):
    t = measure_costs(tiny, [AttentionConfig("linear")], [FFNConfig("linear")], **FAST)
    raw = t.settings["raw_per_layer_ms"]
    assert set(raw) == {"a:gqa2", "a:linear", "a:noop", "f:swiglu256", "f:linear", "f:noop"}
    assert "gqa2" in t.attention and "swiglu256" in t.ffn  # the partner is always measured


def test_group_costs_feed_the_mip(tiny, table):
    from llm_backends.compression.mip import greedy_search, solve_mip

    att = [AttentionConfig("gqa", 2), AttentionConfig("gqa", 1), AttentionConfig("no_op")]
    ffn = [FFNConfig("swiglu", 256), FFNConfig("swiglu", 128), FFNConfig("no_op")]
    groups = [att, ffn] * 4
    costs = table.group_costs(groups)
    assert set(costs) == set(BUDGET_NAMES) and all(len(costs[b]) == 8 for b in BUDGET_NAMES)
    scores = [[0.0, 0.3, 1.0]] * 8
    limit = table.predict(tiny.block_configs)["param_bytes"] * 0.8
    for search in (solve_mip, greedy_search):
        res = search(scores, costs, {"param_bytes": limit}, overhead=table.overhead)
        blocks = [BlockConfig(groups[2 * i][res.choice[2 * i]], groups[2 * i + 1][res.choice[2 * i + 1]]) for i in range(4)]
        built = HeteroLlamaForCausalLM(tiny.config, blocks)
        # the search's total is what the realised architecture's tensors weigh, and within budget
        assert res.totals["param_bytes"] == _bytes(built.parameters()) <= limit
