"""Every DQN variant on CartPole-v1 and Acrobot-v1: several seeds, fixed budgets.

Each variant trains through ``qagent train`` on the env's preset (``cartpole-dqn``,
``acrobot-dqn``), so they share every hyperparameter but the components the variant switches
on; noisy variants explore with their noise, distributional ones get a support that covers the
env's returns. A 20-episode greedy evaluation every ``--eval-every`` steps gives the first step
that reaches the threshold (475 for CartPole, -100 for Acrobot); the final evaluation has 100.

    python benchmarks/variants.py --jobs 2
    python benchmarks/variants.py --variants dqn rainbow --envs cartpole --seeds 0 --no-write
    python benchmarks/variants.py --jobs 16 --results runs.jsonl      # keep results as they finish
    python benchmarks/variants.py --from-results runs.jsonl           # the table from saved results
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import publish, train_run  # noqa: E402

ENVS = {
    "cartpole": {"preset": "cartpole-dqn", "threshold": 475.0, "support": (0, 100), "steps": 50_000},
    "acrobot": {"preset": "acrobot-dqn", "threshold": -100.0, "support": (-100, 0), "steps": 50_000},
}
VARIANTS = ["dqn", "double-dqn", "dueling-dqn", "prioritized-dqn", "nstep-dqn", "noisy-dqn", "c51", "qr-dqn", "rainbow"]
NOISY = {"noisy-dqn", "rainbow"}
CATEGORICAL = {"c51", "rainbow"}
MACHINE = f"{os.cpu_count()} cores, Python {platform.python_version()}"  # results from several machines can merge
QUANTILES = 50  # QR-DQN's default 200 makes its loss 16 times costlier; 50 suffices for these returns


def run(env: str, variant: str, seed: int, args: argparse.Namespace, root: Path) -> dict:
    spec = ENVS[env]
    name = f"{env}-{variant}-{seed}"
    cmd = [
        "--config", spec["preset"], "--agent", variant, "--seed", str(seed),
        "--total-steps", str(args.steps or spec["steps"]), "--no-track", "--no-progress",
        "--runs-dir", str(root), "--run-name", name,
        "--set", f"eval.every={args.eval_every}", "--set", "eval.episodes=20", "--set", "eval.final_episodes=100",
        "--set", f"train.torch_threads={args.threads}", "--set", "train.checkpoint_every=null",
    ]  # fmt: skip
    if variant in NOISY:
        cmd += ["--set", "exploration.name=noisy"]
    if variant in CATEGORICAL:
        low, high = spec["support"]
        cmd += ["--set", f"agent.v_min={low}", "--set", f"agent.v_max={high}"]
    if variant == "qr-dqn":
        cmd += ["--set", f"agent.quantiles={QUANTILES}"]
    done = train_run(cmd, root / name)
    evaluations, meta = done["evaluations"], done["meta"]
    reached = next((e["step"] for e in evaluations if not e["final"] and e["mean"] >= spec["threshold"]), None)
    print(f"{name}: final {evaluations[-1]['mean']:.1f}, reached {reached}, {meta['train_seconds']:.0f} s", flush=True)
    result = {
        "env": env,
        "variant": variant,
        "seed": seed,
        "final_mean": evaluations[-1]["mean"],
        "steps_to_threshold": reached,
        "train_seconds": meta["train_seconds"],
        "wall_seconds": done["wall_seconds"],
        "evaluations": [(e["step"], round(e["mean"], 1)) for e in evaluations],
        "machine": MACHINE,
    }
    if args.results:
        with open(args.results, "a") as f:
            f.write(json.dumps(result) + "\n")
    return result


def row(env: str, variant: str, results: list[dict]) -> str:
    finals = [r["final_mean"] for r in results]
    reached = [r["steps_to_threshold"] for r in results if r["steps_to_threshold"] is not None]
    spread = statistics.pstdev(finals) if len(finals) > 1 else 0.0
    steps = (
        f"{statistics.median(reached):,.0f} ({len(reached)}/{len(results)})"
        if reached
        else f"not reached (0/{len(results)})"
    )
    seconds = statistics.mean(r["train_seconds"] for r in results)
    machines = ", ".join(sorted({r.get("machine", MACHINE) for r in results}))
    return (
        f"| {env} | {variant} | {statistics.mean(finals):.1f} ± {spread:.1f} | {steps} | {seconds:.0f} | {machines} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=list(ENVS), choices=list(ENVS))
    parser.add_argument("--variants", nargs="+", default=VARIANTS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, help="env steps per run (default: 50k)")
    parser.add_argument("--eval-every", type=int, default=2500)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--results", help="also append each run's result to this JSON-lines file as it finishes")
    parser.add_argument(
        "--from-results", nargs="+", metavar="FILE", help="build the table from saved results; run nothing"
    )
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    if args.from_results:
        results = [json.loads(line) for path in args.from_results for line in Path(path).read_text().splitlines()]
    else:
        jobs = [(env, variant, seed) for env in args.envs for variant in args.variants for seed in args.seeds]
        with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.jobs) as pool:
            results = list(pool.map(lambda job: run(*job, args, Path(tmp)), jobs))

    rows = []
    for env in args.envs:
        for variant in args.variants:
            rows.append(row(env, variant, [r for r in results if r["env"] == env and r["variant"] == variant]))
    thresholds = ", ".join(f"{env} {ENVS[env]['threshold']:g}" for env in args.envs)
    body = [
        f"{len(args.seeds)} seeds per variant, {args.steps or 50_000:,} env steps each, the env's preset for every "
        f"variant; thresholds: {thresholds}. Final: the mean (± standard deviation over seeds) of each seed's last "
        f"100-episode greedy evaluation. Steps: median first step whose 20-episode evaluation (every "
        f"{args.eval_every:,} steps) reaches the threshold, and how many seeds did. Train time excludes evaluation.",
        "",
        "| env | variant | final greedy eval | env steps to threshold | train time (s) | machine |",
        "|---|---|---:|---:|---:|---|",
        *rows,
    ]
    if args.from_results:
        body.append(
            "\nThe runs were made with `python benchmarks/variants.py --results FILE` on the machines each row "
            "names (the 16-core box ran 16 jobs at once, one torch thread each); the Machine line above is where "
            "the table was assembled. All results, with every evaluation, are in `docs/benchmarks/variants.json`."
        )
    publish(
        "variants", "DQN variants on CartPole-v1 and Acrobot-v1", body, {"results": results}, write=not args.no_write
    )


if __name__ == "__main__":
    main()
