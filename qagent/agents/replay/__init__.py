"""Replay memories: a preallocated ring buffer (frames stored once, n-step windows) and
proportional prioritized replay on top of it."""

from qagent.agents.replay.buffer import Batch, Replay, ReplayBuffer, replay_bytes
from qagent.agents.replay.factory import make_replay
from qagent.agents.replay.prioritized import PrioritizedReplay

__all__ = ["Batch", "PrioritizedReplay", "Replay", "ReplayBuffer", "make_replay", "replay_bytes"]
