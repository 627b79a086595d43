"""Start ``qagent serve`` on a policy, play one CartPole episode through HTTP, stop the server.

A serving check and an example client in one: it talks to the server with nothing but the
standard library, the way a game would, and checks every answer against the file run locally.

    python examples/serve_client.py runs/<run-name>/policy.onnx
"""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
import time

import gymnasium as gym

from qagent.serve import Policy


def post(conn: http.client.HTTPConnection, path: str, body: dict) -> dict:
    conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    answer = json.loads(response.read())
    if response.status >= 400:
        raise SystemExit(f"{path} answered {response.status}: {answer['error']}")
    return answer


def main(path: str) -> None:
    server = subprocess.Popen(
        [sys.executable, "-m", "qagent.serve", path, "--port", "0"], stderr=subprocess.PIPE, text=True
    )
    started = time.perf_counter()
    try:
        announcement = server.stderr.readline()
        port = int(announcement.split(" at ", 1)[1].split(" ", 1)[0].rsplit(":", 1)[1])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/healthz")
        conn.getresponse().read()
        print(f"server ready after {time.perf_counter() - started:.2f} s on port {port}")

        local = Policy.load(path)
        env = gym.make(local.metadata["env"]["id"])
        session = post(conn, "/v1/sessions", {})["session_id"]
        obs, _ = env.reset(seed=0)
        episode_return, done, steps = 0.0, False, 0
        while not done:
            answer = post(conn, f"/v1/sessions/{session}/act", {"obs": obs.tolist()})
            assert answer["action"] == local.act(obs), "the server and the local policy disagree"
            obs, reward, terminated, truncated, _ = env.step(answer["action"])
            episode_return += float(reward)
            done, steps = terminated or truncated, steps + 1
        conn.request("DELETE", f"/v1/sessions/{session}")
        conn.getresponse().read()
        batch = post(conn, "/v1/act", {"obs": [obs.tolist(), obs.tolist()]})
        print(
            f"played one episode through the server: return {episode_return:.0f} in {steps} steps; "
            f"batch answer {batch['actions']}"
        )
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=20)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "policy.onnx")
