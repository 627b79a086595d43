"""The frame-deduplicating buffer against a naive buffer of whole stacks."""

from __future__ import annotations

import collections

import gymnasium as gym
import numpy as np
import pytest
import torch

from qagent.agents.frame_replay import FrameReplayBuffer
from qagent.agents.replay import ReplayBuffer
from qagent.errors import CheckpointError

STACK, SIZE = 4, 6
SPACE = gym.spaces.Box(0, 255, shape=(STACK, SIZE, SIZE), dtype=np.uint8)


class Stream:
    """One env's episodes of frames, stacked like gymnasium's FrameStackObservation.

    Every frame encodes (episode id, step) in its pixels, so a stack that mixes episodes shows.
    """

    def __init__(self, env: int, rng: np.random.Generator) -> None:
        self.env, self.rng, self.episode = env, rng, 0
        self.reset()

    def frame(self) -> np.ndarray:
        f = np.zeros((SIZE, SIZE), np.uint8)
        f[0, 0], f[0, 1], f[0, 2] = self.env, self.episode % 256, self.t % 256
        f[1:] = self.rng.integers(0, 255, (SIZE - 1, SIZE), dtype=np.uint8)
        return f

    def reset(self) -> np.ndarray:
        self.episode += 1
        self.t = 0
        first = self.frame()
        self.frames = collections.deque([first] * STACK, maxlen=STACK)
        return np.stack(self.frames)

    def step(self) -> tuple[np.ndarray, bool, bool]:
        self.t += 1
        self.frames.append(self.frame())
        terminated = self.rng.random() < 0.08
        truncated = not terminated and self.t >= 15
        return np.stack(self.frames), terminated, truncated


def fill(n_envs: int, steps: int, capacity: int, seed: int = 0) -> tuple[FrameReplayBuffer, ReplayBuffer]:
    rng = np.random.default_rng(seed)
    streams = [Stream(i, rng) for i in range(n_envs)]
    obs = np.stack([s.reset() for s in streams])
    frames = FrameReplayBuffer(capacity, SPACE, 0.9, num_envs=n_envs, seed=seed)
    naive = ReplayBuffer(steps * n_envs, SPACE, 0.9)
    for _ in range(steps):
        action = rng.integers(0, 6, n_envs)
        reward = rng.standard_normal(n_envs).astype(np.float32)
        results = [s.step() for s in streams]
        next_obs = np.stack([r[0] for r in results])
        terminated = np.array([r[1] for r in results])
        truncated = np.array([r[2] for r in results])
        frames.add(obs, action, reward, next_obs, terminated, truncated)
        naive.add(obs, action, reward, next_obs, terminated, truncated)
        for i, s in enumerate(streams):
            if terminated[i] or truncated[i]:
                next_obs[i] = s.reset()
        obs = next_obs
    return frames, naive


@pytest.mark.parametrize(("n_envs", "capacity"), [(1, 10_000), (3, 10_000), (2, 150)])
def test_samples_equal_the_naive_buffer(n_envs, capacity):
    frames, naive = fill(n_envs, steps=400, capacity=capacity)
    slots = frames.sample_indices(2000)
    ids = frames.transition_id[slots]
    got, want = frames.get(slots), naive.get_indices(ids)
    for key in ("obs", "action", "reward", "next_obs", "discount"):
        assert torch.equal(getattr(got, key), getattr(want, key)), key
    assert got.obs.dtype == torch.uint8 and got.obs.shape == (2000, STACK, SIZE, SIZE)


def test_no_stack_mixes_two_episodes():
    frames, _ = fill(2, steps=600, capacity=300)  # wraps around several times
    batch = frames.get(frames.sample_indices(5000))
    for stacks in (batch.obs, batch.next_obs):
        episode_ids = stacks[:, :, 0, 1]
        assert torch.all(episode_ids == episode_ids[:, -1:])
        env_ids = stacks[:, :, 0, 0]
        assert torch.all(env_ids == env_ids[:, -1:])
    assert (batch.discount == 0).any() and (batch.discount > 0).any()  # terminations and truncations


def test_overwritten_stacks_are_never_sampled():
    frames, naive = fill(1, steps=1000, capacity=64)
    slots = frames.sample_indices(4000)
    ids = frames.transition_id[slots]
    assert ids.min() >= 1000 - 64  # only transitions still in the ring
    assert torch.equal(frames.get(slots).obs, naive.get_indices(ids).obs)


def test_memory_is_one_frame_per_transition():
    frames = FrameReplayBuffer(1000, gym.spaces.Box(0, 255, shape=(4, 84, 84), dtype=np.uint8), 0.99)
    per_transition = frames.nbytes / frames.capacity
    assert 84 * 84 <= per_transition < 84 * 84 + 32
    naive = ReplayBuffer(1000, gym.spaces.Box(0, 255, shape=(4, 84, 84), dtype=np.uint8), 0.99)
    assert naive.obs.nbytes + naive.next_obs.nbytes == 8 * 84 * 84 * 1000


def test_save_and_restore_exactly(tmp_path):
    frames, _ = fill(2, steps=300, capacity=500, seed=4)
    path = tmp_path / "frames.npz"
    frames.save(path)
    restored = FrameReplayBuffer(500, SPACE, 0.9, num_envs=2, seed=99)
    restored.load(path)
    for name in ("frames", "episode_pos", "action", "reward", "terminated", "valid", "head", "written", "in_episode"):
        assert np.array_equal(getattr(restored, name), getattr(frames, name)), name
    assert np.array_equal(restored.sample_indices(64), frames.sample_indices(64))
    with pytest.raises(CheckpointError, match="holds 500 slots for 2 envs"):
        FrameReplayBuffer(500, SPACE, 0.9, num_envs=1).load(path)


def test_rejects_non_image_observations():
    with pytest.raises(ValueError, match="needs \\(stack, height, width\\)"):
        FrameReplayBuffer(100, gym.spaces.Box(0, 1, shape=(4,)), 0.9)
