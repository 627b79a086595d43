"""Serving latency: qagent.serve vs torch eager vs Stable-Baselines3, and over HTTP.

For a CartPole DQN (4-256-256-2 MLP) it measures, one observation at a time:

- in process: ``Policy.act`` (onnxruntime, one thread), the same network in eager PyTorch
  (``torch.no_grad``), and Stable-Baselines3's ``model.predict`` on the same architecture;
- over HTTP on 127.0.0.1: how long ``qagent serve`` takes to answer its first request after
  being started, the round trip of ``POST /v1/act`` and ``POST /v2/models/{name}/infer`` from
  one keep-alive client, and, with ``wrk`` (Debian's package; a C load generator, so the client
  is not the bottleneck), requests per second and latency percentiles at 16 keep-alive
  connections for both endpoints. The server and wrk share the machine (wrk on one thread).

    python benchmarks/serve_latency.py              # trains a 2k-step policy to serve
    python benchmarks/serve_latency.py --policy cartpole.onnx --no-write
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
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


WRK_SCRIPT = """
bodies = {%s}
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("POST", "%s", {["Content-Type"] = "application/json"}, bodies[counter %% #bodies + 1])
end
"""


def event_loop() -> str:
    """The event loop ``qagent serve`` runs on here."""
    try:
        import uvloop
    except ImportError:
        return "the standard library's asyncio loop"
    return f"uvloop {uvloop.__version__}"


def seconds_of(text: str) -> float:
    """wrk's durations ("812.00us", "1.43ms", "2.01s") in seconds."""
    value, unit = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def wrk_load(port: int, path: str, bodies: list[bytes], connections: int, seconds: int) -> dict[str, float]:
    """``wrk`` at ``connections`` keep-alive connections on one thread: requests/s and latency percentiles."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT % (", ".join(json.dumps(b.decode()) for b in bodies[:64]), path))
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script.name]
    out = subprocess.run([*command, f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, check=True)
    Path(script.name).unlink()
    text = out.stdout
    if "Non-2xx" in text or "Socket errors" in text:
        raise RuntimeError(f"wrk saw failed requests:\n{text}")
    latency = dict(re.findall(r"^\s+(50|90|99)%\s+(\S+)$", text, re.MULTILINE))
    return {
        "requests_per_second": float(re.search(r"Requests/sec:\s+([0-9.]+)", text).group(1)),
        "requests": int(re.search(r"([0-9]+) requests in", text).group(1)),
        **{f"p{q}_us": seconds_of(latency[q]) * 1e6 for q in ("50", "90", "99")},
        "load_generator": f"wrk {connections} connections, 1 thread, {seconds} s",
    }


def median_run(runs: list[dict[str, float]]) -> dict[str, object]:
    """The run with the median requests/s (this shared machine varies by ±20% from run to run), and all runs."""
    ordered = sorted(runs, key=lambda run: run["requests_per_second"])
    return {**ordered[len(ordered) // 2], "runs": runs}


def over_http(policy_path: Path, n: int, wrk_seconds: int = 10, wrk_runs: int = 3) -> dict[str, object]:
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

        wrk_v1 = median_run([wrk_load(port, "/v1/act", bodies, 16, wrk_seconds) for _ in range(wrk_runs)])
        wrk_v2 = median_run([wrk_load(port, "/v2/models/cartpole/infer", v2, 16, wrk_seconds) for _ in range(wrk_runs)])
    finally:
        proc.terminate()
        proc.wait()
    return {
        "start_seconds": [round(s, 3) for s in starts],
        "v1_act": v1_latency,
        "v2_infer": v2_latency,
        "wrk_16_v1_act": wrk_v1,
        "wrk_16_v2_infer": wrk_v2,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", type=Path, help="an exported CartPole policy (default: train and export one)")
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--wrk-seconds", type=int, default=10, help="length of each wrk run")
    parser.add_argument("--wrk-runs", type=int, default=3, help="wrk runs per endpoint; the table shows the median")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        parser.error("the 16-connection rows need wrk (Debian: apt-get install wrk)")

    with tempfile.TemporaryDirectory() as tmp:
        path = args.policy or make_policy(Path(tmp))
        local = in_process(path, args.calls) if args.policy is None else {}
        remote = over_http(path, args.calls, args.wrk_seconds, args.wrk_runs)

    rows = [f"| {name} | {r['p50_us']:.0f} | {r['p99_us']:.0f} |" for name, r in local.items()]
    http_rows = [
        f"| `POST /v1/act`, one client (http.client) | {remote['v1_act']['p50_us']:.0f} | {remote['v1_act']['p99_us']:.0f} | |",
        f"| `POST /v2/models/cartpole/infer`, one client (http.client) | {remote['v2_infer']['p50_us']:.0f} | {remote['v2_infer']['p99_us']:.0f} | |",
    ]
    for key, name in (("wrk_16_v1_act", "/v1/act"), ("wrk_16_v2_infer", "/v2/models/cartpole/infer")):
        row = remote[key]
        http_rows.append(
            f"| `POST {name}`, 16 connections (wrk, 1 thread) | {row['p50_us']:.0f} | {row['p99_us']:.0f} "
            f"| {row['requests_per_second']:,.0f} |"
        )
    body = [
        "",
        "| in process | p50 (µs) | p99 (µs) |",
        "|---|---:|---:|",
        *rows,
        "",
        f"`qagent serve` answers its first request {min(remote['start_seconds']):.2f} s after it is started "
        f"(best of three; all: {', '.join(f'{s:.2f}' for s in remote['start_seconds'])} s).",
        "",
        f"The server runs with its defaults (the policy on the event loop; {event_loop()}). The 16-connection "
        f"rows are the median of {args.wrk_runs} wrk runs of {args.wrk_seconds} s by requests/s (all runs: "
        + "; ".join(
            f"{name} " + ", ".join(f"{r['requests_per_second']:,.0f}" for r in remote[key]["runs"])
            for key, name in (("wrk_16_v1_act", "v1"), ("wrk_16_v2_infer", "v2"))
        )
        + " requests/s).",
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
