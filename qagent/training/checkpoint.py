"""Checkpoint files: written atomically, read with ``weights_only=True``.

A checkpoint is a ``torch.save`` of plain containers, numbers, strings and tensors: no pickled
objects, so loading one cannot run code. Numpy arrays in component state are stored as
tensors. Writing goes to a temporary file that is fsynced and renamed over the target, so a
crash mid-write never leaves a truncated checkpoint behind.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qagent.errors import CheckpointError
from qagent.training.runs import RunDir

FORMAT = "qagent-checkpoint"
FORMAT_VERSION = 2
"""2 since qagent 0.2 (one loop: an actor's state instead of the exploration's). Evaluation and
export read format 1 too (the agents' own state is unchanged); resuming needs format 2."""


def to_saveable(tree: Any) -> Any:
    """Numpy arrays -> tensors and numpy scalars -> Python numbers, recursively."""
    if isinstance(tree, dict):
        return {k: to_saveable(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(to_saveable(v) for v in tree)
    if isinstance(tree, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(tree))
    if isinstance(tree, np.generic):
        return tree.item()
    return tree


def all_finite(tree: Any) -> bool:
    """Whether every floating-point tensor in a (nested) state dict is finite."""
    if isinstance(tree, torch.Tensor):
        return not tree.is_floating_point() or bool(torch.isfinite(tree).all())
    if isinstance(tree, dict):
        return all(all_finite(v) for v in tree.values())
    if isinstance(tree, (list, tuple)):
        return all(all_finite(v) for v in tree)
    return True


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically (temp file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"format": FORMAT, "format_version": FORMAT_VERSION, **to_saveable(payload)}
    serialized = io.BytesIO()  # serialized first, so a full disk is an OSError naming the file
    torch.save(data, serialized)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(serialized.getbuffer())
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint, turning every way it can be broken into one :class:`CheckpointError`."""
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated zip, garbage bytes, unsafe pickle ...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not a qagent checkpoint ({reason[:200]})",
            hint="resume or evaluate from an earlier checkpoint in the same folder",
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a qagent checkpoint")
    version = data.get("format_version", 0)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {version!r}, which this qagent does not read",
            hint="upgrade qagent",
        )
    check_fields(path, data)
    return data


# Fields every reader uses, and the type each must have: a checkpoint is data from elsewhere.
REQUIRED_FIELDS: dict[str, type | tuple[type, ...]] = {"config": dict, "step": int, "episodes": int, "agent": dict}


def check_fields(path: Path, data: dict[str, Any]) -> None:
    """Refuse a checkpoint whose fields are missing or of the wrong kind, in one clear line."""
    from qagent.config import check_plain_tree

    for key, kind in REQUIRED_FIELDS.items():
        value = data.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            got = "nothing" if value is None else f"a {type(value).__name__}"
            raise CheckpointError(
                f"checkpoint {path} is not a usable qagent checkpoint: its {key!r} is {got}, not a "
                f"{kind.__name__ if isinstance(kind, type) else kind}",
                hint="resume or evaluate from an earlier checkpoint in the same folder",
            )
    check_plain_tree(data["config"], f"the config in checkpoint {path}")


def load_run_checkpoint(target: str | Path) -> tuple[RunDir | None, Path, dict[str, Any]]:
    """Resolve a run directory or checkpoint path and load the checkpoint."""
    run, path = RunDir.resolve(target)
    return run, path, load_checkpoint(path)


def mismatch_reason(exc: BaseException) -> str:
    """The first concrete line of a ``load_state_dict`` error (a size mismatch, a missing key)."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    detail = lines[1] if len(lines) > 1 else (lines[0] if lines else type(exc).__name__)
    return detail[:300]
