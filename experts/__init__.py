"""Built-in experts of mrkl, one module per expert family.

* :mod:`experts.calculator` — exact arithmetic and equation solving with sympy.
* :mod:`experts.database` — structured, read-only queries over a SQL database
  (the bundled Chinook music-store sample by default).
* :mod:`experts.units` — unit conversion with pint (temperatures with offsets).
* :mod:`experts.dates` — date arithmetic and calendar questions.
* :mod:`experts.http_api` — declarative HTTP API experts; shipped: ``weather``
  (Open-Meteo), ``currency`` (Frankfurter, ECB rates), ``wikipedia`` (REST summary).
"""

from __future__ import annotations

__all__ = ["builtin_experts"]


def builtin_experts() -> list:
    """Fresh instances of the built-in experts: calculator, database, units, dates,
    then the shipped HTTP API experts (currency, weather, wikipedia)."""
    from experts.calculator import CalculatorExpert
    from experts.database import DatabaseExpert
    from experts.dates import DatesExpert
    from experts.http_api import builtin_http_experts
    from experts.units import UnitsExpert

    return [CalculatorExpert(), DatabaseExpert(), UnitsExpert(), DatesExpert(), *builtin_http_experts()]
