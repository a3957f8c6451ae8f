"""Schema-constrained argument decoding: valid JSON by construction, values copied from the question.

Argument extraction is the hard part of a MRKL system (Karpas et al., 2022, "MRKL
Systems", Sec. 4): a small model writes invalid JSON, invents values, drops signs.
:class:`ConstrainedArguments` decodes an expert's arguments with a JSON-schema token
mask (llguidance, see :mod:`llm_backends.constrained`), so the output is always JSON
that matches the schema, and biases the choices inside strings and numbers toward
spans of the question (:class:`~llm_backends.constrained.CopyBias`).

Two recipes:

* ``per_field=False``: one constrained pass over the whole argument object; the model
  decides which optional keys to write.
* ``per_field=True``: each argument is decoded on its own after ``"name":``, in the
  schema's order, with a grammar for that argument's schema alone. With
  ``ground_optional=True`` an optional argument is kept only when its value is
  grounded in the question (a number written there and not used by another
  argument, a string or enum value that appears there, a boolean whose name appears
  there), so the model never fills an optional argument with an invented value.

Per argument, the per-field recipe:

1. **Stated values** (:func:`stated_value`) are not decoded: a flag the question names,
   the allowed value(s) it writes, a number it implies.
2. **Decoding** under the argument's schema (:func:`field_schema`: required strings start
   like a value, required lists are not empty; a closed set of values the description
   lists becomes an enum), with the copy bias, the question's numbers converted to the
   argument's unit or rate and of its unit's kind first (:func:`router.values.field_numbers`),
   spans and numbers other arguments took not proposed again.
   A required string that is :func:`invented` (no word of it in the question: a
   placeholder such as ``"the_country_to_get_data_from"``) or that only
   :func:`names_the_call` (``type="restaurant"`` for ``find_restaurant``) is decoded again
   as another span of the question (:func:`router.values.span_pattern`); one that starts with
   a lower-case word of the call is decoded again the same way, one that ends with such a word
   loses it (:func:`call_word_end`: "Santa Clara county" → "Santa Clara").
3. **Repairs** (:func:`_repaired`): a number of the wrong unit kind or with its decimal point
   misplaced, a list that runs into the next written list, list items other arguments
   took, an expression argument in Python syntax.
4. **Keeping** an optional argument only when grounded, not a repeat of another's value,
   and not a word of the call itself (:func:`names_the_call`: ``unit="weight"`` beside a
   ``weight`` argument, ``data_type="stock"`` for ``stock_price``).
5. **Names and tails**, once all arguments are decoded: a list of strings loses the items
   that are another argument's value (``predictors`` without the ``target``); a string that runs on into another
   argument's value or a written date is cut (:func:`trailing_value_removed`: "Natural
   History Museum in London" when ``city`` is "London"); a decoded (not stated) name that
   starts inside a capitalised name of the question gets its first words back
   (:func:`router.values.whole_name`: "League" → "Premier League"), and a part of a path or
   code the question writes becomes the whole of it (:func:`router.values.whole_token`:
   "AL2562" → "2022/AL2562"); names take no words of the
   argument's own name or description nor of other arguments' values (checked again now
   that all values are known; step 3 checks against the earlier arguments). A numbered pair
   (``species1``/``species2``) written the other way round in the question is swapped
   (:func:`in_question_order`), and so are two numbers the question names the other way round
   (:func:`named_numbers_swapped`).
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from typing import Any, Sequence

from llm_backends.base import LLMBackend
from llm_backends.constrained import CopyBias, JSONSchemaConstraint, number_spans
from llm_backends.errors import BackendError
from router.values import (
    _without_plural_s,
    negative_name,
    with_compass_sign,
    polynomial_coefficients,
    written_interval,
    written_mapping,
    described_examples,
    named_number,
    clock_hour,
    whole_token,
    _identifier_words,
    city_state_style,
    compounding_periods,
    relative_period,
    counted_number,
    described_options,
    field_numbers,
    first_written_list,
    flag_mentioned,
    named_option,
    named_options,
    numbers_of_kind,
    written_numbers,
    implied_value,
    is_expression_argument,
    math_expressions,
    normalize_expression,
    number_text,
    question_dates,
    question_numbers,
    snap_number,
    span_pattern,
    stated_date,
    stated_unit,
    unit_mismatch,
    whole_name,
    with_state,
)

__all__ = ["ConstrainedArguments", "supports_constrained", "grounded_in", "invented", "trailing_value_removed", "call_words", "names_the_call", "call_word_end",
           "in_question_order", "named_numbers_swapped",
           "without_content", "numeric_text_argument", "other_option", "not_an_email", "tidy_items", "opens_question", "kind_modifier"]


def supports_constrained(backend: Any) -> bool:
    """True when ``backend`` can mask logits during greedy decoding (a local transformers model)."""
    caps = getattr(backend, "capabilities", None)
    return bool(getattr(caps, "constrained_decoding", False)) and hasattr(backend, "tokenizer")


def _type_of(schema: dict[str, Any]) -> str | None:
    t = schema.get("type")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), None)
    if t is None and "enum" in schema:
        vals = schema["enum"]
        if vals and all(isinstance(v, str) for v in vals):
            return "string"
    if t is None:
        for alt in schema.get("anyOf", []) or []:
            if isinstance(alt, dict) and alt.get("type") not in (None, "null"):
                return _type_of(alt)
    return t


_FUNCTION_WORDS = frozenset(
    "a an the of in on at to for from by with and or is are was be it this that these those my your our their "
    "me i you we they what which who how when where".split()
)


def grounded_in(value: Any, question: str, *, name: str = "", used_numbers: list[float] | None = None, number_words: bool = True) -> bool:
    """Whether an optional argument's value is supported by the question text.

    Args:
        value: the decoded JSON value.
        question: the user's question.
        name: the argument's name (a boolean ``True`` is grounded when a word of its
            name, 4+ letters, appears in the question).
        used_numbers: numbers already taken by other arguments (a number is grounded
            only when the question writes it more often than it is already used).
        number_words: count numbers written in words ("two"). The argument decoder passes
            False for optional arguments: a word number is often a count of the values
            the question lists ("the other two sides as 4 and 5"), not a value.

    Returns:
        True for a number the question states (by value; numbers in words, with scale
        words and thousands separators count, see :func:`router.values.question_numbers`), a string of 2+
        characters that appears in the question (case-insensitive) and is more than
        function words ("the", "of my"), ``True`` for a
        boolean named in the question, a non-empty list whose items are all grounded
        (numbers counted against ``used_numbers`` and the list's earlier items).
    """
    q = question.lower()
    if isinstance(value, bool):
        words = [w for w in re.split(r"[_\W]+", name.lower()) if len(w) >= 4]
        return value is True and any(w in q for w in words)
    if isinstance(value, (int, float)):
        nums = [float(s) for s in question_numbers(question, words=number_words)]
        used = list(used_numbers or [])
        have = sum(1 for n in nums if math.isclose(n, float(value)))
        taken = sum(1 for n in used if math.isclose(n, float(value)))
        return have > taken
    if isinstance(value, str):
        v = value.strip().lower()
        content = [w for w in re.findall(r"\w+", v) if w not in _FUNCTION_WORDS]
        return len(v) >= 2 and bool(content) and v in q
    if isinstance(value, list):
        taken = list(used_numbers or [])
        for v in value:
            if not grounded_in(v, question, name=name, used_numbers=taken, number_words=number_words):
                return False
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                taken.append(float(v))
        return bool(value)
    return False


#: spans a string is decoded again as: short names and phrases, not clauses ("slope in terms of erosion prevention")
_SPAN_LIMITS = {"max_words": 4, "commas": False}
_DATE_RE = re.compile(r"(?<![\d.])(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{4})(?![\d.])")


def invented(value: Any, question: str, name: str = "") -> bool:
    """Whether a decoded string is not from the question at all: a placeholder the model made up.

    True for a string none of whose content words (2+ characters, not function words)
    the question writes (compared by their first four letters, so "detailed" is from
    "detail"; digit runs as written), and for a snake_case placeholder with two or more
    underscores that the question does not write ("the_country_to_get_data_from",
    "case_number_123456-ABC"), and for the argument's own name written as its value
    (``game="game"``, ``contract_type="contract"``). A date in another format ("2022-03-11" for "March 11, 2022")
    is a rewrite and an upper-case code ("CA", "AAPL") knowledge, not an invention: False; a date
    where the question writes none ("2023-01-01T00:00:00Z" for "3pm") is invented.
    Non-strings and empty strings: False.
    """
    if not isinstance(value, str) or not value.strip() or not isinstance(question, str):
        return False
    v = value.strip()
    if _own_name(v, name):
        return True
    if (_DATE_RE.search(v) and question_dates(question)) or re.fullmatch(r"[A-Z]{2,5}", v):
        return False  # a date rewritten, a code the model knows ("CA" for California, "AAPL")
    q = _plain(question)
    if _plain(v) in q or _plain(v).replace("_", " ") in q:
        return False  # "Zürich" for "Zurich", "new_york_city" for "new york city"
    v = _plain(v)
    if v.count("_") >= 2:
        return True
    q_words = {w for w in re.split(r"[\W_]+", q) if w}
    q4 = {x[:4] for x in q_words if len(x) >= 4}
    words = [w for w in re.split(r"[\W_]+", v.lower()) if len(w) >= 2 and w not in _FUNCTION_WORDS]
    for w in words:
        if w.isdigit():
            if w in q_words:
                return False
        elif w in q_words or (len(w) >= 4 and w[:4] in q4):
            return False
    return True


def _plain(text: str) -> str:
    """Lower case without accents ("Zürich" → "zurich"), for comparing a value with the question."""
    return "".join(c for c in unicodedata.normalize("NFKD", text.lower()) if not unicodedata.combining(c))


def _name_words(name: str) -> set[str]:
    """The words of an argument's name (:func:`router.values._identifier_words`), as a set."""
    return {w for w in _identifier_words(str(name)) if w}


def _singular(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def _own_words(name: str) -> set[str]:
    """The words of an argument's own name, singular ("trophies" → "trophy")."""
    return {_singular(w) for w in _name_words(name)}


def _own_name(value: str, name: str) -> bool:
    """Whether a string value is only words of the argument's own name ("contract" for ``contract_type``,
    "trophies" for ``trophy``; singular and plural alike)."""
    words = {_singular(w) for w in re.split(r"[\W_]+", value.lower()) if w}
    return bool(words) and bool(name) and words <= _own_words(name)


def call_words(name: str, properties: Any, function_name: str = "") -> set[str]:
    """The words (singular, lower case) of the expert's name and of its *other* arguments' names:
    what a value of argument ``name`` may not consist of alone (see :func:`names_the_call`)."""
    words = {_singular(w) for w in _name_words(function_name)} if isinstance(function_name, str) else set()
    if isinstance(properties, dict):
        for other in properties:
            if other != name:
                words |= {_singular(w) for w in _name_words(str(other))}
    return {w for w in words if w}


def names_the_call(value: Any, words: set[str]) -> bool:
    """Whether a free string value is nothing but words of the call (:func:`call_words`).

    A small model that finds no value in the question copies a word of the prompt it was
    given: ``unit="weight"`` beside a ``weight`` argument, ``category="year"`` beside
    ``year``, ``make="instrument"`` for ``find_instrument``, ``location="Safeway"`` for
    ``safeway.order``. Such a value names the function or another argument, not what the
    user asked for (on the BFCL runs of 9f6279a, 13 of 14 such string values were wrong).
    Compared word by word, singular and plural alike; non-strings and empty strings: False.
    """
    if not isinstance(value, str) or not isinstance(words, (set, frozenset)) or not words:
        return False
    vw = {_singular(w) for w in re.split(r"[\W_]+", value.lower()) if w}
    return bool(vw) and vw <= words


_TIME_WORDS = frozenset(
    "past next last previous coming upcoming recent latest current ago year years month months week weeks "
    "day days hour hours minute minutes today tomorrow yesterday".split()
)
#: an argument whose string value may be only numbers and time words (an id, a code, a date, a period)
_NUMERIC_TEXT_RE = re.compile(
    r"\b(?:ids?|identifiers?|codes?|zip|postal|numbers?|num|no|years?|dates?|times?|period|duration|range|frame|"
    r"timeframe|when|days?|weeks?|months?|hours?|version|phone|pin|isbn|quantity|amount|size|age|score|rating|level|"
    r"count|limit|digits?|value|seasons?|editions?|quarters?|terms?|semesters?|rounds?|episodes?|decades?|centur(?:y|ies)|"
    r"fiscal|grades?|class|levels?|sizes?|model|versions?)\b",
    re.I,
)


def without_content(value: Any) -> bool:
    """Whether a string value is only numbers and function or time words: ``"2020"``, ``"12"``, ``"past 5"``.

    Such a value for a name, place or topic is a number the model copied into the wrong
    argument ("Mississippi river in 2020" → ``location="2020"``; "12 pack … near San Jose" →
    ``loc="12"``). Non-strings, empty strings and strings with any other word: False.
    """
    if not isinstance(value, str):
        return False
    words = re.findall(r"[^\W_]+", value)
    # a capital letter alone names something ("product A"), it is no article
    return bool(words) and all(
        w.isdigit() or (w.lower() in _FUNCTION_WORDS or w.lower() in _TIME_WORDS) and not (len(w) == 1 and w.isupper()) for w in words
    )


def numeric_text_argument(name: str, schema: Any) -> bool:
    """Whether a string argument may hold only numbers and time words: its name or description
    speaks of an id, code, number, date, time or period (``zip_code``, ``"The year …"``,
    ``time_frame``), or it has a ``format``."""
    schema = schema if isinstance(schema, dict) else {}
    if "format" in schema:
        return True
    text = " ".join(_name_words(name)) + " " + str(schema.get("description") or "")
    return bool(_NUMERIC_TEXT_RE.search(text))


def _option_key(text: str) -> str:
    """A string compared as an option: plain lower case, words without plural s, single spaces."""
    return " ".join(_without_plural_s(w) for w in re.split(r"[\W_]+", _plain(text)) if w)


def other_option(value: Any, name: str, properties: Any) -> bool:
    """Whether a free string value is one of *another* argument's allowed values (its ``enum`` or
    the options its description lists): ``name="historical record"`` beside
    ``source`` ∈ {"scriptures", "historical records"}. That value belongs to the other
    argument, not to this one. Compared in plain lower case, plural and singular alike. Two
    arguments of a pair (names sharing a noun besides from/to, source/target, 1/2:
    ``from_unit``/``to_unit``) may share values.
    """
    if not isinstance(value, str) or not value.strip() or not isinstance(properties, dict):
        return False
    key = _option_key(value)
    if not key:
        return False
    own = _own_words(name) - _PAIR_WORDS
    for other, sub in properties.items():
        if other == name or not isinstance(sub, dict):
            continue
        if own & (_own_words(str(other)) - _PAIR_WORDS):
            continue  # from_unit / to_unit, color1 / color2: a pair may share a value
        options = sub.get("enum") if isinstance(sub.get("enum"), list) else described_options(sub) or []
        if any(isinstance(o, str) and _option_key(o) == key for o in options):
            return True
    return False


_PAIR_WORDS = frozenset("from to source target start end origin destination base quote input output old new first second".split())
_EMAIL_ARG_RE = re.compile(r"\be-?mail\s+address", re.I)


def not_an_email(value: Any, name: str, schema: Any) -> bool:
    """Whether a string value of an e-mail argument (a name ending in ``email``/``mail``, such as
    ``cc_email``, or described as an "email address"; not ``email_subject``) has no ``@``: ``cc="John Doe"`` is a name, not an address. ("The subject of the
    email" describes no address.)"""
    if not isinstance(value, str) or not isinstance(schema, dict):
        return False
    words = _identifier_words(str(name))
    named = bool(words) and (words[-1] in ("email", "mail") or {"email", "address"} <= set(words))
    return (named or bool(_EMAIL_ARG_RE.search(str(schema.get("description") or "")))) and "@" not in value


_OPENERS = frozenset(
    "find search get show give tell list fetch retrieve provide calculate compute check book order generate create "
    "plot predict look locate what who where when which how why can could would please i i'm we my".split()
)


def opens_question(value: Any, question: str) -> bool:
    """Whether a string value is the question's opening words (two or more, or the opening word
    alone) and the question opens with a request or a question word: ``"Search for famous"`` for
    "Search for famous contemporary sculptures in New York", ``"What's the ranking"``, ``"Fetch"``,
    or the whole question as ``location``. Such a copy is the request, not a value of it.
    Non-strings: False."""
    if not isinstance(value, str) or not isinstance(question, str):
        return False
    v, q = " ".join(value.split()).lower(), " ".join(question.split()).lower()
    words = re.findall(r"\w+", q)
    if not v or not q.startswith(v) or not words or words[0] not in _OPENERS:
        return False
    if len(value.split()) >= 2 and all(w[:1].isupper() for w in value.split()):
        return False  # a title: "When Harry Met Sally", "We Will Rock You"
    return len(v.split()) >= 2 or v.strip(" .,;:!?") == words[0]  # "Fetch" alone is the request too


_KIND_WORDS = frozenset({"type", "kind", "category", "sort", "class", "variety"})


def kind_modifier(value: Any, name: str) -> Any:
    """For a kind argument (``fuel_type``, ``energy_type``, ``cuisine_kind``), the modifier of the
    thing it is the kind of, when the value runs on past that noun: "gas-fueled car" → "gas",
    "renewable energy sources" → "renewable". The argument asks which kind of fuel or energy; its
    own noun and what follows it say nothing more. A value that ends with the noun ("Italian
    cuisine", "living room": a compound may be the kind's name), one without it as a word
    ("carbon fiber car" has no "car"), one that starts with it, other arguments, and anything but
    a string come back unchanged.
    """
    words = _name_words(name)
    if not isinstance(value, str) or not (words & _KIND_WORDS):
        return value
    heads = sorted({_singular(w) for w in words} - _KIND_WORDS - {"of"}, key=len, reverse=True)
    heads = [h for h in heads if len(h) >= 3]
    if not heads:
        return value
    alt = "|".join(map(re.escape, heads))
    # "renewable energy sources" (the noun, then more words) or "gas-fueled car" (a hyphened form of it, then more)
    m = re.match(
        r"\s*([^\W\d_]{2,}(?:\s+[^\W\d_]{2,})?)(?:\s+(?:" + alt + r")(?:s|es)?|-(?:" + alt + r")(?:ed|led|ing|ling|s))\s+\S", value, re.I
    )
    if not m or m.group(1).lower() in _FUNCTION_WORDS or any(h in m.group(1).lower() for h in heads):
        return value
    return m.group(1)


def misfit(value: Any, name: str, schema: Any, properties: Any, question: str = "") -> bool:
    """Whether a free string value is of the wrong kind for its argument: a number that belongs to
    another argument where this one is no id, code or period (:func:`number_of_another`), another
    argument's allowed value (:func:`other_option`), or no address for an e-mail argument
    (:func:`not_an_email`)."""
    return (
        (number_of_another(value, name, properties, question) and not numeric_text_argument(name, schema))
        or other_option(value, name, properties)
        or not_an_email(value, name, schema)
    )


def number_of_another(value: Any, name: str, properties: Any, question: str) -> bool:
    """Whether a string value that is only numbers and function or time words (:func:`without_content`)
    is a time phrase or a year another argument is for.

    A time phrase has a digit and a time word ("past 5", "the last 3 years"). A year (1000–2999)
    belongs to another argument when one of the function's other arguments is for years, dates or
    periods (:func:`numeric_text_argument`: ``year``) and the question writes no other year: then
    ``location="2020"`` for "turtles in Mississippi river in 2020" is that argument's number.
    "1984" for a book title beside no year argument, "2012" for a movie when the question also
    writes 2009 for its year, "10001" for a location, and "Next" for a store are not.
    """
    if not without_content(value):
        return False
    words = re.findall(r"[^\W_]+", value.lower())
    if any(w.isdigit() for w in words) and any(w in _TIME_WORDS for w in words):
        return True
    years = [w for w in words if w.isdigit() and len(w) == 4 and 1000 <= int(w) <= 2999]
    if len(words) != 1 or len(years) != 1 or not isinstance(properties, dict):
        return False
    written = {n for n in re.findall(r"(?<![\d.])\d{4}(?![\d.])", str(question)) if 1000 <= int(n) <= 2999}
    if written - {years[0]}:
        return False  # another year is written: this one may well be the value
    return any(other != name and numeric_text_argument(other, sub) for other, sub in properties.items())


#: the first of a numbered pair, and the names its partner may have ("species1" → "species2", "species_2")
_FIRST_OF_PAIR_RE = re.compile(r"^(.*?)_?1$")
_PARTNER_NAMES = ("{}2", "{}_2")


def _mention(value: str, question: str) -> int:
    """Where the question first writes ``value`` as whole words (case-insensitive, a plural "s" allowed); -1 if nowhere."""
    m = re.search(r"(?<!\w)" + re.escape(value.strip().lower()) + r"s?(?!\w)", question.lower())
    return m.start() if m else -1


def in_question_order(args: dict[str, Any], question: str, decoded: set[str] | None = None) -> dict[str, Any]:
    """Two string arguments of a numbered pair, swapped when the question writes them the other way round.

    Pairs are numbered siblings (``species1``/``species2``, ``team_1``/``team_2``), whose
    convention is the question's order ("how similar a human and a chimp are" → ``species1``
    "human"). Pairs with a direction (``from_``/``to_``, ``start``/``end``, ``origin``/
    ``destination``) are left alone: their order is in the words ("How many EUR is 100 USD?",
    "kilometers in 5 miles"), not in the question's order. Both values must be written in the
    question as whole words; nothing is swapped when the question puts "from"/"to"/"into"/"in"
    right before the values as they stand, nor when ``decoded`` (a set of the *names* of the
    arguments the model wrote, not stated ones) does not hold both. Other arguments are unchanged.
    """
    if not isinstance(args, dict) or not isinstance(question, str):
        return args
    out = dict(args)
    for a in list(out):
        m = _FIRST_OF_PAIR_RE.match(a)
        if not m:
            continue
        for partner in _PARTNER_NAMES:
            b = partner.format(m.group(1))
            if b not in out or (decoded is not None and not {a, b} <= decoded):
                continue
            va, vb = out[a], out[b]
            if not (isinstance(va, str) and isinstance(vb, str)) or not va.strip() or not vb.strip() or va.strip().lower() == vb.strip().lower():
                continue
            pa, pb = _mention(va, question), _mention(vb, question)
            if pa < 0 or pb < 0 or pa < pb:
                continue
            ql = question.lower()
            if re.search(r"\bfrom\s+(?:the\s+)?" + re.escape(va.strip().lower()), ql) or re.search(
                r"\b(?:to|into|in)\s+(?:the\s+)?" + re.escape(vb.strip().lower()), ql
            ):
                continue  # the prepositions say the values stand as they are
            out[a], out[b] = vb, va
    return out


def _as_type(value: float, schema: dict[str, Any]) -> float:
    """A number as the schema's type: a whole float becomes an int for an ``integer`` argument."""
    if _type_of(schema) == "integer" and float(value).is_integer():
        return int(value)
    return value


def named_numbers_swapped(args: dict[str, Any], properties: Any, question: str, decoded: set[str] | None = None) -> dict[str, Any]:
    """Two number arguments swapped when the question names each one's number the other way round.

    A small model often puts two similar numbers in each other's place ("100 million
    outstanding shares and total dividend payout of 50 million" → ``total_payout`` 100000000).
    When :func:`router.values.named_number` gives argument ``a`` the value the model wrote for
    ``b`` and ``b`` the value written for ``a`` (both different, and both named in ``decoded``, the
    set of names of the arguments the model wrote, when it is given), they are swapped.
    Only an exact exchange is undone, so a converted value (a percentage as a fraction) is never
    touched. Other arguments, and bad input, come back unchanged.
    """
    if not isinstance(args, dict) or not isinstance(properties, dict) or not isinstance(question, str):
        return args
    nums = [
        k for k, v in args.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and (decoded is None or k in decoded) and isinstance(properties.get(k), dict)
    ]
    if len(nums) < 2:
        return args
    named = {k: named_number(k, properties[k], question, properties) for k in nums}
    out = dict(args)
    for i, a in enumerate(nums):
        for b in nums[i + 1 :]:
            va, vb = out[a], out[b]
            if va != vb and named[a] is not None and named[b] is not None and float(named[a]) == float(vb) and float(named[b]) == float(va):
                out[a], out[b] = _as_type(vb, properties[a]), _as_type(va, properties[b])
    return out


def call_word_end(value: Any, words: set[str]) -> str | None:
    """``"first"`` or ``"last"`` when a string of two or more words starts or ends with a
    lower-case word of the call (:func:`call_words`, or the argument's own name); else None.

    Values without a space (an identifier such as ``your_dataset_name``) are one word.
    A small model that copies a clause instead of a value shows it this way: ``discovery=
    "scientist that first proposed the theory of evolution"`` for ``get_scientist_for_discovery``,
    ``recipe_type="recipe for brownies"``, ``county="Santa Clara county"``, ``season="2020-2021
    season"``. A capitalised word is part of a name ("Natural History Museum" for ``museum``)
    and does not count, and a value all in lower case does not end with a head noun to cut
    ("salt lake city" for ``city``, "kansas city", "fake news": the user wrote the name so). On the BFCL runs of 9f6279a, all 11 required strings of simple and
    multiple this flags were wrong (besides an expression, ``x**3``, which the caller leaves alone).
    """
    if not isinstance(value, str) or not words or not re.search(r"\s", value.strip()):
        return None  # one word, or an identifier ("your_dataset_name"): no clause
    ws = [w for w in re.split(r"[\W_]+", value) if w]
    while ws and ws[0].lower() in _FUNCTION_WORDS:
        ws = ws[1:]  # "the scientist that ..."
    if len(ws) < 2:
        return None
    if ws[-1].islower() and len(ws[-1]) >= 3 and _singular(ws[-1]) in words and not all(w.islower() for w in ws):
        return "last"  # "Santa Clara county"; not "salt lake city", where the user writes the whole name in lower case
    if ws[0].islower() and len(ws[0]) >= 3 and _singular(ws[0]) in words:
        return "first"
    return None


_TRAIL_SEP_RE = r"(?:\s+(?:in|at|from|on|near)\s+|\s+)"


def trailing_value_removed(value: Any, others: Sequence[Any], question: str) -> Any:
    """A string value that runs on into another argument's value, cut before it.

    A small model copying ``museum`` from "the Natural History Museum in London" writes
    ``"Natural History Museum in London"`` when ``city`` is ``"London"``, and ``location``
    ``"London 2022/08/16"`` when the date is a separate argument. When ``value`` ends with
    another argument's string value (3+ characters), or with a date as the question writes
    it (see :func:`router.values.question_dates`), joined by a space or "in"/"at"/"from"/
    "on"/"near", that tail is dropped ("New York, NY" keeps its state). So is another argument's
    number after "of"/"in"/"from"/"for"/"during"/"since" ("Criminal Law Amendment Act of 2013"
    beside ``amendment_year=2013``) when two or more words remain ("War of 1812" stays). A value
    that is nothing but the tail, and anything but a string, comes back unchanged.
    """
    if not isinstance(value, str) or not isinstance(question, str) or not isinstance(others, (list, tuple)):
        return value
    end = value.rstrip(" \t\n.,;:!?")
    for o in others:
        if isinstance(o, (int, float)) and not isinstance(o, bool) and _finite(o):
            num = number_text(o)
            if not end.endswith(num):
                continue  # cheap test first; the regex below only sees a short tail
            tail = re.search(r"\s(?:of|in|from|for|during|since)\s+" + re.escape(num) + r"$", end[-(len(num) + 12) :], re.I)
            if tail:
                head = end[: len(end) - (len(tail.group(0)))].strip()
                if len(re.findall(r"[^\W\d_]+", head)) >= 2:  # "War of 1812" and "Class of 1999" are names
                    return head
    tails = [o.strip() for o in others if isinstance(o, str) and len(o.strip()) >= 3]
    low = value.lower()
    for start, _date in question_dates(question):
        at = low.find(question[start : start + 6].lower(), 1)
        if at > 0 and question[start:].lower().startswith(low[at:].rstrip(" .,;:!?")):
            tails.append(value[at:].rstrip(" .,;:!?"))  # the date as the question writes it
    end = value.rstrip(" \t\n.,;:!?").lower()
    for tail in sorted(set(tails), key=len, reverse=True):
        if not end.endswith(tail.lower()) or len(end) <= len(tail):
            continue  # cheap test first: the regex below is only run on a real tail
        head = value.rstrip(" \t\n.,;:!?")[: len(end) - len(tail)]
        m = re.fullmatch(r"(.*?\S)" + _TRAIL_SEP_RE, head, re.I | re.S)
        if m and m.group(1).strip() and not re.search(r"\b(?:of|the|and|de|for|&)$", m.group(1).strip(), re.I):
            return m.group(1).strip()  # not "Museum of" + "London": that is one name
    return value


def _grounded_items(value: Any, schema: dict[str, Any], question: str) -> Any:
    """A list of free strings without the items the question does not write ("Dow Jones_2022"
    after "S&P 500", "Dow Jones"), when at least one item is written there (case-insensitive,
    ``_`` read as a space). Lists of enum values or non-strings, and lists none of whose items
    the question writes, come back unchanged."""
    items = schema.get("items") if isinstance(schema, dict) else None
    if not isinstance(value, list) or not value or not isinstance(items, dict) or "enum" in items or described_options(items):
        return value
    if not all(isinstance(v, str) for v in value) or not isinstance(question, str):
        return value
    q = question.lower().replace("_", " ")
    kept = _kept_items(value, [v for v in value if v.strip() and v.lower().replace("_", " ") in q], schema)
    return tidy_items(kept, question) if kept is not value else value


def tidy_items(value: Any, question: str) -> Any:
    """A list of strings copied from the question, tidied: each item once (case-insensitive), no item
    that only joins two others with "with" or "plus" ("pasta with cheese" beside "pasta" and
    "cheese"; "Bosnia and Herzegovina" stays), and in the order the question writes them ("cheese",
    "pasta" → "pasta", "cheese" for "pasta with cheese"; a list of more than 64 items keeps its order).

    Items the question does not write keep their place at the end; a list that is not all
    strings, or would lose its last item, comes back unchanged.
    """
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value) or not isinstance(question, str):
        return value
    seen: set[str] = set()
    once = [v for v in value if not (v.strip().lower() in seen or seen.add(v.strip().lower()))]
    low = {" ".join(v.lower().split()) for v in once}

    def joins_others(v: str) -> bool:  # "pasta with cheese" beside "pasta" and "cheese"
        m = re.fullmatch(r"(.+?)\s+(?:with|plus)\s+(.+)", " ".join(v.lower().split()))
        return bool(m) and m.group(1) in low and m.group(2) in low

    kept = [v for v in once if not joins_others(v)] or once
    q = question.lower().replace("_", " ")
    if len(kept) > 64:
        return kept  # a long list keeps its order (one search per item below)

    def first_mention(v: str) -> int:
        m = re.search(r"(?<!\w)" + re.escape(v.strip().lower().replace("_", " ")) + r"(?!\w)", q)
        return m.start() if m else len(q)

    return sorted(kept, key=first_mention)  # stable: unwritten items keep their order, last


def _without_other_values(value: Any, schema: dict[str, Any], others: Sequence[Any]) -> Any:
    """A list of free strings without the items that are another argument's whole value
    (``predictors`` without the ``target`` column); unchanged when nothing would be left."""
    items = schema.get("items") if isinstance(schema, dict) else None
    if not isinstance(value, list) or not isinstance(items, dict) or "enum" in items:
        return value
    taken = {o.strip().lower() for o in others if isinstance(o, str) and o.strip()}
    return _kept_items(value, [v for v in value if not (isinstance(v, str) and v.strip().lower() in taken)], schema)


def _kept_items(value: list[Any], kept: list[Any], schema: dict[str, Any]) -> list[Any]:
    """``kept`` (a filtered ``value``) when it is not empty and still has the schema's ``minItems``; else ``value``."""
    return kept if kept and len(kept) >= int(schema.get("minItems", 0) or 0) else value


def _name_stop(name: str, schema: dict[str, Any], values: Sequence[Any]) -> set[str]:
    """Words :func:`router.values.whole_name` must not take into an argument's value: the content words
    (3+ letters, not "of"/"the"/...) of its name and description, and every word of other arguments' values."""
    own = set(_name_words(name)) | set(re.findall(r"[a-z]{3,}", str(schema.get("description", "")).lower()))
    own -= {"the", "and", "for", "with", "from", "del", "von", "van"}
    return own | {w for v in values for w in re.findall(r"\w+", str(v).lower())}


def _shared_with(value: Any, args: dict[str, Any], spans: dict[str, tuple[int, int]], question: str) -> str | None:
    """The earlier required string argument (one of ``spans``) whose value is ``value`` too, when the
    question writes that value only once; else None."""
    if not isinstance(value, str) or not value.strip() or not isinstance(question, str):
        return None
    v = value.strip().lower()
    if question.lower().count(v) != 1:
        return None
    return next((k for k in spans if isinstance(args.get(k), str) and args[k].strip().lower() == v), None)


def _part_of_taken(value: Any, args: dict[str, Any], spans: dict[str, tuple[int, int]], question: str) -> bool:
    """Whether a string value is a proper part (on word boundaries) of an earlier required string
    argument's value ("United" after "Manchester United") that the question writes only once.
    Not when the earlier value runs on into it, after a preposition or a space ("London" after "Natural
    History Museum in London", "2020-2021" after "La Liga 2020-2021"): then the earlier value is the one
    cut, by :func:`trailing_value_removed`."""
    if not isinstance(value, str) or not value.strip() or not isinstance(question, str):
        return False
    v = value.strip().lower()
    if question.lower().count(v) != 1:
        return False
    for k in spans:
        other = args.get(k)
        if isinstance(other, str) and other.strip().lower() != v:
            if re.search(r"\s(?:(?:in|at|from|on|near)\s+)?" + re.escape(v) + r"$", other.lower()):
                continue  # "Natural History Museum in London", "La Liga 2020-2021": the earlier value runs on; it is cut at the end
            if re.search(r"(?<!\w)" + re.escape(v) + r"(?!\w)", other.lower()):
                return True
    return False


def _numbers_of(value: Any) -> list[float]:
    """Numbers an argument value takes from the question: a number, numbers written in a string, list items."""
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        try:
            return [float(value)]
        except OverflowError:  # an integer beyond float range is no number a question writes
            return []
    if isinstance(value, str):
        return [float(s) for s in number_spans(value)]
    if isinstance(value, list):
        return [n for v in value for n in _numbers_of(v)]
    return []


class ValueBudgetError(BackendError):
    """The token budget ran out before a value was complete; :attr:`text` is what was written."""

    def __init__(self, message: str, text: str = "") -> None:
        super().__init__(message)
        self.text = text


def _distinct_items(text: str) -> int:
    """Distinct top-level items of a (possibly unfinished) JSON array text, at least 1."""
    body = text.strip()
    body = body[1:] if body.startswith("[") else body
    items, depth, cur, in_str, esc = [], 0, "", False, False
    for ch in body:
        if in_str:
            cur += ch
            if ch == '"' and not esc:
                in_str = False
            esc = ch == "\\" and not esc
            continue
        if ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        if ch == "," and depth == 0:
            items.append(cur.strip())
            cur = ""
        else:
            cur += ch
    complete = {i for i in items if i}
    return max(1, len(complete))


#: a value starts with a character that can start a name, number or text (not "", ", ", ");")
VALUE_START = r"^[^\s,.;:)\]}].*$"


def _is_free_string(schema: dict[str, Any]) -> bool:
    return _type_of(schema) == "string" and not any(k in schema for k in ("enum", "const", "pattern", "minLength", "format"))


def field_schema(schema: dict[str, Any], required: bool) -> dict[str, Any]:
    """The schema one argument is decoded under: a required string must start like a value
    (:data:`VALUE_START`: not empty, not ``", "``), a required array gets ``minItems: 1`` (and
    such string items), a required free-form
    object (no ``properties``) ``minProperties: 1``.

    A required list argument is almost never meant to be empty, and a small model under
    a copy bias otherwise closes it at once (``[]``).
    """
    if not isinstance(schema, dict):
        return schema
    if required and _is_free_string(schema) and schema.get("maxLength", 1) != 0:
        return {**schema, "pattern": VALUE_START}  # a required name or text is never "" or ", "
    if required and _type_of(schema) == "array" and "minItems" not in schema and schema.get("maxItems", 1) != 0:
        items = schema.get("items")
        if isinstance(items, dict) and _is_free_string(items):
            return {**schema, "minItems": 1, "items": {**items, "pattern": VALUE_START}}  # ["John", "Alice"], not [""]
        return {**schema, "minItems": 1}
    if required and _type_of(schema) == "object" and "properties" not in schema and "minProperties" not in schema and schema.get("maxProperties", 1) != 0:
        return {**schema, "minProperties": 1}  # a required free-form map ({"math": 90, ...})
    return schema


def _pick_expression(value: Any, question: str) -> Any:
    """A function/expression argument: the question's expression the decoded value refers to, in Python syntax."""
    if not isinstance(value, str):
        return value
    exprs = math_expressions(question)
    if not exprs:
        return normalize_expression(value)
    v = normalize_expression(value).replace(" ", "")
    for e in exprs:
        if e.replace(" ", "") in v or (v and v in e.replace(" ", "")):
            return e
    return exprs[0]


def _kind_number(value: Any, question: str, schema: dict[str, Any], used: Sequence[float]) -> Any:
    """A number argument whose description names a unit takes a quantity of that kind.

    When the question writes quantities with a unit of the argument's kind
    (:func:`router.values.numbers_of_kind`: "50mH" for an inductance in henries) and the
    decoded value is none of them (the model copied "100µF", or the "5" of "5ft 10in"), the
    first of them no earlier argument took is used instead, converted to the argument's unit.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    kind = [float(k) for k in numbers_of_kind(question, schema)]
    if not kind or any(math.isclose(float(value), k) for k in kind):
        return value
    free = [k for k in kind if not any(math.isclose(k, float(u)) for u in used)]
    if not free:
        return value
    return int(free[0]) if isinstance(value, int) and free[0].is_integer() else free[0]


def _taken(value: Any, strings: Sequence[str], numbers: Sequence[float]) -> bool:
    """Whether a string value repeats what earlier arguments took: the same text, a part of one
    of them or one of them as a part, on word boundaries ("Ronaldo" after "Cristiano Ronaldo"),
    or a number another argument used ("2021" after ``year=2021``)."""
    if not isinstance(value, str) or not value.strip():
        return False
    v = value.strip().lower()
    for t in strings:
        t = t.strip().lower()
        if v == t or re.search(r"(?<!\w)" + re.escape(v) + r"(?!\w)", t) or re.search(r"(?<!\w)" + re.escape(t) + r"(?!\w)", v):
            return True
    try:
        return any(math.isclose(float(v.replace(",", "")), float(n)) for n in numbers)
    except ValueError:
        return False


def _num_text(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


_DEFAULT_RE = re.compile(r"default(?:s)?(?:\s+value)?(?:\s+is|\s+to|\s*:|\s*=)?\s*['\"]?(true|false)\b", re.I)


def documented_default(schema: dict[str, Any]) -> Any:
    """The default an argument's schema gives (``default``), or a boolean its description states ("Default is true")."""
    if "default" in schema:
        return schema["default"]
    m = _DEFAULT_RE.search(str(schema.get("description", "")))
    return None if m is None else m.group(1).lower() == "true"


def _value_text(value: Any) -> str:
    """JSON text of a value as the decoder writes it (whole numbers without ``.0``)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return number_text(value)
    return json.dumps(value, ensure_ascii=False)


def _finite(value: Any) -> bool:
    """False for a float (or a list holding one) that is inf or NaN."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


def _fits(value: Any, schema: dict[str, Any]) -> bool:
    """Whether a stated or repaired value keeps the schema's own limits (enum, length, pattern,
    minimum / maximum, items, uniqueness); a value that does not is not used (the decoded one,
    which the grammar kept inside them, stands)."""
    if not isinstance(schema, dict):
        return True
    if "enum" in schema and value not in schema["enum"]:
        return False
    try:
        if isinstance(value, str):
            if not int(schema.get("minLength", 0)) <= len(value) <= int(schema.get("maxLength", len(value))):
                return False
            pattern = schema.get("pattern")
            if pattern is None:
                return True
            try:
                return isinstance(pattern, str) and re.search(pattern, value) is not None
            except re.error:  # a pattern Python cannot read: the value is not trusted to match it
                return False
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            for key, ok in (("minimum", lambda b: value >= b), ("maximum", lambda b: value <= b),
                            ("exclusiveMinimum", lambda b: value > b), ("exclusiveMaximum", lambda b: value < b)):
                bound = schema.get(key)
                if isinstance(bound, (int, float)) and not isinstance(bound, bool) and not ok(bound):
                    return False
            return True
        if isinstance(value, list):
            if schema.get("uniqueItems") and len(set(map(str, value))) != len(value):
                return False
            return int(schema.get("minItems", 0)) <= len(value) <= int(schema.get("maxItems", len(value)))
    except (TypeError, ValueError, re.error):  # a malformed limit: no opinion
        return True
    return True


_PY_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,), "array": (list,), "object": (dict,), "null": (type(None),),
}


def _of_type(value: Any, schema: Any) -> bool:
    """Whether ``value`` has one of the JSON types ``schema`` names (any value when it names none)."""
    types = schema.get("type") if isinstance(schema, dict) else None
    if types is None:
        return True
    types = [types] if isinstance(types, str) else list(types) if isinstance(types, list) else []
    for t in types:
        py = _PY_TYPES.get(t)
        if py and isinstance(value, py) and not (isinstance(value, bool) and t in ("integer", "number")):
            return True
    return False


def stated_value(name: str, schema: dict[str, Any], question: str, others: dict[str, Any] | None = None) -> tuple[bool, Any]:
    """A value the question states outright for one argument, so that it is not decoded.

    * a boolean the question names or negates (:func:`router.values.flag_mentioned`);
    * the one allowed value a string argument's enum or described options
      (:func:`router.values.described_options`) has in the question, or every allowed
      value a list of such strings has there (:func:`router.values.named_options`);
      else the one quoted example of its description the question writes
      (:func:`router.values.described_examples`: "patent lawsuits", e.g. 'Patent' → ``"Patent"``);
    * the one unit of a unit argument's kind the question writes
      (:func:`router.values.stated_unit`: "a radius of 4 inches" → ``unit="inches"``);
    * the question's date for a date argument, in the described format
      (:func:`router.values.stated_date`: "January 1, 2021" → ``"01-01-2021"`` for "MM-DD-YYYY");
    * a number the question implies (:func:`router.values.implied_value`: "dropped" →
      an initial velocity of 0), or an hour on the 24-hour clock the description asks for
      (:func:`router.values.clock_hour`: "11 PM" → 23);
    * the coefficients of the question's polynomial, or its "between a and b" interval, for a
      list of numbers that asks for them (:func:`router.values.polynomial_coefficients`:
      "y=3x^2 + 2x - 4" → ``[3, 2, -4]``; :func:`router.values.written_interval`);
    * the one dictionary the question writes literally, for a free-form object argument
      (:func:`router.values.written_mapping`: "scores {'math':90, 'science':75}");
    * a count the question writes next to what the argument counts
      (:func:`router.values.counted_number`: "two tickets" → ``num_tickets`` 2), or
      compounding periods a year (:func:`router.values.compounding_periods`: "compounded
      quarterly" → 4), or a period the question names without a number
      (:func:`router.values.relative_period`: "the next week" → ``days`` 7).

    ``others`` (the function's other arguments, name → schema) keeps a count or a date
    that two arguments could claim from either.

    Returns:
        ``(True, value)``, or ``(False, None)`` when the question states nothing outright
        (or ``schema`` is not a dict).
    """
    if not isinstance(schema, dict):
        return False, None
    kind = _type_of(schema)
    if kind == "boolean":
        flag = flag_mentioned(name, question)
        return flag is not None, flag
    if kind == "string":
        named = named_option(described_options(schema) or schema.get("enum"), question, negative_name(name))
        if named is None and "enum" not in schema:
            named = stated_unit(name, schema, question) or stated_date(name, schema, question, others)
        if named is None and "enum" not in schema and not is_expression_argument(name, schema):
            named = named_option(described_examples(schema), question, negative_name(name))  # "patent lawsuits" → "Patent"
        return named is not None, named
    items = schema.get("items")
    if kind == "array" and isinstance(items, dict) and _type_of(items) == "string":
        names = named_options(described_options(items) or items.get("enum"), question, negative_name(name))
        return bool(names), names or None
    if kind == "array":
        written = polynomial_coefficients(name, schema, question)  # y=3x^2 + 2x - 4 → [3, 2, -4]
        if written is None:
            written = written_interval(name, schema, question)  # "between x = -1 and x = 2" → [-1, 2]
        if written is not None and _fits(written, schema):
            return True, written
        return False, None
    if kind == "object" and not isinstance(schema.get("properties"), dict):
        mapping = written_mapping(question)  # "scores {'math':90, 'science':75}" for a free-form map
        extra = schema.get("additionalProperties")
        if mapping is not None and extra is not False and all(_of_type(v, extra) for v in mapping.values()):
            return True, mapping
        return False, None
    if kind in ("integer", "number"):
        implied = implied_value(name, schema, question)
        if implied is None:
            implied = clock_hour(name, schema, question)  # "until 11 PM" → 23 on a 24-hour clock
        if implied is not None:
            return True, int(implied) if kind == "integer" else implied
        counted = counted_number(name, schema, question, others)
        if counted is None:
            counted = compounding_periods(name, schema, question)
        if counted is None and not question_numbers(question):
            counted = relative_period(name, schema, question)  # "the next week" → 7 days (no number written)
        if counted is not None:
            return True, int(counted) if kind == "integer" else float(counted)
    return False, None


class _Taken:
    """What earlier arguments took from the question: numbers, strings, number lists."""

    def __init__(self) -> None:
        self.numbers: list[float] = []
        self.strings: list[str] = []
        self.lists: list[list[float]] = []

    def add(self, value: Any, question: str, schema: dict[str, Any]) -> None:
        """Record a kept argument value (a converted number also takes the number as written, and a
        number signed by a compass letter, "112.0740 W" as -112.074, the unsigned one)."""
        numbers = _numbers_of(value)
        self.numbers.extend(numbers)
        self.numbers.extend(-n for n in numbers if n < 0 and not re.search(r"-\s*" + re.escape(number_text(-n)), question))
        if numbers and isinstance(value, (int, float)) and _finite(float(value)):
            written = written_numbers(question, schema).get(number_text(value))
            if written is not None:  # 0.0001 taken as 100µF: the written 100 is used too
                self.numbers.append(float(written))
        if isinstance(value, list):
            self.lists.append([float(v) for v in value if isinstance(v, (int, float)) and not isinstance(v, bool)])
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and len(item.strip()) >= 2:
                self.strings.append(item)  # a name in a list is taken too (teams=["Lakers", "Clippers"])


def _repaired(value: Any, name: str, schema: dict[str, Any], question: str, taken: _Taken, *, drop_taken_items: bool) -> Any:
    """A decoded value after the question-based repairs (step 3 of the module docstring): a number of the
    argument's unit kind and with the question's digits, a string without a lower-case leading
    article ("the neutron" → "neutron"), a list of strings without items the question does not
    write, a name the question writes whole
    (:func:`router.values.whole_name`, not taking words of earlier arguments' values), a US city with its state where the
    description asks for "City, State", a west or south coordinate made negative, a list cut back to the question's list
    it starts with (and, with ``drop_taken_items``, without items other arguments took), the
    question's expression for an expression argument."""
    if not isinstance(schema, dict):
        return value
    kind = _type_of(schema)
    if kind in ("integer", "number"):
        snapped = snap_number(_kind_number(value, question, schema, taken.numbers), field_numbers(question, schema))
        if snapped != value and not (kind == "integer" and not float(snapped).is_integer()):
            value = snapped
    if kind == "string" and "enum" not in schema and not described_options(schema):
        if isinstance(value, str) and re.match(r"(?:the|a|an)\s+\S", value):
            value = re.sub(r"^(?:the|a|an)\s+", "", value)  # "the neutron" → "neutron" ("The Weeknd" keeps its article)
        value = whole_name(value, question, _name_stop(name, schema, taken.strings))  # "League" → "Premier League"
        value = with_state(value, city_state_style(schema))  # "Los Angeles" → "Los Angeles, CA" where asked
    if kind in ("integer", "number", "array"):
        value = with_compass_sign(value, question)  # "112.0740 W" is -112.074
    if kind == "array":
        value = _grounded_items(value, schema, question)
        value = first_written_list(value, question, taken.lists)
        if drop_taken_items and isinstance(value, list) and taken.strings:
            value = [v for v in value if not _taken(v, taken.strings, [])]  # items another argument took go
    if is_expression_argument(name, schema):
        value = _pick_expression(value, question)
    return value


class ConstrainedArguments:
    """Decode an expert's arguments under its JSON schema with a copy bias toward the question.

    Args:
        backend: a local model with ``tokenizer``, ``encode`` and ``generate(..., logits_hook=)``
            (:class:`~llm_backends.transformers_backend.TransformersBackend`).
        copy_bonus: logit bonus for tokens that continue a span of the question; 0 turns
            the copy bias off.
        first_bonus: per-field decoding of a number: extra bonus for the first question
            number not yet used by an earlier argument.
        max_value_tokens: token budget of one argument (per-field) / ``4×`` it for a whole object.

    Raises (from :meth:`extract`):
        BackendError: the backend cannot constrain decoding, or the schema cannot be compiled.
    """

    def __init__(
        self, backend: LLMBackend, *, copy_bonus: float = 4.0, first_bonus: float = 2.0, max_value_tokens: int = 48
    ) -> None:
        if not supports_constrained(backend):
            raise BackendError(f"backend {getattr(backend, 'name', backend)!r} cannot constrain decoding")
        self.backend = backend
        self.copy_bonus = copy_bonus
        self.first_bonus = first_bonus
        self.max_value_tokens = max_value_tokens
        tok = backend.tokenizer  # type: ignore[attr-defined]
        ids = tok.convert_tokens_to_ids(['"', '",', '"}', ",", "}"])
        unk = tok.unk_token_id
        self._quote_ids = [i for i in ids[:3] if isinstance(i, int) and i >= 0 and i != unk]
        self._close_ids = [i for i in ids[3:] if isinstance(i, int) and i >= 0 and i != unk]
        arr = tok.convert_tokens_to_ids([",", "]", "],", "]}"])
        self._item_end_ids = [i for i in arr if isinstance(i, int) and i >= 0 and i != unk]

    def _bias(
        self, question: str, schema: dict[str, Any], used: Sequence[str] = (), used_strings: Sequence[str] = ()
    ) -> CopyBias | None:
        if self.copy_bonus <= 0 or not question:
            return None
        t = _type_of(schema)
        numbers = field_numbers(question, schema)  # 5% as 0.05, 50mH as 0.05 where the description asks for them
        if t in ("integer", "number"):
            return CopyBias(
                self.backend.encode, question, mode="number", bonus=self.copy_bonus, end_ids=self._close_ids,  # type: ignore[attr-defined]
                used_numbers=used, first_bonus=self.first_bonus, numbers=numbers,
            )
        if t == "string":
            return CopyBias(
                self.backend.encode, question, mode="string", bonus=self.copy_bonus, end_ids=self._quote_ids,  # type: ignore[attr-defined]
                used_strings=used_strings,
            )
        number_items = t == "array" and _type_of(schema.get("items") or {}) in ("integer", "number")
        return CopyBias(
            self.backend.encode, question, mode="json", bonus=self.copy_bonus,  # type: ignore[attr-defined]
            # a number item that is complete ends at "," or "]" ([200, 300], not [200300])
            end_ids=self._quote_ids + (self._item_end_ids if number_items else []),
            used_numbers=used, first_bonus=self.first_bonus, numbers=numbers, number_items=number_items,
        )

    def decode(
        self,
        prompt: str,
        schema: dict[str, Any],
        question: str = "",
        *,
        max_new_tokens: int | None = None,
        terminators: tuple[str, ...] = (),
        used_numbers: Sequence[str] = (),
        used_strings: Sequence[str] = (),
    ) -> tuple[Any, str]:
        """Decode one JSON value of ``schema`` after ``prompt`` (greedy, masked, copy-biased).

        Args:
            terminators: literal strings one of which must follow the value (see
                :class:`~llm_backends.constrained.JSONSchemaConstraint`); stripped from the text.
            used_numbers: numbers (as written) earlier arguments took; the copy bias prefers the others.
            used_strings: string values earlier arguments took; the copy bias does not propose them again.

        Returns:
            ``(value, text)``: the parsed value and the exact text written (it may start
            with a space), without the terminator.

        Raises:
            BackendError: the schema cannot be compiled, the model failed, or the token
                budget ran out before the value was complete.
        """
        hook = JSONSchemaConstraint(
            self.backend.tokenizer, schema, bias=self._bias(question, schema, used_numbers, used_strings),  # type: ignore[attr-defined]
            terminators=terminators,
        )
        budget = max_new_tokens or self.max_value_tokens
        text = self.backend.generate(prompt, max_new_tokens=budget, logits_hook=hook)  # type: ignore[call-arg]
        if not hook.accepted:
            raise ValueBudgetError(f"argument value not complete within {budget} tokens: {text[:80]!r}", text)
        if terminators:
            text = text.rstrip()
            for t in terminators:
                if text.endswith(t):
                    text = text[: -len(t)]
                    break
        try:
            return json.loads(text), text
        except ValueError as exc:  # cannot happen under the grammar; kept as a guard
            raise BackendError(f"constrained output is not JSON ({exc}): {text[:80]!r}") from exc

    def _decode_field(
        self, running: str, schema: dict[str, Any], question: str, used: list[float], used_strings: Sequence[str] = (),
        required: bool = True,
    ) -> tuple[Any, str]:
        """One argument's value. When the budget runs out (a repetition loop): an array is decoded
        again with ``maxItems`` set to the distinct items it had written (and, if an item string
        still never closes, with items of at most 32 characters); a free-form object
        again with flat scalar values and at most 8 keys, and as ``{}`` if that loops too; a
        required string again with at most 32 characters; a required untyped ("any") value
        again as a scalar (an optional one that runs away is left out by the caller).
        An array's budget grows with the numbers the question writes (one list may copy them all)."""
        nums = [_num_text(u) for u in used]
        budget = None
        if _type_of(schema) == "array":
            budget = max(2 * self.max_value_tokens, 8 * len(question_numbers(question)) + 16)
        try:
            return self.decode(
                running, schema, question, terminators=(",", "}"), used_numbers=nums, used_strings=used_strings, max_new_tokens=budget
            )
        except ValueBudgetError as exc:
            t = _type_of(schema)
            if t == "array" and "maxItems" not in schema:
                k = _distinct_items(exc.text)
                capped = {**schema, "maxItems": max(k, int(schema.get("minItems", 0)))}
                try:
                    return self.decode(running, capped, question, terminators=(",", "}"), used_numbers=nums, max_new_tokens=budget)
                except ValueBudgetError:
                    items = schema.get("items") if isinstance(schema.get("items"), dict) else {}
                    if _type_of(items) != "string" or "enum" in items or "maxLength" in items:
                        raise
                    # an item string that never closes ("Safeway in Palo Alto. 3 bottles of ... 100% of the or"): short items
                    short = {**capped, "maxItems": max(1, capped["maxItems"]), "items": {**items, "maxLength": 32}}
                    return self.decode(running, short, question, terminators=(",", "}"), used_numbers=nums, max_new_tokens=budget)
            if t == "object" and "properties" not in schema and not isinstance(schema.get("additionalProperties"), dict):
                # a free-form map that nests without end: flat scalar values, a few keys; else {}
                flat = {**schema, "additionalProperties": {"type": ["string", "number", "boolean"]}, "maxProperties": 8}
                try:
                    return self.decode(running, flat, question, terminators=(",", "}"), used_numbers=nums)
                except ValueBudgetError:
                    return self.decode(running, {"type": "object", "maxProperties": 0}, question, terminators=(",", "}"))
            if not required:
                raise
            if t == "string" and "enum" not in schema and "maxLength" not in schema:
                # a string that never closes ("the_id_of_the_case_to_get_the_..."): a short one
                return self.decode(running, {**schema, "maxLength": 32}, question, terminators=(",", "}"), used_numbers=nums)
            if t is None and not any(k in schema for k in ("enum", "anyOf", "oneOf", "const")):
                # "any" value that nests without end: a scalar (a short string copied from the question, a number)
                scalar = {"type": ["string", "number", "boolean"], "maxLength": 32}
                return self.decode(running, scalar, question, terminators=(",", "}"), used_numbers=nums)
            raise

    def _copied(
        self, running: str, field: dict[str, Any], question: str, taken: "_Taken", value: Any, text: str, name: str = "",
        also: Sequence[str] = (), words: set[str] = frozenset(), properties: Any = None,  # type: ignore[assignment]
    ) -> tuple[Any, str]:
        """A required string decoded again as a span of the question (:func:`router.values.span_pattern`:
        up to four words, not across a comma; not one another argument took, nor a word of the argument's name,
        nor a span that contains one of ``also``, that is only words of the argument's name or of ``words`` (the
        :func:`call_words`), or that starts or ends with such a word in lower case (:func:`call_word_end`), nor one
        that is of the wrong kind for the argument (:func:`misfit`, with the expert's ``properties``));
        ``(value, text)`` unchanged when the question has no span or the span cannot be decoded."""
        avoid = [re.compile(r"(?<!\w)" + re.escape(a.strip().lower()) + r"(?!\w)") for a in also if isinstance(a, str) and a.strip()]

        ends = set(words) | _own_words(name)

        def keep(span: str) -> bool:
            if call_word_end(span, ends) is not None or names_the_call(span, ends):
                return False  # "personality type" for type, "voxel" beside voxel_size ("Premier League" for league stays)
            if misfit(span, name, field, properties, question) or opens_question(span, question):
                return False  # "12" for a location, "historical record" beside source's "historical records"
            return not any(a.search(span.lower()) for a in avoid)

        decoded = self._span_decode(running, field, question, [*taken.strings, *_name_words(name)], taken.strings, taken.numbers, keep)
        return decoded if decoded is not None else (value, text)

    def _required_string(
        self, running: str, field: dict[str, Any], question: str, taken: "_Taken", value: Any, text: str, name: str, words: set[str],
        properties: Any = None,
    ) -> tuple[Any, str]:
        """A required free string as decoded, or its replacement when the model did not copy a value
        (step 2 of the module docstring): an :func:`invented` value, or one that
        :func:`names_the_call` (``type="restaurant"`` for ``find_restaurant``), is decoded again as
        another span of the question; a copied clause that starts with a lower-case word of the call
        ("scientist that first proposed the theory of evolution") too; one that ends with such a word
        loses it ("Santa Clara county" → "Santa Clara") when the rest is written in the question. A value of
        the wrong kind (:func:`misfit`: ``location="2020"``, ``name="historical record"`` beside
        ``source``'s "historical records") or the question's opening words (:func:`opens_question`:
        ``type="Search for famous"``) is decoded again as another span too.

        Returns:
            ``(value, text)``.
        """
        if invented(value, question, name):
            return self._copied(running, field, question, taken, value, text, name, words=words, properties=properties)
        if names_the_call(value, words) or misfit(value, name, field, properties, question) or opens_question(value, question):
            return self._copied(running, field, question, taken, value, text, name, also=[value], words=words, properties=properties)
        end = call_word_end(value, words | _own_words(name))
        if end == "first":
            return self._copied(running, field, question, taken, value, text, name, words=words, properties=properties)
        if end == "last":
            cut = re.sub(r"[\s_-]+\S+\s*$", "", value.strip())
            cut = re.sub(r"(?:\s+(?:" + "|".join(sorted(_FUNCTION_WORDS)) + r"))+$", "", cut, flags=re.I)
            if cut and cut.lower() in question.lower() and _fits(cut, field):
                return cut, " " + _value_text(cut)
        return value, text

    def _settle_shared(
        self, prompt: str, running: str, owner: str, owner_field: dict[str, Any], value: str, field: dict[str, Any],
        question: str, taken: "_Taken", args: dict[str, Any], spans: dict[str, tuple[int, int]], name: str = "",
        properties: Any = None,
    ) -> tuple[str, str]:
        """Two required strings decoded to the same span of the question: which one keeps it.

        The later argument is decoded again as another span of the question (option A), and the
        earlier one, ``owner``, in its own place (option B, the later one keeping ``value``).
        The model scores both argument texts (summed log-probability after ``prompt``) and
        the likelier one stands: a small model copies the most salient span into the first
        slot it meets ("cuisine": "Boston" before "location"), but reads the whole object
        better than it writes it. ``args``, ``spans`` and ``taken`` are updated for option B.

        Returns:
            ``(running, value)``: the argument text so far (ending with this argument's key)
            and this argument's value.
        """
        others = [x for x in taken.strings if x.strip().lower() != value.strip().lower()]
        def fits(arg: str, arg_field: dict[str, Any]) -> Any:
            return lambda span: not (misfit(span, arg, arg_field, properties, question) or opens_question(span, question))

        alt_here = self._span_value(running, field, question, [*taken.strings, *_name_words(name)], taken.numbers, fits(name, field))
        s, e = spans[owner]
        alt_owner = self._span_value(
            running[:s], owner_field, question, [*others, value, *_name_words(owner)], taken.numbers, fits(owner, owner_field)
        )
        if alt_here is None or alt_owner is None:
            return running, value
        keep_text = running[len(prompt):] + " " + json.dumps(alt_here, ensure_ascii=False)
        swapped = " " + json.dumps(alt_owner, ensure_ascii=False)
        swap_text = running[len(prompt) : s] + swapped + running[e:] + " " + json.dumps(value, ensure_ascii=False)
        try:
            keep_score, swap_score = self.backend.score(prompt, [keep_text, swap_text])  # type: ignore[attr-defined]
        except (BackendError, AttributeError):
            return running, value
        if keep_score >= swap_score:
            return running, alt_here
        old = args[owner]
        args[owner] = alt_owner
        taken.strings = [alt_owner if x is old else x for x in taken.strings]
        shift = len(swapped) - (e - s)
        for k, (a, b) in list(spans.items()):
            if a >= e:
                spans[k] = (a + shift, b + shift)
        spans[owner] = (s, s + len(swapped))
        return running[:s] + swapped + running[e:], value

    def _span_value(
        self, running: str, field: dict[str, Any], question: str, exclude: Sequence[str], numbers: Sequence[float], keep: Any = None
    ) -> str | None:
        """A string decoded after ``running`` as a span of the question not in ``exclude`` (and that ``keep``
        accepts, when given); None if there is none."""
        decoded = self._span_decode(running, field, question, exclude, exclude, numbers, keep)
        return decoded[0] if decoded is not None and isinstance(decoded[0], str) else None

    def _span_decode(
        self, running: str, field: dict[str, Any], question: str, exclude: Sequence[str], used_strings: Sequence[str],
        numbers: Sequence[float], keep: Any = None,
    ) -> tuple[Any, str] | None:
        """``(value, text)`` of ``field`` decoded after ``running`` under a pattern of the question's spans
        (:data:`_SPAN_LIMITS`, none in ``exclude``, only those ``keep`` accepts); None when there is no span or decoding fails."""
        pattern = span_pattern(question, exclude=list(exclude), keep=keep, **_SPAN_LIMITS)
        if pattern is None:
            return None
        try:
            return self.decode(
                running, {**field, "pattern": pattern}, question, terminators=(",", "}"),
                used_numbers=[_num_text(u) for u in numbers], used_strings=list(used_strings),
            )
        except BackendError:
            return None

    def extract(
        self,
        prompt: str,
        schema: dict[str, Any],
        question: str = "",
        *,
        per_field: bool = False,
        ground_optional: bool = False,
        function_name: str = "",
    ) -> tuple[dict[str, Any], str]:
        """Decode an argument object for ``schema`` after ``prompt`` (which should end with ``"Arguments:"``).

        Args:
            prompt: the argument prompt.
            schema: the expert's JSON schema (an object schema; ``$defs`` are kept for nested refs).
            question: the user's question (the copy source and the grounding check).
            per_field: decode argument by argument (see the module docstring).
            ground_optional: with ``per_field``, drop optional arguments not grounded in the question.
            function_name: the expert's name, for :func:`names_the_call` (``""``: other arguments' names only).

        Returns:
            ``(args, raw)``: the argument dict and the JSON text as decoded (per-field: of the kept arguments).

        Raises:
            BackendError: see :meth:`decode`.
        """
        if not per_field or not isinstance(schema.get("properties"), dict):
            value, text = self.decode(prompt, schema, question, max_new_tokens=4 * self.max_value_tokens)
            if not isinstance(value, dict):
                raise BackendError(f"arguments are not a JSON object: {text[:80]!r}")
            return value, text.strip()
        defs = {k: schema[k] for k in ("$defs", "definitions") if k in schema}
        required = set(schema.get("required") or [])
        running = prompt + " {"
        args: dict[str, Any] = {}
        taken = _Taken()
        first = True
        spans: dict[str, tuple[int, int]] = {}  # where each kept required string's value text lies in ``running``
        fields: dict[str, dict[str, Any]] = {}
        statements: dict[str, tuple[bool, Any]] = {}
        for name, sub in schema["properties"].items():
            sub_schema = {**sub, **defs} if isinstance(sub, dict) else {}
            stated, value = stated_value(name, sub_schema, question, schema["properties"])
            statements[name] = (stated and _fits(value, sub_schema), value)
            if statements[name][0] and isinstance(value, str) and len(value.strip()) >= 2:
                taken.strings.append(value)  # "ounce" for measure: not a span for an earlier argument (metal)
        # numbers stated for later arguments: an earlier one's copy bias prefers the others ("rolling a 7 with two dice")
        reserved = {
            k: float(v) for k, (ok, v) in statements.items()
            if ok and isinstance(v, (int, float)) and not isinstance(v, bool) and _finite(v) and number_text(v) in question_numbers(question)
        }
        for name, sub in schema["properties"].items():
            reserved.pop(name, None)
            sub_schema = {**sub, **defs} if isinstance(sub, dict) else {}
            kind = _type_of(sub_schema)
            stated, value = statements[name]
            if kind == "boolean" and not stated and name not in required and ground_optional:
                continue  # an optional flag the question does not speak of keeps its default
            words = call_words(name, schema["properties"], function_name)  # for names_the_call, here and when keeping
            prefix = ("" if first else ", ") + json.dumps(name) + ":"
            running += prefix
            first = False
            try:
                if stated:  # a flag, allowed value(s) or implied number the question states outright
                    text = " " + _value_text(value)
                else:
                    options = described_options(sub_schema)
                    field = {**sub_schema, "enum": options} if options else field_schema(sub_schema, name in required)
                    value, text = self._decode_field(
                        running, field, question, [*taken.numbers, *reserved.values()], taken.strings, name in required
                    )
                    if (
                        kind == "string" and name in required and "enum" not in field
                        and not is_expression_argument(name, sub_schema)
                    ):
                        value, text = self._required_string(
                            running, field, question, taken, value, text, name, words, schema["properties"]
                        )
                    fields[name] = field
                if stated:
                    repaired = value  # "compounded monthly" is 12, not the question's 12000 snapped to
                else:
                    repaired = _repaired(value, name, sub_schema, question, taken, drop_taken_items=name not in required and ground_optional)
                    if repaired != value and not _fits(repaired, sub_schema):
                        repaired = value  # a repair may not leave the schema (Portland, OR past maxLength)
                if not _finite(repaired):  # "1e400" is no JSON number
                    raise BackendError(f"argument {name!r}: {repaired!r} is not a finite number")
                owner = _shared_with(repaired, args, spans, question) if kind == "string" and name in required and not stated else None
                if owner is not None:
                    running, repaired = self._settle_shared(
                        prompt, running, owner, fields[owner], repaired, fields[name], question, taken, args, spans, name,
                        schema["properties"],
                    )
                    value, text = repaired, " " + _value_text(repaired)
                elif kind == "string" and name in required and not stated and _part_of_taken(repaired, args, spans, question):
                    # "United" after team="Manchester United": another span of the question
                    again, _text = self._copied(running, fields[name], question, taken, repaired, text, name, properties=schema["properties"])
                    if isinstance(again, str):
                        value = repaired = whole_name(again, question, _name_stop(name, sub_schema, taken.strings))
                        text = " " + _value_text(repaired)
            except BackendError:
                if name in required:
                    raise
                running = running[: len(running) - len(prefix)]
                first = running.endswith("{")
                continue
            start = len(running)
            running += " " + _value_text(repaired) if repaired != value else (text if text.startswith(" ") else " " + text)
            value = repaired
            if isinstance(value, bool) and not stated and not grounded_in(value, question, name=name):
                default = documented_default(sub_schema)
                if isinstance(default, bool):
                    value = default  # the question does not speak of it: the documented default
            keep = name in required or not ground_optional or (
                (stated or grounded_in(value, question, name=name, used_numbers=taken.numbers, number_words=False))
                and not unit_mismatch(name, sub_schema, value)
                and not (kind != "boolean" and not stated and _taken(value, taken.strings, taken.numbers))
                and not (isinstance(value, str) and not stated and _own_name(value, name))  # month="month"
                and not (
                    kind == "string" and not stated and "enum" not in fields.get(name, sub_schema)
                    and names_the_call(value, words)
                )  # unit="weight" beside weight
                and not (
                    kind == "string" and not stated and "enum" not in fields.get(name, sub_schema)
                    and misfit(value, name, sub_schema, schema["properties"], question)
                )  # cc="John Doe" for an e-mail address
            )
            if keep:
                args[name] = value
                taken.add(value, question, sub_schema)
                if kind == "string" and name in required and name in fields:
                    spans[name] = (start, len(running))
        for name in list(args):
            sub = schema["properties"].get(name)
            sub = sub if isinstance(sub, dict) else {}
            others = [v for k, v in args.items() if k != name]
            trimmed = _without_other_values(args[name], sub, others)
            trimmed = trailing_value_removed(trimmed, others, question)
            if _type_of(sub) == "string" and "enum" not in sub and not described_options(sub) and name in fields:
                trimmed = whole_name(trimmed, question, _name_stop(name, sub, others))  # "League" → "Premier League"
                trimmed = whole_token(trimmed, question, unit="unit" in _name_words(name))  # "AL2562" → "2022/AL2562"
                trimmed = kind_modifier(trimmed, name)  # fuel_type: "gas-fueled car" → "gas"
            elif _type_of(sub) is None and isinstance(trimmed, str) and name in fields:
                trimmed = whole_token(trimmed, question)  # an untyped ("any") value: "my_data.json" → "my_data"
            if trimmed != args[name] and _fits(trimmed, sub):
                args[name] = trimmed
        args = in_question_order(args, question, set(fields))
        args = named_numbers_swapped(args, schema["properties"], question, set(fields))
        return args, json.dumps(args, ensure_ascii=False)
