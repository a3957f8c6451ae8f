"""Seconds per question with cached PCW windows vs. one window, measured side by side on Banking77.

Three contexts are encoded once (seed 0 draw, as in ``pcw_banking77.py``): one 77-shot
window, PCW with B = 3 such windows, and the same 231 shots in one ordinary window.
Then, interleaved over ``--rounds`` rounds so that load changes hit all three alike,
``--questions`` questions are classified packed into one call each
(``pcw_classify_batch``) and ``--single`` questions one at a time (``pcw_classify``),
calibrated, top 4 first tokens. The best round is reported with its ratio to the
one-window time (the target: PCW ≤ 1.2×).

    OMP_NUM_THREADS=1 python benchmarks/pcw_timing.py [--questions 25] [--single 3] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pcw_banking77 as pb  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--questions", type=int, default=25)
    ap.add_argument("--single", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from llm_backends.transformers_backend import TransformersBackend

    intents, train, test = pb.load(pb.DATA)
    sample = random.Random(0).sample(test, args.questions)
    tasks = [pb.task(t) for t, _c in sample]
    labels = [" " + c.replace("_", " ") + "\n" for c in intents]
    cf = [pb.task(x) for x in pb.CONTENT_FREE]
    backend = TransformersBackend(progress=None)
    rng = random.Random(0)
    draws = {c: rng.sample(train[c], 3) for c in intents}
    windows = []
    for k in range(3):
        order = list(intents)
        rng.shuffle(order)
        windows.append("".join(pb.shot(draws[c][k], c) for c in order))
    ctx = backend.pcw_context(windows)
    joined = backend.pcw_context(["".join(windows)])
    confs = [("1 window (77 shots)", ctx.subset([0])), ("PCW B=3 (231 shots)", ctx.subset([0, 1, 2])),
             ("1 window (231 shots)", joined)]
    for _n, c in confs:  # calibration and buffers, once per context (not timed)
        backend.pcw_classify_batch(c, tasks[:2], labels, content_free=cf, top_first=4)
    packed: dict[str, list[float]] = {n: [] for n, _c in confs}
    single: dict[str, list[float]] = {n: [] for n, _c in confs}
    for _ in range(args.rounds):
        for n, c in confs:
            t0 = time.perf_counter()
            backend.pcw_classify_batch(c, tasks, labels, content_free=cf, top_first=4)
            packed[n].append((time.perf_counter() - t0) / len(tasks))
        for n, c in confs:
            t0 = time.perf_counter()
            for q in tasks[: args.single]:
                backend.pcw_classify(c, q, labels, content_free=cf, top_first=4)
            single[n].append((time.perf_counter() - t0) / args.single)
    base_p, base_s = min(packed[confs[0][0]]), min(single[confs[0][0]])
    print(f"# load average {os.getloadavg()[0]:.1f}; best of {args.rounds} interleaved rounds; seconds per question")
    print(f"| context | tokens cached | packed ({args.questions} q) | one at a time ({args.single} q) |")
    print("|---|---|---|---|")
    for n, c in confs:
        p, s = min(packed[n]), min(single[n])
        print(f"| {n} | {c.cached_tokens} | {p:.3f} ({p / base_p:.2f}×) | {s:.3f} ({s / base_s:.2f}×) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
