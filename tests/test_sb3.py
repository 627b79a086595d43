"""Stable-Baselines3's DQN through qagent's CLI: same envs, evaluation, export and tracking."""

from __future__ import annotations

import json

import pytest
from conftest import TINY_LOOP, run_qagent

from qagent.config import resolve_config
from qagent.errors import ConfigError


def test_sb3_dqn_trains_evaluates_and_exports(tmp_path):
    train = run_qagent(
        "train",
        "--agent",
        "sb3-dqn",
        *TINY_LOOP,
        "--total-steps",
        "1200",
        "--no-track",
        "--run-name",
        "sb3",
        cwd=tmp_path,
    )
    assert train.returncode == 0, train.stderr
    assert "run finished" in train.stdout
    evaluations = [json.loads(line) for line in (tmp_path / "runs/sb3/evaluations.jsonl").read_text().splitlines()]
    assert evaluations and evaluations[-1]["final"] and evaluations[-1]["episodes"] == 3
    episodes = (tmp_path / "runs/sb3/episodes.csv").read_text().splitlines()
    assert episodes[0] == "step,return,length" and len(episodes) > 20
    meta = json.loads((tmp_path / "runs/sb3/run.json").read_text())
    assert meta["status"] == "finished" and meta["steps_per_second"] > 0

    evaluated = run_qagent("eval", "runs/sb3", "-n", "3", cwd=tmp_path)
    assert evaluated.returncode == 0 and "CartPole-v1 · sb3-dqn" in evaluated.stdout
    exported = run_qagent("export", "runs/sb3", "-o", "sb3.onnx", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    via_onnx = run_qagent("eval", "sb3.onnx", "-n", "3", cwd=tmp_path)
    assert via_onnx.returncode == 0
    assert (
        json.loads((tmp_path / "sb3.eval.json").read_text())["returns"]
        == json.loads((tmp_path / "runs/sb3/eval.json").read_text())["returns"]
    )

    # SB3's learner runs in qagent's loop, so its runs resume like any other
    resumed = run_qagent("train", "--resume", "runs/sb3", "--set", "train.total_steps=5000", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((tmp_path / "runs/sb3/run.json").read_text())["step"] == 5000


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["agent.double=true"], "vanilla targets"),
        (["agent.loss=mse"], "Huber loss"),
        (["network.name=impala-cnn"], "mlp and nature-cnn"),
        (["agent.dueling=true"], "plain QNetwork"),
        (["replay.prioritized=true"], "samples uniformly"),
    ],
)
def test_sb3_dqn_refuses_settings_it_does_not_have(overrides, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config({}, ["agent.name=sb3-dqn", *overrides])
