"""The agent interface: what the one training loop, evaluation, export and resume ask of an agent.

Every agent (DQN and its variants, h-DQN, a plugin's) is an :class:`Agent`. The loop never
reaches inside one: it asks for an :class:`Actor` to collect with, a memory to fill, one
learning round at a time (whose metrics it logs), the acting half to evaluate and export,
and a state dict to checkpoint.

The split follows the data flow. The *actor* runs next to the envs: it turns observations into
actions with a :class:`Policy` (numpy in, numpy out, no gradients) and writes what it saw into
the memory, keeping any per-env state (h-DQN's goals and options) itself. The *learner* (the
agent) samples the memory and updates its networks. An actor needs only a policy, and a policy
can be copied and refreshed from a weights snapshot, so collection can run in another thread or
process than learning.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np

if TYPE_CHECKING:
    from torch import nn

    from qagent.agents.exploration import ExplorationStrategy
    from qagent.config import AgentConfig, NetworkConfig, RunConfig


@dataclass(frozen=True)
class Span:
    """The env steps ``(start, end]`` just collected, in a run of ``total`` steps.

    The loop is defined per env step: whatever is due at multiples of an interval (a target
    update, a training round) is due as many times as the span crosses a multiple.
    """

    start: int
    end: int
    total: int

    def crossings(self, every: int) -> int:
        """How many multiples of ``every`` lie in ``(start, end]``."""
        return self.end // every - self.start // every

    @property
    def progress(self) -> float:
        """How far through the run its end is, 0..1 (prioritized replay anneals beta by it)."""
        return self.end / self.total


class Transition(NamedTuple):
    """One vector step of every env: ``next_obs`` is the true next observation (before any reset)."""

    obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    next_obs: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray


@runtime_checkable
class Policy(Protocol):
    """The acting half of an agent: numpy observations in, Q-values and greedy actions out.

    It is what export writes and evaluation plays; it knows nothing of targets, losses or
    optimizers.
    """

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        """``float32[batch, n]``: action values (for a hierarchy, the meta-controller's goal values)."""

    def evaluator(self) -> EvalActor:
        """An actor for evaluation episodes: greedy, with whatever per-env state the policy keeps."""

    def evaluation_mode(self) -> contextlib.AbstractContextManager[Policy]:
        """A block in which the networks act deterministically (noisy layers use their means)."""

    def copy(self) -> Policy:
        """An independent copy with the same weights, for acting in another thread or process."""

    def weights(self) -> dict[str, Any]:
        """A snapshot of the weights that :meth:`load_weights` of a copy takes."""

    def load_weights(self, weights: dict[str, Any]) -> None:
        """Take the weights of a snapshot from :meth:`weights`."""


class EvalActor(Protocol):
    """Chooses actions for a batch of evaluation envs; may keep per-env state between steps."""

    def reset(self, mask: np.ndarray) -> None:
        """The envs in ``mask`` start new episodes."""

    def __call__(self, obs: np.ndarray, envs: Sequence[gym.Env]) -> np.ndarray:
        """Actions for ``obs`` (one row per env in ``envs``)."""

    # Optional: ``explore(epsilon, rng)``, for actors with levels above the actions (h-DQN's goals),
    # which then explore with the evaluation's epsilon too (the evaluator adds it to the actions);
    # see :func:`explore_goals`.


def explore_goals(actor: EvalActor, epsilon: float, seed: int) -> None:
    """Levels above the actions (h-DQN's goals) explore with ``epsilon`` too, from their own generator.

    The evaluation protocol's epsilon applies at every level; the goal level's draws come from
    a generator of their own, so flat agents' evaluations are what they were.
    """
    explore = getattr(actor, "explore", None)
    if explore is not None:
        explore(epsilon, np.random.default_rng([seed, 1]))


class GreedyActor:
    """The action with the highest Q-value; no state between steps."""

    def __init__(self, q_values: Callable[[np.ndarray], np.ndarray]) -> None:
        self.q_values = q_values

    def reset(self, mask: np.ndarray) -> None:
        pass

    def __call__(self, obs: np.ndarray, envs: Sequence[gym.Env]) -> np.ndarray:
        return self.q_values(obs).argmax(axis=1)


@runtime_checkable
class Memory(Protocol):
    """What the loop does with an agent's memory itself: count it, and save and load it with checkpoints.

    Everything else (adding transitions, sampling) is between the agent's actor and learner.
    """

    def __len__(self) -> int: ...

    def save(self, path: Path) -> None: ...

    def load(self, path: Path) -> None: ...


class Actor(abc.ABC):
    """Acts in a batch of envs during collection and writes what it saw to the agent's memory.

    The collector calls, per vector step: :meth:`act`, then ``envs.step``, then :meth:`observe`;
    when envs finish :meth:`episodes_ended` (before their reset), and after any reset
    :meth:`episodes_started`. An actor reads Q-values only through its :class:`Policy`.
    """

    @abc.abstractmethod
    def act(self, obs: np.ndarray, step: int) -> np.ndarray:
        """``int64[num_envs]`` actions for ``obs`` at global env step ``step``."""

    @abc.abstractmethod
    def observe(self, step: Transition) -> None:
        """One vector step's transitions: write them to memory."""

    def episodes_ended(self, finished: np.ndarray) -> list[dict[str, float]]:
        """Per-episode metrics of the whole games in ``finished`` (an index array), in order."""
        return [{} for _ in finished]

    def episodes_started(self, mask: np.ndarray, obs: np.ndarray) -> None:  # noqa: B027 - optional hook
        """The envs in ``mask`` were reset; ``obs`` holds every env's observation now."""

    def metrics(self, step: int) -> dict[str, float]:
        """Values worth logging at ``step`` (epsilon, per-goal success rates, ...)."""
        return {}

    def epsilon(self, step: int) -> float | None:
        """The exploration rate the progress bar shows, if the actor has one."""
        return None

    def summary(self) -> dict[str, Any]:
        """A summary for the run's run.json at its end (JSON-serializable)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027 - stateless actors keep nothing
        pass


@dataclass
class Exportable:
    """What export writes for an agent: the module, its inputs from observations, extra metadata.

    :param module: ``inputs -> (q_values, action[, more])`` in eval mode.
    :param make_inputs: a batch of observations -> the tuple of input arrays.
    """

    module: nn.Module
    make_inputs: Callable[[np.ndarray], tuple[np.ndarray, ...]]
    input_names: list[str]
    output_names: list[str]
    metadata: dict[str, Any] = field(default_factory=dict)


class Agent(abc.ABC):
    """The interface every agent implements; see docs/plugins.md and docs/architecture.md.

    An agent is built from its config section, the env's spaces and the network section:
    ``Agent(config, observation_space, action_space, network_config, device=...)``.
    """

    Config: ClassVar[type[AgentConfig]]
    section_defaults: ClassVar[dict[str, dict[str, Any]]] = {}
    """Defaults this agent sets in other config sections (below presets and overrides)."""

    n_actions: int
    updates: int
    """Gradient steps taken so far (over every network that learns)."""
    policy: Policy
    """The acting half: what evaluation plays and export writes."""

    @abc.abstractmethod
    def __init__(
        self,
        config: AgentConfig,
        observation_space: gym.Space,
        action_space: gym.Space,
        network_config: NetworkConfig,
        device: str = "cpu",
    ) -> None: ...

    @property
    @abc.abstractmethod
    def train_every(self) -> int:
        """Env steps between training points: collection runs in chunks that end on their multiples."""

    @abc.abstractmethod
    def make_memory(self, config: RunConfig, envs: gym.vector.VectorEnv, seed: int) -> Memory:
        """The replay memory (or memories) that this agent's actor fills and its learner samples."""

    @abc.abstractmethod
    def actor(
        self,
        exploration: ExplorationStrategy,
        envs: gym.vector.VectorEnv,
        memory: Memory,
        seed: int,
        policy: Policy | None = None,
    ) -> Actor:
        """An actor for collection in ``envs`` that writes to ``memory``.

        :param exploration: the run's exploration strategy (agents with their own may ignore it).
        :param seed: for any random choices the actor makes beyond the strategy's.
        :param policy: the policy to act with; the agent's own by default, a copy for acting
            in another thread.
        """

    @abc.abstractmethod
    def learn(self, memory: Memory, span: Span) -> dict[str, float]:
        """The learning due after collecting ``span``: target updates and gradient rounds.

        :returns: metrics averaged over this call's gradient steps (empty when it took none),
            with their MLflow names (``train/loss``, ``train/q_mean``, ...).
        """

    @abc.abstractmethod
    def exportable(self) -> Exportable:
        """The acting half as a module for ONNX export."""

    def optimistic_start(self, r_max: float, weight_scale: float) -> None:
        """Start with every Q-value near ``r_max / (1 - gamma)`` (optimistic initialization)."""
        from qagent.errors import ConfigError

        raise ConfigError(
            f"agent {type(self).__name__} cannot start optimistic", hint="use another exploration strategy"
        )

    @abc.abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything to resume learning: weights, target weights, optimizer moments, counters."""

    @abc.abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None: ...
