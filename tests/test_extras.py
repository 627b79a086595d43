"""The base install (no extras) trains and evaluates; commands that need an extra name it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY

# Every optional package of pyproject.toml's extras. A None in sys.modules makes its import
# fail as if it were not installed (and importlib.util.find_spec report it missing).
OPTIONAL = ("onnxruntime", "onnx", "onnxscript", "ale_py", "cv2", "stable_baselines3", "minigrid", "imageio", "pygame")
WITHOUT_EXTRAS = (
    "import sys\n"
    f"for name in {OPTIONAL!r}:\n"
    "    sys.modules[name] = None\n"
    "from qagent.cli import main\n"
    "main(sys.argv[1:])\n"
)


def qagent_without_extras(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("QAGENT_PLUGINS", "MLFLOW_TRACKING_URI")}
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTRAS, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def base_run(tmp_path_factory, exported_cartpole):
    folder = tmp_path_factory.mktemp("base")
    result = qagent_without_extras("train", *TINY, "--total-steps", "600", "--no-track", "--run-name", "b", cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder, exported_cartpole[1].path


def test_the_base_install_trains_and_evaluates(base_run):
    folder, _ = base_run
    assert (folder / "runs/b/checkpoints/step-0000000600.pt").exists()
    result = qagent_without_extras("eval", "runs/b", "-n", "2", cwd=folder)
    assert result.returncode == 0, result.stderr
    assert "CartPole-v1 · dqn · step 600" in result.stdout


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (("export", "runs/b", "-o", "b.onnx"), "export"),
        (("eval", "{onnx}"), "serve"),
        (("serve", "{onnx}"), "serve"),
        (("eval", "runs/b", "--video", "b.gif"), "video"),
        (("train", "--env", "ALE/Pong-v5", "--no-track"), "atari"),
        (("train", "--env", "MiniGrid-Empty-5x5-v0", "--no-track"), "minigrid"),
        (("train", "--agent", "sb3-dqn", "--no-track"), "sb3"),
    ],
)
def test_a_command_that_needs_an_extra_names_it(base_run, args, extra):
    folder, onnx = base_run
    result = qagent_without_extras(*(a.format(onnx=onnx) for a in args), cwd=folder)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"pip install 'qagent[{extra}]'" in result.stderr, result.stderr
