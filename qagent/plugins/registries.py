"""Every registry qagent has, declared in one place, and the decorators that fill them.

Each decorator returns the decorated object unchanged::

    from qagent import register_exploration

    @register_exploration("my-strategy")
    class MyStrategy(ExplorationStrategy):
        "One line that 'qagent plugins list' shows."
"""

from __future__ import annotations

from typing import Any

from qagent.plugins.registry import Registry

ENVS: Registry[Any] = Registry("env")
"""Environment factories: ``factory(**env.kwargs) -> gymnasium.Env``."""

AGENTS: Registry[Any] = Registry("agent")
"""Agent classes (DQN variants), each with a pydantic ``Config`` class."""

EXPLORATIONS: Registry[Any] = Registry("exploration")
"""Exploration strategy classes, each with a pydantic ``Config`` class."""

NETWORKS: Registry[Any] = Registry("network")
"""Network torsos: ``torso(observation_space, config) -> nn.Module`` with an ``output_dim``."""

POTENTIALS: Registry[Any] = Registry("potential")
"""Shaping potentials: ``phi(obs, **kwargs) -> float`` (see ``qagent.envs.shaping``)."""

GOAL_SPACES: Registry[Any] = Registry("goal-space")
"""h-DQN goal spaces: classes built as ``cls(observation_space, **kwargs)`` (see ``qagent.envs.goals``)."""

REGISTRIES: dict[str, Registry[Any]] = {
    "env": ENVS,
    "agent": AGENTS,
    "exploration": EXPLORATIONS,
    "network": NETWORKS,
    "potential": POTENTIALS,
    "goal-space": GOAL_SPACES,
}


def register_env(name: str, obj: Any = None, *, description: str | None = None) -> Any:
    """Register an environment factory (a ``gymnasium.Env`` class or a function returning one)."""
    return ENVS.register(name, obj, description=description)


def register_agent(name: str, obj: Any = None, *, description: str | None = None) -> Any:
    """Register an agent class (usually a subclass of :class:`qagent.agents.DQNAgent`)."""
    return AGENTS.register(name, obj, description=description)


def register_exploration(name: str, obj: Any = None, *, description: str | None = None) -> Any:
    """Register an exploration strategy class (a subclass of ``ExplorationStrategy``)."""
    return EXPLORATIONS.register(name, obj, description=description)


def register_network(name: str, obj: Any = None, *, description: str | None = None) -> Any:
    """Register a network torso class (a subclass of ``Torso``)."""
    return NETWORKS.register(name, obj, description=description)


def register_potential(name: str, obj: Any = None, *, description: str | None = None) -> Any:
    """Register a shaping potential ``phi(obs, **kwargs) -> float``."""
    return POTENTIALS.register(name, obj, description=description)


def register_goal_space(name: str, obj: Any = None, *, description: str | None = None) -> Any:
    """Register an h-DQN goal space class (a subclass of ``qagent.envs.goals.GoalSpace``)."""
    return GOAL_SPACES.register(name, obj, description=description)
