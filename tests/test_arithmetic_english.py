"""The generated arithmetic-in-English set (benchmarks/arithmetic_english.py): determinism, exact answers, coverage."""

from __future__ import annotations

import importlib.util
import re
import sys
from fractions import Fraction
from pathlib import Path

import pytest
import sympy

from experts.calculator import CalculatorExpert, evaluate

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "arithmetic_english.py"
_spec = importlib.util.spec_from_file_location("arithmetic_english", _PATH)
arith = importlib.util.module_from_spec(_spec)
sys.modules["arithmetic_english"] = arith
_spec.loader.exec_module(arith)


def test_fixed_seed_gives_the_same_questions():
    a, b = arith.generate(60, seed=0), arith.generate(60, seed=0)
    assert a == b
    assert arith.generate(60, seed=1) != a
    assert len({q.question.lower() for q in a}) == 60
    with pytest.raises(ValueError):
        arith.generate(0)


def test_the_set_has_words_digits_all_operation_counts_and_families():
    qs = arith.generate(200, seed=0)
    assert {q.n_ops for q in qs} == {1, 2, 3, 4}
    assert {q.family for q in qs} == {"binary", "chain", "infix", "percent", "other"}
    assert sum(bool(re.search(r"\b(?:twenty|thirty|forty|fifty|hundred|seven|eight)", q.question, re.I)) for q in qs) > 50
    assert sum(bool(re.search(r"\d", q.question)) for q in qs) > 100
    assert any(q.exact.denominator != 1 for q in qs)  # divisions and percentages give fractions


def test_infix_precedence_and_value_comparison():
    assert arith._infix_value([4, 6, 3], ["+", "*"]) == 22
    assert arith._infix_value([20, 4, 2, 3], ["/", "-", "*"]) == -1
    assert arith._infix_value([7, 2], ["/"]) == Fraction(7, 2)
    assert arith.value_equals(sympy.Rational(25, 2), Fraction(25, 2))
    assert not arith.value_equals(sympy.Integer(12), Fraction(25, 2))
    assert arith.value_equals(sympy.Float(12.5), Fraction(25, 2))
    assert not arith.value_equals([sympy.Integer(3)], Fraction(3))
    assert not arith.value_equals(sympy.Symbol("x"), Fraction(3))


def test_calculator_parses_at_least_98_percent_of_the_generated_set():
    calc = CalculatorExpert()
    qs = arith.generate(200, seed=0)
    right = 0
    for q in qs:
        args = calc.symbolic_args(q.question)
        if args is not None and arith.value_equals(calc.run(calc.parse_args(args)).value, q.exact):
            right += 1
    assert right / len(qs) >= 0.98
