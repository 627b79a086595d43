"""Every registered agent and exploration strategy trains through the CLI, exports and serves.

Parametrized over the registries, so a new built-in gets this test without anyone adding it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import EXAMPLE_PLUGIN, TINY_LOOP, run_qagent, train_and_export

from qagent.plugins.discovery import load_builtins
from qagent.plugins.registries import AGENTS, EXPLORATIONS
from qagent.serve import Policy
from qagent.training.evaluation import evaluate_policy_file

load_builtins()
AGENT_NAMES = [name for name in AGENTS.names() if name not in ("sb3-dqn", "hdqn")]  # each has its own tests
EXPLORATION_NAMES = EXPLORATIONS.names()
DISTRIBUTIONAL = {
    "c51": ["--set", "agent.v_min=0", "--set", "agent.v_max=50"],
    "rainbow": ["--set", "agent.v_min=0", "--set", "agent.v_max=50"],
    "qr-dqn": ["--set", "agent.quantiles=32"],
}


def exploration_for(agent: str) -> list[str]:
    needs_noise = AGENTS.get(agent).section_defaults.get("exploration", {}).get("name") == "noisy"
    return [] if needs_noise else ["--set", "exploration.decay_steps=500"]


@pytest.mark.parametrize("agent", AGENT_NAMES)
def test_every_agent_trains_exports_and_serves(tmp_path, agent):
    args = [
        "--agent",
        agent,
        *TINY_LOOP,
        *exploration_for(agent),
        *DISTRIBUTIONAL.get(agent, []),
        "--set",
        "replay.capacity=5000",
    ]
    path = train_and_export(tmp_path, args, 800, "run")
    policy = Policy.load(path)
    assert policy.metadata["agent"] == agent and policy.q_values(np.zeros(4)).shape == (2,)
    result = evaluate_policy_file(path, episodes=3, seed=0)
    checkpoint_eval = run_qagent("eval", "runs/run", "-n", "3", cwd=tmp_path)
    assert checkpoint_eval.returncode == 0
    assert json.loads((tmp_path / "runs/run/eval.json").read_text())["returns"] == result.returns


EXPLORATION_SETTINGS = {
    "noisy": ["--set", "agent.noisy=true"],
    "ucb": ["--set", "exploration.decimals=1"],
    "boltzmann": ["--set", "exploration.decay_steps=500"],
    "epsilon-greedy": ["--set", "exploration.decay_steps=500"],
}


@pytest.mark.parametrize("exploration", EXPLORATION_NAMES)
def test_every_exploration_strategy_trains_and_resumes(tmp_path, exploration):
    args = ["--set", f"exploration.name={exploration}", *EXPLORATION_SETTINGS.get(exploration, []), *TINY_LOOP]
    train = run_qagent(
        "train", *args, "--total-steps", "600", "--save-buffer", "--no-track", "--run-name", "run", cwd=tmp_path
    )
    assert train.returncode == 0, train.stderr
    resumed = run_qagent(
        "train", "--resume", "runs/run", "--set", "train.total_steps=900", "--no-progress", cwd=tmp_path
    )
    assert resumed.returncode == 0, resumed.stderr  # its state went through a checkpoint
    assert "run finished at step 900" in resumed.stdout


def test_noisy_exploration_refuses_plain_networks():
    from qagent.config import resolve_config
    from qagent.errors import ConfigError

    with pytest.raises(ConfigError, match="needs Noisy Nets"):
        resolve_config({}, ["exploration.name=noisy"])
    assert resolve_config({}, ["agent.name=noisy-dqn"]).exploration.name == "noisy"  # the preset's own default
    rainbow = resolve_config({}, ["agent.name=rainbow", "replay.n_step=5"])
    assert (rainbow.replay.n_step, rainbow.replay.prioritized, rainbow.replay.alpha) == (5, True, 0.5)
    assert (rainbow.agent.lr, rainbow.agent.adam_eps, rainbow.agent.double, rainbow.agent.dueling) == (
        6.25e-5,
        1.5e-4,
        True,
        True,
    )


def test_a_plugin_variant_composes_with_prioritized_n_step_replay(tmp_path):
    args = [
        "--plugin", str(EXAMPLE_PLUGIN), "--agent", "mellowmax-dqn", *TINY_LOOP,
        "--set", "replay.prioritized=true", "--set", "replay.n_step=3", "--set", "exploration.decay_steps=500",
    ]  # fmt: skip
    train = run_qagent(
        "train", *args, "--total-steps", "800", "--save-buffer", "--no-track", "--run-name", "run", cwd=tmp_path
    )
    assert train.returncode == 0, train.stderr
    [buffer] = (tmp_path / "runs/run/checkpoints").glob("buffer-*.npz")
    with np.load(buffer) as data:
        priorities = data["priorities"][data["valid"]]
    assert len(np.unique(np.round(priorities, 6))) > 10  # updated from the plugin's own TD errors
