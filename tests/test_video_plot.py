"""Evaluation videos and learning-curve plots, on disk and in MLflow."""

from __future__ import annotations

import imageio.v2 as imageio
import pytest
from mlflow.tracking import MlflowClient
from test_training import tiny_config

from qagent.errors import ConfigError, QAgentError
from qagent.training.loop import start_training
from qagent.training.plotting import plot_runs, smooth
from qagent.training.runs import RunDir


def test_training_records_videos_and_a_learning_curve(workdir, mlflow_uri):
    config = tiny_config(
        "train.total_steps=1000",
        "eval.video_every=500",
        "tracking.enabled=true",
        f"tracking.uri={mlflow_uri}",
        "tracking.experiment=videos",
    )
    result = start_training(config, run_name="video", progress=False)
    videos = sorted((result.run_dir / "videos").iterdir())
    assert [v.name for v in videos] == ["step-0000000512.gif", "step-0000001000.gif"]
    frames = imageio.mimread(videos[-1])
    assert frames[0].shape == (400, 600, 3)  # CartPole's own rendering, not the observation
    curve = result.run_dir / "learning_curve.png"
    assert curve.exists() and curve.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    run_id = RunDir(result.run_dir).read_meta()["mlflow_run_id"]
    client = MlflowClient(mlflow_uri)
    assert {a.path for a in client.list_artifacts(run_id, "videos")} == {f"videos/{v.name}" for v in videos}
    assert "learning_curve.png" in {a.path for a in client.list_artifacts(run_id)}


def test_plot_overlays_runs(workdir):
    a = start_training(tiny_config("train.total_steps=600"), run_name="a", progress=False)
    b = start_training(tiny_config("train.total_steps=600", "seed=1"), run_name="b", progress=False)
    out = plot_runs([a.run_dir, b.run_dir], workdir / "both.png", window=5, title="two runs")
    assert out.stat().st_size > 10_000
    with pytest.raises(QAgentError, match="no run directory"):
        plot_runs([workdir / "missing"], workdir / "x.png")
    (workdir / "empty").mkdir()
    with pytest.raises(QAgentError, match="no episodes or evaluations"):
        plot_runs([workdir / "empty"], workdir / "x.png")


def test_smoothing_is_a_trailing_mean():
    import numpy as np

    assert smooth(np.array([1.0, 2.0, 3.0, 4.0]), 2).tolist() == [1.0, 1.5, 2.5, 3.5]
    assert smooth(np.array([5.0]), 10).tolist() == [5.0]


def test_video_paths_must_be_gif_or_mp4(tmp_path):
    from qagent.training.video import check_video_path

    with pytest.raises(ConfigError, match=r"must end in \.gif or \.mp4"):
        check_video_path(tmp_path / "clip.avi")
