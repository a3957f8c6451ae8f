"""LangChain interop (langchain-core only): tools ⇄ experts, and MRKL as a ``Runnable``.

* :func:`tool_to_expert` / :class:`LangChainToolExpert`: any ``BaseTool`` (``@tool``
  functions, ``StructuredTool``, community tools) becomes an :class:`~mrkl.expert.Expert`.
  Its argument schema is carried over: the tool's own pydantic ``args_schema`` class
  when it has one, else a pydantic model built from its JSON schema.
* :func:`expert_to_tool`: any Expert becomes a ``StructuredTool`` whose ``args_schema`` is
  the expert's ``Args``; an agent gets the answer text as the tool message content and
  the :class:`~mrkl.expert.ExpertResult` as its artifact.
* :class:`MRKLRunnable` (``MRKL.as_runnable()``): a MRKL system as a LangChain
  ``Runnable`` with ``invoke``, ``batch``, ``stream`` and their async variants, so it
  composes with ``|`` into chains.
* The language model side lives in :mod:`llm_backends.langchain_backend`
  (``LangChainBackend`` wraps any ``BaseChatModel``).

``langchain-core`` is imported by this module only; ``mrkl`` itself does not need it.
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterable, Literal, Optional, Sequence

from langchain_core.messages import BaseMessage
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.tools import BaseTool, StructuredTool, ToolException
from langchain_core.utils.pydantic import is_pydantic_v2_subclass
from pydantic import BaseModel, ConfigDict, Field, create_model

from llm_backends.langchain_backend import message_text
from mrkl.errors import ArgumentError, ExpertError
from mrkl.expert import Expert, ExpertResult, RoutingExample, as_routing_examples

__all__ = [
    "LangChainToolExpert",
    "tool_to_expert",
    "expert_to_tool",
    "experts_to_tools",
    "MRKLRunnable",
    "model_from_json_schema",
    "expert_name",
]

_JSON_TYPES: dict[str, Any] = {"string": str, "integer": int, "number": float, "boolean": bool, "null": type(None)}


def expert_name(tool_name: str) -> str:
    """A valid expert name for a tool name: lowercase, ``[a-z0-9_]``, starting with a letter, ≤ 64 chars.

    ``"Get-Weather"`` → ``"get_weather"``, ``"2fa code"`` → ``"tool_2fa_code"``.

    Raises:
        ValueError: nothing usable is left of the name.
    """
    name = re.sub(r"[^a-z0-9_]+", "_", tool_name.strip().lower()).strip("_")
    name = re.sub(r"_+", "_", name)
    if not name:
        raise ValueError(f"cannot make an expert name out of tool name {tool_name!r}")
    if not name[0].isalpha():
        name = "tool_" + name
    return name[:64]


def _json_type(schema: dict[str, Any]) -> Any:
    if "enum" in schema and schema["enum"]:
        return Literal[tuple(schema["enum"])]  # type: ignore[valid-type]
    if "anyOf" in schema or "oneOf" in schema:
        options = [_json_type(s) for s in schema.get("anyOf") or schema.get("oneOf")]
        out = options[0]
        for o in options[1:]:
            out = out | o
        return out
    kind = schema.get("type")
    if isinstance(kind, list):
        return _json_type({**schema, "anyOf": [{"type": k} for k in kind], "type": None})
    if kind == "array":
        return list[_json_type(schema.get("items") or {})]
    if kind == "object":
        return dict[str, Any]
    return _JSON_TYPES.get(kind, Any)


def model_from_json_schema(name: str, schema: dict[str, Any]) -> type[BaseModel]:
    """A pydantic model for a JSON schema of an object (the form LangChain tools use for dict schemas).

    Covers what tool schemas use: ``properties`` with ``type`` (string, integer, number,
    boolean, array with ``items``, object, null, or a list of them), ``enum``,
    ``anyOf``/``oneOf``, ``default``, ``description`` and ``required``. Anything else
    (``$ref``, nested object schemas) is accepted as ``Any`` / ``dict``. Unknown
    arguments are rejected.

    Args:
        name: the model's class name.
        schema: a JSON schema whose ``type`` is ``"object"``.

    Raises:
        ValueError: ``schema`` is not a JSON object schema.
    """
    if not isinstance(schema, dict) or schema.get("type", "object") != "object":
        raise ValueError(f"expected a JSON schema of an object, got {str(schema)[:200]}")
    required = set(schema.get("required", []))
    fields: dict[str, Any] = {}
    for pname, prop in (schema.get("properties") or {}).items():
        prop = prop if isinstance(prop, dict) else {}
        default = ... if pname in required else prop.get("default", None)
        typ = _json_type(prop)
        if pname not in required and "default" not in prop:
            typ = Optional[typ]
        fields[pname] = (typ, Field(default, description=prop.get("description")))
    return create_model(name, __config__=ConfigDict(extra="forbid"), **fields)


def _tool_args_model(tool: BaseTool) -> type[BaseModel]:
    """The pydantic v2 model of the arguments a model should fill for ``tool``."""
    call_schema = tool.tool_call_schema  # the args schema without injected arguments
    own = tool.args_schema
    if isinstance(own, type) and is_pydantic_v2_subclass(own):
        call_fields = set(call_schema.model_fields) if isinstance(call_schema, type) else set(call_schema.get("properties", {}))
        if set(own.model_fields) == call_fields:
            return own  # carried over as is
    if isinstance(call_schema, type) and is_pydantic_v2_subclass(call_schema):
        return call_schema
    if isinstance(call_schema, dict):
        return model_from_json_schema(f"{expert_name(tool.name).title().replace('_', '')}Args", call_schema)
    # a pydantic v1 model (legacy tools): go through its JSON schema
    return model_from_json_schema(
        f"{expert_name(tool.name).title().replace('_', '')}Args",
        {"type": "object", "properties": tool.args, "required": list(call_schema.schema().get("required", []))},
    )


def _result_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, BaseMessage):
        return message_text(value)
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)


class LangChainToolExpert(Expert):
    """An expert that runs a LangChain ``BaseTool``.

    Args:
        tool: any ``langchain_core.tools.BaseTool``.
        name: expert name; default the tool's name made valid (:func:`expert_name`).
        description: default the tool's description.
        examples: routing examples, as :class:`RoutingExample` or ``(question, args)`` pairs;
            the router needs a few to pick the expert reliably.
        answer_template: optional jinja2 answer template (see :class:`Expert`).

    ``run`` calls ``tool.invoke(args)``. The result's ``value`` is the tool's raw output
    (its artifact for ``response_format="content_and_artifact"``), ``text`` its content
    as text, ``sources`` ``["langchain:<tool name>"]``.

    Raises:
        TypeError: ``tool`` is not a ``BaseTool``.
        ValueError: the tool has no usable name or description.
    """

    def __init__(
        self,
        tool: BaseTool,
        *,
        name: str | None = None,
        description: str | None = None,
        examples: Iterable[RoutingExample | tuple[str, dict[str, Any]]] = (),
        answer_template: str | None = None,
    ) -> None:
        if not isinstance(tool, BaseTool):
            raise TypeError(f"expected a langchain_core BaseTool, got {type(tool).__name__}")
        self.tool = tool
        self.name = name or expert_name(tool.name)  # type: ignore[misc]
        self.description = (description or tool.description or "").strip()  # type: ignore[misc]
        self.Args = _tool_args_model(tool)  # type: ignore[misc]
        self.examples = as_routing_examples(examples)  # type: ignore[misc]
        self.answer_template = answer_template  # type: ignore[misc]
        super().__init__()

    def _tool_input(self, args: BaseModel) -> dict[str, Any]:
        # only the arguments given: the tool applies its own defaults (a JSON-schema tool may not accept None)
        return args.model_dump(exclude_unset=True)

    def _wrap(self, out: Any) -> ExpertResult:
        if self.tool.response_format == "content_and_artifact" and hasattr(out, "artifact"):
            value, text = out.artifact, message_text(out)
        else:
            value, text = out, _result_text(out)
        return ExpertResult(value=value, text=text, sources=[f"langchain:{self.tool.name}"])

    def _call(self, args: BaseModel) -> dict[str, Any]:
        tool_input = self._tool_input(args)
        if self.tool.response_format == "content_and_artifact":
            # only a tool call returns the artifact (as a ToolMessage)
            return {"type": "tool_call", "name": self.tool.name, "args": tool_input, "id": f"mrkl-{self.name}"}
        return tool_input

    def run(self, args: BaseModel) -> ExpertResult:
        """Run the tool. Raises ExpertError for a ``ToolException`` (message shown to the user)."""
        try:
            return self._wrap(self.tool.invoke(self._call(args)))
        except ToolException as exc:
            raise ExpertError(f"tool '{self.tool.name}' failed: {exc}") from exc

    async def arun(self, args: BaseModel) -> ExpertResult:
        """Async :meth:`run` through ``tool.ainvoke``."""
        try:
            return self._wrap(await self.tool.ainvoke(self._call(args)))
        except ToolException as exc:
            raise ExpertError(f"tool '{self.tool.name}' failed: {exc}") from exc


def tool_to_expert(tool: BaseTool, **kwargs: Any) -> LangChainToolExpert:
    """Any LangChain ``BaseTool`` as an Expert (see :class:`LangChainToolExpert` for ``kwargs``)."""
    return LangChainToolExpert(tool, **kwargs)


def expert_to_tool(
    expert: Expert,
    *,
    handle_tool_error: bool | str = True,
    return_direct: bool = False,
) -> StructuredTool:
    """An Expert as a LangChain ``StructuredTool``.

    The tool's name and description are the expert's, its ``args_schema`` is the
    expert's ``Args`` model, and it returns ``(answer text, ExpertResult)`` with
    ``response_format="content_and_artifact"``: an agent sees the text in the
    ``ToolMessage``, and the full result (value, sources) is its ``artifact``.
    ``tool.invoke({...})`` returns the text.

    Args:
        expert: any :class:`Expert`.
        handle_tool_error: an :class:`ExpertError` (or bad arguments the expert rejects)
            becomes a ``ToolException``; with True (default) its message is returned to
            the agent as the tool's output instead of raised (LangChain's convention).
        return_direct: LangChain's flag: an agent returns the tool output as its answer.
    """

    def _answer(result: ExpertResult, args: BaseModel) -> tuple[str, ExpertResult]:
        # a tool call has no question; the expert's answer template sees an empty one
        return expert.render_answer("", args, result), result

    def _parse(kwargs: dict[str, Any]) -> BaseModel:
        try:
            return expert.parse_args(
                {k: (v.model_dump() if isinstance(v, BaseModel) else v) for k, v in kwargs.items()}
            )
        except ArgumentError as exc:
            raise ToolException(str(exc)) from exc

    def _run(**kwargs: Any) -> tuple[str, ExpertResult]:
        args = _parse(kwargs)
        try:
            result = expert.run(args)
        except ExpertError as exc:
            raise ToolException(str(exc)) from exc
        return _answer(result, args)

    async def _arun(**kwargs: Any) -> tuple[str, ExpertResult]:
        args = _parse(kwargs)
        try:
            result = await expert.arun(args)
        except ExpertError as exc:
            raise ToolException(str(exc)) from exc
        return _answer(result, args)

    return StructuredTool.from_function(
        func=_run,
        coroutine=_arun,
        name=expert.name,
        description=expert.description,
        args_schema=expert.Args,
        infer_schema=False,
        response_format="content_and_artifact",
        handle_tool_error=handle_tool_error,
        return_direct=return_direct,
    )


def experts_to_tools(experts: Iterable[Expert], **kwargs: Any) -> list[StructuredTool]:
    """:func:`expert_to_tool` for each expert (e.g. ``experts_to_tools(system.registry)``)."""
    return [expert_to_tool(e, **kwargs) for e in experts]


def _question_of(input: Any) -> str:
    """The question text of a Runnable input: a string, a dict, a message, a prompt value or a message list."""
    if isinstance(input, str):
        return input
    if isinstance(input, dict):
        for key in ("question", "input", "query"):
            if key in input:
                return _question_of(input[key])
        raise ValueError(f"a dict input needs a 'question' (or 'input' / 'query') key; got keys {sorted(input)}")
    if isinstance(input, PromptValue):
        return _question_of(input.to_messages())
    if isinstance(input, BaseMessage):
        return message_text(input)
    if isinstance(input, Sequence) and input and all(isinstance(m, BaseMessage) for m in input):
        human = [m for m in input if m.type == "human"]
        return message_text((human or list(input))[-1])
    raise TypeError(
        f"MRKL takes a question as a string, a dict with 'question', a message or a prompt value; got {type(input).__name__}"
    )


class MRKLRunnable(Runnable[Any, Any]):
    """A MRKL system as a LangChain ``Runnable`` (``invoke``, ``batch``, ``stream``, async variants).

    Args:
        system: a :class:`mrkl.MRKL`.
        output: what ``invoke`` returns: ``"answer"`` (default; the :class:`mrkl.Answer` with its
            trace), ``"text"`` (the answer text, for chains ending in a string) or ``"dict"``
            (``Answer.to_dict()``, JSON-compatible).

    Input: a question string, a dict with ``"question"`` (or ``"input"`` / ``"query"``), a
    message, a list of messages (the last human message is the question) or a prompt value.
    ``stream`` yields one chunk, the whole answer: MRKL answers with an expert's result, not
    token by token. Errors are those of :meth:`mrkl.MRKL.ask` (``InvalidQuestionError`` for
    an empty question, ``BackendError`` when the model cannot be loaded); ``batch(...,
    return_exceptions=True)`` collects them per input as LangChain does.
    """

    def __init__(self, system: Any, output: Literal["answer", "text", "dict"] = "answer") -> None:
        if output not in ("answer", "text", "dict"):
            raise ValueError(f"output must be 'answer', 'text' or 'dict', got {output!r}")
        self.system = system
        self.output = output
        self.name = "MRKL"

    @property
    def InputType(self) -> Any:  # noqa: N802 - LangChain's name
        return str

    @property
    def OutputType(self) -> Any:  # noqa: N802 - LangChain's name
        from mrkl.trace import Answer

        return {"answer": Answer, "text": str, "dict": dict}[self.output]

    def _format(self, answer: Any) -> Any:
        if self.output == "text":
            return answer.text
        if self.output == "dict":
            return answer.to_dict()
        return answer

    def _ask(self, input: Any) -> Any:
        return self._format(self.system.ask(_question_of(input)))

    async def _aask(self, input: Any) -> Any:
        return self._format(await self.system.aask(_question_of(input)))

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Answer one question (see the class docstring for input and output forms)."""
        return self._call_with_config(self._ask, input, config, run_type="chain")

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Async :meth:`invoke`."""
        return await self._acall_with_config(self._aask, input, config, run_type="chain")

    def __repr__(self) -> str:
        return f"MRKLRunnable(experts={self.system.registry.names()}, output={self.output!r})"
