"""Arithmetic written in English: a generated test set scored by the calculator's final answer.

The MRKL paper's argument-extraction experiment (Karpas et al., 2022, "MRKL
Systems", Sec. 4) asks arithmetic questions in words and scores the answer the
calculator expert computes from the arguments the router extracted. This module
generates such questions (fixed seed) and runs them through the whole MRKL system.

Generator (:func:`generate`): 1–4 operations, numbers as digits or words
(num2words, with or without hyphens), several phrasings per operation —
"what is fifty seven plus three", "subtract 12 from 40 and double it", "the
product of six and seven", "15 percent of 240", "divide 100 by 8", chains
("then multiply the result by 3") and infix sequences with the usual precedence
("4 plus 6 times 3"), and everyday forms ("half of 84", "increase 80 by 15%",
"the average of 12 and 30", "2.5 times 4"). Each question's exact answer is computed from the
generator's own structure with :class:`fractions.Fraction`, independently of
the calculator.

Scorer (:func:`score`): a question is right when the system answered with the
calculator and the answer's value equals the exact answer. The table gives n,
right %, routed-to-calculator %, the share answered from the calculator's own
symbolic parser vs from the LLM router's arguments, and seconds per question; a
second table the p50 of each router stage (embedding shortlist, expert choice,
argument extraction).

    python benchmarks/arithmetic_english.py [--n 200] [--seed 0] [--model M] [--router default|llm]
                                            [--no-symbolic] [--json out.json] [--show-misses]

Not run by CI (it runs the real language model).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

__all__ = ["ArithmeticQuestion", "generate", "number_text", "score", "value_equals"]

SYMBOLIC = "(expert's symbolic parser)"


@dataclass(frozen=True)
class ArithmeticQuestion:
    """One generated question.

    Attributes:
        question: the English question.
        answer: the exact answer as a string ``"p"`` or ``"p/q"`` (a :class:`fractions.Fraction`).
        n_ops: number of arithmetic operations (1–4).
        family: the phrasing family (``"binary"``, ``"chain"``, ``"infix"``, ``"percent"``, ``"other"``:
            squares, fractions of, twice, increase/decrease by a percentage, average, sum of three,
            decimals, "more than").
    """

    question: str
    answer: str
    n_ops: int
    family: str

    @property
    def exact(self) -> Fraction:
        """The answer as a Fraction."""
        return Fraction(self.answer)


def number_text(n: int, rng: random.Random, p_words: float = 0.5) -> str:
    """``n`` as digits (``"1,234"`` or ``"1234"`` above 999) or as English words (num2words, hyphen or space)."""
    if rng.random() < p_words:
        from num2words import num2words

        text = num2words(n).replace(",", "")
        if rng.random() < 0.5:
            text = text.replace("-", " ")
        if rng.random() < 0.5:
            text = text.replace(" and ", " ")  # "one hundred and five" / "one hundred five"
        return text
    return f"{n:,}" if n >= 1000 and rng.random() < 0.5 else str(n)


def _operand(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.55:
        return rng.randint(2, 99)
    if r < 0.85:
        return rng.randint(100, 999)
    return rng.randint(1000, 9999)


# binary phrasings per operation, value = a op b: (template, swapped), swapped=True when the
# template names b before a ("subtract {b} from {a}")
_BINARY: dict[str, list[tuple[str, bool]]] = {
    "+": [
        ("what is {a} plus {b}", False),
        ("{a} plus {b}", False),
        ("add {a} and {b}", False),
        ("add {b} to {a}", True),
        ("what is the sum of {a} and {b}", False),
        ("how much is {a} + {b}", False),
        ("calculate {a} plus {b}", False),
    ],
    "-": [
        ("what is {a} minus {b}", False),
        ("subtract {b} from {a}", True),
        ("take {b} away from {a}", True),
        ("what is the difference between {a} and {b}", False),
        ("{a} - {b}", False),
        ("compute {a} minus {b}", False),
    ],
    "*": [
        ("what is {a} times {b}", False),
        ("multiply {a} by {b}", False),
        ("what is the product of {a} and {b}", False),
        ("the product of {a} and {b}", False),
        ("{a} multiplied by {b}", False),
        ("how much is {a} * {b}", False),
    ],
    "/": [
        ("divide {a} by {b}", False),
        ("what is {a} divided by {b}", False),
        ("what is the quotient of {a} and {b}", False),
        ("{a} / {b}", False),
        ("how much is {a} divided by {b}", False),
    ],
}
_PERCENT = ["what is {p}% of {a}", "{p} percent of {a}", "what is {p} percent of {a}", "calculate {p}% of {a}"]

# chain steps on the running value: (templates, function of the value and a constant, needs a constant)
_CHAIN: list[tuple[list[str], Callable[[Fraction, int], Fraction], bool]] = [
    (["and double it", "then double it", "then double the result"], lambda v, c: v * 2, False),
    (["and triple it", "then triple the result"], lambda v, c: v * 3, False),
    (["then halve it", "and then halve it"], lambda v, c: v / 2, False),
    (["then square it", "and square the result"], lambda v, c: v * v, False),
    (["then add {c}", "and then add {c} to it", "then add {c} to the result"], lambda v, c: v + c, True),
    (["then subtract {c}", "and then subtract {c} from it", "then take away {c}"], lambda v, c: v - c, True),
    (["then multiply by {c}", "and then multiply it by {c}", "then multiply the result by {c}"], lambda v, c: v * c, True),
    (["then divide by {c}", "and then divide it by {c}", "then divide the result by {c}"], lambda v, c: v / c, True),
]
_INFIX = {"+": ["plus"], "-": ["minus"], "*": ["times", "multiplied by"], "/": ["divided by"]}
_APPLY: dict[str, Callable[[Fraction, Fraction], Fraction]] = {
    "+": lambda x, y: x + y,
    "-": lambda x, y: x - y,
    "*": lambda x, y: x * y,
    "/": lambda x, y: x / y,
}


def _infix_value(numbers: list[int], ops: list[str]) -> Fraction:
    """Value of ``n0 op0 n1 op1 n2 ...`` with × and ÷ before + and −, each left to right."""
    terms: list[Fraction] = [Fraction(numbers[0])]
    signs: list[str] = []
    for op, n in zip(ops, numbers[1:]):
        if op in "*/":
            terms[-1] = _APPLY[op](terms[-1], Fraction(n))
        else:
            signs.append(op)
            terms.append(Fraction(n))
    value = terms[0]
    for op, t in zip(signs, terms[1:]):
        value = _APPLY[op](value, t)
    return value


def _extra(rng: random.Random) -> tuple[str, Fraction, int]:
    """Other everyday phrasings: (question text, exact value, operations)."""
    a, b, c = rng.randint(2, 99), rng.randint(2, 99), rng.randint(2, 99)
    p = rng.choice([5, 10, 15, 20, 25, 50])
    A, B, C = (number_text(x, rng) for x in (a, b, c))
    kind = rng.randrange(11)
    if kind == 0:
        return rng.choice(["what is {a} squared", "{a} squared"]).format(a=A), Fraction(a * a), 1
    if kind == 1:
        return f"what is {A} squared plus {B}", Fraction(a * a + b), 2
    if kind == 2:
        word, d = rng.choice([("half", 2), ("a third", 3), ("a quarter", 4), ("a fifth", 5)])
        return f"what is {word} of {A}", Fraction(a, d), 1
    if kind == 3:
        return rng.choice(["what is twice {a}", "twice {a}", "double {a}"]).format(a=A), Fraction(2 * a), 1
    if kind == 4:
        return f"increase {A} by {p}%", Fraction(a) * (1 + Fraction(p, 100)), 2
    if kind == 5:
        return f"decrease {A} by {p} percent", Fraction(a) * (1 - Fraction(p, 100)), 2
    if kind == 6:
        return f"what is the average of {A} and {B}", Fraction(a + b, 2), 2
    if kind == 7:
        return f"what is the sum of {A}, {B} and {C}", Fraction(a + b + c), 2
    if kind == 8:
        return f"what do you get if you multiply {A} by {B}", Fraction(a * b), 1
    if kind == 9:
        x, y = rng.randint(1, 40) / 2, rng.randint(2, 9)
        return f"what is {x:g} times {y}", Fraction(str(x)) * y, 1
    return f"what is {A} more than {B}", Fraction(a + b), 1


def _finish(text: str, rng: random.Random) -> str:
    text = text.strip()
    if rng.random() < 0.5:
        text = text[0].upper() + text[1:]
    return text + rng.choice(["?", "?", ".", ""])


def _one(rng: random.Random) -> ArithmeticQuestion:
    n_ops = rng.choice([1, 1, 2, 2, 3, 4])
    family = rng.choices(["binary", "percent", "infix", "other"], weights=[6, 1, 2, 2])[0]
    if family == "infix" and n_ops == 1:
        family = "binary"
    if family == "other":
        text, value, k = _extra(rng)
        return ArithmeticQuestion(_finish(text, rng), str(value), k, family)
    if family == "infix":
        numbers = [rng.randint(2, 60) for _ in range(n_ops + 1)]
        ops = [rng.choice("+-*/") for _ in range(n_ops)]
        words = [number_text(numbers[0], rng)]
        for op, n in zip(ops, numbers[1:]):
            words += [rng.choice(_INFIX[op]), number_text(n, rng)]
        head = rng.choice(["what is ", "calculate ", "how much is ", ""])
        return ArithmeticQuestion(_finish(head + " ".join(words), rng), str(_infix_value(numbers, ops)), n_ops, "infix")
    if family == "percent":
        p = rng.choice([5, 10, 12, 15, 20, 25, 30, 40, 50, 75])
        a = rng.choice([rng.randint(2, 99) * 10, rng.randint(10, 999)])
        text = rng.choice(_PERCENT).format(p=number_text(p, rng, 0.3), a=number_text(a, rng))
        value = Fraction(p, 100) * a
    else:
        op = rng.choice("+-*/")
        a, b = _operand(rng), _operand(rng)
        if op in "*/":
            b = rng.randint(2, 12) if rng.random() < 0.7 else b
        template, _swapped = rng.choice(_BINARY[op])
        first, second = number_text(b if _swapped else a, rng), number_text(a if _swapped else b, rng)
        if re.search(r"\b(?:hundred|thousand)$", first) and " and {" in template and not second[0].isdigit():
            # "the sum of four hundred and five" is ambiguous (405, or 400 + 5): write the first in digits
            first = str(b if _swapped else a)
        a_text, b_text = (second, first) if _swapped else (first, second)
        text = template.format(a=a_text, b=b_text)
        value = _APPLY[op](Fraction(a), Fraction(b))
    family_out = family
    for _ in range(n_ops - 1):
        templates, fn, needs_c = rng.choice(_CHAIN)
        c = rng.randint(2, 12)
        step = rng.choice(templates).format(c=number_text(c, rng))
        text = f"{text}, {step}" if rng.random() < 0.3 else f"{text} {step}"
        value = fn(value, c)
        family_out = "chain"
    return ArithmeticQuestion(_finish(text, rng), str(value), n_ops, family_out)


def generate(n: int = 200, seed: int = 0) -> list[ArithmeticQuestion]:
    """``n`` distinct questions from a fixed seed (the same list on every run and machine).

    Raises:
        ValueError: ``n < 1``.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    rng = random.Random(seed)
    out: list[ArithmeticQuestion] = []
    seen: set[str] = set()
    while len(out) < n:
        q = _one(rng)
        key = q.question.lower()
        if key not in seen and abs(q.exact) < 10**12:
            seen.add(key)
            out.append(q)
    return out


def value_equals(value: Any, exact: Fraction) -> bool:
    """True when a calculator value (a sympy number) equals ``exact``.

    Exact values compare exactly; a float compares to a relative tolerance of 1e-9.
    """
    import sympy

    if value is None or isinstance(value, (list, bool)):
        return False
    try:
        v = sympy.sympify(value) if not isinstance(value, sympy.Basic) else value
        if v.free_symbols:
            return False
        if v.is_Rational:
            return sympy.Rational(v) == sympy.Rational(exact.numerator, exact.denominator)
        f = float(v)
    except (TypeError, ValueError, sympy.SympifyError):
        return False
    return abs(f - float(exact)) <= 1e-9 * max(1.0, abs(float(exact)))


def score(system: Any, questions: list[ArithmeticQuestion], progress: bool = True) -> dict[str, Any]:
    """Ask every question with ``system`` (a :class:`mrkl.MRKL`) and score the calculator's answers.

    Returns:
        ``{"summary": {...}, "rows": [...]}``; each row has the question, the exact answer,
        the system's answer text and expert, whether it was routed to the calculator, where
        the arguments came from (``"symbolic"``, ``"llm"`` or ``None``), right or not, seconds.
    """
    rows = []
    for i, q in enumerate(questions, 1):
        t0 = time.perf_counter()
        answer = system.ask(q.question)
        took = time.perf_counter() - t0
        d = answer.trace.decision
        routed = d is not None and d.expert == "calculator"
        ok_steps = [s for s in answer.trace.steps if s.expert == "calculator" and s.error is None]
        source = None
        if answer.expert == "calculator" and ok_steps:
            source = "symbolic" if ok_steps[-1].raw_output == SYMBOLIC else "llm"
        right = answer.expert == "calculator" and value_equals(answer.value, q.exact)
        rows.append(
            {
                **asdict(q),
                "answer_text": answer.text,
                "expert": answer.expert,
                "routed_to_calculator": routed,
                "args_from": source,
                "expression": ok_steps[-1].args.get("expression") if ok_steps and ok_steps[-1].args else None,
                "right": right,
                "seconds": took,
                "stage_seconds": dict(d.timings) if d is not None else {},
            }
        )
        if progress:
            print(f"\r{i}/{len(questions)} right {sum(r['right'] for r in rows)}", end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    n = len(rows)
    summary = {
        "n": n,
        "right_pct": 100.0 * sum(r["right"] for r in rows) / n,
        "routed_to_calculator_pct": 100.0 * sum(r["routed_to_calculator"] for r in rows) / n,
        "symbolic_pct": 100.0 * sum(r["args_from"] == "symbolic" for r in rows) / n,
        "llm_args_pct": 100.0 * sum(r["args_from"] == "llm" for r in rows) / n,
        "seconds_per_question_mean": statistics.fmean(r["seconds"] for r in rows),
        "seconds_per_question_p50": statistics.median(r["seconds"] for r in rows),
    }
    by_ops = {}
    for k in sorted({r["n_ops"] for r in rows}):
        sub = [r for r in rows if r["n_ops"] == k]
        by_ops[k] = {"n": len(sub), "right_pct": 100.0 * sum(r["right"] for r in sub) / len(sub)}
    summary["by_n_ops"] = by_ops
    stages: dict[str, list[float]] = {}
    for r in rows:
        for k, v in r["stage_seconds"].items():
            if k != "route":
                stages.setdefault(k, []).append(v)
    summary["stage_p50_s"] = {k: statistics.median(v) for k, v in stages.items()}
    summary["stage_n"] = {k: len(v) for k, v in stages.items()}
    return {"summary": summary, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--router", choices=("default", "llm"), default="default", help="MRKL's default router or the plain LLM router")
    ap.add_argument("--json", dest="json_out", help="also write every row and the summary as JSON")
    ap.add_argument("--show-misses", action="store_true", help="print every wrong answer")
    ap.add_argument(
        "--no-symbolic",
        action="store_true",
        help="turn the calculator's own English parser off: every answer then rests on the LLM router's arguments",
    )
    args = ap.parse_args(argv)

    import torch
    from rich.console import Console
    from rich.table import Table

    from llm_backends.transformers_backend import TransformersBackend
    from mrkl import MRKL

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    questions = generate(args.n, args.seed)
    backend = TransformersBackend(args.model)
    from router import LLMRouter
    from router.two_stage import TwoStageRouter

    router = None  # MRKL's default
    if args.router == "llm":
        router = LLMRouter(backend)
    elif args.no_symbolic:
        router = TwoStageRouter(LLMRouter(backend), symbolic_first=False)
    cls = MRKL
    if args.no_symbolic:

        class LLMArgsOnly(MRKL):
            """MRKL whose experts' symbolic parsers are never used (the router's arguments only)."""

            @staticmethod
            def _symbolic_args(expert: Any, q: str) -> None:
                return None

        cls = LLMArgsOnly
    system = cls(backend=backend, router=router)
    system.ask("what is 1 plus 1?")  # warm-up: model load and router fit are not per-question time
    result = score(system, questions)
    s = result["summary"]

    table = Table(
        title=f"Arithmetic in English (seed {args.seed}, model {args.model}, router {type(system.router).__name__}"
        f"{', symbolic parser off' if args.no_symbolic else ''})"
    )
    for col in ("n", "right %", "routed to calculator %", "symbolic parser %", "LLM args %", "s/question (mean)", "s/question (p50)"):
        table.add_column(col, justify="right")
    table.add_row(
        str(s["n"]),
        f"{s['right_pct']:.1f}",
        f"{s['routed_to_calculator_pct']:.1f}",
        f"{s['symbolic_pct']:.1f}",
        f"{s['llm_args_pct']:.1f}",
        f"{s['seconds_per_question_mean']:.2f}",
        f"{s['seconds_per_question_p50']:.2f}",
    )
    console = Console()
    console.print(table)
    ops = Table(title="by number of operations")
    for col in ("operations", "n", "right %"):
        ops.add_column(col, justify="right")
    for k, v in s["by_n_ops"].items():
        ops.add_row(str(k), str(v["n"]), f"{v['right_pct']:.1f}")
    console.print(ops)
    st = Table(title="router stages, p50 per question")
    for col in ("stage", "p50 (ms)", "questions"):
        st.add_column(col, justify="right")
    for k, v in s["stage_p50_s"].items():
        st.add_row(k, f"{1000 * v:.1f}", str(s["stage_n"][k]))
    console.print(st)
    if args.show_misses:
        for r in result["rows"]:
            if not r["right"]:
                console.print(f"MISS {r['question']!r} want {r['answer']} got {r['answer_text'][:80]!r} via {r['expert']} expr={r['expression']!r}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
