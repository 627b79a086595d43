"""The numpy ring buffer: layout, wrap-around, discounts, sampling and persistence."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from qagent.agents.replay import ReplayBuffer
from qagent.errors import CheckpointError

BOX = gym.spaces.Box(-1, 1, shape=(3,), dtype=np.float32)


def fill(buffer: ReplayBuffer, start: int, count: int, n_envs: int = 1) -> None:
    for i in range(start, start + count, n_envs):
        ids = np.arange(i, i + n_envs)
        obs = np.repeat(ids[:, None], 3, axis=1).astype(np.float32)
        buffer.add(obs, ids % 2, ids.astype(np.float32), obs + 0.5, ids % 5 == 4)


def test_layout_follows_the_observation_space():
    assert ReplayBuffer(8, BOX, 0.99).obs.shape == (8, 3)
    frames = ReplayBuffer(8, gym.spaces.Box(0, 255, shape=(4, 84, 84), dtype=np.uint8), 0.99)
    assert frames.obs.dtype == np.uint8 and frames.obs.shape == (8, 4, 84, 84)
    discrete = ReplayBuffer(8, gym.spaces.Discrete(6), 0.99)
    assert discrete.obs.dtype == np.int64 and discrete.obs.shape == (8,)


def test_ring_wraps_around_and_keeps_the_newest():
    buffer = ReplayBuffer(5, BOX, 0.99)
    fill(buffer, 0, 7)
    assert len(buffer) == 5 and buffer.pos == 2
    assert sorted(buffer.reward.tolist()) == [2, 3, 4, 5, 6]
    fill(buffer, 7, 6, n_envs=3)  # a vector add that wraps inside one call
    assert len(buffer) == 5 and sorted(buffer.reward.tolist()) == [8, 9, 10, 11, 12]


def test_sample_types_and_discounts_of_terminal_transitions():
    buffer = ReplayBuffer(100, BOX, 0.9, seed=1)
    fill(buffer, 0, 100)
    batch = buffer.sample(256)
    assert batch.obs.dtype == torch.float32 and batch.obs.shape == (256, 3)
    assert batch.action.dtype == torch.int64 and batch.reward.shape == (256,)
    assert batch.weights is None and len(batch) == 256
    terminal = (batch.reward.numpy().astype(int) % 5) == 4
    assert np.all(batch.discount.numpy()[terminal] == 0.0)
    assert np.allclose(batch.discount.numpy()[~terminal], 0.9)
    assert torch.equal(batch.next_obs, batch.obs + 0.5)  # the stored next observation, never a reset one


def test_sampling_is_seeded_and_uniform():
    a, b = ReplayBuffer(50, BOX, 0.9, seed=3), ReplayBuffer(50, BOX, 0.9, seed=3)
    fill(a, 0, 50)
    fill(b, 0, 50)
    assert np.array_equal(a.sample(32).indices, b.sample(32).indices)
    counts = np.bincount(a.sample_indices(50_000), minlength=50)
    assert counts.min() > 800 and counts.max() < 1200


def test_save_and_load_restore_contents_and_sampler(tmp_path):
    buffer = ReplayBuffer(20, BOX, 0.9, seed=5)
    fill(buffer, 0, 27)
    buffer.sample(4)
    path = tmp_path / "buffer.npz"
    buffer.save(path)
    restored = ReplayBuffer(20, BOX, 0.9, seed=0)
    restored.load(path)
    assert restored.pos == buffer.pos and len(restored) == len(buffer)
    assert np.array_equal(restored.obs, buffer.obs) and np.array_equal(restored.terminated, buffer.terminated)
    assert np.array_equal(restored.sample(16).indices, buffer.sample(16).indices)


def test_load_rejects_other_capacity_and_garbage(tmp_path):
    buffer = ReplayBuffer(20, BOX, 0.9)
    fill(buffer, 0, 5)
    path = tmp_path / "buffer.npz"
    buffer.save(path)
    with pytest.raises(CheckpointError, match="holds capacity 20"):
        ReplayBuffer(30, BOX, 0.9).load(path)
    path.write_bytes(b"not a buffer")
    with pytest.raises(CheckpointError, match="unreadable"):
        ReplayBuffer(20, BOX, 0.9).load(path)
