"""Parallel Context Windows on Banking77 (77 intents = 77 "experts"): accuracy and seconds per question.

Ratner et al., ACL 2023 ("Parallel Context Windows for Large Language Models") report
their largest gains on classification with many classes, Banking77 among them. This
benchmark runs the same recipe on SmolLM2-135M-Instruct on the CPU:

* data: ``shared/data/banking77`` (train 10,003 / test 3,080, 77 intents). A fixed
  sample of ``--questions`` test questions (``random.Random(--sample-seed)``), and for
  every seed in ``--seeds`` a draw of ``--per-intent`` training examples per intent
  (without replacement). Window k holds example k of every intent (77 shots, about
  1.9k tokens), in a seeded random order.
* prompt: ``Question: {text}\\nIntent: {intent with spaces}\\n\\n`` per shot; the task is
  ``Question: {text}\\nIntent:``; the labels are the 77 intents as ``" {intent}\\n"``.
* decoding: restricted to the labels (token trie), label score = summed log-probability;
  labels under the ``--top-first`` most probable valid first tokens are scored exactly
  (a restricted beam at the first token), the rest get probability 0.
* calibration: contextual calibration (Zhao et al., 2021) with the content-free inputs
  ``N/A``, ``[MASK]`` and the empty question, once per context; each row shows accuracy
  without ("raw") and with it ("cal"), from the same forward passes.
* rows: one window at the per-window budget (77 shots); PCW B = 2, 3, 4 of those
  windows; the same 231 shots as B = 3 in one ordinary window (~5.7k tokens, fits the
  8k context); PCW B = 5 (385 shots, ~9.5k tokens: beyond the 8k context); the parallel
  ensemble of the B = 3 windows (Yang et al., 2023); and a nearest-example baseline on
  all-MiniLM-L6-v2 sentence embeddings (the embedding router's method; cosine 1-NN and
  class centroid) over the same 77 / 385 drawn examples.
* time: seconds per question with the windows already encoded (questions packed
  ``--batch`` at a time into two forward passes); the encoding time per context is
  listed separately. ``--single N`` also times N questions one at a time (no packing)
  on 1 window, B = 3 and the 231-shot window, side by side.

The machine may be shared: the header prints the load average; compare ratios within a
run, not absolute seconds across runs.

    OMP_NUM_THREADS=1 python benchmarks/pcw_banking77.py [--questions 100] [--seeds 0 1] [--batch 16]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

DATA = ROOT.parent / "shared" / "data" / "banking77"
CONTENT_FREE = ("N/A", "[MASK]", "")


def shot(text: str, intent: str) -> str:
    return f"Question: {text}\nIntent: {intent.replace('_', ' ')}\n\n"


def task(text: str) -> str:
    return f"Question: {text}\nIntent:"


def load(data: Path) -> tuple[list[str], dict[str, list[str]], list[tuple[str, str]]]:
    intents = json.loads((data / "categories.json").read_text())
    train: dict[str, list[str]] = {}
    with open(data / "train.csv", newline="") as f:
        for row in csv.DictReader(f):
            train.setdefault(row["category"], []).append(row["text"])
    with open(data / "test.csv", newline="") as f:
        test = [(row["text"], row["category"]) for row in csv.DictReader(f)]
    return intents, train, test


def mean_std(xs: list[float]) -> str:
    if not xs:
        return "-"
    m = 100 * statistics.mean(xs)
    s = 100 * statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{m:5.1f} ± {s:4.1f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--questions", type=int, default=100, help="test questions (fixed sample)")
    ap.add_argument("--sample-seed", type=int, default=0, help="seed of the test sample")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="seeds of the example draws")
    ap.add_argument("--per-intent", type=int, default=5, help="examples drawn per intent (= windows available)")
    ap.add_argument("--top-first", type=int, default=4, help="first tokens kept for exact label scoring (0: all)")
    ap.add_argument("--batch", type=int, default=16, help="questions packed per forward pass")
    ap.add_argument("--single", type=int, default=8, help="questions timed one at a time (0: skip)")
    ap.add_argument("--no-ensemble", action="store_true")
    ap.add_argument("--no-embedding", action="store_true")
    ap.add_argument("--json", type=Path, help="write all numbers here")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from llm_backends import pcw
    from llm_backends.transformers_backend import TransformersBackend

    intents, train, test = load(args.data)
    sample = random.Random(args.sample_seed).sample(test, min(args.questions, len(test)))
    gold = [c for _t, c in sample]
    tasks = [task(t) for t, _c in sample]
    labels = [" " + c.replace("_", " ") + "\n" for c in intents]
    label_of = {lab: c for lab, c in zip(labels, intents)}
    cf = [task(x) for x in CONTENT_FREE]
    top_first = args.top_first or None

    print(f"# PCW on Banking77 — {args.model}, torch threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.1f} (start)")
    print(f"# {len(sample)} test questions (sample seed {args.sample_seed}), example-draw seeds {args.seeds}, "
          f"{args.per_intent} examples per intent, top-first {top_first}, batch {args.batch}")
    backend = TransformersBackend(args.model, progress=None)
    print(f"# model context {backend.max_context} tokens; labels {len(labels)}; "
          f"content-free inputs {list(CONTENT_FREE)}")

    results: dict[str, dict] = {}

    def record(name: str, shots: int, b: int, tokens: str, preds_raw, preds_cal, seconds: float, enc: float):
        r = results.setdefault(name, {"shots": shots, "B": b, "tokens": tokens, "raw": [], "cal": [], "sec": [], "enc": []})
        r["raw"].append(sum(p == g for p, g in zip(preds_raw, gold)) / len(gold))
        if preds_cal is not None:
            r["cal"].append(sum(p == g for p, g in zip(preds_cal, gold)) / len(gold))
        r["sec"].append(seconds)
        r["enc"].append(enc)
        print(f"  {name:34s} raw {100 * r['raw'][-1]:5.1f}  cal {100 * r['cal'][-1] if preds_cal else float('nan'):5.1f}"
              f"  {seconds:.3f} s/q  (load {os.getloadavg()[0]:.1f})", flush=True)

    def run(ctx) -> tuple[list, list, float]:
        raw, cal = [], []
        t0 = time.perf_counter()
        backend.pcw_classify_batch(ctx, tasks[:1], labels, content_free=cf, top_first=top_first)  # calibration, once
        t_cf = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = []
        for i in range(0, len(tasks), args.batch):
            out += backend.pcw_classify_batch(ctx, tasks[i : i + args.batch], labels, content_free=cf, top_first=top_first)
        dt = (time.perf_counter() - t0) / len(tasks)
        for r in out:
            raw.append(label_of[r.labels[max(range(len(labels)), key=lambda i: r.logprobs[i])]])
            cal.append(label_of[r.best])
        return raw, cal, dt, out, t_cf

    single_times: dict[str, list[float]] = {}
    for seed in args.seeds:
        rng = random.Random(seed)
        draws = {c: rng.sample(train[c], args.per_intent) for c in intents}
        windows = []
        for k in range(args.per_intent):
            order = list(intents)
            rng.shuffle(order)
            windows.append("".join(shot(draws[c][k], c) for c in order))
        print(f"seed {seed}: encoding {len(windows)} windows ...", flush=True)
        ctx = backend.pcw_context(windows)
        print(f"  window tokens {ctx.lengths} (BOS included), {ctx.cached_tokens} cached in all, "
              f"{ctx.encode_seconds:.1f} s", flush=True)
        per_window_enc = ctx.encode_seconds / len(windows)
        first_window = None
        for b in range(1, len(windows) + 1):
            sub = ctx.subset(range(b))
            raw, cal, dt, out, t_cf = run(sub)
            if b == 1:
                first_window = (out, dt)
            name = "1 window (77 shots)" if b == 1 else f"PCW B={b} ({77 * b} shots)"
            if sub.cached_tokens > backend.max_context:
                name += " >8k"
            record(name, 77 * b, b, f"{max(sub.lengths)}/{sub.cached_tokens}", raw, cal, dt, per_window_enc * b)
            sub.release_buffers()
        joined = "".join(windows[:3])
        n_joined = 77 * min(3, len(windows))
        long_ctx = backend.pcw_context([joined])
        raw, cal, dt, _out, _ = run(long_ctx)
        record(f"1 window, {n_joined} shots (= B={min(3, len(windows))}'s)", n_joined, 1, f"{long_ctx.lengths[0]}/{long_ctx.cached_tokens}", raw, cal, dt,
               long_ctx.encode_seconds)
        if not args.no_ensemble:
            per = [first_window[0]]  # window 0 alone is the one-window row
            t_sum = first_window[1]
            nb = min(3, len(windows))
            for i in range(1, nb):
                _r, _c, dt, out, _ = run(ctx.subset([i]))
                per.append(out)
                t_sum += dt
            ens_raw, ens_cal = [], []
            for q in range(len(tasks)):
                parts_raw = [pcw.LabelScores(labels, p[q].logprobs, torch.softmax(torch.tensor(p[q].logprobs), -1).tolist())
                             for p in per]
                parts_cal = [p[q] for p in per]
                ens_raw.append(label_of[pcw.ensemble_combine(parts_raw).best])
                ens_cal.append(label_of[pcw.ensemble_combine(parts_cal).best])
            record(f"parallel ensemble of B={nb} windows", 77 * nb, nb, f"{max(ctx.lengths[:nb])}/-", ens_raw, ens_cal,
                   t_sum, per_window_enc * nb)
        if args.single and seed == args.seeds[0]:
            nb = min(3, len(windows))
            for name, c in (("1 window (77 shots)", ctx.subset([0])), (f"PCW B={nb} ({77 * nb} shots)", ctx.subset(range(nb))),
                            (f"1 window, {77 * nb} shots", long_ctx)):
                t0 = time.perf_counter()
                for q in tasks[: args.single]:
                    backend.pcw_classify(c, q, labels, content_free=cf, top_first=top_first)
                single_times[name] = [(time.perf_counter() - t0) / args.single, os.getloadavg()[0]]
        long_ctx.release_buffers()
        ctx.release_buffers()
        del ctx, long_ctx
        if not args.no_embedding:
            embedding_rows(seed, draws, intents, sample, record)

    print()
    print(f"# load average {os.getloadavg()[0]:.1f} (end); accuracy % mean ± std over {len(args.seeds)} seed(s) of "
          f"example draws, {len(sample)} questions; s/q: seconds per question, windows cached")
    print(f"| {'configuration':36s} | shots | B | tokens (max window / cached) | acc raw | acc calibrated | s/q | encode s |")
    print("|---|---|---|---|---|---|---|---|")
    base = statistics.mean(results["1 window (77 shots)"]["sec"]) if "1 window (77 shots)" in results else None
    for name, r in results.items():
        sec = statistics.mean(r["sec"])
        rel = f" ({sec / base:.2f}×)" if base and r["B"] else ""
        enc = f"{statistics.mean(r['enc']):.0f}" if r["B"] else "-"
        print(f"| {name:36s} | {r['shots']} | {r['B'] or '-'} | {r['tokens']} | {mean_std(r['raw'])} | "
              f"{mean_std(r['cal'])} | {sec:.3f}{rel} | {enc} |")
    if single_times:
        print()
        print(f"# one question at a time (no packing), {args.single} questions, seed {args.seeds[0]}, calibrated:")
        b1 = single_times["1 window (77 shots)"][0]
        for name, (sec, load_avg) in single_times.items():
            print(f"  {name:24s} {sec:.3f} s/q ({sec / b1:.2f}× one window; load {load_avg:.1f})")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "single": single_times, "args": vars(args)}, default=str, indent=1))
    return 0


def embedding_rows(seed, draws, intents, sample, record) -> None:
    """Nearest-example and class-centroid baselines on all-MiniLM-L6-v2 (the embedding router's method)."""
    import numpy as np

    from llm_backends.embeddings import load_sentence_encoder

    enc = load_sentence_encoder()
    t0 = time.perf_counter()
    q = enc.encode([t for t, _c in sample], normalize_embeddings=True, batch_size=64)
    q_s = (time.perf_counter() - t0) / len(sample)
    for per in (1, len(next(iter(draws.values())))):
        texts, owners = [], []
        for c in intents:
            for t in draws[c][:per]:
                texts.append(t)
                owners.append(c)
        t0 = time.perf_counter()
        e = enc.encode(texts, normalize_embeddings=True, batch_size=64)
        enc_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        sims = q @ e.T
        nn = [owners[int(i)] for i in sims.argmax(axis=1)]
        cent = np.stack([e[[j for j, o in enumerate(owners) if o == c]].mean(axis=0) for c in intents])
        cent /= np.linalg.norm(cent, axis=1, keepdims=True)
        centroid = [intents[int(i)] for i in (q @ cent.T).argmax(axis=1)]
        dt = (time.perf_counter() - t0) / len(sample) + q_s
        record(f"embeddings 1-NN ({77 * per} examples)", 77 * per, 0, "-", nn, None, dt, enc_s)
        record(f"embeddings centroid ({77 * per} examples)", 77 * per, 0, "-", centroid, None, dt, enc_s)


if __name__ == "__main__":
    raise SystemExit(main())
