"""h-DQN's config section: the goal space, both levels (each a DQN config), D2, the epsilons."""

from __future__ import annotations

from typing import Any, Literal

from qagent.agents.dqn import DQNConfig
from qagent.agents.exploration import linear_schedule
from qagent.config import AgentConfig, NonNegativeInt, PositiveInt, Probability, ReplayConfig, Section
from qagent.errors import ConfigError
from qagent.plugins.registries import GOAL_SPACES


class Annealing(Section):
    """Epsilon annealed linearly from ``start`` to ``end`` over ``steps`` env steps (or a ``fraction`` of the run)."""

    start: Probability = 1.0
    """Epsilon at the first step."""
    end: Probability = 0.1
    """Epsilon after the decay."""
    steps: PositiveInt = 50_000
    """Env steps over which epsilon decays (counted from the end of controller pre-training for the meta level)."""
    fraction: Probability | None = None
    """The decay's length as a fraction of ``train.total_steps`` instead of ``steps`` (a preset then scales
    with the budget it is given)."""

    def duration(self, total_steps: int | None) -> int:
        if self.fraction is None:
            return self.steps
        if total_steps is None:
            raise ValueError("an epsilon schedule given as a fraction needs the run's train.total_steps")
        return max(1, int(self.fraction * total_steps))

    def at(self, step: int, total_steps: int | None = None) -> float:
        return linear_schedule(max(step, 0), self.start, self.end, self.duration(total_steps))


def _level(**overrides: Any) -> DQNConfig:
    """A level's defaults: small batches and frequent updates, as the paper's tabular runs use."""
    base = {"lr": 2.5e-4, "batch_size": 32, "learning_starts": 1000, "train_freq": 1, "target_update_interval": 500}
    return DQNConfig(**{**base, **overrides})


class HDQNConfig(AgentConfig):
    """h-DQN: a goal space, a controller and a meta-controller, each level a DQN with its own settings."""

    name: str = "hdqn"
    goal_space: str = "state-index"
    """Registered goal space (``qagent plugins list --kind goal-space``)."""
    goal_space_kwargs: dict[str, Any] = {}
    """Options of the goal space."""
    controller: DQNConfig = _level()
    """The controller Q1((s, g), a): any DQN option (double, dueling, lr, schedule); its memory D1 is ``replay``."""
    meta: DQNConfig = _level()
    """The meta-controller Q2(s, g): any DQN option; its memory D2 is ``agent.meta_replay``."""
    meta_replay: ReplayConfig = ReplayConfig(capacity=50_000)
    """D2, the meta-controller's memory of options (prioritized and n-step apply here too)."""
    intrinsic_reward: float = 1.0
    """The internal critic's reward when the controller reaches its goal."""
    step_penalty: float = 0.0
    """Subtracted from the intrinsic reward on every step (0 in the paper)."""
    max_option_steps: PositiveInt | None = None
    """End an option that has not reached its goal after this many steps (None: only at the episode's end)."""
    retry_failed_after: PositiveInt | None = None
    """Steps a goal whose option timed out stays barred from the meta-controller's choices (None: until
    an option succeeds, a life is lost or the episode ends); in training, evaluation and served sessions."""
    meta_epsilon: Annealing = Annealing()
    """The meta-controller's epsilon (epsilon_2), annealed after controller pre-training."""
    controller_epsilon: Literal["anneal", "success-rate"] = "anneal"
    """``anneal``: one schedule (``controller_annealing``); ``success-rate``: per goal, 1 - its recent success rate."""
    controller_annealing: Annealing = Annealing()
    """The controller's epsilon (epsilon_1) when ``controller_epsilon`` is ``anneal``."""
    success_window: PositiveInt = 100
    """Recent attempts per goal behind its success rate (logged, and epsilon_1 with ``success-rate``)."""
    success_epsilon_min: Probability = 0.1
    """The lowest epsilon_1 a goal gets from its success rate."""
    goal_encoding: Literal["auto", "vector", "planes", "mask", "observed-mask"] = "auto"
    """How the controller sees its goal: ``vector`` (one-hot after the flat observation, for vector torsos),
    ``planes`` (a constant plane per goal on an image), ``mask`` (a plane marking where the goal is, from
    the goal space), ``observed-mask`` (a plane read from the observation's channels that show the goal,
    e.g. MiniGrid's box plane); ``auto``: ``mask`` on images when the goal space has masks, else ``planes``
    on images, else ``vector``."""
    pretrain_steps: NonNegativeInt = 0
    """Env steps of controller pre-training with random goals (epsilon_2 = 1, no meta updates) before joint training."""

    def check(self, run: Any) -> None:
        if run.train.async_collection:
            raise ConfigError("h-DQN collects serially", hint="set train.async_collection=false")
        if self.goal_space not in GOAL_SPACES:
            GOAL_SPACES.get(self.goal_space)  # raises with close matches
        for key, level in (("controller", self.controller), ("meta", self.meta)):
            if level.name != "dqn":
                raise ConfigError(
                    f"agent.{key}.name must be 'dqn': each level is a DQN learner, configured by its options",
                    hint=f"set agent.{key}.double / dueling / noisy; PER and n-step live in the replay configs",
                )
        total = run.train.total_steps
        self.controller.check_learner(run.replay.capacity, total, "agent.controller", "replay")
        self.meta.check_learner(self.meta_replay.capacity, total, "agent.meta", "agent.meta_replay")
        if self.pretrain_steps >= run.train.total_steps:
            raise ConfigError(
                f"agent.pretrain_steps ({self.pretrain_steps}) leaves no joint training in train.total_steps "
                f"({run.train.total_steps})",
                hint="lower agent.pretrain_steps or raise train.total_steps",
            )
        if (
            run.exploration.name != "epsilon-greedy"
            or run.exploration.model_dump() != type(run.exploration)().model_dump()
        ):
            raise ConfigError(
                "h-DQN explores with its own epsilons; the exploration section does not apply",
                hint="set agent.meta_epsilon and agent.controller_epsilon / agent.controller_annealing instead",
            )
