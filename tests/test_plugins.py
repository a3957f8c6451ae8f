"""Plugins: examples/plugin_expert is pip-installed (offline, into a temporary folder), discovered and routed to."""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mrkl import MRKL, ExpertRegistry
from mrkl.errors import ExpertError
from tests.conftest import ScriptedBackend, card_scorer

PLUGIN = Path(__file__).resolve().parent.parent / "examples" / "plugin_expert"
ORIGIN = "plugin:mrkl-roman:roman_numeral"


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory):
    """pip-install (a copy of) the example plugin into a temporary folder put on sys.path; removed afterwards."""
    target = tmp_path_factory.mktemp("site")
    source = tmp_path_factory.mktemp("src") / "plugin_expert"
    shutil.copytree(PLUGIN, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--disable-pip-version-check", "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    assert (target / "mrkl_roman" / "__init__.py").is_file()
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    yield target
    sys.path.remove(str(target))
    sys.modules.pop("mrkl_roman", None)
    importlib.invalidate_caches()


def test_plugin_is_discovered_with_its_origin(installed_plugin):
    registry = ExpertRegistry()
    added = registry.load_plugins()
    assert "roman_numeral" in added
    assert registry.origins["roman_numeral"] == ORIGIN
    assert registry.load_errors == []
    e = registry.get("roman_numeral")
    assert e.run(e.parse_args({"value": "1994"})).text == "MCMXCIV"
    assert e.run(e.parse_args({"value": "mmxxvi"})).text == "2026"
    with pytest.raises(ExpertError, match="not a standard Roman numeral"):
        e.run(e.parse_args({"value": "IIII"}))
    with pytest.raises(ExpertError, match="1 to 3999"):
        e.run(e.parse_args({"value": "4000"}))


def test_plugin_is_routed_to(installed_plugin):
    system = MRKL(
        experts=None,  # built-in experts + installed plugins, as a user gets them
        backend=ScriptedBackend(scorer=card_scorer("roman_numeral"), outputs=['value": "1994"}']),
    )
    assert system.registry.origins["roman_numeral"] == ORIGIN
    assert system.registry.origins["calculator"] == "builtin"
    answer = system.ask("what is 1994 in Roman numerals?")
    assert answer.expert == "roman_numeral"
    assert answer.text == "MCMXCIV"
    assert answer.trace.decision.args == {"value": "1994"}


def test_cli_lists_where_each_expert_came_from(installed_plugin):
    from mrkl.cli import app

    result = CliRunner().invoke(app, ["experts"])
    assert result.exit_code == 0, result.output
    assert f"roman_numeral  [{ORIGIN}]" in result.output
    assert "calculator  [builtin]" in result.output
    listed = {e["name"]: e["origin"] for e in json.loads(CliRunner().invoke(app, ["experts", "--json"]).output)}
    assert listed["roman_numeral"] == ORIGIN and listed["database"] == "builtin"


def test_a_broken_plugin_is_reported_not_fatal(installed_plugin, tmp_path, monkeypatch):
    # a second installed distribution whose entry point fails to import
    dist = tmp_path / "broken_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[mrkl.experts]\nbad = no_such_module_xyz:thing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = ExpertRegistry()
    added = registry.load_plugins()
    assert "roman_numeral" in added
    assert [label for label, _ in registry.load_errors] == ["broken-plugin:bad"]
    assert "no_such_module_xyz" in registry.load_errors[0][1]
