"""Run directories: where one training run keeps its config, checkpoints and records.

::

    runs/<run-name>/
        config.yaml          resolved config (what 'qagent train --config' would need to redo it)
        run.json             qagent version, MLflow run id and tracking URI, plugins, status
        checkpoints/         step-0000050000.pt (newest kept), best.pt, buffer-...npz with --save-buffer
        evaluations.jsonl    one line per evaluation: step, mean, std, ...
        episodes.csv         step,return,length of every training episode

Every file is replaced atomically (temp file, then rename) or appended to, so a kill at any
moment leaves at worst a torn last line, which reading drops with a warning.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import time
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from qagent.errors import CheckpointError, QAgentError

CHECKPOINT_PATTERN = re.compile(r"^step-(\d+)\.pt$")
BUFFER_PATTERN = re.compile(r"^buffer-(\d+)(?:[-.][\w-]+)?\.npz$")
EPISODES_HEADER = ["step", "return", "length"]


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that a kill leaves either the old file or the new one."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


class RunDir:
    """The files of one run, rooted at ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # ------------------------------------------------------------------ creation and lookup

    @classmethod
    def create(cls, runs_dir: Path, name: str) -> RunDir:
        """A new, empty run directory ``runs_dir/name`` (``name-2``, ... if it is taken)."""
        runs_dir = Path(runs_dir)
        if runs_dir.exists() and not runs_dir.is_dir():
            raise QAgentError(f"the runs folder {runs_dir} is a file, not a folder", hint="pass --runs-dir FOLDER")
        candidate, n = runs_dir / name, 1
        while candidate.exists():
            n += 1
            candidate = runs_dir / f"{name}-{n}"
        try:
            candidate.mkdir(parents=True)
        except OSError as exc:
            raise QAgentError(
                f"cannot create the run directory {candidate}: {exc.strerror}", hint="pass --runs-dir FOLDER"
            ) from None
        return cls(candidate)

    @classmethod
    def resolve(cls, target: str | Path) -> tuple[RunDir | None, Path]:
        """A run directory or checkpoint file -> (its run directory, the checkpoint to load)."""
        path = Path(target).expanduser()
        if path.is_file():
            parent = path.parent
            run = cls(parent.parent) if parent.name == "checkpoints" else None
            return run, path
        if path.exists() and not path.is_dir():
            raise CheckpointError(f"{path} is neither a run directory nor a checkpoint file")
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
        return self._files_by_step(CHECKPOINT_PATTERN)

    def buffers(self) -> list[tuple[int, Path]]:
        """``(step, path)`` of every replay-buffer file, oldest first."""
        return self._files_by_step(BUFFER_PATTERN)

    def _files_by_step(self, pattern: re.Pattern[str]) -> list[tuple[int, Path]]:
        if not self.checkpoint_dir.is_dir():
            return []
        found = []
        for path in self.checkpoint_dir.iterdir():
            match = pattern.match(path.name)
            if match:
                found.append((int(match.group(1)), path))
        return sorted(found)

    def latest_checkpoint(self) -> Path | None:
        found = self.checkpoints()
        return found[-1][1] if found else None

    def prune(self, keep: int) -> None:
        """Delete all but the newest ``keep`` checkpoints, and the buffer files of no kept checkpoint.

        Each kept checkpoint keeps its buffer (an agent with two memories writes two files per
        step), so whichever checkpoint a user resumes from is whole.
        """
        found = self.checkpoints()
        for _, path in found[:-keep] if keep > 0 else []:
            path.unlink(missing_ok=True)
        kept = {step for step, _ in self.checkpoints()}
        for step, path in self.buffers():
            if step not in kept:
                path.unlink(missing_ok=True)

    def remove_stale_temporaries(self) -> None:
        """Delete the temporary files of writes a kill interrupted (they are never read)."""
        for folder in (self.root, self.checkpoint_dir):
            if folder.is_dir():
                for path in folder.iterdir():
                    if path.name.endswith(".tmp") and path.is_file():
                        path.unlink(missing_ok=True)

    # ------------------------------------------------------------------ records

    def read_meta(self) -> dict[str, Any]:
        if not self.meta_path.exists():
            return {}
        try:
            meta = json.loads(self.meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError, OSError):
            return {}
        return meta if isinstance(meta, dict) else {}

    def update_meta(self, **fields: Any) -> dict[str, Any]:
        meta = {**self.read_meta(), **fields}
        write_atomically(self.meta_path, json.dumps(meta, indent=2, default=str) + "\n")
        return meta

    def append_evaluation(self, record: dict[str, Any]) -> None:
        with open(self.evaluations_path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def evaluations(self) -> list[dict[str, Any]]:
        """Every evaluation record; a torn last line (a kill mid-write) is dropped with a warning."""
        if not self.evaluations_path.exists():
            return []
        records = []
        lines = self.evaluations_path.read_text(errors="replace").splitlines()
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = None
            if not isinstance(record, dict) or not isinstance(record.get("step"), int):
                _warn_dropped(self.evaluations_path, number, last=number == len(lines))
                continue
            records.append(record)
        return records

    def episodes(self) -> list[tuple[int, float, int]]:
        """``(step, return, length)`` of every training episode; torn or foreign rows are dropped."""
        if not self.episodes_path.exists():
            return []
        rows = []
        lines = self.episodes_path.read_text(errors="replace").splitlines()
        for number, row in enumerate(csv.reader(lines), 1):
            if number == 1 and row == EPISODES_HEADER or not row:
                continue
            try:
                step, ret, length = int(row[0]), float(row[1]), int(row[2])
                if len(row) != 3:
                    raise ValueError
            except (ValueError, IndexError):
                _warn_dropped(self.episodes_path, number, last=number == len(lines))
                continue
            rows.append((step, ret, length))
        return rows

    def append_episodes(self, rows: Iterable[tuple[int, float, int]]) -> None:
        rows = list(rows)
        if not rows:
            return
        new = not self.episodes_path.exists() or self.episodes_path.stat().st_size == 0
        with open(self.episodes_path, "a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(EPISODES_HEADER)
            writer.writerows(rows)

    def truncate_records(self, step: int, drop_final: bool = False) -> None:
        """Drop records after ``step`` (a resumed run rewrites the steps it replays), and with
        ``drop_final`` the final evaluation at ``step`` (a resumed final stage redoes it).

        Each file is rewritten whole and renamed over the old one, so a kill here leaves either
        version, never an empty or headerless file.
        """
        if self.evaluations_path.exists():
            kept = [
                r
                for r in self.evaluations()
                if r["step"] < step or r["step"] == step and not (drop_final and r.get("final"))
            ]
            write_atomically(self.evaluations_path, "".join(json.dumps(r) + "\n" for r in kept))
        if self.episodes_path.exists():
            out = io.StringIO()
            writer = csv.writer(out)
            writer.writerow(EPISODES_HEADER)
            writer.writerows(r for r in self.episodes() if r[0] <= step)
            write_atomically(self.episodes_path, out.getvalue())


def _warn_dropped(path: Path, line: int, *, last: bool) -> None:
    what = "a torn last line (the run was killed while writing it)" if last else "an unreadable line"
    warnings.warn(f"{path}: dropped {what}, line {line}", stacklevel=3)
