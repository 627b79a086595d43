"""Files from elsewhere are data: the plugins a run, checkpoint or ONNX file names are not imported
unless the user passes them with --plugin or says --trust-plugins."""

from __future__ import annotations

import json

import pytest
from conftest import EXAMPLE_PLUGIN, TINY_LOOP, run_qagent

PLUGIN_ARGS = ("--env", "corridor", "--agent", "mellowmax-dqn", "--set", "exploration.name=ez-greedy")


@pytest.fixture(scope="module")
def plugin_run(tmp_path_factory):
    """A run trained with a plugin that leaves a marker file each time it is imported."""
    folder = tmp_path_factory.mktemp("trust")
    plugin = folder / "marking_plugin.py"
    marker = folder / "imported.txt"
    plugin.write_text(
        EXAMPLE_PLUGIN.read_text() + f"\nwith open({str(marker)!r}, 'a') as _f:\n    _f.write('imported\\n')\n"
    )
    train = run_qagent(
        "train",
        "--plugin",
        str(plugin),
        *PLUGIN_ARGS,
        *TINY_LOOP,
        "--total-steps",
        "1200",
        "--no-track",
        "--run-name",
        "p",
        cwd=folder,
    )
    assert train.returncode == 0, train.stderr
    exported = run_qagent("export", "runs/p", "-o", "p.onnx", "--plugin", str(plugin), cwd=folder)
    assert exported.returncode == 0, exported.stderr
    marker.unlink()
    return folder, plugin, marker


def assert_refused(result, plugin, marker):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert str(plugin) in result.stderr and "--trust-plugins" in result.stderr and "--plugin" in result.stderr
    assert not marker.exists()  # not a line of the plugin ran


@pytest.mark.parametrize(
    "args",
    [
        ("eval", "runs/p", "-n", "2"),
        ("eval", "runs/p/checkpoints/step-0000001200.pt", "-n", "2"),
        ("eval", "p.onnx", "-n", "2"),
        ("export", "runs/p", "-o", "again.onnx"),
        ("train", "--resume", "runs/p", "--set", "train.total_steps=1300"),
    ],
)
def test_recorded_plugins_are_not_imported_without_consent(plugin_run, args):
    folder, plugin, marker = plugin_run
    assert_refused(run_qagent(*args, cwd=folder), plugin, marker)


@pytest.mark.parametrize("consent", ["--trust-plugins", "--plugin"])
def test_recorded_plugins_load_with_trust_or_when_passed(plugin_run, consent):
    folder, plugin, marker = plugin_run
    extra = ["--plugin", str(plugin)] if consent == "--plugin" else ["--trust-plugins"]
    for target in ("runs/p", "p.onnx"):
        result = run_qagent("eval", target, "-n", "2", *extra, cwd=folder)
        assert result.returncode == 0, result.stderr
        assert "corridor · mellowmax-dqn" in result.stdout
        assert marker.exists()
        marker.unlink()


def test_plugins_from_the_environment_are_recorded(plugin_run):
    folder, plugin, marker = plugin_run
    env = {"QAGENT_PLUGINS": str(plugin)}
    train = run_qagent(
        "train",
        *PLUGIN_ARGS,
        *TINY_LOOP,
        "--total-steps",
        "600",
        "--no-track",
        "--run-name",
        "ambient",
        cwd=folder,
        env=env,
    )
    assert train.returncode == 0, train.stderr
    meta = json.loads((folder / "runs/ambient/run.json").read_text())
    assert meta["plugins"] == [str(plugin.resolve())]
    marker.unlink()
    assert_refused(run_qagent("eval", "runs/ambient", "-n", "2", cwd=folder), plugin, marker)
    again = run_qagent("eval", "runs/ambient", "-n", "2", cwd=folder, env=env)  # the user's own setting is consent
    assert again.returncode == 0, again.stderr
    marker.unlink()


def test_a_plugin_list_that_is_not_names_is_refused(plugin_run, tmp_path):
    import torch

    folder, plugin, marker = plugin_run
    data = torch.load(folder / "runs/p/checkpoints/step-0000001200.pt", weights_only=True)
    data["plugins"] = {"evil": 1}
    torch.save(data, tmp_path / "odd.pt")
    result = run_qagent("eval", str(tmp_path / "odd.pt"), cwd=folder)
    assert result.returncode == 2 and "plugin list is not a list of names" in result.stderr, result.stderr
    assert not marker.exists()
