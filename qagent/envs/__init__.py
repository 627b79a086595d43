"""Environments: any gymnasium id, registered env plugins, and the factories that build them.

Importing this package registers the built-in env plugins.
"""

from qagent.envs import goals, sdp
from qagent.envs.factory import check_env_id, make_env, make_vector_env

__all__ = ["check_env_id", "goals", "make_env", "make_vector_env", "sdp"]
