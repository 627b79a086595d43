"""Targets and TD losses against hand-computed values."""

from __future__ import annotations

import pytest
import torch

from qagent.agents.targets import double_next_values, elementwise_td_loss, max_next_values, td_target


def test_vanilla_and_double_targets_on_a_hand_made_batch():
    # Two transitions, three actions. The online net prefers action 0 in the first next state
    # and action 2 in the second; the target net's maxima are elsewhere.
    next_q_online = torch.tensor([[5.0, 1.0, 0.0], [0.0, 1.0, 3.0]])
    next_q_target = torch.tensor([[1.0, 4.0, 2.0], [7.0, 0.5, 2.0]])
    reward = torch.tensor([1.0, -1.0])
    discount = torch.tensor([0.9, 0.0])  # the second transition terminated

    vanilla = max_next_values(next_q_target)
    double = double_next_values(next_q_online, next_q_target)
    assert vanilla.tolist() == [4.0, 7.0]
    assert double.tolist() == [1.0, 2.0]
    assert td_target(reward, discount, vanilla).tolist() == pytest.approx([1.0 + 0.9 * 4.0, -1.0])
    assert td_target(reward, discount, double).tolist() == pytest.approx([1.0 + 0.9 * 1.0, -1.0])


def test_truncation_bootstraps_and_termination_does_not():
    next_values = torch.tensor([10.0, 10.0])
    reward = torch.tensor([1.0, 1.0])
    truncated_discount, terminated_discount = 0.99, 0.0
    target = td_target(reward, torch.tensor([truncated_discount, terminated_discount]), next_values)
    assert target.tolist() == pytest.approx([1.0 + 0.99 * 10.0, 1.0])


def test_n_step_discount_is_just_a_smaller_factor():
    # A 3-step transition carries discount gamma**3.
    target = td_target(torch.tensor([2.71]), torch.tensor([0.9**3]), torch.tensor([5.0]))
    assert target.item() == pytest.approx(2.71 + 0.729 * 5.0)


def test_huber_and_mse_losses():
    td = torch.tensor([0.5, -0.5, 2.0, -3.0])
    assert elementwise_td_loss(td, "huber").tolist() == pytest.approx([0.125, 0.125, 1.5, 2.5])
    assert elementwise_td_loss(td, "mse").tolist() == pytest.approx([0.25, 0.25, 4.0, 9.0])
    with pytest.raises(ValueError):
        elementwise_td_loss(td, "l1")
