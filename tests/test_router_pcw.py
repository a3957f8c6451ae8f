"""PCW example packing and the LLM router's PCW expert choice (fake PCW backend, fast)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from conftest import ScriptedBackend
from llm_backends.base import Capabilities
from llm_backends.errors import BackendError
from llm_backends.pcw import LabelScores
from mrkl import ExpertRegistry, expert
from router import NONE, LLMRouter
from router.pcw import PCWExpertChooser, format_example, pack_windows, windows_needed


def test_pack_windows_balances_token_lengths_and_keeps_order():
    lengths = [10, 3, 7, 8, 2, 5, 9, 1]
    windows = pack_windows(lengths, 3)
    assert sorted(i for w in windows for i in w) == list(range(8))
    totals = [sum(lengths[i] for i in w) for w in windows]
    assert max(totals) - min(totals) <= 1  # 45 tokens: 15 / 15 / 15 exactly reachable; LPT gets within 1
    assert all(w == sorted(w) for w in windows)
    assert pack_windows(lengths, 1) == [list(range(8))]


def test_pack_windows_caps_b_at_the_number_of_items_and_rejects_bad_input():
    assert pack_windows([4, 4], 5) == [[0], [1]]
    with pytest.raises(ValueError, match="at least 1"):
        pack_windows([1], 0)
    with pytest.raises(ValueError, match="no examples"):
        pack_windows([], 2)
    with pytest.raises(ValueError, match="non-negative"):
        pack_windows([1, -1], 2)


def test_windows_needed():
    assert windows_needed([500, 500, 100], 1024) == 2
    assert windows_needed([10], 1024) == 1
    assert windows_needed([], 1024) == 1
    with pytest.raises(ValueError):
        windows_needed([1], 0)


@dataclass
class _Ctx:
    texts: list[str]

    @property
    def num_windows(self):
        return len(self.texts)

    @property
    def lengths(self):
        return [1 + len(t.split()) for t in self.texts]


class FakePCWBackend(ScriptedBackend):
    """Counts words as tokens; the PCW classifier prefers ``preferred`` and records its calls."""

    capabilities = Capabilities(score=True, pcw=True)

    def __init__(self, preferred: str, **kw):
        super().__init__(**kw)
        self.preferred = preferred
        self.contexts: list[list[str]] = []
        self.classified: list[tuple[str, list[str], list[str] | None]] = []

    def pcw_context(self, windows):
        self.contexts.append(list(windows))
        return _Ctx(list(windows))

    def pcw_classify(self, ctx, task, labels, *, content_free=None, **kw):
        self.classified.append((task, list(labels), content_free))
        probs = [0.7 if lab.strip() == self.preferred else 0.3 / (len(labels) - 1) for lab in labels]
        return LabelScores(list(labels), [math.log(p) for p in probs], probs, bool(content_free), ctx.num_windows)


def _experts(n: int, per: int):
    made = []
    for i in range(n):
        examples = [(f"question {j} about topic{i} with several extra words", {"x": f"{i}-{j}"}) for j in range(per)]

        @expert(name=f"tool{i}", examples=examples)
        def tool(x: str) -> str:
            """A tool."""
            return x

        made.append(tool)
    return ExpertRegistry(made)


def test_router_uses_pcw_when_examples_exceed_one_window_and_reports_b():
    registry = _experts(6, 4)
    backend = FakePCWBackend("tool3", outputs=['x": "a"}', 'x": "b"}'])
    router = LLMRouter(backend, pcw_windows=3, pcw_window_tokens=100)
    d = router.route("question about topic3", registry)
    assert d.expert == "tool3" and d.pcw_windows == 3 and d.to_dict()["pcw_windows"] == 3
    assert d.confidence == pytest.approx(0.7)
    assert [kind for kind, _ in backend.calls] == ["generate"]  # no channel scoring ran
    (windows,) = backend.contexts
    assert len(windows) == 3
    # every routing example (6 experts × 4 + 8 none examples) lands in exactly one window
    assert sum(w.count("Question: ") for w in windows) == 6 * 4 + 8
    assert format_example("question 0 about topic5 with several extra words", "tool5") in "".join(windows)
    sizes = [backend.count_tokens(w) for w in windows]
    assert max(sizes) - min(sizes) <= 12  # balanced to within about one example
    task, labels, cf = backend.classified[0]
    assert task == "Question: question about topic3\nExpert:"
    assert labels == [f" tool{i}\n" for i in range(6)] + [f" {NONE}\n"]
    assert cf == ["Question: N/A\nExpert:"]
    # a second question re-uses the encoded windows
    router.route("question about topic3 again", registry)
    assert len(backend.contexts) == 1 and len(backend.classified) == 2


def test_router_keeps_the_ordinary_recipe_when_examples_fit_one_window():
    registry = _experts(2, 2)
    backend = FakePCWBackend("tool1", outputs=['x": "a"}'])
    backend.scorer = lambda p, c: -1.0 if p.startswith("Expert: tool1\n") else -6.0
    d = LLMRouter(backend, pcw_windows=3, pcw_window_tokens=10_000).route("topic1?", registry)
    assert d.expert == "tool1" and d.pcw_windows == 0
    assert backend.contexts == [] and any(kind == "score" for kind, _ in backend.calls)


def test_router_without_pcw_backend_falls_back_to_the_ordinary_recipe():
    registry = _experts(3, 4)
    backend = ScriptedBackend(lambda p, c: -1.0 if p.startswith("Expert: tool2\n") else -6.0, outputs=['x": "a"}'])
    d = LLMRouter(backend, pcw_windows=2, pcw_window_tokens=5).route("topic2?", registry)
    assert d.expert == "tool2" and d.pcw_windows == 0


def test_router_pcw_none_and_errors():
    registry = _experts(4, 4)
    backend = FakePCWBackend(NONE)
    d = LLMRouter(backend, pcw_windows=2, pcw_window_tokens=50).route("tell me a joke", registry)
    assert d.expert is None and d.pcw_windows == 2 and d.reason == "the router chose none"

    class Failing(FakePCWBackend):
        def pcw_context(self, windows):
            raise BackendError("PCW window 0 has 9000 tokens, more than the model's context of 8192; use more windows")

    d = LLMRouter(Failing("tool1"), pcw_windows=2, pcw_window_tokens=50).route("x", registry)
    assert d.expert is None and "expert choice failed" in d.error and "use more windows" in d.error
    with pytest.raises(ValueError):
        LLMRouter(backend, pcw_windows=0)
    with pytest.raises(ValueError):
        PCWExpertChooser(backend, 1)
    assert LLMRouter(backend, pcw_windows=1).pcw is None


def test_uncalibrated_pcw_choice_passes_no_content_free_input():
    registry = _experts(4, 4)
    backend = FakePCWBackend("tool0", outputs=['x": "a"}'])
    LLMRouter(backend, pcw_windows=2, pcw_window_tokens=50, pcw_calibrate=False).route("topic0", registry)
    assert backend.classified[0][2] is None


def test_cli_pcw_windows_option_is_validated_and_refuses_bad_questions_before_loading():
    from typer.testing import CliRunner

    from mrkl.cli import _LazyRouter, _system, app

    runner = CliRunner()
    result = runner.invoke(app, ["route", "x" * 50_000, "--model", "no-such-model", "--pcw-windows", "3"])
    assert result.exit_code == 2 and "limit is 4,000" in result.output
    result = runner.invoke(app, ["route", "hello", "--pcw-windows", "0"])
    assert result.exit_code == 2 and "pcw-windows" in result.output
    system = _system("no-such-model", 3)
    assert isinstance(system.router, _LazyRouter)  # nothing loaded yet
    backend = FakePCWBackend("tool1", outputs=['x": "a"}'])
    router = _LazyRouter(lambda: backend, pcw_windows=2, pcw_window_tokens=50)
    d = router.route("topic1", _experts(4, 4))
    assert d.expert == "tool1" and d.pcw_windows == 2
