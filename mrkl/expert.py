"""The Expert API: discrete modules a MRKL router can call.

An expert (Karpas et al., 2022, "MRKL Systems", Sec. 2) is a discrete module —
symbolic (calculator, database, API) or neural — with

* a unique ``name`` and a one-line ``description`` the router reads,
* ``Args``: a pydantic model, the argument schema that argument extraction fills,
* ``examples``: routing examples (question → arguments) used as few-shot
  demonstrations by the router,
* ``run(args) -> ExpertResult`` and an optional ``arun``,
* an optional jinja2 ``answer_template`` that turns the result into the answer text.

``@expert`` builds an Expert from a typed Python function.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, get_type_hints

from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from mrkl.errors import ArgumentError, ExpertError

__all__ = [
    "Expert",
    "ExpertResult",
    "RoutingExample",
    "FunctionExpert",
    "expert",
    "render_template",
    "as_routing_examples",
    "validated_symbolic_args",
    "SYMBOLIC_RAW",
]

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_JINJA = ImmutableSandboxedEnvironment(autoescape=False, trim_blocks=True, lstrip_blocks=True)


def render_template(template: str, **variables: Any) -> str:
    """Render a jinja2 template in a sandbox (no attribute access to internals, no writes).

    Args:
        template: jinja2 source text.
        **variables: names visible in the template.

    Returns:
        The rendered text, stripped of surrounding whitespace.

    Raises:
        jinja2.TemplateError: the template is malformed or breaks the sandbox.
    """
    return _JINJA.from_string(template).render(**variables).strip()


@dataclass(frozen=True)
class RoutingExample:
    """One few-shot routing demonstration: a question and the arguments it should produce.

    Attributes:
        question: a question in plain English.
        args: the expert's arguments for it, as a JSON-compatible dict that validates
            against the expert's ``Args`` model.
    """

    question: str
    args: dict[str, Any]


def as_routing_examples(items: Any) -> list[RoutingExample]:
    """``RoutingExample`` objects from examples given as such or as ``(question, args)`` pairs."""
    return [e if isinstance(e, RoutingExample) else RoutingExample(question=e[0], args=dict(e[1])) for e in items or []]


@dataclass
class ExpertResult:
    """What an expert returns.

    Attributes:
        value: the machine-readable result (a number, a list of rows, a sympy object ...).
        text: the result written for a person, used as the answer when the expert
            has no ``answer_template``.
        sources: where the result came from (table names, URLs, document paths).
        data: extra structured detail for templates and traces (JSON-compatible).
    """

    value: Any
    text: str
    sources: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


class Expert:
    """Base class of every expert.

    Subclasses set the class attributes ``name``, ``description``, ``Args`` (a
    pydantic ``BaseModel`` subclass) and optionally ``examples`` and
    ``answer_template``, and implement :meth:`run`.

    Example::

        class Echo(Expert):
            name = "echo"
            description = "Repeat a text back."
            class Args(BaseModel):
                text: str
            def run(self, args):
                return ExpertResult(value=args.text, text=args.text)
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Args: ClassVar[type[BaseModel]]
    examples: ClassVar[list[RoutingExample]] = []
    answer_template: ClassVar[str | None] = None

    def __init__(self) -> None:
        self._check_definition()

    # -- definition checks -------------------------------------------------
    def _check_definition(self) -> None:
        if not _NAME_RE.match(self.name or ""):
            raise ValueError(
                f"expert name {self.name!r} must be lowercase letters, digits and underscores, "
                "starting with a letter (at most 64 characters)"
            )
        if not self.description.strip():
            raise ValueError(f"expert '{self.name}' needs a description")
        args_model = getattr(self, "Args", None)
        if not (isinstance(args_model, type) and issubclass(args_model, BaseModel)):
            raise TypeError(f"expert '{self.name}': Args must be a pydantic BaseModel subclass")

    # -- arguments -----------------------------------------------------------
    def args_schema(self) -> dict[str, Any]:
        """The JSON schema (draft 2020-12, as pydantic writes it) of the expert's arguments."""
        return self.Args.model_json_schema()

    def parse_args(self, raw: Any) -> BaseModel:
        """Validate raw arguments (a dict, usually decoded from model output).

        Args:
            raw: a mapping of argument names to values, or an ``Args`` instance.

        Returns:
            An instance of ``self.Args``.

        Raises:
            ArgumentError: ``raw`` is not a mapping, or does not validate; ``details``
                lists each problem as ``"field: message"``.
        """
        if isinstance(raw, self.Args):
            return raw
        if not isinstance(raw, dict):
            raise ArgumentError(self.name, [f"arguments must be a JSON object, got {type(raw).__name__}"])
        try:
            return self.Args.model_validate(raw)
        except ValidationError as exc:
            details = []
            for err in exc.errors():
                loc = ".".join(str(p) for p in err.get("loc", ())) or "(arguments)"
                details.append(f"{loc}: {err.get('msg', 'invalid')}")
            raise ArgumentError(self.name, details) from None

    def symbolic_args(self, question: str) -> dict[str, Any] | None:
        """Arguments from the expert's own symbolic parser of the whole question, if it has one.

        The orchestrator tries this before the router's arguments: a parser that
        understands the whole question is exact, where a small language model may
        not be (MRKL, Karpas et al., 2022, Sec. 4: extracting arguments is the hard
        part). The default has no parser and returns ``None``.

        Returns:
            A JSON-compatible dict for :meth:`parse_args`, or ``None`` when the
            question is not something this parser understands.
        """
        return None

    # -- running -------------------------------------------------------------
    def run(self, args: BaseModel) -> ExpertResult:
        """Run the expert on validated arguments.

        Raises:
            ExpertError: a problem the caller can fix (message shown to the user).
        """
        raise NotImplementedError

    async def arun(self, args: BaseModel) -> ExpertResult:
        """Async variant of :meth:`run`; by default runs :meth:`run` in a worker thread."""
        return await asyncio.to_thread(self.run, args)

    def render_answer(self, question: str, args: BaseModel, result: ExpertResult) -> str:
        """The answer text: ``answer_template`` rendered over question, args and result, else ``result.text``."""
        if not self.answer_template:
            return result.text
        return render_template(
            self.answer_template,
            question=question,
            args=args.model_dump(),
            result=result,
            value=result.value,
            text=result.text,
            data=result.data,
        )

    def describe(self) -> dict[str, Any]:
        """A JSON-compatible description: name, description, argument schema, examples."""
        return {
            "name": self.name,
            "description": self.description,
            "args_schema": self.args_schema(),
            "examples": [{"question": e.question, "args": e.args} for e in self.examples],
        }

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


# ---------------------------------------------------------------------------
# @expert: build an Expert from a typed function
# ---------------------------------------------------------------------------

_DOC_ARG_RE = re.compile(r"^\s{0,8}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.+)$")


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into (summary, {param: description})."""
    doc = inspect.cleandoc(doc or "")
    summary_lines: list[str] = []
    params: dict[str, str] = {}
    section = "summary"
    current: str | None = None
    for line in doc.splitlines():
        stripped = line.strip()
        header = stripped.rstrip(":").lower()
        if stripped.endswith(":") and header in {"args", "arguments", "parameters", "params"}:
            section, current = "args", None
            continue
        if stripped.endswith(":") and header in {"returns", "return", "raises", "yields", "examples", "example", "note", "notes"}:
            section, current = "other", None
            continue
        if section == "summary":
            if not stripped and summary_lines:
                section = "body"
            elif stripped:
                summary_lines.append(stripped)
        elif section == "args":
            m = _DOC_ARG_RE.match(line)
            if m and not line.startswith("        "):
                current = m.group(1)
                params[current] = m.group(2).strip()
            elif current and stripped:
                params[current] += " " + stripped
    return " ".join(summary_lines), params



#: ``raw_output`` of arguments that came from the expert's own symbolic parser
SYMBOLIC_RAW = "(expert's symbolic parser)"


def validated_symbolic_args(expert: Expert, question: str) -> dict[str, Any] | None:
    """The expert's own parse of ``question`` (:meth:`Expert.symbolic_args`), validated.

    Returns:
        The arguments as JSON-ready values, or None when the expert has no parser, the
        parser does not understand the question, or its output fails validation.
    """
    try:
        raw = expert.symbolic_args(question)
        return None if raw is None else expert.parse_args(raw).model_dump(mode="json")
    except Exception:  # noqa: BLE001 - a parser that fails is simply not used
        return None

class FunctionExpert(Expert):
    """An expert backed by a plain function; built by :func:`expert`."""

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        name: str,
        description: str,
        args_model: type[BaseModel],
        examples: list[RoutingExample],
        answer_template: str | None,
    ) -> None:
        # instance attributes shadow the ClassVar defaults of Expert
        self.name = name  # type: ignore[misc]
        self.description = description  # type: ignore[misc]
        self.Args = args_model  # type: ignore[misc]
        self.examples = examples  # type: ignore[misc]
        self.answer_template = answer_template  # type: ignore[misc]
        self.func = func
        self._is_async = inspect.iscoroutinefunction(func)
        super().__init__()

    def _wrap(self, out: Any) -> ExpertResult:
        if isinstance(out, ExpertResult):
            return out
        return ExpertResult(value=out, text=str(out))

    def run(self, args: BaseModel) -> ExpertResult:
        if self._is_async:
            return self._wrap(asyncio.run(self.func(**args.model_dump())))
        return self._wrap(self.func(**args.model_dump()))

    async def arun(self, args: BaseModel) -> ExpertResult:
        if self._is_async:
            return self._wrap(await self.func(**args.model_dump()))
        return await super().arun(args)

    def __call__(self, *a: Any, **kw: Any) -> Any:
        return self.func(*a, **kw)


def expert(
    func: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    examples: list[RoutingExample | tuple[str, dict[str, Any]]] | None = None,
    answer_template: str | None = None,
) -> Any:
    """Turn a typed function into an :class:`Expert`.

    The argument schema comes from the signature (type hints and defaults; a
    parameter without a default is required) and the parameter descriptions from
    a Google-style ``Args:`` section of the docstring; the expert description is
    the docstring's first paragraph. The function may return an
    :class:`ExpertResult` or any value (wrapped with ``text=str(value)``).

    Usable bare (``@expert``) or with options (``@expert(name=..., examples=[...])``).

    Args:
        func: the function (when used bare).
        name: expert name; default the function name.
        description: overrides the docstring summary.
        examples: routing examples, as :class:`RoutingExample` or ``(question, args)`` pairs.
        answer_template: jinja2 template for the answer text.

    Returns:
        A :class:`FunctionExpert` (still callable like the function).

    Raises:
        TypeError: a parameter has no type hint, or the function takes ``*args``/``**kwargs``.
        ValueError: no description could be found, or the name is not valid.
    """

    def build(f: Callable[..., Any]) -> FunctionExpert:
        summary, param_docs = _parse_docstring(f.__doc__ or "")
        hints = get_type_hints(f)
        fields: dict[str, Any] = {}
        for pname, param in inspect.signature(f).parameters.items():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise TypeError(f"@expert function {f.__name__} may not take *args or **kwargs")
            if pname not in hints:
                raise TypeError(f"@expert function {f.__name__}: parameter '{pname}' needs a type hint")
            default = ... if param.default is inspect.Parameter.empty else param.default
            fields[pname] = (hints[pname], Field(default, description=param_docs.get(pname)))
        expert_name = name or f.__name__
        model_name = "".join(p.capitalize() for p in expert_name.split("_")) + "Args"
        args_model = create_model(model_name, __config__=ConfigDict(extra="forbid"), **fields)
        exs = as_routing_examples(examples)
        return FunctionExpert(
            f,
            name=expert_name,
            description=(description or summary).strip(),
            args_model=args_model,
            examples=exs,
            answer_template=answer_template,
        )

    if func is not None:
        return build(func)
    return build
