"""Berkeley Function Calling Leaderboard (BFCL) evaluation: mrkl against two baselines.

BFCL (Yan et al., 2024, "Berkeley Function Calling Leaderboard", gorilla.cs.berkeley.edu)
gives, for every question, the functions available and the acceptable calls. This module

* reads BFCL's JSON Lines files (``BFCL_v4_<category>.json`` and
  ``possible_answer/BFCL_v4_<category>.json``) — see :func:`load_cases`;
* turns each question's functions into :class:`BFCLExpert` objects on the fly
  (BFCL types ``dict``, ``integer``, ``float``, ``string``, ``array``, ``tuple``,
  ``boolean``, ``any`` → JSON schema → pydantic; :func:`to_json_schema`);
* scores a call with BFCL's AST rules (:func:`ast_match`);
* runs three systems on the same model in the same process (:func:`evaluate`):

  ``mrkl``
      the embedding router (all-MiniLM-L6-v2, "none" as a calibrated threshold, fitted on
      calibration questions disjoint from the evaluated ones) chooses the function or
      none; the LLM router decodes the arguments argument by argument under each
      argument's JSON schema, with a copy bias toward the question, and keeps an optional
      argument only when its value is grounded in the question.
  ``naive``
      the peer recipe: every schema in a system prompt, free generation, ``json.loads``,
      no repair.
  ``constrained``
      one plain prompt with the function's description, constrained decoding of the
      whole argument object, the function chosen by scoring each name under the model;
      no shortlist, no calibration, no care for optional arguments, no none option.
"""

from __future__ import annotations

import json
import keyword
import math
import re
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Sequence

from pydantic import BaseModel, ConfigDict, Field, create_model

from mrkl.errors import ExpertError, MRKLError
from mrkl.expert import Expert, ExpertResult

__all__ = [
    "CATEGORIES",
    "BFCLSchemaError",
    "BFCLCase",
    "BFCLExpert",
    "to_json_schema",
    "load_cases",
    "ast_match",
    "Prediction",
    "evaluate",
    "format_table",
    "choice_right",
    "mixed_functions",
]

CATEGORIES = {"simple": "simple_python", "multiple": "multiple", "irrelevance": "irrelevance"}
SYSTEMS = ("mrkl", "naive", "constrained")


class BFCLSchemaError(MRKLError, ValueError):
    """A BFCL function schema that cannot be turned into an expert (the message names the path)."""


# ----------------------------------------------------------------------------- schemas
_SCALARS = {"integer": "integer", "int": "integer", "float": "number", "number": "number",
            "string": "string", "str": "string", "boolean": "boolean", "bool": "boolean"}


def to_json_schema(node: Any, *, path: str = "parameters", defs: dict[str, Any] | None = None, _seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """Convert a BFCL parameter schema to JSON schema.

    BFCL → JSON schema: ``dict`` → ``object`` (``properties``, ``required``,
    ``additionalProperties: false``), ``integer`` → ``integer``, ``float`` → ``number``,
    ``string`` → ``string``, ``boolean`` → ``boolean``, ``array`` / ``tuple`` → ``array``
    (``items`` converted; none given: any items), ``any`` → ``{}`` (any JSON value). JSON
    schema's own names (``object``, ``number``) are accepted too. ``enum``,
    ``description`` and ``default`` are kept; a local ``$ref`` (``#/$defs/X`` or
    ``#/definitions/X``) is inlined.

    Raises:
        BFCLSchemaError: an unknown type, an empty ``enum``, a ``$ref`` that is recursive,
            external or dangling, or a node that is not an object. The message names the
            path, e.g. ``parameters.properties.size: unsupported type 'HashMap'``.
    """
    if not isinstance(node, dict):
        raise BFCLSchemaError(f"{path}: a schema must be an object, got {type(node).__name__}")
    defs = defs if defs is not None else {**node.get("$defs", {}), **node.get("definitions", {})}
    if "$ref" in node:
        ref = node["$ref"]
        m = re.fullmatch(r"#/(?:\$defs|definitions)/(.+)", str(ref))
        if not m:
            raise BFCLSchemaError(f"{path}: only local $ref (#/$defs/...) is supported, got {ref!r}")
        if ref in _seen:
            raise BFCLSchemaError(f"{path}: recursive $ref {ref!r} (a schema that contains itself cannot be decoded)")
        if m.group(1) not in defs:
            raise BFCLSchemaError(f"{path}: $ref {ref!r} names no definition")
        return to_json_schema(defs[m.group(1)], path=path, defs=defs, _seen=_seen + (ref,))
    typ = node.get("type")
    out: dict[str, Any] = {}
    for k in ("description", "default"):
        if k in node:
            out[k] = node[k]
    if "enum" in node:
        vals = node["enum"]
        if not isinstance(vals, list) or not vals:
            raise BFCLSchemaError(f"{path}: empty enum (no value could ever be valid)")
        out["enum"] = list(vals)
    if typ is None and "enum" in node:
        return out
    if typ in _SCALARS:
        out["type"] = _SCALARS[typ]
    elif typ == "any":
        pass
    elif typ in ("array", "tuple", "list"):
        out["type"] = "array"
        if "items" in node:
            out["items"] = to_json_schema(node["items"], path=path + ".items", defs=defs, _seen=_seen)
    elif typ in ("dict", "object"):
        out["type"] = "object"
        props = node.get("properties")
        if props is None:
            if "additionalProperties" in node and isinstance(node["additionalProperties"], dict):
                out["additionalProperties"] = to_json_schema(node["additionalProperties"], path=path + ".additionalProperties", defs=defs, _seen=_seen)
            return out
        if not isinstance(props, dict):
            raise BFCLSchemaError(f"{path}.properties: must be an object")
        out["properties"] = {
            k: to_json_schema(v, path=f"{path}.properties.{k}", defs=defs, _seen=_seen) for k, v in props.items()
        }
        req = node.get("required", [])
        unknown = [r for r in req if r not in props]
        if unknown:
            raise BFCLSchemaError(f"{path}: required names unknown properties {unknown}")
        if req:
            out["required"] = list(req)
        out["additionalProperties"] = False
    else:
        raise BFCLSchemaError(f"{path}: unsupported type {typ!r} (BFCL types: dict, integer, float, string, array, tuple, boolean, any)")
    if "enum" in out and out.get("type") in ("array", "object"):
        raise BFCLSchemaError(f"{path}: enum on a {out['type']} is not supported")
    return out


def _py_type(schema: dict[str, Any], name: str) -> Any:
    """The pydantic/Python type of a converted JSON schema node."""
    if "enum" in schema:
        return Literal[tuple(schema["enum"])]  # type: ignore[misc]
    t = schema.get("type")
    if t == "integer":
        return int
    if t == "number":
        return float
    if t == "string":
        return str
    if t == "boolean":
        return bool
    if t == "array":
        return list[_py_type(schema["items"], name + "_item")] if "items" in schema else list[Any]
    if t == "object":
        if "properties" not in schema:
            return dict[str, Any]
        return _model(name, schema)
    return Any


def _model(name: str, schema: dict[str, Any]) -> type[BaseModel]:
    """A pydantic model of an object schema. A property name pydantic refuses as a field
    (``_class``, ``class``, ``my-field``) gets a safe field name with the original as its
    alias: it validates and dumps under the original name."""
    required = set(schema.get("required", []))
    fields: dict[str, Any] = {}
    taken = set(schema.get("properties", {}))
    for pname, sub in schema.get("properties", {}).items():
        typ = _py_type(sub, f"{name}_{pname}")
        field_name, alias = pname, None
        if not pname.isidentifier() or pname.startswith("_") or keyword.iskeyword(pname) or hasattr(BaseModel, pname):
            field_name = "f_" + (re.sub(r"\W", "_", pname).strip("_") or "field")
            while field_name in taken:
                field_name += "_"
            taken.add(field_name)
            alias = pname
        if pname in required:
            fields[field_name] = (typ, Field(..., description=sub.get("description"), alias=alias))
        else:
            fields[field_name] = (Optional[typ], Field(None, description=sub.get("description"), alias=alias))
    safe = re.sub(r"\W", "_", name) or "Args"
    try:
        return create_model(
            safe, __config__=ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True), **fields
        )
    except Exception as exc:  # noqa: BLE001 - e.g. a property name pydantic refuses
        raise BFCLSchemaError(f"{name}: cannot build an argument model: {exc}") from exc


def expert_name(function_name: str, taken: set[str] = frozenset()) -> str:  # type: ignore[assignment]
    """A valid, unique expert name for a BFCL function name (``"math.factorial"`` → ``"math_factorial"``)."""
    base = re.sub(r"[^a-z0-9_]+", "_", function_name.lower()).strip("_") or "function"
    if not base[0].isalpha():
        base = "f_" + base
    base = base[:60]
    name, n = base, 2
    while name in taken:
        name, n = f"{base[:57]}_{n}", n + 1
    return name


class BFCLExpert(Expert):
    """An expert made from one BFCL function definition; it describes a call and does not run.

    Args:
        function: ``{"name", "description", "parameters"}`` as in BFCL.
        taken: expert names already used (the name is made unique).

    Attributes:
        function_name: the BFCL name (may contain dots), used for scoring.
        schema: the arguments' JSON schema (see :func:`to_json_schema`).

    Raises:
        BFCLSchemaError: see :func:`to_json_schema`; also a function without a name.
    """

    def __init__(self, function: dict[str, Any], taken: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        if not isinstance(function, dict) or not function.get("name"):
            raise BFCLSchemaError("a BFCL function needs a name")
        self.function_name = str(function["name"])
        self.name = expert_name(self.function_name, set(taken))  # type: ignore[misc]
        self.description = (function.get("description") or self.function_name).strip()  # type: ignore[misc]
        params = function.get("parameters") or {"type": "dict", "properties": {}}
        self.schema = to_json_schema(params, path=f"{self.function_name}.parameters")
        if self.schema.get("type") != "object":
            raise BFCLSchemaError(f"{self.function_name}.parameters: must be a dict, got {params.get('type')!r}")
        self.Args = _model(self.name + "_args", self.schema)  # type: ignore[misc]
        self.examples = []  # type: ignore[misc]
        super().__init__()

    def args_schema(self) -> dict[str, Any]:
        return self.schema

    def run(self, args: BaseModel) -> ExpertResult:
        raise ExpertError(f"{self.function_name} is a BFCL function description; it cannot be run")


def experts_for(functions: Sequence[dict[str, Any]]) -> list[BFCLExpert]:
    """One :class:`BFCLExpert` per function, with unique names.

    Raises:
        BFCLSchemaError: a function's schema is not supported.
    """
    out: list[BFCLExpert] = []
    for f in functions:
        out.append(BFCLExpert(f, {e.name for e in out}))
    return out


# ----------------------------------------------------------------------------- data
@dataclass
class BFCLCase:
    """One BFCL question.

    Attributes:
        id: e.g. ``"simple_python_0"``.
        question: the user's text (the first turn's user messages joined).
        functions: BFCL function definitions.
        ground_truth: ``{function name: {param: [acceptable values]}}``, or None (irrelevance).
    """

    id: str
    question: str
    functions: list[dict[str, Any]]
    ground_truth: dict[str, dict[str, list[Any]]] | None


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError as exc:
                raise MRKLError(f"{path}:{n}: not JSON ({exc})") from None
    return rows


def load_cases(data_dir: str | Path, category: str) -> list[BFCLCase]:
    """Read every question of a category (``simple``, ``multiple`` or ``irrelevance``) with its ground truth.

    Raises:
        MRKLError: unknown category, a missing file, a line that is not JSON, or answers
            whose ids do not line up with the questions.
    """
    if category not in CATEGORIES:
        raise MRKLError(f"unknown BFCL category {category!r}; choose from {', '.join(CATEGORIES)}")
    root = Path(data_dir)
    qfile = root / f"BFCL_v4_{CATEGORIES[category]}.json"
    if not qfile.is_file():
        raise MRKLError(f"no BFCL file {qfile}")
    questions = _read_jsonl(qfile)
    answers: dict[str, Any] = {}
    afile = root / "possible_answer" / qfile.name
    if category != "irrelevance":
        if not afile.is_file():
            raise MRKLError(f"no BFCL answer file {afile}")
        for n, a in enumerate(_read_jsonl(afile), 1):
            gt = a.get("ground_truth") if isinstance(a, dict) else None
            if not isinstance(gt, list) or not gt or not isinstance(gt[0], dict) or "id" not in a:
                raise MRKLError(f"{afile}:{n}: expected an object with an id and a non-empty ground_truth list of calls")
            answers[a["id"]] = gt
    cases = []
    for n, q in enumerate(questions, 1):
        if not isinstance(q, dict) or "id" not in q:
            raise MRKLError(f"{qfile}:{n}: expected a JSON object with an id")
        try:
            turn = q["question"][0] if q.get("question") else []
            text = "\n".join(m.get("content", "") for m in turn if m.get("role") == "user").strip()
        except (TypeError, AttributeError, KeyError, IndexError):
            raise MRKLError(f"{qfile}:{n}: 'question' must be a list of turns of {{role, content}} messages") from None
        functions = q.get("function", [])
        if not isinstance(functions, list):
            raise MRKLError(f"{qfile}:{n}: 'function' must be a list")
        gt = None
        if category != "irrelevance":
            if q["id"] not in answers:
                raise MRKLError(f"{afile}: no answer for {q['id']}")
            gt = answers[q["id"]][0]
        cases.append(BFCLCase(q["id"], text, list(functions), gt))
    return cases


# ----------------------------------------------------------------------------- scoring
def standardize_string(s: str) -> str:
    """BFCL's string normalisation: drop spaces and ``,./-_*^``, lowercase, ``'`` → ``"``."""
    return re.sub(r"[ ,./\-_*^]", "", s).lower().replace("'", '"')


def _value_ok(value: Any, accepted: Any, schema: dict[str, Any], strict_strings: bool) -> bool:
    t = schema.get("type")
    if isinstance(accepted, bool) or t == "boolean":
        return isinstance(value, bool) and isinstance(accepted, bool) and value == accepted
    if t == "number" or (t is None and isinstance(accepted, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or isinstance(accepted, (bool, str)) or not isinstance(accepted, (int, float)):
            return False
        return math.isclose(float(value), float(accepted), rel_tol=1e-9, abs_tol=1e-12)
    if t == "integer" or (t is None and isinstance(accepted, int)):
        return isinstance(value, int) and not isinstance(value, bool) and isinstance(accepted, int) and value == accepted
    if isinstance(accepted, str):
        if not isinstance(value, str):
            return False
        return value == accepted if strict_strings else standardize_string(value) == standardize_string(accepted)
    if isinstance(accepted, list):
        if not isinstance(value, list) or len(value) != len(accepted):
            return False
        item = schema.get("items", {})
        return all(_value_ok(v, a, item, strict_strings) for v, a in zip(value, accepted))
    if isinstance(accepted, dict):
        if not isinstance(value, dict):
            return False
        props = schema.get("properties", {})
        for k, acc in accepted.items():
            options = acc if isinstance(acc, list) else [acc]
            if k not in value:
                if "" not in options:
                    return False
                continue
            if not any(_value_ok(value[k], a, props.get(k, {}), strict_strings) for a in options if a != ""):
                return False
        return all(k in accepted for k in value)
    return value == accepted


def ast_match(
    call: tuple[str, dict[str, Any]] | None,
    function: dict[str, Any],
    ground_truth: dict[str, dict[str, list[Any]]],
    *,
    strict_strings: bool = False,
) -> tuple[bool, str]:
    """Score one call with BFCL's AST rules.

    Rules: the same function name; no parameter the function does not define; every
    required parameter present; every given parameter listed in the ground truth and its
    value among the acceptable ones; a parameter left out only where ``""`` is acceptable.
    Numbers compare by value (an integer is accepted for a ``float``; a float is not
    accepted for an ``integer``; booleans are not numbers); lists element by element, in
    order; dicts key by key. Strings: BFCL's checker normalises both sides
    (:func:`standardize_string`); ``strict_strings=True`` compares them exactly
    (case-sensitive).

    Args:
        call: ``(function name, arguments)`` or None (no call).
        function: the BFCL definition of the expected function.
        ground_truth: ``{function name: {param: [acceptable values]}}``.

    Returns:
        ``(right, reason)``; ``reason`` is ``""`` when right.
    """
    if call is None:
        return False, "no call"
    fname, args = call
    want = next(iter(ground_truth))
    if fname != want:
        return False, f"wrong function {fname} (want {want})"
    schema = to_json_schema(function.get("parameters") or {"type": "dict", "properties": {}})
    props = schema.get("properties", {})
    for k in args:
        if k not in props:
            return False, f"unknown parameter {k}"
    for k in schema.get("required", []):
        if k not in args:
            return False, f"missing required {k}"
    expected = ground_truth[want]
    for k, value in args.items():
        if k not in expected:
            return False, f"unexpected parameter {k}"
    for k, options in expected.items():
        if k not in args:
            if "" not in options:
                return False, f"missing {k}"
            continue
        if not any(_value_ok(args[k], a, props.get(k, {}), strict_strings) for a in options if a != ""):
            return False, f"{k}={args[k]!r} not in {options!r}"
    return True, ""


# ----------------------------------------------------------------------------- systems
@dataclass
class Prediction:
    """What a system did with one question.

    Attributes:
        call: ``(BFCL function name, arguments)`` or None when it made no call.
        raw: the model's raw output for the arguments (or the whole reply).
        valid_json: whether the output was JSON that matches the chosen function's schema;
            None when the system chose not to call, or made no call on an irrelevance
            question (nothing to parse). A reply in plain text where a call was expected
            counts as not valid (``json.loads`` fails on it).
        note: why no call was made (fallback, invalid output, ...).
        timings: seconds per stage (mrkl: ``embedding_rank``, ``argument_decoding``).
        candidate: the function the system chose before its none decision (mrkl: the ranking's
            choice, also when the none score then declined); None: the called function, if any.
    """

    call: tuple[str, dict[str, Any]] | None
    raw: str = ""
    valid_json: bool | None = None
    note: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    candidate: str | None = None


def _valid(expert: Expert, args: Any) -> bool:
    try:
        expert.parse_args(args)
    except Exception:  # noqa: BLE001
        return False
    return True


class MRKLSystem:
    """mrkl's pipeline for BFCL: embedding ranking, constrained per-field arguments, calibrated none.

    1. The embedding router (:class:`router.embedding.EmbeddingRouter`, all-MiniLM-L6-v2)
       ranks the question's functions; the best one is the candidate — or, with a
       calibrated rerank weight w > 0, the one of the top ``rerank_k`` with the best
       ``cos − w·u``, u being its share of required arguments the question does not supply.
    2. The LLM router decodes its arguments one by one under each argument's JSON schema,
       with a copy bias toward the question, and keeps optional arguments only when
       grounded in the question (:class:`router.arguments.ConstrainedArguments`).
    3. "None" is scored alongside: the candidate is called only when
       ``cos − λ·u + μ·margin + ν·n − κ·r ≥ τ`` (u: share of required arguments not grounded in
       the question; margin: over the runner-up function; n: share of the function's
       name words the question writes; r: 1 when the function requires more numbers than
       the question writes)
       (:class:`router.relevance.RelevanceGate`); otherwise the system falls back to the
       language model and says why. w, λ, μ, ν, κ and τ come from :meth:`calibrate`.

    Args:
        backend: the local model (TransformersBackend).
        embedding_router: an :class:`router.embedding.EmbeddingRouter`; default a new one.
        copy_bonus: see :class:`router.arguments.ConstrainedArguments`.
        margin_weights: the grid for the gate's margin weight μ (:class:`router.relevance.RelevanceGate`);
            ``(0.0,)`` turns the margin term off.
        name_weights: the grid for the gate's name-overlap weight ν
            (:func:`router.relevance.name_overlap`); ``(0.0,)`` turns it off.
        number_weights: the grid for the gate's missing-numbers weight κ
            (:func:`router.relevance.missing_numbers`); ``(0.0,)`` turns it off.
        rerank_k: how many of the most similar functions are decoded and compared by
            grounding when the calibrated rerank weight is above 0 (see :meth:`_choose`).
        rerank_weights: the grid for that weight; ``(0.0,)`` turns the rerank off.
    """

    def __init__(
        self,
        backend: Any,
        embedding_router: Any = None,
        *,
        copy_bonus: float = 4.0,
        margin_weights: Sequence[float] = (0.0, 0.25, 0.5, 1.0),
        name_weights: Sequence[float] = (0.0, 0.1, 0.2, 0.3),
        number_weights: Sequence[float] = (0.0, 0.1, 0.2, 0.3),
        rerank_k: int = 2,
        rerank_weights: Sequence[float] = (0.0, 0.1, 0.2, 0.3, 0.5),
    ) -> None:
        from router.embedding import EmbeddingRouter
        from router.llm_router import LLMRouter
        from router.relevance import RelevanceGate

        self.arg_router = LLMRouter(backend, constrained=True, per_field=True, ground_optional=True, copy_bonus=copy_bonus, repair=False)
        self.router = embedding_router or EmbeddingRouter(include_name=True)
        self.gate = RelevanceGate()
        self.margin_weights = tuple(margin_weights)
        self.name_weights = tuple(name_weights)
        self.number_weights = tuple(number_weights)
        self.rerank_k = rerank_k
        self.rerank_weights = tuple(rerank_weights)
        self.rerank_weight = 0.0
        self._cache: dict[tuple[str, str, str], tuple[dict[str, Any] | None, str, str | None, float]] = {}
        self.fit_report: dict[str, Any] = {}

    def _candidate(self, case: BFCLCase) -> tuple[list[BFCLExpert], BFCLExpert, float]:
        exps, best, sim, _margin = self._ranked(case)
        return exps, best, sim

    def _ranking(self, case: BFCLCase) -> tuple[list[BFCLExpert], list[float]]:
        """The question's functions as experts, best first, with their similarities."""
        exps = experts_for(case.functions)
        r = self.router.rank(case.question, exps)
        by_name = {e.name: e for e in exps}
        return [by_name[n] for n in r.experts], [float(x) for x in r.scores]

    def _ranked(self, case: BFCLCase) -> tuple[list[BFCLExpert], BFCLExpert, float, float]:
        """``(experts, best, its similarity, margin over the runner-up)``; the margin is 0 with one function."""
        ranked, scores = self._ranking(case)
        margin = scores[0] - scores[1] if len(scores) > 1 else 0.0
        return ranked, ranked[0], scores[0], margin

    def _arguments(self, case: BFCLCase, expert: BFCLExpert) -> tuple[dict[str, Any] | None, str, str | None]:
        _args, raw, err = self.arg_router.extract_args(case.question, expert)
        if err is not None:
            return None, raw, err
        return json.loads(raw), raw, None

    def _decoded(self, case: BFCLCase, expert: BFCLExpert) -> tuple[dict[str, Any] | None, str, str | None, float]:
        """Arguments of ``expert`` for the question and their ungrounded share (cached per question and function)."""
        from router.relevance import ungrounded_share

        key = (case.question, expert.function_name, json.dumps(expert.schema, sort_keys=True))
        if key not in self._cache:
            args, raw, err = self._arguments(case, expert)
            self._cache[key] = (args, raw, err, ungrounded_share(args, expert.schema, case.question))
        return self._cache[key]

    def _choose(
        self, case: BFCLCase, ranked: list[BFCLExpert], scores: list[float], weight: float
    ) -> tuple[int, list[tuple[dict[str, Any] | None, str, str | None, float]]]:
        """Index of the chosen function among the top ``rerank_k`` and each one's decoding.

        With ``weight`` w > 0 and several functions, the top ``rerank_k`` by similarity are
        each decoded and the one with the best ``cos − w·u`` is chosen (u: its share of
        ungrounded required arguments): of two similar functions, the one whose
        arguments the question supplies. With w = 0 only the best is decoded.
        """
        k = min(self.rerank_k, len(ranked)) if weight > 0 else 1
        decoded = [self._decoded(case, e) for e in ranked[:k]]
        combined = [scores[i] - weight * decoded[i][3] for i in range(k)]
        return max(range(k), key=lambda i: (combined[i], -i)), decoded

    def calibrate(
        self, relevant: Sequence[BFCLCase], irrelevant: Sequence[BFCLCase], *, floor: float = 0.2, min_no_call: float | None = None
    ) -> dict[str, Any]:
        """Fit the rerank weight w, then the none score (λ, μ, ν, κ, τ), on calibration cases.

        w: among ``rerank_weights``, the one that picks the right function most often on
        the relevant cases with several functions (ties: the smaller w; w = 0 keeps the
        embedding's choice). (λ, μ, τ): relevant cases should call, irrelevant ones should
        not. The irrelevant cases are used twice: as they are (one function each, as in
        BFCL) and with the functions of the next two irrelevant cases mixed in
        (:func:`mixed_functions`), so the margin weight μ is calibrated against questions
        that should not call any of several functions too. Arguments are decoded for
        every candidate whose similarity reaches ``floor`` (below it, the ungrounded share
        is taken as 1). ``min_no_call``: see :meth:`router.relevance.RelevanceGate.fit`.
        """
        ranked_cases = []
        for c, should in [(c, True) for c in relevant] + [(c, False) for c in irrelevant] + [(c, False) for c in mixed_functions(irrelevant)]:
            try:
                ranked, scores = self._ranking(c)
            except BFCLSchemaError:
                continue
            ranked_cases.append((c, should, ranked, scores))
        # 1. the rerank weight, on relevant cases with several functions and a known answer
        multi = [(c, r, s) for c, should, r, s in ranked_cases if should and len(r) > 1 and c.ground_truth]
        best_w, best_right = 0.0, -1
        for w in sorted(set(self.rerank_weights)):
            right = 0
            for c, r, s in multi:
                i, _dec = self._choose(c, r, s, w)
                right += r[i].function_name == next(iter(c.ground_truth or {}))
            if right > best_right:
                best_w, best_right = w, right
        self.rerank_weight = best_w
        # 2. the none score, with the functions that weight chooses
        from router.relevance import missing_numbers, name_overlap

        rows = []
        for c, should, r, s in ranked_cases:
            if s[0] < floor:
                rows.append((
                    s[0], 1.0, should, s[0] - s[1] if len(s) > 1 else 0.0, name_overlap(c.question, r[0].function_name),
                    missing_numbers(c.question, r[0].schema),
                ))
                continue
            i, dec = self._choose(c, r, s, self.rerank_weight)
            margin = (s[0] - s[1] if len(s) > 1 else 0.0) if i == 0 else 0.0
            rows.append((s[i], dec[i][3], should, margin, name_overlap(c.question, r[i].function_name), missing_numbers(c.question, r[i].schema)))
        self.fit_report = self.gate.fit(
            rows, min_no_call=min_no_call, margin_weights=self.margin_weights, name_weights=self.name_weights,
            number_weights=self.number_weights,
        )
        self.fit_report["rerank_weight"] = self.rerank_weight
        self.fit_report["rerank_right"] = f"{best_right}/{len(multi)}"
        self._cache.clear()
        return self.fit_report

    def predict(self, case: BFCLCase) -> Prediction:
        t0 = time.perf_counter()
        ranked, scores = self._ranking(case)
        timings = {"embedding_rank": time.perf_counter() - t0}
        margin = scores[0] - scores[1] if len(scores) > 1 else 0.0
        best, sim = ranked[0], scores[0]
        from router.relevance import missing_numbers, name_overlap

        top = ranked[: max(1, self.rerank_k)]
        names = [name_overlap(case.question, e.function_name) for e in top]
        missing = [missing_numbers(case.question, e.schema) for e in top]
        upper = self.gate.score(sim, 0.0, margin, max(names), min(missing))
        if upper < self.gate.threshold:  # the score can only go down from here
            return Prediction(
                None, "", None,
                f"fallback to the language model: best {best.function_name} similarity {sim:.2f} "
                f"(margin {margin:.2f}, name {names[0]:.2f}, missing numbers {missing[0]:.0f}) scores {upper:.2f} "
                f"< none {self.gate.threshold:.2f}", timings, best.function_name,
            )
        t1 = time.perf_counter()
        try:
            i, dec = self._choose(case, ranked, scores, self.rerank_weight)
        finally:
            self._cache.clear()
        timings["argument_decoding"] = time.perf_counter() - t1
        args, raw, err, u = dec[i]
        chosen_margin = margin if i == 0 else 0.0
        pred = self._decide(ranked[i], scores[i], chosen_margin, args, raw, err, u, names[i], missing[i])
        pred.timings = timings
        pred.candidate = ranked[i].function_name
        return pred

    def _decide(
        self, best: BFCLExpert, sim: float, margin: float, args: dict[str, Any] | None, raw: str, err: str | None, u: float,
        name: float = 0.0, missing: float = 0.0,
    ) -> Prediction:
        if not self.gate.accepts(sim, u, margin, name, missing):
            return Prediction(
                None, raw, None,
                f"fallback to the language model: {best.function_name} score {self.gate.score(sim, u, margin, name, missing):.2f} "
                f"(similarity {sim:.2f}, ungrounded {u:.2f}, margin {margin:.2f}, name {name:.2f}, missing numbers {missing:.0f}) "
                f"< none {self.gate.threshold:.2f}",
            )
        if err is not None or args is None:
            return Prediction(None, raw, False, f"arguments failed: {err}")
        return Prediction((best.function_name, args), raw, _valid(best, args))


def mixed_functions(cases: Sequence[BFCLCase], extra: int = 2) -> list[BFCLCase]:
    """Each case again, with the functions of the next ``extra`` cases (cyclically) added.

    For calibration: irrelevance questions come with one function each, so these mixed
    copies are should-not-call questions with several candidates (ids end in ``+mixed``).
    Fewer than two cases give an empty list.
    """
    out: list[BFCLCase] = []
    if len(cases) < 2:
        return out
    for i, c in enumerate(cases):
        funcs = list(c.functions)
        names = {f.get("name") for f in funcs if isinstance(f, dict)}
        for j in range(1, extra + 1):
            for f in cases[(i + j) % len(cases)].functions:
                if isinstance(f, dict) and f.get("name") not in names:
                    funcs.append(f)
                    names.add(f.get("name"))
        out.append(BFCLCase(c.id + "+mixed", c.question, funcs, None))
    return out


_NAIVE_SYSTEM = (
    "You are a helpful assistant with access to these functions (JSON schemas):\n{functions}\n\n"
    'To call a function, reply with only JSON: {{"name": "<function name>", "arguments": {{...}}}}. '
    "If no function fits the question, reply in plain text."
)


class NaiveSystem:
    """The peer recipe: schemas in a system prompt, free generation, ``json.loads``, no repair."""

    def __init__(self, backend: Any, max_new_tokens: int = 80) -> None:
        self.backend = backend
        self.max_new_tokens = max_new_tokens

    def predict(self, case: BFCLCase) -> Prediction:
        exps = experts_for(case.functions)
        funcs = "\n".join(
            json.dumps({"name": e.function_name, "description": e.description, "parameters": e.schema}, ensure_ascii=False) for e in exps
        )
        messages = [
            {"role": "system", "content": _NAIVE_SYSTEM.format(functions=funcs)},
            {"role": "user", "content": case.question},
        ]
        raw = self.backend.chat(messages, max_new_tokens=self.max_new_tokens)
        if "{" not in raw:  # json.loads fails: no call (right only where none was expected)
            return Prediction(None, raw, False, "the model answered in text (no call)")
        try:
            obj = json.loads(raw.strip().removeprefix("```json").removeprefix("```").removesuffix("```").strip())
        except ValueError:
            return Prediction(None, raw, False, "output is not valid JSON")
        if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not isinstance(obj.get("arguments", {}), dict):
            return Prediction(None, raw, False, "JSON is not a function call")
        args = obj.get("arguments", {})
        match = next((e for e in exps if e.function_name == obj["name"]), None)
        valid = match is not None and _valid(match, args)
        return Prediction((obj["name"], args), raw, valid)


_PLAIN_PROMPT = "Function: {name}\nDescription: {description}\nParameters (JSON schema): {schema}\n\nQuestion: {question}\nArguments:"


class ConstrainedBaseline:
    """The plain constrained recipe: name scoring picks the function; constrained decoding of the whole object.

    The function is the one whose name has the highest log-probability after a prompt listing
    every function (no shortlist, no calibration, never none); the arguments are decoded
    under its JSON schema in one pass after a plain prompt, without a copy bias, and the
    model decides which optional arguments to write.
    """

    def __init__(self, backend: Any) -> None:
        from router.arguments import ConstrainedArguments

        self.backend = backend
        self.decoder = ConstrainedArguments(backend, copy_bonus=0.0)

    def predict(self, case: BFCLCase) -> Prediction:
        exps = experts_for(case.functions)
        if len(exps) == 1:
            expert = exps[0]
        else:
            listing = "\n".join(f"- {e.function_name}: {e.description}" for e in exps)
            prompt = f"Functions:\n{listing}\n\nQuestion: {case.question}\nThe function to call is:"
            scores = self.backend.score(prompt, [" " + e.function_name for e in exps])
            expert = exps[max(range(len(exps)), key=lambda i: scores[i])]
        prompt = _PLAIN_PROMPT.format(
            name=expert.function_name, description=expert.description, schema=json.dumps(expert.schema), question=case.question
        )
        try:
            args, raw = self.decoder.extract(prompt, expert.schema, case.question)
        except Exception as exc:  # noqa: BLE001 - the budget ran out, etc.: an invalid output
            return Prediction(None, "", False, f"constrained decoding failed: {exc}")
        return Prediction((expert.function_name, args), raw, _valid(expert, args))


# ----------------------------------------------------------------------------- evaluation
@dataclass
class CaseResult:
    """One question's outcome (kept in the ``--json`` report)."""

    id: str
    right: bool
    right_strict: bool
    expert_right: bool
    valid_json: bool | None
    seconds: float
    call: Any
    reason: str
    raw: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    #: the function chosen before the none decision is the right one (irrelevance: no call made)
    choice_right: bool = False


@dataclass
class Summary:
    """One row of the table: a system on a category."""

    system: str
    category: str
    n: int
    exact: float
    exact_strict: float
    expert: float
    valid_json: float
    seconds_per_question: float
    cases: list[CaseResult] = field(default_factory=list)
    #: mrkl's calibrated none score and rerank weight (:meth:`MRKLSystem.calibrate`); empty for baselines
    settings: dict[str, Any] = field(default_factory=dict)
    #: share of questions whose function chosen before the none decision is right (``expert`` also
    #: counts a declined relevant question as wrong; this one measures the choice among the functions)
    expert_choice: float = 0.0

    def stage_p50(self) -> dict[str, float]:
        """Median seconds of each stage over the questions that reached it (mrkl only; empty for the baselines)."""
        stages: dict[str, list[float]] = {}
        for c in self.cases:
            for k, v in c.timings.items():
                stages.setdefault(k, []).append(v)
        return {k: statistics.median(v) for k, v in stages.items()}

    def row(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("cases")
        d["stage_p50_seconds"] = self.stage_p50()
        return d


def score_case(case: BFCLCase, pred: Prediction) -> tuple[bool, bool, bool, str]:
    """``(right, right with strict strings, expert right, reason)`` for one prediction."""
    if case.ground_truth is None:  # irrelevance: right when no call is made
        ok = pred.call is None
        return ok, ok, ok, "" if ok else f"called {pred.call[0]}"  # type: ignore[index]
    want = next(iter(case.ground_truth))
    func = next(f for f in case.functions if f["name"] == want)
    right, reason = ast_match(pred.call, func, case.ground_truth)
    strict, _ = ast_match(pred.call, func, case.ground_truth, strict_strings=True)
    expert_right = pred.call is not None and pred.call[0] == want
    if pred.call is None:
        reason = pred.note or "no call"
    return right, strict, expert_right, reason


def choice_right(case: BFCLCase, pred: Prediction) -> bool:
    """Whether the function chosen before the none decision is the right one.

    The issue's "expert choice" is a routing decision among the question's functions; a
    relevant question that the none score then declines still had its function chosen
    (``pred.candidate``). Irrelevance questions: right when no call was made, as in
    :func:`score_case`. A call made counts for its function; baselines have no separate choice.
    (A question the none score declines before any decoding records the ranking's top function;
    with a rerank weight above 0 a decoded question may choose another of the top ones.)
    """
    if not case.ground_truth:
        return pred.call is None
    chosen = pred.call[0] if pred.call else pred.candidate
    return chosen == next(iter(case.ground_truth))


def calibration_split(data_dir: str | Path, n_eval: dict[str, int], per_category: int = 20) -> tuple[list[BFCLCase], list[BFCLCase]]:
    """Calibration cases for the none threshold, disjoint from the evaluated ones.

    The evaluation takes each category's first ``n`` questions; calibration takes up to
    ``per_category`` questions from the *end* of ``simple``, ``multiple`` (relevant) and
    ``irrelevance`` (none), never overlapping the evaluated prefix.

    Returns:
        ``(relevant, irrelevant)``.
    """
    relevant: list[BFCLCase] = []
    irrelevant: list[BFCLCase] = []
    if per_category <= 0:
        return relevant, irrelevant
    for cat in CATEGORIES:
        cases = load_cases(data_dir, cat)
        start = max(n_eval.get(cat, 0), len(cases) - per_category)
        tail = cases[start:]
        (irrelevant if cat == "irrelevance" else relevant).extend(tail)
    return relevant, irrelevant


def evaluate(
    backend: Any,
    data_dir: str | Path,
    categories: Sequence[str],
    *,
    systems: Sequence[str] = ("mrkl",),
    limit: int | None = None,
    calibrate_per_category: int = 20,
    min_no_call: float | None = None,
    progress: Any = None,
    offset: int = 0,
) -> list[Summary]:
    """Run each system on each category (first ``limit`` questions) on one model.

    Args:
        backend: the local model, shared by all systems.
        data_dir: the BFCL folder.
        categories: names from :data:`CATEGORIES`.
        systems: names from ``("mrkl", "naive", "constrained")``.
        limit: questions per category (the first ones after ``offset``); None for all.
        offset: questions skipped at the start of each category (e.g. 40 with limit 40
            evaluates questions 40..79, a second slice to check that a change generalises).
        calibrate_per_category: calibration questions per category for mrkl's none
            threshold (taken from the end of each file, disjoint from the evaluated ones).
        min_no_call: the no-call rate on calibration irrelevance questions the none score
            must reach (then as many calls as possible on relevant ones); None: balanced accuracy.
        progress: optional callable receiving one line per finished question.

    Returns:
        One :class:`Summary` per (system, category), in that order.

    Raises:
        MRKLError: unknown category or system, a negative offset, or unreadable data.
    """
    if offset < 0:
        raise MRKLError(f"offset must be 0 or more, got {offset}")
    for s in systems:
        if s not in SYSTEMS:
            raise MRKLError(f"unknown system {s!r}; choose from {', '.join(SYSTEMS)}")
    data = {c: load_cases(data_dir, c)[offset : offset + limit] if limit else load_cases(data_dir, c)[offset:] for c in categories}
    built: dict[str, Any] = {}
    for s in systems:
        if s == "mrkl":
            m = MRKLSystem(backend)
            rel, irr = calibration_split(data_dir, {c: offset + len(v) for c, v in data.items()}, calibrate_per_category)
            if rel and irr:
                m.calibrate(rel, irr, min_no_call=min_no_call)
            else:
                m.fit_report = {"note": "not calibrated (no held-out questions left)", "weight": m.gate.weight, "threshold": m.gate.threshold}
            if progress:
                progress(f"mrkl none calibration: {m.fit_report}")
            built[s] = m
        elif s == "naive":
            built[s] = NaiveSystem(backend)
        else:
            built[s] = ConstrainedBaseline(backend)
    out: list[Summary] = []
    for s in systems:
        for cat, cases in data.items():
            results: list[CaseResult] = []
            for case in cases:
                t0 = time.perf_counter()
                try:
                    pred = built[s].predict(case)
                except BFCLSchemaError as exc:
                    pred = Prediction(None, "", False, f"schema not supported: {exc}")
                except Exception as exc:  # noqa: BLE001 - one bad question must not end the run
                    pred = Prediction(None, "", False, f"{type(exc).__name__}: {exc}")
                dt = time.perf_counter() - t0
                if case.ground_truth is None and pred.call is None:
                    pred.valid_json = None  # no call was the right thing: nothing to parse
                right, strict, expert_ok, reason = score_case(case, pred)
                results.append(
                    CaseResult(
                        case.id, right, strict, expert_ok, pred.valid_json, dt, list(pred.call) if pred.call else None, reason,
                        pred.raw[:300], dict(pred.timings), choice_right(case, pred),
                    )
                )
                if progress:
                    progress(f"{s} {case.id}: {'ok' if right else 'MISS ' + reason}")
            n = len(results)
            attempted = [r.valid_json for r in results if r.valid_json is not None]
            out.append(
                Summary(
                    system=s,
                    category=cat,
                    n=n,
                    exact=sum(r.right for r in results) / n if n else 0.0,
                    exact_strict=sum(r.right_strict for r in results) / n if n else 0.0,
                    expert=sum(r.expert_right for r in results) / n if n else 0.0,
                    valid_json=sum(attempted) / len(attempted) if attempted else 1.0,
                    seconds_per_question=statistics.fmean(r.seconds for r in results) if results else 0.0,
                    cases=results,
                    settings=dict(getattr(built[s], "fit_report", {}) or {}),
                    expert_choice=sum(r.choice_right for r in results) / n if n else 0.0,
                )
            )
    return out


def format_table(rows: Sequence[Summary]) -> str:
    """The results as a fixed-width text table."""
    head = f"{'system':<12}{'category':<13}{'n':>5}{'exact':>8}{'strict':>8}{'expert':>8}{'choice':>8}{'valid JSON':>12}{'s/question':>12}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.system:<12}{r.category:<13}{r.n:>5}{r.exact:>8.1%}{r.exact_strict:>8.1%}{r.expert:>8.1%}{r.expert_choice:>8.1%}"
            f"{r.valid_json:>12.1%}{r.seconds_per_question:>12.2f}"
        )
    stages = [(r, r.stage_p50()) for r in rows if r.stage_p50()]
    if stages:
        lines += ["", "stage p50 (ms): " + "; ".join(
            f"{r.system}/{r.category} " + ", ".join(f"{k} {v * 1000:.0f}" for k, v in p.items()) for r, p in stages
        )]
    return "\n".join(lines)
