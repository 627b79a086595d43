"""Ape-X-style collection on a real local Ray (``qagent train --actors N``) and its parts in-process.

The Ray tests run the CLI in a loopback-only network namespace (see ``conftest.loopback_only``),
with 2 CPUs, as a user's machine would run it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from conftest import loopback_only, run_qagent, run_qagent_on_ray

from qagent.config import load_config
from qagent.envs.factory import make_vector_env
from qagent.training.build import build_agent
from qagent.training.collector import Collector
from qagent.training.distributed import ActorStreams, ActorWorker, MemoryRecorder, apex_epsilon, apply_calls

SMALL = ["--set", "eval.every=2000", "--set", "eval.episodes=10", "--set", "eval.final_episodes=20"]


def evaluations(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "evaluations.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------------- in-process parts


def test_apex_epsilons_follow_the_paper():
    eps = [apex_epsilon(i, 8, 0.4, 7.0) for i in range(8)]
    assert eps[0] == pytest.approx(0.4) and eps[-1] == pytest.approx(0.4**8)
    assert eps == sorted(eps, reverse=True)
    assert apex_epsilon(0, 1, 0.4, 7.0) == 0.4


def test_recorded_adds_fill_the_memory_as_direct_adds_do():
    """An actor's transitions, recorded and applied at its streams, equal what it writes in one process."""
    config = load_config("cartpole-dqn", ["env.num_envs=2", "replay.n_step=3"])

    def collect(memory_for_actor, seed=3):
        envs = make_vector_env(config.env, 2)
        torch.manual_seed(0)  # the same network, so the same greedy actions
        agent = build_agent(config, envs.single_observation_space, envs.single_action_space)
        from qagent.training.build import build_exploration

        actor = agent.actor(build_exploration(config, 2, seed=1), envs, memory_for_actor(agent, envs), seed=1)
        Collector(envs, actor, seed=seed).collect(200, 0)
        return agent, envs

    direct = {}

    def real(agent, envs):
        direct["memory"] = agent.make_memory(config, envs, seed=0)
        return direct["memory"]

    collect(real)
    recorder = MemoryRecorder()
    agent, envs = collect(lambda agent, envs: recorder)
    learner_memory = agent.make_memory(config, ActorStreams(envs, 6), seed=0)  # 3 actors x 2 envs
    apply_calls(learner_memory, recorder.drain(), first_stream=4)  # as actor 2
    assert len(learner_memory) == len(direct["memory"]) == 400
    ours, theirs = learner_memory, direct["memory"]
    for stream in range(2):
        mine = slice((4 + stream) * ours.per_env, (4 + stream) * ours.per_env + 200)
        ref = slice(stream * theirs.per_env, stream * theirs.per_env + 200)
        assert np.array_equal(ours.action[mine], theirs.action[ref])
        assert np.array_equal(ours.frames[mine], theirs.frames[ref])
    assert not ours.valid[: 4 * ours.per_env].any(), "other actors' streams stay empty"
    assert recorder.drain() == []


def test_an_actor_worker_collects_chunks_in_process_for_hdqn():
    """The worker Ray runs, run here: h-DQN's D1 and D2 writes arrive at the learner's two memories."""
    config = load_config("sdp-hdqn", ["env.num_envs=2"])
    envs = make_vector_env(config.env, 1)
    agent = build_agent(config, envs.single_observation_space, envs.single_action_space)
    worker = ActorWorker(
        config.to_dict(), [], index=1, seed=[0, 1], weights=agent.policy.weights(), version=0, overrides=[]
    )
    chunk = worker.collect(100, 0)
    assert chunk.env_steps == 200 and chunk.index == 1
    paths = {call[0] for call in chunk.calls}
    assert paths == {("controller",), ("meta",)}
    memory = agent.make_memory(config, ActorStreams(envs, 4), seed=0)
    apply_calls(memory, chunk.calls, first_stream=2)
    assert len(memory.controller) == 200 and len(memory.meta) > 0
    assert chunk.episodes and all(e.length > 0 for e in chunk.episodes)
    new = {k: torch.zeros_like(v) for k, v in agent.policy.weights()["meta"].items()}
    worker.collect(1, 200, weights={"meta": new, "controller": agent.policy.weights()["controller"]}, version=7)
    assert worker.version == 7
    assert np.allclose(worker.policy.q_values(np.zeros((1, *envs.single_observation_space.shape), np.float32)), 0)


# ---------------------------------------------------------------------- on a real local Ray
def start_with_actors(workdir: Path, name: str, args: list[str]) -> tuple[subprocess.Popen, Path]:
    """``qagent train`` of the CartPole preset with 2 actors, in the background, once its actors run."""
    env = {k: v for k, v in os.environ.items() if k not in ("QAGENT_PLUGINS", "MLFLOW_TRACKING_URI")}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    command = [
        sys.executable, "-m", "qagent", "train", "--config", "cartpole-dqn", "--actors", "2", "--run-name", name,
        "--no-progress", "--set", "eval.every=null", *args,
    ]  # fmt: skip
    process = subprocess.Popen(
        loopback_only(command), cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    status_file = workdir / "runs" / name / "actors.json"
    deadline = time.monotonic() + 120
    while not status_file.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    if not status_file.exists():
        process.kill()
        pytest.fail("the actors did not start: " + process.communicate(timeout=60)[1][-3000:])
    return process, status_file


def test_two_actors_learn_cartpole_then_resume_and_export(workdir):
    result = run_qagent_on_ray(
        "train",
        "--config",
        "cartpole-dqn",
        "--seed",
        "1",
        "--actors",
        "2",
        "--total-steps",
        "12000",
        "--no-track",
        "--run-name",
        "apex",
        *SMALL,
        cwd=workdir,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = workdir / "runs" / "apex"
    means = [e["mean"] for e in evaluations(run)]
    # A random policy scores about 22, an untrained greedy one about 9. Which actor's chunk comes
    # first depends on timing, so runs vary more than the single-process one (test_learning.py);
    # five runs of this seed ended at 304-436, one run each of seeds 0, 2, 3, 4 at 101-500.
    assert max(means) >= 100, means
    assert means[-1] >= 75, means
    meta = json.loads((run / "run.json").read_text())
    assert meta["actors"] == 2 and meta["actor_restarts"] == 0 and meta["step"] == 12000
    status = json.loads((run / "actors.json").read_text())
    assert len(status["pids"]) == 2 and all(pid > 0 for pid in status["pids"])

    resumed = run_qagent_on_ray(
        "train",
        "--resume",
        "runs/apex",
        "--set",
        "train.total_steps=14000",
        "--set",
        "eval.final_episodes=5",
        cwd=workdir,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((run / "run.json").read_text())["step"] == 14000
    alone = run_qagent(  # the same run, on in one process: its envs start new episodes
        "train", "--resume", "runs/apex", "--set", "train.total_steps=15000", "--set", "eval.final_episodes=5",
        "--set", "distributed.actors=0", cwd=workdir,
    )  # fmt: skip
    assert alone.returncode == 0, alone.stderr[-3000:]
    assert "collected by Ray actors; these envs start new ones" in alone.stderr
    assert json.loads((run / "run.json").read_text())["step"] == 15000
    exported = run_qagent("export", "runs/apex", "-o", "apex.onnx", cwd=workdir)
    assert exported.returncode == 0, exported.stderr
    assert "256/256" in exported.stdout and "15,000 training steps" in exported.stdout


def test_a_killed_actor_is_restarted_and_counted(workdir):
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    args = [
        "--total-steps",
        "6000",
        "--tracking-uri",
        uri,
        "--set",
        "eval.final_episodes=5",
        "--set",
        "train.log_every=500",
    ]
    process, status_file = start_with_actors(workdir, "kill", args)
    try:
        time.sleep(3)  # let it train a while first
        victim = json.loads(status_file.read_text())["pids"][0]
        os.kill(victim, signal.SIGKILL)
        _, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr[-3000:]
    assert "actor 0 died" in stderr
    status = json.loads(status_file.read_text())
    assert status["restarts"] == 1 and victim not in status["pids"]
    meta = json.loads((workdir / "runs" / "kill" / "run.json").read_text())
    assert meta["status"] == "finished" and meta["step"] == 6000 and meta["actor_restarts"] == 1
    client = mlflow.MlflowClient(uri)
    run = client.get_run(meta["mlflow_run_id"])
    logged = run.data.metrics
    assert logged["actors/restarts"] == 1
    for key in (
        "actors/env_steps_per_second",
        "learner/updates_per_second",
        "learner/replay_ratio",
        "actors/weight_lag_updates",
    ):
        assert key in logged, sorted(logged)
    ratios = [m.value for m in client.get_metric_history(run.info.run_id, "learner/replay_ratio")]
    assert 0.3 <= sum(ratios) / len(ratios) <= 0.7, ratios  # held at the preset's 32 updates per 64 steps


def test_two_actors_train_hdqn_on_the_decision_process(workdir):
    result = run_qagent_on_ray(
        "train",
        "--config",
        "sdp-hdqn",
        "--actors",
        "2",
        "--total-steps",
        "8000",
        "--no-track",
        "--run-name",
        "h",
        "--set",
        "eval.final_episodes=20",
        cwd=workdir,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = torch.load(workdir / "runs" / "h" / "checkpoints" / "step-0000008000.pt", weights_only=True)
    assert checkpoint["agent"]["controller"]["updates"] > 0  # D1 filled from both actors and trained on
    assert checkpoint["agent"]["meta"]["updates"] > 0  # D2 too, once the controller's pre-training ended
    assert checkpoint["episodes"] > 100
    assert json.loads((workdir / "runs" / "h" / "run.json").read_text())["actors"] == 2


def test_prioritized_chunks_carry_one_step_td_errors_as_initial_priorities():
    """Ape-X: actors send each transition's |r + gamma max Q(s') - Q(s, a)|; the learner's tree holds them."""
    config = load_config("cartpole-dqn", ["replay.prioritized=true", "replay.alpha=1.0"])
    envs = make_vector_env(config.env, 1)
    agent = build_agent(config, envs.single_observation_space, envs.single_action_space)
    worker = ActorWorker(
        config.to_dict(), [], index=0, seed=[5], weights=agent.policy.weights(), version=0, overrides=[]
    )
    chunk = worker.collect(50, 0)
    assert chunk.priorities is not None and len(chunk.priorities) == len(chunk.calls) == 50
    obs, action, reward, next_obs, terminated, _ = chunk.calls[7][1]
    q, q_next = agent.policy.q_values(obs), agent.policy.q_values(next_obs)
    expected = abs(reward[0] + 0.99 * (1 - terminated[0]) * q_next[0].max() - q[0, action[0]])
    assert chunk.priorities[7][0] == pytest.approx(expected, rel=1e-4)
    memory = agent.make_memory(config, ActorStreams(envs, 1), seed=0)
    apply_calls(memory, chunk.calls, 0, chunk.priorities)
    slots = np.flatnonzero(memory.storage.valid)
    stored = np.sort(memory.sums.leaves[slots])
    sent = np.sort(np.concatenate(chunk.priorities) + memory.eps)
    assert np.allclose(stored, sent, rtol=1e-5)


def test_a_replaced_writer_ends_its_streams_episodes_in_the_memory():
    """A restarted actor's first transition must not continue the dead one's episode (frames, n-step windows)."""
    import gymnasium as gym

    from qagent.agents.replay import ReplayBuffer

    space = gym.spaces.Box(0, 255, (2, 3), np.uint8)
    memory = ReplayBuffer(64, space, gamma=0.9, num_envs=2, stack=2, n_step=3)

    def add(stream: int, value: int, envs: list[int]) -> None:
        frames = np.full((1, 2, 3), value, np.uint8)
        memory.add(frames, np.array([0]), np.array([1.0]), frames + 1, np.array([False]), np.array([False]),
                   envs=np.array(envs))  # fmt: skip

    for t in range(4):
        add(0, t, [0])
    memory.end_episodes(np.array([0, 1]))  # stream 1 never started: nothing to end
    assert not memory.in_episode.any()
    last = int((memory.head[0] - 2) % memory.per_env)
    assert memory.truncated[last] and memory.valid[last]
    add(0, 100, [0])  # the new actor's first transition writes its own first observation
    assert memory.episode_pos[int((memory.head[0] - 2) % memory.per_env)] == 0
    assert len(memory) == 5


def test_sigterm_stops_the_actors_and_writes_a_checkpoint(workdir):
    process, status_file = start_with_actors(workdir, "term", ["--total-steps", "200000", "--no-track"])
    try:
        time.sleep(2)
        process.send_signal(signal.SIGTERM)  # loopback_only execs qagent: the signal reaches it, not a shell
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 143, stderr[-3000:]
    meta = json.loads((workdir / "runs" / "term" / "run.json").read_text())
    assert meta["status"] == "interrupted" and 0 < meta["step"] < 200_000
    assert (workdir / "runs" / "term" / meta["last_checkpoint"]).exists()
    time.sleep(1)
    for pid in json.loads(status_file.read_text())["pids"]:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text(), pid
