"""DQN variants that are presets over DQN's components: each sets defaults, none adds code.

Every component is also an option of plain ``dqn`` (``agent.double``, ``agent.dueling``,
``agent.noisy``, ``replay.prioritized``, ``replay.n_step``), so any combination is a config
away; these names are the combinations the papers studied.
"""

from __future__ import annotations

from typing import Any, ClassVar

from qagent.agents.dqn import DQNAgent, DQNConfig
from qagent.plugins.registries import register_agent


@register_agent("double-dqn")
class DoubleDQN(DQNAgent):
    """Double DQN (van Hasselt et al. 2016): the online network picks the next action, the target values it."""

    class Config(DQNConfig):
        name: str = "double-dqn"
        double: bool = True


@register_agent("dueling-dqn")
class DuelingDQN(DQNAgent):
    """Dueling DQN (Wang et al. 2016): value and advantage streams, with Double-DQN targets."""

    class Config(DQNConfig):
        name: str = "dueling-dqn"
        double: bool = True
        dueling: bool = True


@register_agent("prioritized-dqn")
class PrioritizedDQN(DQNAgent):
    """DQN with proportional prioritized replay (Schaul et al. 2016), alpha 0.6, beta 0.4 -> 1."""

    class Config(DQNConfig):
        name: str = "prioritized-dqn"

    section_defaults: ClassVar[dict[str, dict[str, Any]]] = {"replay": {"prioritized": True}}


@register_agent("nstep-dqn")
class NStepDQN(DQNAgent):
    """DQN with 3-step returns (Sutton 1988; as in Rainbow)."""

    class Config(DQNConfig):
        name: str = "nstep-dqn"

    section_defaults: ClassVar[dict[str, dict[str, Any]]] = {"replay": {"n_step": 3}}


@register_agent("noisy-dqn")
class NoisyDQN(DQNAgent):
    """Noisy Nets DQN (Fortunato et al. 2018): exploration by noise in the head's weights, no epsilon."""

    class Config(DQNConfig):
        name: str = "noisy-dqn"
        noisy: bool = True

    section_defaults: ClassVar[dict[str, dict[str, Any]]] = {"exploration": {"name": "noisy"}}
