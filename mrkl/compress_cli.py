"""``mrkl compress``: attention removal and FFN Fusion of a Llama model (sub-commands of the ``mrkl`` CLI).

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
