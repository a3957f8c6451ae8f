"""Puzzle cost table on this machine: predicted vs measured whole-model latency.

Measures a :class:`llm_backends.compression.costs.CostTable` for the real model
(per sub-block variant: decode ms at batch 1 with a KV cache, prefill ms of a
routing-sized prompt, parameter bytes, KV bytes per token), then builds a few
architectures and prints, for each, the latency the table predicts
(``overhead + Σ per-layer costs``) beside the latency measured on the whole model
(same procedure as :func:`measure_model_latency`, timed in the same interleaved
rounds as the table's stacks so that both see the same machine load).  Weights of replaced blocks are
random: only shapes matter for time.

Architectures: the parent; 10 no-op attentions (layers 10-19) plus FFN 768 in
every third layer; the second half of the layers with linear attention and
linear FFN.

    OMP_NUM_THREADS=1 python benchmarks/puzzle_costs.py [--model smollm2-135m-instruct] [--threads 1]
        [--context 512] [--prompt-tokens 700] [--repeats 20] [--prefill-repeats 3] [--rounds 3]
        [--save costs.json] [--no-prefill] [--keep-denormals] [--isolated]

Not run by CI (real model, minutes of timing).  On a machine shared with other
jobs the absolute numbers drift; the table and the models are timed in one run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _architectures(model):
    from llm_backends.compression.blocks import AttentionConfig, FFNConfig

    n = len(model.layers)
    out = {"parent": model}
    m = model.clone()
    for i in range(10, min(20, n)):
        m.layers[i].set_attention(AttentionConfig("no_op"))
    for i in range(0, n, 3):
        m.layers[i].set_ffn(FFNConfig("swiglu", 768))
    out["10 noop attn + ffn768 every 3rd"] = m
    m = model.clone()
    for i in range(n // 2, n):
        m.layers[i].set_attention(AttentionConfig("linear"))
        m.layers[i].set_ffn(FFNConfig("linear"))
    out["2nd half linear attn+ffn"] = m
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--context", type=int, default=512)
    ap.add_argument("--prompt-tokens", type=int, default=700)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--prefill-repeats", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-prefill", action="store_true")
    ap.add_argument("--isolated", action="store_true", help="time variants beside a no-op, not the parent's other sub-block")
    ap.add_argument("--keep-denormals", action="store_true", help="time without torch.set_flush_denormal(True)")
    ap.add_argument("--save", default=None, help="write the cost table (JSON) here")
    args = ap.parse_args(argv)

    import torch

    from llm_backends.compression.costs import measure_costs
    from llm_backends.compression.pipeline import load_model

    torch.set_num_threads(args.threads)
    model, _, name = load_model(args.model)
    timing = dict(
        context=args.context,
        prompt_tokens=args.prompt_tokens,
        threads=args.threads,
        repeats=args.repeats,
        prefill_repeats=args.prefill_repeats,
        rounds=args.rounds,
        prefill=not args.no_prefill,
        flush_denormal=not args.keep_denormals,
    )
    archs = _architectures(model)
    t0 = time.time()
    # the architectures are timed in the same interleaved rounds as the table's stacks
    table = measure_costs(model, progress=True, reference_models=archs, in_parent_context=not args.isolated, **timing)
    print(f"cost table of {name}: {time.time() - t0:.0f} s ({table.settings['dtype']}, {args.threads} thread(s))")
    if args.save:
        print("saved", table.save(args.save))
    print(f"{'variant':>16} {'decode ms':>10} {'prefill ms':>11} {'params MB':>10} {'KV B/token':>11}")
    rows = [("attn " + k, v) for k, v in table.attention.items()] + [("ffn " + k, v) for k, v in table.ffn.items()]
    rows.append(("overhead", table.overhead))
    for k, v in rows:
        print(
            f"{k:>16} {v['decode_ms']:10.3f} {v['prefill_ms']:11.2f} {v['param_bytes'] / 1e6:10.2f} "
            f"{v['kv_bytes_per_token']:11.0f}"
        )
    print()
    print(
        f"{'architecture':>32} {'decode pred':>11} {'meas':>8} {'err %':>6} {'speedup pred':>12} {'meas':>6} "
        f"{'prefill pred':>12} {'meas':>8} {'err %':>6}"
    )
    parent_pred = table.predict(model.block_configs)["decode_ms"]
    parent_meas = table.settings["reference_latency"]["parent"]["decode_ms"]
    for label, m in archs.items():
        pred = table.predict(m.block_configs)
        meas = table.settings["reference_latency"][label]
        de = 100 * (pred["decode_ms"] - meas["decode_ms"]) / meas["decode_ms"]
        pe = 100 * (pred["prefill_ms"] - meas["prefill_ms"]) / meas["prefill_ms"] if not args.no_prefill else float("nan")
        print(
            f"{label:>32} {pred['decode_ms']:11.2f} {meas['decode_ms']:8.2f} {de:+6.1f} "
            f"{parent_pred / pred['decode_ms']:12.2f} {parent_meas / meas['decode_ms']:6.2f} "
            f"{pred['prefill_ms']:12.1f} {meas['prefill_ms']:8.1f} {pe:+6.1f}"
        )
        assert pred["param_bytes"] == sum(p.numel() * p.element_size() for p in {id(p): p for p in m.parameters()}.values())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
