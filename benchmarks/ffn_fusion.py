"""FFN Fusion speed/quality frontier on SmolLM2-135M-Instruct: parent, attention-removed, fused (several K).

For each variant, side by side in one run on this machine:

* parameters and sequential depth (attention + FFN sub-blocks that run one after another);
* decode ms/token at batch 1 (KV cache, after a 64-token prompt) and prefill tokens/s
  (256-token prompt), medians of ``--repeats`` rounds that measure every variant in turn
  (so changing load from other processes hits all variants alike), plus the ratio to the parent;
* fused: every run of attention-free FFNs fused except its last FFN (fusing the last is
  costly; ``--whole-runs-k`` also shows whole runs fused);
* perplexity and KL to the parent on held-out text (self-generated + project docs,
  see :mod:`llm_backends.compression.calibration`);
* routing and answer accuracy on ``examples/questions.txt`` through the MRKL system with
  the variant as its backend (saved as a Nemotron-NAS folder and loaded by
  ``TransformersBackend``, as ``mrkl ask --model DIR`` does).

    python benchmarks/ffn_fusion.py [--k 8,12,16] [--distill-k 12] [--distill-steps 40]
        [--questions 38] [--repeats 3] [--json out.json]

Speed figures on a shared machine are distorted by other load; compare ratios within one run.
Not run by CI.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

from llm_backends.compression.calibration import build_calibration  # noqa: E402
from llm_backends.compression.distill import distill  # noqa: E402
from llm_backends.compression.evaluate import kl_to_parent, perplexity  # noqa: E402
from llm_backends.compression.fusion import fuse_groups, select_fusion_groups  # noqa: E402
from llm_backends.compression.nemotron_nas import save_nemotron_nas  # noqa: E402
from llm_backends.compression.pipeline import attention_scores, load_model  # noqa: E402
from llm_backends.compression.scoring import remove_attention  # noqa: E402


def _log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


@torch.inference_mode()
def decode_ms(model, prompt: torch.Tensor, tokens: int, repeats: int) -> float:
    """Median ms per generated token (batch 1, KV cache, greedy)."""
    times = []
    for _ in range(repeats):
        out = model(prompt, use_cache=True)
        cache = out.cache
        nxt = out.logits[:, -1:].argmax(-1)
        t0 = time.perf_counter()
        for _ in range(tokens):
            out = model(nxt, cache=cache, use_cache=True)
            cache = out.cache
            nxt = out.logits[:, -1:].argmax(-1)
        times.append((time.perf_counter() - t0) / tokens * 1000)
    return statistics.median(times)


@torch.inference_mode()
def prefill_tps(model, prompt: torch.Tensor, repeats: int) -> float:
    """Median prefill tokens/s (one forward pass over the prompt)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model(prompt, use_cache=True)
        times.append(time.perf_counter() - t0)
    return prompt.numel() / statistics.median(times)


def question_accuracy(folder_or_alias: str, limit: int, stride: int = 1) -> dict:
    """Routing / answer accuracy of the MRKL system with this model as its backend."""
    from llm_backends.transformers_backend import TransformersBackend
    from mrkl import MRKL
    from mrkl.evaluation import answer_matches, load_questions
    from mrkl.system import FALLBACK
    from router import LLMRouter

    cases = load_questions(ROOT / "examples" / "questions.txt")[::stride][:limit]
    backend = TransformersBackend(folder_or_alias, progress=None)
    system = MRKL(backend=backend, router=LLMRouter(backend))
    routed = right = 0
    t0 = time.perf_counter()
    for case in cases:
        answer = system.ask(case.question)
        chosen = answer.trace.decision.expert if answer.trace.decision else None
        routed += (chosen or "none") == case.expert
        if case.expert == "none":
            right += answer.expert == FALLBACK
        else:
            right += answer.expert == case.expert and answer_matches(answer.text, case.expected)
    n = len(cases)
    return {"n": n, "routed": routed / n, "answered": right / n, "s_per_q": (time.perf_counter() - t0) / n}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--k", default="8,12,16", help="attention removals to try (comma-separated)")
    ap.add_argument("--removed-only-k", default="12", help="K values also shown attention-removed but unfused")
    ap.add_argument("--whole-runs-k", default="12", help="K values also fused with each run's last FFN included")
    ap.add_argument("--distill-k", default="12", help="K values whose fused model is also distilled")
    ap.add_argument("--distill-steps", type=int, default=40)
    ap.add_argument("--windows", type=int, default=4, help="calibration windows (128 tokens) for scoring")
    ap.add_argument("--eval-windows", type=int, default=8, help="held-out windows (128 tokens) for perplexity")
    ap.add_argument("--questions", type=int, default=1000, help="at most this many questions of examples/questions.txt")
    ap.add_argument("--question-stride", type=int, default=1, help="use every n-th question (a spread-out subset)")
    ap.add_argument("--questions-for", default="", help="';'-separated variant labels that get the question set (default: all)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--decode-tokens", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", default="/tmp/mrkl-ffn-fusion-bench", help="folder for the saved variants")
    ap.add_argument("--speed-only", action="store_true", help="only parameters, depth, decode and prefill speed")
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    ks = [int(k) for k in args.k.split(",") if k]
    removed_only = {int(k) for k in args.removed_only_k.split(",") if k}
    distill_k = {int(k) for k in args.distill_k.split(",") if k}
    whole_runs = {int(k) for k in args.whole_runs_k.split(",") if k}
    work = Path(args.work)

    parent, tok, name = load_model(args.model, _log)
    calib = build_calibration(parent, tok, progress=_log)
    _log("calibration: " + calib.describe())
    win = calib.train[: args.windows]
    held_gen = calib.heldout_of("self_generated")[: args.eval_windows]
    held_docs = calib.heldout_of("project_docs")[: args.eval_windows]
    fit = calib.train[args.windows : args.windows + 16]  # as `mrkl compress analyze`: shares its cached scores
    scores = attention_scores(parent, win, _log, fit_windows=fit)

    variants: list[tuple[str, object, str | None]] = [("parent", parent, None)]
    for k in ks:
        layers = scores.lowest(k)
        removed = remove_attention(parent, layers)
        if k in removed_only:
            variants.append((f"K={k} attention removed", removed, None))
        if k in whole_runs:
            plan = select_fusion_groups(removed, exclude_last=False)
            _log(f"K={k}: attention removed in {layers}; fused whole runs {plan.groups}")
            variants.append((f"K={k} fused, whole runs", fuse_groups(removed, plan.groups), None))
        plan = select_fusion_groups(removed, exclude_last=True)
        fused = fuse_groups(removed, plan.groups)
        _log(f"K={k}: attention removed in {layers}; fused groups (last FFN of each run kept apart) {plan.groups}")
        variants.append((f"K={k} fused", fused, None))
        if k in distill_k and args.distill_steps > 0:
            student = fused.clone()
            res = distill(student, parent, calib.train, args.distill_steps, checkpoint=work / f"distill-k{k}.pt")
            _log(f"K={k}: distilled {res.steps} steps in {res.seconds:.0f} s")
            variants.append((f"K={k} fused + distil {args.distill_steps} steps", student, None))

    g = torch.Generator().manual_seed(0)
    prompt_decode = torch.randint(0, 49152, (1, 64), generator=g)
    prompt_prefill = torch.randint(0, 49152, (1, 256), generator=g)
    # speed: round-robin over the variants, so load from other processes hits all of them alike
    dec: dict[str, list[float]] = {label: [] for label, _, _ in variants}
    pre: dict[str, list[float]] = {label: [] for label, _, _ in variants}
    for r in range(args.repeats):
        _log(f"speed round {r + 1}/{args.repeats}")
        for label, model, _ in variants:
            dec[label].append(decode_ms(model, prompt_decode, args.decode_tokens, 1))
            pre[label].append(prefill_tps(model, prompt_prefill, 1))
    rows = []
    for label, model, _ in variants:
        if args.speed_only:
            rows.append({"variant": label, "params_M": model.num_parameters() / 1e6, "layers": len(model.layers),
                         "depth": model.sequential_depth(), "decode_ms": statistics.median(dec[label]),
                         "prefill_tps": statistics.median(pre[label])})
            continue
        _log(f"measuring {label}")
        row = {
            "variant": label,
            "params_M": model.num_parameters() / 1e6,
            "layers": len(model.layers),
            "depth": model.sequential_depth(),
            "decode_ms": statistics.median(dec[label]),
            "prefill_tps": statistics.median(pre[label]),
            "ppl_selfgen": perplexity(model, held_gen),
            "ppl_docs": perplexity(model, held_docs),
            "kl": 0.0 if model is parent else kl_to_parent(model, parent, torch.cat([held_gen, held_docs])),
        }
        wanted = [x.strip() for x in args.questions_for.split(";") if x.strip()]
        if args.questions > 0 and (not wanted or label in wanted):
            folder = args.model if model is parent else str(save_nemotron_nas(model, work / label.replace(" ", "_").replace("=", ""), tokenizer=tok))
            row.update({f"q_{k}": v for k, v in question_accuracy(folder, args.questions, args.question_stride).items()})
        rows.append(row)
        _log(json.dumps(row))

    from rich.console import Console
    from rich.table import Table

    base = rows[0]
    t = Table(title=f"FFN Fusion on {name} (CPU, {args.threads} thread(s); held-out {held_gen.numel()} self-generated + {held_docs.numel()} docs tokens)")
    for col in ("variant", "params M", "layers", "depth", "decode ms/tok", "×", "prefill tok/s", "×", "ppl self-gen", "ppl docs", "KL", "routed", "answered"):
        t.add_column(col)
    for r in rows:
        t.add_row(
            r["variant"],
            f"{r['params_M']:.1f}",
            str(r["layers"]),
            f"{r['depth']} ({1 - r['depth'] / base['depth']:.0%}↓)",
            f"{r['decode_ms']:.1f}",
            f"{base['decode_ms'] / r['decode_ms']:.2f}",
            f"{r['prefill_tps']:.0f}",
            f"{r['prefill_tps'] / base['prefill_tps']:.2f}",
            f"{r.get('ppl_selfgen', float('nan')):.2f}",
            f"{r.get('ppl_docs', float('nan')):.2f}",
            f"{r.get('kl', float('nan')):.3f}",
            f"{r.get('q_routed', float('nan')):.0%}",
            f"{r.get('q_answered', float('nan')):.0%}",
        )
    Console(width=200).print(t)
    print("calibration: " + calib.describe())
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"rows": rows, "calibration": calib.counts, "scores": scores.to_dict()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
