"""The collector: true final observations, episode records, seeded resets, exact restore."""

from __future__ import annotations

import random

import gymnasium as gym
import numpy as np
import pytest
import torch

from qagent.agents.dqn import QActor
from qagent.agents.exploration import EpsilonGreedy
from qagent.agents.replay.buffer import ReplayBuffer
from qagent.config import EnvConfig
from qagent.envs.factory import make_vector_env
from qagent.plugins.registries import ENVS
from qagent.training.collector import Collector


class Counter(gym.Env):
    """Observation = a negative start (-10, -20 or -30) plus steps since reset; action 1 terminates."""

    observation_space = gym.spaces.Box(-1000, 1000, shape=(1,), dtype=np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, noisy: bool = False) -> None:
        self.t = 0
        self.noisy = noisy

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = -10 * int(self.np_random.integers(1, 4)) if not self.noisy else random.randint(0, 1000)
        return np.array([self.t], dtype=np.float32), {}

    def step(self, action):
        self.t += 1
        return np.array([self.t], dtype=np.float32), 1.0, bool(action == 1), False, {}


@pytest.fixture
def counter_env():
    ENVS.register("test-counter", Counter)
    return EnvConfig(id="test-counter", max_episode_steps=4)


class ZeroPolicy:
    """Q-values 0 for both actions: the strategy's random draws decide."""

    def q_values(self, obs):
        return np.zeros((len(obs), 2))


def in_arrival_order(buffer: ReplayBuffer) -> np.ndarray:
    slots = np.flatnonzero(buffer.valid)
    return slots[np.argsort(buffer.transition_id[slots])]


def collector(env_config: EnvConfig, num_envs: int = 2, seed: int = 0) -> tuple[Collector, ReplayBuffer]:
    envs = make_vector_env(env_config, num_envs)
    buffer = ReplayBuffer(1000, envs.single_observation_space, 0.9, num_envs=num_envs, seed=seed)
    strategy = EpsilonGreedy(EpsilonGreedy.Config(start=0.5, end=0.5), 2, 1000, seed=seed)
    actor = QActor(ZeroPolicy(), strategy, buffer, n_actions=2)
    return Collector(envs, actor, seed=seed), buffer


def test_final_observations_reach_the_buffer(counter_env):
    c, buffer = collector(counter_env)
    episodes = c.collect(50, step=0)
    assert len(buffer) == 100
    batch = buffer.get(in_arrival_order(buffer))
    obs, next_obs = batch.obs[:, 0].numpy(), batch.next_obs[:, 0].numpy()
    assert np.all(next_obs == obs + 1)  # never a reset observation
    terminated = batch.discount.numpy() == 0
    assert np.array_equal(terminated, batch.action.numpy() == 1)
    truncated_ends = (next_obs % 10 == 4) & ~terminated  # the time limit of 4 steps: bootstraps (discount kept)
    assert truncated_ends.any()
    assert episodes and all(e.ret == e.length for e in episodes)
    assert len(episodes) == int(terminated.sum() + truncated_ends.sum())  # time limits end episodes too
    assert [e.step for e in episodes] == sorted(e.step for e in episodes)


def test_restore_replays_each_env_to_its_saved_state():
    config = EnvConfig(id="CartPole-v1")
    a, buffer_a = collector(config, num_envs=3, seed=1)
    a.collect(40, step=0)
    state = {"collector": a.state_dict(), "actor": a.actor.state_dict()}
    seen = set(buffer_a.transition_id[buffer_a.valid].tolist())
    a.collect(60, step=120)
    later = in_arrival_order(buffer_a)
    later = later[[tid not in seen for tid in buffer_a.transition_id[later]]]
    expected = buffer_a.get(later)

    b, buffer_b = collector(config, num_envs=3, seed=99)
    b.actor.load_state_dict(state["actor"])
    b.load_state_dict(state["collector"])
    b.collect(60, step=120)
    got = buffer_b.get(in_arrival_order(buffer_b))
    assert torch.equal(got.obs, expected.obs) and torch.equal(got.action, expected.action)


def test_non_deterministic_env_warns_and_restarts():
    ENVS.register("test-noisy-counter", lambda: Counter(noisy=True))
    config = EnvConfig(id="test-noisy-counter", max_episode_steps=1000)
    a, _ = collector(config, num_envs=1)
    a.actor.exploration = EpsilonGreedy(EpsilonGreedy.Config(start=0.0, end=0.0), 2, 1000)
    a.collect(5, step=0)
    b, _ = collector(config, num_envs=1)
    with pytest.warns(UserWarning, match="did not replay to its saved state"):
        b.load_state_dict(a.state_dict())
    assert b.actions == [[]]  # its episode restarted from a fresh seed
