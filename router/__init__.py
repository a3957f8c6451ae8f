"""Routing and argument extraction: which expert answers a question, and with which arguments."""

from router.base import Router
from router.embedding import EmbeddingRouter, FitReport, LabelledQuestion
from router.llm_router import NONE, LLMRouter, parse_json_object

__all__ = ["Router", "LLMRouter", "EmbeddingRouter", "FitReport", "LabelledQuestion", "NONE", "parse_json_object"]
