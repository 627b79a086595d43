"""Run directories: where one training run keeps its config, checkpoints and records.

::

    runs/<run-name>/
        config.yaml          resolved config (what 'qagent train --config' would need to redo it)
        run.json             qagent version, MLflow run id and tracking URI, plugins, status
        checkpoints/         step-0000050000.pt (newest kept), best.pt, buffer-...npz with --save-buffer
        evaluations.jsonl    one line per evaluation: step, mean, std, ...
        episodes.csv         step,return,length of every training episode
"""

from __future__ import annotations

import csv
import json
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from qagent.errors import CheckpointError

CHECKPOINT_PATTERN = re.compile(r"^step-(\d+)\.pt$")


class RunDir:
    """The files of one run, rooted at ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # ------------------------------------------------------------------ creation and lookup

    @classmethod
    def create(cls, runs_dir: Path, name: str) -> RunDir:
        """A new, empty run directory ``runs_dir/name`` (``name-2``, ... if it is taken)."""
        runs_dir = Path(runs_dir)
        candidate, n = runs_dir / name, 1
        while candidate.exists():
            n += 1
            candidate = runs_dir / f"{name}-{n}"
        candidate.mkdir(parents=True)
        return cls(candidate)

    @classmethod
    def resolve(cls, target: str | Path) -> tuple[RunDir | None, Path]:
        """A run directory or checkpoint file -> (its run directory, the checkpoint to load)."""
        path = Path(target).expanduser()
        if path.is_file():
            parent = path.parent
            run = cls(parent.parent) if parent.name == "checkpoints" else None
            return run, path
        if path.is_dir():
            run = cls(path)
            latest = run.latest_checkpoint()
            if latest is None:
                raise CheckpointError(
                    f"run {path} has no checkpoint yet",
                    hint="checkpoints are written every train.checkpoint_every steps, at the end and on Ctrl-C",
                )
            return run, latest
        raise CheckpointError(f"no run directory or checkpoint at {path}")

    @staticmethod
    def default_name(env_id: str, agent: str, seed: int) -> str:
        env = re.sub(r"[^a-z0-9]+", "-", env_id.lower()).strip("-")
        return f"{env}-{agent}-s{seed}-{time.strftime('%Y%m%d-%H%M%S')}"

    # ------------------------------------------------------------------ paths

    @property
    def config_path(self) -> Path:
        return self.root / "config.yaml"

    @property
    def meta_path(self) -> Path:
        return self.root / "run.json"

    @property
    def checkpoint_dir(self) -> Path:
        return self.root / "checkpoints"

    @property
    def evaluations_path(self) -> Path:
        return self.root / "evaluations.jsonl"

    @property
    def episodes_path(self) -> Path:
        return self.root / "episodes.csv"

    def checkpoint_path(self, step: int) -> Path:
        return self.checkpoint_dir / f"step-{step:010d}.pt"

    @property
    def best_path(self) -> Path:
        return self.checkpoint_dir / "best.pt"

    def buffer_path(self, step: int) -> Path:
        return self.checkpoint_dir / f"buffer-{step:010d}.npz"

    # ------------------------------------------------------------------ checkpoints

    def checkpoints(self) -> list[tuple[int, Path]]:
        """``(step, path)`` of every checkpoint, oldest first."""
        if not self.checkpoint_dir.is_dir():
            return []
        found = []
        for path in self.checkpoint_dir.iterdir():
            match = CHECKPOINT_PATTERN.match(path.name)
            if match:
                found.append((int(match.group(1)), path))
        return sorted(found)

    def latest_checkpoint(self) -> Path | None:
        found = self.checkpoints()
        return found[-1][1] if found else None

    def prune(self, keep: int) -> None:
        """Delete all but the newest ``keep`` checkpoints, and every buffer file but the newest step's
        (an agent with two memories writes two files per step)."""
        found = self.checkpoints()
        for _, path in found[:-keep] if keep > 0 else []:
            path.unlink(missing_ok=True)
        buffers = [(int(path.name[7:17]), path) for path in self.checkpoint_dir.glob("buffer-*.npz")]
        newest = max((step for step, _ in buffers), default=None)
        for step, path in buffers:
            if step != newest:
                path.unlink(missing_ok=True)

    # ------------------------------------------------------------------ records

    def read_meta(self) -> dict[str, Any]:
        if not self.meta_path.exists():
            return {}
        try:
            return json.loads(self.meta_path.read_text())
        except json.JSONDecodeError:
            return {}

    def update_meta(self, **fields: Any) -> dict[str, Any]:
        meta = {**self.read_meta(), **fields}
        tmp = self.meta_path.with_name(".run.json.tmp")
        tmp.write_text(json.dumps(meta, indent=2, default=str) + "\n")
        tmp.replace(self.meta_path)
        return meta

    def append_evaluation(self, record: dict[str, Any]) -> None:
        with open(self.evaluations_path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def evaluations(self) -> list[dict[str, Any]]:
        if not self.evaluations_path.exists():
            return []
        return [json.loads(line) for line in self.evaluations_path.read_text().splitlines() if line.strip()]

    def append_episodes(self, rows: Iterable[tuple[int, float, int]]) -> None:
        rows = list(rows)
        if not rows:
            return
        new = not self.episodes_path.exists()
        with open(self.episodes_path, "a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(["step", "return", "length"])
            writer.writerows(rows)

    def truncate_records(self, step: int) -> None:
        """Drop records after ``step`` (a resumed run rewrites the steps it replays)."""
        if self.evaluations_path.exists():
            kept = [r for r in self.evaluations() if r.get("step", 0) <= step]
            self.evaluations_path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        if self.episodes_path.exists():
            with open(self.episodes_path, newline="") as f:
                rows = list(csv.reader(f))
            header, body = rows[:1], [r for r in rows[1:] if r and int(r[0]) <= step]
            with open(self.episodes_path, "w", newline="") as f:
                csv.writer(f).writerows(header + body)
