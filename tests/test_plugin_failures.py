"""A plugin that fails at run time is named in one line, and the run ends FAILED with its last
checkpoint kept; a diverging loss stops the run the same way (train.on_nonfinite)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import TINY, TINY_LOOP, one_error_line, run_qagent

from qagent.training.runs import RunDir

FAULTY = Path(__file__).parent / "plugins" / "faulty_plugin.py"
RUN = ("train", "--plugin", str(FAULTY), *TINY, "--no-track", "--run-name", "r")


def test_an_env_that_raises_when_made_names_the_plugin(tmp_path):
    result = run_qagent(*RUN, "--env", "faulty-cartpole", "--set", "env.kwargs.fail_on_make=1", cwd=tmp_path)
    line = one_error_line(result)
    assert f"plugin {FAULTY} raised RuntimeError: cannot open the game window" in line
    assert "faulty_plugin.py:" in line  # the plugin's own line
    assert not (tmp_path / "runs" / "r").exists()  # nothing ran


def test_an_env_that_raises_mid_run_marks_the_run_failed_and_keeps_its_checkpoint(tmp_path):
    # The first copy trains; the evaluation envs, made at the first evaluation (step 512), fail.
    result = run_qagent(
        *RUN,
        "--env",
        "faulty-cartpole",
        "--set",
        "env.kwargs.fail_on_make=2",
        "--set",
        "train.checkpoint_every=256",
        "--total-steps",
        "2000",
        cwd=tmp_path,
    )
    assert "raised RuntimeError: cannot open the game window (copy 2)" in one_error_line(result)
    run = RunDir(tmp_path / "runs" / "r")
    meta = run.read_meta()
    assert meta["status"] == "failed" and "cannot open the game window" in meta["error"]
    assert [step for step, _ in run.checkpoints()] == [256]  # written before the failure, kept
    assert "marked FAILED" in result.stderr


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("float", "returned actions of dtype float64, expected integers"),
        ("shape", "returned an array of shape (1, 2), expected (1,)"),
        ("range", "returned action 2, outside the env's actions 0..1"),
    ],
)
def test_exploration_actions_are_checked(tmp_path, kind, message):
    strategy = ("--set", "exploration.name=bad-actions", "--set", f"exploration.kind={kind}")
    result = run_qagent(
        "train", "--plugin", str(FAULTY), *TINY_LOOP, *strategy, "--no-track", "--run-name", "r", cwd=tmp_path
    )
    line = one_error_line(result)
    assert f"exploration strategy 'bad-actions' (file {FAULTY}) {message}" in line
    assert RunDir(tmp_path / "runs" / "r").read_meta()["status"] == "failed"


def test_a_plugin_that_calls_sys_exit_fails_the_run(tmp_path):
    result = run_qagent(*RUN, "--env", "faulty-cartpole", "--set", "env.kwargs.exit_after=300", cwd=tmp_path)
    assert f"plugin {FAULTY} called sys.exit(0)" in one_error_line(result)
    assert RunDir(tmp_path / "runs" / "r").read_meta()["status"] == "failed"


def test_a_diverging_loss_stops_the_run_and_keeps_the_last_finite_checkpoint(tmp_path):
    result = run_qagent(
        *RUN,
        "--env",
        "faulty-cartpole",
        "--set",
        "env.kwargs.nan_after=700",
        "--set",
        "train.checkpoint_every=200",
        "--total-steps",
        "3000",
        cwd=tmp_path,
    )
    line = one_error_line(result)
    assert "became NaN or infinite" in line and "training diverged" in line
    run = RunDir(tmp_path / "runs" / "r")
    assert run.read_meta()["status"] == "failed"
    steps = [step for step, _ in run.checkpoints()]
    assert steps and max(steps) < 3000
    for _, path in run.checkpoints():
        state = torch.load(path, weights_only=True)["agent"]["q_net"]
        assert all(torch.isfinite(t).all() for t in state.values())
    exported = run_qagent("export", str(run.root), "--plugin", str(FAULTY), "-o", "r.onnx", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr  # the kept checkpoint is sound


def test_on_nonfinite_warn_trains_on(tmp_path):
    result = run_qagent(
        *RUN,
        "--env",
        "faulty-cartpole",
        "--set",
        "env.kwargs.nan_after=300",
        "--set",
        "train.on_nonfinite=warn",
        "--total-steps",
        "1000",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "train.on_nonfinite=warn: training goes on" in result.stderr
    assert json.loads((tmp_path / "runs/r/run.json").read_text())["status"] == "finished"
