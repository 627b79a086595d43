"""DQN, the agent every variant builds on.

Mnih et al. 2015, "Human-level control through deep reinforcement learning", with Double-DQN
targets (van Hasselt et al. 2016) as an option. The agent owns the online and target
networks and the optimizer; the training loop owns collection, replay and schedules.

Hooks a variant overrides instead of copying the update (see docs/plugins.md):

- :meth:`DQNAgent.build_network` -- the online network (the target is a copy);
- :meth:`DQNAgent.compute_target` -- bootstrapped targets for a batch, without gradients;
- :meth:`DQNAgent.compute_loss` -- the loss and per-sample TD errors against those targets;
- :meth:`DQNAgent.update` -- one gradient step (calls the two above);
- :meth:`DQNAgent.update_target` -- hard copy or Polyak averaging into the target network.

It implements the :class:`~qagent.agents.base.Agent` interface: its actor (:class:`QActor`) acts
through the run's exploration strategy and writes one transition per env step to a single
replay memory, which :meth:`DQNAgent.learn` samples.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar, Literal, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from qagent.agents.base import Actor, Agent, Exportable, Policy, Span, Transition
from qagent.agents.exploration import ActionValues, ExplorationStrategy, checked_actions
from qagent.agents.networks import QNetwork, apply_spectral_norm, build_torso
from qagent.agents.optim import FusedAdam, clip_grad_norm
from qagent.agents.policy import QPolicy, q_network_exportable
from qagent.agents.replay import Batch, Replay, make_replay
from qagent.agents.targets import double_next_values, elementwise_td_loss, max_next_values, td_target
from qagent.config import (
    AgentConfig,
    Fraction,
    NetworkConfig,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Probability,
    RunConfig,
)
from qagent.envs.factory import frame_stack_of
from qagent.errors import ConfigError
from qagent.plugins.registries import register_agent


class DQNConfig(AgentConfig):
    """Hyperparameters of DQN; defaults follow Stable-Baselines3 where they agree with the paper."""

    name: str = "dqn"
    gamma: Probability = 0.99
    """Discount factor."""
    lr: PositiveFloat = 1e-4
    """Adam learning rate."""
    adam_eps: PositiveFloat = 1e-8
    """Adam epsilon (Rainbow uses 1.5e-4)."""
    batch_size: PositiveInt = 32
    """Transitions per gradient step."""
    double: bool = False
    """Double-DQN targets: the online network picks the next action, the target network values it."""
    loss: Literal["huber", "mse"] = "huber"
    """TD loss: Huber (smooth L1, threshold 1) or mean squared error."""
    max_grad_norm: PositiveFloat | None = 10.0
    """Clip the global gradient norm to this value; None disables clipping."""
    target_update_interval: PositiveInt = 1000
    """Update the target network every this many env steps (as SB3 and CleanRL count)."""
    tau: Fraction = 1.0
    """Target update weight: 1 copies the online network (hard), below 1 is Polyak averaging (soft)."""
    learning_starts: NonNegativeInt = 1000
    """Env steps collected before the first gradient step."""
    train_freq: PositiveInt = 4
    """Run gradient steps every this many env steps."""
    gradient_steps: PositiveInt = 1
    """Gradient steps each time training runs."""
    dueling: bool = False
    """Dueling head: separate value and advantage streams, Q = V + A - mean(A) (Wang et al. 2016)."""
    noisy: bool = False
    """Noisy linear layers in the head (Fortunato et al. 2018), for exploration through the weights."""
    noisy_sigma0: PositiveFloat = 0.5
    """Initial noise scale of noisy layers (sigma_0 / sqrt(inputs))."""
    spectral_norm: bool = False
    """Constrain the torso's layers to spectral norm 1 (a Lipschitz bound on the features)."""

    def check(self, run: Any) -> None:
        self.check_learner(run.replay.capacity, run.train.total_steps)

    def check_learner(
        self, capacity: int, total_steps: int, prefix: str = "agent", replay_section: str = "replay"
    ) -> None:
        """Batches fit the replay memory and learning starts within the run (keys named with ``prefix``)."""
        if self.batch_size > capacity:
            raise ConfigError(
                f"{prefix}.batch_size ({self.batch_size}) is larger than {replay_section}.capacity ({capacity})",
                hint=f"use {prefix}.batch_size={capacity} or less, or a larger {replay_section}.capacity",
            )
        if self.learning_starts >= total_steps:
            raise ConfigError(
                f"{prefix}.learning_starts ({self.learning_starts}) is not below train.total_steps "
                f"({total_steps}), so the agent would never learn",
                hint=f"lower {prefix}.learning_starts or raise train.total_steps",
            )


class LossOutput(NamedTuple):
    """What :meth:`DQNAgent.compute_loss` returns.

    :param loss: scalar to minimise (already weighted by importance weights).
    :param td_errors: per-sample error magnitudes, for priorities (no gradient).
    :param q_taken: Q-values of the actions taken, for logging (no gradient).
    """

    loss: torch.Tensor
    td_errors: torch.Tensor
    q_taken: torch.Tensor


class UpdateResult(NamedTuple):
    """Metrics of one gradient step (``q_mean`` None when the learner does not report it)."""

    loss: float
    q_mean: float | None
    td_errors: torch.Tensor | None


class QActor(Actor):
    """Acts with a Q-policy through an exploration strategy; one transition per env step into a replay memory."""

    def __init__(self, policy: Policy, exploration: ExplorationStrategy, memory: Replay, n_actions: int) -> None:
        self.policy = policy
        self.exploration = exploration
        self.memory = memory
        self.n_actions = n_actions

    def act(self, obs: np.ndarray, step: int) -> np.ndarray:
        chosen = self.exploration.select(ActionValues(obs, self.policy.q_values, self.n_actions), step)
        return checked_actions(self.exploration, chosen, len(obs))

    def observe(self, step: Transition) -> None:
        self.memory.add(*step)

    def metrics(self, step: int) -> dict[str, float]:
        return {f"train/{k}": v for k, v in self.exploration.metrics(step).items()}

    def epsilon(self, step: int) -> float | None:
        return self.exploration.metrics(step).get("epsilon")

    def state_dict(self) -> dict[str, Any]:
        return {"exploration": self.exploration.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.exploration.load_state_dict(state["exploration"])


@register_agent("dqn")
class DQNAgent(Agent):
    """Deep Q-Network (Mnih et al. 2015); every Rainbow component is an option of its config."""

    Config = DQNConfig
    section_defaults: ClassVar[dict[str, dict[str, Any]]] = {}
    """Defaults this agent sets in other config sections (below presets and overrides)."""

    def __init__(
        self,
        config: DQNConfig,
        observation_space: gym.Space,
        action_space: gym.Space,
        network_config: NetworkConfig,
        device: str | torch.device = "cpu",
    ) -> None:
        if not isinstance(action_space, gym.spaces.Discrete):
            raise ConfigError(
                f"{type(self).__name__} needs a discrete action space, not {action_space}",
                hint="value-based agents pick one of n actions; discretize the action space with a wrapper",
            )
        self.config = config
        self.observation_space = observation_space
        self.action_space = action_space
        self.network_config = network_config
        self.n_actions = int(action_space.n)
        self.device = torch.device(device)
        self.q_net = self.build_network().to(self.device)
        self.target_net = copy.deepcopy(self.q_net).requires_grad_(False)
        self.optimizer = self.build_optimizer()
        self._params = [p for p in self.q_net.parameters() if p.requires_grad]
        self.policy = QPolicy(self.q_net, resample_noise=config.noisy)
        self.updates = 0

    # ------------------------------------------------------------------ the agent interface

    @property
    def train_every(self) -> int:
        return self.config.train_freq

    def make_memory(self, config: RunConfig, envs: gym.vector.VectorEnv, seed: int) -> Replay:
        """One replay memory as the run's ``replay`` section says (frames stored once when stacked)."""
        stack = frame_stack_of(envs)
        return make_replay(config.replay, envs.single_observation_space, self.config.gamma, envs.num_envs, seed, stack)

    def actor(
        self,
        exploration: ExplorationStrategy,
        envs: gym.vector.VectorEnv,
        memory: Replay,
        seed: int,
        policy: Policy | None = None,
    ) -> QActor:
        return QActor(policy or self.policy, exploration, memory, self.n_actions)

    def learn(self, memory: Replay, span: Span) -> dict[str, float]:
        return {f"train/{k}": v for k, v in self.learn_level(memory, span).items()}

    def learn_level(self, memory: Replay, span: Span, min_size: int = 1, active: bool = True) -> dict[str, float]:
        """Target updates due in ``span``, then its gradient rounds (once learning has started).

        :param min_size: transitions the memory must hold before sampling.
        :param active: False skips the gradient rounds (h-DQN's meta level while the controller pre-trains).
        :returns: the mean ``loss`` and ``q_mean`` of the gradient steps taken, if any.
        """
        c = self.config
        self.update_target(span.crossings(c.target_update_interval))
        if not active or span.end <= c.learning_starts or len(memory) < min_size:
            return {}
        updates = c.gradient_steps * span.crossings(c.train_freq)
        results = []
        for batch in memory.sample_many(updates, c.batch_size, span.progress):
            batch = batch.to(self.device)
            results.append(self.update(batch))
            if results[-1].td_errors is not None:
                memory.update_priorities(batch.indices, results[-1].td_errors)
        if not results:
            return {}
        out = {"loss": sum(r.loss for r in results) / len(results)}
        if results[0].q_mean is not None:
            out["q_mean"] = sum(r.q_mean for r in results) / len(results)
        return out

    def exportable(self) -> Exportable:
        return q_network_exportable(self.q_net)

    def optimistic_start(self, r_max: float, weight_scale: float) -> None:
        """Output weights scaled down and biases set so every Q-value starts near ``r_max / (1 - gamma)``."""
        head = getattr(self.q_net, "head", None)
        if head is None or getattr(head, "atoms", 1) != 1:
            raise ConfigError(
                "exploration 'optimistic' needs a head with one Q-value per action",
                hint="distributional agents cannot start optimistic; use epsilon-greedy or noisy",
            )
        with torch.no_grad():
            for layer in head.output_layers():
                layer.weight.mul_(weight_scale)
                layer.bias.zero_()
            head.output_layers()[0].bias.fill_(r_max / (1.0 - self.config.gamma))  # the value stream, or the only layer
        self.target_net.load_state_dict(self.q_net.state_dict())

    # ------------------------------------------------------------------ hooks

    def build_network(self) -> nn.Module:
        """The online Q-network: the registered torso plus a (dueling, noisy) head."""
        return QNetwork(self.build_torso(), self.n_actions, **self.head_options())

    def build_torso(self) -> nn.Module:
        torso = build_torso(self.observation_space, self.network_config)
        return apply_spectral_norm(torso) if self.config.spectral_norm else torso

    def head_options(self) -> dict[str, Any]:
        c = self.config
        return {"dueling": c.dueling, "noisy": c.noisy, "sigma0": c.noisy_sigma0}

    def build_optimizer(self) -> torch.optim.Optimizer:
        """Adam over the online network's parameters (a fused kernel on the CPU and on CUDA)."""
        if self.device.type == "cpu":
            return FusedAdam(self.q_net.parameters(), lr=self.config.lr, eps=self.config.adam_eps)
        fused = self.device.type == "cuda"
        return torch.optim.Adam(self.q_net.parameters(), lr=self.config.lr, eps=self.config.adam_eps, fused=fused)

    def compute_target(self, batch: Batch) -> torch.Tensor:
        """Bootstrapped targets ``r + discount * V(s')``, without gradients."""
        with torch.no_grad():
            next_q_target = self.target_net(batch.next_obs)
            if self.config.double:
                next_values = double_next_values(self.q_net(batch.next_obs), next_q_target)
            else:
                next_values = max_next_values(next_q_target)
            return td_target(batch.reward, batch.discount, next_values)

    def compute_loss(self, batch: Batch, target: torch.Tensor) -> LossOutput:
        """Weighted Huber or squared TD loss of the taken actions' Q-values."""
        q_taken = self.q_net(batch.obs).gather(1, batch.action.unsqueeze(1)).squeeze(1)
        td_error = target - q_taken
        per_sample = elementwise_td_loss(td_error, self.config.loss)
        loss = (per_sample if batch.weights is None else batch.weights * per_sample).mean()
        return LossOutput(loss, td_error.detach().abs(), q_taken.detach())

    def update(self, batch: Batch) -> UpdateResult:
        """One gradient step on ``batch`` (with fresh noise in both networks when they are noisy)."""
        if self.config.noisy:
            self.q_net.reset_noise()
            self.target_net.reset_noise()
        target = self.compute_target(batch)
        loss, td_errors, q_taken = self.compute_loss(batch, target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.max_grad_norm is not None:
            clip_grad_norm(self._params, self.config.max_grad_norm)
        getattr(self.optimizer, "fast_step", self.optimizer.step)()
        self.updates += 1
        return UpdateResult(loss.item(), q_taken.mean().item(), td_errors)

    def update_target(self, times: int = 1) -> None:
        """Apply ``times`` target updates: a hard copy (tau = 1) or Polyak averaging.

        Several soft updates in a row with unchanged online weights equal one update with
        ``tau_eff = 1 - (1 - tau) ** times``.
        """
        if times <= 0:
            return
        tau = 1.0 - (1.0 - self.config.tau) ** times
        with torch.no_grad():
            online = list(self.q_net.parameters()) + list(self.q_net.buffers())
            target = list(self.target_net.parameters()) + list(self.target_net.buffers())
            for t, o in zip(target, online, strict=True):
                if tau >= 1.0 or not t.is_floating_point():
                    t.copy_(o)
                else:
                    t.lerp_(o, tau)

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        return {
            "q_net": self.q_net.state_dict(),
            "target_net": self.target_net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore weights, optimizer moments and counters; the config's lr and eps stay in force."""
        self.q_net.load_state_dict(state["q_net"])
        self.target_net.load_state_dict(state["target_net"])
        self.optimizer.load_state_dict(state["optimizer"])
        for group in self.optimizer.param_groups:
            group["lr"], group["eps"] = self.config.lr, self.config.adam_eps
        self.updates = int(state["updates"])
