"""The ``qagent`` command line: train, eval, plugins, config.

Only click is imported at module level, so ``qagent --help`` stays fast; each command
imports what it needs. Errors a user can cause (:class:`QAgentError`) print one line with a
hint and exit with status 2, never a traceback.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from qagent import __version__

USER_ERROR = 2


def _echo_error(message: str, hint: str | None = None) -> None:
    click.secho(f"error: {message}", fg="red", err=True)
    if hint:
        click.echo(f"hint: {hint}", err=True)


def _show_warning(
    message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None, line: Any = None
) -> None:
    with contextlib.suppress(OSError):  # stderr's reader went away: a warning must not end a run (as the stdlib's)
        click.secho(f"warning: {message}", fg="yellow", err=True)


def handle_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn user errors into one line and exit status 2; show warnings as one line each.

    Besides :class:`QAgentError`: a missing optional package names its extra; an error raised in
    a plugin's code (or a plugin's ``sys.exit``) names the plugin and its line; a signal exits
    with 128 + its number. Anything else is a bug in qagent, and keeps its traceback.
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from qagent.errors import QAgentError, missing_extra, unwritable
        from qagent.training.stopping import Terminated, exit_code

        warnings.showwarning = _show_warning
        try:
            return command(*args, **kwargs)
        except QAgentError as exc:
            _echo_error(exc.message, exc.hint)
            sys.exit(USER_ERROR)
        except KeyboardInterrupt:
            click.secho("aborted", fg="yellow", err=True)
            sys.exit(130)
        except Terminated as exc:
            click.secho("terminated", fg="yellow", err=True)
            sys.exit(exit_code(exc.signum))
        except (Exception, SystemExit) as exc:
            error = missing_extra(exc) or _plugin_failure(exc) or unwritable(exc)
            if error is None:
                raise
            _echo_error(error.message, error.hint)
            sys.exit(USER_ERROR)

    return wrapper


def _plugin_failure(exc: BaseException) -> Any:
    """A :class:`PluginError` for an exception raised (or ``sys.exit``) in a plugin's code."""
    from qagent.errors import PluginError
    from qagent.plugins.discovery import blamed_plugin

    blamed = blamed_plugin(exc)
    if blamed is None:
        return None
    plugin, where = blamed
    if isinstance(exc, SystemExit):
        what = f"called sys.exit({exc.code!r})"
    else:
        text = str(exc).strip().splitlines()
        what = f"raised {type(exc).__name__}" + (f": {text[0][:300]}" if text else "")
    return PluginError(f"plugin {plugin} {what} ({where})", hint="fix the plugin; qagent itself is not at fault")


plugin_option = click.option(
    "--plugin",
    "plugins",
    multiple=True,
    metavar="FILE_OR_MODULE",
    help="Load a plugin: a .py file or an importable module (repeatable).",
)
trust_option = click.option(
    "--trust-plugins",
    is_flag=True,
    help="Also import the plugins the file says it was made with (plugins are code: only for files you trust).",
)


def load_plugins(
    explicit: tuple[str, ...] | list[str],
    recorded: list[str] | None = None,
    *,
    trust: bool = False,
    recorded_by: str = "this file",
) -> list[str]:
    """Load built-ins, ambient plugins, ``--plugin``s and (with ``trust``) the plugins a file records.

    :returns: the plugin specs in use, as a run records them (files by absolute path):
        ``--plugin``s, ``QAGENT_PLUGINS`` and the recorded ones that loaded.
    """
    from qagent.plugins.discovery import ENV_VAR, RECORDED
    from qagent.plugins.discovery import load_plugins as discover

    results = discover(list(explicit), recorded=_plugin_list(recorded), trust=trust, recorded_by=recorded_by)
    for result in results:
        if not result.ok:
            warnings.warn(result.error or "", stacklevel=2)
    kept = [r.recorded_as for r in results if r.ok and r.origin in ("--plugin", ENV_VAR, RECORDED)]
    return list(dict.fromkeys(kept))


def _plugin_list(recorded: Any) -> list[str]:
    """A file's plugin list, which is data: anything but a list of strings is refused."""
    from qagent.errors import CheckpointError

    if recorded is None:
        return []
    if not isinstance(recorded, list) or not all(isinstance(spec, str) for spec in recorded):
        raise CheckpointError(f"the file's plugin list is not a list of names: {str(recorded)[:200]}")
    return recorded


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="qagent")
def main() -> None:
    """qagent: train, evaluate, export and serve value-based game agents.

    \b
    qagent train --config cartpole-dqn --seed 1
    qagent eval  runs/<run-name> --episodes 100
    qagent plugins list
    """


# --------------------------------------------------------------------------- train


def _config_overrides(
    overrides: tuple[str, ...], env: str | None, agent: str | None, seed: int | None, total_steps: int | None
) -> list[str]:
    shortcuts = [
        ("env.id", env),
        ("agent.name", agent),
        ("seed", seed),
        ("train.total_steps", total_steps),
    ]
    return [f"{key}={value}" for key, value in shortcuts if value is not None] + list(overrides)


def _tracking_overrides(tracking_uri: str | None, experiment: str | None, no_track: bool) -> list[str]:
    out = []
    if tracking_uri:
        out.append(f"tracking.uri={json.dumps(tracking_uri)}")
    if experiment:
        out.append(f"tracking.experiment={json.dumps(experiment)}")
    if no_track:
        out.append("tracking.enabled=false")
    return out


@main.command()
@click.option("--config", "-c", "config_file", metavar="FILE|PRESET", help="YAML config file or preset name.")
@click.option(
    "--set", "-s", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key (repeatable)."
)
@click.option("--env", metavar="ID", help="Shortcut for --set env.id=ID.")
@click.option("--agent", metavar="NAME", help="Shortcut for --set agent.name=NAME.")
@click.option("--seed", type=int, help="Shortcut for --set seed=S.")
@click.option("--total-steps", type=int, help="Shortcut for --set train.total_steps=N.")
@click.option("--resume", metavar="RUN_DIR", help="Continue this run from its newest checkpoint.")
@click.option("--save-buffer", is_flag=True, help="Save the replay buffer with checkpoints (exact resume).")
@click.option("--video-every", type=click.IntRange(min=1), metavar="N", help="Shortcut for --set eval.video_every=N.")
@click.option(
    "--device", metavar="auto|cpu|cuda[:N]", help="Where the learner runs (--set train.device); auto picks a GPU."
)
@click.option(
    "--actors", type=click.IntRange(min=0), metavar="N", help="Collect with N actor processes on Ray (Ape-X style)."
)
@click.option("--address", metavar="ADDR", help="Ray cluster for --actors to join (default: start a local one).")
@click.option("--runs-dir", default="runs", show_default=True, help="Folder that holds run directories.")
@click.option("--run-name", help="Name of the run directory (default: env-agent-seed-time).")
@click.option("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or ./mlflow.db).")
@click.option("--experiment", help="MLflow experiment name.")
@click.option("--no-track", is_flag=True, help="Do not log to MLflow.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on in a terminal).")
@plugin_option
@trust_option
@handle_errors
def train(
    config_file: str | None,
    overrides: tuple[str, ...],
    env: str | None,
    agent: str | None,
    seed: int | None,
    total_steps: int | None,
    resume: str | None,
    save_buffer: bool,
    video_every: int | None,
    device: str | None,
    actors: int | None,
    address: str | None,
    runs_dir: str,
    run_name: str | None,
    tracking_uri: str | None,
    experiment: str | None,
    no_track: bool,
    progress: bool | None,
    plugins: tuple[str, ...],
    trust_plugins: bool,
) -> None:
    """Train an agent; prints where the run, its checkpoints and its MLflow run are."""
    from qagent.config import load_config
    from qagent.training.loop import resume_training, start_training

    show = sys.stderr.isatty() if progress is None else progress
    sets = _config_overrides(overrides, env, agent, seed, total_steps)
    sets += _tracking_overrides(tracking_uri, experiment, no_track)
    if save_buffer:
        sets.append("train.save_buffer=true")
    if video_every:
        sets.append(f"eval.video_every={video_every}")
    if device:
        sets.append(f"train.device={device}")
    if actors is not None:
        sets.append(f"distributed.actors={actors}")
    if address:
        sets.append(f"distributed.address={address}")
    if resume:
        if config_file:
            raise click.UsageError("--resume continues a run with its saved config; use --set to change keys")
        from qagent.training.checkpoint import load_run_checkpoint

        loaded = load_run_checkpoint(resume)
        specs = load_plugins(plugins, loaded[2].get("plugins"), trust=trust_plugins, recorded_by=f"run {resume}")
        result = resume_training(resume, sets, tracking_uri=tracking_uri, plugins=specs, progress=show, loaded=loaded)
    else:
        specs = load_plugins(plugins)
        config = load_config(config_file, sets)
        result = start_training(config, runs_dir=runs_dir, run_name=run_name, plugins=specs, progress=show)
    _print_train_result(result)
    if result.signal is not None:
        from qagent.training.stopping import exit_code

        sys.exit(exit_code(result.signal))  # stopped early: 130 or 143, as shells expect


def _print_train_result(result: Any) -> None:
    status = "interrupted" if result.interrupted else "finished"
    click.echo(
        f"run {status} at step {result.step:,} ({result.episodes:,} episodes, {result.steps_per_second:,.0f} steps/s)"
    )
    if result.last_eval:
        e = result.last_eval
        summary = f"return {e['mean']:.2f} ± {e['std']:.2f} over {e['episodes']} episodes"
        click.echo(f"last evaluation (step {e['step']:,}): {summary}")
    if result.best_eval and result.best_checkpoint:
        b = result.best_eval
        summary = f"return {b['mean']:.2f} ± {b['std']:.2f}, kept in {result.best_checkpoint}"
        click.echo(f"best evaluation (step {b['step']:,}): {summary}")
    click.echo(f"run directory: {result.run_dir}")
    click.echo(f"checkpoint:    {result.checkpoint}")
    click.echo(f"tracking:      {result.tracking}")
    if result.tracking_uri:
        click.echo(f"view it with:  mlflow ui --backend-store-uri {result.tracking_uri}")
    if result.interrupted:
        click.echo(f"resume with:   qagent train --resume {result.run_dir}")
    else:
        click.echo(f"evaluate with: qagent eval {result.run_dir} --episodes 100")


# --------------------------------------------------------------------------- tune


@main.command()
@click.option("--config", "-c", "config_file", metavar="FILE|PRESET", help="Base config: YAML file or preset name.")
@click.option("--space", metavar="FILE|NAME", help="Search space: config keys to distributions (YAML).")
@click.option("--trials", "-n", type=click.IntRange(min=1), help="Trials to run.  [default: 20]")
@click.option(
    "--seeds",
    type=click.IntRange(min=1),
    help="Seeds per trial; a trial scores the mean of their returns.  [default: 1]",
)
@click.option("--concurrent", type=click.IntRange(min=1), help="Trials at a time (default: as the CPUs allow).")
@click.option(
    "--set", "-s", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a base config key (repeatable)."
)
@click.option("--env", metavar="ID", help="Shortcut for --set env.id=ID.")
@click.option("--agent", metavar="NAME", help="Shortcut for --set agent.name=NAME.")
@click.option("--seed", type=int, help="First seed of every trial (trials train seed, seed+1, ...); seeds TPE too.")
@click.option("--total-steps", type=int, help="Shortcut for --set train.total_steps=N.")
@click.option("--no-prune", is_flag=True, help="Train every seed of every trial (no ASHA pruning).")
@click.option(
    "--cpus-per-trial",
    type=click.FloatRange(min=0, min_open=True),
    help="CPUs Ray reserves for each trial.  [default: 1]",
)
@click.option("--cpus", type=click.IntRange(min=1), help="CPUs of the local Ray cluster (default: all).")
@click.option("--address", help="Join this Ray cluster (e.g. auto, on one of its nodes) instead of starting one.")
@click.option("--runs-dir", default="runs", show_default=True, help="Folder that holds the sweep's folder.")
@click.option("--name", help="Name of the sweep's folder (default: tune-env-agent-time).")
@click.option("--resume", metavar="SWEEP_DIR", help="Continue an interrupted sweep.")
@click.option("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or ./mlflow.db).")
@click.option("--experiment", help="MLflow experiment name.")
@click.option("--no-track", is_flag=True, help="Do not log to MLflow.")
@plugin_option
@trust_option
@handle_errors
def tune(
    config_file: str | None,
    space: str | None,
    trials: int | None,
    seeds: int | None,
    concurrent: int | None,
    overrides: tuple[str, ...],
    env: str | None,
    agent: str | None,
    seed: int | None,
    total_steps: int | None,
    no_prune: bool,
    cpus_per_trial: float | None,
    cpus: int | None,
    address: str | None,
    runs_dir: str,
    name: str | None,
    resume: str | None,
    tracking_uri: str | None,
    experiment: str | None,
    no_track: bool,
    plugins: tuple[str, ...],
    trust_plugins: bool,
) -> None:
    """Search hyperparameters on Ray Tune with Optuna's TPE; write the best config as a preset.

    \b
    qagent tune --config cartpole-dqn --space cartpole-dqn --trials 20 --seeds 2
    qagent tune --resume runs/<sweep>

    Each trial trains the config with its sampled values once per seed; its score is the mean
    of the seeds' final greedy evaluations. In MLflow the sweep is a parent run and each trial a
    nested run, with its seeds' training runs nested under it. See docs/scaling.md.
    """
    import ray.tune  # noqa: F401 - without Ray, say which extra to install before doing anything

    from qagent.config import find_preset, load_yaml, resolve_config
    from qagent.errors import ConfigError
    from qagent.training.tune import Sweep, absolute_tracking_uri, default_sweep_name, load_space, run_sweep

    if address and address.startswith("ray://"):
        raise ConfigError(
            "qagent tune cannot run through Ray Client (ray://): the sweep's folder lives where qagent runs",
            hint="run qagent tune on a node of the cluster with --address auto",
        )
    space_file = None
    if resume:
        given = {"--config": config_file, "--space": space, "--set": overrides, "--env": env, "--agent": agent}
        given.update({"--seed": seed, "--total-steps": total_steps, "--seeds": seeds, "--name": name})
        given.update({"--cpus-per-trial": cpus_per_trial, "--concurrent": concurrent})
        given.update({"--tracking-uri": tracking_uri, "--experiment": experiment})
        given.update({"--no-prune": no_prune or None, "--no-track": no_track or None})
        named = [option for option, value in given.items() if value not in (None, ())]
        if named:
            raise click.UsageError(f"--resume continues a sweep as it was started; leave out {', '.join(named)}")
        sweep = Sweep.load(resume)
        load_plugins(plugins, sweep.plugins, trust=trust_plugins, recorded_by=f"sweep {resume}")
        if trials is not None and trials != sweep.trials:
            raise ConfigError(
                f"sweep {resume} was started with {sweep.trials} trials, and Ray Tune cannot add trials to a sweep",
                hint="resume without --trials, or start a new sweep",
            )
        sweep.check()
    else:
        if not space:
            raise click.UsageError("qagent tune needs --space FILE (or --resume SWEEP_DIR)")
        specs = load_plugins(plugins)
        preset = load_yaml(find_preset(config_file)) if config_file else {}
        sets = _config_overrides(overrides, env, agent, seed, total_steps)
        sets += _tracking_overrides(tracking_uri, experiment, no_track)
        base = resolve_config(preset, sets)
        space_file, space_data, _ = load_space(space, preset, sets)
        root = Path(runs_dir) / (name or default_sweep_name(base.env.id, base.agent.name))
        if (root / "sweep.json").exists():
            raise ConfigError(f"{root} holds a sweep already", hint=f"qagent tune --resume {root}, or pass --name")
        sweep = Sweep(
            root=root,
            preset=preset,
            overrides=sets,
            space=space_data,
            trials=trials or 20,
            seeds=seeds or 1,
            seed=base.seed,
            concurrent=concurrent,
            cpus_per_trial=cpus_per_trial or 1.0,
            prune=not no_prune,
            plugins=specs,
            tracking_enabled=base.tracking.enabled,
            tracking_uri=absolute_tracking_uri(base.tracking.uri) if base.tracking.enabled else None,
            experiment=base.tracking.experiment,
        )
    result = run_sweep(sweep, resume=bool(resume), address=address, cpus=cpus, say=click.echo, space_file=space_file)
    _print_sweep_result(result)
    if result.interrupted:
        sys.exit(130)


def _print_sweep_result(result: Any) -> None:
    counts = ", ".join(
        f"{result.count(s)} {s}" for s in ("finished", "pruned", "failed", "interrupted") if result.count(s)
    )
    state = "interrupted" if result.interrupted else "finished"
    click.echo(f"sweep {state}: {len(result.rows)} trials ({counts or 'none run'}) in {result.seconds:,.0f} s")
    if result.best is not None:
        b = result.best
        click.echo(
            f"best trial:    {b['trial']}: return {b['eval_return_mean']:.2f} ± {b['eval_return_std']:.2f} "
            f"over {b['seeds_done']} seed{'s' if b['seeds_done'] != 1 else ''}"
        )
        click.echo(f"best preset:   {result.best_path}")
    else:
        click.echo("best preset:   none (no trial finished all its seeds)")
    click.echo(f"results:       {result.results_csv} (and {result.results_json.name})")
    click.echo(f"tracking:      {result.tracking}")
    if result.tracking_uri:
        click.echo(f"view it with:  mlflow ui --backend-store-uri {result.tracking_uri}")
    if result.interrupted:
        click.echo(f"resume with:   qagent tune --resume {result.root}")
    elif result.best_path is not None:
        click.echo(f"train it with: qagent train --config {result.best_path}")


# --------------------------------------------------------------------------- eval


@main.command("eval")
@click.argument("target", metavar="RUN_DIR|CHECKPOINT|POLICY.onnx")
@click.option("--episodes", "-n", default=10, show_default=True, type=click.IntRange(min=1), help="Episodes to play.")
@click.option(
    "--epsilon",
    type=click.FloatRange(0, 1),
    help="Random-action probability (and random-goal, for h-DQN); 0.05 is the standard Atari protocol, 0 greedy. "
    "[default: the run's eval.epsilon, as its own evaluations used (0.05 in the Atari presets)]",
)
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0), help="Episode j starts from seed+j.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="JSON results [default: RUN_DIR/eval.json].")
@click.option(
    "--video", type=click.Path(dir_okay=False), help="Also record the first episodes to FILE.gif or FILE.mp4."
)
@click.option(
    "--video-episodes", default=1, show_default=True, type=click.IntRange(min=1), help="Episodes in the video."
)
@plugin_option
@trust_option
@handle_errors
def evaluate(
    target: str,
    episodes: int,
    epsilon: float | None,
    seed: int,
    output: str | None,
    video: str | None,
    video_episodes: int,
    plugins: tuple[str, ...],
    trust_plugins: bool,
) -> None:
    """Evaluate a trained agent; prints a table and writes JSON (mean, std, min, max, median, episodes).

    An exported POLICY.onnx is evaluated through qagent.serve, the torch-free runtime a game
    ships with, so its returns can be compared with the checkpoint's.
    """
    from rich.console import Console
    from rich.table import Table

    from qagent.errors import CheckpointError
    from qagent.training.checkpoint import load_run_checkpoint
    from qagent.training.evaluation import evaluate_checkpoint, evaluate_policy_file
    from qagent.training.runs import RunDir

    if target.endswith(".onnx"):
        from qagent.serve import Policy, PolicyLoadError

        try:
            recorded = Policy.load(target).metadata.get("plugins")
        except PolicyLoadError as exc:
            raise CheckpointError(str(exc)) from None
        load_plugins(plugins, recorded, trust=trust_plugins, recorded_by=target)
        result = evaluate_policy_file(target, episodes, seed, epsilon, video=video, video_episodes=video_episodes)
        run = None
    else:
        run, path, checkpoint = load_run_checkpoint(target)
        load_plugins(plugins, checkpoint.get("plugins"), trust=trust_plugins, recorded_by=target)
        result = evaluate_checkpoint(
            str(path), episodes, seed, epsilon, checkpoint=checkpoint, video=video, video_episodes=video_episodes
        )
    summary = result.summary()
    source = "onnx · " if target.endswith(".onnx") else ""
    table = Table(
        title=f"{source}{result.extra['env']} · {result.extra['agent']} · step {result.extra['step']:,}",
        caption=f"protocol: {result.protocol}",
    )
    for column in ("episodes", "mean", "std", "min", "max", "median", "mean length"):
        table.add_column(column, justify="right")
    table.add_row(
        str(summary["episodes"]),
        *(f"{summary[k]:.2f}" for k in ("mean", "std", "min", "max", "median", "mean_length")),
    )
    Console().print(table)
    if output is None and target.endswith(".onnx"):
        output_path = Path(target).with_suffix(".eval.json")
    elif output is None:
        output_path = (run.root if isinstance(run, RunDir) else Path(target).parent) / "eval.json"
    else:
        output_path = Path(output)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    output_path.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    click.echo(f"results written to {output_path}")
    if video:
        click.echo(f"video written to {video}")


# --------------------------------------------------------------------------- export


@main.command()
@click.argument("target", metavar="RUN_DIR|CHECKPOINT|MODEL_URI")
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False), help="ONNX file to write (default: RUN_DIR/policy.onnx)."
)
@click.option("--best", is_flag=True, help="Export the run's best checkpoint (checkpoints/best.pt), not the newest.")
@click.option("--register", metavar="NAME", help="Also log the file to MLflow (ONNX flavor) and register it as NAME.")
@click.option(
    "--alias",
    default="champion",
    show_default=True,
    help="Registry alias for --register (models:/NAME/latest always names the newest version).",
)
@click.option("--tracking-uri", help="MLflow tracking URI for --register and model URIs.")
@plugin_option
@trust_option
@handle_errors
def export(
    target: str,
    output: str | None,
    best: bool,
    register: str | None,
    alias: str,
    tracking_uri: str | None,
    plugins: tuple[str, ...],
    trust_plugins: bool,
) -> None:
    """Export a trained policy to ONNX (checked against torch), or fetch one from MLflow.

    TARGET is a run directory, a checkpoint file, or an MLflow model URI such as
    models:/cartpole-dqn@champion or models:/cartpole-dqn/latest.
    """
    from rich.console import Console

    from qagent.errors import QAgentError
    from qagent.export import export_checkpoint, fetch_from_mlflow, is_model_uri, register_policy

    if register and alias.lower() == "latest":
        raise QAgentError(
            "MLflow reserves the alias 'latest' (models:/NAME/latest already names the newest version)",
            hint="pick another alias, e.g. --alias champion",
        )
    console = Console()
    if is_model_uri(target):
        path, metadata = fetch_from_mlflow(target, output or "policy.onnx", tracking_uri)
        click.echo(f"fetched {target} to {path} ({metadata['agent']} on {metadata['env']['id']})")
        return
    from qagent.training.checkpoint import load_run_checkpoint
    from qagent.training.runs import RunDir

    if best:
        run, _ = RunDir.resolve(target)
        if run is None or not run.best_path.exists():
            from qagent.errors import CheckpointError

            raise CheckpointError(
                f"{target} has no best checkpoint (checkpoints/best.pt)", hint="train with train.keep_best=true"
            )
        target = str(run.best_path)
    loaded = load_run_checkpoint(target)
    run = loaded[0]
    load_plugins(plugins, loaded[2].get("plugins"), trust=trust_plugins, recorded_by=target)
    default = (run.root if run is not None else Path(target).parent) / "policy.onnx"
    report = export_checkpoint(target, output or default, loaded=loaded)
    console.print(_parity_table(report))
    meta = report.metadata
    evaluation = meta["evaluation"]
    click.echo(
        f"wrote {report.path} ({report.size_bytes / 1024:.0f} KiB): {meta['agent']} on {meta['env']['id']}, "
        f"obs {tuple(meta['observation']['shape'])} {meta['observation']['dtype']}, {meta['action']['n']} actions, "
        f"{meta['training']['steps']:,} training steps"
        + (f", last eval {evaluation['mean']:.1f}" if evaluation else "")
    )
    if register:
        run_id = loaded[2].get("mlflow_run_id")
        uri = tracking_uri or (run.read_meta().get("tracking_uri") if run is not None else None)
        version, model_uri = register_policy(report.path, register, alias=alias, tracking_uri=uri, run_id=run_id)
        click.echo(f"registered {model_uri} (version {version})")


def _parity_table(report: Any) -> Any:
    from rich.table import Table

    table = Table(title="parity with torch (onnxruntime, CPU)", title_justify="left")
    for column in ("observations", "batch", "max |Δq|", "max relative", "actions equal", ""):
        table.add_column(column, justify="right")
    for row in report.parity:
        table.add_row(
            row.source,
            str(row.batch),
            f"{row.max_abs_diff:.1e}",
            f"{row.max_rel_diff:.1e}",
            f"{row.actions_equal}/{row.batch}",
            "[green]ok[/]" if row.ok else "[red]FAIL[/]",
        )
    return table


# --------------------------------------------------------------------------- serve


@main.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
    add_help_option=False,
)
@click.pass_context
@handle_errors
def serve(ctx: click.Context) -> None:
    """Serve an exported policy over HTTP (qagent v1 API and the Open Inference Protocol v2).

    Torch-free: only numpy and onnxruntime are loaded. The options are those of
    'python -m qagent.serve'; see 'qagent serve --help'.
    """
    from qagent.serve.__main__ import main as serve_main  # without onnxruntime: handle_errors names the extra

    sys.exit(serve_main(list(ctx.args), prog="qagent serve"))


# --------------------------------------------------------------------------- watch


@main.command()
@click.argument("target", metavar="RUN_DIR|CHECKPOINT|POLICY.onnx|MODEL_URI")
@click.option("--compare", metavar="TARGET", help="A second policy side by side (e.g. an earlier checkpoint).")
@click.option("--env", "env_id", help="Play this env instead of the policy's own (same observations and actions).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8008, show_default=True, type=click.IntRange(0, 65535), help="0: any free port.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**31 - 1), help="Episode j: seed+j.")
@click.option("--fps", default=15.0, show_default=True, type=click.FloatRange(0, 60, min_open=True), help="Speed.")
@click.option("--epsilon", default=0.0, show_default=True, type=click.FloatRange(0, 1), help="Random actions.")
@click.option("--paused", is_flag=True, help="Start paused (step with the page's Step button).")
@click.option("--open", "open_browser", is_flag=True, help="Open the page in the default browser.")
@plugin_option
@trust_option
@handle_errors
def watch(
    target: str,
    compare: str | None,
    env_id: str | None,
    host: str,
    port: int,
    seed: int,
    fps: float,
    epsilon: float,
    paused: bool,
    open_browser: bool,
    plugins: tuple[str, ...],
    trust_plugins: bool,
) -> None:
    """Watch a policy play, live, in a web page: frames, Q-values, goals; pause, step, speed, epsilon, reset.

    TARGET is a run directory or checkpoint (exported to ONNX first), an ONNX file or an MLflow
    model URI. The page is served on 127.0.0.1 unless --host says otherwise.
    """
    from qagent.watch.app import load_policy_plugins
    from qagent.watch.app import watch as run_watch

    targets = [target] + ([compare] if compare else [])
    for item in targets:
        load_plugins(plugins, load_policy_plugins(item), trust=trust_plugins, recorded_by=item)

    def ready(url: str) -> None:
        if open_browser:
            import webbrowser

            webbrowser.open(url)

    run_watch(
        targets,
        env_id=env_id,
        host=host,
        port=port,
        seed=seed,
        fps=fps,
        epsilon=epsilon,
        paused=paused,
        announce=lambda line: click.echo(line, err=False),
        ready=ready,
    )


# --------------------------------------------------------------------------- plot


@main.command()
@click.argument("runs", nargs=-1, required=True, metavar="RUN_DIR...")
@click.option("--output", "-o", default="learning_curves.png", show_default=True, help="PNG file to write.")
@click.option(
    "--window", default=20, show_default=True, type=click.IntRange(min=1), help="Episodes per moving average."
)
@click.option("--title", help="Plot title [default: the run names].")
@handle_errors
def plot(runs: tuple[str, ...], output: str, window: int, title: str | None) -> None:
    """Plot episodic return against env steps for one or more runs, overlaid."""
    from qagent.training.plotting import plot_runs

    click.echo(f"wrote {plot_runs(list(runs), output, window=window, title=title)}")


# --------------------------------------------------------------------------- plugins


@main.group()
def plugins() -> None:
    """Inspect registered plugins."""


@plugins.command("list")
@click.option(
    "--kind",
    type=click.Choice(["env", "agent", "exploration", "network", "potential", "goal-space"]),
    help="Only this registry.",
)
@plugin_option
@handle_errors
def plugins_list(kind: str | None, plugins: tuple[str, ...]) -> None:
    """List every registered env, agent, exploration strategy and network with its source."""
    from rich.console import Console
    from rich.table import Table

    from qagent.plugins.discovery import loaded_plugins
    from qagent.plugins.registries import REGISTRIES

    load_plugins(plugins)
    console = Console()
    for name, registry in REGISTRIES.items():
        if kind and name != kind:
            continue
        table = Table(title=f"{name}s", title_justify="left", show_lines=False)
        table.add_column("name", style="bold", no_wrap=True)
        table.add_column("description", overflow="fold")
        table.add_column("source", overflow="fold")
        for entry in registry:
            table.add_row(entry.name, entry.description, str(entry.source))
        if name == "env":
            table.add_row("<any gymnasium id>", "e.g. CartPole-v1, ALE/Pong-v5, MiniGrid-DoorKey-6x6-v0", "gymnasium")
        console.print(table)
    failed = [p for p in loaded_plugins() if not p.ok]
    for p in failed:
        console.print(f"[red]failed[/]: {p.error}", highlight=False)


# --------------------------------------------------------------------------- config


@main.group()
def config() -> None:
    """Inspect configs and presets."""


@config.command("show")
@click.option("--config", "-c", "config_file", metavar="FILE|PRESET", help="YAML config file or preset name.")
@click.option(
    "--set", "-s", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key (repeatable)."
)
@click.option("--env", metavar="ID", help="Shortcut for --set env.id=ID.")
@click.option("--agent", metavar="NAME", help="Shortcut for --set agent.name=NAME.")
@plugin_option
@handle_errors
def config_show(
    config_file: str | None, overrides: tuple[str, ...], env: str | None, agent: str | None, plugins: tuple[str, ...]
) -> None:
    """Print the resolved config as YAML, each key with its documentation."""
    from qagent.config import documented_yaml, load_config

    load_plugins(plugins)
    resolved = load_config(config_file, _config_overrides(overrides, env, agent, None, None))
    click.echo(documented_yaml(resolved), nl=False)


@config.command("presets")
def config_presets() -> None:
    """List the bundled presets (use them with --config NAME)."""
    from qagent.config import find_preset, list_presets

    for name in list_presets():
        click.echo(f"{name:24s} {find_preset(name)}")


if __name__ == "__main__":  # pragma: no cover
    main()
