"""Built-in experts of mrkl, one module per expert family.

* :mod:`experts.calculator` — exact arithmetic and equation solving with sympy.
* :mod:`experts.database` — structured, read-only queries over a SQL database
  (the bundled Chinook music-store sample by default).
* :mod:`experts.neural` — neural submodels: Hugging Face pipelines from local folders, and
  retrieval over local documents (``docs``: this project's own knowledge base, ``data/kb``).
"""

from __future__ import annotations

__all__ = ["builtin_experts"]


def builtin_experts() -> list:
    """Fresh instances of the built-in experts: calculator, database, docs (and those other modules add)."""
    from experts.calculator import CalculatorExpert
    from experts.database import DatabaseExpert

    from experts.neural import docs_expert  # retrieval over data/kb; its index is built on first use

    return [CalculatorExpert(), DatabaseExpert(), docs_expert()]
