"""What a trained Montezuma hierarchy does after it takes the key, measured rather than guessed.

Plays greedy episodes (ε = 0 at both levels) of an h-DQN checkpoint through its ONNX export and
``qagent.serve``'s session (the failed-goal masking of an evaluation), and records every option
chosen after the key: its goal, how many steps it ran and whether the player moved. Then the same
episodes again with the controller shown the RAM as it was just before the key (every byte that
taking it changed, but the player's place and the frame counter): if the stall is the controller
not knowing states with the key, that replay plays differently.

    python benchmarks/montezuma_probes.py docs/benchmarks/checkpoints/montezuma-hdqn-seed0-750k-best.pt
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import DOCS, publish  # noqa: E402

from qagent.config import EnvConfig  # noqa: E402
from qagent.envs.factory import make_vector_env  # noqa: E402
from qagent.envs.goals import MONTEZUMA_INVENTORY, MONTEZUMA_X, MONTEZUMA_Y  # noqa: E402
from qagent.export import export_checkpoint  # noqa: E402
from qagent.serve import Policy  # noqa: E402
from qagent.training.evaluation import exported_goal_space  # noqa: E402

KEY_BIT = 2
KEPT = {0, MONTEZUMA_X, MONTEZUMA_Y}  # the frame counter and the player's place stay as they are


def play(policy: Any, seed: int, before_key: bool) -> dict[str, Any]:
    """One greedy episode; with ``before_key`` the controller sees the RAM as it was before the key."""
    env_config = EnvConfig(**policy.metadata["env"])
    goal_input = exported_goal_space(policy.metadata["hierarchy"]["goal_space"], env_config).goal_input
    envs = make_vector_env(env_config, 1, training=False)
    env = envs.envs[0]
    frozen: dict[int, int] = {}
    controller = policy.controller_q_values

    def controller_view(batch: np.ndarray, goals: np.ndarray) -> np.ndarray:
        if frozen:
            batch = batch.copy()
            for index, value in frozen.items():
                batch[..., index] = value
        return controller(batch, goals)

    if before_key:
        policy.controller_q_values = controller_view
    try:
        obs, _ = envs.reset(seed=[seed])
        session = policy.session()
        options: list[dict[str, Any]] = []
        key_step, step, done = None, 0, False
        while not done:
            ram = env.unwrapped.ale.getRAM().copy()
            action = session.step(obs[0], goal_input(env, obs[0]))[0]
            if key_step is not None and session.new_goal:
                options.append(
                    {"goal": session.goal, "steps": 0, "from": (int(ram[MONTEZUMA_X]), int(ram[MONTEZUMA_Y]))}
                )
            obs, _, terminated, truncated, info = envs.step(np.array([action]))
            step += 1
            done = bool(terminated[0] or truncated[0])
            after = env.unwrapped.ale.getRAM()
            if options:
                options[-1]["steps"] += 1
                options[-1]["to"] = (int(after[MONTEZUMA_X]), int(after[MONTEZUMA_Y]))
            if key_step is None and after[MONTEZUMA_INVENTORY] & KEY_BIT:
                key_step = step
                if before_key:
                    frozen.update({i: int(ram[i]) for i in range(len(ram)) if ram[i] != after[i] and i not in KEPT})
        return {
            "seed": seed,
            "return": float(info["episode"]["r"][0]),
            "length": step,
            "key_step": key_step,
            "options_after_key": options,
        }
    finally:
        policy.controller_q_values = controller
        envs.close()


def summary(episode: dict[str, Any]) -> str:
    options = episode["options_after_key"]
    stayed = sum(o["from"] == o.get("to") for o in options)
    first = options[0]["from"] if options else None
    key = f"{episode['key_step']:,}" if episode["key_step"] else "–"
    return f"{episode['return']:.0f} | {episode['length']:,} | {key} | {first or '–'} | {len(options)} | {stayed} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="an h-DQN checkpoint of montezuma-hdqn (RAM observations)")
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        onnx = Path(tmp) / "policy.onnx"
        export_checkpoint(args.checkpoint, onnx)
        policy = Policy.load(onnx)
        runs = {
            name: [play(policy, args.seed + j, before_key) for j in range(args.episodes)]
            for name, before_key in (("as trained", False), ("controller shown the RAM before the key", True))
        }
    body = [
        f"Checkpoint `{args.checkpoint}`; greedy episodes (ε = 0 at both levels, seeds {args.seed} to "
        f"{args.seed + args.episodes - 1}), played through its ONNX export as `qagent eval` plays it. Options after "
        "the key: how many the meta-controller chose after the key was taken, and how many of them ended where they "
        "began (the player back in the same place: stood still, or walked into a wall); (x, y) is the player's place "
        "in RAM coordinates when the first of them began (x = 9, y = 192: the key's ledge).",
        "",
        "| controller input | seed | score | length | key at step | place after the key | options after the key "
        "| ended where they began |",
        "|---|---:|---:|---:|---:|---|---:|---:|",
        *(f"| {name} | {e['seed']} | {summary(e)}" for name, episodes in runs.items() for e in episodes),
    ]
    publish(
        "montezuma-probes",
        "Montezuma: what the greedy hierarchy does after the key",
        body,
        {"checkpoint": args.checkpoint, "runs": runs},
        write=not args.no_write,
        also=(DOCS / "hdqn.md",),
    )


if __name__ == "__main__":
    main()
