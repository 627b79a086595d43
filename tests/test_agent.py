"""The DQN agent: networks, hooks, gradient steps, target updates and state."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from qagent.agents import DQNAgent, QNetwork
from qagent.agents.replay.buffer import ReplayBuffer
from qagent.config import resolve_config
from qagent.errors import ConfigError
from qagent.training.build import build_agent

BOX = gym.spaces.Box(-np.inf, np.inf, shape=(4,), dtype=np.float32)
ACTIONS = gym.spaces.Discrete(2)


def agent(*overrides: str, observation_space: gym.Space = BOX) -> DQNAgent:
    torch.manual_seed(0)
    config = resolve_config({}, ["network.hidden_sizes=[16]", *overrides])
    return build_agent(config, observation_space, ACTIONS)


def filled_buffer(n: int = 256) -> ReplayBuffer:
    """A buffer of one env's random episodes (observations chain: each next_obs is the next obs)."""
    rng = np.random.default_rng(0)
    buffer = ReplayBuffer(n + 64, BOX, 0.9, seed=0)
    obs = rng.standard_normal((1, 4)).astype(np.float32)
    for _ in range(n):
        next_obs = rng.standard_normal((1, 4)).astype(np.float32)
        terminated = rng.random(1) < 0.1
        buffer.add(
            obs,
            rng.integers(0, 2, 1),
            rng.standard_normal(1).astype(np.float32),
            next_obs,
            terminated,
            ~terminated & False,
        )
        obs = rng.standard_normal((1, 4)).astype(np.float32) if terminated[0] else next_obs
    return buffer


def test_network_shapes_and_observation_encodings():
    a = agent()
    assert isinstance(a.q_net, QNetwork)
    assert a.q_net(torch.zeros(5, 4)).shape == (5, 2)
    discrete = agent(observation_space=gym.spaces.Discrete(6))
    q = discrete.q_net(torch.tensor([0, 5, 3]))
    assert q.shape == (3, 2)
    frames = agent(observation_space=gym.spaces.Box(0, 255, shape=(2, 3, 3), dtype=np.uint8))
    assert frames.q_net(torch.full((1, 2, 3, 3), 255, dtype=torch.uint8)).shape == (1, 2)


def test_needs_a_discrete_action_space():
    config = resolve_config({}, [])
    with pytest.raises(ConfigError, match="discrete action space"):
        build_agent(config, BOX, gym.spaces.Box(-1, 1, shape=(1,)))


def test_gradient_steps_reduce_the_loss_on_a_fixed_batch():
    a = agent("agent.lr=1e-2", "agent.loss=mse", "network.hidden_sizes=[64]")
    batch = filled_buffer().sample(64)
    with torch.no_grad():
        before = a.compute_loss(batch, a.compute_target(batch)).loss.item()
    for _ in range(100):
        result = a.update(batch)
    assert a.updates == 100 and np.isfinite(result.loss)
    assert result.loss < before / 2
    assert result.td_errors.shape == (64,) and (result.td_errors >= 0).all()


def test_gradient_clipping_bounds_the_step():
    a = agent("agent.max_grad_norm=0.001", "agent.lr=1.0")
    batch = filled_buffer().sample(64)
    a.optimizer = torch.optim.SGD(a.q_net.parameters(), lr=1.0)
    before = [p.detach().clone() for p in a.q_net.parameters()]
    a.update(batch)
    moved = torch.sqrt(sum(((p - b) ** 2).sum() for p, b in zip(a.q_net.parameters(), before)))
    assert moved.item() == pytest.approx(0.001, rel=1e-3)


def test_double_option_changes_the_target():
    vanilla, double = agent(), agent("agent.double=true")
    double.q_net.load_state_dict(vanilla.q_net.state_dict())
    double.target_net.load_state_dict(vanilla.target_net.state_dict())
    with torch.no_grad():  # make online and target disagree
        for p in vanilla.q_net.parameters():
            p.add_(torch.randn_like(p))
        double.q_net.load_state_dict(vanilla.q_net.state_dict())
    batch = filled_buffer().sample(64)
    t_vanilla, t_double = vanilla.compute_target(batch), double.compute_target(batch)
    assert (t_double <= t_vanilla + 1e-6).all() and not torch.allclose(t_vanilla, t_double)


def test_hard_and_soft_target_updates():
    hard = agent()
    with torch.no_grad():
        for p in hard.q_net.parameters():
            p.add_(1.0)
    hard.update_target()
    assert all(torch.equal(t, o) for t, o in zip(hard.target_net.parameters(), hard.q_net.parameters()))

    soft = agent("agent.tau=0.1")
    old = [p.detach().clone() for p in soft.target_net.parameters()]
    with torch.no_grad():
        for p in soft.q_net.parameters():
            p.add_(1.0)
    soft.update_target(times=2)  # two updates in a row: weight 1 - 0.9**2 = 0.19
    for t, o, before in zip(soft.target_net.parameters(), soft.q_net.parameters(), old):
        assert torch.allclose(t, before + 0.19 * (o - before), atol=1e-6)
    soft.update_target(times=0)


def test_state_dict_round_trip_and_resumed_lr():
    a = agent()
    batch = filled_buffer().sample(32)
    a.update(batch)
    b = agent("agent.lr=0.5")
    b.load_state_dict(a.state_dict())
    assert b.updates == 1
    assert all(torch.equal(x, y) for x, y in zip(a.q_net.parameters(), b.q_net.parameters()))
    assert b.optimizer.param_groups[0]["lr"] == 0.5  # the resumed run's config wins over the saved lr
