"""Plugin discovery: files, modules, QAGENT_PLUGINS, entry points, and plugins that break."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from conftest import EXAMPLE_PLUGIN, run_qagent

from qagent.errors import PluginError
from qagent.plugins import AGENTS, ENVS, EXPLORATIONS
from qagent.plugins.discovery import load_plugins, loaded_plugins, plugin_sources
from qagent.plugins.registry import Source

PLUGIN = textwrap.dedent(
    '''
    from qagent import register_env

    @register_env("{name}")
    def make(**kwargs):
        """{doc}"""
        import gymnasium
        return gymnasium.make("CartPole-v1")
    '''
)


def write_plugin(folder: Path, filename: str, name: str, doc: str = "A test env.") -> Path:
    path = folder / filename
    path.write_text(PLUGIN.format(name=name, doc=doc))
    return path


def test_file_plugin_registers_with_file_source(tmp_path):
    path = write_plugin(tmp_path, "my_env.py", "file-env")
    [result] = load_plugins([str(path)], ambient=False)
    assert result.ok and result.registered == [("env", "file-env")]
    entry = ENVS.entry("file-env")
    assert entry.source == Source("file", str(path)) and entry.description == "A test env."
    assert str(Source("file", str(path))) in plugin_sources()


def test_module_plugin(tmp_path, monkeypatch):
    write_plugin(tmp_path, "qagent_test_module_plugin.py", "module-env")
    monkeypatch.syspath_prepend(str(tmp_path))
    [result] = load_plugins(["qagent_test_module_plugin"], ambient=False)
    assert result.ok
    assert ENVS.entry("module-env").source == Source("module", "qagent_test_module_plugin")


def test_env_var_plugins_are_loaded(tmp_path, monkeypatch):
    a = write_plugin(tmp_path, "a.py", "env-var-a")
    b = write_plugin(tmp_path, "b.py", "env-var-b")
    monkeypatch.setenv("QAGENT_PLUGINS", f"{a}:{b}")
    results = load_plugins([])
    assert [r.origin for r in results] == ["QAGENT_PLUGINS", "QAGENT_PLUGINS"]
    assert "env-var-a" in ENVS and "env-var-b" in ENVS


def make_distribution(folder: Path, module: str, env_name: str) -> None:
    """A minimal installed distribution with a qagent.plugins entry point."""
    write_plugin(folder, f"{module}.py", env_name)
    info = folder / "qagent_test_dist-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: qagent-test-dist\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[qagent.plugins]\ntest-plugin = {module}\n")


def test_entry_point_plugin(tmp_path, monkeypatch):
    make_distribution(tmp_path, "qagent_test_ep_module", "entry-point-env")
    monkeypatch.syspath_prepend(str(tmp_path))
    results = load_plugins([])
    [result] = [r for r in results if r.origin == "entry point"]
    assert result.ok and result.registered == [("env", "entry-point-env")]
    assert ENVS.entry("entry-point-env").source == Source("package", "qagent-test-dist (test-plugin)")


def test_loading_twice_is_harmless(tmp_path):
    path = write_plugin(tmp_path, "once.py", "loaded-once")
    load_plugins([str(path)], ambient=False)
    load_plugins([str(path)], ambient=False)
    assert ENVS.names("loaded-once") == ["loaded-once"]


def test_broken_plugin_reports_file_line_and_rolls_back(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text(
        textwrap.dedent(
            """
            from qagent import register_env

            @register_env("half-registered")
            def make():
                pass

            undefined_name + 1
            """
        )
    )
    with pytest.raises(PluginError) as info:
        load_plugins([str(path)], ambient=False)
    message = info.value.message
    assert "failed to load" in message and "NameError" in message and f"{path}:8" in message
    assert "half-registered" not in ENVS  # rolled back, the rest of qagent keeps working
    assert "dqn" in AGENTS
    assert not loaded_plugins()[-1].ok


def test_duplicate_across_plugins_names_both(tmp_path):
    first = write_plugin(tmp_path, "first.py", "same-name")
    second = write_plugin(tmp_path, "second.py", "same-name")
    load_plugins([str(first)], ambient=False)
    with pytest.raises(PluginError) as info:
        load_plugins([str(second)], ambient=False)
    assert "registered twice" in info.value.message
    assert str(first) in info.value.message and str(second) in info.value.message


def test_missing_plugin_file_and_module(tmp_path):
    with pytest.raises(PluginError, match="no such file"):
        load_plugins([str(tmp_path / "missing.py")], ambient=False)
    with pytest.raises(PluginError, match="No module named"):
        load_plugins(["qagent_no_such_module_anywhere"], ambient=False)


def test_ambient_failures_only_warn(tmp_path, monkeypatch):
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    monkeypatch.setenv("QAGENT_PLUGINS", str(broken))
    [result] = load_plugins([])
    assert not result.ok and "RuntimeError: boom" in result.error
    with pytest.raises(Exception) as info:  # unknown names then mention the failed plugin
        AGENTS.get("missing-agent")
    assert "broken.py" in info.value.hint


def test_example_plugin_adds_one_of_each_kind():
    [result] = load_plugins([str(EXAMPLE_PLUGIN)], ambient=False)
    assert result.ok
    assert sorted(result.registered) == [("agent", "mellowmax-dqn"), ("env", "corridor"), ("exploration", "ez-greedy")]
    assert EXPLORATIONS.entry("ez-greedy").source.kind == "file"


# ---------------------------------------------------------------------- through the CLI


def test_cli_lists_plugins_from_every_source(tmp_path):
    plugin = write_plugin(tmp_path, "cli_plugin.py", "cli-file-env", doc="Listed by the CLI.")
    env_plugin = write_plugin(tmp_path, "env_var_plugin.py", "cli-env-var-env")
    site = tmp_path / "site"
    site.mkdir()
    make_distribution(site, "qagent_cli_ep_module", "cli-entry-point-env")
    result = run_qagent(
        "plugins",
        "list",
        "--plugin",
        str(plugin),
        cwd=tmp_path,
        env={"QAGENT_PLUGINS": str(env_plugin), "PYTHONPATH": str(site), "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for needle in (
        "cli-file-env",
        "Listed by the CLI.",
        "cli-env-var-env",
        "cli-entry-point-env",
        "qagent-test-dist",
        "built-in",
        "dqn",
        "mlp",
        "epsilon-greedy",
    ):
        assert needle in out, needle


def test_cli_broken_plugin_file_is_one_line_exit_2(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("import gymnasium\nraise ValueError('bad plugin')\n")
    result = run_qagent("train", "--plugin", str(broken), "--no-track", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "broken.py" in result.stderr and "ValueError: bad plugin" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_cli_broken_ambient_plugin_warns_and_works(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("raise ValueError('ambient failure')\n")
    result = run_qagent("plugins", "list", cwd=tmp_path, env={"QAGENT_PLUGINS": str(broken), "COLUMNS": "200"})
    assert result.returncode == 0
    assert "warning:" in result.stderr and "ambient failure" in result.stderr
    assert "dqn" in result.stdout
