"""Registries and plugin discovery: the extension points of qagent."""

from qagent.plugins.registries import (
    AGENTS,
    ENVS,
    EXPLORATIONS,
    NETWORKS,
    POTENTIALS,
    REGISTRIES,
    register_agent,
    register_env,
    register_exploration,
    register_network,
    register_potential,
)
from qagent.plugins.registry import Entry, Registry, Source

__all__ = [
    "AGENTS",
    "ENVS",
    "EXPLORATIONS",
    "NETWORKS",
    "POTENTIALS",
    "REGISTRIES",
    "Entry",
    "Registry",
    "Source",
    "register_agent",
    "register_env",
    "register_exploration",
    "register_network",
    "register_potential",
]
