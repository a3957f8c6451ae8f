"""Question files with expected answers, and the rule that checks an answer.

Format of a question file (``examples/questions.txt``): one question a line,
tab-separated ``question <TAB> expected expert (or "none") <TAB> expected parts``,
the parts ``;``-separated; lines starting with ``#`` and blank lines are skipped.
An answer is right when every part appears in it: a number by value (some
number written in the answer equals it, to a relative 1e-6), anything else as a
case-insensitive substring. No parts: only the routing is checked.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["QuestionCase", "load_questions", "answer_matches", "numbers_in"]

_NUMBER_RE = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?")


@dataclass(frozen=True)
class QuestionCase:
    """One line of a question file.

    Attributes:
        question: the question text.
        expert: the expert that should answer it, or ``"none"`` for the fallback.
        expected: answer parts that must all appear in a right answer (may be empty).
        line: 1-based line number in the file.
    """

    question: str
    expert: str
    expected: tuple[str, ...] = field(default_factory=tuple)
    line: int = 0


def load_questions(path: str | Path) -> list[QuestionCase]:
    """Read a question file.

    Raises:
        ValueError: a line does not have 2 or 3 tab-separated fields (the message names the line).
        OSError: the file cannot be read.
    """
    cases: list[QuestionCase] = []
    for n, raw in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        parts = raw.split("\t")
        if len(parts) not in (2, 3) or not parts[0].strip() or not parts[1].strip():
            raise ValueError(f"{path}:{n}: expected 'question<TAB>expert<TAB>answer parts', got {raw[:80]!r}")
        expected = tuple(p.strip() for p in parts[2].split(";") if p.strip()) if len(parts) == 3 else ()
        cases.append(QuestionCase(parts[0].strip(), parts[1].strip(), expected, n))
    return cases


def numbers_in(text: str) -> list[float]:
    """Every number written in ``text`` (thousands separators allowed), as floats."""
    out = []
    for m in _NUMBER_RE.finditer(text):
        try:
            out.append(float(m.group().replace(",", "")))
        except ValueError:
            continue
    return out


def _is_number(s: str) -> bool:
    try:
        float(s.replace(",", ""))
    except ValueError:
        return False
    return True


def answer_matches(answer: str, expected: tuple[str, ...] | list[str]) -> bool:
    """True when every expected part appears in ``answer`` (see module docstring); True if none expected."""
    found = numbers_in(answer)
    low = answer.lower()
    for part in expected:
        if _is_number(part):
            want = float(part.replace(",", ""))
            if not any(math.isclose(v, want, rel_tol=1e-6, abs_tol=1e-9) for v in found):
                return False
        elif part.lower() not in low:
            return False
    return True
