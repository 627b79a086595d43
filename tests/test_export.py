"""ONNX export: parity with torch, metadata, evaluation through qagent.serve, MLflow registry."""

from __future__ import annotations

import json
import math

import mlflow
import mlflow.pyfunc
import numpy as np
import onnx
import pytest
import torch
from conftest import EXAMPLE_PLUGIN, TINY, run_qagent
from mlflow.tracking import MlflowClient
from test_training import tiny_config

from qagent.agents.policy import q_network_exportable
from qagent.export import check_parity, export_checkpoint, real_observations
from qagent.serve import Policy
from qagent.serve import metadata as md
from qagent.training.checkpoint import load_checkpoint
from qagent.training.evaluation import evaluate_checkpoint, evaluate_policy_file
from qagent.training.loop import start_training


@pytest.fixture
def trained(exported_cartpole):
    return exported_cartpole


def test_export_passes_parity_on_real_and_random_batches(trained):
    _, report = trained
    assert [(row.source, row.batch) for row in report.parity] == [
        ("env", 1),
        ("env", 256),
        ("random", 1),
        ("random", 256),
    ]
    for row in report.parity:
        assert row.ok and row.max_rel_diff <= 1e-5 and row.actions_equal == row.batch


def test_graph_has_a_dynamic_batch_axis_and_both_outputs(trained):
    _, report = trained
    model = onnx.load(str(report.path))
    [graph_input] = model.graph.input
    dims = graph_input.type.tensor_type.shape.dim
    assert graph_input.name == "obs" and dims[0].dim_param and [d.dim_value for d in dims[1:]] == [4]
    outputs = {o.name: o.type.tensor_type.elem_type for o in model.graph.output}
    assert outputs == {"q_values": onnx.TensorProto.FLOAT, "action": onnx.TensorProto.INT64}
    assert "ArgMax" in {node.op_type for node in model.graph.node}


def test_metadata_round_trip(trained):
    result, report = trained
    policy = Policy.load(report.path)
    meta = policy.metadata
    assert meta == json.loads(md.dumps(report.metadata))
    checkpoint = load_checkpoint(result.checkpoint)
    assert meta["format"] == "qagent-policy" and meta["agent"] == "dqn" and meta["network"] == "mlp"
    assert meta["env"] == {"id": "CartPole-v1", "kwargs": {}, "max_episode_steps": None}
    assert meta["observation"]["shape"] == [4] and meta["observation"]["dtype"] == "float32"
    low = md.decode_bound(meta["observation"]["low"], (4,))
    assert low[0] == pytest.approx(-4.8) and math.isinf(low[1]) and low[1] < 0
    assert meta["action"] == {"space": "Discrete", "n": 2, "meanings": None}
    assert meta["preprocessing"] == {"frame_stack": None}
    assert meta["training"]["steps"] == 1500 and meta["training"]["updates"] == checkpoint["agent"]["updates"]
    assert meta["evaluation"]["mean"] == checkpoint["last_eval"]["mean"]
    assert meta["config_hash"] == tiny_config("train.total_steps=1500", "seed=2").hash()
    assert policy.observation_shape == (4,) and policy.n_actions == 2


def test_onnx_and_checkpoint_evaluate_to_the_same_returns(trained):
    result, report = trained
    from_onnx = evaluate_policy_file(report.path, episodes=20, seed=7)
    from_checkpoint = evaluate_checkpoint(str(result.run_dir), episodes=20, seed=7)
    assert from_onnx.returns == from_checkpoint.returns


def test_parity_check_catches_a_different_network(trained, tmp_path):
    result, report = trained
    torch.manual_seed(123)
    other = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    env_obs = np.random.default_rng(0).standard_normal((256, 4)).astype(np.float32)
    rows = check_parity(q_network_exportable(other), report.path, {"env": env_obs})
    assert not all(row.ok for row in rows)


def test_discrete_observations_export_and_serve(tmp_path):
    from qagent.plugins.discovery import load_plugins

    load_plugins([str(EXAMPLE_PLUGIN)], ambient=False)
    config = tiny_config("env.id=corridor", "train.total_steps=600", "network.hidden_sizes=[16]")
    result = start_training(config, runs_dir=tmp_path / "runs", run_name="corridor", progress=False)
    report = export_checkpoint(result.run_dir, tmp_path / "corridor.onnx")
    policy = Policy.load(report.path)
    assert policy.metadata["observation"] == {"space": "Discrete", "shape": [], "dtype": "int64", "n": 8}
    assert policy.act(3) in (0, 1) and policy.act(np.arange(8)).shape == (8,)
    assert policy.metadata["plugins"] == []  # the plugin was loaded in-process here, not recorded by the CLI


def test_cli_export_register_and_fetch_from_the_registry(tmp_path, mlflow_uri):
    train = run_qagent(
        "train",
        *TINY,
        "--total-steps",
        "600",
        "--run-name",
        "reg",
        "--tracking-uri",
        mlflow_uri,
        "--experiment",
        "export-tests",
        cwd=tmp_path,
    )
    assert train.returncode == 0, train.stderr
    exported = run_qagent("export", "runs/reg", "--register", "cartpole-test", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert "parity with torch" in exported.stdout and "FAIL" not in exported.stdout
    assert "wrote runs/reg/policy.onnx" in exported.stdout
    assert "registered models:/cartpole-test@champion (version 1)" in exported.stdout
    client = MlflowClient(mlflow_uri)
    version = client.get_model_version_by_alias("cartpole-test", "champion")
    run = client.get_run(version.run_id)
    assert run.info.run_name == "reg"  # logged to the run that trained it

    # MLflow's own serving path: the pyfunc loader (what `mlflow models serve` answers with)
    mlflow.set_tracking_uri(mlflow_uri)
    model = mlflow.pyfunc.load_model("models:/cartpole-test@champion")
    inputs = model.metadata.get_input_schema().inputs
    assert [(spec.name, spec.type, spec.shape) for spec in inputs] == [("obs", np.dtype("float32"), (-1, 4))]
    obs = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32)
    served = Policy.load(tmp_path / "runs/reg/policy.onnx")
    predicted = model.predict(obs)
    np.testing.assert_array_equal(predicted["action"], served.act(obs))
    np.testing.assert_allclose(predicted["q_values"], served.q_values(obs), rtol=1e-6)
    with pytest.raises(mlflow.exceptions.MlflowException):  # the signature checks requests
        model.predict(np.zeros((2, 5), np.float32))

    fetched = run_qagent(
        "export", "models:/cartpole-test/latest", "-o", "fetched.onnx", "--tracking-uri", mlflow_uri, cwd=tmp_path
    )
    assert fetched.returncode == 0, fetched.stderr
    assert Policy.load(tmp_path / "fetched.onnx").metadata == Policy.load(tmp_path / "runs/reg/policy.onnx").metadata
    evaluated = run_qagent("eval", "fetched.onnx", "-n", "3", cwd=tmp_path)
    assert evaluated.returncode == 0 and "onnx · CartPole-v1 · dqn" in evaluated.stdout
    assert json.loads((tmp_path / "fetched.eval.json").read_text())["episodes"] == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("export", "runs/missing"), "no run directory or checkpoint"),
        (("export", "runs/missing", "--register", "x", "--alias", "latest"), "MLflow reserves the alias 'latest'"),
        (
            ("export", "models:/no-such-model@latest", "--tracking-uri", "sqlite:///registry.db"),
            "cannot fetch models:/no-such-model@latest",
        ),
        (("eval", "missing.onnx"), "no policy file at missing.onnx"),
        (("eval", "not-onnx.onnx"), "is not a loadable ONNX model"),
    ],
)
def test_export_errors(tmp_path, args, message):
    (tmp_path / "not-onnx.onnx").write_text("hello")
    result = run_qagent(*args, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert message in result.stderr


def test_real_observations_cross_episode_boundaries():
    import gymnasium as gym

    env = gym.make("CartPole-v1")
    obs = real_observations(env, 300)
    assert obs.shape == (300, 4) and obs.dtype == np.float32


def test_eval_defaults_to_the_runs_own_protocol_for_checkpoint_and_onnx_file(tmp_path):
    """Without --epsilon, `qagent eval` uses the run's eval.epsilon (the Atari presets' standard protocol), so its
    figures compare with the run's own evaluations, and an exported file carries that protocol with it."""
    trained = run_qagent(
        "train", *TINY, "--total-steps", "600", "--no-track", "--run-name", "p", "--set", "eval.epsilon=0.3",
        cwd=tmp_path,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    assert run_qagent("export", "runs/p", "-o", "p.onnx", cwd=tmp_path).returncode == 0
    for target, output in (("runs/p", "runs/p/eval.json"), ("p.onnx", "p.eval.json")):
        recorded = run_qagent("eval", target, "-n", "4", cwd=tmp_path)
        assert recorded.returncode == 0, recorded.stderr
        assert "protocol: ε=0.3" in recorded.stdout
        assert json.loads((tmp_path / output).read_text())["epsilon"] == 0.3
        greedy = run_qagent("eval", target, "-n", "4", "--epsilon", "0", cwd=tmp_path)
        assert "protocol: greedy (ε=0)" in greedy.stdout
        assert json.loads((tmp_path / output).read_text())["epsilon"] == 0.0
