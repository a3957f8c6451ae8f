"""``mrkl compress``: attention removal, FFN Fusion and Puzzle search of a Llama model (sub-commands of the ``mrkl`` CLI).

No logic lives here: it calls :mod:`llm_backends.compression.pipeline` and prints.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from llm_backends.resolve import DEFAULT_MODEL

compress_app = typer.Typer(
    help="Compress a Llama model: remove attention by replace-one-block scoring, fuse FFN runs (FFN Fusion), "
    "search a per-layer architecture under speed/memory budgets (Puzzle), "
    "save in the Nemotron-NAS format.",
    no_args_is_help=True,
)


def _progress(message: str) -> None:
    print(f"[mrkl] {message}", file=sys.stderr, flush=True)


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


@compress_app.command()
def analyze(
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Model alias, .gguf file or model folder."),
    remove_attention: int = typer.Option(12, "--remove-attention", "-k", min=0, help="Attentions removed before the FFN dependency analysis."),
    windows: int = typer.Option(4, "--windows", min=1, help="Calibration windows of 128 tokens for scoring."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for analysis.json and dependency.png (default: ./compress-analysis)."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole analysis as JSON."),
) -> None:
    """Replace-one-block attention scores, the FFN dependency heatmap, and the cost of fusing each run's last FFN."""
    from llm_backends.compression.pipeline import analyze as run_analysis
    from llm_backends.errors import BackendError

    try:
        res = run_analysis(model, out or Path("compress-analysis"), remove_attention, windows, progress=_progress)
    except (ValueError, OSError, BackendError) as exc:
        _fail(str(exc))
    if as_json:
        from dataclasses import asdict

        typer.echo(json.dumps(asdict(res), indent=1))
        return
    typer.echo(f"model {res.model}; calibration: " + ", ".join(f"{k} {v}" for k, v in res.calibration_tokens.items()))
    typer.echo(f"replace-one-block KL (nats/token over {res.scoring_tokens} tokens):")
    typer.echo("layer  attention->no-op  attention->linear")
    for i, a in enumerate(res.kl_no_op):
        b = res.kl_linear[i] if i < len(res.kl_linear) else float("nan")
        mark = "  removed" if i in res.removed_attention else ""
        typer.echo(f"{i:5d}  {a:16.4f}  {b:17.4f}{mark}")
    typer.echo(f"attention removed in {res.removed_attention}; FFN runs: {res.runs}")
    for row in res.last_ffn:
        typer.echo(
            f"run {row['run']}: KL unfused {row['kl_unfused']:.4f}, fuse all {row['kl_fuse_all']:.4f}, "
            f"without last FFN {row['kl_fuse_without_last']:.4f} (last FFN costs {row['last_ffn_cost']:+.4f})"
        )
    typer.echo(f"heatmap: {res.heatmap}")


@compress_app.command()
def fuse(
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Model alias, .gguf file or model folder."),
    remove_attention: int = typer.Option(..., "--remove-attention", "-k", min=0, help="Number of attentions to remove (lowest KL first)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (a Nemotron-NAS model: mrkl ask --model OUT)."),
    distill_steps: int = typer.Option(0, "--distill-steps", min=0, help="Short distillation steps against the parent (resumable)."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Split runs where FFN dependency exceeds this (default: fuse whole runs)."),
    exclude_last: bool = typer.Option(True, "--exclude-last/--include-last", help="Leave each run's last FFN unfused (fusing it is costly)."),
    windows: int = typer.Option(4, "--windows", min=1, help="Calibration windows of 128 tokens for scoring."),
) -> None:
    """Remove K attentions, fuse the FFN runs into wide FFNs, optionally distil, save as Nemotron-NAS."""
    from llm_backends.compression.pipeline import compress
    from llm_backends.errors import BackendError

    try:
        res = compress(model, remove_attention, out, distill_steps, threshold, exclude_last, windows, progress=_progress)
    except (ValueError, OSError, BackendError) as exc:
        _fail(str(exc))
    typer.echo(f"attention removed in layers {res.removed_attention}")
    typer.echo(f"fused FFN groups {res.fused_groups}")
    typer.echo(f"sequential depth {res.depth_parent} -> {res.depth_compressed} ({1 - res.depth_compressed / res.depth_parent:.0%} fewer)")
    typer.echo(f"parameters {res.params_parent:,} -> {res.params_compressed:,}")
    typer.echo("held-out: " + ", ".join(f"{k} {v:.3f}" for k, v in res.heldout.items()))
    typer.echo(f"saved to {res.out_dir} (mrkl ask --model {res.out_dir} \"...\")")


@compress_app.command()
def puzzle(
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Parent model: alias, .gguf file or Llama model folder."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (a Nemotron-NAS model: mrkl ask --model OUT); omit to search and report only."),
    target_speedup: Optional[float] = typer.Option(1.5, "--target-speedup", help="Decode speed-up over the parent at batch 1 (predicted from measured costs); 0 turns the latency budget off."),
    prefill_speedup: Optional[float] = typer.Option(None, "--prefill-speedup", help="Prefill speed-up over the parent for a routing-sized prompt."),
    budget_memory: Optional[float] = typer.Option(None, "--budget-memory", help="MiB of parameters plus the KV cache of --memory-context tokens."),
    memory_context: int = typer.Option(4096, "--memory-context", min=1, help="Context tokens the memory budget counts the KV cache for."),
    budget_params: Optional[float] = typer.Option(None, "--budget-params", help="Millions of parameters."),
    vllm_compatible: bool = typer.Option(False, "--vllm-compatible", help="No linear replacements (vLLM's nemotron_nas does not serve them)."),
    bld_steps: int = typer.Option(100, "--bld-steps", min=0, help="Blockwise-distillation steps per variant."),
    workers: int = typer.Option(2, "--workers", min=1, help="Parallel BLD processes (one thread each)."),
    distill_steps: int = typer.Option(0, "--distill-steps", min=0, help="Global distillation steps of the result (hidden cosine + logit KL)."),
    fuse: bool = typer.Option(False, "--fuse", help="Afterwards fuse the FFN runs of attention-free layers (FFN Fusion)."),
    library: Optional[Path] = typer.Option(None, "--library", help="Block-library folder (default: in the mrkl cache, reused across runs)."),
    remeasure: bool = typer.Option(False, "--remeasure", help="Measure the variants' costs again."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole result as JSON."),
) -> None:
    """Puzzle: block library, blockwise distillation, replace-one-block scores, measured costs, MIP search (and greedy for comparison)."""
    from llm_backends.compression.bld import BLDSettings
    from llm_backends.compression.mip import InfeasibleBudgetError
    from llm_backends.compression.puzzle import Budgets, run_puzzle
    from llm_backends.errors import BackendError

    try:
        budgets = Budgets(
            decode_speedup=target_speedup or None,
            prefill_speedup=prefill_speedup,
            memory_mib=budget_memory,
            params_millions=budget_params,
            memory_context=memory_context,
        )
        res = run_puzzle(
            model, out, budgets, vllm_compatible, bld=BLDSettings(steps=bld_steps), workers=workers,
            distill_steps=distill_steps, fuse=fuse, library_dir=library, remeasure_costs=remeasure, progress=_progress,
        )
    except InfeasibleBudgetError as exc:
        _fail(f"budget cannot be met: {exc}")
    except (ValueError, OSError, BackendError, RuntimeError) as exc:
        _fail(str(exc))
    if as_json:
        from dataclasses import asdict

        typer.echo(json.dumps(asdict(res), indent=1))
        return
    p, q = res.predicted["parent"], res.predicted["puzzle"]
    typer.echo(f"parent {res.model}; calibration: " + ", ".join(f"{k} {v}" for k, v in res.calibration_tokens.items()))
    typer.echo("architecture (per layer: attention KV heads|L|- then FFN width in eighths|L|-):")
    typer.echo(f"  MIP    {res.architecture}   summed KL {res.mip['objective']:.3f}")
    typer.echo(f"  greedy {res.greedy_architecture}   summed KL {res.greedy['objective']:.3f}")
    typer.echo(f"predicted decode {p['decode_ms']:.2f} -> {q['decode_ms']:.2f} ms/token ({p['decode_ms'] / q['decode_ms']:.2f}x), "
               f"prefill {p['prefill_ms']:.1f} -> {q['prefill_ms']:.1f} ms")
    if res.measured:
        mp, mq = res.measured["parent"], res.measured["puzzle"]
        typer.echo(f"measured  decode {mp['decode_ms']:.2f} -> {mq['decode_ms']:.2f} ms/token ({mp['decode_ms'] / mq['decode_ms']:.2f}x), "
                   f"prefill {mp['prefill_ms']:.1f} -> {mq['prefill_ms']:.1f} ms")
    typer.echo(f"parameters {res.params['parent']:,} -> {res.params['puzzle']:,}")
    typer.echo("held-out: " + ", ".join(f"{k} {v:.3f}" for k, v in res.heldout.items()))
    if res.fused_groups:
        typer.echo(f"fused FFN groups {res.fused_groups}")
    typer.echo(f"library: {res.library_dir}")
    if res.out_dir:
        typer.echo(f"saved to {res.out_dir} (mrkl ask --model {res.out_dir} \"...\")")
