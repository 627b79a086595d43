"""The replay buffer against a naive one: observations stored once, stacked frames, n-step windows."""

from __future__ import annotations

import collections

import gymnasium as gym
import numpy as np
import pytest
import torch
from naive_replay import NaiveReplay

from qagent.agents.replay.buffer import ReplayBuffer
from qagent.errors import CheckpointError

STACK, SIZE = 4, 6
FRAMES = gym.spaces.Box(0, 255, shape=(STACK, SIZE, SIZE), dtype=np.uint8)
VECTORS = gym.spaces.Box(-np.inf, np.inf, shape=(3,), dtype=np.float32)


class Stream:
    """One env's episodes. Each frame encodes (env, episode, step) in its pixels, so a stack
    that mixes episodes shows; vector observations carry the same three numbers."""

    def __init__(self, env: int, rng: np.random.Generator, stacked: bool) -> None:
        self.env, self.rng, self.stacked, self.episode = env, rng, stacked, 0
        self.reset()

    def frame(self) -> np.ndarray:
        if not self.stacked:
            return np.array([self.env, self.episode, self.t], np.float32)
        f = np.zeros((SIZE, SIZE), np.uint8)
        f[0, 0], f[0, 1], f[0, 2] = self.env, self.episode % 256, self.t % 256
        f[1:] = self.rng.integers(0, 255, (SIZE - 1, SIZE), dtype=np.uint8)
        return f

    def observation(self) -> np.ndarray:
        return np.stack(self.frames) if self.stacked else self.frames[-1]

    def reset(self) -> np.ndarray:
        self.episode += 1
        self.t = 0
        self.frames = collections.deque([self.frame()] * STACK, maxlen=STACK)
        return self.observation()

    def step(self) -> tuple[np.ndarray, bool, bool]:
        self.t += 1
        self.frames.append(self.frame())
        terminated = self.rng.random() < 0.08
        truncated = not terminated and self.t >= 15
        return self.observation(), terminated, truncated


def fill(n_envs: int, steps: int, capacity: int, stacked: bool = True, n_step: int = 1, seed: int = 0):
    rng = np.random.default_rng(seed)
    streams = [Stream(i, rng, stacked) for i in range(n_envs)]
    obs = np.stack([s.reset() for s in streams])
    space = FRAMES if stacked else VECTORS
    buffer = ReplayBuffer(capacity, space, 0.9, n_envs, STACK if stacked else None, n_step, seed=seed)
    naive = NaiveReplay(0.9, n_step)
    for _ in range(steps):
        action = rng.integers(0, 6, n_envs)
        reward = rng.standard_normal(n_envs).astype(np.float32)
        results = [s.step() for s in streams]
        next_obs = np.stack([r[0] for r in results])
        terminated = np.array([r[1] for r in results])
        truncated = np.array([r[2] for r in results])
        buffer.add(obs, action, reward, next_obs, terminated, truncated)
        naive.add(obs, action, reward, next_obs, terminated, truncated)
        for i, s in enumerate(streams):
            if terminated[i] or truncated[i]:
                next_obs[i] = s.reset()
        obs = next_obs
    return buffer, naive


def assert_matches(buffer: ReplayBuffer, naive: NaiveReplay, slots: np.ndarray) -> None:
    got = buffer.get(slots)
    want = naive.get(buffer.transition_id[slots])
    for key, value in want.items():
        assert torch.allclose(getattr(got, key), value.to(getattr(got, key).dtype)), key


@pytest.mark.parametrize("stacked", [True, False])
@pytest.mark.parametrize(("n_envs", "capacity"), [(1, 10_000), (3, 10_000), (2, 150)])
def test_samples_equal_the_naive_buffer(stacked, n_envs, capacity):
    buffer, naive = fill(n_envs, steps=400, capacity=capacity, stacked=stacked)
    slots = buffer.sample_indices(2000)
    assert_matches(buffer, naive, slots)
    batch = buffer.get(slots)
    assert batch.obs.shape == ((2000, STACK, SIZE, SIZE) if stacked else (2000, 3))
    assert batch.obs.dtype == (torch.uint8 if stacked else torch.float32)
    assert (batch.discount == 0).any() and (batch.discount > 0).any()  # terminations and truncations


@pytest.mark.parametrize("stacked", [True, False])
def test_n_step_windows_are_cut_at_episode_ends(stacked):
    buffer, naive = fill(2, steps=500, capacity=2000, stacked=stacked, n_step=3)
    slots = buffer.sample_indices(3000)
    assert_matches(buffer, naive, slots)
    discounts = {round(float(d), 5) for d in buffer.get(slots).discount}
    assert discounts == {0.0, 0.9, 0.81, 0.729}  # full windows, and windows cut by truncation


def test_windows_that_need_future_data_wait_for_it():
    buffer, naive = fill(1, steps=40, capacity=2000, stacked=False, n_step=5)
    newest = buffer.transition_id.max()
    ids = buffer.transition_id[buffer.sample_indices(2000)]
    rows = naive.rows
    for tid in set(ids.tolist()):  # a window within 4 of the newest transition must end inside the episode
        if newest - tid < 4:
            assert any(r["terminated"] or r["truncated"] for r in rows[tid : newest + 1])


def test_no_stack_mixes_two_episodes():
    buffer, _ = fill(2, steps=600, capacity=300)  # wraps around several times
    batch = buffer.get(buffer.sample_indices(5000))
    for stacks in (batch.obs, batch.next_obs):
        for channel in (0, 1):  # env and episode ids
            ids = stacks[:, :, 0, channel]
            assert torch.all(ids == ids[:, -1:])


def test_overwritten_observations_are_never_sampled():
    buffer, naive = fill(1, steps=1000, capacity=64)
    assert len(buffer) == buffer.valid.sum() < 64  # the count follows overwrites
    slots = buffer.sample_indices(4000)
    assert buffer.transition_id[slots].min() >= 1000 - 64  # only transitions still in the ring
    assert_matches(buffer, naive, slots)


def test_memory_is_one_observation_per_transition():
    frames = ReplayBuffer(1000, gym.spaces.Box(0, 255, shape=(4, 84, 84), dtype=np.uint8), 0.99, stack=4)
    assert 84 * 84 <= frames.nbytes / frames.capacity < 84 * 84 + 32
    vectors = ReplayBuffer(1000, VECTORS, 0.99)
    assert vectors.frames.nbytes == 1000 * 3 * 4  # each observation once, not obs and next_obs
    discrete = ReplayBuffer(100, gym.spaces.Discrete(6), 0.99)
    assert discrete.frames.dtype == np.int64 and discrete.frames.shape == (100,)


def test_sampling_is_seeded_and_uniform():
    a, _ = fill(1, steps=300, capacity=10_000, stacked=False, seed=3)
    b, _ = fill(1, steps=300, capacity=10_000, stacked=False, seed=3)
    assert np.array_equal(a.sample_indices(64), b.sample_indices(64))
    counts = np.bincount(a.transition_id[a.sample_indices(60_000)], minlength=300)
    assert counts.min() > 120 and counts.max() < 300  # about 200 each


def test_sample_many_gathers_consistent_batches():
    buffer, naive = fill(1, steps=300, capacity=10_000, stacked=False)
    batches = list(buffer.sample_many(5, 32))
    assert [len(b) for b in batches] == [32] * 5
    for batch in batches:
        assert_matches(buffer, naive, batch.indices)


def test_save_and_restore_exactly(tmp_path):
    buffer, _ = fill(2, steps=300, capacity=500, seed=4)
    path = tmp_path / "buffer.npz"
    buffer.save(path)
    restored = ReplayBuffer(500, FRAMES, 0.9, num_envs=2, stack=STACK, seed=99)
    restored.load(path)
    for name, array in buffer.arrays().items():
        assert np.array_equal(getattr(restored, name), array), name
    assert np.array_equal(restored.sample_indices(64), buffer.sample_indices(64))
    with pytest.raises(CheckpointError, match="holds 500 slots for 2 envs"):
        ReplayBuffer(500, FRAMES, 0.9, num_envs=1, stack=STACK).load(path)
    path.write_bytes(b"not a buffer")
    with pytest.raises(CheckpointError, match="unreadable"):
        restored.load(path)


def test_rejects_what_it_cannot_store():
    with pytest.raises(ValueError, match="do not stack 4 frames"):
        ReplayBuffer(100, VECTORS, 0.9, stack=4)
    with pytest.raises(ValueError, match="too small"):
        ReplayBuffer(2, VECTORS, 0.9)
    with pytest.raises(RuntimeError, match="empty replay buffer"):
        ReplayBuffer(100, VECTORS, 0.9).sample(1)
