"""The ``mrkl`` command line: ask, route, list experts.

The CLI holds no logic of its own: it parses options, calls :class:`mrkl.MRKL`
and prints. Every error prints one line ``error: ...`` on stderr and exits with
status 2 (bad input) or 1 (anything else).
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

import typer

from llm_backends.errors import BackendError
from llm_backends.resolve import DEFAULT_MODEL
from mrkl.errors import InvalidQuestionError, MRKLError

app = typer.Typer(
    help="mrkl: route questions to experts (calculator, database, ...) with a language model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ModelOpt = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Model alias, .gguf file or model folder.")
PCWOpt = typer.Option(
    None,
    "--pcw-windows",
    min=1,
    help="Parallel Context Windows for the expert choice: pack the routing examples into B windows "
    "once they exceed one window (--pcw-window-tokens).",
)
PCWTokensOpt = typer.Option(1024, "--pcw-window-tokens", min=1, help="One PCW window's token budget.")


def _fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@contextmanager
def _errors() -> Iterator[None]:
    """Turn mrkl's errors into one line on stderr: exit 2 for a bad question, 1 otherwise."""
    try:
        yield
    except InvalidQuestionError as exc:
        _fail(str(exc), 2)
    except (MRKLError, BackendError) as exc:
        _fail(str(exc))


class _LazyRouter:
    """An LLMRouter with options, built on first use (a bad question is refused before the model loads)."""

    def __init__(self, backend: Any, **options: Any) -> None:
        self._backend, self._options, self._router = backend, options, None

    def _get(self) -> Any:
        if self._router is None:
            from router.llm_router import LLMRouter

            self._router = LLMRouter(self._backend(), **self._options)
        return self._router

    def route(self, question: str, registry: Any) -> Any:
        return self._get().route(question, registry)

    def repair_args(self, *args: Any, **kwargs: Any) -> Any:
        return self._get().repair_args(*args, **kwargs)


def _system(model: str, pcw_windows: int | None = None, pcw_window_tokens: int = 1024) -> Any:
    from mrkl.system import MRKL

    if pcw_windows and pcw_windows > 1:
        router = _LazyRouter(lambda: system.backend, pcw_windows=pcw_windows, pcw_window_tokens=pcw_window_tokens)
        system = MRKL(model=model, router=router)
        return system
    return MRKL(model=model)


def _dump(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, ensure_ascii=False))


# a question may start with "-" ("-5 + 3"): unknown option-like words are taken as the question
_QUESTION_CONTEXT = {"ignore_unknown_options": True}


@app.command(context_settings=_QUESTION_CONTEXT)
def ask(
    question: str = typer.Argument(..., help="The question, in plain English."),
    trace: bool = typer.Option(False, "--trace", "-t", help="Print the trace: decision, arguments, results, timings."),
    as_json: bool = typer.Option(False, "--json", help="Print the answer and its trace as JSON."),
    model: str = ModelOpt,
    pcw_windows: Optional[int] = PCWOpt,
    pcw_window_tokens: int = PCWTokensOpt,
) -> None:
    """Answer a question with the experts (or the language model as fallback)."""
    with _errors():
        answer = _system(model, pcw_windows, pcw_window_tokens).ask(question)
    if as_json:
        _dump(answer.to_dict())
        return
    typer.echo(answer.text)
    if trace:
        typer.echo("")
        typer.echo(f"answered by: {answer.expert}")
        typer.echo(answer.trace.format())


@app.command(context_settings=_QUESTION_CONTEXT)
def route(
    question: str = typer.Argument(..., help="The question to route (nothing is run)."),
    as_json: bool = typer.Option(False, "--json", help="Print the decision as JSON."),
    model: str = ModelOpt,
    pcw_windows: Optional[int] = PCWOpt,
    pcw_window_tokens: int = PCWTokensOpt,
) -> None:
    """Show the router's decision (expert, arguments, confidence) without running anything."""
    with _errors():
        decision = _system(model, pcw_windows, pcw_window_tokens).route(question)
    if as_json:
        _dump(decision.to_dict())
        return
    typer.echo(f"expert: {decision.expert or 'none (fallback to the language model)'}")
    typer.echo(f"confidence: {decision.confidence:.3f}")
    if decision.pcw_windows:
        typer.echo(f"pcw windows: {decision.pcw_windows}")
    if decision.args is not None:
        typer.echo(f"args: {json.dumps(decision.args, ensure_ascii=False)}")
    if decision.error:
        typer.echo(f"error: {decision.error}")
    if decision.shortlist:
        typer.echo("shortlist: " + ", ".join(f"{n} {s:.3f}" for n, s in decision.shortlist))
    for note in decision.notes:
        typer.echo(f"note: {note}")
    alts = ", ".join(f"{n} {p:.3f}" for n, p in decision.alternatives)
    if alts:
        typer.echo(f"alternatives: {alts}")
    typer.echo("timings: " + ", ".join(f"{k} {v:.2f}s" for k, v in decision.timings.items()))


@app.command()
def experts(as_json: bool = typer.Option(False, "--json", help="Print names, origins and argument schemas as JSON.")) -> None:
    """List the available experts, where each came from, and their argument schemas."""
    from mrkl.system import default_registry

    with _errors():
        registry = default_registry()
    if as_json:
        _dump(registry.json_schema())
        return
    for info in registry.json_schema():
        typer.echo(f"{info['name']}  [{info['origin']}]")
        typer.echo(f"  {info['description'].splitlines()[0][:200]}")
        props = info["args_schema"].get("properties", {})
        required = set(info["args_schema"].get("required", []))
        for pname, p in props.items():
            typ = p.get("type") or "/".join(x.get("type", "?") for x in p.get("anyOf", [])) or "object"
            typer.echo(f"    {pname}: {typ}{' (required)' if pname in required else ''}")
    for label, err in registry.load_errors:
        typer.echo(f"plugin {label} failed to load: {err}", err=True)


eval_app = typer.Typer(help="Evaluate routing and argument extraction on public benchmarks.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")


@eval_app.command("bfcl")
def eval_bfcl(
    category: list[str] = typer.Option(..., "--category", "-c", help="simple, multiple or irrelevance (repeatable)."),
    data: str = typer.Option(..., "--data", help="The BFCL folder (BFCL_v4_*.json, possible_answer/)."),
    limit: Optional[int] = typer.Option(None, "--limit", "-n", min=1, help="First N questions per category."),
    backend: str = typer.Option(DEFAULT_MODEL, "--backend", "--model", "-m", help="Model alias, .gguf file or model folder."),
    baseline: list[str] = typer.Option([], "--baseline", "-b", help="Also run a baseline: naive or constrained (repeatable)."),
    json_file: Optional[str] = typer.Option(None, "--json", help="Write the table and every question's outcome to this file."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Print each question's outcome."),
    calibrate: int = typer.Option(20, "--calibrate", min=1, help="Calibration questions per category for mrkl's none score (taken from the end of each file, never evaluated)."),
    none_target: Optional[float] = typer.Option(0.85, "--none-target", min=0.0, max=1.0, help="No-call rate on calibration irrelevance questions the none score must reach; 0 for balanced accuracy."),
    offset: int = typer.Option(0, "--offset", min=0, help="Skip the first N questions of each category (e.g. --offset 40 --limit 40: questions 40..79)."),
) -> None:
    """Score mrkl (and baselines) on BFCL with its AST rules: exact call, expert, valid JSON, s/question."""
    from mrkl.bfcl import CATEGORIES, evaluate, format_table

    for c in category:
        if c not in CATEGORIES:
            _fail(f"unknown category {c!r}; choose from {', '.join(CATEGORIES)}", 2)
    for b in baseline:
        if b not in ("naive", "constrained"):
            _fail(f"unknown baseline {b!r}; choose naive or constrained", 2)
    for c in CATEGORIES:  # a missing file is reported before the model loads
        qfile = Path(data) / f"BFCL_v4_{CATEGORIES[c]}.json"
        if not qfile.is_file():
            why = "" if c in category else f" (mrkl's none score is calibrated on held-out {c} questions too)"
            _fail(f"no BFCL file {qfile}{why}")
    with _errors():
        from llm_backends.transformers_backend import TransformersBackend

        model = TransformersBackend(backend)
        rows = evaluate(
            model, data, category, systems=["mrkl", *baseline], limit=limit, calibrate_per_category=calibrate,
            min_no_call=none_target or None, offset=offset,
            progress=(lambda line: typer.echo(line, err=True)) if verbose else None,
        )
    typer.echo(f"BFCL, model {model.name}")
    typer.echo(format_table(rows))
    if json_file:
        payload = {"model": model.name, "limit": limit, "offset": offset, "rows": [r.row() for r in rows],
                   "cases": {f"{r.system}/{r.category}": [c.__dict__ for c in r.cases] for r in rows}}
        try:
            with open(json_file, "w", encoding="utf-8") as fh:
                json.dump(payload, fh, indent=2, ensure_ascii=False, default=str)
        except OSError as exc:
            _fail(f"cannot write {json_file}: {exc}")


from mrkl.compress_cli import compress_app  # noqa: E402

app.add_typer(compress_app, name="compress")


def main(argv: Optional[list[str]] = None) -> None:
    """Console-script entry point (``mrkl``)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        app(args=argv, prog_name="mrkl")
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
