"""The mrkl command line: listing, bad input, errors as one line (fast) and a real ask (slow)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from mrkl.cli import app

runner = CliRunner()


def test_experts_lists_builtins_with_origin_and_schema():
    result = runner.invoke(app, ["experts"])
    assert result.exit_code == 0, result.output
    assert "calculator  [builtin]" in result.output
    assert "database  [builtin]" in result.output
    assert "expression: string (required)" in result.output
    assert "table: string (required)" in result.output


def test_experts_json_is_machine_readable():
    result = runner.invoke(app, ["experts", "--json"])
    data = json.loads(result.output)
    by_name = {d["name"]: d for d in data}
    assert by_name["calculator"]["args_schema"]["required"] == ["expression"]
    assert by_name["database"]["origin"] == "builtin"
    assert len(by_name["database"]["examples"]) >= 8


@pytest.mark.parametrize("question, message", [("", "the question is empty"), ("   ", "the question is empty")])
def test_empty_question_is_one_line_error_exit_2(question, message):
    result = runner.invoke(app, ["ask", question])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {message}"


def test_huge_question_is_refused_before_loading_a_model():
    result = runner.invoke(app, ["route", "x" * 50_000, "--model", "no-such-model"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: the question is 50,000 characters long; the limit is 4,000"


def test_unknown_model_is_one_line_error_exit_1():
    result = runner.invoke(app, ["ask", "what is 2 plus 2?", "--model", "no-such-model"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown model 'no-such-model'")


def test_console_script_is_installed():
    exe = shutil.which("mrkl") or os.path.join(os.path.dirname(sys.executable), "mrkl")
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for command in ("ask", "route", "experts"):
        assert command in out.stdout


@pytest.mark.slow
def test_ask_json_end_to_end_through_the_console_script():
    exe = shutil.which("mrkl") or os.path.join(os.path.dirname(sys.executable), "mrkl")
    out = subprocess.run(
        [exe, "ask", "what is fifty seven plus three?", "--json"], capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["expert"] == "calculator" and data["text"] == "60"
    # the default two-stage router takes the calculator's own parse of the question
    assert data["trace"]["decision"]["args"] == {"expression": "what is fifty seven plus three?"}
    assert data["trace"]["decision"]["raw_output"] == "(expert's symbolic parser)"
    shortlist = [n for n, _ in data["trace"]["decision"]["shortlist"]]
    assert shortlist[0] == "calculator" and len(shortlist) == 3  # k = 3 of the built-in experts
    assert data["trace"]["steps"][0]["result"] == "60"


def test_a_question_starting_with_a_dash_is_a_question_not_an_option():
    # parsed as the question: it reaches model resolution (one-line error), not "No such option"
    result = runner.invoke(app, ["ask", "-5 + 3", "--model", "no-such-model"])
    assert result.exit_code == 1, result.output
    assert result.output.strip().startswith("error: unknown model 'no-such-model'")


def test_missing_bfcl_data_is_reported_before_any_model_loads(tmp_path):
    result = runner.invoke(app, ["eval", "bfcl", "--category", "simple", "--data", str(tmp_path), "--model", "no-such-model"])
    assert result.exit_code == 1
    assert result.output.strip() == f"error: no BFCL file {tmp_path / 'BFCL_v4_simple_python.json'}"
    (tmp_path / "BFCL_v4_simple_python.json").write_text("")
    result = runner.invoke(app, ["eval", "bfcl", "--category", "simple", "--data", str(tmp_path), "--model", "no-such-model"])
    assert result.exit_code == 1  # the other files are needed for calibration, and said so
    assert result.output.strip() == (f"error: no BFCL file {tmp_path / 'BFCL_v4_multiple.json'}"
                                     " (mrkl's none score is calibrated on held-out multiple questions too)")
