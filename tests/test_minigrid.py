"""MiniGrid beyond DoorKey: one-hot planes, the grid torso, goals that know which objects a task has,
schedules relative to the budget, and one h-DQN preset for several tasks."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from qagent.agents.hdqn.config import Annealing
from qagent.agents.networks.torsos import GridCNN
from qagent.config import load_config, resolve_config
from qagent.envs.factory import make_env
from qagent.envs.goals import MiniGridObjectGoals
from qagent.training.loop import start_training

TASKS = ["MiniGrid-KeyCorridorS3R1-v0", "MiniGrid-UnlockPickup-v0", "MiniGrid-MultiRoom-N2-S4-v0"]


def _env(env_id: str, observation: str) -> gym.Env:
    return make_env(resolve_config({}, [f"env.id={env_id}", f"env.minigrid.observation={observation}"]).env)


def test_onehot_image_holds_the_flat_codes_as_planes():
    flat, image = _env("MiniGrid-UnlockPickup-v0", "flat"), _env("MiniGrid-UnlockPickup-v0", "onehot-image")
    a, _ = flat.reset(seed=4)
    b, _ = image.reset(seed=4)
    assert image.observation_space.shape == b.shape == (15, 11, 6) and b.dtype == np.uint8
    assert set(np.unique(b)) == {0, 255} and (b.sum(axis=0) == 2 * 255).all()  # one type and one state per cell
    assert np.array_equal(b.transpose(1, 2, 0).reshape(-1) / 255, a)
    for action in (0, 2, 2, 1):
        a, *_ = flat.step(action)
        b, *_ = image.step(action)
        assert np.array_equal(b.transpose(1, 2, 0).reshape(-1) / 255, a)


@pytest.mark.parametrize("size", [(7, 3), (6, 6), (25, 25)])
def test_grid_cnn_takes_rooms_of_any_size(size):
    space = gym.spaces.Box(0, 255, (15, *size), np.uint8)
    torso = GridCNN(space, GridCNN.Config())
    out = torso(torch.zeros(2, 15, *size, dtype=torch.uint8))
    assert out.shape == (2, 256) and torso.output_dim == 256
    assert sum(p.numel() for p in torso.parameters()) < 1_000_000  # a 25x25 room ends in 7x7 cells of features


def _carry(env: gym.Env, kind: str) -> None:
    grid = env.unwrapped
    cell = next(c for c in grid.grid.grid if c is not None and c.type == kind)
    grid.carrying = cell
    grid.grid.grid[grid.grid.grid.index(cell)] = None


def test_minigrid_objects_offers_only_the_objects_a_task_has():
    for env_id, valid in (
        ("MiniGrid-KeyCorridorS3R1-v0", ["key", "door", "ball"]),
        ("MiniGrid-UnlockPickup-v0", ["key", "door", "box"]),
        ("MiniGrid-MultiRoom-N2-S4-v0", ["door", "goal"]),
        ("MiniGrid-DoorKey-6x6-v0", ["key", "door", "goal"]),
    ):
        env = _env(env_id, "onehot-image")
        obs, _ = env.reset(seed=0)
        goals = MiniGridObjectGoals(env.observation_space)
        x = goals.goal_input(env, obs)
        assert [g for g, ok in zip(goals.goals, goals.test.valid(x), strict=True) if ok] == valid, env_id
    env = _env("MiniGrid-UnlockPickup-v0", "onehot-image")
    obs, _ = env.reset(seed=0)
    _carry(env, "box")
    x = goals.goal_input(env, obs)
    assert goals.test.reached(x).tolist() == [False, False, False, False, True] and x[9] == 1  # carried: still there
    with pytest.raises(Exception, match="choose from key, door, goal, ball, box"):
        MiniGridObjectGoals(env.observation_space, goals=["chest"])


def test_the_drop_goal_is_chosen_only_with_something_in_hand():
    env = _env("MiniGrid-UnlockPickup-v0", "onehot-image")
    obs, _ = env.reset(seed=0)
    goals = MiniGridObjectGoals(env.observation_space, goals=["key", "door", "box", "drop"])
    assert "drop" not in MiniGridObjectGoals(env.observation_space).goals  # only when named
    x = goals.goal_input(env, obs)
    assert goals.test.valid(x).tolist() == [True, True, True, False] and goals.test.reached(x)[3]
    _carry(env, "key")
    x = goals.goal_input(env, obs)
    assert goals.test.valid(x).tolist() == [False, True, True, False]  # no drop while a door is closed
    door = next(c for c in env.unwrapped.grid.grid if c is not None and c.type == "door")
    door.is_locked, door.is_open = False, True
    x = goals.goal_input(env, obs)
    assert goals.test.valid(x).tolist() == [False, False, True, True] and not goals.test.reached(x)[3]
    key, env.unwrapped.carrying = env.unwrapped.carrying, None
    env.unwrapped.place_obj(key)  # dropped on the floor: not taken again once the doors are open
    assert goals.test.valid(goals.goal_input(env, obs)).tolist() == [False, False, True, False]
    assert goals.channels()[3] == [] and goals.regions(env)[3] is None  # nothing to mark or draw


def test_annealing_as_a_fraction_of_the_budget():
    schedule = Annealing(start=1.0, end=0.1, fraction=0.1)
    assert schedule.at(0, 1_000_000) == 1.0 and schedule.at(50_000, 1_000_000) == pytest.approx(0.55)
    assert schedule.at(100_000, 1_000_000) == pytest.approx(0.1) and schedule.at(50_000, 2_000_000) > 0.7
    with pytest.raises(ValueError, match="train.total_steps"):
        schedule.at(10)
    assert Annealing(steps=10).at(5) == pytest.approx(0.55)  # steps when no fraction


@pytest.mark.parametrize("env_id", TASKS)
def test_one_hdqn_preset_trains_on_other_tasks_with_only_the_env_changed(env_id, workdir):
    sets = [
        f"env.id={env_id}",
        "tracking.enabled=false",
        "train.total_steps=800",
        "agent.controller.learning_starts=200",
        "agent.meta.learning_starts=200",
        "agent.controller.train_freq=16",
        "agent.meta.train_freq=16",
        "eval.every=null",
        "eval.final_episodes=2",
    ]
    result = start_training(load_config("minigrid-hdqn", sets), run_name="m", progress=False)
    assert result.step == 800 and result.last_eval is not None and result.last_eval["final"]
    meta = json.loads((result.run_dir / "run.json").read_text())
    assert set(meta["goals"]) == {"key", "door", "goal", "ball", "box", "drop"}
    chosen = {name for name, goal in meta["goals"].items() if goal["chosen"]}
    assert chosen and chosen <= {"key", "door", "goal", "ball", "box", "drop"} - (
        {"goal", "box"}
        if "KeyCorridor" in env_id
        else {"goal", "ball"}
        if "Unlock" in env_id
        else {"key", "ball", "box"}
    )
