"""Registries and plugin discovery: the extension points of qagent."""

from qagent.plugins.registries import (
    AGENTS,
    ENVS,
    EXPLORATIONS,
    GOAL_SPACES,
    NETWORKS,
    POTENTIALS,
    REGISTRIES,
    register_agent,
    register_env,
    register_exploration,
    register_goal_space,
    register_network,
    register_potential,
)
from qagent.plugins.registry import Entry, Registry, Source

__all__ = [
    "AGENTS",
    "ENVS",
    "EXPLORATIONS",
    "GOAL_SPACES",
    "NETWORKS",
    "POTENTIALS",
    "REGISTRIES",
    "Entry",
    "Registry",
    "Source",
    "register_agent",
    "register_env",
    "register_exploration",
    "register_goal_space",
    "register_network",
    "register_potential",
]
