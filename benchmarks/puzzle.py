"""Puzzle on SmolLM2-135M-Instruct: the speed/quality frontier of MIP and greedy searches.

For several decode speed-up budgets the script searches an architecture with the MIP
(and, at the same budgets, with the greedy baseline), realises it from the block library,
optionally distils it globally, and reports side by side with the parent:

* the chosen architecture (compact per-layer string, see :func:`~llm_backends.compression.puzzle.arch_string`),
* predicted decode speed-up (cost table) vs measured (parent and candidate timed in the same run),
* held-out perplexity and KL to the parent,
* routing and answer accuracy of the whole mrkl system on ``examples/questions.txt``
  (default two-stage router), and the share of the parent's right answers kept,

and writes a PNG of the frontier (measured speed-up vs answer accuracy).

    python benchmarks/puzzle.py [--speedups 1.25 1.5 2.0] [--distill-steps N --distill-at 1.5] [--limit N]
        [--vllm-compatible | --vllm-speedups 1.5] [--out /tmp/puzzle-bench] [--plot puzzle_frontier.png] [--json out.json]

The block library (BLD, scores, costs) is built once and cached (see ``mrkl compress puzzle``).
Not run by CI. Timings depend on the machine's load; ratios are measured side by side
(each candidate right after a fresh measurement of the parent). Finished rows are kept in
``OUT/rows/`` and reused by a rerun when the architecture is the same; a greedy choice equal
to the MIP's reuses the MIP's row.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _question_accuracy(model_dir: Path, questions: str, limit: int | None, work: Path) -> dict:
    """Run benchmarks/questions.py on a saved model; returns its summary for ``all``."""
    import questions as qbench

    qfile = questions
    if limit:
        lines = [l for l in Path(questions).read_text().splitlines() if l.strip() and not l.startswith("#")][:limit]
        qfile = str(work / "questions-subset.txt")
        Path(qfile).write_text("\n".join(lines) + "\n")
    out = work / f"questions-{model_dir.name}.json"
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        qbench.main(["--file", qfile, "--model", str(model_dir), "--json", str(out)])
    return json.loads(out.read_text())["summary"]["all"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--speedups", type=float, nargs="+", default=[1.25, 1.5, 2.0])
    ap.add_argument("--greedy", action=argparse.BooleanOptionalAction, default=True, help="also run the greedy baseline at every budget")
    ap.add_argument("--vllm-compatible", action="store_true", help="exclude linear replacements at every budget")
    ap.add_argument("--vllm-speedups", type=float, nargs="*", default=[], help="extra budgets searched without linear replacements")
    ap.add_argument("--distill-steps", type=int, default=0, help="global distillation steps (hidden cosine + logit KL) for an extra row")
    ap.add_argument("--distill-at", type=float, nargs="*", default=[1.5], help="the MIP budgets that get a distilled row")
    ap.add_argument("--bld-steps", type=int, default=100)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--questions", default=str(ROOT / "examples" / "questions.txt"))
    ap.add_argument("--limit", type=int, default=None, help="first N questions only")
    ap.add_argument("--no-questions", action="store_true", help="skip the question-set accuracy (fast)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for every timing (the cost table is measured with the same)")
    ap.add_argument("--out", default="/tmp/puzzle-bench")
    ap.add_argument("--plot", default="puzzle_frontier.png")
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args(argv)

    import torch
    from rich.console import Console
    from rich.table import Table

    from llm_backends.compression.bld import BLDSettings
    from llm_backends.compression.costs import measure_model_latency
    from llm_backends.compression.distill import distill
    from llm_backends.compression.evaluate import kl_to_parent, perplexity
    from llm_backends.compression.library import LibrarySpec
    from llm_backends.compression.mip import InfeasibleBudgetError
    from llm_backends.compression.nemotron_nas import save_nemotron_nas
    from llm_backends.compression.puzzle import Budgets, arch_string, prepare_library, realise, search_architecture

    if args.threads:
        torch.set_num_threads(args.threads)
    log = lambda m: print(f"[puzzle] {m}", file=sys.stderr, flush=True)  # noqa: E731
    work = Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    prep = prepare_library(args.model, LibrarySpec(), BLDSettings(steps=args.bld_steps), args.workers, threads=args.threads, progress=log)
    parent, tok, name, library, scores, costs = prep.parent, prep.tokenizer, prep.name, prep.library, prep.scores, prep.costs
    calib, eval_w = prep.calibration, prep.eval_windows
    width = parent.config.intermediate_size

    rows: list[dict] = []
    done = work / "rows"
    done.mkdir(exist_ok=True)
    by_arch: dict[str, dict] = {}

    def evaluate(label: str, method: str, speedup: float | None, model, search=None) -> dict:
        arch = arch_string(model.block_configs, width)
        cached = done / f"{label}.json"
        if cached.is_file():  # a rerun of the benchmark reuses a finished row of the same architecture
            row = json.loads(cached.read_text())
            if row.get("architecture") == arch and (args.no_questions or "answered_right" in row):
                by_arch.setdefault(arch, row)
                return row
        if arch in by_arch and method in ("greedy", "greedy-vllm"):  # greedy chose what the MIP chose: same model
            row = {**by_arch[arch], "label": label, "method": method, "summed_score": search.objective if search is not None else 0.0, "same_as": by_arch[arch]["label"]}
            cached.write_text(json.dumps(row))
            return row
        t0 = time.perf_counter()
        pair = {}
        if model is not parent:
            pair["parent"] = measure_model_latency(parent, threads=args.threads)
        pair["model"] = measure_model_latency(model, threads=args.threads)
        base = pair.get("parent", pair["model"])
        pred = costs.predict(model.block_configs)
        pred_parent = costs.predict(parent.block_configs)
        row = {
            "label": label,
            "method": method,
            "budget_speedup": speedup,
            "architecture": arch_string(model.block_configs, width),
            "params": model.num_parameters(),
            "predicted_decode_ms": pred["decode_ms"],
            "measured_decode_ms": pair["model"]["decode_ms"],
            "predicted_speedup": pred_parent["decode_ms"] / pred["decode_ms"],
            "measured_speedup": base["decode_ms"] / pair["model"]["decode_ms"],
            "measured_prefill_speedup": base["prefill_ms"] / pair["model"]["prefill_ms"],
            "prediction_error": pair["model"]["decode_ms"] / pred["decode_ms"] - 1,
            "ppl": perplexity(model, eval_w),
            "kl": kl_to_parent(model, parent, eval_w) if model is not parent else 0.0,
            "summed_score": search.objective if search is not None else 0.0,
        }
        if not args.no_questions:
            folder = work / label
            save_nemotron_nas(model, folder, tokenizer=tok)
            q = _question_accuracy(folder, args.questions, args.limit, work)
            row["routed_right"], row["answered_right"] = q["routed_right"], q["answered_right"]
        row["seconds"] = time.perf_counter() - t0
        log(f"{label}: {json.dumps({k: v for k, v in row.items() if k != 'architecture'})}")
        cached.write_text(json.dumps(row))
        by_arch.setdefault(arch, row)
        return row

    rows.append(evaluate("parent", "parent", None, parent))
    plan = [(sp, args.vllm_compatible) for sp in args.speedups] + [(sp, True) for sp in args.vllm_speedups]
    for sp, vllm in plan:
        for method in ("mip", "greedy") if args.greedy else ("mip",):
            try:
                blocks, res = search_architecture(parent, scores, costs, Budgets(decode_speedup=sp), vllm, method)
            except InfeasibleBudgetError as exc:
                log(f"{method} at {sp}x: {exc}")
                continue
            model = realise(parent, library, blocks)
            tag = "-vllm" if vllm and not args.vllm_compatible else ""
            rows.append(evaluate(f"{method}{tag}-{sp:g}x", method + tag, sp, model, res))
            if args.distill_steps and method == "mip" and sp in args.distill_at:
                label = f"mip{tag}-{sp:g}x+distill{args.distill_steps}"
                if not (done / f"{label}.json").is_file():  # a finished row needs no second distillation
                    log(f"global distillation of mip{tag}-{sp:g}x: {args.distill_steps} steps")
                    distill(model, parent, calib.train, args.distill_steps, show_progress=False)
                rows.append(evaluate(label, "mip+distill", sp, model, res))
            del model

    parent_right = rows[0].get("answered_right")
    table = Table(title=f"Puzzle on {name} (BLD {args.bld_steps} steps/variant, distill {args.distill_steps} steps; {torch.get_num_threads()} threads)")
    cols = ["model", "architecture", "score ΣKL", "pred. speed-up", "meas. speed-up", "speed-up error", "prefill speed-up", "params M", "ppl", "KL"]
    if parent_right is not None:
        cols += ["routed", "answered", "of parent"]
    for c in cols:
        table.add_column(c, overflow="fold")
    for r in rows:
        cells = [
            r["label"], r["architecture"], f"{r['summed_score']:.2f}", f"{r['predicted_speedup']:.2f}x", f"{r['measured_speedup']:.2f}x",
            f"{r['measured_speedup'] / r['predicted_speedup'] - 1:+.1%}", f"{r['measured_prefill_speedup']:.2f}x", f"{r['params'] / 1e6:.1f}", f"{r['ppl']:.2f}", f"{r['kl']:.3f}",
        ]
        if parent_right is not None:
            cells += [f"{r['routed_right']:.0%}", f"{r['answered_right']:.0%}", f"{r['answered_right'] / parent_right:.0%}" if parent_right else "-"]
        if r.get("same_as"):
            cells[0] += f" (= {r['same_as']})"
        table.add_row(*cells)
    Console(width=220).print(table)
    Console().print("architecture: per layer <attention><FFN>; attention = KV heads | L linear | - none; FFN = width in eighths of 1536 | L | -")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ykey = "answered_right" if parent_right is not None else "ppl"
    for method, marker in (("parent", "*"), ("mip", "o"), ("greedy", "s"), ("mip-vllm", "^"), ("greedy-vllm", "v"), ("mip+distill", "D")):
        pts = sorted((r["measured_speedup"], r[ykey]) for r in rows if r["method"] == method)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, label=method)
    ax.set_xlabel("measured decode speed-up vs parent (batch 1, CPU)")
    ax.set_ylabel("answer accuracy on examples/questions.txt" if ykey == "answered_right" else "held-out perplexity")
    ax.set_title(f"Puzzle frontier, {name}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.plot, dpi=120)
    print(f"frontier plot: {args.plot}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"rows": rows, "costs": costs.to_dict()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
