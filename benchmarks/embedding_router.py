"""The embedding router: accuracy of each score aggregate, calibration, and shortlist latency up to 500 experts.

Three tables (all-MiniLM-L6-v2, CPU):

1. **Aggregates on Banking77** (77 intents as 77 experts; each expert's description
   is its intent name in words, its routing examples the first ``--shots`` training
   questions of the intent; the test questions are a fixed-seed sample of the test
   split): top-1 accuracy and recall@3 of ``max`` and ``topk_mean`` cosine, with and
   without the description, and of the description alone.
2. **BFCL** (``multiple``: each question's 2–4 functions as experts, descriptions
   only; ``irrelevance``: none of its functions fits): expert accuracy, and the
   expert-or-none accuracy of a none threshold fitted (:meth:`EmbeddingRouter.fit`)
   on one half of the questions and tested on the other.
3. **Shortlist latency** at 2, 50 and 500 synthetic experts: time to embed all
   experts once (cold), to fit, and p50/p95 of one shortlist (question embedding +
   scoring), in milliseconds.

    python benchmarks/embedding_router.py [--data ../shared/data] [--shots 8] [--per-intent 5] [--json out.json]

Not run by CI. Timings depend on the machine's load; compare within one run.
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
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from mrkl.expert import RoutingExample  # noqa: E402
from router.embedding import EmbeddingRouter, LabelledQuestion  # noqa: E402


class MemoEncoder:
    """Wraps a sentence encoder and remembers every text's vector (configurations share the work)."""

    def __init__(self, encoder: Any) -> None:
        self.encoder = encoder
        self.memo: dict[str, Any] = {}

    def encode(self, texts, **kw):
        import numpy as np

        todo = [t for t in dict.fromkeys(texts) if t not in self.memo]
        if todo:
            for t, v in zip(todo, self.encoder.encode(todo, **kw)):
                self.memo[t] = v
        return np.stack([self.memo[t] for t in texts])


def _expert(name: str, description: str, questions: list[str]) -> Any:
    return SimpleNamespace(name=name, description=description, examples=[RoutingExample(q, {}) for q in questions])


def banking77(data: Path, shots: int, per_intent: int, encoder: Any, seed: int = 0) -> list[dict[str, Any]]:
    """Table 1 rows: aggregate, description, accuracy@1, recall@3, n."""
    train: dict[str, list[str]] = {}
    with open(data / "banking77" / "train.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            train.setdefault(row["category"], []).append(row["text"])
    test: dict[str, list[str]] = {}
    with open(data / "banking77" / "test.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            test.setdefault(row["category"], []).append(row["text"])
    rng = random.Random(seed)
    cases = [(q, cat) for cat, qs in sorted(test.items()) for q in rng.sample(qs, min(per_intent, len(qs)))]
    configs = [
        ("max", True, shots),
        ("max", False, shots),
        ("topk_mean", True, shots),
        ("description only", True, 0),
    ]
    rows = []
    for agg, with_desc, k in configs:
        experts = [_expert(cat, cat.replace("_", " "), qs[:k]) for cat, qs in sorted(train.items())]
        r = EmbeddingRouter(encoder, aggregate="max" if agg == "description only" else agg, include_description=with_desc)
        top1 = top3 = 0
        for q, cat in cases:
            ranked = r.rank(q, experts).experts
            top1 += ranked[0] == cat
            top3 += cat in ranked[:3]
        rows.append(
            {
                "aggregate": agg,
                "description": with_desc,
                "shots": k,
                "accuracy": 100.0 * top1 / len(cases),
                "recall_at_3": 100.0 * top3 / len(cases),
                "n": len(cases),
            }
        )
    return rows


def _bfcl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def bfcl(data: Path, encoder: Any, seed: int = 0) -> dict[str, Any]:
    """Table 2: expert accuracy on ``multiple``; expert-or-none accuracy with a fitted threshold."""
    folder = data / "bfcl"
    multiple = _bfcl(folder / "BFCL_v4_multiple.json")
    answers = {a["id"]: next(iter(a["ground_truth"][0])) for a in _bfcl(folder / "possible_answer" / "BFCL_v4_multiple.json")}
    irrelevance = _bfcl(folder / "BFCL_v4_irrelevance.json")

    def experts_of(item):
        return tuple(_expert(fn["name"], fn.get("description", "") or fn["name"], []) for fn in item["function"])

    items = [LabelledQuestion(m["question"][0][-1]["content"], answers[m["id"]], experts_of(m)) for m in multiple]
    items += [LabelledQuestion(i["question"][0][-1]["content"], None, experts_of(i)) for i in irrelevance]
    r = EmbeddingRouter(encoder)
    right = 0
    positives = [it for it in items if it.expert is not None]
    for it in positives:
        right += r.rank(it.question, it.experts).experts[0] == it.expert
    rng = random.Random(seed)
    shuffled = items[:]
    rng.shuffle(shuffled)
    half = len(shuffled) // 2
    fit_part, test_part = shuffled[:half], shuffled[half:]
    report = r.fit([], fit_part, negatives=[], use_routing_examples=False)
    pos_right = neg_right = n_pos = n_neg = 0
    for it in test_part:
        best, _rk = r.choose(it.question, it.experts)
        if it.expert is None:
            n_neg += 1
            neg_right += best is None
        else:
            n_pos += 1
            pos_right += best == it.expert
    return {
        "multiple_expert_accuracy": 100.0 * right / len(positives),
        "multiple_n": len(positives),
        "fit": report.to_dict(),
        "held_out_multiple_right": 100.0 * pos_right / max(n_pos, 1),
        "held_out_irrelevance_right": 100.0 * neg_right / max(n_neg, 1),
        "held_out_n": len(test_part),
    }


_THINGS = [
    "city", "country", "river", "mountain", "planet", "star", "company", "stock", "movie", "book",
    "song", "album", "painting", "car", "airport", "train", "ship", "hotel", "restaurant", "recipe",
    "protein", "gene", "mineral", "volcano", "language",
]
_ATTRS = [
    "population", "area", "length", "height", "age", "price", "rating", "founder", "location", "temperature",
    "distance", "capacity", "speed", "weight", "color", "owner", "revenue", "director", "author", "elevation",
]


def synthetic(n: int) -> list[Any]:
    """``n`` look-up experts ("the population of a city" ...), each with a description and two examples."""
    out = []
    for i in range(n):
        t, a = _THINGS[i % len(_THINGS)], _ATTRS[(i // len(_THINGS)) % len(_ATTRS)]
        v = i // (len(_THINGS) * len(_ATTRS))
        out.append(
            _expert(
                f"{t}_{a}_{v}",
                f"Look up the {a} of a {t} by its name (source {v}).",
                [f"what is the {a} of the {t} called Foo?", f"tell me the {a} of {t} Bar"],
            )
        )
    return out


def latency(sizes: list[int], repeats: int, raw_encoder: Any) -> list[dict[str, Any]]:
    """Table 3 rows: experts, texts, cold embedding seconds, fit seconds, shortlist p50/p95 ms."""
    from experts import builtin_experts

    questions = [
        "what is fifty seven plus three?",
        "how many albums does Led Zeppelin have?",
        "what's the population of Lyon?",
        "who directed the movie Alien?",
        "how fast is the train TGV?",
    ]
    rows = []
    for n in sizes:
        experts = [*builtin_experts(), *synthetic(max(0, n - 2))][:n]
        r = EmbeddingRouter(raw_encoder)
        t0 = time.perf_counter()
        texts = r.prepare(experts)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        r.fit(experts)
        fit_s = time.perf_counter() - t0
        times = []
        for i in range(repeats):
            t0 = time.perf_counter()
            r.shortlist(questions[i % len(questions)], experts, k=3)
            times.append(1000 * (time.perf_counter() - t0))
        times.sort()
        rows.append(
            {
                "experts": n,
                "texts": texts,
                "embed_all_s": cold,
                "fit_s": fit_s,
                "shortlist_p50_ms": statistics.median(times),
                "shortlist_p95_ms": times[min(len(times) - 1, int(0.95 * len(times)))],
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--shots", type=int, default=8, help="routing examples per Banking77 intent")
    ap.add_argument("--per-intent", type=int, default=5, help="test questions per Banking77 intent")
    ap.add_argument("--sizes", default="2,50,500")
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args(argv)

    import torch
    from rich.console import Console
    from rich.table import Table

    from llm_backends.embeddings import load_sentence_encoder

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    console = Console()
    raw = load_sentence_encoder()
    memo = MemoEncoder(raw)
    data = Path(args.data)
    out: dict[str, Any] = {}

    out["banking77"] = banking77(data, args.shots, args.per_intent, memo)
    t = Table(title=f"Banking77: 77 intents as experts, {args.shots} routing examples each")
    for c in ("aggregate", "description", "examples", "accuracy %", "recall@3 %", "n"):
        t.add_column(c, justify="right")
    for r in out["banking77"]:
        t.add_row(r["aggregate"], str(r["description"]), str(r["shots"]), f"{r['accuracy']:.1f}", f"{r['recall_at_3']:.1f}", str(r["n"]))
    console.print(t)

    out["bfcl"] = b = bfcl(data, memo)
    t = Table(title="BFCL: functions as experts (descriptions only)")
    for c in ("measure", "value"):
        t.add_column(c, justify="right")
    t.add_row("multiple: expert accuracy %", f"{b['multiple_expert_accuracy']:.1f} (n={b['multiple_n']})")
    t.add_row("fitted none threshold / temperature", f"{b['fit']['none_threshold']:.3f} / {b['fit']['temperature']:.4f}")
    t.add_row("held-out multiple: right expert %", f"{b['held_out_multiple_right']:.1f}")
    t.add_row("held-out irrelevance: none %", f"{b['held_out_irrelevance_right']:.1f}")
    t.add_row("held-out n", str(b["held_out_n"]))
    console.print(t)

    out["latency"] = latency([int(x) for x in args.sizes.split(",")], args.repeats, raw)
    t = Table(title="Shortlist latency (k=3), all-MiniLM-L6-v2 on CPU")
    for c in ("experts", "texts", "embed all (s, once)", "fit (s)", "shortlist p50 (ms)", "p95 (ms)"):
        t.add_column(c, justify="right")
    for r in out["latency"]:
        t.add_row(str(r["experts"]), str(r["texts"]), f"{r['embed_all_s']:.2f}", f"{r['fit_s']:.2f}", f"{r['shortlist_p50_ms']:.1f}", f"{r['shortlist_p95_ms']:.1f}")
    console.print(t)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(out, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
