"""Learning curves: episodic return against env steps, several runs overlaid.

Reads each run directory's ``episodes.csv`` (training episodes; full-game returns for Atari)
and ``evaluations.jsonl`` (greedy evaluations, drawn as points), so it needs no MLflow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qagent.errors import QAgentError
from qagent.training.runs import RunDir


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over the last ``window`` values (fewer at the start)."""
    if window <= 1 or len(values) == 0:
        return values
    cumulative = np.cumsum(np.insert(values, 0, 0.0))
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    return (cumulative[1:] - cumulative[np.arange(1, len(values) + 1) - counts]) / counts


def read_episodes(run: RunDir) -> tuple[np.ndarray, np.ndarray]:
    rows = [(step, ret) for step, ret, _ in run.episodes()]
    if not rows:
        return np.zeros(0), np.zeros(0)
    steps, returns = (np.asarray(column) for column in zip(*rows, strict=True))
    return steps, returns


def plot_runs(run_dirs: list[str | Path], output: str | Path, window: int = 20, title: str | None = None) -> Path:
    """Draw every run's smoothed training return and its evaluations into one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [RunDir(Path(d)) for d in run_dirs]
    missing = [str(r.root) for r in runs if not r.root.is_dir()]
    if missing:
        raise QAgentError(f"no run directory at {', '.join(missing)}")
    figure, axes = plt.subplots(figsize=(8, 4.5), dpi=120)
    drawn = 0
    for run, color in zip(runs, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 10, strict=False):
        steps, returns = read_episodes(run)
        if len(steps):
            axes.plot(
                steps, smooth(returns, window), color=color, label=f"{run.root.name} (training, mean of {window})"
            )
            drawn += 1
        evaluations = [e for e in run.evaluations() if not e.get("final")]
        if evaluations:
            axes.plot(
                [e["step"] for e in evaluations],
                [e["mean"] for e in evaluations],
                "o",
                color=color,
                markersize=4,
                label=f"{run.root.name} (greedy evaluation)",
            )
            drawn += 1
    if not drawn:
        plt.close(figure)
        raise QAgentError("the runs have no episodes or evaluations yet", hint="plot after some training")
    axes.set_xlabel("env steps")
    axes.set_ylabel("episodic return")
    axes.set_title(title or ", ".join(r.root.name for r in runs)[:100])
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7)
    figure.tight_layout()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output)
    plt.close(figure)
    return output
