"""The layout of docs/architecture.md holds: layer contracts, no import cycles, a small package root."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from qagent.agents.base import Agent
from qagent.plugins.registries import AGENTS

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_hold():
    """pyproject.toml's [tool.importlinter] contracts: serve stands alone, plugins and agents/envs
    import nothing above them, cli > export > training > agents > envs > plugins, no cycles."""
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout and "5 kept" in result.stdout


def test_the_package_root_holds_only_the_entry_points():
    modules = sorted(p.name for p in (ROOT / "qagent").glob("*.py"))
    assert modules == ["__init__.py", "__main__.py", "cli.py", "config.py", "errors.py", "export.py"]


@pytest.mark.parametrize("name", sorted(AGENTS.names()))
def test_every_registered_agent_implements_the_interface(name):
    assert issubclass(AGENTS.get(name), Agent)


def test_no_module_names_the_old_loops():
    sources = "\n".join(p.read_text() for p in (ROOT / "qagent").rglob("*.py"))
    for gone in ("hdqn_training", "trainer_class", "HDQNTrainer", "SB3Trainer", "isinstance(agent, HDQNAgent)"):
        assert gone not in sources
