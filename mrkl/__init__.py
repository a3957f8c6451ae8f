"""mrkl: a MRKL system (Modular Reasoning, Knowledge and Language; Karpas et al., 2022).

A router language model picks discrete experts (calculator, database, APIs,
neural submodels), extracts their arguments, runs them and composes the answer
with a trace of what was used.

    >>> from mrkl import MRKL
    >>> MRKL().ask("what is fifty seven plus three?").text   # doctest: +SKIP
    '60'
"""

from mrkl.errors import (
    ArgumentError,
    BackendError,
    ExpertError,
    InvalidQuestionError,
    ModelNotFoundError,
    MRKLError,
    RegistryError,
    RoutingError,
)
from mrkl.expert import Expert, ExpertResult, FunctionExpert, RoutingExample, expert
from mrkl.registry import ENTRY_POINT_GROUP, ExpertRegistry
from mrkl.system import FALLBACK, MRKL, default_registry
from mrkl.trace import Answer, RouteDecision, Step, Trace

__version__ = "0.1.0"

__all__ = [
    "MRKL",
    "FALLBACK",
    "default_registry",
    "Expert",
    "ExpertResult",
    "FunctionExpert",
    "RoutingExample",
    "expert",
    "ExpertRegistry",
    "ENTRY_POINT_GROUP",
    "Answer",
    "RouteDecision",
    "Step",
    "Trace",
    "MRKLError",
    "ArgumentError",
    "BackendError",
    "ExpertError",
    "InvalidQuestionError",
    "ModelNotFoundError",
    "RegistryError",
    "RoutingError",
]
