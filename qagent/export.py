"""Export a trained agent to a self-describing ONNX policy, checked against torch.

The ONNX graph takes raw observations (any scaling happens inside, as in training) with a
dynamic batch axis and returns ``q_values`` (float32, expected values for distributional
heads) and ``action`` (the argmax, computed in the graph). The metadata (see
:mod:`qagent.serve.metadata`) tells a game everything the file expects.

Before the file is written, the export runs onnxruntime and torch on the same observations
(batches of 1 and 256, real ones from the env and random ones from the observation space) and
refuses to report success unless Q-values agree to 1e-5 (relative to their scale) and every
action is identical.
"""

from __future__ import annotations

import contextlib
import enum
import io
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import qagent
from qagent.agents.base import Exportable
from qagent.config import RunConfig
from qagent.envs.atari import is_atari
from qagent.envs.factory import frame_stack_of, gymnasium_spec, make_env
from qagent.envs.minigrid import is_minigrid
from qagent.envs.spaces import describe_observation_space
from qagent.errors import QAgentError
from qagent.plugins.registries import ENVS
from qagent.serve import metadata as md
from qagent.training.build import load_agent
from qagent.training.checkpoint import all_finite, load_run_checkpoint

TOLERANCE = 1e-5
PARITY_BATCHES = (1, 256)


class ExportError(QAgentError):
    """An export that failed its parity check, or a model URI that holds no qagent policy."""


@dataclass
class ParityRow:
    """One parity check: a batch of observations run through torch and onnxruntime."""

    source: str
    batch: int
    max_abs_diff: float
    max_rel_diff: float
    actions_equal: int

    @property
    def ok(self) -> bool:
        return self.max_rel_diff <= TOLERANCE and self.actions_equal == self.batch


@dataclass
class ExportReport:
    """What :func:`export_checkpoint` wrote and how it checked it."""

    path: Path
    metadata: dict[str, Any]
    parity: list[ParityRow] = field(default_factory=list)
    checkpoint: Path | None = None

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size


# --------------------------------------------------------------------------- metadata


def action_meanings(env: gym.Env) -> list[str] | None:
    """The actions' names: ALE's ``get_action_meanings()``, or MiniGrid's ``actions`` enum."""
    get = getattr(env.unwrapped, "get_action_meanings", None)
    if callable(get):
        return list(get())
    actions = getattr(env.unwrapped, "actions", None)
    n = getattr(env.action_space, "n", None)
    if isinstance(actions, type) and issubclass(actions, enum.Enum) and n is not None and len(actions) >= n:
        return [member.name for member in list(actions)[: int(n)]]
    return None


def describe_preprocessing(env: gym.Env) -> dict[str, Any]:
    """What a client must do to raw observations before the model sees them (frame stacking)."""
    return {"frame_stack": frame_stack_of(env)}


def describe_env(config: RunConfig) -> dict[str, Any]:
    """The env section needed to rebuild the evaluation env (with Atari preprocessing for ALE games)."""
    env: dict[str, Any] = {
        "id": config.env.id,
        "kwargs": config.env.kwargs,
        "max_episode_steps": config.env.max_episode_steps,
    }
    if is_atari(gymnasium_spec(config.env.id)) and config.env.id not in ENVS:
        env["atari"] = config.env.atari.model_dump(mode="json")
    if is_minigrid(config.env.id) and config.env.id not in ENVS:
        env["minigrid"] = config.env.minigrid.model_dump(mode="json")
    return env


def policy_metadata(config: RunConfig, checkpoint: dict[str, Any], env: gym.Env) -> dict[str, Any]:
    """The metadata document written into the ONNX file."""
    observation = describe_observation_space(env.observation_space)
    n_actions = int(env.action_space.n)
    evaluation = checkpoint.get("last_eval")
    return {
        "format": md.FORMAT,
        "format_version": md.FORMAT_VERSION,
        "qagent_version": qagent.__version__,
        "agent": config.agent.name,
        "network": config.network.name,
        "env": describe_env(config),
        "observation": observation,
        "action": {"space": "Discrete", "n": n_actions, "meanings": action_meanings(env)},
        "preprocessing": describe_preprocessing(env),
        "inputs": {md.INPUT_NAME: {"dtype": observation["dtype"], "shape": [-1, *observation["shape"]]}},
        "outputs": {
            "q_values": {"dtype": "float32", "shape": [-1, n_actions]},
            "action": {"dtype": "int64", "shape": [-1]},
        },
        "training": {
            "steps": int(checkpoint["step"]),
            "episodes": int(checkpoint.get("episodes", 0)),
            "updates": int(checkpoint["agent"].get("updates", 0)),
        },
        "evaluation": None if not evaluation else {k: evaluation[k] for k in ("step", "mean", "std", "episodes")},
        "eval": {"epsilon": config.eval.epsilon},  # the run's protocol: `qagent eval FILE` uses it by default
        "config_hash": config.hash(),
        "plugins": list(checkpoint.get("plugins", [])),
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


# --------------------------------------------------------------------------- observations


def real_observations(env: gym.Env, count: int, seed: int = 0) -> np.ndarray:
    """``count`` observations from the env under random actions (resetting as episodes end)."""
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    collected = [obs]
    while len(collected) < count:
        obs, _, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
        if terminated or truncated:
            obs, _ = env.reset()
        collected.append(obs)
    return np.stack([np.asarray(o) for o in collected])


def random_observations(space: gym.Space, count: int, seed: int = 0) -> np.ndarray:
    """``count`` observations drawn from the observation space itself."""
    space = type(space)(**_space_kwargs(space)) if isinstance(space, gym.spaces.Box | gym.spaces.Discrete) else space
    space.seed(seed)
    return np.stack([np.asarray(space.sample()) for _ in range(count)])


def _space_kwargs(space: gym.Space) -> dict[str, Any]:
    if isinstance(space, gym.spaces.Discrete):
        return {"n": space.n}
    return {"low": space.low, "high": space.high, "dtype": space.dtype}


# --------------------------------------------------------------------------- export


def export_checkpoint(
    target: str | Path,
    output: str | Path,
    *,
    loaded: tuple[Any, Path, dict[str, Any]] | None = None,
) -> ExportReport:
    """Export the online Q-network of a run directory or checkpoint to ``output``.

    The file appears only after the parity check passes; a failure raises :class:`ExportError`.
    """
    import onnx

    output = Path(output)
    check_output_path(output)
    _, checkpoint_path, checkpoint = loaded or load_run_checkpoint(target)
    if not all_finite(checkpoint["agent"]):
        raise ExportError(
            f"the weights in {checkpoint_path} are NaN or infinite: the run diverged before this checkpoint",
            hint="export an earlier checkpoint (--best, or a checkpoints/step-*.pt file)",
        )
    loaded = load_agent(checkpoint_path, checkpoint)
    agent, config = loaded.agent, loaded.config
    env = make_env(config.env, training=False)
    try:
        metadata = policy_metadata(config, checkpoint, env)
        export = agent.exportable()
        for key, value in export.metadata.items():
            metadata[key] = {**metadata.get(key, {}), **value}
        real = real_observations(env, max(PARITY_BATCHES))
        random = random_observations(env.observation_space, max(PARITY_BATCHES))
    finally:
        env.close()

    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp")
    try:
        _torch_export(export, real[:2], tmp)
        model = onnx.load(str(tmp))
        del model.metadata_props[:]
        entry = model.metadata_props.add()
        entry.key, entry.value = md.METADATA_KEY, md.dumps(metadata)
        model.producer_name, model.producer_version = "qagent", qagent.__version__
        onnx.checker.check_model(model)
        onnx.save(model, str(tmp))
        parity = check_parity(export, tmp, {"env": real, "random": random})
        failed = [row for row in parity if not row.ok]
        if failed:
            row = failed[0]
            raise ExportError(
                f"the exported model does not match torch on {row.batch} {row.source} observations "
                f"(max relative difference {row.max_rel_diff:.2e}, {row.actions_equal}/{row.batch} actions equal)",
                hint="report this with the checkpoint; the ONNX exporter may not support a layer of the network",
            )
        tmp.replace(output)
    finally:
        tmp.unlink(missing_ok=True)
    return ExportReport(path=output, metadata=metadata, parity=parity, checkpoint=checkpoint_path)


def check_output_path(output: Path) -> None:
    """Refuse to replace anything but a regular file: a symlink, a device or a folder is the user's."""
    if output.is_symlink():
        raise ExportError(f"{output} is a symbolic link; qagent does not replace it", hint="pass -o a plain file path")
    if output.exists() and not output.is_file():
        kind = "a folder" if output.is_dir() else "not a regular file (a device, socket or pipe)"
        raise ExportError(f"{output} is {kind}; qagent writes ONNX files only", hint="pass -o a plain file path")
    if output.parent.exists() and not output.parent.is_dir():
        raise ExportError(f"{output.parent} is a file, so {output} cannot be written", hint="pass -o another path")


def _torch_export(export: Exportable, example: np.ndarray, path: Path) -> None:
    """torch -> ONNX with dynamic batch axes (the example has two rows, so 1 is not special)."""
    inputs = tuple(torch.as_tensor(x) for x in export.make_inputs(example))
    dynamic = {name: {0: torch.export.Dim(f"{name}_batch", min=1, max=1 << 20)} for name in export.input_names}
    noise = io.StringIO()
    onnx_logger = logging.getLogger("torch.onnx")
    level = onnx_logger.level
    onnx_logger.setLevel(logging.ERROR)  # e.g. "torchvision is not installed. Skipping torchvision::nms"
    with warnings.catch_warnings(), contextlib.redirect_stdout(noise):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            export.module,
            inputs,
            str(path),
            input_names=export.input_names,
            output_names=export.output_names,
            dynamic_shapes=dynamic,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    onnx_logger.setLevel(level)


def check_parity(export: Exportable, path: Path, observations: dict[str, np.ndarray]) -> list[ParityRow]:
    """Compare torch and onnxruntime on batches of 1 and 256 of each observation source.

    Every float output (Q-values; an h-DQN's meta Q-values too) must agree, and so must the
    greedy choices (actions; and goals).
    """
    from qagent.serve import Policy

    session = Policy.load(path)._session  # loading checks the metadata too
    rows = []
    for source, obs in observations.items():
        for size in PARITY_BATCHES:
            inputs = export.make_inputs(obs[:size])
            with torch.no_grad():
                torch_out = [t.numpy() for t in export.module(*(torch.as_tensor(x) for x in inputs))]
            onnx_out = session.run(export.output_names, dict(zip(export.input_names, inputs, strict=True)))
            floats = [(o, t) for o, t in zip(onnx_out, torch_out, strict=True) if t.dtype.kind == "f"]
            diff = max(float(np.abs(o.astype(np.float64) - t).max()) for o, t in floats)
            scale = max(1.0, *(float(np.abs(t).max()) for _, t in floats))
            same = np.ones(size, dtype=bool)
            for o, t in floats:
                same &= o.argmax(axis=1) == t.argmax(axis=1)
            rows.append(
                ParityRow(
                    source=source,
                    batch=size,
                    max_abs_diff=diff,
                    max_rel_diff=diff / scale,
                    actions_equal=int(same.sum()),
                )
            )
    return rows


# --------------------------------------------------------------------------- MLflow


def is_model_uri(target: str) -> bool:
    """MLflow URIs (``models:/name@alias``, ``runs:/id/path``) rather than local paths."""
    return target.startswith(("models:/", "runs:/", "mlflow-artifacts:/"))


def fetch_from_mlflow(uri: str, output: str | Path, tracking_uri: str | None = None) -> tuple[Path, dict[str, Any]]:
    """Write the ONNX policy behind an MLflow model URI to ``output``; returns its metadata."""
    import mlflow
    import onnx

    from qagent.serve import Policy

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    except Exception as exc:  # noqa: BLE001 - MLflow raises many types for a bad URI
        raise ExportError(
            f"cannot fetch {uri} from MLflow ({mlflow.get_tracking_uri()}): {str(exc).splitlines()[0][:200]}"
        ) from None
    candidates = [local] if local.is_file() else sorted(local.rglob("*.onnx"))
    if not candidates or candidates[0].suffix != ".onnx":
        raise ExportError(f"{uri} holds no ONNX model", hint="pass a model registered by 'qagent export --register'")
    model = onnx.load(str(candidates[0]))
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(output))
    return output, Policy.load(output).metadata


def onnx_signature(model: Any) -> Any:
    """The graph's inputs and outputs as an MLflow tensor signature.

    With it, ``mlflow.pyfunc`` and ``mlflow models serve`` check requests against the policy's
    own names, dtypes and shapes (a free dimension, the batch, is -1).
    """
    import onnx
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    def schema(values: Any) -> Schema:
        specs = []
        for value in values:
            tensor = value.type.tensor_type
            dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type))
            shape = tuple(dim.dim_value if dim.HasField("dim_value") else -1 for dim in tensor.shape.dim)
            specs.append(TensorSpec(dtype, shape, value.name))
        return Schema(specs)

    return ModelSignature(inputs=schema(model.graph.input), outputs=schema(model.graph.output))


def register_policy(
    path: Path,
    name: str,
    *,
    alias: str = "champion",
    tracking_uri: str | None = None,
    run_id: str | None = None,
    experiment: str = "qagent",
) -> tuple[str, str]:
    """Log the ONNX file with MLflow's ONNX flavor and register it under ``name@alias``.

    The model is logged to the training run when ``run_id`` is known, else to a new run.
    :returns: ``(model version, model URI)``.
    """
    import logging

    import mlflow
    import mlflow.onnx
    import onnx
    from mlflow.tracking import MlflowClient

    for logger in ("mlflow", "alembic"):
        logging.getLogger(logger).setLevel(logging.WARNING)
    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient()
    model = onnx.load(str(path))
    metadata = {p.key: p.value for p in model.metadata_props}
    if run_id is not None:
        try:
            client.get_run(run_id)
        except Exception:  # noqa: BLE001 - a deleted run, or another store
            run_id = None
    if run_id is None:
        mlflow.set_experiment(experiment)
    with mlflow.start_run(run_id=run_id, run_name=None if run_id else f"export-{name}"):
        info = mlflow.onnx.log_model(
            model,
            name="policy",
            registered_model_name=name,
            onnx_execution_providers=["CPUExecutionProvider"],
            save_as_external_data=False,
            metadata=metadata,
            signature=onnx_signature(model),
        )
    version = str(info.registered_model_version)
    client.set_registered_model_alias(name, alias, version)
    return version, f"models:/{name}@{alias}"
