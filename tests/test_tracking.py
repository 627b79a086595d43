"""MLflow tracking against a real store in a temporary folder."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient
from test_training import tiny_config

import qagent
from qagent.errors import QAgentError
from qagent.training.loop import resume_training, start_training
from qagent.training.runs import RunDir
from qagent.training.tracking import MLflowTracker, Tracker, make_tracker


def test_a_run_logs_params_metrics_artifacts_and_tags(workdir, mlflow_uri):
    config = tiny_config(
        "train.total_steps=1000",
        "tracking.enabled=true",
        f"tracking.uri={mlflow_uri}",
        "tracking.experiment=tests",
        "seed=5",
    )
    result = start_training(config, run_name="tracked", progress=False)
    client = MlflowClient(mlflow_uri)
    run_id = RunDir(result.run_dir).read_meta()["mlflow_run_id"]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "tracked"
    assert client.get_experiment(run.info.experiment_id).name == "tests"
    params = run.data.params
    assert params["agent.lr"] == str(config.agent.lr) and params["network.hidden_sizes"] == "[32, 32]"
    assert params["env.id"] == "CartPole-v1" and params["seed"] == "5"
    assert len(params) == len(config.flat())
    tags = run.data.tags
    assert tags["qagent.version"] == qagent.__version__ and tags["qagent.seed"] == "5"
    assert tags["qagent.plugins"] == "none" and tags["qagent.config_hash"] == config.hash()
    for key in (
        "train/episode_return",
        "train/episode_length",
        "train/loss",
        "train/q_mean",
        "train/epsilon",
        "train/steps_per_second",
        "eval/return_mean",
        "eval/return_std",
    ):
        assert key in run.data.metrics, key
    returns = client.get_metric_history(run_id, "train/episode_return")
    assert len(returns) == result.episodes
    assert [m.step for m in returns] == sorted(m.step for m in returns) and returns[-1].step <= 1000
    evals = client.get_metric_history(run_id, "eval/return_mean")
    assert [m.step for m in evals] == [512, 1000, 1000]
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"config.yaml", "checkpoints"} <= artifacts
    assert [a.path for a in client.list_artifacts(run_id, "checkpoints")] == ["checkpoints/step-0000001000.pt"]
    assert f"MLflow run {run_id}" in result.tracking and mlflow_uri in result.tracking


def test_resume_continues_the_same_mlflow_run(workdir, mlflow_uri):
    config = tiny_config(
        "train.total_steps=600", "tracking.enabled=true", f"tracking.uri={mlflow_uri}", "tracking.experiment=resume"
    )
    first = start_training(config, run_name="resumed", progress=False)
    run_id = RunDir(first.run_dir).read_meta()["mlflow_run_id"]
    with pytest.warns(UserWarning):
        resume_training(first.run_dir, ["train.total_steps=1200"], progress=False)
    client = MlflowClient(mlflow_uri)
    assert len(client.search_runs([client.get_experiment_by_name("resume").experiment_id])) == 1
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["qagent.resumed_at_step"] == "600"
    assert max(m.step for m in client.get_metric_history(run_id, "train/episode_return")) > 600


def test_store_failure_mid_run_warns_once_and_keeps_going(mlflow_uri):
    tracker = MLflowTracker(mlflow_uri, "failures")
    tracker.start("doomed", {"a": 1}, {})
    MlflowClient(mlflow_uri).delete_run(tracker.run_id)
    tracker.log_metrics({"x": 1.0}, step=1)
    with pytest.warns(UserWarning, match="MLflow logging failed"):
        tracker.flush()
    tracker.log_metrics({"x": 2.0}, step=2)
    tracker.flush()  # silently dropped now: the run directory keeps the records
    tracker.finish()


def test_bad_tracking_uri_is_a_clear_error():
    with pytest.raises(QAgentError, match="cannot open the MLflow tracking store 'sqlit:///typo.db'") as info:
        MLflowTracker("sqlit:///typo.db", "x")
    assert "--no-track" in info.value.hint


def test_disabled_tracking_is_a_no_op():
    tracker = make_tracker(False, None, "x")
    assert type(tracker) is Tracker and tracker.run_id is None and tracker.describe() == "tracking disabled"


def test_mlflow_tracking_uri_environment_variable_is_honoured(tmp_path, mlflow_uri):
    from conftest import TINY, run_qagent

    result = run_qagent(
        "train",
        *TINY,
        "--total-steps",
        "300",
        "--run-name",
        "env-uri",
        "--experiment",
        "from-env",
        cwd=tmp_path,
        env={"MLFLOW_TRACKING_URI": mlflow_uri},
    )
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "mlflow.db").exists()
    client = MlflowClient(mlflow_uri)
    [run] = client.search_runs([client.get_experiment_by_name("from-env").experiment_id])
    assert run.info.run_name == "env-uri" and run.info.status == "FINISHED"
