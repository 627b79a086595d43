"""Registries and plugin discovery: the extension points of qagent."""

from qagent.plugins.registries import (
    AGENTS,
    ENVS,
    EXPLORATIONS,
    NETWORKS,
    REGISTRIES,
    register_agent,
    register_env,
    register_exploration,
    register_network,
)
from qagent.plugins.registry import Entry, Registry, Source

__all__ = [
    "AGENTS",
    "ENVS",
    "EXPLORATIONS",
    "NETWORKS",
    "REGISTRIES",
    "Entry",
    "Registry",
    "Source",
    "register_agent",
    "register_env",
    "register_exploration",
    "register_network",
]
