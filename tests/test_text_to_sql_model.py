"""SmolLM2-135M writes SQL for the sql expert (slow): argument extraction only, then the guarded run.

Greedy decoding is deterministic, so the SQL and the rows are asserted exactly. Routing
of the sql questions is measured over the whole question file by benchmarks/questions.py.
"""

from __future__ import annotations

import pytest

from experts.text_to_sql import SQLExpert
from router import LLMRouter

pytestmark = pytest.mark.slow


def test_model_writes_a_having_query_that_passes_the_guard(smollm2):
    expert = SQLExpert(sample_values=0)
    router = LLMRouter(smollm2, max_arg_tokens=96, arg_examples=3)
    args, raw, err = router.extract_args("Which albums have more than 30 tracks?", expert)
    assert err is None, raw
    assert "HAVING COUNT(*) > 30" in args["sql"], args
    res = expert.run(args)
    assert [r["Title"] for r in res.value] == ["Greatest Hits", "Minha Historia"]
    assert res.sources == ["database:Album", "database:Track"]
    expert.close()
