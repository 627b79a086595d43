"""Prioritized replay: the segment trees, proportional sampling, importance weights, annealing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_replay import VECTORS, assert_matches, fill

from qagent.agents.replay.buffer import ReplayBuffer
from qagent.agents.replay.prioritized import PrioritizedReplay, SegmentTree


@pytest.mark.parametrize("fanout", [2, 4, 32])
def test_sum_and_min_trees(fanout):
    sums, mins = SegmentTree(5, np.add, 0.0, fanout), SegmentTree(5, np.minimum, np.inf, fanout)
    values = np.array([3.0, 1.0, 4.0, 1.5, 9.0])
    sums.update(np.arange(5), values)
    mins.update(np.arange(5), values)
    assert sums.root == pytest.approx(18.5) and mins.root == 1.0
    sums.update(np.array([4, 1]), np.array([0.5, 2.0]))
    mins.update(np.array([4, 1]), np.array([0.5, 2.0]))
    assert sums.root == pytest.approx(11.0) and mins.root == 0.5
    # leaves 3, 2, 4, 1.5, 0.5: cumulative bounds 3, 5, 9, 10.5, 11
    prefixes = np.array([0.0, 2.99, 3.0, 4.99, 5.0, 8.99, 9.0, 10.49, 10.5, 10.99])
    assert sums.find_prefix(prefixes).tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]


def buffer_with_priorities(priorities: np.ndarray, alpha: float) -> PrioritizedReplay:
    storage = ReplayBuffer(10_000, VECTORS, 0.9, seed=0)
    per = PrioritizedReplay(storage, alpha=alpha, beta=0.4, eps=0.0, seed=1)
    zeros = np.zeros((1, 3), np.float32)
    for i in range(len(priorities)):
        per.add(
            zeros + i, np.array([0]), np.array([0.0], np.float32), zeros + i + 1, np.array([False]), np.array([False])
        )
    slots = np.flatnonzero(storage.valid)
    per.update_priorities(slots, priorities[storage.transition_id[slots]])
    return per


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_sampling_frequencies_follow_priorities(alpha):
    priorities = np.array([1.0, 2.0, 4.0, 8.0, 0.5, 3.0])
    per = buffer_with_priorities(priorities, alpha)
    draws = 200_000
    ids = per.storage.transition_id[per.sample_indices(draws)]
    frequencies = np.bincount(ids, minlength=6) / draws
    expected = priorities**alpha / (priorities**alpha).sum()
    assert frequencies == pytest.approx(expected, abs=0.005)


def test_importance_weights_by_hand():
    priorities = np.array([1.0, 2.0, 4.0, 8.0])
    per = buffer_with_priorities(priorities, alpha=1.0)
    slots = np.flatnonzero(per.storage.valid)
    ids = per.storage.transition_id[slots]
    weights = per.weights(slots, beta=0.5)
    probabilities = priorities[ids] / priorities.sum()
    expected = (4 * probabilities) ** -0.5 / (4 * (1.0 / 15.0)) ** -0.5
    assert weights == pytest.approx(expected)
    assert weights.max() == pytest.approx(1.0)  # the rarest transition weighs 1
    assert per.beta_at(0.0) == 0.4 and per.beta_at(0.5) == pytest.approx(0.7) and per.beta_at(2.0) == 1.0


def test_new_transitions_get_the_largest_priority_and_updates_take_abs_plus_eps():
    storage = ReplayBuffer(1000, VECTORS, 0.9)
    per = PrioritizedReplay(storage, alpha=1.0, beta=0.4, eps=0.01)
    zeros = np.zeros((1, 3), np.float32)
    step = (zeros, np.array([0]), np.array([0.0], np.float32), zeros, np.array([False]), np.array([False]))
    first, _ = per.add(*step)
    per.update_priorities(first, torch.tensor([-5.0]))
    assert per.max_priority == pytest.approx(5.01)
    assert per.sums.leaves[first[0]] == pytest.approx(5.01)
    second, fresh = per.add(*step)
    assert per.sums.leaves[second[0]] == pytest.approx(5.01)  # the largest so far
    assert per.sums.leaves[fresh[0]] == 0.0  # a fresh observation starts no transition yet


def test_batches_carry_weights_and_never_unusable_slots():
    storage, naive = fill(2, steps=400, capacity=300, stacked=True, n_step=3)
    per = PrioritizedReplay(storage, alpha=0.6, beta=0.4, seed=2)
    valid = np.flatnonzero(storage.valid)
    per.update_priorities(valid, np.random.default_rng(0).random(len(valid)) + 0.1)
    batches = list(per.sample_many(20, 32, progress=0.5))
    for batch in batches:
        assert batch.weights is not None and batch.weights.shape == (32,) and (batch.weights <= 1.0).all()
        assert storage.usable(batch.indices).all()
        assert_matches(storage, naive, batch.indices)


def test_save_and_restore(tmp_path):
    per = buffer_with_priorities(np.array([1.0, 5.0, 2.0]), alpha=0.6)
    path = tmp_path / "per.npz"
    per.save(path)
    restored = PrioritizedReplay(ReplayBuffer(10_000, VECTORS, 0.9), alpha=0.6, beta=0.4, eps=0.0)
    restored.load(path)
    assert np.array_equal(restored.sums.leaves, per.sums.leaves) and restored.max_priority == per.max_priority
    assert np.array_equal(restored.sample_indices(50), per.sample_indices(50))


def test_a_deep_tree_agrees_with_cumulative_sums():
    rng = np.random.default_rng(0)
    values = rng.random(100_000)
    tree = SegmentTree(len(values), np.add, 0.0)
    tree.update(np.arange(len(values)), values)
    assert tree.root == pytest.approx(values.sum())
    prefix = rng.random(1000) * values.sum()
    assert np.array_equal(tree.find_prefix(prefix), np.searchsorted(np.cumsum(values), prefix, side="right"))
    changed = rng.integers(0, len(values), 500)
    values[changed] = 0.0
    tree.update(changed, np.zeros(500))
    assert tree.root == pytest.approx(values.sum())
