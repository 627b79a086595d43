"""Stable-Baselines3's DQN learner as a qagent agent (``sb3-dqn``), for comparisons under equal conditions.

A plugin like any other: a :class:`~qagent.agents.dqn.DQNAgent` whose network, optimizer and
gradient step are SB3's (its ``QNetwork``, its Adam, ``DQN.train``) while collection, replay,
the schedule, exploration, evaluation, checkpoints and export are qagent's, through the one
training loop. Differences in results or speed then come from the learners alone. SB3 is an
optional dependency (``pip install 'qagent[sb3]'``).

SB3's DQN has vanilla targets, the Huber loss, uniform replay and an MLP or the Nature CNN;
other settings are refused rather than silently ignored. n-step returns work: each sample's
discount goes to SB3 as its ``discounts``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch
from torch import nn

from qagent import register_agent
from qagent.agents.dqn import DQNAgent, DQNConfig, UpdateResult
from qagent.agents.replay import Batch
from qagent.config import NetworkConfig
from qagent.errors import ConfigError

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "gelu": nn.GELU, "silu": nn.SiLU}


class SB3DQNConfig(DQNConfig):
    """The DQN keys that SB3's DQN takes, checked for settings it does not have."""

    name: str = "sb3-dqn"

    def check(self, run: Any) -> None:
        super().check(run)
        unsupported = []
        if self.double:
            unsupported.append("agent.double=true (SB3's DQN uses vanilla targets)")
        if self.loss != "huber":
            unsupported.append("agent.loss=mse (SB3's DQN uses the Huber loss)")
        if self.dueling or self.noisy or self.spectral_norm:
            unsupported.append("dueling, noisy or spectral-norm networks (SB3 builds a plain QNetwork)")
        if run.replay.prioritized:
            unsupported.append("replay.prioritized=true (SB3's DQN samples uniformly)")
        if run.network.name not in ("mlp", "nature-cnn"):
            unsupported.append(f"network.name={run.network.name} (SB3 offers mlp and nature-cnn)")
        if unsupported:
            raise ConfigError("sb3-dqn does not support " + "; ".join(unsupported), hint="use agent.name=dqn for those")


def policy_spec(agent: DQNConfig, network: NetworkConfig) -> tuple[str, dict[str, Any]]:
    """SB3's policy name and ``policy_kwargs`` for a qagent network config."""
    kwargs: dict[str, Any] = {"optimizer_kwargs": {"eps": agent.adam_eps}}
    if network.name == "mlp":
        kwargs.update(net_arch=list(network.hidden_sizes), activation_fn=ACTIVATIONS[network.activation])
        return "MlpPolicy", kwargs
    kwargs.update(features_extractor_kwargs={"features_dim": network.features})
    return "CnnPolicy", kwargs


class OneBatch:
    """Stands in for SB3's replay buffer: ``sample`` hands ``DQN.train`` the batch qagent sampled."""

    def __init__(self) -> None:
        self.batch: Batch | None = None

    def sample(self, batch_size: int, env: Any = None) -> Any:
        from stable_baselines3.common.type_aliases import ReplayBufferSamples

        b = self.batch
        assert b is not None, "sample() outside SB3DQNAgent.update"
        column = torch.zeros_like(b.reward).unsqueeze(1)
        return ReplayBufferSamples(
            b.obs, b.action.unsqueeze(1), b.next_obs, column, b.reward.unsqueeze(1), b.discount.unsqueeze(1)
        )


@register_agent("sb3-dqn")
class SB3DQNAgent(DQNAgent):
    """Stable-Baselines3's DQN learner (network, Adam, ``DQN.train``) in qagent's loop."""

    Config = SB3DQNConfig
    config: SB3DQNConfig

    def __init__(
        self,
        config: SB3DQNConfig,
        observation_space: gym.Space,
        action_space: gym.Space,
        network_config: NetworkConfig,
        device: str | torch.device = "cpu",
    ) -> None:
        try:
            from stable_baselines3 import DQN
            from stable_baselines3.common.logger import Logger
        except ImportError:
            raise ConfigError("agent sb3-dqn needs Stable-Baselines3", hint="pip install 'qagent[sb3]'") from None
        name, policy_kwargs = policy_spec(config, network_config)
        model = DQN(
            name,
            env=None,
            learning_rate=config.lr,
            buffer_size=1,  # qagent's memory is sampled instead (OneBatch)
            batch_size=config.batch_size,
            gamma=config.gamma,
            max_grad_norm=config.max_grad_norm if config.max_grad_norm is not None else float("inf"),
            policy_kwargs=policy_kwargs,
            device=device,
            _init_setup_model=False,
        )
        model.observation_space, model.action_space, model.n_envs = observation_space, action_space, 1
        model._setup_model()
        model.set_logger(Logger(folder=None, output_formats=[]))
        model.replay_buffer = self.samples = OneBatch()  # type: ignore[assignment]
        self.model = model
        super().__init__(config, observation_space, action_space, network_config, device)
        model.q_net_target = model.policy.q_net_target = self.target_net

    # ------------------------------------------------------------------ the DQN hooks SB3 fills

    def build_network(self) -> nn.Module:
        """SB3's QNetwork: raw observations in (it scales images and one-hot codes states itself)."""
        return self.model.q_net

    def build_optimizer(self) -> torch.optim.Optimizer:
        return self.model.policy.optimizer

    def update(self, batch: Batch) -> UpdateResult:
        """One gradient step of ``DQN.train`` on ``batch``."""
        self.samples.batch = batch
        try:
            self.model.train(gradient_steps=1, batch_size=len(batch.reward))
        finally:
            self.samples.batch = None
        self.updates += 1
        return UpdateResult(float(self.model.logger.name_to_value["train/loss"]), None, None)
