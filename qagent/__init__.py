"""qagent: a plugin-based framework for value-based game agents.

Importing the package is cheap (no torch, gymnasium or MLflow); the decorators below are
the plugin API::

    from qagent import register_agent, register_env, register_exploration, register_goal_space, register_network
"""

from qagent.plugins.registries import (
    register_agent,
    register_env,
    register_exploration,
    register_goal_space,
    register_network,
    register_potential,
)

__version__ = "0.2.0"

__all__ = [
    "__version__",
    "register_agent",
    "register_env",
    "register_exploration",
    "register_goal_space",
    "register_network",
    "register_potential",
]
