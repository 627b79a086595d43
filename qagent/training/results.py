"""What an evaluation (or a recorded video) returns: per-episode returns and lengths, and their summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class EvalResult:
    """Per-episode returns and lengths, in episode order, with summary statistics."""

    returns: list[float]
    lengths: list[int]
    seed: int = 0
    epsilon: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    protocol: str = ""
    """The evaluation protocol in words (see :func:`qagent.training.evaluation.describe_protocol`)."""

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        return float(np.std(self.returns))

    def summary(self) -> dict[str, float | int]:
        r = np.asarray(self.returns, dtype=np.float64)
        return {
            "episodes": len(r),
            "mean": float(r.mean()),
            "std": float(r.std()),
            "min": float(r.min()),
            "max": float(r.max()),
            "median": float(np.median(r)),
            "mean_length": float(np.mean(self.lengths)),
            "success_rate": float((r > 0).mean()),  # positive returns: the successes of sparse-reward games
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "seed": self.seed,
            "epsilon": self.epsilon,
            "protocol": self.protocol,
            "returns": [float(x) for x in self.returns],
            "lengths": [int(x) for x in self.lengths],
            **self.extra,
        }
