"""DQN on CartPole-v1 with the ``cartpole-dqn`` preset over several seeds.

For each seed, trains through the CLI (as a user would) with a 100-episode greedy
evaluation every ``--eval-every`` steps, and reports the first step whose evaluation mean
reaches 475, the final policy's 100-episode evaluation (and whether it still solves
CartPole, mean >= 475), and the time spent. What counts is the final policy: reaching 475
once and then collapsing is not solving it.

    python benchmarks/cartpole.py                      # seeds 0-9, 2 runs at a time
    python benchmarks/cartpole.py --jobs 16 --set agent.double=true --no-write
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import publish  # noqa: E402

THRESHOLD = 475.0


def run_seed(seed: int, args: argparse.Namespace, runs_dir: Path) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "qagent",
        "train",
        "--config",
        args.config,
        "--seed",
        str(seed),
        "--runs-dir",
        str(runs_dir),
        "--run-name",
        f"seed-{seed}",
        "--no-track",
        "--no-progress",
        "--set",
        f"eval.every={args.eval_every}",
        "--set",
        "eval.episodes=100",
        "--set",
        "eval.final_episodes=100",
        "--set",
        f"train.torch_threads={args.threads}",
    ]
    for override in args.set:
        cmd += ["--set", override]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"seed {seed} failed:\n{proc.stderr[-2000:]}")
    run = runs_dir / f"seed-{seed}"
    evaluations = [json.loads(line) for line in (run / "evaluations.jsonl").read_text().splitlines()]
    meta = json.loads((run / "run.json").read_text())
    reached = next((e["step"] for e in evaluations if not e["final"] and e["mean"] >= THRESHOLD), None)
    final = evaluations[-1]
    return {
        "seed": seed,
        "steps_to_475": reached,
        "final_mean": final["mean"],
        "final_std": final["std"],
        "train_seconds": meta["train_seconds"],
        "wall_seconds": round(wall, 1),
        "evaluations": [(e["step"], round(e["mean"], 1)) for e in evaluations],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="cartpole-dqn")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel (each uses --threads threads)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--eval-every", type=int, default=2500)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/ alone")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda s: run_seed(s, args, Path(tmp)), args.seeds))

    reached = [r["steps_to_475"] for r in results if r["steps_to_475"] is not None]
    solved = [r for r in results if r["final_mean"] >= THRESHOLD]
    rows = [
        f"| {r['seed']} | {r['steps_to_475'] if r['steps_to_475'] is not None else 'not reached'} "
        f"| {r['final_mean']:.1f} ± {r['final_std']:.1f} | {'yes' if r['final_mean'] >= THRESHOLD else 'no'} "
        f"| {r['train_seconds']:.0f} | {r['wall_seconds']:.0f} |"
        for r in results
    ]
    finals = [r["final_mean"] for r in results]
    summary = [
        f"**{len(solved)} of {len(results)} final policies solve CartPole (>= {THRESHOLD:.0f})** "
        f"(final 100-episode greedy means: lowest {min(finals):.1f}, median {statistics.median(finals):.1f}).",
        "",
        f"{len(reached)} of {len(results)} seeds reach a 100-episode greedy mean of {THRESHOLD:.0f} during training"
        + (f" (median {statistics.median(reached):,.0f} env steps, at most {max(reached):,})." if reached else "."),
    ]
    overrides = f" with `{' '.join('--set ' + o for o in args.set)}`" if args.set else ""
    body = [
        f"Each seed trains `{args.config}`{overrides} through `qagent train`; a 100-episode greedy evaluation "
        f"runs every {args.eval_every:,} env steps, and the final policy (after the last step) gets another "
        "100 episodes.",
        "",
        "| seed | env steps to 475 | final policy (100 episodes) | final >= 475 | train time (s) | wall time (s) |",
        "|---:|---:|---:|:---:|---:|---:|",
        *rows,
        "",
        *summary,
    ]
    data = {"overrides": args.set, "results": results}
    publish("cartpole", "CartPole-v1, DQN (`cartpole-dqn` preset)", body, data, write=not args.no_write)


if __name__ == "__main__":
    main()
