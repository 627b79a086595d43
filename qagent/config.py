"""Typed run configuration: YAML presets, ``--set`` overrides, validation.

A run's config has fixed sections (``env``, ``replay``, ``train``, ``eval``, ``tracking``)
and three sections whose schema depends on a registered name: ``agent``, ``network`` and
``exploration``. Each registered class carries its own pydantic ``Config``, so a plugin's
options are validated, documented and logged like the built-in ones.

Layers, lowest first: the schema defaults, a preset YAML file, ``--set key.sub=value``.
Every field has a docstring; ``qagent config show`` prints the resolved values.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from qagent.errors import ConfigError


def _as_int(value: Any) -> Any:
    """Accept ``1e5``, ``"1e5"`` and ``"50_000"`` for integer fields when they are whole numbers."""
    if isinstance(value, str):
        text = value.strip().replace("_", "")
        try:
            return int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _device_name(value: str) -> str:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``; whether that GPU exists is checked when training starts."""
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
        raise ValueError("expected auto, cpu, cuda or cuda:N")
    return value


Int = Annotated[int, BeforeValidator(_as_int)]
PositiveInt = Annotated[int, BeforeValidator(_as_int), Field(gt=0)]
NonNegativeInt = Annotated[int, BeforeValidator(_as_int), Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Fraction = Annotated[float, Field(gt=0.0, le=1.0)]


class Section(BaseModel):
    """A config section: unknown keys are errors, every field documents itself."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_assignment=True)

    def check(self, run: RunConfig) -> None:
        """Cross-section checks; raise :class:`ConfigError` naming the offending key."""


class NamedSection(Section):
    """A section whose schema is chosen by the registered ``name``."""

    name: str


class AgentConfig(NamedSection):
    """Base of every agent's config."""

    name: str = "dqn"
    """Registered agent (DQN variant); see ``qagent plugins list``."""


class NetworkConfig(NamedSection):
    """Base of every network torso's config."""

    name: str = "mlp"
    """Registered network torso; see ``qagent plugins list``."""


class ExplorationConfig(NamedSection):
    """Base of every exploration strategy's config."""

    name: str = "epsilon-greedy"
    """Registered exploration strategy; see ``qagent plugins list``."""


class AtariConfig(Section):
    """Preprocessing of ALE games (ignored for other envs)."""

    observation: Literal["pixels", "ram"] = "pixels"
    """``pixels``: stacked 84x84 grayscale frames; ``ram``: the console's 128 bytes of memory (no stacking)."""
    sticky_actions: Probability | None = None
    """Chance the emulator repeats the previous action each frame; None: 0.25 for ALE/*-v5 ids, 0 otherwise."""
    noop_max: NonNegativeInt = 30
    """Up to this many no-op actions after each reset."""
    frame_skip: PositiveInt = 4
    """Emulator frames per agent step (the observation is the max of the last two)."""
    screen_size: PositiveInt = 84
    """Frames are resized to this square size, in grayscale."""
    frame_stack: PositiveInt = 4
    """Frames per observation."""
    terminal_on_life_loss: bool = True
    """Treat the loss of a life as the end of an episode, in training only."""
    clip_rewards: bool = True
    """Clip rewards to their sign, in training only."""
    max_frames: PositiveInt = 108_000
    """Emulator frames per episode at most (30 minutes of play); the episode is truncated."""


class ShapingConfig(Section):
    """Potential-based reward shaping of training envs (ignored unless a potential is named)."""

    potential: str | None = None
    """Registered potential Phi(obs); None turns shaping off."""
    kwargs: dict[str, Any] = {}
    """Keyword arguments of the potential."""
    gamma: Probability | None = None
    """Discount in gamma * Phi(s') - Phi(s); None uses agent.gamma, which keeps the optimal policy."""

    def check(self, run: Any) -> None:
        from qagent.plugins.registries import POTENTIALS

        if self.potential is not None:
            POTENTIALS.get(self.potential)  # unknown names are errors with suggestions
            if self.gamma is None:
                self.gamma = run.agent.gamma


class MiniGridConfig(Section):
    """Observations of MiniGrid games (ignored for other envs)."""

    observation: Literal["flat", "onehot-image", "image"] = "flat"
    """``flat``: one-hot object type and state per cell, as a float32 vector; ``onehot-image``: the same as
    (15, H, W) uint8 planes, for a convolutional torso (``grid-cnn``); ``image``: the (3, H, W) uint8 grid."""
    fully_observable: bool = True
    """Observe the whole grid instead of the agent's 7x7 view."""


class EnvConfig(Section):
    id: str = "CartPole-v1"
    """A gymnasium id (``CartPole-v1``, ``ALE/Pong-v5``) or the name of a registered env plugin."""
    num_envs: PositiveInt = 1
    """Environments stepped together by the collector (one vector env)."""
    vectorization: Literal["auto", "gymnasium", "ale"] = "auto"
    """Training vector env: ``gymnasium`` (the wrapper chain), ``ale`` (ale-py's faster AtariVectorEnv), ``auto``
    (``ale`` for ALE games where it plays as the chain does); see docs/atari.md. Evaluation always uses the chain."""
    kwargs: dict[str, Any] = {}
    """Keyword arguments for ``gymnasium.make`` or the env plugin's factory."""
    max_episode_steps: PositiveInt | None = None
    """Cap on episode length (a time limit: truncation, so targets still bootstrap)."""
    atari: AtariConfig = AtariConfig()
    """Preprocessing of ALE games (ignored for other envs)."""
    shaping: ShapingConfig = ShapingConfig()
    """Potential-based reward shaping (training envs only)."""
    minigrid: MiniGridConfig = MiniGridConfig()
    """Observations of MiniGrid games (ignored for other envs)."""

    def check(self, run: Any) -> None:
        self.shaping.check(run)


class ReplayConfig(Section):
    capacity: PositiveInt = 100_000
    """Transitions kept; the oldest are overwritten first."""
    n_step: PositiveInt = 1
    """Rewards summed into each sampled return; the window stops at an episode's end."""
    prioritized: bool = False
    """Sample in proportion to priority (Schaul et al. 2016) instead of uniformly."""
    alpha: Probability = 0.6
    """Priority exponent: 0 samples uniformly, 1 in proportion to priority."""
    beta: Probability = 0.4
    """Importance-sampling exponent at the start of training, annealed to 1 by its end."""
    priority_eps: PositiveFloat = 1e-6
    """Added to every priority, so no transition is never sampled."""


class TrainConfig(Section):
    total_steps: PositiveInt = 50_000
    """Environment steps to train for, summed over all envs."""
    max_episodes: PositiveInt | None = None
    """Also stop once this many training episodes have finished (None: train for total_steps)."""
    checkpoint_every: PositiveInt | None = 10_000
    """Checkpoint every this many env steps, so a crashed run can resume (None: only at the end and on Ctrl-C)."""
    keep_checkpoints: PositiveInt = 3
    """Periodic checkpoints to keep (the newest ones); the final one is always kept."""
    save_buffer: bool = False
    """Save the replay buffer with each checkpoint, so a resumed run continues exactly."""
    keep_best: bool = True
    """Keep checkpoints/best.pt, the checkpoint of the best evaluation so far."""
    async_collection: bool = False
    """Collect in a background thread while the learner trains (both cores; not bit-for-bit reproducible)."""
    torch_threads: PositiveInt | None = None
    """Threads for PyTorch's intra-op pool; None keeps PyTorch's default (one per core)."""
    log_every: PositiveInt = 1_000
    """Average training metrics (loss, mean Q) over windows of this many env steps."""
    on_nonfinite: Literal["stop", "warn"] = "stop"
    """A NaN or infinite loss, Q-value or weight: stop the run (FAILED, last finite checkpoint kept) or warn."""
    device: Annotated[str, AfterValidator(_device_name)] = "auto"
    """Where the learner and its sampled batches live: ``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``."""
    amp: bool = False
    """Mixed precision (bfloat16 autocast) for the learner's forward passes; pays off for CNN torsos on a GPU."""

    def check(self, run: Any) -> None:
        if self.async_collection and run.distributed.actors:
            raise ConfigError(
                "train.async_collection and distributed.actors both move collection off the learner",
                hint="use one: distributed.actors for Ray actors, or train.async_collection for one thread",
            )


class EvalConfig(Section):
    every: PositiveInt | None = 10_000
    """Greedy evaluation every this many env steps; None evaluates only at the end."""
    episodes: PositiveInt = 10
    """Episodes per periodic evaluation."""
    final_episodes: PositiveInt = 100
    """Episodes of the evaluation at the end of training."""
    epsilon: Probability = 0.0
    """Probability of a random action during evaluation (0 is greedy)."""
    num_envs: PositiveInt = 10
    """Evaluation episodes run side by side (results do not depend on it)."""
    video_every: PositiveInt | None = None
    """Record one evaluation episode every this many env steps (and at the end) and log it to MLflow."""
    video_format: Literal["gif", "mp4"] = "gif"
    """File format of training videos (mp4 needs imageio-ffmpeg)."""
    stop_at_return: float | None = None
    """Stop training once a periodic evaluation's mean return reaches this; the final evaluation still runs."""
    stop_at_success: Probability | None = None
    """Stop training once a periodic evaluation's success rate (episodes with a positive return) reaches this."""

    def targets(self) -> dict[str, tuple[str, float]]:
        """The ``stop_at_*`` targets set: the evaluation record's field -> (setting, value)."""
        named = {
            "mean": ("eval.stop_at_return", self.stop_at_return),
            "success_rate": ("eval.stop_at_success", self.stop_at_success),
        }
        return {field: (name, value) for field, (name, value) in named.items() if value is not None}

    def target_met(self, record: dict[str, Any] | None) -> bool:
        """Whether an evaluation record reaches every ``stop_at_*`` target set (never when none is, nor for
        a record that is not one: a checkpoint from elsewhere may hold anything)."""
        targets = self.targets()
        if not (isinstance(record, dict) and targets):
            return False
        return all(isinstance(record.get(f), int | float) and record[f] >= value for f, (_, value) in targets.items())

    def describe_targets(self) -> str:
        return ", ".join(f"{name}={value:g}" for name, value in self.targets().values())

    def check(self, run: Any) -> None:
        if self.every is None and self.targets():
            raise ConfigError(
                "eval.stop_at_return and eval.stop_at_success are checked at periodic evaluations, "
                "but eval.every is null",
                hint="set eval.every (e.g. --set eval.every=10000)",
            )


class DistributedConfig(Section):
    """Ape-X-style collection by actor processes on Ray (``qagent train --actors N``)."""

    actors: NonNegativeInt = 0
    """Actor processes, each stepping its own ``env.num_envs`` envs; 0 collects in the learner's process."""
    address: str | None = None
    """Ray cluster to join (``auto`` or ``HOST:6379``, from one of its nodes); None starts a local Ray on 127.0.0.1."""
    num_cpus: PositiveInt | None = None
    """CPUs a local Ray may use; None: one per actor plus one for the learner."""
    chunk_steps: PositiveInt = 32
    """Vector steps an actor takes per chunk it sends (``chunk_steps * env.num_envs`` transitions)."""
    max_in_flight: PositiveInt = 2
    """Chunks each actor may have collected but the learner not yet taken: the back-pressure bound."""
    publish_every: PositiveInt = 50
    """Learner updates between weight snapshots for the actors (``ray.put`` once, shared by all)."""
    apex_epsilon: bool = False
    """Give actor i the fixed epsilon ``apex_base ** (1 + apex_alpha * i / (N - 1))`` (Ape-X), not the schedule."""
    apex_base: Probability = 0.4
    apex_alpha: PositiveFloat = 7.0

    def check(self, run: Any) -> None:
        if self.apex_epsilon and self.actors and run.exploration.name != "epsilon-greedy":
            raise ConfigError(
                f"distributed.apex_epsilon sets each actor's epsilon, but exploration is {run.exploration.name!r}",
                hint="use --set exploration.name=epsilon-greedy, or distributed.apex_epsilon=false",
            )


class TrackingConfig(Section):
    enabled: bool = True
    """Log the run to MLflow."""
    uri: str | None = None
    """MLflow tracking URI; None uses MLFLOW_TRACKING_URI or MLflow's default (./mlflow.db)."""
    experiment: str = "qagent"
    """MLflow experiment name."""


FIXED_SECTIONS: dict[str, type[Section]] = {
    "env": EnvConfig,
    "replay": ReplayConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
    "distributed": DistributedConfig,
    "tracking": TrackingConfig,
}
NAMED_SECTIONS: dict[str, type[NamedSection]] = {
    "agent": AgentConfig,
    "network": NetworkConfig,
    "exploration": ExplorationConfig,
}
SECTION_ORDER = ("env", "agent", "network", "exploration", "replay", "train", "eval", "distributed", "tracking")
TOP_LEVEL_KEYS = ("seed", *SECTION_ORDER)


@dataclass
class RunConfig:
    """The resolved configuration of one training run."""

    seed: int
    env: EnvConfig
    agent: AgentConfig
    network: NetworkConfig
    exploration: ExplorationConfig
    replay: ReplayConfig
    train: TrainConfig
    eval: EvalConfig
    distributed: DistributedConfig
    tracking: TrackingConfig

    SECTIONS: ClassVar[tuple[str, ...]] = SECTION_ORDER

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict, safe for YAML, JSON and checkpoints."""
        out: dict[str, Any] = {"seed": self.seed}
        for name in SECTION_ORDER:
            out[name] = getattr(self, name).model_dump(mode="json")
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def flat(self) -> dict[str, Any]:
        """``{"agent.lr": 0.001, ...}``: one entry per leaf, for MLflow params."""
        return flatten(self.to_dict())

    def hash(self) -> str:
        """A short, stable digest of everything that defines the run."""
        text = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> ``{"a.b": leaf}``; empty dicts are leaves."""
    items: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            items.update(flatten(value, path + "."))
        else:
            items[path] = value
    return items


# --------------------------------------------------------------------------- presets


def preset_dirs() -> list[Path]:
    """Where named presets live: inside the installed package, or the source checkout."""
    here = Path(__file__).resolve().parent
    return [here / "configs", here.parent / "configs"]


def find_preset(name_or_path: str) -> Path:
    """A config file path, or a preset name such as ``cartpole-dqn``."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    stem = path.name.removesuffix(".yaml").removesuffix(".yml")
    for folder in preset_dirs():
        candidate = folder / f"{stem}.yaml"
        if candidate.is_file():
            return candidate
    known = list_presets()
    close = difflib.get_close_matches(stem, known, n=2)
    message = f"config file {name_or_path!r} not found"
    if close:
        message += "; did you mean preset " + " or ".join(repr(c) for c in close) + "?"
    raise ConfigError(message, hint="presets: " + (", ".join(known) or "none"))


def list_presets() -> list[str]:
    names = {p.stem for folder in preset_dirs() if folder.is_dir() for p in folder.glob("*.yaml")}
    return sorted(names)


MAX_CONFIG_VALUES = 100_000  # a config holds hundreds; more means YAML aliases nested to explode


def load_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping, turning unreadable, malformed or exploding files into one-line config errors."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start})",
            hint="save it as UTF-8",
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"config file {path} is not valid YAML{where}: {problem}") from None
    except RecursionError:
        raise ConfigError(f"config file {path} nests too deeply to be a config") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, not a {type(data).__name__}")
    check_plain_tree(data, f"config file {path}")
    return data


def check_plain_tree(tree: Any, what: str, limit: int = MAX_CONFIG_VALUES) -> None:
    """Refuse a config tree that expands to more than ``limit`` values.

    YAML aliases (and pickled references in a checkpoint) can share one list many times over,
    a "billion laughs" that a deep copy or a dump would blow up to gigabytes. The walk stops
    at the limit, so checking costs at most ``limit`` steps.
    """
    seen, stack = 0, [tree]
    while stack:
        node = stack.pop()
        seen += 1
        if seen > limit:
            raise ConfigError(
                f"{what} expands to more than {limit:,} values (YAML aliases or shared references nested "
                "to multiply), which no qagent config needs",
                hint="write the config out without anchors and aliases",
            )
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, (list, tuple)):
            stack.extend(node)


# --------------------------------------------------------------------------- overrides


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"agent.lr=5e-4"`` -> ``(["agent", "lr"], 0.0005)``; values are parsed as YAML."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"bad override {text!r}: expected KEY=VALUE such as agent.lr=5e-4")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def _set_path(tree: dict[str, Any], path: list[str], value: Any) -> None:
    node = tree
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[path[-1]] = value


def _unknown_key(key: str, known: list[str], prefix: str = "") -> ConfigError:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
    message = f"unknown config key {prefix + key!r}"
    if close:
        message += f"; did you mean {prefix + close[0]!r}?"
    return ConfigError(message, hint="'qagent config show' lists every key with its value")


# --------------------------------------------------------------------------- resolution


def schema_for(section: str, name: str) -> type[Section]:
    """The pydantic class that validates ``section`` when its registered name is ``name``."""
    from qagent.plugins.registries import REGISTRIES

    return REGISTRIES[section].get(name).Config


def resolve_config(preset: dict[str, Any] | None = None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Merge ``preset`` and ``overrides`` over the defaults and validate the result.

    Registries must already hold the names used (call ``load_plugins`` first). When an
    override switches a named section to another entry (``--set exploration.name=greedy``),
    preset keys the new schema lacks are dropped with a warning rather than rejected.
    """
    if preset is not None and not isinstance(preset, dict):
        raise ConfigError(f"a config must be a mapping of sections, not a {type(preset).__name__}")
    check_plain_tree(preset or {}, "the config")
    preset = dict(preset or {})
    for key in preset:
        if key not in TOP_LEVEL_KEYS:
            raise _unknown_key(str(key), list(TOP_LEVEL_KEYS))
    for key in SECTION_ORDER:
        if preset.get(key) is None:
            preset[key] = {}
        elif not isinstance(preset[key], dict):
            raise ConfigError(f"config section {key!r} must be a mapping, not {preset[key]!r}")

    merged = json.loads(json.dumps(preset, default=str))  # a deep copy made of plain types
    explicit: set[tuple[str, ...]] = set()
    for text in overrides:
        path, value = parse_override(text)
        if path[0] not in TOP_LEVEL_KEYS:
            raise _unknown_key(path[0], list(TOP_LEVEL_KEYS))
        if path[0] == "seed" and len(path) > 1 or path[0] != "seed" and len(path) < 2:
            raise ConfigError(f"bad override {text!r}: 'seed' takes a value, sections take section.key=VALUE")
        _set_path(merged, path, value)
        explicit.add(tuple(path[:2]))

    _apply_agent_defaults(merged)
    sections: dict[str, Section] = {}
    for name in SECTION_ORDER:
        raw = merged.get(name) or {}
        if name in NAMED_SECTIONS:
            entry_name = raw.get("name", NAMED_SECTIONS[name].model_fields["name"].default)
            if not isinstance(entry_name, str):
                raise ConfigError(f"config key '{name}.name' must be a name, not {entry_name!r}")
            schema = schema_for(name, entry_name)
            preset_name = preset[name].get("name", entry_name)
            if preset_name != entry_name:
                raw = _drop_stale_keys(name, raw, schema, explicit, entry_name)
        else:
            schema = FIXED_SECTIONS[name]
        sections[name] = _validate(name, schema, raw)

    seed = merged.get("seed", 0)
    seed = _as_int(seed)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"invalid value for 'seed': expected a non-negative integer (got {merged.get('seed')!r})")
    config = RunConfig(seed=seed, **sections)  # type: ignore[arg-type]
    for name in SECTION_ORDER:
        getattr(config, name).check(config)
    return config


def _apply_agent_defaults(merged: dict[str, Any]) -> None:
    """Fill keys the agent presets in other sections (``section_defaults``), under the user's own."""
    from qagent.plugins.registries import AGENTS

    name = (merged.get("agent") or {}).get("name", AgentConfig.model_fields["name"].default)
    if not isinstance(name, str) or name not in AGENTS:
        return  # the unknown name is reported when the agent section is validated
    for section, values in getattr(AGENTS.get(name), "section_defaults", {}).items():
        target = merged.setdefault(section, {})
        for key, value in values.items():
            target.setdefault(key, value)


def _drop_stale_keys(
    section: str, raw: dict[str, Any], schema: type[Section], explicit: set[tuple[str, ...]], entry_name: str
) -> dict[str, Any]:
    kept = {}
    for key, value in raw.items():
        if key in schema.model_fields or (section, key) in explicit:
            kept[key] = value
        else:
            warnings.warn(
                f"config key '{section}.{key}' does not apply to {section} {entry_name!r} and was dropped",
                stacklevel=3,
            )
    return kept


def _validate(section: str, schema: type[Section], raw: dict[str, Any]) -> Section:
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe_validation(section, schema, exc)) from None


def _describe_validation(section: str, schema: type[Section], exc: ValidationError) -> str:
    messages = []
    for error in exc.errors():
        loc = [str(p) for p in error["loc"]]
        key = ".".join([section, *loc])
        if error["type"] == "extra_forbidden":
            known = list(schema.model_fields) if len(loc) == 1 else []
            messages.append(_unknown_key(loc[-1], known, prefix=f"{section}." if len(loc) == 1 else "").message)
        elif error["type"] == "missing":
            messages.append(f"missing config key {key!r}")
        else:
            got = error.get("input")
            messages.append(f"invalid value for {key!r}: {error['msg'][0].lower() + error['msg'][1:]} (got {got!r})")
    return "; ".join(messages)


def load_config(config_file: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Resolve a run config from an optional preset file or name plus overrides."""
    preset = load_yaml(find_preset(config_file)) if config_file else {}
    return resolve_config(preset, overrides)


def documented_yaml(config: RunConfig) -> str:
    """The config as YAML with each field's docstring as a trailing comment."""
    lines = [f"seed: {config.seed}  # seeds every random stream of the run"]
    for name in SECTION_ORDER:
        section = getattr(config, name)
        values = section.model_dump(mode="json")
        lines.append(f"{name}:")
        for key, field in type(section).model_fields.items():
            doc = " ".join((field.description or _inherited_description(type(section), key)).split())
            comment = f"  # {doc}" if doc else ""
            lines.append(f"  {key}: {json.dumps(values[key])}{comment}")
    return "\n".join(lines) + "\n"


def _inherited_description(schema: type[BaseModel], key: str) -> str:
    """A field's docstring from the nearest base class that documents it."""
    for base in schema.__mro__[1:]:
        fields = getattr(base, "model_fields", {})
        if key in fields and fields[key].description:
            return fields[key].description
    return ""
