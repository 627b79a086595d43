"""train.device and train.amp: which device the learner uses, and checkpoints that travel between devices."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import one_error_line, run_qagent

from qagent.agents.replay import ReplayBuffer
from qagent.config import load_config
from qagent.errors import ConfigError
from qagent.training.build import load_agent
from qagent.training.device import resolve_device
from qagent.training.loop import start_training

TINY = [
    "train.total_steps=600",
    "agent.learning_starts=100",
    "eval.every=null",
    "eval.final_episodes=2",
    "tracking.enabled=false",
]


def test_auto_picks_cuda_only_where_pytorch_sees_a_gpu():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
def test_cuda_without_a_gpu_is_one_clear_error(workdir):
    with pytest.raises(ConfigError, match="train.device is 'cuda:1'") as caught:
        resolve_device("cuda:1")
    assert "--device cpu" in caught.value.hint
    result = run_qagent("train", "--device", "cuda", "--total-steps", "6000", "--no-track", cwd=workdir)
    assert "train.device is 'cuda'" in one_error_line(result)
    assert not any((workdir / "runs").glob("*")), "a run that could not start leaves no run directory"


def test_a_device_name_is_checked_with_the_config():
    with pytest.raises(ConfigError, match="expected auto, cpu, cuda or cuda:N"):
        load_config("cartpole-dqn", ["train.device=gpu"])
    assert load_config("cartpole-dqn", ["train.device=cuda:3"]).train.device == "cuda:3"  # exists or not: at start


def test_checkpoints_load_onto_the_cpu_whatever_device_wrote_them(workdir):
    """A GPU-trained run evaluates and exports on a CPU machine: tensors are mapped to the CPU on load."""
    config = load_config("cartpole-dqn", ["train.device=cpu", *TINY])
    result = start_training(config, run_name="dev", progress=False)
    saved = torch.load(result.checkpoint, map_location="meta", weights_only=True)  # as if another device wrote it
    assert all(t.device.type == "meta" for t in saved["agent"]["q_net"].values())
    loaded = load_agent(workdir / "runs" / "dev")
    params = [p.device.type for p in loaded.agent.q_net.parameters()]
    assert params and set(params) == {"cpu"}
    obs = np.zeros((3, 4), dtype=np.float32)
    assert loaded.agent.policy.q_values(obs).shape == (3, 2)


def test_acting_copies_and_weight_snapshots_live_on_the_cpu(workdir):
    config = load_config("cartpole-dqn", ["train.device=cpu", *TINY])
    loaded_policy = start_training(config, run_name="w", progress=False)
    policy = load_agent(loaded_policy.run_dir).agent.policy
    copy = policy.copy()
    assert copy.device.type == "cpu" and copy.network is not policy.network
    weights = policy.weights()
    assert all(w.device.type == "cpu" for w in weights.values())
    copy.load_weights({k: v * 0 for k, v in weights.items()})
    assert np.allclose(copy.q_values(np.ones((1, 4), dtype=np.float32)), 0.0)
    assert not np.allclose(policy.q_values(np.ones((1, 4), dtype=np.float32)), 0.0)


def test_batches_move_to_the_learners_device():
    space = __import__("gymnasium").spaces.Box(-1, 1, (4,), np.float32)
    buffer = ReplayBuffer(64, space, gamma=0.9)
    for t in range(10):
        buffer.add(
            np.full((1, 4), t, np.float32),
            np.array([1]),
            np.array([1.0]),
            np.full((1, 4), t + 1, np.float32),
            np.array([False]),
            np.array([False]),
        )
    batch = buffer.sample(4)
    assert batch.to(torch.device("cpu")) is batch  # no copy on the CPU
    moved = batch.to(torch.device("meta"))  # stands for a GPU: every tensor moves, indices stay numpy
    assert {t.device.type for t in (moved.obs, moved.action, moved.reward, moved.next_obs, moved.discount)} == {"meta"}
    assert moved.indices is batch.indices


@pytest.mark.parametrize("agent", ["dqn", "c51", "qr-dqn", "rainbow"])
def test_mixed_precision_trains_with_finite_losses(workdir, agent):
    config = load_config("cartpole-dqn", ["train.device=cpu", "train.amp=true", f"agent.name={agent}", *TINY])
    result = start_training(config, run_name=f"amp-{agent}", progress=False)
    loaded = load_agent(result.run_dir)
    assert loaded.agent.updates > 0
    assert all(torch.isfinite(p).all() for p in loaded.agent.q_net.parameters())
    assert all(p.dtype == torch.float32 for p in loaded.agent.q_net.parameters()), "weights stay float32 under autocast"
