"""The math of the Rainbow components against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_replay import VECTORS

from qagent.agents.networks.heads import NoisyLinear, QHead
from qagent.agents.targets import categorical_projection, quantile_huber_loss
from qagent.envs.shaping import shaped_reward


def test_categorical_projection_by_hand():
    support = torch.tensor([-1.0, 0.0, 1.0])
    probs = torch.tensor([[0.2, 0.5, 0.3]])
    # r = 0.5, discount 1: atoms move to -0.5, 0.5 and 1.5 (clipped to 1)
    projected = categorical_projection(probs, torch.tensor([0.5]), torch.tensor([1.0]), support)
    assert projected[0].tolist() == pytest.approx([0.1, 0.35, 0.55])
    # terminal (discount 0): all mass on r = 0.3, split between 0 and 1
    terminal = categorical_projection(probs, torch.tensor([0.3]), torch.tensor([0.0]), support)
    assert terminal[0].tolist() == pytest.approx([0.0, 0.7, 0.3])
    # outside the support on both sides: the mass piles up on the edge atoms
    high = categorical_projection(probs, torch.tensor([5.0]), torch.tensor([0.9]), support)
    low = categorical_projection(probs, torch.tensor([-5.0]), torch.tensor([0.9]), support)
    assert high[0].tolist() == pytest.approx([0.0, 0.0, 1.0]) and low[0].tolist() == pytest.approx([1.0, 0.0, 0.0])
    # atoms landing exactly on the support keep all their mass (discount 1, r = 0)
    same = categorical_projection(probs, torch.tensor([0.0]), torch.tensor([1.0]), support)
    assert same[0].tolist() == pytest.approx([0.2, 0.5, 0.3])


def test_categorical_projection_conserves_mass_and_mean():
    torch.manual_seed(0)
    support = torch.linspace(-10, 10, 51)
    probs = torch.softmax(torch.randn(64, 51), dim=1)
    reward, discount = torch.rand(64) * 2 - 1, torch.full((64,), 0.5)  # every moved atom stays inside
    projected = categorical_projection(probs, reward, discount, support)
    assert projected.sum(1) == pytest.approx(torch.ones(64), abs=1e-5)
    expected_mean = reward + discount * (probs * support).sum(1)  # inside the support, projection keeps the mean
    assert (projected * support).sum(1) == pytest.approx(expected_mean, abs=1e-4)


def test_quantile_huber_loss_by_hand():
    quantiles = torch.zeros(1, 2)  # taus 0.25 and 0.75
    above = quantile_huber_loss(quantiles, torch.tensor([[2.0]]))
    assert above.item() == pytest.approx(0.25 * 1.5 + 0.75 * 1.5)  # Huber(2) = 1.5, weights tau
    below = quantile_huber_loss(quantiles, torch.tensor([[-0.5]]))
    assert below.item() == pytest.approx(0.75 * 0.125 + 0.25 * 0.125)  # Huber(0.5) = 0.125, weights 1 - tau
    wide = quantile_huber_loss(quantiles, torch.tensor([[2.0]]), kappa=3.0)
    assert wide.item() == pytest.approx((0.25 + 0.75) * 0.5 * 4 / 3)  # quadratic inside kappa, divided by kappa


def test_quantile_regression_finds_the_quantiles():
    torch.manual_seed(0)
    theta = torch.zeros(1, 4, requires_grad=True)
    optimizer = torch.optim.Adam([theta], lr=0.02)
    for _ in range(3000):
        samples = torch.rand(1, 64)  # Uniform(0, 1)
        optimizer.zero_grad()
        quantile_huber_loss(theta, samples, kappa=0.01).mean().backward()
        optimizer.step()
    assert theta.detach()[0].tolist() == pytest.approx([0.125, 0.375, 0.625, 0.875], abs=0.04)


def test_dueling_aggregation():
    head = QHead(features=2, n_actions=3, dueling=True)
    with torch.no_grad():
        head.value.weight.copy_(torch.tensor([[1.0, 0.0]]))
        head.value.bias.zero_()
        head.advantage.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        head.advantage.bias.zero_()
    x = torch.tensor([[2.0, 4.0]])
    value, advantage = 2.0, torch.tensor([2.0, 4.0, 6.0])
    assert head(x)[0, :, 0].tolist() == pytest.approx((value + advantage - advantage.mean()).tolist())
    assert head(x)[0, :, 0].mean().item() == pytest.approx(value)  # mean(A) is taken out


def test_noisy_layer_statistics():
    torch.manual_seed(0)
    layer = NoisyLinear(400, 2, sigma0=0.5)
    assert layer.weight_sigma[0, 0].item() == pytest.approx(0.5 / 20)  # sigma0 / sqrt(inputs)
    x = torch.ones(1, 400)
    layer.eval()
    mean_output = layer(x)
    assert torch.equal(layer(x), mean_output)  # eval: the mean weights, deterministic
    layer.train()
    outputs = []
    for _ in range(4000):
        layer.reset_noise()
        outputs.append(layer(x))
    outputs = torch.cat(outputs)
    assert outputs.mean(0).tolist() == pytest.approx(mean_output[0].tolist(), abs=0.02)
    # factorised noise: each output's noise is eps_out * (sum of sigma * eps_in) + sigma_b * eps_out
    f = lambda e: e.sign() * e.abs().sqrt()  # noqa: E731
    eps = torch.randn(200_000, 400)
    sum_in = (0.025 * f(eps)).sum(1)  # per draw; mean |e| of the scaled noise is E|x|^(1/2)
    predicted_std = (sum_in + 0.025).std() * f(torch.randn(200_000)).std()
    assert outputs.std(0).mean().item() == pytest.approx(predicted_std.item(), rel=0.1)
    assert torch.linalg.matrix_rank(torch.outer(layer.eps_out, layer.eps_in)) == 1


def value_iteration(P, R, terminal, gamma, iters=2000):
    """Q* of a tabular MDP: P[s, a, s'], R[s, a, s'], terminal[s'] (no value after it)."""
    n_states, n_actions, _ = P.shape
    q = np.zeros((n_states, n_actions))
    for _ in range(iters):
        v = np.where(terminal, 0.0, q.max(1))
        q = (P * (R + gamma * v[None, None, :])).sum(2)
    return q


def test_potential_shaping_keeps_the_optimal_policy():
    rng = np.random.default_rng(0)
    n_states, n_actions, gamma = 8, 3, 0.9
    P = rng.random((n_states, n_actions, n_states)) ** 4
    P /= P.sum(2, keepdims=True)
    R = rng.standard_normal((n_states, n_actions, n_states))
    terminal = np.zeros(n_states, bool)
    terminal[-1] = True
    phi = rng.standard_normal(n_states) * 5
    shaped = np.array(
        [
            [
                [shaped_reward(R[s, a, t], phi[s], phi[t], gamma, terminal[t]) for t in range(n_states)]
                for a in range(n_actions)
            ]
            for s in range(n_states)
        ]
    )
    q, q_shaped = value_iteration(P, R, terminal, gamma), value_iteration(P, shaped, terminal, gamma)
    live = ~terminal
    assert np.array_equal(q[live].argmax(1), q_shaped[live].argmax(1))  # the same optimal policy
    assert q_shaped[live] == pytest.approx(q[live] - phi[live, None])  # Q*_shaped = Q* - Phi


def test_shaped_reward_formula():
    assert shaped_reward(1.0, phi=2.0, phi_next=3.0, gamma=0.5, terminated=False) == pytest.approx(1.0 + 1.5 - 2.0)
    assert shaped_reward(1.0, phi=2.0, phi_next=3.0, gamma=0.5, terminated=True) == pytest.approx(1.0 - 2.0)


def test_n_step_return_by_hand():
    from qagent.agents.replay.buffer import ReplayBuffer

    def run(terminated_at=None, truncated_at=None):
        buffer = ReplayBuffer(100, VECTORS, 0.5, n_step=3)
        obs = np.zeros((1, 3), np.float32)
        for t, reward in enumerate([1.0, 2.0, 3.0, 4.0]):
            term, trunc = t == terminated_at, t == truncated_at
            buffer.add(obs + t, [0], [reward], obs + t + 1, [term], [trunc])
            if term or trunc:
                break
        return buffer.get(np.array([0]))

    full = run()
    assert full.reward.item() == pytest.approx(1 + 0.5 * 2 + 0.25 * 3) and full.discount.item() == pytest.approx(0.125)
    assert full.next_obs[0, 0].item() == 3.0
    ended = run(terminated_at=1)
    assert ended.reward.item() == pytest.approx(2.0) and ended.discount.item() == 0.0
    cut = run(truncated_at=1)
    assert cut.reward.item() == pytest.approx(2.0) and cut.discount.item() == pytest.approx(0.25)
    assert cut.next_obs[0, 0].item() == 2.0  # bootstraps from the true final observation
