"""Scaling out: the single-process loop vs 1, 2, 4, ... Ray actors, on ALE/Pong-v5 with `pong-dqn`.

Each row is a fresh ``qagent train`` with the ``pong-dqn`` preset's hyperparameters (one env per
collector, 1 gradient step of batch 32 per 4 env steps on the Nature CNN); learning starts early
so the figures are the steady-state speed of acting plus learning. The replay ratio is held at
the preset's (the learner takes every env step's updates, whoever collected it), so env steps/s
is 4× learner updates/s in every row, and the actors help only as far as they free the learner.
Ray rows run in a loopback-only network namespace where the machine needs one (as the tests do).

    python benchmarks/scaling.py                              # learner on train.device=auto
    python benchmarks/scaling.py --device cuda --actors 1,2,4,8,15 --steps 40000
    python benchmarks/scaling.py --steps 6000 --learning-starts 1000 --no-write
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from _report import machine, publish  # noqa: E402
from conftest import loopback_only  # noqa: E402


def default_actor_counts() -> list[int]:
    """1, 2, 4, ... up to the machine's cores (and the core count itself)."""
    cores = os.cpu_count() or 1
    counts, n = [], 1
    while n < cores:
        counts.append(n)
        n *= 2
    return [*counts, cores]


def run(actors: int, args: argparse.Namespace) -> dict[str, float]:
    """One training run; its env steps/s and updates/s over the training loop (Ray's start left out)."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable, "-m", "qagent", "train", "--config", "pong-dqn", "--env", args.env,
            "--total-steps", str(args.steps), "--no-track", "--no-progress", "--runs-dir", tmp, "--run-name", "bench",
            "--device", args.device, "--set", f"agent.learning_starts={args.learning_starts}",
            "--set", f"replay.capacity={args.capacity}", "--set", "eval.every=null", "--set", "eval.final_episodes=1",
            "--set", "eval.num_envs=1", "--set", "train.checkpoint_every=null", "--set", "train.keep_best=false",
        ]  # fmt: skip
        if args.amp:
            cmd += ["--set", "train.amp=true"]
        if actors:
            cmd += ["--actors", str(actors)]
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
        proc = subprocess.run(loopback_only(cmd) if actors else cmd, capture_output=True, text=True, env=env)
        if proc.returncode:
            raise RuntimeError(f"{actors} actors failed:\n{proc.stderr[-3000:]}")
        meta = json.loads((Path(tmp) / "bench" / "run.json").read_text())
        checkpoint = torch.load(Path(tmp) / "bench" / meta["last_checkpoint"], weights_only=True)
    updates = int(checkpoint["agent"]["updates"])
    seconds = float(meta["train_seconds"])
    row = {
        "actors": actors,
        "steps_per_second": float(meta["steps_per_second"]),
        "updates_per_second": updates / seconds,
        "updates": updates,
        "train_seconds": seconds,
        "restarts": int(meta.get("actor_restarts", 0)),
    }
    label = f"{actors} actors" if actors else "single process"
    print(f"{label}: {row['steps_per_second']:.0f} env steps/s, {row['updates_per_second']:.0f} updates/s", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="ALE/Pong-v5")
    parser.add_argument("--steps", type=int, default=12_000, help="env steps per run")
    parser.add_argument("--learning-starts", type=int, default=2_000)
    parser.add_argument("--capacity", type=int, default=100_000)
    parser.add_argument("--device", default="auto", help="the learner's device in every row")
    parser.add_argument("--amp", action="store_true", help="train.amp=true (bfloat16 autocast)")
    parser.add_argument(
        "--actors",
        help="comma-separated actor counts (default: 1, 2, 4, ... up to the cores); '' for the single process alone "
        "(a machine without Ray)",
    )
    parser.add_argument("--output", help="also write the JSON here (for a run on another machine)")
    parser.add_argument("--no-write", action="store_true", help="do not touch docs/")
    args = parser.parse_args()
    counts = (
        [int(n) for n in args.actors.split(",") if n.strip()] if args.actors is not None else default_actor_counts()
    )
    device = str(torch.device("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    info = machine()
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    results = [run(0, args), *(run(n, args) for n in counts)]
    base = results[0]["steps_per_second"]
    gpu = f" ({info['gpu']})" if "gpu" in info else ""
    rows = [
        f"| {'single process' if r['actors'] == 0 else r['actors']} | {r['steps_per_second']:,.0f} | "
        f"{r['updates_per_second']:,.0f} | {r['steps_per_second'] / base:.2f}× | {r['restarts']} |"
        for r in results
    ]
    body = [
        f"Learner on `{device}`{gpu}{' with bfloat16 autocast' if args.amp else ''}; actors and envs on the CPU cores.",
        "",
        f"{args.env}, {args.steps:,} env steps per run with learning from step {args.learning_starts:,}, "
        f"replay capacity {args.capacity:,}; `pong-dqn` hyperparameters (one env per collector, 1 gradient step of "
        "batch 32 per 4 env steps, Nature CNN). Figures cover the training loop (Ray's start and the final "
        "evaluation left out).",
        "",
        "| actors | env steps/s | learner updates/s | vs single process | actor restarts |",
        "|---|---:|---:|---:|---:|",
        *rows,
        "",
        "The replay ratio is held at the preset's 0.25 updates per env step. The single process acts and learns in "
        "turn, so both costs bound it; actors take acting off the learner, whose speed then bounds the row. On a "
        "machine with few cores, the actors and the learner share them, and more actors than cores only add "
        "contention.",
    ]
    payload = {"results": results, "device": device, "machine": info, "args": vars(args)}
    if args.output:
        Path(args.output).write_text(json.dumps(payload, indent=2))
    title = f"Scaling out: single process vs Ray actors ({args.env}, `pong-dqn` hyperparameters, learner on {device})"
    publish(f"scaling-{device.split(':')[0]}", title, body, payload, write=not args.no_write)


if __name__ == "__main__":
    main()
