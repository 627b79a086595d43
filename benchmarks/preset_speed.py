"""How fast a preset trains: env steps per second of ``qagent train --config PRESET`` on one device.

Each preset runs in a fresh process for a fixed wall-clock time with learning from step 5,000
(both levels of an h-DQN), then is stopped with SIGTERM as a user's Ctrl-C would stop it; the
figure is the run's own ``steps_per_second`` (its training loop, from ``run.json``). So it is the
speed early in training, with small replay memories; long runs slow down as memories fill.

    python benchmarks/preset_speed.py                                    # the Montezuma presets, on the CPU
    python benchmarks/preset_speed.py --device cuda --output speed.json  # on a GPU machine
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, publish  # noqa: E402

DEFAULTS = {"montezuma-hdqn-pixels": 170, "montezuma-hdqn": 100}  # preset: seconds


def run(preset: str, seconds: int, device: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable, "-m", "qagent", "train", "--config", preset, "--device", device, "--seed", "0",
            "--no-track", "--no-progress", "--runs-dir", tmp, "--run-name", "speed",
            "--set", "eval.every=null", "--set", "train.checkpoint_every=null", "--set", "train.keep_best=false",
            "--set", "agent.controller.learning_starts=5000", "--set", "agent.meta.learning_starts=5000",
        ]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate()
        meta_path = Path(tmp) / "speed" / "run.json"
        if not meta_path.exists():
            raise RuntimeError(f"{preset} failed:\n{stderr[-3000:]}")
        meta = json.loads(meta_path.read_text())
    row = {
        "preset": preset,
        "seconds": seconds,
        "steps": int(meta["step"]),
        "train_seconds": float(meta["train_seconds"]),
        "steps_per_second": float(meta["steps_per_second"]),
    }
    print(f"{preset}: {row['steps_per_second']:.0f} env steps/s ({row['steps']:,} steps)", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=list(DEFAULTS), help="presets (default: the Montezuma ones)")
    parser.add_argument("--seconds", type=int, help="wall-clock seconds per preset (default: 170 pixels, 100 RAM)")
    parser.add_argument("--device", default="cpu", help="the learner's device (train.device)")
    parser.add_argument("--output", help="also write the JSON here (for a run on another machine)")
    parser.add_argument("--no-write", action="store_true", help="do not touch docs/")
    args = parser.parse_args()
    results = [run(p, args.seconds or DEFAULTS.get(p, 120), args.device) for p in args.presets]
    info = machine()
    if args.device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(args.device))
    body = [
        f"Learner on `{args.device}`{' (' + info['gpu'] + ')' if 'gpu' in info else ''}; one process. Each preset "
        "trains for a fixed wall-clock time with learning from step 5,000, then is stopped with SIGTERM; the figure is "
        "the run's own env steps per second over its training loop (early in training: small replay memories).",
        "",
        "| preset | seconds | env steps | env steps/s |",
        "|---|---:|---:|---:|",
        *(f"| `{r['preset']}` | {r['seconds']} | {r['steps']:,} | {r['steps_per_second']:,.0f} |" for r in results),
    ]
    payload = {"results": results, "device": args.device, "machine": info, "args": vars(args)}
    if args.output:
        Path(args.output).write_text(json.dumps(payload, indent=2))
    title = f"Preset speed, learner on {args.device.split(':')[0]}"
    publish(f"preset-speed-{args.device.split(':')[0]}", title, body, payload, write=not args.no_write)


if __name__ == "__main__":
    main()
