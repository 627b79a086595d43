"""Stable-Baselines3's DQN as a qagent agent (``sb3-dqn``), for comparisons under equal conditions.

The same config keys (lr, batch, buffer, schedules, network), the same envs and preprocessing,
the same periodic evaluation, checkpoints, MLflow tracking, ``qagent eval`` and ``qagent export``;
only the learner is SB3's (``model.learn``), so differences in results or speed come from the
implementations. SB3 is an optional dependency (``pip install 'qagent[sb3]'``).

SB3's DQN has vanilla targets and the Huber loss, epsilon decays linearly, and the network is
an MLP or the Nature CNN; other settings are refused rather than silently ignored. Runs cannot
be resumed (SB3 keeps its own state in its own format).
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import gymnasium as gym
import torch
from torch import nn

from qagent.agents.dqn import DQNConfig
from qagent.agents.policy import QPolicy
from qagent.config import NetworkConfig, RunConfig
from qagent.errors import CheckpointError, ConfigError
from qagent.plugins.registries import register_agent
from qagent.training.collector import Episode

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
        if run.network.name not in ("mlp", "nature-cnn"):
            unsupported.append(f"network.name={run.network.name} (SB3 offers mlp and nature-cnn)")
        if run.exploration.name != "epsilon-greedy" or run.exploration.schedule != "linear":
            unsupported.append("exploration other than linear epsilon-greedy")
        if run.train.async_collection:
            unsupported.append("train.async_collection=true")
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


def _require_sb3() -> None:
    try:
        import stable_baselines3  # noqa: F401
    except ImportError:
        raise ConfigError("agent sb3-dqn needs Stable-Baselines3", hint="pip install 'qagent[sb3]'") from None


@register_agent("sb3-dqn")
class SB3DQNAgent:
    """Stable-Baselines3's DQN, trained through qagent's CLI, envs, evaluation and tracking."""

    Config = SB3DQNConfig

    def __init__(
        self,
        config: SB3DQNConfig,
        observation_space: gym.Space,
        action_space: gym.Space,
        network_config: NetworkConfig,
        device: str | torch.device = "cpu",
        sb3_policy: Any = None,
    ) -> None:
        _require_sb3()
        from stable_baselines3.dqn.policies import CnnPolicy, MlpPolicy

        self.config = config
        self.n_actions = int(action_space.n)
        if sb3_policy is None:  # for evaluation and export: the architecture SB3 would build
            name, kwargs = policy_spec(config, network_config)
            policy_cls = MlpPolicy if name == "MlpPolicy" else CnnPolicy
            sb3_policy = policy_cls(observation_space, action_space, lambda _: config.lr, **kwargs)
        self.sb3_policy = sb3_policy
        self.q_net = sb3_policy.q_net  # raw observations in (SB3 scales images inside), Q-values out
        self.target_net = sb3_policy.q_net_target
        self.optimizer = sb3_policy.optimizer
        self.policy = QPolicy(self.q_net)
        self.updates = 0

    @staticmethod
    def trainer_class() -> type:
        return SB3Trainer

    def state_dict(self) -> dict[str, Any]:
        return {
            "q_net": self.q_net.state_dict(),
            "target_net": self.target_net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.q_net.load_state_dict(state["q_net"])
        self.target_net.load_state_dict(state["target_net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.updates = int(state["updates"])


class SB3Epsilon:
    """The exploration view the trainer logs: SB3's current epsilon."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def metrics(self, step: int) -> dict[str, float]:
        return {"epsilon": float(self.model.exploration_rate)}

    def state_dict(self) -> dict[str, Any]:
        return {"epsilon": float(self.model.exploration_rate)}


def _trainer_base() -> type:
    from qagent.training.loop import Trainer

    return Trainer


class SB3Trainer(_trainer_base()):  # type: ignore[misc]
    """qagent's run around SB3's ``model.learn``: records, evaluation, checkpoints, tracking."""

    def build(self, seeds: list[int], device: str) -> None:
        from stable_baselines3 import DQN
        from stable_baselines3.common.vec_env import DummyVecEnv

        from qagent.envs.factory import make_env

        config: RunConfig = self.config
        agent, exploration = config.agent, config.exploration
        self.envs = DummyVecEnv([partial(make_env, config.env, training=True)] * config.env.num_envs)
        decay = exploration.decay_steps or exploration.fraction * config.train.total_steps
        name, policy_kwargs = policy_spec(agent, config.network)
        self.model = DQN(
            name,
            self.envs,
            learning_rate=agent.lr,
            buffer_size=config.replay.capacity,
            learning_starts=agent.learning_starts,
            batch_size=agent.batch_size,
            tau=agent.tau,
            gamma=agent.gamma,
            train_freq=max(1, agent.train_freq // config.env.num_envs),
            gradient_steps=agent.gradient_steps,
            target_update_interval=agent.target_update_interval,
            exploration_fraction=min(1.0, decay / config.train.total_steps),
            exploration_initial_eps=exploration.start,
            exploration_final_eps=exploration.end,
            max_grad_norm=agent.max_grad_norm if agent.max_grad_norm is not None else float("inf"),
            policy_kwargs=policy_kwargs,
            seed=config.seed,
            device=device,
            verbose=0,
        )
        space = self.envs.observation_space
        self.agent = SB3DQNAgent(agent, space, self.envs.action_space, config.network, sb3_policy=self.model.policy)
        self.exploration = SB3Epsilon(self.model)

    def train(self) -> Any:
        from stable_baselines3.common.callbacks import BaseCallback

        from qagent.training.progress import TrainingProgress
        from qagent.training.stopping import stop_on_interrupt

        trainer = self
        total, start_step = self.config.train.total_steps, self.step

        class Bridge(BaseCallback):
            """Feeds qagent's records, evaluation and checkpoints from inside SB3's loop."""

            def __init__(self, stop: Any) -> None:
                super().__init__()
                self.stop = stop
                self.seen_updates = 0
                self.paused = 0.0

            def _on_step(self) -> bool:
                prev, trainer.step = trainer.step, int(self.num_timesteps)
                episodes = [
                    Episode(trainer.step, float(info["episode"]["r"]), int(info["episode"]["l"]))
                    for info in self.locals["infos"]
                    if "episode" in info
                ]
                updates = int(self.model._n_updates)
                if updates > self.seen_updates:
                    loss = self.model.logger.name_to_value.get("train/loss")
                    if loss is not None:
                        trainer.window.add(float(loss))
                    self.seen_updates, trainer.agent.updates = updates, updates
                started = time.perf_counter()
                trainer._after_chunk(prev, episodes)
                self.paused += time.perf_counter() - started  # evaluation and checkpoints are not training
                return not self.stop.is_set()

        self._clock = (time.perf_counter(), self.step)
        with TrainingProgress(total, self.step, self.show_progress) as bar, stop_on_interrupt(bar.print) as stop:
            self._bar = bar
            bridge = Bridge(stop)
            started = time.perf_counter()
            self.model.learn(total_timesteps=total - self.step, callback=bridge, reset_num_timesteps=False)
            train_seconds = time.perf_counter() - started - bridge.paused
            self.collected = self.step
            interrupted = self.step < total
            bar.update(self.step, force=True)
        return self._finish(interrupted, start_step, train_seconds, signal=stop.signum)

    def state_dict(self, buffer_file: str | None) -> dict[str, Any]:
        import qagent

        return {
            "qagent_version": qagent.__version__,
            "config": self.config.to_dict(),
            "plugins": self.plugins,
            "step": self.step,
            "collector_step": self.step,
            "episodes": self.episodes,
            "agent": self.agent.state_dict(),
            "exploration": self.exploration.state_dict(),
            "buffer_file": None,
            "last_eval": self.last_eval,
            "best_eval": self.best_eval,
            "mlflow_run_id": self.tracker.run_id,
        }

    def restore(self, checkpoint: dict[str, Any]) -> None:
        raise CheckpointError(
            "runs of sb3-dqn cannot be resumed (Stable-Baselines3 keeps its own state)",
            hint="evaluate or export the run, or start a new one",
        )
