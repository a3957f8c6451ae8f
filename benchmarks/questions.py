"""Run every question of a question file through mrkl and print a table.

For each question: the expected and the chosen expert, the arguments, the answer,
whether the routing and the answer are right (expected answers live beside the
questions, see :mod:`mrkl.evaluation`), and the seconds it took. The summary gives
the share routed to the right expert, the share of right answers (a question is
answered right when it was routed right and, for expert questions, the answer
holds every expected part), per expert and overall, and the median seconds.

    python benchmarks/questions.py [--file examples/questions.txt] [--model M] [--choice channel|direct|generate]
        [--arguments free|constrained] [--json out.json]

Not run by CI; the model runs greedily, so a rerun on the same machine gives the same answers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from llm_backends.resolve import DEFAULT_MODEL  # noqa: E402
from mrkl import MRKL  # noqa: E402
from mrkl.evaluation import answer_matches, load_questions  # noqa: E402
from mrkl.system import FALLBACK  # noqa: E402


def _clip(text: str, n: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--file", default=str(ROOT / "examples" / "questions.txt"))
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--choice", choices=("channel", "direct", "generate"), default="channel", help="the router's expert choice (generate: the model writes the name, as for backends without score)")
    ap.add_argument("--router", choices=("two-stage", "llm"), default="two-stage", help="two-stage: MRKL's default (embedding shortlist, then the LLM router); llm: the LLM router over every expert")
    ap.add_argument(
        "--arguments", choices=("free", "constrained"), default="free",
        help="free: MRKL's default (few-shot generation, validated and repaired); constrained: per-field schema-constrained "
        "decoding with grounded optional arguments (router/arguments.py)",
    )
    ap.add_argument("--json", dest="json_out", help="also write every row and the summary as JSON")
    args = ap.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    cases = load_questions(args.file)
    from llm_backends.transformers_backend import TransformersBackend

    from router import LLMRouter, TwoStageRouter

    backend = TransformersBackend(args.model)
    constrained = {"constrained": True, "per_field": True, "ground_optional": True} if args.arguments == "constrained" else {}
    llm_router = LLMRouter(backend, choice=args.choice, **constrained)
    router = TwoStageRouter(llm_router) if args.router == "two-stage" else llm_router
    system = MRKL(backend=backend, router=router)
    # questions that are verbatim routing examples are flagged: they measure recall, not generalisation
    seen = {ex.question.strip().lower() for e in system.registry for ex in e.examples}
    rows = []
    for case in cases:
        t0 = time.perf_counter()
        answer = system.ask(case.question)
        seconds = time.perf_counter() - t0
        chosen = answer.trace.decision.expert if answer.trace.decision else None
        routed_ok = (chosen or "none") == case.expert
        if case.expert == "none":
            right = answer.expert == FALLBACK
        else:
            right = answer.expert == case.expert and answer_matches(answer.text, case.expected)
        rows.append(
            {
                "question": case.question,
                "expected_expert": case.expert,
                "chosen_expert": chosen or "none",
                "answered_by": answer.expert,
                "args": answer.trace.decision.args if answer.trace.decision else None,
                "answer": answer.text,
                "expected": list(case.expected),
                "is_routing_example": case.question.strip().lower() in seen,
                "routed_ok": routed_ok,
                "right": right,
                "seconds": round(seconds, 3),
            }
        )
        print(f"[{len(rows)}/{len(cases)}] {seconds:5.1f}s {'ok ' if right else 'BAD'} {case.question}", file=sys.stderr)

    table = Table(title=f"mrkl on {args.file} — model {args.model}, {args.choice} scoring", show_lines=False)
    for col in ("question", "expected", "chosen", "args", "answer", "route", "answer ok", "s"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(
            _clip(r["question"], 42) + (" (example)" if r["is_routing_example"] else ""),
            r["expected_expert"],
            r["chosen_expert"],
            _clip(json.dumps(r["args"], ensure_ascii=False) if r["args"] is not None else "-", 60),
            _clip(r["answer"], 50),
            "✓" if r["routed_ok"] else "✗",
            "✓" if r["right"] else "✗",
            f"{r['seconds']:.1f}",
        )
    console = Console(width=200)
    console.print(table)

    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[r["expected_expert"]].append(r)
    summary_table = Table(title="summary")
    for col in ("expert", "n", "routed right", "answered right", "median s"):
        summary_table.add_column(col)
    summary = {}
    for name, items in sorted(groups.items()) + [("all", rows)]:
        n = len(items)
        s = {
            "n": n,
            "routed_right": sum(r["routed_ok"] for r in items) / n,
            "answered_right": sum(r["right"] for r in items) / n,
            "median_seconds": statistics.median(r["seconds"] for r in items),
        }
        summary[name] = s
        summary_table.add_row(
            name, str(n), f"{s['routed_right']:.0%}", f"{s['answered_right']:.0%}", f"{s['median_seconds']:.2f}"
        )
    console.print(summary_table)
    n_seen = sum(r["is_routing_example"] for r in rows)
    console.print(f"{n_seen} of {len(rows)} questions are verbatim routing examples (marked '(example)').")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"rows": rows, "summary": summary}, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
