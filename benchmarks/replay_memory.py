"""Replay memory for Atari: bytes per transition, and a real 1M-transition buffer.

Compares qagent's replay buffer (each frame stored once) with storing whole stacks for obs and
next_obs (Stable-Baselines3's ``ReplayBuffer``, with and without ``optimize_memory_usage``) for
4x84x84 uint8 observations, and h-DQN's controller memory D1 (frames once, each transition's
goal beside them) with the whole 5x84x84 controller inputs (frames and a goal mask) it stored before. Per-transition figures come from each buffer's arrays; then, when
the machine has the memory, a real 1M-transition frame buffer is allocated, filled (so every
page is touched) and sampled, and the process's resident memory is read before and after.

    python benchmarks/replay_memory.py
    python benchmarks/replay_memory.py --transitions 200000 --no-write
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import publish  # noqa: E402

SPACE = gym.spaces.Box(0, 255, shape=(4, 84, 84), dtype=np.uint8)
ACTIONS = gym.spaces.Discrete(6)
GB = 1e9


def resident_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def available_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def per_transition() -> dict[str, float]:
    """Bytes per transition from the arrays each buffer allocates (1,000 slots each)."""
    from stable_baselines3.common.buffers import ReplayBuffer as SB3Buffer

    from qagent.agents.replay.buffer import ReplayBuffer

    n = 1000
    frames = ReplayBuffer(n, SPACE, 0.99, stack=4)
    sb3 = SB3Buffer(n, SPACE, ACTIONS, device="cpu", optimize_memory_usage=False)
    sb3_lean = SB3Buffer(n, SPACE, ACTIONS, device="cpu", optimize_memory_usage=True, handle_timeout_termination=False)

    def sb3_bytes(buffer: SB3Buffer) -> int:
        arrays = [buffer.observations, buffer.actions, buffer.rewards, buffer.dones]
        if getattr(buffer, "next_observations", None) is not None:
            arrays.append(buffer.next_observations)
        return sum(a.nbytes for a in arrays)

    hdqn_d1, hdqn_whole = hdqn_controller_memories(n)
    return {
        "qagent ReplayBuffer (each frame once)": frames.nbytes / n,
        "qagent h-DQN controller memory D1 (frames once, goal beside them)": hdqn_d1,
        "qagent h-DQN D1 before (whole controller inputs: frames + goal mask)": hdqn_whole,
        "Stable-Baselines3 ReplayBuffer": sb3_bytes(sb3) / n,
        "Stable-Baselines3 ReplayBuffer, optimize_memory_usage": sb3_bytes(sb3_lean) / n,
    }


def hdqn_controller_memories(n: int) -> tuple[float, float]:
    """h-DQN's D1 on Montezuma frames with goal masks: as stored now, and as whole 5x84x84 inputs."""
    from qagent.agents.hdqn.memory import GoalReplay
    from qagent.agents.replay.buffer import ReplayBuffer
    from qagent.envs.goals import MontezumaRamGoals
    from qagent.envs.spaces import describe_observation_space
    from qagent.serve.goals import GoalEncoding

    goals = MontezumaRamGoals(SPACE)
    encoding = GoalEncoding("mask", describe_observation_space(SPACE), len(goals.goals), goals.masks())
    d1 = GoalReplay(ReplayBuffer(n, SPACE, 0.99, stack=4), encoding)
    whole = ReplayBuffer(n, gym.spaces.Box(0, 255, encoding.shape, np.uint8), 0.99)
    return d1.nbytes / n, whole.nbytes / n


def real_buffer(transitions: int) -> dict[str, float]:
    """Allocate, fill and sample a frame buffer of ``transitions`` slots; measure resident memory."""
    from qagent.agents.replay.buffer import ReplayBuffer

    before = resident_bytes()
    buffer = ReplayBuffer(transitions, SPACE, 0.99, stack=4, seed=0)
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (84, 84), dtype=np.uint8)
    obs = np.repeat(frame[None, None], 4, axis=1)
    started = time.perf_counter()
    done = np.zeros(1, dtype=bool)
    for t in range(transitions):
        ends = t % 1000 == 999
        buffer.add(obs, np.array([t % 6]), np.array([1.0], np.float32), obs, np.array([ends]), done)
    fill_seconds = time.perf_counter() - started
    after = resident_bytes()
    started = time.perf_counter()
    for _ in range(200):
        buffer.sample(32)
    sample_ms = (time.perf_counter() - started) / 200 * 1000
    return {
        "transitions": transitions,
        "array_bytes": buffer.nbytes,
        "resident_bytes_added": after - before,
        "fill_seconds": fill_seconds,
        "sample_batch_32_ms": sample_ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transitions", type=int, default=1_000_000)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    sizes = per_transition()
    rows = [f"| {name} | {b:,.0f} | {b * 1e6 / GB:.2f} |" for name, b in sizes.items()]
    body = [
        "",
        "Observations are 4 stacked 84x84 uint8 frames (h-DQN's controller adds a goal mask plane); "
        "1M transitions would need:",
        "",
        "| buffer | bytes per transition | GB per 1M transitions |",
        "|---|---:|---:|",
        *rows,
        "",
        f"The physical floor is one frame per transition: {84 * 84:,} bytes, {84 * 84 * 1e6 / GB:.2f} GB per 1M.",
    ]
    real = None
    needed = sizes["qagent ReplayBuffer (each frame once)"] * args.transitions * 1.2
    if available_bytes() > needed:
        real = real_buffer(args.transitions)
        body += [
            "",
            f"A real {real['transitions']:,}-transition buffer: {real['array_bytes'] / GB:.2f} GB of arrays; "
            f"the process's resident memory grew by {real['resident_bytes_added'] / GB:.2f} GB once it was full "
            f"(filled in {real['fill_seconds']:.0f} s); sampling a batch of 32 takes {real['sample_batch_32_ms']:.2f} ms.",
        ]
    else:
        body += ["", f"(Not enough free memory here to allocate {args.transitions:,} transitions for real.)"]
    title = "Replay memory for Atari (4x84x84 uint8 observations)"
    publish("replay_memory", title, body, {"per_transition_bytes": sizes, "real": real}, write=not args.no_write)


if __name__ == "__main__":
    main()
