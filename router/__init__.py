"""Routing and argument extraction: which expert answers a question, and with which arguments."""

from router.base import Router
from router.embedding import EmbeddingRouter, FitReport, LabelledQuestion
from router.llm_router import NONE, LLMRouter, parse_json_object
from router.two_stage import TwoStageRouter

__all__ = ["Router", "LLMRouter", "EmbeddingRouter", "FitReport", "LabelledQuestion", "TwoStageRouter", "NONE",
           "parse_json_object"]
