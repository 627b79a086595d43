"""The training loop: exact resume, interruption, evaluation, checkpoints and records."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import TINY

from qagent.agents.base import GreedyActor, Span
from qagent.config import resolve_config
from qagent.errors import CheckpointError, ConfigError
from qagent.training.checkpoint import load_checkpoint
from qagent.training.evaluation import Evaluator, evaluate_checkpoint
from qagent.training.loop import resume_training, start_training
from qagent.training.runs import RunDir


def tiny_config(*overrides: str):
    sets = [TINY[i + 1] for i in range(0, len(TINY), 2)]
    return resolve_config({}, [*sets, "tracking.enabled=false", *overrides])


def test_span_crossings():
    assert Span(0, 256, 512).crossings(256) == 1 and Span(255, 256, 512).crossings(256) == 1
    assert Span(256, 511, 512).crossings(256) == 0 and Span(0, 1000, 1000).crossings(10) == 100
    assert Span(0, 256, 512).progress == 0.5


def test_exact_resume_gives_identical_weights(workdir):
    straight = start_training(
        tiny_config("train.total_steps=2000", "train.save_buffer=true"), run_name="straight", progress=False
    )
    first = start_training(
        tiny_config("train.total_steps=1000", "train.save_buffer=true"), run_name="split", progress=False
    )
    assert first.step == 1000
    resumed = resume_training("runs/split", ["train.total_steps=2000"], progress=False)
    assert resumed.step == 2000
    a = load_checkpoint(straight.checkpoint)
    b = load_checkpoint(resumed.checkpoint)
    for part in ("q_net", "target_net"):
        for key, value in a["agent"][part].items():
            assert torch.equal(value, b["agent"][part][key]), f"{part}.{key}"
    assert a["episodes"] == b["episodes"] and a["agent"]["updates"] == b["agent"]["updates"]
    assert (workdir / "runs/split/episodes.csv").read_text() == (workdir / "runs/straight/episodes.csv").read_text()


def test_resume_without_buffer_warns_and_refuses_shape_changes(workdir):
    start_training(tiny_config("train.total_steps=600"), run_name="run", progress=False)
    with pytest.raises(CheckpointError, match=r"network.hidden_sizes changed from \[32, 32\] to \[64\]"):
        resume_training("runs/run", ["train.total_steps=1200", "network.hidden_sizes=[64]"], progress=False)
    with pytest.raises(CheckpointError, match="env.id changed"):
        resume_training("runs/run", ["train.total_steps=1200", "env.id=Acrobot-v1"], progress=False)
    with pytest.raises(CheckpointError, match="already reached train.total_steps"):
        resume_training("runs/run", [], progress=False)
    with pytest.warns(UserWarning, match="holds no replay buffer"):
        result = resume_training("runs/run", ["train.total_steps=1200", "agent.lr=3e-4"], progress=False)
    assert result.step == 1200
    assert "lr: 0.0003" in (workdir / "runs/run/config.yaml").read_text()


def test_run_directory_records(workdir):
    result = start_training(
        tiny_config("train.total_steps=1000", "train.checkpoint_every=300", "train.keep_checkpoints=2"),
        run_name="rec",
        progress=False,
    )
    run = RunDir(result.run_dir)
    steps = [step for step, _ in run.checkpoints()]
    assert len(steps) == 2 and 900 <= steps[0] < 916 and steps[1] == 1000  # pruned to the newest two
    evaluations = run.evaluations()  # at the first chunk end past each multiple of eval.every
    assert [e["step"] for e in evaluations] == [512, 1000, 1000] and evaluations[-1]["final"]
    assert evaluations[-1]["episodes"] == 3
    lines = run.episodes_path.read_text().splitlines()
    assert lines[0] == "step,return,length" and len(lines) - 1 == result.episodes
    meta = json.loads(run.meta_path.read_text())
    assert meta["status"] == "finished" and meta["step"] == 1000 and meta["train_seconds"] > 0
    checkpoint = load_checkpoint(result.checkpoint)
    assert checkpoint["config"]["agent"]["name"] == "dqn" and checkpoint["step"] == 1000
    best = load_checkpoint(run.best_path)  # the checkpoint of the best evaluation so far
    assert best["step"] == result.best_eval["step"] and best["buffer_file"] is None
    assert result.best_eval["mean"] == max(e["mean"] for e in evaluations)
    assert checkpoint["best_eval"] == result.best_eval
    assert (run.root / "config.yaml").read_text().startswith("seed: 0")


def test_evaluation_is_deterministic_and_independent_of_parallelism(workdir):
    result = start_training(tiny_config("train.total_steps=600"), run_name="ev", progress=False)
    a = evaluate_checkpoint(str(result.run_dir), episodes=6, seed=3)
    b = evaluate_checkpoint(str(result.checkpoint), episodes=6, seed=3)
    assert a.returns == b.returns and a.extra["step"] == 600
    config = tiny_config()
    one, four = Evaluator(config.env, 1), Evaluator(config.env, 4)
    policy = GreedyActor(lambda obs: np.tile([0.0, 1.0], (len(obs), 1)))  # always push right
    assert one.run(policy, 5, seed=11).returns == four.run(policy, 5, seed=11).returns
    summary = one.run(policy, 5, seed=11).summary()
    assert set(summary) == {"episodes", "mean", "std", "min", "max", "median", "mean_length", "success_rate"}


def test_sigint_stops_cleanly_with_a_checkpoint_and_the_run_resumes(workdir):
    code = (
        "from qagent.cli import main; main(['train', '--no-track', '--no-progress', '--run-name', 'intr', "
        "'--set', 'train.total_steps=1000000', '--set', 'eval.every=null', '--set', 'agent.learning_starts=100', "
        "'--set', 'network.hidden_sizes=[16]'])"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    episodes = workdir / "runs" / "intr" / "episodes.csv"
    deadline = time.monotonic() + 120
    while not (episodes.exists() and len(episodes.read_text().splitlines()) > 20):
        assert time.monotonic() < deadline and proc.poll() is None, (
            proc.stderr.read() if proc.poll() is not None else "timeout"
        )
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err  # 128 + SIGINT, as shells expect of a stopped command
    assert "interrupted at step" in out and "resume with:   qagent train --resume" in out
    run = RunDir(workdir / "runs" / "intr")
    [(step, path)] = run.checkpoints()
    assert 0 < step < 1_000_000 and json.loads(run.meta_path.read_text())["status"] == "interrupted"
    with pytest.warns(UserWarning, match="holds no replay buffer"):
        resumed = resume_training(run.root, [f"train.total_steps={step + 200}"], progress=False)
    assert resumed.step >= step + 200 and not resumed.interrupted


def test_a_run_whose_console_goes_away_trains_on_to_the_end(workdir):
    """Its reader gone (a killed ``tee``, a closed pipe), the console is dropped, not the run: it
    used to fail at its first log line (rich exits on a broken pipe), with no checkpoint at all."""
    code = (
        "from qagent.cli import main; main(['train', '--no-track', '--no-progress', '--run-name', 'piped', "
        "'--set', 'train.total_steps=1500', '--set', 'eval.every=500', '--set', 'eval.episodes=2', "
        "'--set', 'eval.final_episodes=2', '--set', 'agent.learning_starts=100', '--set', 'network.hidden_sizes=[16]'])"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader goes away before the run writes a line
    proc.stderr.close()
    proc.wait(timeout=300)
    run = RunDir(workdir / "runs" / "piped")
    meta = json.loads(run.meta_path.read_text())
    assert meta["status"] == "finished" and meta["step"] == 1500, meta
    assert [step for step, _ in run.checkpoints()] == [1500]
    evaluations = (run.root / "evaluations.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in evaluations] == [500, 1000, 1500, 1500]


def test_vectorized_envs_count_env_steps(workdir):
    result = start_training(
        tiny_config("env.num_envs=4", "train.total_steps=1002", "train.checkpoint_every=null"),
        run_name="vec",
        progress=False,
    )
    assert result.step == 1004  # four env steps per vector step, so the run ends on the first multiple of 4
    checkpoint = load_checkpoint(result.checkpoint)
    assert len(checkpoint["collector"]["actions"]) == 4
    rows = (workdir / "runs/vec/episodes.csv").read_text().splitlines()[1:]
    assert len(rows) == result.episodes > 4


def test_async_collection_trains_checkpoints_and_resumes(workdir):
    config = tiny_config("train.async_collection=true", "train.total_steps=1500", "train.checkpoint_every=500")
    result = start_training(config, run_name="async", progress=False)
    assert result.step == 1500 and not result.interrupted and result.episodes > 10
    checkpoint = load_checkpoint(result.checkpoint)
    assert checkpoint["collector_step"] >= checkpoint["step"] == 1500
    assert checkpoint["agent"]["updates"] == 4 * (1500 // 16 - 100 // 16)  # the same schedule as the serial loop
    with pytest.warns(UserWarning, match="holds no replay buffer"):
        resumed = resume_training(result.run_dir, ["train.total_steps=2000"], progress=False)
    assert resumed.step == 2000


def test_max_episodes_stops_training_and_refuses_a_resume_past_it(workdir):
    result = start_training(
        tiny_config("train.total_steps=5000", "train.max_episodes=4"), run_name="ep", progress=False
    )
    assert result.episodes == 4 and result.step < 5000 and not result.interrupted
    with pytest.raises(CheckpointError, match="already reached train.max_episodes"):
        resume_training("runs/ep", [], progress=False)


def test_an_evaluation_target_stops_training_and_a_resume_past_it_is_refused(workdir):
    """``eval.stop_at_success``: the first periodic evaluation that reaches it ends training (the
    final evaluation still runs); every target set must be met; a resume past it is refused with
    a hint, and clearing the target continues the run. Every CartPole return is positive."""
    sets = ("train.total_steps=3000", "train.save_buffer=true", "eval.every=500")
    met = start_training(tiny_config(*sets, "eval.stop_at_success=1.0"), run_name="met", progress=False)
    records = [json.loads(line) for line in (met.run_dir / "evaluations.jsonl").read_text().splitlines()]
    assert not met.interrupted and met.step < 3000
    assert [r["final"] for r in records] == [False, True] and records[0]["step"] == met.step
    assert json.loads((met.run_dir / "run.json").read_text())["status"] == "finished"
    with pytest.raises(CheckpointError, match=r"stopped at step .*reached eval.stop_at_success=1") as caught:
        resume_training(met.run_dir, [], progress=False)
    assert "eval.stop_at_success=null" in caught.value.hint
    assert resume_training(met.run_dir, ["eval.stop_at_success=null"], progress=False).step == 3000
    unmet = start_training(
        tiny_config(*sets, "train.total_steps=1000", "eval.stop_at_success=1.0", "eval.stop_at_return=1e9"),
        run_name="unmet",
        progress=False,
    )
    assert unmet.step == 1000
    config = tiny_config("eval.stop_at_success=0.5")
    assert config.eval.target_met({"success_rate": 0.5}) and not config.eval.target_met({"success_rate": 0.4})
    assert not config.eval.target_met(["not", "a", "record"]) and not config.eval.target_met({"success_rate": "1"})
    with pytest.raises(ConfigError, match="eval.every is null") as caught:
        tiny_config("eval.every=null", "eval.stop_at_return=100")
    assert "eval.every" in caught.value.hint


def test_checkpoints_from_before_the_one_loop_evaluate_but_do_not_resume(workdir):
    """A format-1 checkpoint (qagent 0.1: exploration state instead of an actor's) is refused for
    resuming with a message that names its version; evaluation and export still read it."""
    result = start_training(tiny_config("train.total_steps=300"), run_name="old", progress=False)
    data = torch.load(result.checkpoint, weights_only=True)
    data["format_version"], data["qagent_version"] = 1, "0.1.0"
    data["exploration"] = data.pop("actor")["exploration"]
    del data["window"]
    torch.save(data, result.checkpoint)
    with pytest.raises(CheckpointError, match=r"written by qagent 0\.1\.0 \(checkpoint format 1\)") as caught:
        resume_training(result.run_dir, ["train.total_steps=600"], progress=False)
    assert "qagent eval" in caught.value.hint
    assert evaluate_checkpoint(str(result.run_dir), episodes=2, seed=0).extra["step"] == 300


def test_a_checkpoint_without_the_loop_state_is_refused_for_resume_in_one_line(workdir):
    result = start_training(tiny_config("train.total_steps=300"), run_name="torn", progress=False)
    data = torch.load(result.checkpoint, weights_only=True)
    del data["actor"]
    data["window"] = [1, 2]
    torch.save(data, result.checkpoint)
    with pytest.raises(CheckpointError, match=r"its 'actor', 'window' state is missing or broken") as caught:
        resume_training(result.run_dir, ["train.total_steps=600"], progress=False)
    assert "earlier checkpoint" in caught.value.hint
