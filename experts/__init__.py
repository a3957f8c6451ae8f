"""Built-in experts of mrkl, one module per expert family.

* :mod:`experts.calculator` — exact arithmetic and equation solving with sympy.
* :mod:`experts.database` — structured, read-only queries over a SQL database
  (the bundled Chinook music-store sample by default).
* :mod:`experts.text_to_sql` — natural-language-to-SQL: the language model writes one
  SELECT, :mod:`experts.sql_guard` checks it before it runs read-only.
"""

from __future__ import annotations

__all__ = ["builtin_experts"]


def builtin_experts() -> list:
    """Fresh instances of the built-in experts: ``[CalculatorExpert(), DatabaseExpert(), SQLExpert()]``."""
    from experts.calculator import CalculatorExpert
    from experts.database import DatabaseExpert
    from experts.text_to_sql import SQLExpert

    return [CalculatorExpert(), DatabaseExpert(), SQLExpert()]
