"""Built-in experts of mrkl, one module per expert family.

* :mod:`experts.calculator` — exact arithmetic and equation solving with sympy.
* :mod:`experts.database` — structured, read-only queries over a SQL database
  (the bundled Chinook music-store sample by default).
* :mod:`experts.units` — unit conversion with pint (temperatures with offsets).
* :mod:`experts.dates` — date arithmetic and calendar questions.
* :mod:`experts.http_api` — declarative HTTP API experts; shipped: ``weather``
  (Open-Meteo), ``currency`` (Frankfurter, ECB rates), ``wikipedia`` (REST summary).
* :mod:`experts.text_to_sql` — natural-language-to-SQL: the language model writes one
  SELECT, :mod:`experts.sql_guard` checks it before it runs read-only.
* :mod:`experts.neural` — neural submodels: Hugging Face pipelines from local folders, and
  retrieval over local documents (``docs``: this project's own knowledge base, ``data/kb``).
"""

from __future__ import annotations

__all__ = ["builtin_experts"]


def builtin_experts() -> list:
    """Fresh instances of the built-in experts: calculator, database, sql, units, dates,
    then the shipped HTTP API experts (currency, weather, wikipedia), then docs (retrieval over ``data/kb``)."""
    from experts.calculator import CalculatorExpert
    from experts.database import DatabaseExpert
    from experts.dates import DatesExpert
    from experts.http_api import builtin_http_experts
    from experts.text_to_sql import SQLExpert
    from experts.units import UnitsExpert

    from experts.neural import docs_expert  # retrieval over data/kb; its index is built on first use

    return [
        CalculatorExpert(),
        DatabaseExpert(),
        SQLExpert(),
        UnitsExpert(),
        DatesExpert(),
        *builtin_http_experts(),
        docs_expert(),
    ]
