"""Runs survive kills: records are atomic and read tolerantly, every kept checkpoint stays
resumable, MLflow's history is complete and free of duplicates, and a stopped run ends in a
final status with the exit code a shell expects."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TINY
from mlflow.tracking import MlflowClient

from qagent.training.runs import RunDir

KILL_RUN = (
    *TINY,
    "--set",
    "train.checkpoint_every=400",
    "--set",
    "train.keep_checkpoints=2",
    "--set",
    "eval.every=500",
    "--total-steps",
    "4000",
    "--save-buffer",
    "--no-progress",
)


STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def no_process_left_behind():
    yield
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def qagent_process(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("QAGENT_PLUGINS", "MLFLOW_TRACKING_URI")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "qagent", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    STARTED.append(proc)
    return proc


def wait_for(condition, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def mlflow_points(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in MlflowClient(uri).get_metric_history(run_id, key))


def test_kill_9_at_random_points_resumes_to_a_complete_history(tmp_path, mlflow_uri):
    tracking = ["--tracking-uri", mlflow_uri, "--experiment", "kill-9"]
    straight = qagent_process(["train", *KILL_RUN, *tracking, "--run-name", "straight"], tmp_path)
    assert straight.wait(timeout=300) == 0, straight.communicate()[1]

    run = RunDir(tmp_path / "runs" / "killed")
    proc = qagent_process(["train", *KILL_RUN, *tracking, "--run-name", "killed"], tmp_path)
    wait_for(lambda: run.latest_checkpoint() is not None, proc)  # from then on, any kill is resumable
    rng = random.Random(11)
    kills = 0
    while proc.poll() is None and kills < 6:
        time.sleep(rng.uniform(0.0, 2.5))
        if proc.poll() is not None:
            break
        proc.kill()  # SIGKILL: no handler runs
        proc.wait()
        kills += 1
        if kills == 2:
            # What a kill inside the records rewrite or an append leaves behind: a torn last line
            # and the temporary file of the rewrite (the rename had not happened).
            with open(run.evaluations_path, "a") as f:
                f.write('{"step": 99')
            (run.root / ".episodes.csv.tmp").write_text("step,return\n12,")
            (run.checkpoint_dir / ".step-0000009999.pt.tmp").write_bytes(b"PK torn")
        proc = qagent_process(["train", "--resume", str(run.root), "--no-progress"], tmp_path)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert kills >= 3, "the run ended before it was killed often enough to test anything"

    meta = run.read_meta()
    assert meta["status"] == "finished" and meta["step"] == 4000
    assert not list(run.root.glob(".*.tmp")) and not list(run.checkpoint_dir.glob(".*.tmp"))
    client = MlflowClient(mlflow_uri)
    assert client.get_run(meta["mlflow_run_id"]).info.status == "FINISHED"

    # With the buffer saved the resumed run is the straight one, record for record ...
    reference = RunDir(tmp_path / "runs" / "straight")
    assert run.episodes() == reference.episodes() and len(run.episodes()) > 20
    assert [(e["step"], e["mean"], e["final"]) for e in run.evaluations()] == [
        (e["step"], e["mean"], e["final"]) for e in reference.evaluations()
    ]
    # ... and MLflow holds every episode and evaluation exactly once.
    ref_id = reference.read_meta()["mlflow_run_id"]
    for key in ("train/episode_return", "train/episode_length", "eval/return_mean", "train/loss"):
        assert mlflow_points(mlflow_uri, meta["mlflow_run_id"], key) == mlflow_points(mlflow_uri, ref_id, key), key
    episode_points = mlflow_points(mlflow_uri, meta["mlflow_run_id"], "train/episode_return")
    assert episode_points == [(step, ret) for step, ret, _ in run.episodes()]
    assert [step for step, _ in mlflow_points(mlflow_uri, meta["mlflow_run_id"], "eval/return_mean")] == [
        e["step"] for e in run.evaluations()
    ]


def test_records_are_read_tolerantly_and_rewritten_atomically(tmp_path):
    run = RunDir(tmp_path)
    run.append_episodes([(10, 1.0, 10), (20, 2.0, 10)])
    run.append_evaluation({"step": 10, "mean": 1.0})
    run.append_evaluation({"step": 20, "mean": 2.0})
    with open(run.episodes_path, "a") as f:
        f.write("30,3.")  # a kill in the middle of an append
    with open(run.evaluations_path, "a") as f:
        f.write('{"step": 30, "me')
    with pytest.warns(UserWarning, match="torn last line"):
        assert run.episodes() == [(10, 1.0, 10), (20, 2.0, 10)]
    with pytest.warns(UserWarning, match="torn last line"):
        assert [e["step"] for e in run.evaluations()] == [10, 20]
    with pytest.warns(UserWarning):
        run.truncate_records(15)
    assert run.episodes_path.read_text().splitlines() == ["step,return,length", "10,1.0,10"]
    assert [e["step"] for e in run.evaluations()] == [10]

    # An empty episodes.csv (what an in-place rewrite left when it was killed) gets its header back.
    run.episodes_path.write_text("")
    run.append_episodes([(40, 4.0, 10)])
    assert run.episodes() == [(40, 4.0, 10)] and run.episodes_path.read_text().startswith("step,return,length")


def test_a_kill_during_the_records_rewrite_leaves_the_old_or_the_new_records(tmp_path):
    run = RunDir(tmp_path)
    rows = [(10 * i, float(i % 7), 10) for i in range(1, 400_001)]
    run.append_episodes(rows)
    for i in range(1, 2001):
        run.append_evaluation({"step": 1000 * i, "mean": float(i)})
    old = {path: path.read_bytes() for path in (run.episodes_path, run.evaluations_path)}
    all_steps, kept_steps = [1000 * i for i in range(1, 2001)], [1000 * i for i in range(1, 1001)]
    rewrite = f"from qagent.training.runs import RunDir; RunDir({str(tmp_path)!r}).truncate_records(1_000_000)"
    # Time one whole rewrite first, so the kills land within its span however loaded the machine is.
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", rewrite], check=True)
    span = time.perf_counter() - started
    for path, data in old.items():
        path.write_bytes(data)
    rng = random.Random(5)
    outcomes = set()
    for _ in range(10):
        proc = subprocess.Popen([sys.executable, "-c", rewrite])
        time.sleep(rng.uniform(0.05, 1.2) * span)
        proc.kill()
        proc.wait()
        episodes = run.episodes()
        assert episodes in (rows, rows[:100_000])  # the old records or the new, never empty or torn
        assert [e["step"] for e in run.evaluations()] in (all_steps, kept_steps)
        outcomes.add(len(episodes))
        run.remove_stale_temporaries()
        for path, data in old.items():
            path.write_bytes(data)
    assert outcomes == {len(rows), 100_000}, "the kills did not straddle the rewrite"


def test_pruning_keeps_the_buffer_of_every_kept_checkpoint(tmp_path):
    run = RunDir(tmp_path)
    run.checkpoint_dir.mkdir()
    for step in (100, 200, 300):
        run.checkpoint_path(step).write_bytes(b"x")
        run.buffer_path(step).write_bytes(b"x")
        run.buffer_path(step).with_name(f"buffer-{step:010d}-meta.npz").write_bytes(b"x")  # h-DQN's second memory
    run.buffer_path(400).write_bytes(b"x")  # killed after the buffer, before its checkpoint
    run.prune(keep=2)
    names = sorted(p.name for p in run.checkpoint_dir.iterdir())
    assert names == [
        "buffer-0000000200-meta.npz",
        "buffer-0000000200.npz",
        "buffer-0000000300-meta.npz",
        "buffer-0000000300.npz",
        "step-0000000200.pt",
        "step-0000000300.pt",
    ]


def test_an_earlier_checkpoint_resumes_after_the_newest_lost_its_buffer(tmp_path):
    from test_training import tiny_config

    from qagent.training.loop import resume_training, start_training

    config = tiny_config("train.total_steps=1200", "train.checkpoint_every=400", "train.save_buffer=true")
    result = start_training(config, runs_dir=tmp_path / "runs", run_name="r", progress=False)
    run = RunDir(result.run_dir)
    assert [step for step, _ in run.buffers()] == [step for step, _ in run.checkpoints()]
    run.buffer_path(1200).unlink()  # as if the newest buffer were lost
    (run.checkpoint_dir / ".buffer-0000001200.npz.tmp").write_bytes(b"stale")
    from qagent.errors import CheckpointError

    with pytest.raises(CheckpointError, match="resume from an earlier checkpoint") as caught:
        resume_training(run.root, ["train.total_steps=1600"], progress=False)
    earlier = caught.value.hint.split("--resume ")[1]
    resumed = resume_training(earlier, ["train.total_steps=1600"], progress=False)
    assert resumed.step == 1600 and not (run.checkpoint_dir / ".buffer-0000001200.npz.tmp").exists()


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_with_a_checkpoint_and_exits_128_plus_the_signal(tmp_path, signum, code):
    run = RunDir(tmp_path / "runs" / "sig")
    proc = qagent_process(
        ["train", *TINY, "--total-steps", "1000000", "--set", "eval.every=null", "--no-track", "--run-name", "sig"],
        tmp_path,
    )
    wait_for(lambda: run.episodes_path.exists() and len(run.episodes_path.read_text().splitlines()) > 5, proc)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "interrupted at step" in out and run.read_meta()["status"] == "interrupted"
    assert run.latest_checkpoint() is not None


def test_sigterm_during_the_final_evaluation_leaves_the_run_killed_and_resumable(tmp_path, mlflow_uri):
    """The final stage runs outside the loop's graceful stop; SIGTERM there must still end the run."""
    run = RunDir(tmp_path / "runs" / "final")
    proc = qagent_process(
        [
            "train",
            *TINY,
            "--total-steps",
            "600",
            "--set",
            "eval.final_episodes=100000",  # a final evaluation long enough to be stopped in
            "--set",
            "eval.num_envs=1",
            "--tracking-uri",
            mlflow_uri,
            "--run-name",
            "final",
        ],
        tmp_path,
    )
    wait_for(lambda: run.evaluations_path.exists() and run.read_meta().get("status") == "running", proc)
    time.sleep(2.0)  # past step 600 by now, in the 100,000-episode final evaluation
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    meta = run.read_meta()
    assert meta["status"] == "killed"
    assert MlflowClient(mlflow_uri).get_run(meta["mlflow_run_id"]).info.status == "KILLED"
    # Resuming finishes the final stage (here with a shorter final evaluation).
    resumed = qagent_process(["train", "--resume", str(run.root), "--set", "eval.final_episodes=3"], tmp_path)
    _, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    finals = [e for e in run.evaluations() if e["final"]]
    assert len(finals) == 1 and finals[0]["episodes"] == 3 and run.read_meta()["status"] == "finished"
    assert MlflowClient(mlflow_uri).get_run(meta["mlflow_run_id"]).info.status == "FINISHED"


def test_sigterm_at_startup_leaves_no_run_behind(tmp_path, mlflow_uri):
    marker = tmp_path / "making"
    faulty = Path(__file__).parent / "plugins" / "faulty_plugin.py"
    proc = qagent_process(
        [
            *("train", "--plugin", str(faulty), "--env", "faulty-cartpole"),
            *("--set", f"env.kwargs.slow_make_marker={marker}", "--tracking-uri", mlflow_uri),
            *("--experiment", "startup", "--run-name", "early"),
        ],
        tmp_path,
    )
    wait_for(marker.exists, proc)  # the env is being made: the run has not started yet
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert not (tmp_path / "runs" / "early").exists()
    experiment = MlflowClient(mlflow_uri).get_experiment_by_name("startup")
    assert experiment is None or not MlflowClient(mlflow_uri).search_runs([experiment.experiment_id])


def test_a_file_size_limit_is_one_clear_line_and_the_run_is_marked_failed(tmp_path):
    import resource

    def limit_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))

    env = {k: v for k, v in os.environ.items() if k not in ("QAGENT_PLUGINS", "MLFLOW_TRACKING_URI")}
    result = subprocess.run(
        [
            *(sys.executable, "-m", "qagent", "train", *TINY, "--set", "network.hidden_sizes=[256,256]"),
            *("--total-steps", "600", "--no-track", "--run-name", "big"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        preexec_fn=limit_files,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "cannot write" in errors[0] and "File too large" in errors[0], result.stderr
    assert "runs/big/checkpoints/" in errors[0]  # the file that could not be written
    meta = json.loads((tmp_path / "runs/big/run.json").read_text())
    assert meta["status"] == "failed" and "File too large" in meta["error"]
