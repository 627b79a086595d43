"""The same checks for every registered agent, exploration strategy, torso and goal space.

Each entry trains a tiny run in the one loop, and then: its checkpoint loads back into an equal
agent (``load_agent``); the run resumed from its halfway checkpoint (with the buffer) ends equal;
export passes its parity check; the exported file, served through ``qagent.serve``, plays the
same evaluation episodes as the checkpoint. Each entry also collects as a Ray actor would
(``--actors``), in this process, into a learner's memory that it then learns from.

The entries are read from the registries after plugin discovery, so a plugin (an installed
entry point, or a file in ``QAGENT_PLUGINS`` when the suite starts) that registers a new entry
is checked here without a test of its own; the example plugin's entries are included.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch
from conftest import EXAMPLE_PLUGIN, TINY_LOOP

from qagent.agents.base import Span
from qagent.config import load_config
from qagent.envs.factory import make_vector_env
from qagent.export import export_checkpoint
from qagent.plugins import discovery
from qagent.plugins.registries import AGENTS, EXPLORATIONS, GOAL_SPACES, NETWORKS, REGISTRIES
from qagent.training.build import build_agent, load_agent
from qagent.training.checkpoint import load_checkpoint
from qagent.training.distributed import ActorStreams, ActorWorker, apply_calls
from qagent.training.evaluation import evaluate_checkpoint, evaluate_policy_file
from qagent.training.loop import resume_training, start_training
from qagent.training.runs import RunDir

PLUGINS = [str(EXAMPLE_PLUGIN), *filter(None, os.environ.get("QAGENT_PLUGINS", "").split(os.pathsep))]

STEPS = 400  # the run; it is also resumed from its checkpoint at half of it
COMMON = [
    "tracking.enabled=false",
    f"train.total_steps={STEPS}",
    f"train.checkpoint_every={STEPS // 2}",
    "train.save_buffer=true",
    "eval.every=null",
    "eval.final_episodes=2",
]
FLAT = [TINY_LOOP[i + 1] for i in range(0, len(TINY_LOOP), 2)]  # CartPole, learning from step 100, every 16 steps
HIERARCHY = [
    "agent.name=hdqn",
    "agent.controller.learning_starts=100",
    "agent.meta.learning_starts=100",
    "agent.controller.train_freq=8",
    "agent.meta.train_freq=8",
    "agent.max_option_steps=8",
]
ATARI = [  # small frames and batches: the checks are about the torso, not the score
    *(s for s in FLAT if not s.startswith(("network.", "agent.batch_size", "agent.gradient_steps"))),
    "agent.batch_size=8",
    "agent.gradient_steps=1",
    "env.atari.screen_size=48",
    "env.id=ALE/Pong-v5",
    "env.atari.max_frames=400",
    "replay.capacity=1000",
    "eval.num_envs=1",
]

# Entries that need a particular env or setting; every other entry runs in the default scenario.
SCENARIOS: dict[tuple[str, str], tuple[str | None, list[str]]] = {
    ("agent", "hdqn"): ("sdp-hdqn", HIERARCHY),
    ("agent", "noisy-dqn"): (None, [*FLAT, "agent.name=noisy-dqn"]),
    ("exploration", "noisy"): (None, [*FLAT, "exploration.name=noisy", "agent.noisy=true"]),
    ("exploration", "ucb"): (None, [*FLAT, "exploration.name=ucb", "exploration.decimals=1"]),
    ("network", "nature-cnn"): (None, [*ATARI, "network.name=nature-cnn"]),
    ("network", "impala-cnn"): (None, [*ATARI, "network.name=impala-cnn"]),
    ("network", "grid-cnn"): (
        None,
        [
            *(s for s in FLAT if not s.startswith("network.")),
            *("env.id=MiniGrid-DoorKey-5x5-v0", "env.minigrid.observation=onehot-image", "network.name=grid-cnn"),
        ],
    ),
    ("goal-space", "state-index"): ("sdp-hdqn", HIERARCHY),
    ("goal-space", "minigrid-objects"): (
        "minigrid-hdqn",
        [*HIERARCHY, "env.id=MiniGrid-KeyCorridorS3R1-v0", "network.features=32", "env.num_envs=1"],
    ),
    ("goal-space", "montezuma-ram"): (
        "montezuma-hdqn",
        [
            *HIERARCHY,
            *("env.num_envs=1", "env.atari.max_frames=400", "network.hidden_sizes=[32]", "agent.pretrain_steps=100"),
            *("replay.capacity=1000", "agent.meta_replay.capacity=1000", "eval.num_envs=1"),
        ],
    ),
}


def default_scenario(kind: str, name: str) -> tuple[str | None, list[str]]:
    """CartPole DQN with the entry switched on (a goal space: h-DQN on the decision process)."""
    if kind == "goal-space":
        return "sdp-hdqn", [*HIERARCHY, f"agent.goal_space={name}"]
    key = {"agent": "agent.name", "exploration": "exploration.name", "network": "network.name"}[kind]
    return None, [*FLAT, f"{key}={name}"]


def discovered_entries() -> list[tuple[str, str]]:
    """Every entry after discovery (entry points and PLUGINS), leaving the registries as they were."""
    saved = {kind: dict(registry._entries) for kind, registry in REGISTRIES.items()}
    loaded = dict(discovery._loaded)
    try:
        discovery.load_plugins(PLUGINS)
        kinds = (("agent", AGENTS), ("exploration", EXPLORATIONS), ("network", NETWORKS), ("goal-space", GOAL_SPACES))
        return [(kind, name) for kind, registry in kinds for name in registry.names()]
    finally:
        for kind, registry in REGISTRIES.items():
            registry._entries.clear()
            registry._entries.update(saved[kind])
        discovery._loaded.clear()
        discovery._loaded.update(loaded)


ENTRIES = discovered_entries()


def _tensors(tree, prefix=""):
    """Every tensor in a nested state dict, by its path."""
    if isinstance(tree, torch.Tensor):
        yield prefix, tree
    elif isinstance(tree, dict):
        for key, value in tree.items():
            yield from _tensors(value, f"{prefix}.{key}")
    elif isinstance(tree, (list, tuple)):
        for i, value in enumerate(tree):
            yield from _tensors(value, f"{prefix}[{i}]")


def _assert_same_tensors(a, b, what):
    a, b = dict(_tensors(a)), dict(_tensors(b))
    assert a.keys() == b.keys(), what
    for key in a:
        assert torch.equal(a[key], b[key]), f"{what}: {key} differs"


@pytest.mark.parametrize(("kind", "name"), ENTRIES, ids=[f"{k}:{n}" for k, n in ENTRIES])
def test_registered_entry_trains_resumes_exports_and_serves(kind, name, workdir):
    discovery.load_plugins(PLUGINS)  # undone after the test (conftest's isolated registries)
    preset, sets = SCENARIOS.get((kind, name)) or default_scenario(kind, name)
    if kind == "goal-space":
        sets = [*sets, f"agent.goal_space={name}"]

    # a tiny run
    straight = start_training(load_config(preset, [*sets, *COMMON]), run_name="straight", progress=False)
    assert straight.step == STEPS and not straight.interrupted and straight.episodes > 0

    # a checkpoint round trip
    checkpoint = load_checkpoint(straight.checkpoint)
    loaded = load_agent(straight.run_dir)
    assert loaded.step == STEPS and loaded.path == straight.checkpoint
    _assert_same_tensors(loaded.agent.state_dict(), checkpoint["agent"], "the reloaded agent")

    # an exact resume: a copy of the run, resumed from its checkpoint (and buffer) at half way, ends the same
    shutil.copytree(straight.run_dir, workdir / "runs" / "resumed")
    [(step, halfway)] = [(s, path) for s, path in RunDir(workdir / "runs" / "resumed").checkpoints() if s < STEPS]
    assert step >= STEPS // 2
    resumed = resume_training(halfway, progress=False)
    assert resumed.step == STEPS
    _assert_same_tensors(load_checkpoint(resumed.checkpoint)["agent"], checkpoint["agent"], "the resumed run")
    assert (resumed.run_dir / "episodes.csv").read_text() == (straight.run_dir / "episodes.csv").read_text()

    # export parity (export_checkpoint refuses to write a file that fails it)
    report = export_checkpoint(straight.run_dir, workdir / "policy.onnx")
    assert report.parity and all(row.ok for row in report.parity)

    # a served act: the ONNX file through qagent.serve plays the checkpoint's episodes
    served = evaluate_policy_file(report.path, episodes=2, seed=5)
    assert served.returns == evaluate_checkpoint(str(straight.run_dir), episodes=2, seed=5).returns


@pytest.mark.parametrize(("kind", "name"), ENTRIES, ids=[f"{k}:{n}" for k, n in ENTRIES])
def test_registered_entry_collects_as_a_ray_actor(kind, name):
    """What ``--actors`` runs in each Ray actor process, run here: its chunk fills the learner's memory,
    at that actor's streams, and the agent learns from it (tests/test_distributed.py runs it on Ray)."""
    discovery.load_plugins(PLUGINS)
    preset, sets = SCENARIOS.get((kind, name)) or default_scenario(kind, name)
    if kind == "goal-space":
        sets = [*sets, f"agent.goal_space={name}"]
    config = load_config(preset, [*sets, *COMMON])
    n = config.env.num_envs
    probe = make_vector_env(config.env, 1)
    agent = build_agent(config, probe.single_observation_space, probe.single_action_space)
    worker = ActorWorker(config.to_dict(), PLUGINS, 1, [0], agent.policy.weights(), 0, [])
    chunk = worker.collect(-(-200 // n), 0)
    memory = agent.make_memory(config, ActorStreams(probe, 2 * n), seed=0)
    apply_calls(memory, chunk.calls, n, chunk.priorities)  # as the second of two actors
    assert len(memory) == chunk.env_steps
    metrics = agent.learn(memory, Span(0, chunk.env_steps, STEPS))
    assert any(key.endswith("loss") and np.isfinite(value) for key, value in metrics.items()), metrics
