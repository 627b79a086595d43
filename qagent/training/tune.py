"""Hyperparameter sweeps (``qagent tune``): Ray Tune runs the trials, Optuna's TPE chooses them.

A sweep searches a space of config keys given as a YAML file, checked against the config before
anything runs. Each trial trains the base config with the sampled values once per seed, exactly
as ``qagent train`` would, and scores the mean over its seeds of each run's final greedy
evaluation. ASHA prunes on the running mean after each seed, so a trial that does poorly on its
first seeds stops there. Ray and Optuna are imported only when a sweep runs.

::

    runs/<sweep>/
        sweep.json                  what the sweep is (base config, space, seeds, MLflow runs), for --resume
        space.yaml                  the search space as given
        trials/<trial>-seed-<s>/    one qagent run directory per trial and seed
        tune/                       Ray Tune's experiment state, which --resume restores
        results.csv, results.json   every trial: status, score, sampled values
        best.yaml                   the best trial's config, a preset for ``qagent train --config``

In MLflow a sweep is one parent run; each trial is a run nested under it (its sampled values and
config as params, the mean over seeds as ``eval/return_mean`` with step = seeds done), and each
seed's training run is nested under its trial, with the usual curves.
"""

from __future__ import annotations

import contextlib
import csv
import difflib
import io
import json
import logging
import math
import os
import re
import statistics
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

import qagent
from qagent.config import check_plain_tree, preset_dirs, resolve_config
from qagent.errors import CheckpointError, ConfigError, QAgentError
from qagent.training.ray_cluster import ray_session
from qagent.training.runs import RunDir, write_atomically

METRIC = "eval_return_mean"
"""What Tune and Optuna maximize: the running mean over a trial's seeds of their final evaluation."""

# name -> its arguments; ``choice`` takes any number of values
DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "uniform": ("low", "high"),
    "loguniform": ("low", "high"),
    "quniform": ("low", "high", "q"),
    "randint": ("low", "high"),
    "lograndint": ("low", "high"),
    "qrandint": ("low", "high", "q"),
    "choice": (),
}
INTEGER_DISTRIBUTIONS = {"randint", "lograndint", "qrandint"}
LOG_DISTRIBUTIONS = {"loguniform", "lograndint"}
SPACE_HINT = "write one distribution per key, e.g. 'agent.lr: {loguniform: [1.0e-4, 3.0e-3]}' (see docs/scaling.md)"


def yaml_text(value: Any) -> str:
    """``value`` as one line of YAML that reads back as ``value`` (``1e-05`` becomes ``1.0e-05``)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1_000_000).strip()
    return text.removesuffix("...").strip()


def _plain(value: Any) -> Any:
    """Numpy scalars (as samplers return them) to Python values."""
    return value.item() if hasattr(value, "item") and not isinstance(value, (list, dict, str)) else value


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


# --------------------------------------------------------------------------- the search space


@dataclass(frozen=True)
class Dimension:
    """One searched config key and its distribution, as the space file gives them."""

    key: str
    kind: str
    args: tuple[Any, ...]

    @property
    def encoded(self) -> bool:
        """Whether the choices travel as YAML text: Optuna only holds scalars, not lists such as ``[64, 64]``."""
        return self.kind == "choice" and not all(_is_scalar(v) for v in self.args)

    def domain(self) -> Any:
        """The Ray Tune search domain (which OptunaSearch turns into an Optuna distribution)."""
        from ray import tune

        if self.kind == "choice":
            return tune.choice([yaml_text(v) for v in self.args] if self.encoded else list(self.args))
        return getattr(tune, self.kind)(*self.args)

    def decode(self, value: Any) -> Any:
        """The config value of a sampled ``value``."""
        return yaml.safe_load(value) if self.encoded else _plain(value)

    def describe(self) -> str:
        return f"{self.kind}({', '.join(yaml_text(v) for v in self.args)})"

    def probes(self) -> list[Any]:
        """Values that stand for the whole range: both ends, and one inside that is not a whole number."""
        if self.kind == "choice":
            return list(self.args)
        low, high = self.args[0], self.args[1]
        if self.kind in ("randint", "lograndint"):
            return [low, high - 1]  # high is excluded, as in numpy
        if self.kind == "qrandint":
            return [low, high]
        inside = low * (high / low) ** 0.37 if self.kind == "loguniform" else low + 0.37 * (high - low)
        if self.kind == "quniform":
            q = self.args[2]
            inside = low + round((inside - low) / q) * q
        return [float(low), float(high), inside]


def find_space(name_or_path: str) -> Path:
    """A space file path, or the name of a bundled one (``configs/spaces/NAME.yaml``)."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    stem = path.name.removesuffix(".yaml").removesuffix(".yml")
    known = sorted(
        {p.stem for folder in preset_dirs() if (folder / "spaces").is_dir() for p in (folder / "spaces").glob("*.yaml")}
    )
    for folder in preset_dirs():
        candidate = folder / "spaces" / f"{stem}.yaml"
        if candidate.is_file():
            return candidate
    close = difflib.get_close_matches(stem, known, n=2)
    message = f"search space file {name_or_path!r} not found"
    if close:
        message += "; did you mean " + " or ".join(repr(c) for c in close) + "?"
    raise ConfigError(message, hint="bundled spaces: " + (", ".join(known) or "none"))


def parse_space(data: Any, where: str = "the search space") -> list[Dimension]:
    """Check a space's shape (keys, distribution names, arguments) without looking at the config."""
    if data is None or data == {}:
        raise ConfigError(f"{where} is empty", hint=SPACE_HINT)
    if not isinstance(data, dict):
        raise ConfigError(
            f"{where} must be a mapping of config keys to distributions, not a {type(data).__name__}", hint=SPACE_HINT
        )
    check_plain_tree(data, where)
    dims = []
    for key, spec in data.items():
        if not isinstance(key, str) or not key.strip():
            raise ConfigError(f"{where}: {key!r} is not a config key such as agent.lr", hint=SPACE_HINT)
        if key == "seed":
            raise ConfigError(
                f"{where}: 'seed' cannot be searched: every trial trains the same --seeds seeds",
                hint="use --seeds N for more seeds per trial, --seed S for the first one",
            )
        if not isinstance(spec, dict) or len(spec) != 1:
            value = "VALUE" if isinstance(spec, dict) else yaml_text(spec)
            raise ConfigError(
                f"{where}: {key!r} must map to one distribution such as {{loguniform: [1.0e-4, 3.0e-3]}}, not {spec!r}",
                hint=f"to fix a key's value instead, pass --set {key}={value}",
            )
        [(kind, args)] = spec.items()
        if kind not in DISTRIBUTIONS:
            close = difflib.get_close_matches(str(kind), list(DISTRIBUTIONS), n=1)
            message = f"{where}: unknown distribution {kind!r} for {key!r}"
            raise ConfigError(
                message + (f"; did you mean {close[0]!r}?" if close else ""),
                hint="distributions: " + ", ".join(DISTRIBUTIONS),
            )
        if not isinstance(args, list):
            raise ConfigError(f"{where}: {key!r}: {kind} takes a list, not {args!r}", hint=_arguments_hint(kind))
        dims.append(Dimension(key.strip(), kind, tuple(args)))
        _check_arguments(dims[-1], where)
    return dims


def _arguments_hint(kind: str) -> str:
    names = DISTRIBUTIONS[kind]
    return f"{kind}: [{', '.join(names)}]" if names else "choice: [value, value, ...]"


def _check_arguments(dim: Dimension, where: str) -> None:
    key, kind, args = dim.key, dim.kind, dim.args
    names = DISTRIBUTIONS[kind]
    if kind == "choice":
        if not args:
            raise ConfigError(f"{where}: {key!r}: choice needs at least one value", hint=_arguments_hint(kind))
        texts = [yaml_text(v) for v in args]
        if len(set(texts)) != len(texts):
            raise ConfigError(f"{where}: {key!r}: choice lists a value twice: {list(args)!r}")
        return
    if len(args) != len(names):
        raise ConfigError(
            f"{where}: {key!r}: {kind} takes [{', '.join(names)}], got {len(args)} value(s) {list(args)!r}",
            hint=_arguments_hint(kind),
        )
    integer = kind in INTEGER_DISTRIBUTIONS
    for name, value in zip(names, args, strict=True):
        if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
            hint = None
            if isinstance(value, str):
                hint = "YAML reads 1e-4 as text; write 1.0e-4" if _numeric_text(value) else None
            need = "an integer" if integer else "a number"
            raise ConfigError(f"{where}: {key!r}: {kind}'s {name} must be {need}, not {value!r}", hint=hint)
        if not math.isfinite(value):
            raise ConfigError(f"{where}: {key!r}: {kind}'s {name} must be finite, not {value!r}")
    low, high = args[0], args[1]
    if not low < high:
        raise ConfigError(f"{where}: {key!r}: {kind} needs low < high, got [{low}, {high}]")
    if kind in LOG_DISTRIBUTIONS and low <= 0:
        raise ConfigError(f"{where}: {key!r}: {kind} needs 0 < low, got {low}", hint="log scales start above zero")
    if len(args) == 3:
        q = args[2]
        steps = (high - low) / q if q > 0 else -1.0
        if q <= 0 or abs(steps - round(steps)) > 1e-9 * max(1.0, abs(steps)):
            raise ConfigError(
                f"{where}: {key!r}: {kind} needs a step q > 0 that divides high - low, got q = {q} for [{low}, {high}]"
            )


def _numeric_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def check_space(
    dims: list[Dimension], preset: dict[str, Any], overrides: list[str], where: str = "the search space"
) -> None:
    """Resolve the base config with values from every dimension, so a bad key or value fails now, not in a trial."""
    for dim in dims:
        for value in dim.probes():
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # keys dropped by a switched agent.name: said once per run
                    resolve_config(preset, [*overrides, f"{dim.key}={yaml_text(value)}"])
            except ConfigError as exc:
                if exc.message.startswith(("unknown config key", "bad override")):
                    raise ConfigError(f"{where}: {exc.message}", hint=exc.hint) from None
                hint = "use randint or qrandint for an integer key" if dim.kind in ("uniform", "quniform") else None
                raise ConfigError(
                    f"{where}: {dim.key} = {dim.describe()} can draw {yaml_text(value)}, which the config refuses: "
                    f"{exc.message}",
                    hint=hint or exc.hint,
                ) from None


def _read_yaml(path: Path, where: str) -> Any:
    """A YAML file's data (``yaml.safe_load``: a file from elsewhere is data), or one clear error."""
    try:
        return yaml.safe_load(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {where}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{where} is not UTF-8 text", hint="save it as UTF-8") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{where} is not valid YAML{at}: {getattr(exc, 'problem', None) or exc}") from None
    except RecursionError:
        raise ConfigError(f"{where} nests too deeply to be a search space") from None


def load_space(
    name_or_path: str, preset: dict[str, Any], overrides: list[str]
) -> tuple[Path, dict[str, Any], list[Dimension]]:
    """Read and check a space file: ``(its path, its mapping, its dimensions)``. The file is data: YAML only."""
    path = find_space(name_or_path)
    where = f"search space {path}"
    data = _read_yaml(path, where)
    dims = parse_space(data, where)
    check_space(dims, preset, overrides, where)
    return path, data, dims


# --------------------------------------------------------------------------- the sweep


@dataclass
class Sweep:
    """What a sweep is. Saved as ``sweep.json``, so that ``--resume`` rebuilds the same sweep.

    :param preset: the base config file's mapping (``--config``), as loaded.
    :param overrides: the ``--set`` overrides of the base config; the sampled values come after them.
    :param space: the search space file's mapping.
    :param seed: the first seed; a trial trains seeds ``seed, seed + 1, ...``, and TPE is seeded with it.
    :param tracking_uri: the MLflow store as an absolute URI (trials run in other processes and folders).
    """

    root: Path
    preset: dict[str, Any]
    overrides: list[str]
    space: dict[str, Any]
    trials: int
    seeds: int = 1
    seed: int = 0
    concurrent: int | None = None
    cpus_per_trial: float = 1.0
    prune: bool = True
    plugins: list[str] = field(default_factory=list)
    tracking_enabled: bool = True
    tracking_uri: str | None = None
    experiment: str = "qagent"
    experiment_id: str | None = None
    parent_run_id: str | None = None
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def tune_dir(self) -> Path:
        return self.root / "tune"

    @property
    def trials_dir(self) -> Path:
        return self.root / "trials"

    @property
    def path(self) -> Path:
        return self.root / "sweep.json"

    def dimensions(self) -> list[Dimension]:
        return parse_space(self.space, f"the search space of {self.root}")

    def check(self) -> None:
        """Check the recorded space against the recorded config, as a new sweep's is checked."""
        check_space(self.dimensions(), self.preset, self.overrides, f"the search space of {self.root}")

    def seed_list(self) -> list[int]:
        return [self.seed + i for i in range(self.seeds)]

    def values(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """A trial's sampled values as config values, keyed by config key, in the space's order."""
        return {d.key: d.decode(params[d.key]) for d in self.dimensions() if d.key in params}

    def config(self, values: Mapping[str, Any], seed: int | None = None, *, training: bool = False) -> Any:
        """The run config of a trial: the base config, the sampled values, the seed.

        :param training: point tracking at the sweep's absolute store (for the seeds' runs), rather
            than keep the tracking section the user wrote (for the best preset).
        """
        sets = [*self.overrides, *(f"{k}={yaml_text(v)}" for k, v in values.items())]
        sets.append(f"seed={self.seed if seed is None else seed}")
        if training:
            sets.append(f"tracking.enabled={'true' if self.tracking_enabled else 'false'}")
            if self.tracking_uri:
                sets.append(f"tracking.uri={json.dumps(self.tracking_uri)}")
        return resolve_config(self.preset, sets)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["root"] = str(self.root)
        return data

    def save(self, **status: Any) -> None:
        data = {"qagent_version": qagent.__version__, **self.to_dict(), **status}
        old = self.load_meta(self.root)
        write_atomically(self.path, json.dumps({**old, **data}, indent=2) + "\n")

    @staticmethod
    def load_meta(root: Path) -> dict[str, Any]:
        path = Path(root) / "sweep.json"
        if not path.is_file():
            return {}
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return {}
        return data if isinstance(data, dict) else {}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], root: Path | None = None) -> Sweep:
        """Rebuild a sweep from its record, which is data: every field is checked for its type."""
        kinds: dict[str, Any] = {
            "preset": dict,
            "overrides": list,
            "space": dict,
            "trials": int,
            "seeds": int,
            "seed": int,
            "concurrent": (int, type(None)),
            "cpus_per_trial": (int, float),
            "prune": bool,
            "plugins": list,
            "tracking_enabled": bool,
            "tracking_uri": (str, type(None)),
            "experiment": str,
            "experiment_id": (str, type(None)),
            "parent_run_id": (str, type(None)),
            "created": str,
        }
        values = {}
        for key, kind in kinds.items():
            if key not in data and key not in ("preset", "overrides", "space", "trials"):
                continue
            value = data.get(key)
            if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
                raise CheckpointError(f"the sweep record has a bad {key!r}: {str(value)[:200]}")
            if key in ("trials", "seeds", "concurrent", "cpus_per_trial") and value is not None and value <= 0:
                raise CheckpointError(f"the sweep record has a bad {key!r}: {value}")
            values[key] = value
        for key in ("overrides", "plugins"):
            if not all(isinstance(item, str) for item in values.get(key, [])):
                raise CheckpointError(f"the sweep record's {key!r} is not a list of strings")
        check_plain_tree(values["preset"], "the sweep record's config")
        return cls(root=Path(root if root is not None else data.get("root", ".")), **values)

    @classmethod
    def load(cls, root: str | Path) -> Sweep:
        """The sweep in folder ``root`` (``runs/<sweep>``)."""
        root = Path(root).expanduser()
        if not (root / "sweep.json").is_file():
            raise CheckpointError(
                f"{root} is not a sweep folder (it has no sweep.json)", hint="pass the folder qagent tune printed"
            )
        data = cls.load_meta(root)
        if not data:
            raise CheckpointError(f"{root / 'sweep.json'} is unreadable or not a JSON object")
        return cls.from_dict(data, root=root)


def default_sweep_name(env_id: str, agent: str) -> str:
    """``tune-cartpole-v1-dqn-20250101-120000``, like run directories' names."""
    env = re.sub(r"[^a-z0-9]+", "-", env_id.lower()).strip("-")
    return f"tune-{env}-{agent}-{time.strftime('%Y%m%d-%H%M%S')}"


def absolute_tracking_uri(uri: str | None) -> str:
    """``uri`` (or MLflow's default) with a relative SQLite or file path made absolute.

    Trials run in Ray worker processes, maybe in other folders, and must all reach the same store.
    """
    import mlflow

    uri = uri or mlflow.get_tracking_uri()
    for prefix in ("sqlite:///", "file://"):
        if uri.startswith(prefix):
            rest = uri[len(prefix) :]
            return uri if rest.startswith("/") else prefix + str(Path(rest).expanduser().resolve())
    if "://" not in uri and not uri.startswith("databricks"):  # a plain folder: MLflow's file store
        return str(Path(uri).expanduser().resolve())
    return uri


# --------------------------------------------------------------------------- one trial (in a Ray worker)


def run_trial(params: dict[str, Any], sweep: dict[str, Any]) -> None:
    """Ray Tune's trainable: train the trial's config once per seed, reporting the running mean after each."""
    from ray import tune

    from qagent.plugins.discovery import load_plugins

    spec = Sweep.from_dict(sweep)
    load_plugins(spec.plugins)
    context = tune.get_context()
    trial_id, trial_name = context.get_trial_id(), context.get_trial_name()
    values = spec.values(params)
    run = _TrialRun(spec, trial_id, trial_name, values)
    returns: list[float] = []
    try:
        for done, seed in enumerate(spec.seed_list(), start=1):
            config = spec.config(values, seed, training=True)
            score, run_dir = _train_seed(spec, config, f"{trial_name}-seed-{seed}", run.tags(trial_name))
            returns.append(score)
            mean = statistics.fmean(returns)
            std = statistics.pstdev(returns) if len(returns) > 1 else 0.0
            run.log({"eval/return_mean": mean, "eval/return_std": std, "eval/seed_return": score}, done)
            if done == spec.seeds:
                run.finish("FINISHED")
            tune.report(
                {
                    METRIC: mean,
                    "eval_return_std": std,
                    "seed_returns": list(returns),
                    "seeds_done": done,
                    "env_steps": done * config.train.total_steps,
                    "mlflow_run_id": run.run_id or "",
                    "run_dir": str(run_dir),
                }
            )
    except SystemExit:  # Tune stopped the trial at a report: the driver says why (pruned, interrupted)
        raise
    except BaseException:
        run.finish("FAILED")
        raise


def _train_seed(spec: Sweep, config: Any, name: str, tags: dict[str, str]) -> tuple[float, Path]:
    """One seed's training run, or the finished run a previous attempt of the trial left (on resume)."""
    from qagent.training.loop import start_training

    earlier = RunDir(spec.trials_dir / name)
    score = _finished_score(earlier, config)
    if score is not None:
        return score, earlier.root
    result = start_training(
        config, runs_dir=spec.trials_dir, run_name=name, plugins=spec.plugins, progress=False, tags=tags
    )
    final = result.last_eval or {}
    if result.interrupted or not final.get("final"):
        raise QAgentError(f"the run {result.run_dir} stopped before its final evaluation")
    return float(final["mean"]), result.run_dir


def _finished_score(run: RunDir, config: Any) -> float | None:
    """The final evaluation of ``run`` if it finished training exactly ``config``, else None."""
    if not run.meta_path.is_file() or run.read_meta().get("status") != "finished":
        return None
    try:
        same = run.config_path.read_text() == config.to_yaml()
    except OSError:
        return None
    finals = [e for e in run.evaluations() if e.get("final")] if same else []
    return float(finals[-1]["mean"]) if finals else None


class _TrialRun:
    """A trial's MLflow run, nested under the sweep's; a restarted trial reopens its own."""

    def __init__(self, spec: Sweep, trial_id: str, trial_name: str, values: Mapping[str, Any]) -> None:
        from qagent.training.tracking import MLflowTracker, Tracker

        self.spec = spec
        self.tracker: Tracker = Tracker()
        if not (spec.tracking_enabled and spec.parent_run_id):
            return
        tracker = MLflowTracker(spec.tracking_uri, spec.experiment)
        tags = {
            "mlflow.parentRunId": spec.parent_run_id,
            "qagent.sweep": spec.name,
            "qagent.sweep_run_id": spec.parent_run_id,
            "qagent.trial": trial_name,
            "qagent.trial_id": trial_id,
            "qagent.version": qagent.__version__,
        }
        query = f"tags.`qagent.sweep_run_id` = '{spec.parent_run_id}' and tags.`qagent.trial_id` = '{trial_id}'"
        earlier = tracker.client.search_runs([tracker.experiment_id], filter_string=query, max_results=1)
        if earlier:
            tracker.resume(earlier[0].info.run_id, tags)
        else:
            params = {k: v for k, v in spec.config(values).flat().items() if k != "seed"}
            params["seeds"] = ", ".join(str(s) for s in spec.seed_list())
            tracker.start(trial_name, params, tags)
        self.tracker = tracker

    @property
    def run_id(self) -> str | None:
        return self.tracker.run_id

    def tags(self, trial_name: str) -> dict[str, str]:
        """MLflow tags that nest a seed's run under this trial."""
        if self.run_id is None:
            return {}
        return {
            "mlflow.parentRunId": self.run_id,
            "qagent.sweep": self.spec.name,
            "qagent.sweep_run_id": self.spec.parent_run_id or "",
            "qagent.trial": trial_name,
        }

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        self.tracker.log_metrics(metrics, step)
        self.tracker.flush()

    def finish(self, status: str) -> None:
        with contextlib.suppress(Exception):  # the driver closes the run too, should this fail
            self.tracker.finish(status)


# --------------------------------------------------------------------------- the driver


def _trial_ended(trial: Any, failed: bool, seeds: int, tracking_uri: str | None, dims: list[Dimension]) -> None:
    """Say how a trial ended and close its MLflow run, from the driver.

    A trial whose worker Tune stopped (pruned) or lost cannot close its own run reliably; this can.
    """
    result = trial.last_result or {}
    done = result.get("seeds_done", 0)
    status = "failed" if failed else "finished" if done == seeds else "pruned"
    run_id = result.get("mlflow_run_id")
    if tracking_uri and run_id:
        with contextlib.suppress(Exception):
            from mlflow.tracking import MlflowClient

            client = MlflowClient(tracking_uri)
            if status == "pruned":
                client.set_tag(run_id, "qagent.pruned", "true")
            client.set_terminated(run_id, "FAILED" if failed else "FINISHED")
    if failed:
        detail = _error_line(trial)
    else:
        detail = f"return {result.get(METRIC, float('nan')):.2f} over {done} seed{'s' if done != 1 else ''}"
    values = "  ".join(f"{d.key}={_short(d.decode(trial.config[d.key]))}" for d in dims if d.key in trial.config)
    print(f"{trial}  {status:8s}  {detail}  {values}", flush=True)


def _short(value: Any) -> str:
    """A sampled value for a line on screen: floats to 4 significant digits."""
    return f"{value:.4g}" if isinstance(value, float) else yaml_text(value)


def _callback(seeds: int, tracking_uri: str | None, dims: list[Dimension]) -> Any:
    """A Tune callback that calls :func:`_trial_ended` (built here, so importing this module needs no Ray)."""
    from ray.tune import Callback

    class TrialEnds(Callback):
        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            _trial_ended(trial, False, seeds, tracking_uri, dims)

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            _trial_ended(trial, True, seeds, tracking_uri, dims)

    return TrialEnds()


def _error_line(trial: Any) -> str:
    path = getattr(trial, "error_file", None)
    try:
        lines = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()] if path else []
    except OSError:
        lines = []
    return (lines[-1].removeprefix("qagent.errors.") if lines else "failed")[:300]


def _trial_name(trial: Any) -> str:
    """``trial-001``, numbered in the order the search proposed them (stable across --resume)."""
    number = str(getattr(trial, "experiment_tag", "")).split("_")[0]
    return f"trial-{int(number):03d}" if number.isdigit() else f"trial-{trial.trial_id}"


@dataclass
class SweepResult:
    """What a call to :func:`run_sweep` did."""

    root: Path
    rows: list[dict[str, Any]]
    best: dict[str, Any] | None
    best_path: Path | None
    results_csv: Path
    results_json: Path
    interrupted: bool
    seconds: float
    tracking: str = "tracking disabled"
    tracking_uri: str | None = None

    def count(self, status: str) -> int:
        return sum(row["status"] == status for row in self.rows)


def run_sweep(
    sweep: Sweep,
    *,
    resume: bool = False,
    address: str | None = None,
    cpus: int | None = None,
    say: Callable[[str], None] = print,
    space_file: Path | None = None,
) -> SweepResult:
    """Run (or, with ``resume``, continue) a sweep on Ray Tune; write its results and best preset.

    Ctrl-C stops Tune after saving its state: the result says ``interrupted``, and the same call
    with ``resume=True`` runs the trials that did not finish (failed ones included) and the rest.

    :param space_file: the space file a new sweep was given, copied into its folder as it is.
    """
    from qagent.training.tracking import MLflowTracker, Tracker

    started = time.monotonic()
    dims = sweep.dimensions()
    available = cpus or os.cpu_count() or 1
    if address is None and sweep.cpus_per_trial > available:
        raise ConfigError(
            f"a trial needs {sweep.cpus_per_trial:g} CPUs and this machine's Ray cluster has {available}",
            hint="lower --cpus-per-trial, or raise --cpus",
        )
    sweep.root.mkdir(parents=True, exist_ok=True)
    if space_file is not None:
        (sweep.root / "space.yaml").write_bytes(Path(space_file).read_bytes())
    parent: Tracker = Tracker()
    if sweep.tracking_enabled:
        parent = MLflowTracker(sweep.tracking_uri, sweep.experiment)
        if resume and sweep.parent_run_id:
            parent.resume(sweep.parent_run_id, {})
        else:
            parent.start(sweep.name, _parent_params(sweep, dims), _parent_tags(sweep))
            sweep.parent_run_id = parent.run_id
            sweep.experiment_id = parent.experiment_id  # type: ignore[attr-defined]
    sweep.save(status="running")
    say(_describe(sweep, dims, resume))
    if sweep.tracking_enabled:
        say(f"tracking:      {parent.describe()}")
    try:
        os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # no TensorBoard/CSV files per trial
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")  # trials run in the folder qagent tune was started in
        with ray_session(address, cpus):
            _fit(sweep, dims, resume)
            result = _write_results(sweep, dims, time.monotonic() - started)  # Tune's trials need Ray up
    except BaseException as exc:
        _close_runs(sweep, "KILLED")
        parent.finish("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        sweep.save(status="interrupted" if isinstance(exc, KeyboardInterrupt) else "failed")
        raise
    _close_runs(sweep, "KILLED")  # runs of trials that Tune stopped when it was interrupted
    if result.best is not None:
        parent.log_metrics({"best/return_mean": result.best[METRIC]}, len(result.rows))
        with contextlib.suppress(Exception):
            parent.client.set_tag(parent.run_id, "qagent.best_trial", result.best["trial"])  # type: ignore[attr-defined]
    for path in (result.best_path, result.results_csv, result.results_json, sweep.root / "space.yaml"):
        if path is not None and path.exists():
            parent.log_artifact(path)
    parent.finish("KILLED" if result.interrupted else "FINISHED")
    sweep.save(status="interrupted" if result.interrupted else "finished")
    result.tracking = parent.describe()
    result.tracking_uri = sweep.tracking_uri if sweep.tracking_enabled else None
    return result


def _describe(sweep: Sweep, dims: list[Dimension], resume: bool) -> str:
    config = sweep.config({})
    seeds = f"{sweep.seeds} seed{'s' if sweep.seeds > 1 else ''}"
    pruning = "ASHA over seeds" if sweep.prune and sweep.seeds > 1 else "no pruning"
    what = "resuming sweep" if resume else "sweep"
    return (
        f"{what} {sweep.root}: {sweep.trials} trials × {seeds} of {config.env.id} · {config.agent.name}, "
        f"searching {', '.join(d.key for d in dims)} with Optuna TPE (seed {sweep.seed}), {pruning}"
    )


def _parent_params(sweep: Sweep, dims: list[Dimension]) -> dict[str, Any]:
    searched = {d.key for d in dims}
    params = {k: v for k, v in sweep.config({}).flat().items() if k not in searched and k != "seed"}
    params.update({f"space.{d.key}": d.describe() for d in dims})
    params.update(
        {
            "sweep.trials": sweep.trials,
            "sweep.seeds": ", ".join(str(s) for s in sweep.seed_list()),
            "sweep.search": f"optuna-tpe (seed {sweep.seed})",
            "sweep.pruner": "asha" if sweep.prune and sweep.seeds > 1 else "none",
        }
    )
    return params


def _parent_tags(sweep: Sweep) -> dict[str, str]:
    config = sweep.config({})
    return {
        "qagent.version": qagent.__version__,
        "qagent.sweep": sweep.name,
        "qagent.sweep_dir": str(sweep.root.resolve()),
        "qagent.env": config.env.id,
        "qagent.agent": config.agent.name,
    }


def _fit(sweep: Sweep, dims: list[Dimension], resume: bool) -> None:
    import optuna
    from ray import tune

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    record = {**sweep.to_dict(), "root": str(sweep.root.resolve())}  # trials may run in other folders
    trainable = tune.with_resources(tune.with_parameters(run_trial, sweep=record), {"cpu": sweep.cpus_per_trial})
    param_space = {d.key: d.domain() for d in dims}
    tracking = sweep.tracking_uri if sweep.tracking_enabled else None
    tune_dir = str(sweep.tune_dir.resolve())
    if resume:
        if not tune.Tuner.can_restore(tune_dir):
            raise CheckpointError(f"{sweep.root} has no Ray Tune state to resume ({sweep.tune_dir} is missing)")
        with _quiet_tune():
            tuner = tune.Tuner.restore(
                tune_dir, trainable, param_space=param_space, resume_unfinished=True, restart_errored=True
            )
    else:
        from ray.tune.schedulers import ASHAScheduler
        from ray.tune.search.optuna import OptunaSearch

        scheduler = None
        if sweep.prune and sweep.seeds > 1:
            scheduler = ASHAScheduler(time_attr="seeds_done", max_t=sweep.seeds, grace_period=1, reduction_factor=2)
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(
                metric=METRIC,
                mode="max",
                search_alg=OptunaSearch(sampler=optuna.samplers.TPESampler(seed=sweep.seed)),
                scheduler=scheduler,
                num_samples=sweep.trials,
                max_concurrent_trials=sweep.concurrent,
                reuse_actors=True,
                trial_name_creator=_trial_name,
                trial_dirname_creator=_trial_name,
            ),
            run_config=tune.RunConfig(
                name=sweep.tune_dir.name,
                storage_path=str(sweep.root.resolve()),
                verbose=0,
                callbacks=[_callback(sweep.seeds, tracking, dims)],
                failure_config=tune.FailureConfig(max_failures=0),
            ),
        )
    with _quiet_tune():
        tuner.fit()


@contextlib.contextmanager
def _quiet_tune() -> Iterator[None]:
    """Silence Tune's log: its "resume with Tuner.restore(...)" (qagent says how) and missing per-trial logs."""
    logger = logging.getLogger("ray.tune")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _close_runs(sweep: Sweep, status: str) -> None:
    """End the MLflow runs of the sweep's trials and seeds still RUNNING (their workers were stopped)."""
    if not (sweep.tracking_enabled and sweep.parent_run_id and sweep.experiment_id):
        return
    with contextlib.suppress(Exception):
        from mlflow.tracking import MlflowClient

        client = MlflowClient(sweep.tracking_uri)
        query = f"tags.`qagent.sweep_run_id` = '{sweep.parent_run_id}' and attributes.status = 'RUNNING'"
        for run in client.search_runs([sweep.experiment_id], filter_string=query, max_results=10_000):
            client.set_terminated(run.info.run_id, status)


def _write_results(sweep: Sweep, dims: list[Dimension], seconds: float) -> SweepResult:
    """results.csv, results.json and best.yaml, from Tune's saved state of every trial."""
    from ray import tune

    with _quiet_tune():
        analysis = tune.ExperimentAnalysis(str(sweep.tune_dir.resolve()))
    rows = []
    for trial in sorted(analysis.trials, key=str):
        result = trial.last_result or {}
        done = int(result.get("seeds_done", 0) or 0)
        if trial.status == "ERROR":
            status = "failed"
        elif trial.status == "TERMINATED":
            status = "finished" if done == sweep.seeds else "pruned"
        else:
            status = "interrupted"
        row: dict[str, Any] = {
            "trial": str(trial),
            "status": status,
            METRIC: result.get(METRIC) if done else None,
            "eval_return_std": result.get("eval_return_std") if done else None,
            "seeds_done": done,
            **{d.key: d.decode(trial.config[d.key]) for d in dims if d.key in trial.config},
            "seed_returns": list(result.get("seed_returns") or []),
            "mlflow_run_id": result.get("mlflow_run_id") or None,
            "error": _error_line(trial) if status == "failed" else None,
        }
        rows.append(row)
    finished = [r for r in rows if r["status"] == "finished" and r[METRIC] is not None]
    best = max(finished, key=lambda r: r[METRIC]) if finished else None
    best_path = None
    if best is not None:
        best_path = sweep.root / "best.yaml"
        write_atomically(best_path, _best_preset(sweep, dims, best))
    results_json = sweep.root / "results.json"
    summary = {"sweep": sweep.name, "metric": METRIC, "mode": "max", "seeds": sweep.seed_list(), "best": best}
    write_atomically(results_json, json.dumps({**summary, "trials": rows}, indent=2) + "\n")
    results_csv = sweep.root / "results.csv"
    write_atomically(results_csv, _csv(rows, dims))
    interrupted = len(rows) < sweep.trials or any(r["status"] == "interrupted" for r in rows)
    return SweepResult(sweep.root, rows, best, best_path, results_csv, results_json, interrupted, seconds)


def _best_preset(sweep: Sweep, dims: list[Dimension], best: dict[str, Any]) -> str:
    values = {d.key: best[d.key] for d in dims if d.key in best}
    config = sweep.config(values)
    seeds = ", ".join(str(s) for s in sweep.seed_list())
    header = [
        f"# The best trial of sweep {sweep.name}, {best['trial']}: final greedy evaluation "
        f"{best[METRIC]:.2f} ± {best['eval_return_std']:.2f} (the mean over seeds {seeds}). Its sampled values:",
        *(f"#   {k}: {yaml_text(v)}" for k, v in values.items()),
        f"# Train it with: qagent train --config {sweep.root / 'best.yaml'}",
    ]
    return "\n".join(header) + "\n" + config.to_yaml()


def _csv(rows: list[dict[str, Any]], dims: list[Dimension]) -> str:
    columns = ["trial", "status", METRIC, "eval_return_std", "seeds_done", *(d.key for d in dims)]
    columns += ["seed_returns", "mlflow_run_id", "error"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column)
            if isinstance(value, (list, dict)):
                value = yaml_text(value)
            cells.append("" if value is None else value)
        writer.writerow(cells)
    return out.getvalue()
