"""LangChain interop: tools ⇄ experts, MRKL as a Runnable, LangChainBackend (langchain-core's fake chat models)."""

from __future__ import annotations

import asyncio
from typing import Literal

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel, GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import StructuredTool, ToolException, tool
from pydantic import BaseModel, Field

from experts.calculator import CalculatorExpert
from llm_backends.base import LLMBackend
from llm_backends.errors import BackendError
from llm_backends.langchain_backend import LangChainBackend
from mrkl import MRKL, Answer, ExpertRegistry, expert
from mrkl.errors import ArgumentError, ExpertError, InvalidQuestionError
from mrkl.expert import ExpertResult
from mrkl.langchain import (
    LangChainToolExpert,
    MRKLRunnable,
    expert_name,
    expert_to_tool,
    model_from_json_schema,
    tool_to_expert,
)
from router.llm_router import LLMRouter
from tests.conftest import ScriptedBackend, card_scorer


@tool
def multiply(a: int, b: int) -> int:
    """Multiply two integers.

    Args:
        a: the first factor
        b: the second factor
    """
    return a * b


class ForecastInput(BaseModel):
    city: str = Field(description="city name")
    unit: Literal["celsius", "fahrenheit"] = "celsius"


@tool(args_schema=ForecastInput)
def forecast(city: str, unit: str = "celsius") -> str:
    """Tomorrow's forecast for a city (made up)."""
    return f"{city}: 21 degrees {unit}"


@tool
def always_fails(text: str) -> str:
    """A tool that always raises ToolException."""
    raise ToolException(f"cannot handle {text!r}")


def fake_chat(*replies: str) -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=iter(replies))


# ---------------------------------------------------------------- BaseTool -> Expert
def test_tool_becomes_expert_with_its_schema():
    e = tool_to_expert(multiply, examples=[("what is 6 times 7?", {"a": 6, "b": 7})])
    assert isinstance(e, LangChainToolExpert)
    assert e.name == "multiply"
    assert e.description.startswith("Multiply two integers")
    schema = e.args_schema()
    assert schema["required"] == ["a", "b"]
    assert schema["properties"]["a"]["type"] == "integer"
    result = e.run(e.parse_args({"a": 6, "b": 7}))
    assert result.value == 42 and result.text == "42"
    assert result.sources == ["langchain:multiply"]
    assert e.examples[0].args == {"a": 6, "b": 7}
    with pytest.raises(ArgumentError, match="b"):
        e.parse_args({"a": 6, "b": "seven"})


def test_pydantic_args_schema_is_carried_over_as_is():
    e = tool_to_expert(forecast)
    assert e.Args is ForecastInput
    assert e.run(e.parse_args({"city": "Oslo"})).text == "Oslo: 21 degrees celsius"
    with pytest.raises(ArgumentError, match="unit"):
        e.parse_args({"city": "Oslo", "unit": "kelvin"})


def test_json_schema_tool_becomes_expert():
    schema = {
        "type": "object",
        "properties": {
            "word": {"type": "string", "description": "a word"},
            "times": {"type": "integer", "default": 2},
            "sep": {"enum": ["-", "+"]},
        },
        "required": ["word"],
    }
    t = StructuredTool.from_function(
        func=lambda word, times=2, sep=None: (sep or "").join([word] * times),
        name="Repeat-Word",
        description="Repeat a word.",
        args_schema=schema,
    )
    e = tool_to_expert(t)
    assert e.name == "repeat_word"
    args = e.parse_args({"word": "ab", "sep": "-"})
    assert args.times == 2
    assert e.run(args).value == "ab-ab"
    assert e.run(e.parse_args({"word": "ab", "times": 3})).value == "ababab"  # sep left to the tool's default
    with pytest.raises(ArgumentError):
        e.parse_args({"word": "ab", "sep": "*"})
    with pytest.raises(ArgumentError):
        e.parse_args({"times": 3})
    with pytest.raises(ArgumentError, match="colour: Extra inputs"):
        e.parse_args({"word": "ab", "colour": "red"})


def test_model_from_json_schema_types_and_errors():
    M = model_from_json_schema(
        "M",
        {
            "type": "object",
            "properties": {"xs": {"type": "array", "items": {"type": "number"}}, "flag": {"type": ["boolean", "null"]}},
            "required": ["xs"],
        },
    )
    m = M.model_validate({"xs": [1, 2.5], "flag": None})
    assert m.xs == [1.0, 2.5] and m.flag is None
    with pytest.raises(ValueError, match="object"):
        model_from_json_schema("N", {"type": "string"})


def test_tool_exception_becomes_expert_error_and_bad_input_is_refused():
    e = tool_to_expert(always_fails)
    with pytest.raises(ExpertError, match="cannot handle 'x'"):
        e.run(e.parse_args({"text": "x"}))
    with pytest.raises(TypeError, match="BaseTool"):
        LangChainToolExpert(multiply.func)  # a plain function is not a tool
    assert expert_name("Get Weather!") == "get_weather"
    assert expert_name("2fa-code") == "tool_2fa_code"
    with pytest.raises(ValueError):
        expert_name("!!!")


def test_tool_expert_runs_async():
    e = tool_to_expert(multiply)
    assert asyncio.run(e.arun(e.parse_args({"a": 3, "b": 5}))).value == 15


# ---------------------------------------------------------------- Expert -> StructuredTool
def test_expert_becomes_structured_tool():
    calc = CalculatorExpert()
    t = expert_to_tool(calc)
    assert isinstance(t, StructuredTool)
    assert t.name == "calculator" and t.description == calc.description
    assert t.args_schema is calc.Args
    assert t.invoke({"expression": "57 + 3"}) == "60"
    msg = t.invoke({"type": "tool_call", "name": "calculator", "args": {"expression": "2**10"}, "id": "call-1"})
    assert isinstance(msg, ToolMessage)
    assert msg.content == "1024" and msg.tool_call_id == "call-1"
    assert isinstance(msg.artifact, ExpertResult) and msg.artifact.value == 1024
    # the expert's error goes back to the agent as the tool's output, not as an exception
    err = t.invoke({"type": "tool_call", "name": "calculator", "args": {"expression": "import os"}, "id": "call-2"})
    assert err.status == "error" and "import" in err.content.lower()
    assert asyncio.run(t.ainvoke({"expression": "6 * 7"})) == "42"


def test_function_expert_round_trips_through_langchain():
    @expert(examples=[("how long is the word banana?", {"word": "banana"})])
    def word_length(word: str) -> int:
        """Count the letters of a word."""
        return len(word)

    back = tool_to_expert(expert_to_tool(word_length))
    assert back.name == "word_length"
    assert back.run(back.parse_args({"word": "banana"})).text == "6"
    with pytest.raises(ArgumentError):
        back.parse_args({})


# ---------------------------------------------------------------- LangChainBackend
def test_langchain_backend_chat_generate_and_no_score():
    backend = LangChainBackend(fake_chat("Hello there.", "calculator\nmore text", "```json\n{\"a\": 1}\n```"))
    assert isinstance(backend, LLMBackend)
    assert backend.capabilities.score is False
    assert backend.name == "langchain:generic-fake-chat-model"
    assert backend.chat([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]) == "Hello there."
    assert backend.generate("Expert:", stop=("\n",)) == "calculator"
    assert backend.generate("Arguments:", stop=("\n",)) == '{"a": 1}'
    with pytest.raises(BackendError, match="cannot score"):
        backend.score("prompt", [" a", " b"])
    with pytest.raises(BackendError, match="no more replies"):
        backend.generate("anything")
    with pytest.raises(BackendError, match="unknown role"):
        backend.chat([{"role": "wizard", "content": "x"}])
    assert backend.count_tokens("12345678") == 2  # estimate: no hub download for GPT-2's tokenizer
    with pytest.raises(TypeError, match="BaseChatModel"):
        LangChainBackend(object())


def test_langchain_backend_sees_the_messages_it_is_given():
    seen = []

    class Recorder(GenericFakeChatModel):
        def _generate(self, messages, stop=None, run_manager=None, **kwargs):
            seen.append((messages, stop, kwargs))
            return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)

    backend = LangChainBackend(Recorder(messages=iter(["ok"])), max_tokens_kwarg="max_tokens")
    backend.chat([{"role": "system", "content": "S"}, {"role": "user", "content": "U"}, {"role": "assistant", "content": "A"}],
                 max_new_tokens=7, stop=("\n",))
    messages, stop, kwargs = seen[0]
    assert [type(m) for m in messages] == [SystemMessage, HumanMessage, AIMessage]
    assert [m.content for m in messages] == ["S", "U", "A"]
    assert stop == ["\n"] and kwargs.get("max_tokens") == 7


def test_router_without_score_generates_the_choice():
    backend = LangChainBackend(fake_chat("calculator", '{"expression": "57 + 3"}'))
    router = LLMRouter(backend)
    assert router.choice == "generate"
    registry = ExpertRegistry([CalculatorExpert()])
    decision = router.route("what is fifty seven plus three?", registry)
    assert decision.expert == "calculator" and decision.args == {"expression": "57 + 3"}
    assert decision.confidence == 1.0
    assert decision.reason == "the expert the model named (the model wrote 'calculator')"
    with pytest.raises(ValueError, match="cannot score"):
        LLMRouter(backend, choice="channel")


def test_router_without_score_maps_free_text_and_unknown_names():
    experts = [CalculatorExpert(), tool_to_expert(multiply)]
    router = LLMRouter(LangChainBackend(fake_chat("The `multiply` expert.", "weather_bot", "None.")))
    assert router.generated_choice("6 times 7", experts) == ("multiply", "The `multiply` expert.")
    assert router.generated_choice("rain tomorrow?", experts)[0] is None
    assert router.generated_choice("who wrote Hamlet?", experts)[0] == "none"


def test_mrkl_on_a_fake_chat_model_routes_to_a_langchain_tool():
    e = tool_to_expert(multiply, examples=[("what is 6 times 7?", {"a": 6, "b": 7})])
    chat = FakeListChatModel(responses=["multiply", '{"a": 12, "b": 34}', "none", "Shakespeare wrote it."])
    system = MRKL(experts=[e], backend=LangChainBackend(chat))
    answer = system.ask("what is twelve times thirty-four?")
    assert answer.expert == "multiply" and answer.value == 408 and answer.text == "408"
    assert answer.trace.steps[0].sources == ["langchain:multiply"]
    fallback = system.ask("who wrote Hamlet?")
    assert fallback.expert == "fallback_lm" and fallback.text == "Shakespeare wrote it."


# ---------------------------------------------------------------- MRKL as a Runnable
def _calc_system() -> MRKL:
    # the scripted router picks the calculator and writes "0"; the calculator's own parser of the
    # question goes first, so a right answer shows the question went through
    backend = ScriptedBackend(scorer=card_scorer("calculator"), generator=lambda prompt: 'expression": "0"}')
    return MRKL(experts=[CalculatorExpert()], backend=backend)


def test_mrkl_runnable_invoke_batch_stream():
    runnable = _calc_system().as_runnable()
    assert isinstance(runnable, MRKLRunnable)
    answer = runnable.invoke("what is fifty seven plus three?")
    assert isinstance(answer, Answer) and answer.text == "60" and answer.expert == "calculator"
    assert runnable.invoke({"question": "What is 12 times 34?"}).text == "408"
    assert runnable.invoke(HumanMessage(content="15% of 2,340")).text == "351"
    texts = [a.text for a in runnable.batch(["What is 6 factorial?", "2 + 2", "What is 2 to the power of 16?"])]
    assert texts == ["720", "4", "65536"]
    chunks = list(runnable.stream("What is 123 + 456 - 78?"))
    assert len(chunks) == 1 and chunks[0].text == "501"
    assert asyncio.run(runnable.ainvoke("How much is 1000 divided by 8?")).text == "125"
    assert [a.text for a in asyncio.run(runnable.abatch(["1 + 1", "3 * 3"]))] == ["2", "9"]


def test_mrkl_runnable_composes_in_a_chain():
    system = _calc_system()
    prompt = ChatPromptTemplate.from_messages([("system", "You are a calculator."), ("human", "What is {a} times {b}?")])
    chain = prompt | system.as_runnable(output="text") | RunnableLambda(lambda text: int(text) + 1)
    assert chain.invoke({"a": 12, "b": 34}) == 409
    as_dict = system.as_runnable(output="dict").invoke("2 + 3")
    assert as_dict["text"] == "5" and as_dict["trace"]["steps"][0]["expert"] == "calculator"


def test_mrkl_runnable_bad_input():
    runnable = _calc_system().as_runnable(output="text")
    with pytest.raises(InvalidQuestionError):
        runnable.invoke("   ")
    with pytest.raises(TypeError, match="question"):
        runnable.invoke(42)
    with pytest.raises(ValueError, match="'question'"):
        runnable.invoke({"text": "2 + 2"})
    out = runnable.batch(["2 + 2", ""], return_exceptions=True)
    assert out[0] == "4" and isinstance(out[1], InvalidQuestionError)
    with pytest.raises(ValueError, match="output"):
        MRKLRunnable(_calc_system(), output="xml")  # type: ignore[arg-type]
