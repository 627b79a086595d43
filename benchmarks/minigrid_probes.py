"""Two MiniGrid facts behind docs/hdqn.md's MiniGrid results, measured rather than guessed.

1. What one ``grid-cnn`` update costs on each task's whole grid (and on the 7x7 view from the
   agent): the controller's network on ``onehot-image`` planes with one goal plane per goal,
   batch 64, two forward passes without gradients (the double-DQN target), one with, backward
   and the Adam step, one thread. MultiRoom's 25x25 grid is why its benchmark rows use the view.
2. How often 50 (and 100) random actions take UnlockPickup's box from "key in hand, door open"
   (and from empty hands): the chance that the ``box`` option is ever paid while the
   controller still explores at random; and how often they destroy it instead (MiniGrid's
   ``toggle`` on a box replaces it with its contents, nothing here, so the game cannot be won).

    python benchmarks/minigrid_probes.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import DOCS, publish  # noqa: E402

from qagent.config import EnvConfig  # noqa: E402
from qagent.envs.factory import make_env  # noqa: E402

GRIDS = {
    "UnlockPickup (whole grid)": ("MiniGrid-UnlockPickup-v0", True),
    "MultiRoom-N2-S4 (whole grid)": ("MiniGrid-MultiRoom-N2-S4-v0", True),
    "MultiRoom-N2-S4 (7x7 view)": ("MiniGrid-MultiRoom-N2-S4-v0", False),
}
N_GOALS = 5  # minigrid-objects' goals, one plane each (the preset's planes encoding)
BATCH, REPEATS, TRIALS = 64, 30, 2000


def grid_cnn(shape: tuple[int, ...], channels: tuple[int, ...] = (32, 64, 64)) -> torch.nn.Module:
    """``grid-cnn``'s layers (3x3, the first at stride 1, the others at stride 2) and a 7-action head."""
    layers: list[torch.nn.Module] = []
    previous = shape[0]
    for i, width in enumerate(channels):
        layers += [torch.nn.Conv2d(previous, width, 3, stride=1 if i == 0 else 2, padding=1), torch.nn.ReLU()]
        previous = width
    convs = torch.nn.Sequential(*layers, torch.nn.Flatten())
    features = convs(torch.zeros(1, *shape)).shape[1]
    return torch.nn.Sequential(convs, torch.nn.Linear(features, 256), torch.nn.ReLU(), torch.nn.Linear(256, 7))


def update_ms(shape: tuple[int, ...]) -> float:
    torch.set_num_threads(1)
    net = grid_cnn(shape)
    optimizer = torch.optim.Adam(net.parameters())
    x = torch.rand(BATCH, *shape)

    def update() -> None:
        with torch.no_grad():
            net(x)
            net(x)
        loss = net(x).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for _ in range(3):
        update()
    started = time.perf_counter()
    for _ in range(REPEATS):
        update()
    return (time.perf_counter() - started) / REPEATS * 1000


def random_box_rates(steps: int, key_in_hand: bool) -> dict[str, float]:
    """Random actions from the start position with the door open (and the key carried or gone):
    the share of episodes that took the box, and the share that destroyed it first."""
    env = gym.make("MiniGrid-UnlockPickup-v0")
    rng = np.random.default_rng(0)
    taken = destroyed = 0
    for trial in range(TRIALS):
        env.reset(seed=trial)
        game = env.unwrapped
        key = next(cell for cell in game.grid.grid if cell is not None and cell.type == "key")
        game.grid.grid[game.grid.grid.index(key)] = None
        door = next(cell for cell in game.grid.grid if cell is not None and cell.type == "door")
        door.is_locked, door.is_open = False, True
        game.carrying = key if key_in_hand else None
        for _ in range(steps):
            env.step(int(rng.integers(7)))
            if game.carrying is not None and game.carrying.type == "box":
                taken += 1
                break
            if not any(cell is not None and cell.type == "box" for cell in game.grid.grid):
                destroyed += 1
                break
    return {"taken": taken / TRIALS, "destroyed": destroyed / TRIALS}


def main() -> None:
    updates: dict[str, Any] = {}
    for name, (env_id, whole) in GRIDS.items():
        env = EnvConfig(id=env_id, minigrid={"observation": "onehot-image", "fully_observable": whole})
        channels, *cells = make_env(env, training=False).observation_space.shape
        shape = (channels + N_GOALS, *cells)
        updates[name] = {"shape": list(shape), "update_ms": round(update_ms(shape), 1)}
    rates = {
        f"{steps} steps, {'key in hand' if key else 'empty hands'}": random_box_rates(steps, key)
        for steps in (50, 100)
        for key in (True, False)
    }
    body = [
        f"One `grid-cnn` update of the h-DQN controller (batch {BATCH}: two forward passes without gradients, "
        f"one with, backward and Adam; one thread; mean of {REPEATS}):",
        "",
        "| observation | controller input | ms per update |",
        "|---|---|---:|",
        *(f"| {name} | {'x'.join(map(str, u['shape']))} | {u['update_ms']} |" for name, u in updates.items()),
        "",
        f"UnlockPickup: how often random actions take the box with the door open, and how often they "
        f"destroy it first (`toggle` on a box leaves nothing; {TRIALS} episodes each):",
        "",
        "| random actions | box taken | box destroyed |",
        "|---|---:|---:|",
        *(f"| {name} | {r['taken']:.1%} | {r['destroyed']:.1%} |" for name, r in rates.items()),
    ]
    publish(
        "minigrid-probes",
        "MiniGrid: update cost per grid, and the box by chance",
        body,
        {"updates": updates, "random_box": rates},
        also=(DOCS / "hdqn.md",),
    )


if __name__ == "__main__":
    main()
