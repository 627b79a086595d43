"""Shared fixtures: isolated registries, temporary run folders, a real MLflow store, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from qagent.plugins import discovery
from qagent.plugins.registries import REGISTRIES
from qagent.plugins.registry import load_failures

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_PLUGIN = ROOT / "examples" / "plugins" / "example_plugin.py"

discovery.load_builtins()


@pytest.fixture(autouse=True)
def isolated_registries(monkeypatch: pytest.MonkeyPatch):
    """Each test sees the built-ins only, and whatever it registers disappears afterwards."""
    monkeypatch.delenv("QAGENT_PLUGINS", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    saved = {kind: dict(reg._entries) for kind, reg in REGISTRIES.items()}
    loaded = dict(discovery._loaded)
    failures = list(load_failures)
    yield
    for kind, reg in REGISTRIES.items():
        reg._entries.clear()
        reg._entries.update(saved[kind])
    discovery._loaded.clear()
    discovery._loaded.update(loaded)
    load_failures[:] = failures


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run the test inside an empty temporary folder (runs/ and mlflow.db land there)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real MLflow SQLite store in a temporary folder, shared by the session (migrations are slow)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def run_qagent(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run ``python -m qagent ARGS`` as a user would, capturing its output."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("QAGENT_PLUGINS", "MLFLOW_TRACKING_URI")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "qagent", *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The single ``error:`` line of a command that failed as a user error (exit 2, no traceback)."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def train_and_export(tmp_path: Path, args: list[str], total_steps: int, name: str) -> Path:
    """Train through the CLI as ``runs/NAME`` and export it to ``NAME.onnx`` (both must succeed)."""
    train = run_qagent(
        "train", *args, "--total-steps", str(total_steps), "--no-track", "--run-name", name, cwd=tmp_path
    )
    assert train.returncode == 0, train.stderr
    exported = run_qagent("export", f"runs/{name}", "-o", f"{name}.onnx", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert "FAIL" not in exported.stdout and "256/256" in exported.stdout
    return tmp_path / f"{name}.onnx"


# Settings that make a CartPole run finish in seconds (TINY_LOOP leaves exploration alone).
TINY_LOOP = (
    "--set",
    "agent.learning_starts=100",
    "--set",
    "agent.train_freq=16",
    "--set",
    "agent.gradient_steps=4",
    "--set",
    "agent.batch_size=32",
    "--set",
    "network.hidden_sizes=[32,32]",
    "--set",
    "eval.every=500",
    "--set",
    "eval.episodes=2",
    "--set",
    "eval.final_episodes=3",
)
TINY = (*TINY_LOOP, "--set", "exploration.decay_steps=500")


@pytest.fixture(scope="session")
def exported_cartpole(tmp_path_factory):
    """A briefly trained CartPole DQN run and its ONNX export: ``(TrainResult, ExportReport)``."""
    from qagent.config import resolve_config
    from qagent.export import export_checkpoint
    from qagent.training.loop import start_training

    folder = tmp_path_factory.mktemp("export")
    sets = [TINY[i + 1] for i in range(0, len(TINY), 2)]
    config = resolve_config({}, [*sets, "tracking.enabled=false", "train.total_steps=1500", "seed=2"])
    result = start_training(config, runs_dir=folder / "runs", run_name="cartpole", progress=False)
    report = export_checkpoint(result.run_dir, folder / "cartpole.onnx")
    return result, report


def loopback_only(command: list[str]) -> list[str]:
    """``command`` inside a private network namespace where only loopback exists, when we can make one.

    On machines whose hosts advertise a routable interface, Ray binds to it even when told
    127.0.0.1; in a namespace with nothing but ``lo`` it uses 127.0.0.1, so a test's cluster
    talks to nothing else. Without root or ``unshare`` the command runs as it is.
    """
    import shlex
    import shutil

    if os.name != "posix" or os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        return command
    return ["unshare", "-n", "--", "sh", "-c", "ip link set lo up && exec " + shlex.join(command)]


def run_qagent_on_ray(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """``run_qagent`` for commands that start a local Ray cluster (loopback only, usage stats off)."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("QAGENT_PLUGINS", "MLFLOW_TRACKING_URI")}
    full_env.update({"RAY_USAGE_STATS_ENABLED": "0", **(env or {})})
    return subprocess.run(
        loopback_only([sys.executable, "-m", "qagent", *args]),
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
