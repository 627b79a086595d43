"""``qagent tune``: search spaces checked before anything runs; sweeps on Ray Tune nested in MLflow; resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, TINY_LOOP, loopback_only, one_error_line, run_qagent, run_qagent_on_ray

from qagent.config import find_preset, load_config, load_yaml, resolve_config
from qagent.errors import CheckpointError, ConfigError
from qagent.training.tune import Sweep, absolute_tracking_uri, load_space, parse_space

# Four trials of a few hundred CartPole steps each, with a two-episode final evaluation.
TINY_SWEEP = (
    *TINY_LOOP,
    "--set",
    "eval.every=null",
    "--set",
    "eval.final_episodes=2",
    "--set",
    "eval.num_envs=2",
    "--set",
    "train.checkpoint_every=null",
    "--total-steps",
    "400",
)
SPACE = """\
agent.lr: {loguniform: [1.0e-4, 3.0e-3]}
agent.gamma: {uniform: [0.9, 0.999]}
network.hidden_sizes: {choice: [[16], [32, 32]]}
"""


def write_space(folder: Path, text: str = SPACE) -> Path:
    path = folder / "space.yaml"
    path.write_text(text)
    return path


def mlflow_runs(uri: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("qagent")
    return client.search_runs([experiment.experiment_id], max_results=1000)


def children(runs: list, parent_id: str) -> list:
    return [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent_id]


def parse_and_keep(text: str) -> dict:
    import yaml

    data = yaml.safe_load(text)
    parse_space(data)
    return data


# --------------------------------------------------------------------------- the space file, without Ray


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "agent.lr: {logunifrom: [1.0e-4, 1.0e-3]}",
            "unknown distribution 'logunifrom' for 'agent.lr'; did you mean 'loguniform'?",
        ),
        ("agent.lr: {loguniform: [1.0e-4]}", "'agent.lr': loguniform takes [low, high], got 1 value(s)"),
        ("agent.batch_size: {qrandint: [32, 128]}", "qrandint takes [low, high, q], got 2 value(s)"),
        ("agent.lrr: {loguniform: [1.0e-4, 1.0e-3]}", "unknown config key 'agent.lrr'; did you mean 'agent.lr'?"),
        (
            "agent.gamma: {uniform: [0.9, 1.5]}",
            "agent.gamma = uniform(0.9, 1.5) can draw 1.5, which the config refuses",
        ),
        ("agent.batch_size: {uniform: [32, 128]}", "can draw 67.52, which the config refuses"),
        ("agent.batch_size: {randint: [32.5, 64]}", "'agent.batch_size': randint's low must be an integer, not 32.5"),
        ("agent.lr: {loguniform: [1e-4, 1.0e-3]}", "loguniform's low must be a number, not '1e-4'"),
        ("agent.lr: {loguniform: [0, 1.0e-3]}", "loguniform needs 0 < low, got 0"),
        ("agent.lr: {uniform: [1.0e-3, 1.0e-4]}", "uniform needs low < high"),
        ("agent.batch_size: {qrandint: [32, 100, 32]}", "needs a step q > 0 that divides high - low"),
        ("agent.batch_size: {choice: []}", "choice needs at least one value"),
        ("agent.batch_size: {choice: [32, 32]}", "choice lists a value twice"),
        ("network.hidden_sizes: {choice: [[64], big]}", "can draw big, which the config refuses"),
        ("agent.lr: 0.001", "'agent.lr' must map to one distribution"),
        ("agent.lr: {uniform: [0.1, 0.2], loguniform: [0.1, 0.2]}", "'agent.lr' must map to one distribution"),
        ("seed: {randint: [0, 10]}", "'seed' cannot be searched"),
        ("- agent.lr", "must be a mapping of config keys to distributions, not a list"),
        ("", "is empty"),
        ("agent.lr: {loguniform: [1.0e-4, 1.0e-3", "is not valid YAML"),
    ],
)
def test_a_bad_space_file_is_one_clear_config_error(tmp_path, text, message):
    path = write_space(tmp_path, text + "\n")
    with pytest.raises(ConfigError) as caught:
        load_space(str(path), {}, [*TINY_LOOP[1::2]])
    assert message in caught.value.message
    assert "\n" not in caught.value.message


def test_hints_say_how_to_fix_the_common_mistakes(tmp_path):
    cases = {
        "agent.lr: {loguniform: [1e-4, 1.0e-3]}": "write 1.0e-4",
        "agent.batch_size: {uniform: [32, 128]}": "use randint or qrandint",
        "agent.lr: 0.001": "--set agent.lr=0.001",
        "agent.lr: {logunifrom: [1.0e-4, 1.0e-3]}": "distributions: uniform, loguniform, quniform",
    }
    for text, hint in cases.items():
        with pytest.raises(ConfigError) as caught:
            load_space(str(write_space(tmp_path, text)), {}, [])
        assert hint in (caught.value.hint or ""), text


def test_space_keys_are_checked_against_the_base_config(tmp_path):
    path = write_space(tmp_path, "agent.v_min: {uniform: [-10.0, 0.0]}\n")
    with pytest.raises(ConfigError, match="unknown config key 'agent.v_min'"):
        load_space(str(path), {}, [])  # dqn has no v_min ...
    load_space(str(path), {}, ["agent.name=c51"])  # ... c51 has


def test_the_bundled_space_fits_its_preset_and_becomes_optuna_distributions():
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    path, data, dims = load_space("cartpole-dqn", load_yaml(find_preset("cartpole-dqn")), [])
    assert path == ROOT / "configs" / "spaces" / "cartpole-dqn.yaml" and set(data) == {d.key for d in dims}
    converted = OptunaSearch.convert_search_space({d.key: d.domain() for d in dims})
    assert converted["agent.lr"] == optuna.distributions.FloatDistribution(1e-4, 3e-3, log=True)
    assert converted["replay.n_step"] == optuna.distributions.IntDistribution(1, 5)  # randint's high is excluded
    assert converted["agent.batch_size"] == optuna.distributions.CategoricalDistribution([64, 128, 256])
    sizes = next(d for d in dims if d.key == "network.hidden_sizes")
    assert converted["network.hidden_sizes"].choices == ("[64, 64]", "[128, 128]", "[256, 256]")  # lists travel as YAML
    assert [sizes.decode(c) for c in converted["network.hidden_sizes"].choices] == [[64, 64], [128, 128], [256, 256]]


def test_a_sweep_record_is_data_and_checked(tmp_path):
    root = tmp_path / "sweep"
    root.mkdir()
    with pytest.raises(CheckpointError, match="not a sweep folder"):
        Sweep.load(root)
    sweep = Sweep(root=root, preset={}, overrides=["train.total_steps=5000"], space=parse_and_keep(SPACE), trials=3)
    sweep.save(status="running")
    again = Sweep.load(root)
    assert again.to_dict() == sweep.to_dict()
    assert again.config({"agent.lr": 1e-3}, seed=4).agent.lr == 1e-3 and again.config({}, seed=4).seed == 4
    record = json.loads((root / "sweep.json").read_text())
    (root / "sweep.json").write_text(json.dumps({**record, "trials": "3"}))
    with pytest.raises(CheckpointError, match="bad 'trials'"):
        Sweep.load(root)


def test_relative_tracking_stores_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert absolute_tracking_uri("sqlite:///mlflow.db") == f"sqlite:///{tmp_path}/mlflow.db"
    assert absolute_tracking_uri("sqlite:////abs/mlflow.db") == "sqlite:////abs/mlflow.db"
    assert absolute_tracking_uri("mlruns") == str(tmp_path / "mlruns")
    assert absolute_tracking_uri("http://localhost:5000") == "http://localhost:5000"


def test_the_cli_refuses_a_bad_space_before_starting_ray(tmp_path):
    write_space(tmp_path, "agent.lrr: {loguniform: [1.0e-4, 1.0e-3]}\n")
    result = run_qagent("tune", "--space", "space.yaml", "--trials", "2", "--no-track", cwd=tmp_path)
    assert "unknown config key 'agent.lrr'; did you mean 'agent.lr'?" in one_error_line(result)
    assert not (tmp_path / "runs").exists()
    usage = run_qagent("tune", "--resume", "runs/x", "--space", "space.yaml", cwd=tmp_path)
    assert usage.returncode == 2 and "leave out --space" in usage.stderr


# --------------------------------------------------------------------------- sweeps on Ray


def test_a_sweep_of_four_trials_nests_them_in_mlflow_and_writes_a_best_preset(tmp_path):
    write_space(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    args = ("--space", "space.yaml", "--trials", "4", "--seeds", "2", "--concurrent", "2", "--name", "sw")
    result = run_qagent_on_ray("tune", *args, "--tracking-uri", uri, *TINY_SWEEP, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "sweep finished: 4 trials (" in result.stdout and "Traceback" not in result.stderr
    assert "best preset:   runs/sw/best.yaml" in result.stdout

    runs = mlflow_runs(uri)
    [parent] = [r for r in runs if r.info.run_name == "sw"]
    assert "mlflow.parentRunId" not in parent.data.tags and parent.info.status == "FINISHED"
    assert parent.data.params["space.agent.lr"] == "loguniform(0.0001, 0.003)"
    trials = children(runs, parent.info.run_id)
    assert sorted(r.info.run_name for r in trials) == ["trial-001", "trial-002", "trial-003", "trial-004"]
    table = json.loads((tmp_path / "runs/sw/results.json").read_text())
    rows = {row["trial"]: row for row in table["trials"]}
    for trial in trials:
        row = rows[trial.info.run_name]
        assert 1e-4 <= row["agent.lr"] <= 3e-3 and 0.9 <= row["agent.gamma"] <= 0.999
        assert row["network.hidden_sizes"] in ([16], [32, 32])
        assert float(trial.data.params["agent.lr"]) == pytest.approx(row["agent.lr"])
        # each seed's training run is nested under its trial; ASHA may stop a trial after one seed
        assert trial.info.status == "FINISHED" and row["status"] in ("finished", "pruned")
        assert row["seeds_done"] == (2 if row["status"] == "finished" else 1)
        assert (trial.data.tags.get("qagent.pruned") == "true") == (row["status"] == "pruned")
        seeds = sorted(children(runs, trial.info.run_id), key=lambda r: r.data.params["seed"])
        assert [r.data.params["seed"] for r in seeds] == ["0", "1"][: row["seeds_done"]]
        assert all(r.info.status == "FINISHED" for r in seeds)
        assert [r.data.metrics["eval/return_mean"] for r in seeds] == row["seed_returns"]
        assert trial.data.metrics["eval/return_mean"] == pytest.approx(row["eval_return_mean"])
        assert row["eval_return_mean"] == pytest.approx(sum(row["seed_returns"]) / row["seeds_done"])
    assert len(runs) == 1 + 4 + sum(row["seeds_done"] for row in rows.values())

    best = table["best"]
    assert best["eval_return_mean"] == max(r["eval_return_mean"] for r in rows.values() if r["status"] == "finished")
    assert parent.data.metrics["best/return_mean"] == best["eval_return_mean"]
    assert parent.data.tags["qagent.best_trial"] == best["trial"]
    config = load_config(str(tmp_path / "runs/sw/best.yaml"))  # what `qagent train --config` does
    assert config.agent.lr == best["agent.lr"] and config.agent.gamma == best["agent.gamma"]
    assert config.network.hidden_sizes == best["network.hidden_sizes"] and config.train.total_steps == 400
    assert config == resolve_config(load_yaml(tmp_path / "runs/sw/best.yaml"))
    csv_lines = (tmp_path / "runs/sw/results.csv").read_text().splitlines()
    assert csv_lines[0].startswith("trial,status,eval_return_mean,eval_return_std,seeds_done,agent.lr,")
    assert len(csv_lines) == 5


def start_on_ray(*args: str, cwd: Path) -> subprocess.Popen:
    """``run_qagent_on_ray``, without waiting: the test signals the sweep while it runs."""
    env = {k: v for k, v in os.environ.items() if k not in ("QAGENT_PLUGINS", "MLFLOW_TRACKING_URI")}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    command = loopback_only([sys.executable, "-m", "qagent", *args])
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_an_interrupted_sweep_resumes_without_redoing_finished_trials(tmp_path):
    write_space(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    args = ("--space", "space.yaml", "--trials", "3", "--seeds", "2", "--concurrent", "1", "--no-prune")
    sweep = start_on_ray("tune", *args, "--name", "sw", "--tracking-uri", uri, *TINY_SWEEP, cwd=tmp_path)
    second = tmp_path / "runs/sw/trials/trial-002-seed-0"  # trial-001 is done when trial-002 starts
    deadline = time.monotonic() + 240
    while not second.exists() and sweep.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    sweep.send_signal(signal.SIGINT)  # Ctrl-C: Tune saves its state and stops the running trial
    out, err = sweep.communicate(timeout=120)
    assert sweep.returncode == 130, out + err
    assert "sweep interrupted" in out and "resume with:   qagent tune --resume runs/sw" in out
    first = json.loads((tmp_path / "runs/sw/results.json").read_text())
    assert [r["status"] for r in first["trials"]] == ["finished", "interrupted"]  # trial-001, trial-002
    assert json.loads((tmp_path / "runs/sw/sweep.json").read_text())["status"] == "interrupted"
    created = {p.name: (p / "run.json").read_text() for p in (tmp_path / "runs/sw/trials").glob("trial-001-*")}
    assert len(created) == 2

    refused = run_qagent("tune", "--resume", "runs/sw", "--trials", "5", cwd=tmp_path)
    assert "was started with 3 trials" in one_error_line(refused)
    resumed = run_qagent_on_ray("tune", "--resume", "runs/sw", cwd=tmp_path, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "sweep finished: 3 trials (3 finished)" in resumed.stdout
    assert not [line for line in resumed.stdout.splitlines() if line.startswith("trial-001 ")]  # not trained again
    assert {p.name: (p / "run.json").read_text() for p in (tmp_path / "runs/sw/trials").glob("trial-001-*")} == created

    runs = mlflow_runs(uri)
    [parent] = [r for r in runs if r.info.run_name == "sw"]
    trials = children(runs, parent.info.run_id)
    assert sorted(r.info.run_name for r in trials) == ["trial-001", "trial-002", "trial-003"]  # trial-002 reopened
    rows = {row["trial"]: row for row in json.loads((tmp_path / "runs/sw/results.json").read_text())["trials"]}
    assert rows["trial-001"] == first["trials"][0]
    for trial in trials:
        assert rows[trial.info.run_name]["status"] == "finished" and trial.info.status == "FINISHED"
        seeds = [r for r in children(runs, trial.info.run_id) if r.info.status == "FINISHED"]
        assert sorted(r.data.params["seed"] for r in seeds) == ["0", "1"], trial.info.run_name
    assert not [r.info.run_name for r in runs if r.info.status == "RUNNING"]
    assert parent.info.status == "FINISHED"
