"""Declarative HTTP API experts: a web API described in YAML/JSON (or Python) becomes an expert.

Jurassic-X answered live questions (weather, exchange rates, Wikipedia) by calling
web APIs as discrete experts (Karpas et al., 2022, "MRKL Systems", Sec. 2 and 5):
the router extracts the arguments, the API computes or looks up the answer. Here
an API expert is *data*, not code::

    name: currency
    description: Convert an amount between currencies at the ECB reference rate.
    args:
      amount: {type: number, default: 1, minimum: 0}
      from_currency: {type: string, pattern: "^[A-Z]{3}$", case: upper, aliases: {dollars: USD}}
      to_currency: {type: string, pattern: "^[A-Z]{3}$", case: upper}
    base_urls: {api: "https://api.frankfurter.dev"}
    requests:
      - name: rates
        url: "{{ base.api }}/v1/latest"
        params: {base: "{{ args.from_currency }}", symbols: "{{ args.to_currency }}"}
        extract: {date: date, rate: "rates.*|[0]"}
    answer: "{{ args.amount }} {{ args.from_currency }} = {{ '%.2f'|format(args.amount * steps.rates.rate) }} ..."

A definition has

* ``args``: the argument schema (a pydantic model is built from it; ``type`` is one of
  string, integer, number, boolean, date; ``enum``, ``default``, ``min_length``,
  ``max_length``, ``pattern``, ``minimum``, ``maximum``; ``case`` upper/lower and
  ``aliases`` (text → value, e.g. ``dollars: USD``) normalise what a user or a small
  router model writes). A Python caller may pass its own pydantic model instead.
* ``requests``: one or more HTTP requests run in order (weather: geocoding, then the
  forecast at the place found). ``method``, ``url``, ``params`` (query), ``json``
  (body), ``form`` (form body) and ``headers`` are jinja2 templates rendered in a
  sandbox over ``args`` (validated), ``base`` (base URLs), ``steps`` (what earlier
  requests extracted), ``const`` (the definition's constants) and, in headers,
  params and bodies only, ``secrets`` (values of environment variables the
  definition names in ``secrets: {name: ENV_VAR}``). A value rendered from the
  arguments is data: it is never evaluated as a template again, query values are
  URL-encoded by httpx, and the ``urlquote`` filter encodes a path segment.
  ``extract`` is a JMESPath expression (or a mapping name → expression) over the
  JSON response; ``require`` a JMESPath expression that must be non-empty, else the
  ``not_found`` message is the answer; ``on_status`` maps an HTTP status to a message.
* ``answer``: the jinja2 answer template over ``args``, ``steps``, ``const``.
* ``patterns``: optional regular expressions with named groups; a question that one
  of them matches whole gives the arguments without the language model
  (:meth:`HTTPAPIExpert.symbolic_args`).

Safety and robustness (every request):

* **Host allow-list**: a request goes only to an origin (scheme, host, port) that the
  definition names: its base URLs (after overrides), ``allowed_hosts``, and literal
  hosts of its URL templates. Redirects are followed by hand, each target checked
  against the allow-list; one off the list is refused. Only http and https.
* **Timeouts**: ``timeout_s`` per connect/read, and a ``deadline_s`` for the whole
  call, checked while the body streams in (a server that drips bytes is cut off).
* **Retries**: at most ``retries`` more attempts on connection errors, timeouts, 429
  and 5xx, with exponential backoff (``backoff_s`` · 2^attempt, capped at 8 s; a
  ``Retry-After`` within the cap is honoured); POST is retried only when the request
  never reached the server.
* **Size cap**: ``max_response_bytes`` (default 1 MB) of *decoded* body; a larger
  ``Content-Length`` is refused before reading, and a stream is closed as soon as it
  passes the cap (so a gzip bomb is cut off too).
* **Secrets** come from environment variables, are checked before any request, and
  are redacted (``***``) from URLs in sources, traces and error messages.

Failures the user cannot fix by rephrasing (no network, timeouts, server errors,
oversized or invalid responses, a missing secret, nothing found) become a clear
answer ("Could not reach api.open-meteo.com: ...") from :meth:`HTTPAPIExpert.run`
rather than an exception, so the system does not let a language model invent live
data; :meth:`HTTPAPIExpert.call` raises :class:`HTTPExpertError` for every failure.

Base URLs can be overridden per expert: the constructor's ``base_urls`` or the
environment variable ``MRKL_<EXPERT>_<KEY>_URL`` (``MRKL_WEATHER_FORECAST_URL``); the
allow-list follows the override. Tests point the shipped experts at 127.0.0.1 this way.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import time
import urllib.parse
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Literal, Mapping

import httpx
import jmespath
import jmespath.exceptions
import yaml
from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from mrkl.errors import ExpertError
from mrkl.expert import Expert, ExpertResult, RoutingExample

__all__ = [
    "HTTPAPIExpert",
    "HTTPExpertError",
    "HTTPExpertSpec",
    "RequestSpec",
    "ArgSpec",
    "load_http_experts",
    "builtin_http_experts",
    "DATA_DIR",
]

#: Folder of the shipped definitions (weather, currency, wikipedia).
DATA_DIR = Path(__file__).resolve().parent / "data" / "http"

USER_AGENT = "mrkl-http-expert/0.1 (MRKL system; python-httpx)"
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
_MAX_BACKOFF_S = 8.0

#: Questions longer than this are not matched against a definition's ``patterns``.
MAX_PATTERN_QUESTION_CHARS = 300

#: Failure kinds that :meth:`HTTPAPIExpert.run` answers with a clear message instead of raising.
ANSWER_KINDS = frozenset({"unreachable", "timeout", "server_error", "too_large", "bad_response", "config", "not_found"})


class HTTPExpertError(ExpertError):
    """An HTTP API expert could not produce a result.

    Attributes:
        kind: what went wrong: ``"unreachable"`` (connection failed), ``"timeout"``,
            ``"server_error"`` (5xx/429 after the retries), ``"client_error"`` (another
            4xx), ``"not_found"`` (an ``on_status`` or ``require`` message), ``"too_large"``,
            ``"bad_response"`` (not JSON, or not the expected shape), ``"refused"``
            (a host or scheme off the allow-list, a bad header value: nothing was sent),
            ``"config"`` (a missing secret), ``"template"`` (a template failed to render).
        host: the host concerned, if any.
        attempts: how many HTTP attempts were made for the failing request.
    """

    def __init__(self, message: str, kind: str, host: str | None = None, attempts: int = 0) -> None:
        super().__init__(message)
        self.kind = kind
        self.host = host
        self.attempts = attempts


# ---------------------------------------------------------------------------
# Templates
# ---------------------------------------------------------------------------


def _urlquote(value: Any) -> str:
    """Percent-encode one URL path segment ('/', '?', '#', '&' ... and a bare '.' or '..' too)."""
    text = str(value)
    if text in (".", ".."):
        return text.replace(".", "%2E")
    return urllib.parse.quote(text, safe="")


_ENV = ImmutableSandboxedEnvironment(autoescape=False, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False)
_ENV.filters["urlquote"] = _urlquote


def _compile(source: str, where: str) -> Any:
    try:
        return _ENV.from_string(source)
    except TemplateError as exc:
        raise ValueError(f"{where}: invalid jinja2 template: {exc}") from None


# ---------------------------------------------------------------------------
# Definitions
# ---------------------------------------------------------------------------

_TYPES: dict[str, type] = {"string": str, "integer": int, "number": float, "boolean": bool, "date": _dt.date}


class ArgSpec(BaseModel):
    """One argument of a declarative expert (becomes a field of the pydantic ``Args`` model)."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["string", "integer", "number", "boolean", "date"] = "string"
    description: str = ""
    default: Any = None
    required: bool | None = None  # default: required when no default is given
    enum: list[Any] | None = None
    min_length: int | None = None
    max_length: int | None = 200
    pattern: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    case: Literal["upper", "lower"] | None = None
    aliases: dict[str, Any] = Field(default_factory=dict)

    def is_required(self) -> bool:
        if self.required is not None:
            return self.required
        return "default" not in self.model_fields_set


class RequestSpec(BaseModel):
    """One HTTP request of a definition (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    name: str = Field(pattern=r"^[a-z_][a-z0-9_]*$")
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] = "GET"
    url: str
    params: dict[str, str] = Field(default_factory=dict)
    json_body: Any = Field(default=None, alias="json")
    form: dict[str, str] | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    response: Literal["json", "text"] = "json"
    extract: str | dict[str, str] | None = None
    require: str | None = None
    not_found: str = "{{ host }} found nothing for that request."
    on_status: dict[int, str] = Field(default_factory=dict)
    error_message: str | None = None  # JMESPath into an error response for the API's own message


class ExampleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str
    args: dict[str, Any]


class HTTPExpertSpec(BaseModel):
    """A whole declarative HTTP API expert (the content of one YAML/JSON file)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    description: str
    title: str = ""  # human name of the API, for messages ("the Open-Meteo API")
    args: dict[str, ArgSpec] = Field(default_factory=dict)
    examples: list[ExampleSpec] = Field(default_factory=list)
    base_urls: dict[str, str] = Field(default_factory=dict)
    allowed_hosts: list[str] = Field(default_factory=list)
    secrets: dict[str, str] = Field(default_factory=dict)  # template name -> environment variable
    headers: dict[str, str] = Field(default_factory=dict)  # sent with every request
    requests: list[RequestSpec] = Field(min_length=1)
    answer: str
    sources: list[str] = Field(default_factory=list)  # templates over the results, e.g. a page URL
    constants: dict[str, Any] = Field(default_factory=dict)
    patterns: list[str] = Field(default_factory=list)
    timeout_s: float = Field(10.0, gt=0, le=120)
    deadline_s: float = Field(30.0, gt=0, le=600)
    retries: int = Field(2, ge=0, le=5)
    backoff_s: float = Field(0.5, ge=0, le=10)
    max_response_bytes: int = Field(1_000_000, gt=0, le=100_000_000)
    max_redirects: int = Field(3, ge=0, le=10)

    @field_validator("secrets")
    @classmethod
    def _env_names(cls, v: dict[str, str]) -> dict[str, str]:
        for key, env in v.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", env or ""):
                raise ValueError(f"secret '{key}': {env!r} is not an environment variable name")
        return v


def _build_args_model(spec: HTTPExpertSpec) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for fname, a in spec.args.items():
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", fname):
            raise ValueError(f"expert '{spec.name}': argument name {fname!r} must be lowercase letters, digits, underscores")
        base: Any = _TYPES[a.type]
        if a.enum:
            base = Literal[tuple(a.enum)]  # type: ignore[valid-type]
        constraints: dict[str, Any] = {"description": a.description or None}
        if a.type == "string" and not a.enum:
            constraints.update(min_length=a.min_length, max_length=a.max_length, pattern=a.pattern)
        if a.type in ("integer", "number"):
            constraints.update(ge=a.minimum, le=a.maximum)
        constraints = {k: v for k, v in constraints.items() if v is not None}
        if a.is_required():
            fields[fname] = (base, Field(..., **constraints))
        else:
            fields[fname] = (base | None if a.default is None else base, Field(a.default, **constraints))
    model_name = "".join(p.capitalize() for p in spec.name.split("_")) + "Args"

    def normalise(cls: Any, data: Any) -> Any:
        """Apply ``case`` and ``aliases``; strip strings; drop thousands separators in numbers."""
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for fname, a in spec.args.items():
            if fname not in out or out[fname] is None:
                continue
            v = out[fname]
            if isinstance(v, str):
                v = " ".join(v.split())
                key = v.lower()
                if key in {k.lower(): k for k in a.aliases}:
                    v = {k.lower(): val for k, val in a.aliases.items()}[key]
                elif a.type in ("integer", "number") and re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", v):
                    v = v.replace(",", "")
                if isinstance(v, str) and a.case == "upper":
                    v = v.upper()
                elif isinstance(v, str) and a.case == "lower":
                    v = v.lower()
            out[fname] = v
        return out

    validators = {"_normalise": model_validator(mode="before")(classmethod(normalise))}
    return create_model(
        model_name, __config__=ConfigDict(extra="forbid"), __validators__=validators, **fields  # type: ignore[call-overload]
    )


def _origin(url: httpx.URL) -> tuple[str, str, int]:
    port = url.port or (443 if url.scheme == "https" else 80)
    return (url.scheme, (url.host or "").lower(), port)


def _show_origin(origin: tuple[str, str, int]) -> str:
    scheme, host, port = origin
    default = (scheme == "https" and port == 443) or (scheme == "http" and port == 80)
    return host if default else f"{host}:{port}"


def _parse_base_url(url: str, where: str) -> str:
    try:
        u = httpx.URL(url)
    except Exception as exc:  # noqa: BLE001 - httpx raises several types
        raise ValueError(f"{where}: {url!r} is not a URL: {exc}") from None
    if u.scheme not in ("http", "https") or not u.host:
        raise ValueError(f"{where}: {url!r} must be an http:// or https:// URL with a host")
    if u.query or u.fragment:
        raise ValueError(f"{where}: {url!r} may not have a query or fragment")
    return url.rstrip("/")


# ---------------------------------------------------------------------------
# The expert
# ---------------------------------------------------------------------------


@dataclass
class _Response:
    status: int
    headers: httpx.Headers
    body: bytes
    url: httpx.URL


class HTTPAPIExpert(Expert):
    """An expert that answers by calling a web API described declaratively.

    Args:
        spec: an :class:`HTTPExpertSpec`, or a mapping with its fields (as read from YAML/JSON).
        args_model: a pydantic model to use as ``Args`` instead of the one built from ``spec.args``.
        base_urls: overrides of ``spec.base_urls`` (key → URL); the environment variable
            ``MRKL_<NAME>_<KEY>_URL`` overrides too (the constructor wins).
        env: where secrets and base-URL overrides are read (default ``os.environ``).
        transport: an httpx transport (tests; default a real network transport).
        **overrides: any of ``timeout_s``, ``deadline_s``, ``retries``, ``backoff_s``,
            ``max_response_bytes``, ``max_redirects`` (replacing the spec's values).

    Raises:
        ValueError: the definition is invalid (a template that does not compile, a bad
            JMESPath expression, a base URL that is not http(s), a routing example whose
            arguments do not validate, an unknown override ...); the message names the field.

    Source: web APIs as discrete experts of a MRKL system, Karpas et al., 2022, Sec. 2, 5.
    """

    def __init__(
        self,
        spec: HTTPExpertSpec | Mapping[str, Any],
        *,
        args_model: type[BaseModel] | None = None,
        base_urls: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        **overrides: Any,
    ) -> None:
        if not isinstance(spec, HTTPExpertSpec):
            try:
                spec = HTTPExpertSpec.model_validate(dict(spec))
            except ValidationError as exc:
                name = dict(spec).get("name", "?") if isinstance(spec, Mapping) else "?"
                raise ValueError(f"invalid HTTP expert definition '{name}': {_validation_text(exc)}") from None
        if overrides:
            try:
                spec = HTTPExpertSpec.model_validate({**spec.model_dump(by_alias=True, exclude_unset=True), **overrides})
            except ValidationError as exc:
                raise ValueError(f"invalid overrides for '{spec.name}': {_validation_text(exc)}") from None
        self.spec = spec
        self.env = os.environ if env is None else env
        self.name = spec.name  # type: ignore[misc]
        self.description = spec.description  # type: ignore[misc]
        self.answer_template = spec.answer  # type: ignore[misc]
        self.Args = args_model or _build_args_model(spec)  # type: ignore[misc]
        super().__init__()
        self.title = spec.title or spec.name
        self._transport = transport

        # base URLs: the definition's, then environment overrides, then the constructor's
        unknown = set(base_urls or {}) - set(spec.base_urls)
        if unknown:
            raise ValueError(f"'{spec.name}': unknown base URL key(s) {sorted(unknown)}; known: {sorted(spec.base_urls)}")
        self.base_urls: dict[str, str] = {}
        for key, url in spec.base_urls.items():
            env_name = f"MRKL_{spec.name.upper()}_{key.upper()}_URL"
            chosen = (base_urls or {}).get(key) or self.env.get(env_name) or url
            self.base_urls[key] = _parse_base_url(chosen, f"'{spec.name}' base URL '{key}'")

        # the allow-list: origins the definition names
        self.allowed: set[tuple[str, str, int]] = {_origin(httpx.URL(u)) for u in self.base_urls.values()}
        for host in spec.allowed_hosts:
            u = httpx.URL(host if "://" in host else f"https://{host}")
            self.allowed.add(_origin(u))
        for r in spec.requests:
            m = re.match(r"^(https?://[^/{}\s]+)(/|$)", r.url)
            if m:
                self.allowed.add(_origin(httpx.URL(m.group(1))))

        # compile everything once, so a broken definition fails at load time
        self._templates: dict[str, Any] = {}
        self._jmes: dict[str, Any] = {}
        for i, r in enumerate(spec.requests):
            where = f"'{spec.name}' request '{r.name}'"
            self._t(f"{i}.url", r.url, where + " url")
            self._t(f"{i}.method", r.method, where)
            self._t(f"{i}.not_found", r.not_found, where + " not_found")
            for k, v in r.params.items():
                self._t(f"{i}.params.{k}", v, f"{where} param '{k}'")
            for k, v in {**spec.headers, **r.headers}.items():
                self._t(f"{i}.headers.{k}", v, f"{where} header '{k}'")
            for k, v in (r.form or {}).items():
                self._t(f"{i}.form.{k}", v, f"{where} form field '{k}'")
            for status, msg in r.on_status.items():
                self._t(f"{i}.on_status.{status}", msg, f"{where} on_status {status}")
            for k, expr in _extract_items(r.extract):
                self._j(f"{i}.extract.{k}", expr, f"{where} extract '{k}'")
            if r.require:
                self._j(f"{i}.require", r.require, where + " require")
            if r.error_message:
                self._j(f"{i}.error_message", r.error_message, where + " error_message")
            _walk_strings(r.json_body, lambda s, p: self._t(f"{i}.json.{p}", s, f"{where} json {p}"))
        self._t("answer", spec.answer, f"'{spec.name}' answer")
        for j, s in enumerate(spec.sources):
            self._t(f"source.{j}", s, f"'{spec.name}' sources[{j}]")
        names = [r.name for r in spec.requests]
        if len(set(names)) != len(names):
            raise ValueError(f"'{spec.name}': request names must be unique, got {names}")
        try:
            self._patterns = [re.compile(p, re.IGNORECASE) for p in spec.patterns]
        except re.error as exc:
            raise ValueError(f"'{spec.name}': invalid pattern: {exc}") from None
        # routing examples must validate against the schema
        self.examples = []  # type: ignore[misc]
        for ex in spec.examples:
            try:
                self.Args.model_validate(ex.args)
            except ValidationError as exc:
                raise ValueError(
                    f"'{spec.name}': routing example {ex.question!r} has invalid args: {_validation_text(exc)}"
                ) from None
            self.examples.append(RoutingExample(ex.question, dict(ex.args)))

    # -- construction helpers -------------------------------------------------------
    def _t(self, key: str, source: str, where: str) -> None:
        self._templates[key] = _compile(source, where)

    def _j(self, key: str, expr: str, where: str) -> None:
        try:
            self._jmes[key] = jmespath.compile(expr)
        except jmespath.exceptions.JMESPathError as exc:
            raise ValueError(f"{where}: invalid JMESPath expression {expr!r}: {exc}") from None

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: Any) -> "HTTPAPIExpert":
        """Load a definition from a ``.yaml``/``.yml`` or ``.json`` file.

        Raises:
            ValueError: the file is not valid YAML/JSON or not a valid definition.
            OSError: the file cannot be read.
        """
        return cls(_read_definition(Path(path)), **kwargs)

    # -- the symbolic parser ----------------------------------------------------------
    def symbolic_args(self, question: str) -> dict[str, Any] | None:
        """Arguments from the definition's ``patterns`` when one matches the whole question.

        The question's trailing punctuation is ignored; the named groups become
        arguments (normalised by ``case``/``aliases``) and must validate. Questions
        longer than :data:`MAX_PATTERN_QUESTION_CHARS` are not matched.

        Returns:
            A JSON-compatible dict, or ``None`` when no pattern matches or the match does not validate.
        """
        q = " ".join(question.split()).rstrip("?!. ")
        if len(q) > MAX_PATTERN_QUESTION_CHARS:  # bounds the time a definition's regex can take
            return None
        for pat in self._patterns:
            m = pat.fullmatch(q)
            if not m:
                continue
            raw = {k: v.strip() for k, v in m.groupdict().items() if v is not None and v.strip()}
            try:
                return self.Args.model_validate(raw).model_dump(mode="json", exclude_none=True)
            except ValidationError:
                continue
        return None

    # -- running -------------------------------------------------------------------------
    def run(self, args: BaseModel) -> ExpertResult:
        """Call the API for validated ``args``.

        Returns:
            On success, :meth:`call`'s result. For a failure the user cannot fix by
            rephrasing (kinds in :data:`ANSWER_KINDS`: unreachable, timeout, server
            error, too large, bad response, missing secret, not found) an
            :class:`ExpertResult` with ``value=None``, ``text`` the clear message
            ("Could not reach api.open-meteo.com: ...") and ``data["error"]``.

        Raises:
            HTTPExpertError: kinds ``client_error``, ``refused`` and ``template`` (the
                router may repair its arguments from the message).
        """
        try:
            return self.call(args)
        except HTTPExpertError as exc:
            if exc.kind not in ANSWER_KINDS:
                raise
            return ExpertResult(
                value=None,
                text=str(exc),
                sources=[exc.host] if exc.host else [],
                data={"error": {"kind": exc.kind, "message": str(exc), "host": exc.host, "attempts": exc.attempts}},
            )

    def render_answer(self, question: str, args: BaseModel, result: ExpertResult) -> str:
        """``result.text``: :meth:`call` already rendered the answer template (over ``args``,
        ``steps``, ``const``); for a failure it is the message."""
        return result.text

    def call(self, args: BaseModel | Mapping[str, Any]) -> ExpertResult:
        """Run every request of the definition and render the answer.

        Args:
            args: an ``Args`` instance or a mapping that validates against it.

        Returns:
            An :class:`ExpertResult`: ``value`` the extracted data (of the only request,
            or ``{request name: extracted}``), ``text`` the rendered answer, ``sources``
            the URLs requested (secrets redacted) and the definition's ``sources``,
            ``data`` with ``steps`` (all extracts) and ``urls``.

        Raises:
            HTTPExpertError: every failure (see its ``kind``); nothing else escapes.
            ArgumentError: ``args`` is a mapping that does not validate.
        """
        if not isinstance(args, BaseModel):
            args = self.parse_args(dict(args))
        spec = self.spec
        secrets = self._secrets()
        ctx: dict[str, Any] = {
            "args": args.model_dump(mode="json"),
            "base": dict(self.base_urls),
            "const": spec.constants,
            "steps": {},
        }
        deadline = time.monotonic() + spec.deadline_s
        urls: list[str] = []
        with httpx.Client(
            transport=self._transport,
            timeout=httpx.Timeout(spec.timeout_s, connect=min(spec.timeout_s, 5.0)),
            follow_redirects=False,
            trust_env=False,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        ) as client:
            for i, r in enumerate(spec.requests):
                ctx["steps"][r.name] = self._one_request(client, i, r, ctx, secrets, deadline, urls)
        steps = ctx["steps"]
        value = steps[spec.requests[0].name] if len(spec.requests) == 1 else dict(steps)
        answer_ctx = {"args": ctx["args"], "steps": steps, "const": spec.constants, "value": value}
        text = self._render("answer", answer_ctx, "the answer template")
        sources = list(urls)
        for j in range(len(spec.sources)):
            extra = self._render(f"source.{j}", answer_ctx, "a sources template")
            if extra and extra not in sources:
                sources.append(extra)
        return ExpertResult(value=value, text=text, sources=sources, data={"steps": steps, "urls": urls})

    # -- internals -----------------------------------------------------------------------
    def _secrets(self) -> dict[str, str]:
        out = {}
        for key, env_name in self.spec.secrets.items():
            value = self.env.get(env_name)
            if not value:
                raise HTTPExpertError(
                    f"The {self.title} expert needs the environment variable {env_name} "
                    f"(its '{key}' secret); set it and ask again.",
                    "config",
                )
            out[key] = value
        self._secret_values = [v for v in out.values() if v]
        return out

    def _redact(self, text: str) -> str:
        for value in getattr(self, "_secret_values", []):
            text = text.replace(value, "***")
            text = text.replace(urllib.parse.quote(value, safe=""), "***")
            text = text.replace(urllib.parse.quote_plus(value), "***")
        return text

    def _render(self, key: str, ctx: dict[str, Any], what: str) -> str:
        try:
            return self._templates[key].render(**ctx).strip()
        except TemplateError as exc:
            raise HTTPExpertError(f"'{self.name}': {what} failed to render: {exc}", "template") from None
        except (TypeError, ValueError, KeyError, IndexError, AttributeError, ArithmeticError) as exc:
            raise HTTPExpertError(
                f"'{self.name}': {what} failed to render: {type(exc).__name__}: {self._redact(str(exc))}", "template"
            ) from None

    def _render_json(self, i: int, node: Any, ctx: dict[str, Any], path: str = "") -> Any:
        if isinstance(node, str):
            return self._render(f"{i}.json.{path}", ctx, f"the JSON body at {path or '(root)'}")
        if isinstance(node, dict):
            return {k: self._render_json(i, v, ctx, f"{path}.{k}" if path else str(k)) for k, v in node.items()}
        if isinstance(node, list):
            return [self._render_json(i, v, ctx, f"{path}[{n}]") for n, v in enumerate(node)]
        return node

    def _check_url(self, url: httpx.URL, shown: str) -> None:
        if url.scheme not in ("http", "https"):
            raise HTTPExpertError(
                f"Refused to request {shown}: only http and https URLs are allowed.", "refused", url.host or None
            )
        if not url.host:
            raise HTTPExpertError(f"Refused to request {shown}: the URL has no host.", "refused")
        origin = _origin(url)
        if origin not in self.allowed:
            allowed = ", ".join(sorted(_show_origin(o) for o in self.allowed))
            raise HTTPExpertError(
                f"Refused to request {_show_origin(origin)}: the {self.title} expert may only contact {allowed}.",
                "refused",
                _show_origin(origin),
            )

    def _one_request(
        self,
        client: httpx.Client,
        i: int,
        r: RequestSpec,
        ctx: dict[str, Any],
        secrets: dict[str, str],
        deadline: float,
        urls: list[str],
    ) -> Any:
        where = f"request '{r.name}'"
        url_text = self._render(f"{i}.url", ctx, f"the URL of {where}")
        secret_ctx = {**ctx, "secrets": secrets}
        params = {k: self._render(f"{i}.params.{k}", secret_ctx, f"query parameter '{k}'") for k in r.params}
        params = {k: v for k, v in params.items() if v != ""}  # an empty template leaves the parameter out
        headers = {}
        for k in {**self.spec.headers, **r.headers}:
            v = self._render(f"{i}.headers.{k}", secret_ctx, f"header '{k}'")
            if any(c in v for c in "\r\n\x00"):
                raise HTTPExpertError(
                    f"Refused to send header '{k}': its value contains a line break or NUL character.", "refused"
                )
            headers[k] = v
        content_kwargs: dict[str, Any] = {}
        if r.json_body is not None:
            content_kwargs["json"] = self._render_json(i, r.json_body, secret_ctx)
        elif r.form is not None:
            content_kwargs["data"] = {k: self._render(f"{i}.form.{k}", secret_ctx, f"form field '{k}'") for k in r.form}
        try:
            url = httpx.URL(url_text)
            if params:
                url = url.copy_merge_params(params)
        except Exception as exc:  # noqa: BLE001 - httpx.InvalidURL and friends
            raise HTTPExpertError(f"Refused to request {url_text[:120]!r}: not a valid URL ({exc}).", "refused") from None
        shown = self._redact(str(url))
        self._check_url(url, shown)

        resp = self._send_following_redirects(client, r.method, url, headers, content_kwargs, deadline)
        final_shown = self._redact(str(resp.url))
        urls.append(final_shown)
        host = _show_origin(_origin(resp.url))
        err_ctx = {**ctx, "host": host, "status": resp.status}
        if resp.status in r.on_status:
            raise HTTPExpertError(
                self._render(f"{i}.on_status.{resp.status}", err_ctx, f"the on_status {resp.status} message"),
                "not_found",
                host,
            )
        if resp.status >= 400:
            detail = self._api_message(i, r, resp)
            kind = "server_error" if resp.status >= 500 or resp.status == 429 else "client_error"
            prefix = f"Could not get an answer from {host}" if kind == "server_error" else f"{host} refused the request"
            raise HTTPExpertError(
                f"{prefix}: HTTP {resp.status} {_reason(resp.status)}{detail}.", kind, host
            )
        if r.response == "text":
            data: Any = resp.body.decode(_charset(resp.headers), errors="replace")
        else:
            try:
                data = json.loads(resp.body.decode(_charset(resp.headers), errors="strict"))
            except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
                raise HTTPExpertError(
                    f"{host} sent a response that is not valid JSON ({type(exc).__name__}: {str(exc)[:80]}).",
                    "bad_response",
                    host,
                ) from None
        if r.require:
            try:
                present = self._jmes[f"{i}.require"].search(data)
            except jmespath.exceptions.JMESPathError as exc:
                raise HTTPExpertError(f"{host} sent an unexpected response ({exc}).", "bad_response", host) from None
            if present in (None, [], {}, "", False):
                raise HTTPExpertError(self._render(f"{i}.not_found", err_ctx, "the not_found message"), "not_found", host)
        return self._extract(i, r, data, host)

    def _extract(self, i: int, r: RequestSpec, data: Any, host: str) -> Any:
        if r.extract is None:
            return data
        try:
            if isinstance(r.extract, str):
                return self._jmes[f"{i}.extract.{_SELF}"].search(data)
            return {k: self._jmes[f"{i}.extract.{k}"].search(data) for k in r.extract}
        except jmespath.exceptions.JMESPathError as exc:
            raise HTTPExpertError(
                f"{host} sent a response of an unexpected shape ({exc}).", "bad_response", host
            ) from None

    def _api_message(self, i: int, r: RequestSpec, resp: _Response) -> str:
        """The API's own error message from a JSON error body (``error_message`` or common keys), if any."""
        try:
            body = json.loads(resp.body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            return ""
        msg: Any = None
        if r.error_message:
            try:
                msg = self._jmes[f"{i}.error_message"].search(body)
            except jmespath.exceptions.JMESPathError:
                msg = None
        if msg is None and isinstance(body, dict):
            msg = next((body[k] for k in ("message", "detail", "error", "reason") if isinstance(body.get(k), str)), None)
        if not isinstance(msg, str) or not msg.strip():
            return ""
        msg = " ".join(msg.split())
        return f" ({self._redact(msg[:200])})"

    def _send_following_redirects(
        self,
        client: httpx.Client,
        method: str,
        url: httpx.URL,
        headers: dict[str, str],
        content_kwargs: dict[str, Any],
        deadline: float,
    ) -> _Response:
        for hop in range(self.spec.max_redirects + 1):
            resp = self._send_with_retries(client, method, url, headers, content_kwargs, deadline)
            if resp.status not in (301, 302, 303, 307, 308) or "location" not in resp.headers:
                return resp
            try:
                target = url.join(resp.headers["location"])
            except Exception:  # noqa: BLE001
                raise HTTPExpertError(
                    f"{_show_origin(_origin(url))} redirected to an invalid URL.", "bad_response", url.host
                ) from None
            shown = self._redact(str(target))
            try:
                self._check_url(target, shown)
            except HTTPExpertError as exc:
                raise HTTPExpertError(
                    f"Refused a redirect from {_show_origin(_origin(url))}: {exc}", "refused", exc.host
                ) from None
            if _origin(target) != _origin(url):
                # never carry credentials to another origin, even an allowed one
                headers = {k: v for k, v in headers.items() if k.lower() not in ("authorization", "cookie")}
            if resp.status == 303 or (resp.status in (301, 302) and method == "POST"):
                method, content_kwargs = "GET", {}
            url = target
        raise HTTPExpertError(
            f"{_show_origin(_origin(url))} redirected more than {self.spec.max_redirects} times; gave up.",
            "bad_response",
            url.host,
        )

    def _send_with_retries(
        self,
        client: httpx.Client,
        method: str,
        url: httpx.URL,
        headers: dict[str, str],
        content_kwargs: dict[str, Any],
        deadline: float,
    ) -> _Response:
        spec = self.spec
        host = _show_origin(_origin(url))
        attempts = 0
        while True:
            attempts += 1
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise HTTPExpertError(
                    f"Could not reach {host}: no complete answer within {spec.deadline_s:g} s.", "timeout", host, attempts - 1
                )
            retry_after: float | None = None
            try:
                resp = self._send_once(client, method, url, headers, content_kwargs, deadline)
                if resp.status not in _RETRY_STATUS or method not in _IDEMPOTENT:
                    return resp
                failure = HTTPExpertError(
                    f"Could not get an answer from {host}: HTTP {resp.status} {_reason(resp.status)}"
                    f" (after {attempts} attempt{'s' if attempts > 1 else ''}).",
                    "server_error",
                    host,
                    attempts,
                )
                retry_after = _retry_after(resp.headers.get("retry-after"))
                last_resp = resp
            except httpx.TimeoutException as exc:
                failure = HTTPExpertError(
                    f"Could not reach {host}: no answer within {spec.timeout_s:g} s "
                    f"({type(exc).__name__}; {attempts} attempt{'s' if attempts > 1 else ''}).",
                    "timeout",
                    host,
                    attempts,
                )
                last_resp = None
                if method not in _IDEMPOTENT and not isinstance(exc, httpx.ConnectTimeout):
                    raise failure from None
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError,
                    httpx.ProxyError, httpx.UnsupportedProtocol, httpx.LocalProtocolError) as exc:
                reason = self._redact(" ".join(str(exc).split()))[:160] or type(exc).__name__
                failure = HTTPExpertError(
                    f"Could not reach {host}: {reason} ({attempts} attempt{'s' if attempts > 1 else ''}).",
                    "unreachable",
                    host,
                    attempts,
                )
                last_resp = None
                if isinstance(exc, (httpx.UnsupportedProtocol, httpx.LocalProtocolError)):
                    failure.kind = "refused"
                    raise failure from None
                if method not in _IDEMPOTENT and not isinstance(exc, httpx.ConnectError):
                    raise failure from None
            if attempts > spec.retries:
                if last_resp is not None:
                    return last_resp  # the caller turns the final 5xx into a message (with the API's own detail)
                raise failure
            delay = min(spec.backoff_s * (2 ** (attempts - 1)), _MAX_BACKOFF_S)
            if retry_after is not None and retry_after <= _MAX_BACKOFF_S:
                delay = max(delay, retry_after)
            if time.monotonic() + delay >= deadline:
                if last_resp is not None:
                    return last_resp
                raise failure
            time.sleep(delay)

    def _send_once(
        self,
        client: httpx.Client,
        method: str,
        url: httpx.URL,
        headers: dict[str, str],
        content_kwargs: dict[str, Any],
        deadline: float,
    ) -> _Response:
        cap = self.spec.max_response_bytes
        host = _show_origin(_origin(url))
        request = client.build_request(method, url, headers=headers, **content_kwargs)
        resp = client.send(request, stream=True)
        try:
            declared = resp.headers.get("content-length")
            if declared is not None and declared.strip().isdigit() and int(declared) > cap and resp.status_code < 300:
                raise HTTPExpertError(
                    f"{host} sent a response of {int(declared):,} bytes; the limit is {cap:,}.", "too_large", host
                )
            body = bytearray()
            if resp.status_code not in (301, 302, 303, 307, 308):
                for chunk in resp.iter_bytes():  # as the network delivers it
                    body += chunk
                    if len(body) > cap:
                        raise HTTPExpertError(
                            f"{host} sent more than {cap:,} bytes; stopped reading.", "too_large", host
                        )
                    if time.monotonic() > deadline:
                        raise HTTPExpertError(
                            f"Could not reach {host}: the response did not finish within "
                            f"{self.spec.deadline_s:g} s.",
                            "timeout",
                            host,
                        )
            return _Response(resp.status_code, resp.headers, bytes(body), resp.url)
        except httpx.DecodingError as exc:
            raise HTTPExpertError(f"{host} sent a body that could not be decoded ({exc}).", "bad_response", host) from None
        finally:
            resp.close()


_SELF = "(value)"


def _extract_items(extract: str | dict[str, str] | None) -> list[tuple[str, str]]:
    if extract is None:
        return []
    if isinstance(extract, str):
        return [(_SELF, extract)]
    return list(extract.items())


def _walk_strings(node: Any, fn: Any, path: str = "") -> None:
    if isinstance(node, str):
        fn(node, path)
    elif isinstance(node, dict):
        for k, v in node.items():
            _walk_strings(v, fn, f"{path}.{k}" if path else str(k))
    elif isinstance(node, list):
        for n, v in enumerate(node):
            _walk_strings(v, fn, f"{path}[{n}]")


def _charset(headers: httpx.Headers) -> str:
    ctype = headers.get("content-type", "")
    m = re.search(r"charset=([\w.-]+)", ctype, re.IGNORECASE)
    if m:
        try:
            "".encode(m.group(1))
            return m.group(1)
        except LookupError:
            pass
    return "utf-8"


def _reason(status: int) -> str:
    try:
        from http import HTTPStatus

        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    return max(0.0, (when - _dt.datetime.now(_dt.timezone.utc)).total_seconds())


def _validation_text(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ())) or '(definition)'}: {e.get('msg', 'invalid')}" for e in exc.errors()
    )



def _read_definition(path: Path) -> dict[str, Any]:
    """The mapping in a ``.json`` file, or in a YAML file (any other suffix).

    Raises:
        ValueError: not valid JSON/YAML, or not a mapping (the message names the file).
        OSError: the file cannot be read.
    """
    text = path.read_text(encoding="utf-8")
    is_json = path.suffix.lower() == ".json"
    try:
        data = json.loads(text) if is_json else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: not valid {'JSON' if is_json else 'YAML'}: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a definition must be a mapping, got {type(data).__name__}")
    return data


def load_http_experts(directory: str | Path | None = None, **kwargs: Any) -> list[HTTPAPIExpert]:
    """Every HTTP API expert defined in ``directory`` (``*.yaml``, ``*.yml``, ``*.json``), sorted by file name.

    Args:
        directory: a folder of definitions; default :data:`DATA_DIR` (the shipped ones).
        **kwargs: passed to :meth:`HTTPAPIExpert.from_file` (``env``, ``transport``, timeouts ...);
            ``base_urls`` may map an expert name to that expert's overrides.

    Raises:
        ValueError: a file is not a valid definition (the message names the file).
    """
    folder = Path(directory) if directory is not None else DATA_DIR
    base_urls_by_name = kwargs.pop("base_urls", None) or {}
    out = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in (".yaml", ".yml", ".json"):
            continue
        data = _read_definition(path)
        name = data.get("name")
        try:
            out.append(HTTPAPIExpert(data, base_urls=base_urls_by_name.get(name), **kwargs))
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
    return out


def builtin_http_experts(**kwargs: Any) -> list[HTTPAPIExpert]:
    """The shipped HTTP API experts: currency (Frankfurter, ECB rates), weather (Open-Meteo), wikipedia."""
    return load_http_experts(DATA_DIR, **kwargs)
