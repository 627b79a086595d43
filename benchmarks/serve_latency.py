"""Serving latency: qagent.serve vs torch eager vs Stable-Baselines3, and over HTTP.

For a CartPole DQN (4-256-256-2 MLP) it measures, one observation at a time:

- in process: ``Policy.act`` (onnxruntime, one thread), the same network in eager PyTorch
  (``torch.no_grad``), and Stable-Baselines3's ``model.predict`` on the same architecture;
- over HTTP on 127.0.0.1: how long ``qagent serve`` takes to answer its first request after
  being started, the round trip of ``POST /v1/act`` and ``POST /v2/models/{name}/infer`` from
  one keep-alive client, and requests per second from 8 concurrent clients.

    python benchmarks/serve_latency.py              # trains a 2k-step policy to serve
    python benchmarks/serve_latency.py --policy cartpole.onnx --no-write
"""

from __future__ import annotations

import argparse
import http.client
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import DOCS, publish  # noqa: E402


def percentiles(samples: list[float]) -> dict[str, float]:
    us = np.asarray(samples) * 1e6
    return {"p50_us": float(np.percentile(us, 50)), "p99_us": float(np.percentile(us, 99)), "mean_us": float(us.mean())}


def time_calls(fn, inputs, warmup: int = 200) -> dict[str, float]:
    for x in inputs[:warmup]:
        fn(x)
    samples = []
    for x in inputs:
        t0 = time.perf_counter()
        fn(x)
        samples.append(time.perf_counter() - t0)
    return percentiles(samples)


def make_policy(folder: Path) -> Path:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "qagent",
            "train",
            "--config",
            "cartpole-dqn",
            "--total-steps",
            "2000",
            "--no-track",
            "--no-progress",
            "--runs-dir",
            str(folder),
            "--run-name",
            "serve",
            "--set",
            "eval.every=null",
            "--set",
            "eval.final_episodes=1",
        ],
        capture_output=True,
        text=True,
    )
    if run.returncode:
        raise RuntimeError(run.stderr)
    path = folder / "cartpole.onnx"
    export = subprocess.run(
        [sys.executable, "-m", "qagent", "export", str(folder / "serve"), "-o", str(path)],
        capture_output=True,
        text=True,
    )
    if export.returncode:
        raise RuntimeError(export.stderr)
    return path


def in_process(policy_path: Path, n: int) -> dict[str, dict[str, float]]:
    import torch
    from stable_baselines3 import DQN

    from qagent.serve import Policy

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    obs = rng.standard_normal((n, 4)).astype(np.float32) * 0.1
    policy = Policy.load(policy_path)
    results = {"qagent.serve Policy.act (onnxruntime)": time_calls(policy.act, obs)}

    from qagent.training.build import load_agent

    agent = load_agent(policy_path.parent / "serve").agent
    agent.q_net.eval()

    def torch_act(x: np.ndarray) -> int:
        with torch.no_grad():
            return int(agent.q_net(torch.from_numpy(x)[None]).argmax(1))

    results["torch eager (no_grad)"] = time_calls(torch_act, obs)
    sb3 = DQN("MlpPolicy", "CartPole-v1", policy_kwargs={"net_arch": [256, 256]}, learning_starts=0, verbose=0)
    results["Stable-Baselines3 model.predict"] = time_calls(lambda x: sb3.predict(x, deterministic=True), obs)
    return results


def start_server(policy_path: Path) -> tuple[subprocess.Popen, int, float]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "qagent",
            "serve",
            str(policy_path),
            "--port",
            "0",
            "--model-name",
            "cartpole",
            "--workers",
            "2",
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    line = proc.stderr.readline()
    port = int(line.split(" at ", 1)[1].split(" ", 1)[0].rsplit(":", 1)[1])
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            conn.close()
            break
        except OSError:
            time.sleep(0.005)
    return proc, port, time.perf_counter() - t0


def post(conn: http.client.HTTPConnection, path: str, body: bytes) -> bytes:
    conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    data = response.read()
    if response.status != 200:
        raise RuntimeError(data)
    return data


def over_http(policy_path: Path, n: int) -> dict[str, object]:
    starts = []
    for _ in range(3):
        proc, port, seconds = start_server(policy_path)
        starts.append(seconds)
        proc.terminate()
        proc.wait()
    proc, port, _ = start_server(policy_path)
    try:
        rng = np.random.default_rng(1)
        bodies = [json.dumps({"obs": o.tolist()}).encode() for o in rng.standard_normal((n, 4)) * 0.1]
        v2 = [
            json.dumps({"inputs": [{"name": "obs", "shape": [1, 4], "datatype": "FP32", "data": o.tolist()}]}).encode()
            for o in rng.standard_normal((n, 4)) * 0.1
        ]
        conn = http.client.HTTPConnection("127.0.0.1", port)
        v1_latency = time_calls(lambda b: post(conn, "/v1/act", b), bodies)
        v2_latency = time_calls(lambda b: post(conn, "/v2/models/cartpole/infer", b), v2)
        conn.close()

        def client(k: int) -> list[float]:
            c = http.client.HTTPConnection("127.0.0.1", port)
            samples = []
            for body in bodies[k::8]:
                t0 = time.perf_counter()
                post(c, "/v1/act", body)
                samples.append(time.perf_counter() - t0)
            c.close()
            return samples

        t0 = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            samples = [s for chunk in pool.map(client, range(8)) for s in chunk]
        elapsed = time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait()
    return {
        "start_seconds": [round(s, 3) for s in starts],
        "v1_act": v1_latency,
        "v2_infer": v2_latency,
        "concurrent_8": {**percentiles(samples), "requests_per_second": len(samples) / elapsed},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", type=Path, help="an exported CartPole policy (default: train and export one)")
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = args.policy or make_policy(Path(tmp))
        local = in_process(path, args.calls) if args.policy is None else {}
        remote = over_http(path, args.calls)

    rows = [f"| {name} | {r['p50_us']:.0f} | {r['p99_us']:.0f} |" for name, r in local.items()]
    concurrent = remote["concurrent_8"]
    http_rows = [
        f"| `POST /v1/act`, one client | {remote['v1_act']['p50_us']:.0f} | {remote['v1_act']['p99_us']:.0f} | |",
        f"| `POST /v2/models/cartpole/infer`, one client | {remote['v2_infer']['p50_us']:.0f} | {remote['v2_infer']['p99_us']:.0f} | |",
        f"| `POST /v1/act`, 8 concurrent clients | {concurrent['p50_us']:.0f} | {concurrent['p99_us']:.0f} "
        f"| {concurrent['requests_per_second']:,.0f} |",
    ]
    body = [
        "",
        "| in process | p50 (µs) | p99 (µs) |",
        "|---|---:|---:|",
        *rows,
        "",
        f"`qagent serve` answers its first request {min(remote['start_seconds']):.2f} s after it is started "
        f"(best of three; all: {', '.join(f'{s:.2f}' for s in remote['start_seconds'])} s).",
        "",
        "| over HTTP on 127.0.0.1 (keep-alive) | p50 (µs) | p99 (µs) | requests/s |",
        "|---|---:|---:|---:|",
        *http_rows,
    ]
    title = "Serving latency (CartPole DQN, 4-256-256-2 MLP, one observation per call)"
    data = {"in_process": local, "http": remote}
    publish("serve_latency", title, body, data, write=not args.no_write, also=(DOCS / "serving.md",))


if __name__ == "__main__":
    main()
