"""The CLI as a user runs it: a subprocess of ``python -m qagent``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import EXAMPLE_PLUGIN, TINY, TINY_LOOP, run_qagent

import qagent


def test_help_is_light_and_lists_commands(tmp_path):
    result = run_qagent("--help", cwd=tmp_path)
    assert result.returncode == 0
    for command in ("train", "eval", "plugins", "config"):
        assert command in result.stdout
    probe = "import sys, qagent.cli; print(sorted(m for m in ('torch', 'mlflow', 'gymnasium') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert run_qagent("--version", cwd=tmp_path).stdout.strip().endswith(qagent.__version__)


def test_train_eval_round_trip_with_default_mlflow_store(tmp_path):
    train = run_qagent("train", *TINY, "--total-steps", "1000", "--run-name", "cli", cwd=tmp_path)
    assert train.returncode == 0, train.stderr
    out = train.stdout
    assert "run finished at step 1,000" in out and "run directory: runs/cli" in out
    assert f"sqlite:///{tmp_path}/mlflow.db" in out and "mlflow ui --backend-store-uri" in out
    assert (tmp_path / "mlflow.db").exists()  # MLflow's own default, so `mlflow ui` here shows the run

    evaluated = run_qagent("eval", "runs/cli", "--episodes", "4", "--seed", "2", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "CartPole-v1 · dqn · step 1,000" in evaluated.stdout and "median" in evaluated.stdout
    data = json.loads((tmp_path / "runs/cli/eval.json").read_text())
    assert data["episodes"] == 4 and len(data["returns"]) == 4 and data["seed"] == 2
    assert {"mean", "std", "min", "max", "median"} <= set(data)

    explicit = run_qagent(
        "eval", "runs/cli/checkpoints/step-0000001000.pt", "-n", "4", "--seed", "2", "-o", "out.json", cwd=tmp_path
    )
    assert explicit.returncode == 0
    assert json.loads((tmp_path / "out.json").read_text())["returns"] == data["returns"]


def test_example_plugin_trains_evaluates_and_lists(tmp_path):
    args = (
        "--plugin",
        str(EXAMPLE_PLUGIN),
        "--env",
        "corridor",
        "--agent",
        "mellowmax-dqn",
        "--set",
        "exploration.name=ez-greedy",
    )
    train = run_qagent(
        "train", *args, *TINY_LOOP, "--total-steps", "1500", "--no-track", "--run-name", "plugin", cwd=tmp_path
    )
    assert train.returncode == 0, train.stderr
    checkpoint = (tmp_path / "runs/plugin/config.yaml").read_text()
    assert "name: mellowmax-dqn" in checkpoint and "omega: 10.0" in checkpoint and "name: ez-greedy" in checkpoint
    evaluated = run_qagent("eval", "runs/plugin", "-n", "3", "--trust-plugins", cwd=tmp_path)  # the recorded plugin
    assert evaluated.returncode == 0, evaluated.stderr
    assert "corridor · mellowmax-dqn" in evaluated.stdout


def test_config_show_documents_every_key(tmp_path):
    result = run_qagent("config", "show", "--config", "cartpole-dqn", "--set", "agent.double=true", cwd=tmp_path)
    assert result.returncode == 0
    assert "double: true  # Double-DQN targets" in result.stdout
    assert "lr: 0.00063  # Adam learning rate." in result.stdout
    assert "cartpole-dqn" in run_qagent("config", "presets", cwd=tmp_path).stdout


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("finished")
    result = run_qagent("train", *TINY, "--total-steps", "600", "--no-track", "--run-name", "done", cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("train", "--env", "CartPole-v9", "--no-track"), "unknown env 'CartPole-v9'; did you mean 'CartPole-v1'"),
        (("train", "--agent", "dqm", "--no-track"), "unknown agent 'dqm'; did you mean 'dqn'"),
        (("train", "--set", "exploration.name=epsilon-greddy", "--no-track"), "did you mean 'epsilon-greedy'"),
        (("train", "--set", "agent.lr=-1", "--no-track"), "invalid value for 'agent.lr'"),
        (("train", "--set", "agent.learnin_rate=1", "--no-track"), "unknown config key 'agent.learnin_rate'"),
        (("train", "--set", "agent.lr", "--no-track"), "expected KEY=VALUE"),
        (("train", "--config", "no-such-preset", "--no-track"), "config file 'no-such-preset' not found"),
        (("train", "--set", "env.kwargs.bogus=1", "--no-track"), "rejected env.kwargs"),
        (("train", "--tracking-uri", "sqlit:///x.db"), "cannot open the MLflow tracking store"),
        (("eval", "runs/missing"), "no run directory or checkpoint at runs/missing"),
        (("eval", "runs/done/checkpoints/broken.pt"), "is corrupt or not a qagent checkpoint"),
        (
            ("train", "--resume", "runs/done", "--set", "network.hidden_sizes=[8]"),
            "cannot resume: network.hidden_sizes changed",
        ),
        (("train", "--resume", "runs/done"), "already reached train.total_steps"),
        (("train", "--resume", "runs/missing"), "no run directory or checkpoint"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(finished_run, args, message):
    (finished_run / "runs/done/checkpoints/broken.pt").write_bytes(b"PK\x03\x04 definitely not a checkpoint")
    result = run_qagent(*args, cwd=finished_run)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and message in error_lines[0], result.stderr
    runs = sorted(p.name for p in (finished_run / "runs").iterdir())
    assert runs == ["done"]  # a failed start leaves no empty run directory behind


def test_a_warning_to_a_closed_stderr_is_dropped_not_raised(monkeypatch):
    """A warning mid-run (an actor restarted, a dropped CSV line) must not end the run when stderr's reader is gone."""
    import warnings

    from qagent.cli import _show_warning

    class ClosedPipe:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stderr", ClosedPipe())
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = _show_warning
        warnings.warn("actor 1 died; starting it again", UserWarning, stacklevel=1)  # returns, no BrokenPipeError
