"""Calculator expert: exact arithmetic and equation solving with sympy, safely.

Arithmetic is the running example of a discrete expert in the MRKL paper
(Karpas et al., 2022, "MRKL Systems", Sec. 4): a language model is unreliable
at arithmetic, so the router only *extracts* the expression and a symbolic
module computes it exactly.

Security model: the expression is never given to ``eval`` or to
``sympy.sympify`` (which calls ``eval``). It is

1. normalized with plain string processing (number words, operator words,
   thousands separators, implicit multiplication — a small router model often
   copies the user's words into the argument),
2. parsed with :func:`ast.parse` and checked against an allow-list of node
   types, names and functions,
3. built into a sympy expression node by node, with resource guards before
   every operation that could explode (powers, factorials, binomials,
   exponentials) and a size check after each one,
4. computed under a wall-clock budget (:data:`DEFAULT_TIMEOUT_S`), for what the
   static guards cannot foresee (sympy's ``solve`` on some transcendental
   equations runs for minutes).

Limits: at most :data:`MAX_INPUT_CHARS` characters, :data:`MAX_NESTING`
levels of parentheses, :data:`MAX_NODES` terms and operations,
:data:`MAX_AST_DEPTH` levels of operations, integer literals of
at most :data:`MAX_LITERAL_DIGITS` digits, exact results of at most
:data:`MAX_RESULT_DIGITS` digits, equations of degree at most
:data:`MAX_DEGREE` in at most :data:`MAX_SOLVE_SYMBOLS` variables.
"""

from __future__ import annotations

import ast
import math
import os
import re
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from functools import reduce
from typing import Any, Callable

import mpmath
import sympy
from pydantic import BaseModel, ConfigDict, Field

from mrkl.errors import ExpertError
from mrkl.expert import Expert, ExpertResult, RoutingExample

__all__ = [
    "CalculatorExpert",
    "evaluate",
    "normalize",
    "Normalized",
    "MAX_INPUT_CHARS",
    "MAX_LITERAL_DIGITS",
    "MAX_RESULT_DIGITS",
    "MAX_NESTING",
    "MAX_NODES",
    "MAX_AST_DEPTH",
    "MAX_DEGREE",
    "MAX_SOLVE_SYMBOLS",
    "DEFAULT_TIMEOUT_S",
]

MAX_INPUT_CHARS = 1000
MAX_LITERAL_DIGITS = 1000
# Python refuses to print integers above 4300 digits by default; stay below.
MAX_RESULT_DIGITS = 4000
MAX_NESTING = 50
MAX_NODES = 500
MAX_AST_DEPTH = 200
MAX_DEGREE = 10
MAX_SOLVE_SYMBOLS = 2
DECIMAL_DIGITS = 15
# Wall-clock budget of one evaluation (sympy's solve can run for minutes on
# some transcendental equations); None or 0 disables it.
DEFAULT_TIMEOUT_S = 10.0

_LOG10_2 = math.log10(2)
_MAX_EXP_ARG_LOG10 = math.log10(MAX_RESULT_DIGITS * math.log(10))  # exp(arg) stays below 10**MAX_RESULT_DIGITS


def _quote(text: str, limit: int = 80) -> str:
    text = " ".join(str(text).split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return "'" + text.replace("'", "\\'") + "'"


# ===========================================================================
# 1. Normalization: light English and notation -> Python-syntax math
# ===========================================================================

_UNITS = {"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9}
_TEENS = {
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fourty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
_SCALES = {"thousand": 10**3, "million": 10**6, "billion": 10**9, "trillion": 10**12}
_ORDINALS = {
    "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8, "ninth": 9, "tenth": 10,
}
_FRACTIONS = {
    "half": 2, "halves": 2, "third": 3, "thirds": 3, "quarter": 4, "quarters": 4, "fourth": 4, "fourths": 4,
    "fifth": 5, "fifths": 5, "sixth": 6, "sixths": 6, "seventh": 7, "sevenths": 7, "eighth": 8, "eighths": 8,
    "ninth": 9, "ninths": 9, "tenth": 10, "tenths": 10,
}

_NUMBER_WORDS = [*_UNITS, *_TEENS, *_TENS, *_SCALES, "hundred", "dozen"]
_NW = "|".join(sorted(_NUMBER_WORDS, key=len, reverse=True))
_NUM_RUN_RE = re.compile(rf"\b(?:{_NW})\b(?:(?:\s+(?:and\s+)?|-)(?:{_NW})\b)*", re.I)
_ORD = "|".join(_ORDINALS)
_FRAC = "|".join(sorted(_FRACTIONS, key=len, reverse=True))
_IT = r"(?:it|that|this|result|answer|number)"


@dataclass
class _NumberState:
    """Accumulates one English number ("two thousand three hundred forty")."""

    total: int = 0
    group: int = 0
    last: str | None = None
    last_scale: int | None = None

    @staticmethod
    def kind(word: str) -> str:
        if word in _UNITS:
            return "unit"
        if word in _TEENS:
            return "teen"
        if word in _TENS:
            return "tens"
        if word in _SCALES:
            return "scale"
        return word  # "hundred", "dozen", "and"

    def accepts(self, word: str) -> bool:
        k, last = self.kind(word), self.last
        if k == "unit":
            return last in (None, "tens", "hundred", "scale")
        if k in ("teen", "tens"):
            return last in (None, "hundred", "scale")
        if k == "hundred":
            return last is None or (last in ("unit", "teen") and self.group < 100)
        if k == "scale":
            if last is None:
                return True
            return last in ("unit", "teen", "tens", "hundred", "dozen") and (
                self.last_scale is None or _SCALES[word] < self.last_scale
            )
        if k == "dozen":
            return last in (None, "unit", "teen", "tens")
        return False

    def add(self, word: str) -> None:
        k = self.kind(word)
        if k == "unit":
            self.group += _UNITS[word]
        elif k == "teen":
            self.group += _TEENS[word]
        elif k == "tens":
            self.group += _TENS[word]
        elif k == "hundred":
            self.group = (self.group or 1) * 100
        elif k == "scale":
            self.total += (self.group or 1) * _SCALES[word]
            self.group = 0
            self.last_scale = _SCALES[word]
        elif k == "dozen":
            self.group = (self.group or 1) * 12
        self.last = k

    @property
    def value(self) -> int:
        return self.total + self.group


def _convert_number_run(match: re.Match[str]) -> str:
    run = match.group(0)
    words = re.findall(r"[A-Za-z]+", run)
    seps = re.findall(r"[^A-Za-z]+", run)
    items: list[str] = []
    cur: _NumberState | None = None
    i = 0
    while i < len(words):
        w = words[i].lower()
        if w == "and":
            nxt = words[i + 1].lower() if i + 1 < len(words) else ""
            if cur is not None and cur.last in ("hundred", "scale") and nxt and cur.accepts(nxt):
                i += 1
                continue
            if cur is not None:
                items.append(str(cur.value))
                cur = None
            items.append("and")
            i += 1
            continue
        if cur is not None and not cur.accepts(w):
            items.append(str(cur.value))
            if i > 0 and "-" in seps[i - 1]:
                items.append("-")
            cur = None
        if cur is None:
            cur = _NumberState()
        cur.add(w)
        i += 1
    if cur is not None:
        items.append(str(cur.value))
    return " ".join(items)


def _paren_depths(s: str) -> list[int]:
    """depth[i] = number of open parentheses before position i."""
    depths, d = [], 0
    for ch in s:
        depths.append(d)
        if ch == "(":
            d += 1
        elif ch == ")":
            d -= 1
    depths.append(d)
    return depths


def _match_forward(s: str, i: int) -> int | None:
    """Index after the ')' matching the '(' at s[i], or None."""
    d = 0
    for j in range(i, len(s)):
        if s[j] == "(":
            d += 1
        elif s[j] == ")":
            d -= 1
            if d == 0:
                return j + 1
    return None


def _match_backward(s: str, j: int) -> int | None:
    """Index of the '(' matching the ')' at s[j], or None."""
    d = 0
    for k in range(j, -1, -1):
        if s[k] == ")":
            d += 1
        elif s[k] == "(":
            d -= 1
            if d == 0:
                return k
    return None


_NUMBER_RE = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_IDENT_RE = re.compile(r"[A-Za-z_]\w*")


def _atom_after(s: str, i: int) -> tuple[int, int] | None:
    """(start, end) of the operand starting at or after i: a number, a name, a call or a (group)."""
    n = len(s)
    while i < n and s[i] == " ":
        i += 1
    start = i
    if i < n and s[i] in "+-":
        i += 1
        while i < n and s[i] == " ":
            i += 1
    if i >= n:
        return None
    if s[i] == "(":
        end = _match_forward(s, i)
        return (start, end) if end else None
    m = _NUMBER_RE.match(s, i) or _IDENT_RE.match(s, i)
    if not m:
        return None
    end = m.end()
    if m.re is _IDENT_RE or _IDENT_RE.fullmatch(m.group(0)):
        k = end
        while k < n and s[k] == " ":
            k += 1
        if k < n and s[k] == "(":
            close = _match_forward(s, k)
            if close:
                end = close
    return start, end


def _atom_before(s: str, j: int) -> int | None:
    """Start index of the operand ending just before j (a number, a name, a call or a (group))."""
    k = j
    while k > 0 and s[k - 1] == " ":
        k -= 1
    if k == 0:
        return None
    if s[k - 1] == ")":
        start = _match_backward(s, k - 1)
        if start is None:
            return None
        while start > 0 and (s[start - 1].isalnum() or s[start - 1] == "_"):
            start -= 1
        return start
    start = k
    while start > 0 and (s[start - 1].isalnum() or s[start - 1] in "._"):
        start -= 1
    return start if start < k else None


def _strip_outer_parens(s: str) -> str:
    s = s.strip()
    while s.startswith("(") and _match_forward(s, 0) == len(s):
        s = s[1:-1].strip()
    return s


def _wrap(s: str) -> str:
    s = s.strip()
    if re.fullmatch(r"[\w.]+", s) or (s.startswith("(") and _match_forward(s, 0) == len(s)):
        return s
    if re.fullmatch(r"[A-Za-z_]\w*\s*\(.*\)", s) and _match_forward(s, s.index("(")) == len(s):
        return s  # a single call
    return f"({s})"


# -- chains: "subtract 12 from 40 and double it" --------------------------------
_CHAIN_VERB_RE = re.compile(
    rf"(?:double|twice|triple|quadruple|halve|square\s+{_IT}|cube\s+{_IT}|add|subtract|multiply|divide|"
    r"take\s+square\s+root|take|raise)\b",
    re.I,
)
_CHAIN_CONNECTOR_RE = re.compile(r"\s*,?\s*\b(?:and\s+then|then|and)\s+|\s*,\s*", re.I)
_CHAIN_OPS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(rf"(?:double|twice)(?:\s+{_IT})?", re.I), "{0}*2"),
    (re.compile(rf"triple(?:\s+{_IT})?", re.I), "{0}*3"),
    (re.compile(rf"quadruple(?:\s+{_IT})?", re.I), "{0}*4"),
    (re.compile(rf"halve(?:\s+{_IT})?", re.I), "{0}/2"),
    (re.compile(rf"square\s+{_IT}", re.I), "{0}**2"),
    (re.compile(rf"cube\s+{_IT}", re.I), "{0}**3"),
    (re.compile(rf"take\s+square\s+root(?:\s+of\s+{_IT})?", re.I), "sqrt({0})"),
    (re.compile(rf"add\s+(.+?)(?:\s+to\s+{_IT})?", re.I), "{0} + {1}"),
    (re.compile(rf"subtract\s+(.+?)(?:\s+from\s+{_IT})?", re.I), "{0} - {1}"),
    (re.compile(rf"take\s+away\s+(.+?)(?:\s+from\s+{_IT})?", re.I), "{0} - {1}"),
    (re.compile(rf"take\s+(.+?)\s+away(?:\s+from\s+{_IT})?", re.I), "{0} - {1}"),
    (re.compile(rf"multiply\s+(?:{_IT}\s+)?by\s+(.+)", re.I), "{0}*{1}"),
    (re.compile(rf"divide\s+(?:{_IT}\s+)?by\s+(.+)", re.I), "{0}/{1}"),
    (re.compile(rf"raise\s+(?:{_IT}\s+)?to\s+(?:power\s+(?:of\s+)?)?(.+)", re.I), "{0}**{1}"),
]


def _apply_chain(s: str) -> str:
    depths = _paren_depths(s)
    cuts = [
        m
        for m in _CHAIN_CONNECTOR_RE.finditer(s)
        if depths[m.start()] == 0 and _CHAIN_VERB_RE.match(s, m.end())
    ]
    if not cuts:
        return s
    expr = s[: cuts[0].start()].strip()
    if not expr:
        return s
    for idx, cut in enumerate(cuts):
        end = cuts[idx + 1].start() if idx + 1 < len(cuts) else len(s)
        piece = s[cut.end() : end].strip()
        for pattern, template in _CHAIN_OPS:
            m = pattern.fullmatch(piece)
            if m:
                operand = _wrap(m.group(1)) if m.groups() else ""
                expr = template.format(_wrap(expr), operand)
                break
        else:
            return s  # not a chain after all; leave it to the other rules
    return expr


# -- lists: "the sum of 58, 12 and 53" ------------------------------------------------
_LIST_ATOM = r"(?:-?\d+(?:\.\d+)?|\([^()]*\))"
_LIST_RE = re.compile(
    rf"\b(?:(sum|total)|(product)|(average|mean))\s+of\s+((?:{_LIST_ATOM}\s*,\s*)+{_LIST_ATOM})\s*,?\s+and\s+({_LIST_ATOM})",
    re.I,
)


def _list_phrase(m: re.Match[str]) -> str:
    items = [x.strip() for x in m.group(4).split(",")] + [m.group(5)]
    if m.group(2):
        return "(" + "*".join(items) + ")"
    total = "(" + " + ".join(items) + ")"
    return f"({total}/{len(items)})" if m.group(3) else total


# -- prefix phrases with two operands: "subtract A from B" ----------------------------
_PREFIX_BINARY: list[tuple[re.Pattern[str], list[tuple[str, str]]]] = [
    (re.compile(r"\bsubtract\b", re.I), [(r"from", "{b} - {a}")]),
    (re.compile(r"\btake\s+away\b|\btake\b", re.I), [(r"away\s+from|from", "{b} - {a}")]),
    (re.compile(r"\badd\b", re.I), [(r"to", "{b} + {a}"), (r"and", "{a} + {b}")]),
    (re.compile(r"\b(?:sum|total)\s+of\b", re.I), [(r"and", "{a} + {b}")]),
    (re.compile(r"\bproduct\s+of\b", re.I), [(r"and", "{a}*{b}")]),
    (re.compile(r"\bdifference\s+(?:between|of)\b", re.I), [(r"and", "{a} - {b}")]),
    (re.compile(r"\bquotient\s+of\b", re.I), [(r"and|by", "{a}/{b}")]),
    (re.compile(r"\bratio\s+of\b", re.I), [(r"to|and", "{a}/{b}")]),
    (re.compile(r"\bmultiply\b", re.I), [(r"by|and|with", "{a}*{b}")]),
    (re.compile(r"\bdivide\b", re.I), [(r"by", "{a}/{b}")]),
    (re.compile(r"\bremainder\s+(?:of|when)\b", re.I), [(r"divided\s+by|by|mod|modulo", "{a} % {b}")]),
    (re.compile(r"\b(?:average|mean)\s+of\b", re.I), [(r"and", "({a} + {b})/2")]),
    (
        re.compile(
            r"\b(?:gcd|gcf|hcf|greatest\s+common\s+(?:divisor|factor)|highest\s+common\s+factor)\s+of\b", re.I
        ),
        [(r"and", "gcd({a}, {b})")],
    ),
    (re.compile(r"\b(?:lcm|(?:least|lowest)\s+common\s+multiple)\s+of\b", re.I), [(r"and", "lcm({a}, {b})")]),
    (re.compile(r"\braise\b", re.I), [(r"to\s+power\s+of|to", "{a}**{b}")]),
    # "increase 80 by 15%" (a percentage, marked before percentages are rewritten) / "increase 80 by 15"
    (re.compile(r"\b(?:increase|grow)\b", re.I), [(r"bypercent", "{a}*(1 + {b}/100)"), (r"by", "{a} + {b}")]),
    (re.compile(r"\b(?:decrease|reduce|lower|discount)\b", re.I), [(r"bypercent", "{a}*(1 - {b}/100)"), (r"by", "{a} - {b}")]),
]
_B_STOP_RE = re.compile(r"\s+(?:and|then)\b|[,=]", re.I)


def _find_depth0(s: str, pattern: re.Pattern[str], start: int) -> re.Match[str] | None:
    depths = _paren_depths(s)
    base = depths[start]
    for m in pattern.finditer(s, start):
        seg_min = min(depths[start : m.start() + 1])
        if seg_min < base:
            return None  # left the enclosing group
        if depths[m.start()] == base:
            return m
    return None


def _operand_end(s: str, start: int) -> int:
    """End of the operand from start: stops at an unbalanced ')', ',', '=', ' and', ' then' or the end."""
    d = 0
    i = start
    n = len(s)
    while i < n:
        ch = s[i]
        if ch == "(":
            d += 1
        elif ch == ")":
            if d == 0:
                return i
            d -= 1
        elif d == 0:
            m = _B_STOP_RE.match(s, i)
            if m:
                return i
        i += 1
    return n


def _apply_prefix_binary(s: str) -> str:
    for _ in range(50):
        best: tuple[int, int, str] | None = None
        for kw, forms in _PREFIX_BINARY:
            for m in kw.finditer(s):
                seps = []
                for sep, template in forms:
                    sm = _find_depth0(s, re.compile(rf"\s+(?:{sep})\s+", re.I), m.end())
                    if sm:
                        seps.append((sm.start(), sm, template))
                if not seps:
                    continue
                _, sm, template = min(seps, key=lambda t: t[0])
                a = s[m.end() : sm.start()].strip()
                b_end = _operand_end(s, sm.end())
                b = s[sm.end() : b_end].strip()
                if not a or not b:
                    continue
                repl = "(" + template.format(a=_wrap(a), b=_wrap(b)) + ")"
                if best is None or m.start() > best[0]:
                    best = (m.start(), b_end, repl)
        if best is None:
            return s
        start, end, repl = best
        s = s[:start] + repl + s[end:]
    return s


# -- prefix phrases with one operand: "square root of X" ---------------------------
_PREFIX_UNARY: list[tuple[re.Pattern[str], Callable[[re.Match[str], str], str]]] = [
    (re.compile(r"\bsquare\s+root\s+of\b", re.I), lambda m, a: f"sqrt({a})"),
    (re.compile(r"\bcube\s+root\s+of\b", re.I), lambda m, a: f"cbrt({a})"),
    (re.compile(r"\b(?<![\d.])(\d+)(?:st|nd|rd|th)\s+root\s+of\b", re.I), lambda m, a: f"root({a}, {m.group(1)})"),
    (re.compile(rf"\b({_ORD})\s+root\s+of\b", re.I), lambda m, a: f"root({a}, {_ORDINALS[m.group(1).lower()]})"),
    (re.compile(r"\bsquare\s+of\b", re.I), lambda m, a: f"{_wrap(a)}**2"),
    (re.compile(r"\bcube\s+of\b", re.I), lambda m, a: f"{_wrap(a)}**3"),
    (re.compile(r"\babsolute\s+value\s+of\b", re.I), lambda m, a: f"abs({a})"),
    (re.compile(r"\bfactorial\s+of\b", re.I), lambda m, a: f"factorial({a})"),
    (re.compile(r"\bnatural\s+(?:log|logarithm)\s+of\b", re.I), lambda m, a: f"ln({a})"),
    (
        re.compile(r"\b(?:log|logarithm)\s+(?:to\s+)?base\s+(\d+|e)\s+of\b", re.I),
        lambda m, a: f"log({a}, {m.group(1)})",
    ),
    (re.compile(r"\breciprocal\s+of\b", re.I), lambda m, a: f"1/{_wrap(a)}"),
]
_FUNC_WORDS = [
    (re.compile(r"\bsine\b", re.I), "sin"),
    (re.compile(r"\bcosine\b", re.I), "cos"),
    (re.compile(r"\btangent\b", re.I), "tan"),
    (re.compile(r"\blogarithm\b", re.I), "log"),
    (re.compile(r"\bexponential\b", re.I), "exp"),
]


def _apply_prefix_unary(s: str) -> str:
    for _ in range(50):
        best: tuple[int, int, str] | None = None
        for kw, build in _PREFIX_UNARY:
            for m in kw.finditer(s):
                span = _atom_after(s, m.end())
                if span is None:
                    continue
                repl = build(m, s[span[0] : span[1]].strip())
                if best is None or m.start() > best[0]:
                    best = (m.start(), span[1], repl)
        if best is None:
            return s
        start, end, repl = best
        s = s[:start] + repl + s[end:]
    return s


# -- infix word operators --------------------------------------------------------
_ATOM = r"(?<![\w.])(-?(?:\d+(?:\.\d+)?|[A-Za-z_]\w*(?:\([^()]*\))?|\([^()]*(?:\([^()]*\)[^()]*)*\)))"
_INFIX_SWAPS = [
    (re.compile(rf"{_ATOM}\s+subtracted\s+from\s+{_ATOM}", re.I), r"(\2 - \1)"),
    (re.compile(rf"{_ATOM}\s+(?:less|fewer)\s+than\s+{_ATOM}", re.I), r"(\2 - \1)"),
    (re.compile(rf"{_ATOM}\s+(?:more|greater)\s+than\s+{_ATOM}", re.I), r"(\2 + \1)"),
    (re.compile(rf"{_ATOM}\s+choose\s+{_ATOM}", re.I), r"binomial(\1, \2)"),
    (re.compile(rf"{_ATOM}\s+factorial\b", re.I), r"factorial(\1)"),
]
_INFIX_WORDS = [
    (re.compile(r"\bmultiplied\s+(?:by|with)\b", re.I), " * "),
    (re.compile(r"\btimes\b", re.I), " * "),
    (re.compile(r"\bdivided\s+by\b", re.I), " / "),
    (re.compile(r"\bover\b", re.I), " / "),
    (re.compile(r"\bplus\b", re.I), " + "),
    (re.compile(r"\badded\s+to\b", re.I), " + "),
    (re.compile(r"\bminus\b", re.I), " - "),
    (re.compile(r"\bnegative\b", re.I), " -"),
    (re.compile(r"\b(?:mod|modulo)\b", re.I), " % "),
    (re.compile(r"(?<=[\d)])\s+[x]\s+(?=[\d(])"), " * "),
    (re.compile(r"\btwice\s+(?=[\w(])", re.I), "2*"),
    (re.compile(r"\bdouble\s+(?=[\d(])", re.I), "2*"),
    (re.compile(r"\btriple\s+(?=[\d(])", re.I), "3*"),
    (re.compile(r"\bof\b", re.I), " * "),
]

# Functions a router may write as "sqrt 16" / "sin of x".
_UNARY_FUNCS = [
    "sqrt", "cbrt", "exp", "log", "ln", "log10", "log2", "sin", "cos", "tan", "asin", "acos", "atan",
    "sinh", "cosh", "tanh", "abs", "floor", "ceiling", "ceil", "factorial",
]
_BARE_FUNC_RE = re.compile(rf"\b({'|'.join(_UNARY_FUNCS)})(?:\s+of)?\s+(?=[\w(.+-])", re.I)


def _apply_bare_functions(s: str) -> str:
    for _ in range(50):
        matches = [m for m in _BARE_FUNC_RE.finditer(s)]
        done = False
        for m in reversed(matches):
            after = s[m.end() :]
            if after.startswith("("):
                # "sqrt (2)" or "sqrt of (2)": already a call; just drop " of"
                repl = m.group(1)
                s = s[: m.start()] + repl + s[m.end() :]
                done = True
                break
            span = _atom_after(s, m.end())
            if span is None:
                continue
            s = s[: m.start()] + f"{m.group(1)}({s[span[0]:span[1]].strip()})" + s[span[1] :]
            done = True
            break
        if not done:
            return s
    return s


def _apply_postfix_factorial(s: str) -> str:
    for _ in range(50):
        m = re.search(r"!(?!=)", s)
        if not m:
            return s
        start = _atom_before(s, m.start())
        if start is None:
            return s
        s = s[:start] + f"factorial({s[start:m.start()].strip()})" + s[m.end() :]
    return s


def _remove_thousands_separators(s: str) -> str:
    """'2,340' -> '2340', but not inside a call like gcd(12,180) where ',' separates arguments."""
    stack: list[bool] = []  # True = call parentheses
    in_call = []
    for i, ch in enumerate(s):
        in_call.append(bool(stack and stack[-1]))
        if ch == "(":
            j = i
            while j > 0 and s[j - 1] == " ":
                j -= 1
            stack.append(j > 0 and (s[j - 1].isalnum() or s[j - 1] == "_"))
        elif ch == ")" and stack:
            stack.pop()

    def repl(m: re.Match[str]) -> str:
        return m.group(0) if in_call[m.start()] else m.group(0).replace(",", "")

    return re.sub(r"(?<![\w.])\d{1,3}(?:,\d{3})+(?![\d])", repl, s)


_LEADIN_RE = re.compile(
    r"^(?:(?:what|how\s+much)\s+(?:do|does|would|will)\s+(?:you|i|we|one)\s+get\s+(?:if|when)(?:\s+(?:you|i|we|one))?|"
    r"please|kindly|(?:can|could|would|will)\s+you|i\s+(?:want|need|would\s+like)\s+to\s+know|tell\s+me|"
    r"what\s+is|what's|whats|what\s+are|what\s+does|what\s+do|how\s+much\s+is|how\s+much\s+are|how\s+much|"
    r"calculate|compute|evaluate|work\s+out|figure\s+out|find(?:\s+out)?|give\s+me|determine|simplify|"
    r"value\s+of|result\s+of|answer\s+to)\b[\s,:]*",
    re.I,
)
_SOLVE_HEAD_RE = re.compile(
    r"^(?:solve|find)\s+(?:for\s+)?([A-Za-z])\s*(?::|,|\bin\b|\bif\b|\bwhere\b|\bwhen\b|\bsuch\s+that\b|\bgiven\b)\s*",
    re.I,
)
_SOLVE_RE = re.compile(r"^solve\b[\s,:]*(?:equation\s+)?", re.I)
_SOLVE_TAIL_RE = re.compile(r"\s*,?\s+for\s+([A-Za-z])\s*$", re.I)
_TRAILING_RE = re.compile(
    r"(?:\s*(?:[?.;]|(?<![\w)])!|=\s*\?|(?<![<>!=])=|\bplease|\bequals?|\bcome\s+to|\bmake|\bis))+\s*$", re.I
)

_UNICODE = [
    ("×", "*"), ("⋅", "*"), ("·", "*"), ("∗", "*"), ("÷", "/"), ("∕", "/"), ("−", "-"), ("–", "-"), ("—", "-"),
    ("²", "**2"), ("³", "**3"), ("π", "pi"), ("∞", "oo"), ("≠", "!="), ("≤", "<="), ("≥", ">="),
    ("$", ""), ("€", ""), ("£", ""), ("\u00a0", " "), ("\u2009", " "), ("\u202f", " "), ("’", "'"), ("‘", "'"), ("“", '"'), ("”", '"'),
]


@dataclass
class Normalized:
    """The output of :func:`normalize`.

    Attributes:
        text: Python-syntax math, e.g. ``"57 + 3"``; an equation keeps one ``=``.
        solve: True when the input asked to solve ("solve ...", "find x if ...").
        variable: the variable named by "solve for y" / "... for y", else None.
    """

    text: str
    solve: bool
    variable: str | None


def normalize(expression: str) -> Normalized:
    """Rewrite light English and common notation into Python-syntax math.

    Args:
        expression: what the router (or a user) wrote, e.g. ``"what is fifty seven plus three?"``.

    Returns:
        A :class:`Normalized` (``text``, ``solve``, ``variable``).

    Raises:
        ExpertError: the input is not a string, is empty, or is longer than
            :data:`MAX_INPUT_CHARS`.

    No evaluation happens here: this is plain string processing; the result is
    still parsed and checked by :func:`evaluate`.
    """
    if not isinstance(expression, str):
        raise ExpertError(f"the expression must be a string, got {type(expression).__name__}")
    if len(expression) > MAX_INPUT_CHARS:
        raise ExpertError(
            f"the expression is too long ({len(expression)} characters; the limit is {MAX_INPUT_CHARS})"
        )
    s = expression
    for a, b in _UNICODE:
        s = s.replace(a, b)
    s = re.sub(r"√\s*", "sqrt ", s)
    s = s.replace("^", "**")
    s = " ".join(s.split())
    if not s:
        raise ExpertError("the expression is empty; give a math expression such as '57 + 3'")

    # articles, lead-ins, "solve", trailing punctuation
    s = re.sub(r"\bthe\s+", "", s, flags=re.I)
    solve, variable = False, None
    for _ in range(10):
        before = s
        m = _SOLVE_HEAD_RE.match(s)
        if m and ("=" in s or re.search(r"\bequals?\b", s, re.I)):
            solve, variable = True, m.group(1)
            s = s[m.end() :]
        elif _SOLVE_RE.match(s):
            solve = True
            s = _SOLVE_RE.sub("", s, count=1)
        else:
            s = _LEADIN_RE.sub("", s, count=1)
        s = _TRAILING_RE.sub("", s).strip()
        if s == before:
            break
    if solve:
        m = _SOLVE_TAIL_RE.search(s)
        if m:
            variable = variable or m.group(1)
            s = s[: m.start()]

    # numbers written in words
    s = re.sub(
        r"(?<![\d.])(\d+(?:\.\d+)?)\s+(hundred|thousand|million|billion|trillion|dozen)\b",
        lambda m: f"({m.group(1)}*{12 if m.group(2).lower() == 'dozen' else 100 if m.group(2).lower() == 'hundred' else _SCALES[m.group(2).lower()]})",
        s,
        flags=re.I,
    )
    s = re.sub(r"\ban?\s+(?=(?:hundred|thousand|million|billion|trillion|dozen)\b)", "one ", s, flags=re.I)
    s = _NUM_RUN_RE.sub(_convert_number_run, s)
    s = re.sub(r"(?<![\d.])(\d+)\s+point\s+(\d(?:\s+\d)*)\b", lambda m: m.group(1) + "." + m.group(2).replace(" ", ""), s, flags=re.I)
    s = re.sub(r"\bpoint\s+(\d(?:\s+\d)*)\b", lambda m: "0." + m.group(1).replace(" ", ""), s, flags=re.I)
    s = _remove_thousands_separators(s)

    # degrees, powers, fractions, percentages, "equals"
    s = re.sub(r"(?<![\d.])(\d+(?:\.\d+)?)\s*(?:°|\bdegrees?\b|\bdeg\b)", r"(\1*pi/180)", s, flags=re.I)
    s = re.sub(r"\bradians?\b", "", s, flags=re.I)
    s = re.sub(r"\b(?:raised\s+)?to\s+(\d+)(?:st|nd|rd|th)?\s+power\b", r"**\1", s, flags=re.I)
    s = re.sub(rf"\b(?:raised\s+)?to\s+({_ORD})\s+power\b", lambda m: f"**{_ORDINALS[m.group(1).lower()]}", s, flags=re.I)
    s = re.sub(r"\b(?:raised\s+)?to\s+power(?:\s+of)?\b", " ** ", s, flags=re.I)
    s = re.sub(r"\braised\s+to\b", " ** ", s, flags=re.I)
    s = re.sub(r"\s*\bpower\s+of\b", " ** ", s, flags=re.I)
    s = re.sub(r"\bsquared\b", "**2", s, flags=re.I)
    s = re.sub(r"\bcubed\b", "**3", s, flags=re.I)
    s = re.sub(r"(?<![\d.])(\d+)\s+and\s+(?:a|one|1)\s+half\b", r"(\1 + 1/2)", s, flags=re.I)
    s = re.sub(rf"(?<![\d.])(\d+)\s+({_FRAC})\b", lambda m: f"({m.group(1)}/{_FRACTIONS[m.group(2).lower()]})", s, flags=re.I)
    s = re.sub(rf"\b(?:an?|one)\s+({_FRAC})\b", lambda m: f"(1/{_FRACTIONS[m.group(1).lower()]})", s, flags=re.I)
    s = re.sub(r"\bhalf\b", "(1/2)", s, flags=re.I)
    s = re.sub(
        r"\b((?:increase|grow|decrease|reduce|lower|discount)\b.*?\s)by\s+([\d.]+)\s*(?:%|\bper\s*cent\b)",
        r"\1bypercent \2",
        s,
        flags=re.I,
    )
    s = re.sub(r"\s*(?:%|\bper\s*cent\b)\s*of\b", "/100*", s, flags=re.I)
    s = re.sub(r"\s*\bper\s*cent\b", "/100", s, flags=re.I)
    # a bare '%' after a number is a percentage when no operand follows ("50%", "15% + 3"),
    # otherwise the modulo operator ("17 % 5", "7 %-2")
    s = re.sub(r"(?<=[\d)])\s*%(?=\s*(?:$|[),=*/+]|-\s))", "/100", s)
    s = re.sub(r"\b(?:is\s+)?equal\s+to\b|\bequals?\b", "=", s, flags=re.I)

    # operator phrases
    s = _LIST_RE.sub(_list_phrase, s)
    s = _apply_chain(s)
    s = _apply_prefix_binary(s)
    for pattern, name in _FUNC_WORDS:
        s = pattern.sub(name, s)
    s = _apply_prefix_unary(s)
    for pattern, repl in _INFIX_SWAPS:
        for _ in range(10):
            s2 = pattern.sub(repl, s)
            if s2 == s:
                break
            s = s2
    s = _apply_bare_functions(s)
    for pattern, repl in _INFIX_WORDS:
        s = pattern.sub(repl, s)
    s = _apply_postfix_factorial(s)

    # equations: '==' -> '='
    s = re.sub(r"(?<![<>!=])==(?!=)", "=", s)

    # implicit multiplication: 3x, 2(3+4), (1+2)(3+4), (2)x
    s = re.sub(r"(?<![\w.])(\d+(?:\.\d+)?|\.\d+)(?![eE][+-]?\d)(?=\s*[A-Za-z_(])", r"\1*", s)
    s = re.sub(r"\)\s*(?=[\w(])", ")*", s)

    s = " ".join(s.split())
    return Normalized(text=s.strip(), solve=solve, variable=variable)


# ===========================================================================
# 2. Parsing: ast with an allow-list
# ===========================================================================

_CONSTANTS: dict[str, sympy.Basic] = {
    "pi": sympy.pi,
    "e": sympy.E,
    "E": sympy.E,
    "I": sympy.I,
    "oo": sympy.oo,
    "inf": sympy.oo,
    "infinity": sympy.oo,
}

_BINOPS = {
    ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%", ast.Pow: "**",
}
_FORBIDDEN_BINOPS = {
    ast.MatMult: "@", ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^", ast.LShift: "<<", ast.RShift: ">>",
}


def _violation(node: ast.AST) -> tuple[int, str] | None:
    """(priority, message) when the node is not allowed; lower priority is reported first."""
    if isinstance(node, (ast.Expression, ast.Load)) or isinstance(node, tuple(_BINOPS)):
        return None
    if isinstance(node, (ast.UAdd, ast.USub, ast.cmpop, ast.boolop)):
        return None  # comparisons and and/or are reported at their Compare/BoolOp node
    if isinstance(node, ast.Attribute):
        return 0, f"attribute access is not allowed: '{node.attr}'"
    if isinstance(node, ast.Name):
        if node.id.startswith("_"):
            return 0, f"name '{node.id}' is not allowed (names starting with '_' are not allowed)"
        return None
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name):
            return 0, "only calls to the allowed math functions are allowed, e.g. sqrt(2)"
        name = node.func.id
        if name.startswith("_"):
            return 0, f"name '{name}' is not allowed (names starting with '_' are not allowed)"
        if not (_function_key(name) or _is_symbol_name(name)):
            return 0, f"function '{name}' is not allowed; allowed functions: {', '.join(sorted(_FUNCTIONS))}"
        if node.keywords:
            return 1, "keyword arguments are not allowed; pass arguments by position, e.g. log(8, 2)"
        return None
    if isinstance(node, ast.Lambda):
        return 1, "lambda is not allowed"
    if isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp, ast.comprehension)):
        return 1, "comprehensions are not allowed"
    if isinstance(node, ast.Subscript):
        return 1, "subscripts (indexing with [...]) are not allowed"
    if isinstance(node, ast.NamedExpr):
        return 1, "assignment (:=) is not allowed"
    if isinstance(node, ast.Starred):
        return 1, "starred arguments (*args) are not allowed"
    if isinstance(node, ast.keyword):
        return 1, "keyword arguments are not allowed; pass arguments by position, e.g. log(8, 2)"
    if isinstance(node, (ast.JoinedStr, ast.FormattedValue)):
        return 2, "strings are not allowed"
    if isinstance(node, ast.Constant):
        v = node.value
        if isinstance(v, bool) or v is None or v is Ellipsis:
            return 2, f"'{v!r}' is not allowed; use numbers"
        if isinstance(v, (str, bytes)):
            return 2, "strings are not allowed"
        if isinstance(v, (int, float, complex)):
            return None
        return 2, f"constant {type(v).__name__} is not allowed"
    if isinstance(node, (ast.List, ast.Tuple, ast.Set, ast.Dict)):
        return 2, "lists, tuples, sets and dicts are not allowed; use one expression (commas only separate function arguments)"
    if isinstance(node, ast.Compare):
        return 2, "comparisons are not allowed; write an equation with a single '=', e.g. '3*x + 7 = 22'"
    if isinstance(node, ast.BoolOp):
        return 2, "'and' / 'or' are not allowed"
    if isinstance(node, ast.IfExp):
        return 2, "conditional expressions (if/else) are not allowed"
    if isinstance(node, ast.UnaryOp):
        return None
    if isinstance(node, (ast.Not,)):
        return 2, "'not' is not allowed"
    if isinstance(node, ast.Invert):
        return 2, "operator '~' is not allowed"
    if isinstance(node, ast.BinOp):
        return None
    if type(node) in _FORBIDDEN_BINOPS:
        sym = _FORBIDDEN_BINOPS[type(node)]
        return 2, f"operator '{sym}' is not allowed; allowed operators: + - * / // % ** (or ^)"
    if isinstance(node, ast.expr_context):
        return 2, "assignment is not allowed"
    return 2, f"{type(node).__name__} is not allowed"


def _parse(source: str, original: str) -> ast.Expression:
    """Parse one side of the expression and check it against the allow-list."""
    if re.search(r"\bimport\b", source):
        raise ExpertError("import is not allowed")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. SyntaxWarning: invalid decimal literal
            tree = ast.parse(source, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
        raise ExpertError(
            f"could not parse {_quote(original)} as a math expression; write e.g. '57 + 3', "
            "'15% of 2340', 'sqrt(2)*3' or '3*x + 7 = 22'"
        ) from None
    nodes = list(ast.walk(tree))
    found: list[tuple[int, int, int, str]] = []
    for node in nodes:
        v = _violation(node)
        if v:
            found.append((v[0], getattr(node, "col_offset", 0), getattr(node, "end_col_offset", 0), v[1]))
    if found:
        raise ExpertError(min(found)[3])
    n_terms = sum(isinstance(node, ast.expr) for node in nodes)
    if n_terms > MAX_NODES:
        raise ExpertError(f"the expression is too complex ({n_terms} terms and operations; the limit is {MAX_NODES})")
    # depth, iteratively (long sums are deep trees too)
    stack = [(tree, 0)]
    while stack:
        node, d = stack.pop()
        if d > MAX_AST_DEPTH:
            raise ExpertError(f"the expression is nested too deeply (more than {MAX_AST_DEPTH} levels of operations)")
        stack.extend((child, d + 1) for child in ast.iter_child_nodes(node))
    return tree


# ===========================================================================
# 3. Building the sympy expression, with resource guards
# ===========================================================================


def _log10_abs(x: sympy.Basic) -> float | None:
    """log10 |x| for a numeric sympy value, without building big numbers; None if unknown."""
    try:
        if x.is_Rational:
            p, q = int(x.p), int(x.q)
            if p == 0:
                return -math.inf
            return math.log10(abs(p)) - math.log10(q)
        v = sympy.N(x, 15)
        a = abs(v)
        if not isinstance(a, sympy.Float):
            return None
        if a == 0:
            return -math.inf
        _sign, man, exp, _bc = a._mpf_
        return (math.log2(man) + exp) * _LOG10_2
    except Exception:  # noqa: BLE001 - an estimate only
        return None


def _too_large(what: str, digits: float) -> ExpertError:
    if digits == math.inf or digits > 1e15:
        size = "astronomically many digits"
    else:
        size = f"about {int(digits):,} digits"
    return ExpertError(f"{what} is too large to compute exactly ({size}; the limit is {MAX_RESULT_DIGITS:,} digits)")


def _check_size(value: sympy.Basic) -> sympy.Basic:
    """Reject results holding a rational with more than MAX_RESULT_DIGITS digits."""
    limit_bits = MAX_RESULT_DIGITS / _LOG10_2
    for r in value.atoms(sympy.Rational):
        bits = max(int(r.p).bit_length(), int(r.q).bit_length())
        if bits > limit_bits:
            raise _too_large("the result", bits * _LOG10_2)
    return value


def _guard_pow(base: sympy.Basic, exp: sympy.Basic) -> None:
    if base.is_zero and exp.is_number and exp.is_extended_negative:
        raise ExpertError("division by zero (zero raised to a negative power)")
    if not (base.is_number and exp.is_number):
        return
    if base in (sympy.S.Zero, sympy.S.One, sympy.S.NegativeOne) or exp.is_zero:
        return
    le = _log10_abs(exp)
    if le is None:
        raise ExpertError(f"cannot estimate the size of ({base})**({exp}); simplify the exponent")
    if base.is_Rational:
        lb = math.log10(abs(int(base.p))) + math.log10(int(base.q)) if base.p else 0.0
    else:
        lb = _log10_abs(base)
        if lb is None:
            raise ExpertError(f"cannot estimate the size of ({base})**({exp})")
        lb = abs(lb)
    if lb == 0:
        if le > 6 and not (base.is_Rational or base in (sympy.I, -sympy.I)):
            # |base| == 1 but not a simple unit: keep exponents reasonable
            raise _too_large("the power", 10**le)
        return
    log_digits = le + math.log10(lb)
    if log_digits > math.log10(MAX_RESULT_DIGITS):
        raise _too_large("the power", 10 ** min(log_digits, 300))


def _guard_exp_arg(name: str, arg: sympy.Basic) -> None:
    if not arg.is_number:
        return
    la = _log10_abs(arg)
    if la is None or la > _MAX_EXP_ARG_LOG10:
        raise ExpertError(
            f"{name}({_short(arg)}) is too large or too small to compute "
            f"(the argument must stay below about {int(10 ** _MAX_EXP_ARG_LOG10):,} in size)"
        )


def _short(x: Any) -> str:
    t = str(x)
    return t if len(t) <= 40 else t[:37] + "..."


def _as_int(x: sympy.Basic) -> int | None:
    return int(x) if isinstance(x, sympy.Integer) else None


def _fn_factorial(n: sympy.Basic) -> sympy.Basic:
    k = _as_int(n)
    if k is not None:
        if k < 0:
            raise ExpertError(f"factorial({k}) is undefined (negative integer)")
        if k.bit_length() > 64:
            raise _too_large(f"factorial({_short(k)})", math.inf)
        digits = math.lgamma(k + 1) / math.log(10)
        if digits > MAX_RESULT_DIGITS:
            raise _too_large(f"factorial({k})", digits)
    elif n.is_number:
        la = _log10_abs(n)
        if la is None or la > 3:
            raise ExpertError(f"factorial({_short(n)}): non-integer arguments must be below 1000")
    return sympy.factorial(n)


def _fn_binomial(n: sympy.Basic, k: sympy.Basic) -> sympy.Basic:
    ni, ki = _as_int(n), _as_int(k)
    if ni is not None and ki is not None:
        if 0 <= ki <= ni:
            m = min(ki, ni - ki)
            if m > 0:
                if ni < 10**15:
                    digits = (math.lgamma(ni + 1) - math.lgamma(m + 1) - math.lgamma(ni - m + 1)) / math.log(10)
                else:
                    digits = m * math.log10(ni)
                if digits > MAX_RESULT_DIGITS:
                    raise _too_large(f"binomial({_short(ni)}, {_short(ki)})", digits)
        elif ni < 0 and abs(ki) > 10**5:
            raise ExpertError("binomial() with a negative n needs a k below 100000")
    else:
        for a in (n, k):
            if a.is_number:
                la = _log10_abs(a)
                if la is None or la > 5:
                    raise ExpertError("binomial(): non-integer arguments must be below 100000")
    return sympy.binomial(n, k)


def _int_args(name: str, args: tuple[sympy.Basic, ...]) -> list[int]:
    out = []
    for a in args:
        if not isinstance(a, sympy.Integer):
            raise ExpertError(f"{name}() needs integers, got {_short(a)}")
        out.append(int(a))
    return out


def _fn_gcd(*args: sympy.Basic) -> sympy.Basic:
    return _check_size(sympy.Integer(reduce(math.gcd, _int_args("gcd", args))))


def _fn_lcm(*args: sympy.Basic) -> sympy.Basic:
    ints = _int_args("lcm", args)
    if sum(max(abs(i), 1).bit_length() for i in ints) * _LOG10_2 > MAX_RESULT_DIGITS * 1.1:
        raise _too_large("the lcm", sum(max(abs(i), 1).bit_length() for i in ints) * _LOG10_2)
    return _check_size(sympy.Integer(reduce(math.lcm, ints)))


def _pow(base: sympy.Basic, exp: sympy.Basic) -> sympy.Basic:
    _guard_pow(base, exp)
    return sympy.Pow(base, exp)


def _real_root(x: sympy.Basic, n: sympy.Basic) -> sympy.Basic:
    if n.is_zero:
        raise ExpertError("root(x, 0) is undefined (division by zero in the exponent)")
    ni = _as_int(n)
    if ni is not None and ni % 2 == 1 and x.is_number and x.is_extended_negative:
        return -_pow(-x, sympy.Rational(1, ni))  # real odd root of a negative number
    return _pow(x, 1 / n)


def _fn_log(x: sympy.Basic, base: sympy.Basic | None = None) -> sympy.Basic:
    if x.is_zero:
        raise ExpertError("log(0) is undefined (minus infinity)")
    if base is None:
        return sympy.log(x)
    if base.is_zero or base == 1:
        raise ExpertError(f"log base {base} is undefined")
    return sympy.log(x, base)


def _fn_exp(x: sympy.Basic) -> sympy.Basic:
    _guard_exp_arg("exp", x)
    return sympy.exp(x)


def _fn_sinh(x: sympy.Basic) -> sympy.Basic:
    _guard_exp_arg("sinh", x)
    return sympy.sinh(x)


def _fn_cosh(x: sympy.Basic) -> sympy.Basic:
    _guard_exp_arg("cosh", x)
    return sympy.cosh(x)


# name -> (min args, max args, implementation)
_FUNCTIONS: dict[str, tuple[int, int, Callable[..., sympy.Basic]]] = {
    "sqrt": (1, 1, sympy.sqrt),
    "cbrt": (1, 1, lambda x: _real_root(x, sympy.Integer(3))),
    "root": (2, 2, _real_root),
    "exp": (1, 1, _fn_exp),
    "log": (1, 2, _fn_log),
    "ln": (1, 1, _fn_log),
    "log10": (1, 1, lambda x: _fn_log(x, sympy.Integer(10))),
    "log2": (1, 1, lambda x: _fn_log(x, sympy.Integer(2))),
    "sin": (1, 1, sympy.sin),
    "cos": (1, 1, sympy.cos),
    "tan": (1, 1, sympy.tan),
    "asin": (1, 1, sympy.asin),
    "acos": (1, 1, sympy.acos),
    "atan": (1, 1, sympy.atan),
    "sinh": (1, 1, _fn_sinh),
    "cosh": (1, 1, _fn_cosh),
    "tanh": (1, 1, sympy.tanh),
    "abs": (1, 1, sympy.Abs),
    "floor": (1, 1, sympy.floor),
    "ceiling": (1, 1, sympy.ceiling),
    "ceil": (1, 1, sympy.ceiling),
    "factorial": (1, 1, _fn_factorial),
    "binomial": (2, 2, _fn_binomial),
    "gcd": (2, 20, _fn_gcd),
    "lcm": (2, 20, _fn_lcm),
}
_FUNCTION_ALIASES = {"arcsin": "asin", "arccos": "acos", "arctan": "atan", "fact": "factorial", "choose": "binomial"}


def _function_key(name: str) -> str | None:
    low = name.lower()
    low = _FUNCTION_ALIASES.get(low, low)
    return low if low in _FUNCTIONS else None


def _is_symbol_name(name: str) -> bool:
    return len(name) == 1 and name.isascii() and name.isalpha() and name not in _CONSTANTS


class _Builder:
    """Turns a checked ast into a sympy expression, one guarded operation at a time."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.had_float = False

    def build(self, node: ast.AST, depth: int = 0) -> sympy.Basic:
        if depth > MAX_AST_DEPTH:
            raise ExpertError(f"the expression is nested too deeply (more than {MAX_AST_DEPTH} levels of operations)")
        if isinstance(node, ast.Expression):
            return self.build(node.body, depth + 1)
        if isinstance(node, ast.Constant):
            return self.number(node)
        if isinstance(node, ast.Name):
            return self.name(node.id)
        if isinstance(node, ast.UnaryOp):
            operand = self.build(node.operand, depth + 1)
            return -operand if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.BinOp):
            left = self.build(node.left, depth + 1)
            right = self.build(node.right, depth + 1)
            return _check_size(self.binop(node.op, left, right))
        if isinstance(node, ast.Call):
            return self.call(node, depth)
        raise ExpertError(f"{type(node).__name__} is not allowed")  # unreachable after _parse

    def number(self, node: ast.Constant) -> sympy.Basic:
        v = node.value
        if isinstance(v, int):
            if v.bit_length() * _LOG10_2 > MAX_LITERAL_DIGITS:
                raise ExpertError(
                    f"integer literal too long (about {int(v.bit_length() * _LOG10_2)} digits; "
                    f"the limit is {MAX_LITERAL_DIGITS})"
                )
            return sympy.Integer(v)
        text = (ast.get_source_segment(self.source, node) or repr(v)).replace("_", "")
        imaginary = isinstance(v, complex)
        if imaginary:
            text = text.rstrip("jJ")
        m = re.fullmatch(r"(\d*\.?\d*)(?:[eE]([+-]?\d+))?", text)
        if not m:
            raise ExpertError(f"unsupported number literal {text!r}")
        mantissa, exponent = m.group(1), int(m.group(2) or 0)
        if len(mantissa) > MAX_LITERAL_DIGITS or abs(exponent) > MAX_LITERAL_DIGITS:
            raise ExpertError(f"number literal too large ({_short(text)}; at most {MAX_LITERAL_DIGITS} digits)")
        value = sympy.Rational(mantissa or "0") * sympy.Integer(10) ** exponent
        if "." in mantissa:
            self.had_float = True
        return value * sympy.I if imaginary else value

    def name(self, name: str) -> sympy.Basic:
        if name in _CONSTANTS:
            return _CONSTANTS[name]
        if name.lower() in _CONSTANTS and len(name) > 1:
            return _CONSTANTS[name.lower()]
        if _is_symbol_name(name):
            return sympy.Symbol(name)
        if _function_key(name):
            raise ExpertError(f"'{name}' is a function; call it with parentheses, e.g. {name.lower()}(2)")
        raise ExpertError(
            f"unknown name '{name}'; use numbers, single-letter variables (x, y, ...), the constants "
            "pi, e, I, oo and the functions " + ", ".join(sorted(_FUNCTIONS))
        )

    def binop(self, op: ast.operator, a: sympy.Basic, b: sympy.Basic) -> sympy.Basic:
        if isinstance(op, ast.Add):
            return a + b
        if isinstance(op, ast.Sub):
            return a - b
        if isinstance(op, ast.Mult):
            return a * b
        if isinstance(op, (ast.Div, ast.FloorDiv, ast.Mod)):
            if b.is_zero:
                raise ExpertError("division by zero")
            if isinstance(op, ast.Div):
                return a / b
            if isinstance(op, ast.FloorDiv):
                return sympy.floor(a / b)
            return sympy.Mod(a, b)
        if isinstance(op, ast.Pow):
            return _pow(a, b)
        raise ExpertError(f"operator {type(op).__name__} is not allowed")

    def call(self, node: ast.Call, depth: int) -> sympy.Basic:
        name = node.func.id  # type: ignore[attr-defined]  # checked in _parse
        args = [self.build(a, depth + 1) for a in node.args]
        key = _function_key(name)
        if key is None:
            if _is_symbol_name(name) and len(args) == 1:
                return _check_size(self.name(name) * args[0])  # x(3 + 4) -> x*(3 + 4)
            raise ExpertError(f"function '{name}' is not allowed; allowed functions: {', '.join(sorted(_FUNCTIONS))}")
        lo, hi, fn = _FUNCTIONS[key]
        if not lo <= len(args) <= hi:
            want = str(lo) if lo == hi else f"{lo} to {hi}"
            raise ExpertError(f"{key}() takes {want} argument{'s' if hi > 1 else ''}, got {len(args)}")
        return _check_size(fn(*args))


# ===========================================================================
# 4. Results: exact value, decimal, text
# ===========================================================================


def _trim_decimal(text: str) -> str:
    def trim(m: re.Match[str]) -> str:
        mant, exp = m.group(1), m.group(2) or ""
        if "." in mant:
            mant = mant.rstrip("0").rstrip(".")
        return mant + exp

    text = re.sub(r"(\d+\.\d*)(e[+-]?\d+)?", trim, text)
    return re.sub(r"(?<![\w.*])1\*I\b", "I", text)


def _decimal(value: sympy.Basic) -> str | None:
    """15 significant digits, trailing zeros trimmed; None for integers and non-numbers."""
    try:
        if not value.is_number or value.is_Integer or value.has(sympy.oo, -sympy.oo, sympy.zoo, sympy.nan):
            return None
        d = sympy.N(value, DECIMAL_DIGITS)
        if not d.is_number or d.has(sympy.zoo, sympy.nan):
            return None
        return _trim_decimal(str(d))
    except Exception:  # noqa: BLE001 - the exact value is still good
        return None


def _is_exact_decimal(value: sympy.Basic, decimal: str | None) -> bool:
    if decimal is None or not value.is_Rational:
        return False
    try:
        return sympy.Rational(decimal) == value
    except (TypeError, ValueError):
        return False


def _display(value: sympy.Basic, prefer_decimal: bool) -> tuple[str, str | None, str]:
    """(exact, decimal, text) for one value."""
    exact = str(value)
    dec = _decimal(value)
    if dec is None or dec == exact:
        return exact, None, exact
    if _is_exact_decimal(value, dec):
        return exact, dec, dec if prefer_decimal else f"{exact} = {dec}"
    return exact, dec, f"{exact} ≈ {dec}"


def _check_defined(value: sympy.Basic) -> None:
    if value.has(sympy.zoo) or value.has(sympy.nan):
        raise ExpertError(
            "the result is undefined (division by zero or a singularity, e.g. 1/0, log(0) or tan(pi/2))"
        )


def _latex(value: Any) -> str | None:
    try:
        return sympy.latex(value)
    except Exception:  # noqa: BLE001 - cosmetic only
        return None


def _degree(expr: sympy.Basic, syms: set[sympy.Symbol]) -> float:
    """An upper estimate of the polynomial degree of expr in syms, without expanding."""
    if not (expr.free_symbols & syms):
        return 0
    if expr.is_Symbol:
        return 1
    if expr.is_Add:
        return max(_degree(a, syms) for a in expr.args)
    if expr.is_Mul:
        return sum(_degree(a, syms) for a in expr.args)
    if expr.is_Pow:
        b, e = expr.args
        if e.free_symbols & syms:
            return max(1, _degree(b, syms))
        if e.is_Rational and max(abs(int(e.p)), int(e.q)) < 10**12:
            return _degree(b, syms) * abs(float(e))
        le = _log10_abs(e)
        if le is None:
            return math.inf
        return _degree(b, syms) * (10**le if le < 300 else math.inf)
    return max([1.0] + [_degree(a, syms) for a in expr.args])


_EXP_LIKE = (sympy.exp, sympy.sinh, sympy.cosh, sympy.tanh)
_TRIG = (sympy.sin, sympy.cos, sympy.tan)


def _check_frequencies(expr: sympy.Basic, var: sympy.Symbol, shown: str) -> None:
    """Reject equations that sympy turns into polynomials of huge degree or huge numbers.

    Powers of the variable need exponents of at most 1000 in numerator and
    denominator (``x**(1/10**9) = 10`` means ``x = 10**(10**9)``); when the
    variable is inside a function (exp, log, sin, floor ...), constants must stay
    below 10**6 (inverting exp or log exponentiates them).

    sympy solves ``exp(1000*x) = 5`` or ``sinh(100*x) = -1`` by substituting
    ``y = exp(x)`` and finding all roots of a degree-1000 (or -200) polynomial,
    and mixes of exponentials or trig functions with different rates likewise
    (``cos(x/7) + cos(x/5) = 1``). The rate of each exponential, hyperbolic or
    trig term (the coefficient of the variable in its argument) bounds that
    degree: max |rate| * lcm(denominators), doubled for sinh/cosh/tanh.
    """
    rates: list[sympy.Basic] = []
    doubled = False
    trig_terms = 0
    transcendental = False
    for node in sympy.preorder_traversal(expr):
        if (isinstance(node, sympy.Function) or (isinstance(node, sympy.Pow) and node.exp.has(var))) and node.has(var):
            transcendental = True
        if (
            isinstance(node, sympy.Pow)
            and node.base.has(var)
            and node.exp.is_Rational
            and max(abs(int(node.exp.p)), int(node.exp.q)) > 1000
        ):
            raise ExpertError(
                f"the equation {_quote(shown)} is too complex to solve exactly "
                f"(the power {_short(node.exp)} needs an exponent of at most 1000 in size)"
            )
        if isinstance(node, sympy.Pow) and node.exp.has(var):
            if node.base.has(var):
                continue  # x**x and the like: no substitution polynomial
            arg = node.exp
        elif isinstance(node, _EXP_LIKE + _TRIG) and node.args[0].has(var):
            arg = node.args[0]
            doubled = doubled or isinstance(node, _EXP_LIKE[1:])
            trig_terms += isinstance(node, _TRIG)
        else:
            continue
        for term in sympy.Add.make_args(arg):
            if term.has(var):
                rates.append(term.as_independent(var, as_Add=False)[0])
    if transcendental:
        # inverting exp or log exponentiates constants: log10(x) = 10**9 means x = 10**(10**9)
        big = [r for r in expr.atoms(sympy.Rational) if max(abs(int(r.p)), int(r.q)) > 10**6]
        if big:
            raise ExpertError(
                f"the equation {_quote(shown)} is not polynomial and has a constant as large as "
                f"{_short(big[0])}; its exact solution could be astronomically large "
                "(such equations allow constants up to 10**6)"
            )
    if not rates or (len(rates) == 1 and trig_terms == 1):
        return  # one trig term: sympy inverts it directly
    # split each rate into a rational coefficient and the rest (pi, sqrt(2), a symbol ...)
    parts = {r.as_coeff_Mul() for r in rates}
    if len({rest for _c, rest in parts}) > 1:
        raise ExpertError(
            f"the equation {_quote(shown)} mixes exponential or trig terms with unrelated rates; "
            "sympy cannot solve it exactly"
        )
    coeffs = {c for c, _rest in parts}
    if any(max(abs(int(c.p)), int(c.q)) > 10**6 for c in coeffs):
        degree = math.inf
    else:
        lcm_den = reduce(math.lcm, (int(c.q) for c in coeffs), 1)
        degree = max(abs(int(c.p)) * lcm_den // int(c.q) for c in coeffs) * (2 if doubled else 1)
    limit = 4 if trig_terms > 1 else MAX_DEGREE * 2
    if degree > limit:
        shown_degree = "huge" if degree == math.inf else str(degree)
        raise ExpertError(
            f"the equation {_quote(shown)} is too complex to solve exactly (it becomes a polynomial "
            f"of degree {shown_degree}; the limit is {limit})"
        )


def _solve(lhs: sympy.Basic, rhs: sympy.Basic, variable: str | None, shown: str, prefer_decimal: bool) -> ExpertResult:
    diff = lhs - rhs
    syms = diff.free_symbols | lhs.free_symbols | rhs.free_symbols
    data: dict[str, Any] = {"expression": shown, "equation": True}
    eq = sympy.Eq(lhs, rhs)
    if not syms or eq in (sympy.true, sympy.false):
        truth = bool(eq == sympy.true)
        if not syms:
            text = (
                f"true: both sides equal {_display(lhs, prefer_decimal)[2]}"
                if truth
                else f"false: {_display(lhs, prefer_decimal)[2]} ≠ {_display(rhs, prefer_decimal)[2]}"
            )
        else:
            var = variable or ("x" if "x" in {s.name for s in syms} else sorted(s.name for s in syms)[0])
            if not truth:  # e.g. x + 1 = x + 2
                data.update(exact="[]", decimal=None, latex=None, variable=var, solutions=[])
                return ExpertResult(value=[], text=f"no solution for {var}", sources=["sympy"], data=data)
            text = f"the equation holds for every value of {var}"
        data.update(exact=str(truth), decimal=None, latex=_latex(eq), variable=None, solutions=[])
        return ExpertResult(value=truth, text=text, sources=["sympy"], data=data)
    if len(syms) > MAX_SOLVE_SYMBOLS:
        names = ", ".join(sorted(s.name for s in syms))
        raise ExpertError(f"too many variables to solve for ({names}); at most {MAX_SOLVE_SYMBOLS}")
    by_name = {s.name: s for s in syms}
    if variable is not None and variable not in by_name:
        raise ExpertError(f"'{variable}' does not appear in the equation {_quote(shown)}")
    var_name = variable or ("x" if "x" in by_name else sorted(by_name)[0])
    var = by_name[var_name]
    deg = _degree(diff, syms)
    if deg > MAX_DEGREE:
        raise ExpertError(
            f"the equation is too complex to solve (degree {f'{deg:g}' if deg < 1e9 else 'huge'}; "
            f"the limit is {MAX_DEGREE})"
        )
    _check_frequencies(diff, var, shown)
    try:
        solutions = sympy.solve(eq, var, cubics=False, quartics=False)
    except ExpertError:
        raise
    except Exception as exc:  # noqa: BLE001 - sympy raises many types for unsolvable input
        reason = " ".join(str(exc).split())
        reason = reason if len(reason) <= 160 else reason[:157] + "..."
        raise ExpertError(f"could not solve {_quote(shown)} for {var_name}: {reason}") from None
    if isinstance(solutions, dict):
        solutions = [solutions[var]] if var in solutions else []
    solutions = [s for s in solutions if not (s.has(sympy.zoo) or s.has(sympy.nan))]
    for s in solutions:
        _check_size(s)
    shown_solutions = [_display(s, prefer_decimal) for s in solutions]
    if not solutions:
        text = f"no solution for {var_name}"
    else:
        text = " or ".join(f"{var_name} = {t}" for _e, _d, t in shown_solutions)
    decimals = [d for _e, d, _t in shown_solutions]
    data.update(
        exact="[" + ", ".join(e for e, _d, _t in shown_solutions) + "]",
        decimal=None
        if all(d is None for d in decimals)
        else "[" + ", ".join(d if d is not None else e for e, d, _t in shown_solutions) + "]",
        latex=", ".join(f"{sympy.latex(var)} = {_latex(s)}" for s in solutions) if solutions else None,
        variable=var_name,
        solutions=[{"exact": e, "decimal": d} for e, d, _t in shown_solutions],
    )
    return ExpertResult(value=list(solutions), text=text, sources=["sympy"], data=data)


# ===========================================================================
# 5. Public API
# ===========================================================================


class _DeadlineExceeded(BaseException):
    """Raised inside an evaluation whose time budget is spent.

    A BaseException, so that sympy's many ``except Exception`` blocks do not swallow it.
    """


def _package_dir(module: Any) -> str:
    return os.path.dirname(os.path.abspath(module.__file__)) + os.sep


# The deadline exception is only ever raised inside sympy or mpmath code: they
# hold no locks (importlib and threading do, and an exception at a random point
# there could leave one held). The thread-local or global settings they change
# temporarily are snapshotted and restored after an interruption.
_INTERRUPTIBLE = (_package_dir(sympy), _package_dir(mpmath))

try:  # CPython
    import ctypes

    _SET_ASYNC_EXC = ctypes.pythonapi.PyThreadState_SetAsyncExc  # PyDLL: holds the GIL
except (ImportError, AttributeError):  # pragma: no cover - other Python implementations
    ctypes = None  # type: ignore[assignment]
    _SET_ASYNC_EXC = None


def _snapshot_sympy_state() -> dict[str, Any]:
    from sympy.core.parameters import global_parameters
    from sympy.polys import polyconfig

    state: dict[str, Any] = {
        "parameters": dict(vars(global_parameters)),
        "polyconfig": dict(polyconfig._current_config),
        "mp_prec": mpmath.mp.prec,
    }
    try:
        from sympy.matrices import utilities as matrix_utilities

        state["dotprodsimp"] = getattr(matrix_utilities._dotprodsimp_state, "state", None)
    except (ImportError, AttributeError):  # pragma: no cover - other sympy versions
        pass
    return state


def _restore_sympy_state(state: dict[str, Any]) -> None:
    from sympy.core.parameters import global_parameters
    from sympy.polys import polyconfig

    for key, value in state["parameters"].items():
        if getattr(global_parameters, key, value) != value:
            setattr(global_parameters, key, value)
    polyconfig._current_config.clear()
    polyconfig._current_config.update(state["polyconfig"])
    if mpmath.mp.prec != state["mp_prec"]:
        mpmath.mp.prec = state["mp_prec"]
    if "dotprodsimp" in state:
        from sympy.matrices import utilities as matrix_utilities

        matrix_utilities._dotprodsimp_state.state = state["dotprodsimp"]


def _run_with_deadline(fn: Callable[[], ExpertResult], seconds: float | None) -> ExpertResult:
    """Run fn in this thread; raise :class:`_DeadlineExceeded` inside it after ``seconds``.

    A watchdog thread waits for the deadline, then raises the exception in this
    thread asynchronously (``PyThreadState_SetAsyncExc``), but only while this
    thread's innermost frame is sympy or mpmath code. It holds the GIL while it
    looks and injects, so this thread is paused at exactly that frame, and the
    exception is raised there as soon as it resumes. This costs nothing while fn
    runs and also stops loops that call no Python function (sympy building a
    polynomial of huge degree, say). sympy's and mpmath's settings are restored
    after an interruption. Without CPython's C API, fn runs without a deadline.
    """
    if not seconds or seconds <= 0 or _SET_ASYNC_EXC is None:
        return fn()
    target = threading.get_ident()
    target_c = ctypes.c_ulong(target)
    exc = ctypes.py_object(_DeadlineExceeded)
    done = threading.Event()

    def watchdog() -> None:
        if done.wait(seconds):
            return
        while not done.is_set():
            frame = sys._current_frames().get(target)
            if frame is None or not frame.f_code.co_filename.startswith(_INTERRUPTIBLE):
                time.sleep(0.001)  # let it reach sympy code again
                continue
            lasti = frame.f_lasti
            _SET_ASYNC_EXC(target_c, exc)
            if sys._current_frames().get(target) is not frame or frame.f_lasti != lasti:
                # this thread lost the GIL in between and moved on: take it back
                _SET_ASYNC_EXC(target_c, ctypes.c_void_p(None))
                continue
            done.wait(0.05)  # delivered by then; again if sympy swallowed it

    state = _snapshot_sympy_state()
    guard = threading.Thread(target=watchdog, name="calculator-deadline", daemon=True)
    guard.start()
    interrupted = False
    try:
        return fn()
    except _DeadlineExceeded:
        interrupted = True
        raise
    finally:
        # Only threading and calculator code runs from here on, where the
        # watchdog never injects; once it is joined, clear anything undelivered.
        done.set()
        guard.join()
        _SET_ASYNC_EXC(target_c, ctypes.c_void_p(None))
        if interrupted:
            _restore_sympy_state(state)


def evaluate(expression: str, *, timeout_s: float | None = DEFAULT_TIMEOUT_S) -> ExpertResult:
    """Evaluate a math expression or solve an equation exactly, without ``eval``.

    Args:
        expression: math in Python-like syntax or light English, e.g. ``"57 + 3"``,
            ``"fifty seven plus three"``, ``"15% of 2,340"``, ``"sqrt(8)"``,
            ``"2^10"``, ``"solve 3x + 7 = 22"``. ``log(x)`` is the natural
            logarithm (``log(x, b)``, ``log10``, ``log2`` for other bases).
        timeout_s: wall-clock budget in seconds (default :data:`DEFAULT_TIMEOUT_S`);
            None or 0 for none.

    Returns:
        An :class:`ExpertResult` with ``value`` the exact sympy result (for an
        equation: the list of solutions; for an equation without variables: a
        bool), ``text`` a readable answer (``"60"``, ``"1/3 ≈ 0.333333333333333"``,
        ``"x = -sqrt(2) ≈ -1.4142135623731 or x = sqrt(2) ≈ 1.4142135623731"``), and
        ``data`` with ``exact`` (str), ``decimal`` (15 significant digits, or None
        when the exact value is an integer or not a number), ``latex`` and
        ``expression`` (the normalized expression that was evaluated); for an
        equation also ``variable`` and ``solutions``.

    Raises:
        ExpertError: the expression cannot be parsed, uses something outside the
            allow-list (attribute access, strings, unknown names, ...), would be
            too large to compute (limits in the module docstring), divides by
            zero, is an equation sympy cannot solve, or takes longer than
            ``timeout_s`` seconds. Only ExpertError is raised.

    Source: the MRKL paper (Karpas et al., 2022, Sec. 4) uses arithmetic as the
    running example of a discrete expert fed by neural argument extraction.
    """
    try:
        return _run_with_deadline(lambda: _evaluate(expression), timeout_s)
    except ExpertError:
        raise
    except _DeadlineExceeded:
        raise ExpertError(
            f"{_quote(str(expression))} took too long to compute (more than {timeout_s:g} s); "
            "simplify the expression or equation"
        ) from None
    except RecursionError:
        raise ExpertError("the expression is nested too deeply") from None
    except MemoryError:
        raise ExpertError("the expression needs too much memory to compute") from None
    except Exception as exc:  # noqa: BLE001 - the calculator's contract is ExpertError only
        raise ExpertError(f"could not evaluate {_quote(str(expression))}: {type(exc).__name__}: {exc}") from None


def _evaluate(expression: str) -> ExpertResult:
    norm = normalize(expression)
    text = norm.text
    if not text:
        raise ExpertError(f"could not find a math expression in {_quote(expression)}")
    depth = max(_paren_depths(text))
    if depth > MAX_NESTING:
        raise ExpertError(f"the expression is nested too deeply ({depth} levels of parentheses; the limit is {MAX_NESTING})")
    if re.search(r"\d{%d,}" % (MAX_LITERAL_DIGITS + 1), text):
        raise ExpertError(f"a number in the expression has more than {MAX_LITERAL_DIGITS} digits")

    # split an equation at a single '=' (not part of <=, >=, !=)
    eq_positions = [m.start() for m in re.finditer(r"(?<![<>!=])=(?!=)", text)]
    if len(eq_positions) > 1:
        raise ExpertError("only one '=' is allowed (a single equation such as '3*x + 7 = 22')")
    sides = [text] if not eq_positions else [text[: eq_positions[0]], text[eq_positions[0] + 1 :]]
    if any(not s.strip() for s in sides):
        raise ExpertError(f"an equation needs an expression on both sides of '=': {_quote(text)}")

    trees = [_parse(s.strip(), expression) for s in sides]
    builder = _Builder("")
    values = []
    for side, tree in zip(sides, trees):
        builder.source = side.strip()
        values.append(builder.build(tree))
    shown = " = ".join(ast.unparse(t) for t in trees)

    for v in values:
        _check_defined(v)
        _check_size(v)

    if len(values) == 2 or (norm.solve and values[0].free_symbols):
        lhs, rhs = (values[0], values[1]) if len(values) == 2 else (values[0], sympy.Integer(0))
        if len(values) == 1:
            shown = f"{shown} = 0"
        return _solve(lhs, rhs, norm.variable, shown, builder.had_float)

    value = values[0]
    exact, dec, out = _display(value, builder.had_float)
    data = {"exact": exact, "decimal": dec, "latex": _latex(value), "expression": shown, "equation": False}
    return ExpertResult(value=value, text=out, sources=["sympy"], data=data)


class CalculatorExpert(Expert):
    """Exact calculator expert (sympy), the running example of a discrete MRKL expert.

    Input: ``Args.expression``, a math expression or equation (light English is
    tolerated, since a small router model often copies the user's words).
    Output: :func:`evaluate`'s :class:`ExpertResult` (exact value, readable
    text, decimal approximation, LaTeX, normalized expression).
    Errors: :class:`~mrkl.errors.ExpertError` for anything that cannot be
    parsed, is not allowed, is too large, divides by zero or cannot be solved;
    ``parse_args`` raises :class:`~mrkl.errors.ArgumentError` for bad arguments.

    Source: Karpas et al., 2022, "MRKL Systems", Sec. 4 (arithmetic as the
    running example of a discrete expert).
    """

    name = "calculator"
    description = (
        "Exact math: arithmetic, fractions, percentages, powers, roots, functions "
        "(sqrt, log, sin, factorial, gcd...) and solving equations for x."
    )

    class Args(BaseModel):
        """Arguments of the calculator: one math expression."""

        model_config = ConfigDict(extra="forbid")
        expression: str = Field(
            ...,
            description=(
                "The math expression, e.g. '57 + 3', '15% of 2340', 'sqrt(2)*3', '2**10', "
                "'factorial(7)', 'gcd(84, 36)', or an equation such as 'solve 3*x + 7 = 22'."
            ),
        )

    examples = [
        RoutingExample("What is fifty seven plus three?", {"expression": "57 + 3"}),
        RoutingExample("What is 15% of 2,340?", {"expression": "15% of 2340"}),
        RoutingExample("Solve 3x + 7 = 22", {"expression": "3*x + 7 = 22"}),
        RoutingExample("What is the square root of 144?", {"expression": "sqrt(144)"}),
        RoutingExample("What is 2 to the power of 10?", {"expression": "2**10"}),
        RoutingExample("How much is 1,234 divided by 8?", {"expression": "1234 / 8"}),
        RoutingExample("Subtract 12 from 40 and double it.", {"expression": "(40 - 12) * 2"}),
        RoutingExample("If 5 friends split a $96 bill evenly, how much does each pay?", {"expression": "96 / 5"}),
        RoutingExample("What is 7 factorial?", {"expression": "factorial(7)"}),
        RoutingExample("What is the greatest common divisor of 84 and 36?", {"expression": "gcd(84, 36)"}),
        RoutingExample("For which x is x squared equal to 2?", {"expression": "x**2 = 2"}),
        RoutingExample("What is 1/3 plus 1/6?", {"expression": "1/3 + 1/6"}),
    ]

    def __init__(self, timeout_s: float | None = DEFAULT_TIMEOUT_S) -> None:
        """Args:
        timeout_s: wall-clock budget of one evaluation in seconds; None or 0 for none.
        """
        super().__init__()
        self.timeout_s = timeout_s

    def run(self, args: BaseModel) -> ExpertResult:
        """Evaluate ``args.expression`` with :func:`evaluate`.

        Raises:
            ExpertError: see :func:`evaluate`.
        """
        return evaluate(args.expression, timeout_s=self.timeout_s)  # type: ignore[attr-defined]

    def symbolic_args(self, question: str) -> dict[str, Any] | None:
        """The whole question as the expression, when the calculator's own English parser evaluates it.

        "subtract 9 from 30 and double it" or "what is fifty seven plus three?" parse
        without a language model; a question that does not parse gives ``None``.
        """
        try:
            evaluate(question, timeout_s=self.timeout_s)
        except ExpertError:
            return None
        return {"expression": question}
