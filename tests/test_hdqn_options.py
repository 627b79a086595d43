"""h-DQN's options that fail well and its lean controller memory.

- D1 stores each frame once with the goal beside it; the controller inputs it builds at sampling
  equal the ones it used to store whole;
- a lost life ends the option as a failure; a goal whose option timed out is barred from the
  next choices in training, evaluation and served sessions alike;
- the evaluation's epsilon applies at both levels.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from qagent.agents.replay import ReplayBuffer
from qagent.config import resolve_config
from qagent.envs.factory import make_vector_env
from qagent.envs.goals import GoalSpace
from qagent.export import export_checkpoint
from qagent.plugins.registries import register_env, register_goal_space
from qagent.serve import Policy
from qagent.serve.goals import FailedGoals, GoalKeeper, GoalTest
from qagent.training.build import build_agent
from qagent.training.collector import Collector
from qagent.training.evaluation import evaluate_checkpoint, evaluate_policy_file
from qagent.training.loop import start_training

START, RIGHT_END = 3, 6


class Corridor(gym.Env):
    """A corridor 0..6 with lives: stepping onto square 0 costs a life and respawns at 3; +1 at square 6.

    The observation is ``[square, lives]``; actions are left, right, stay.
    """

    observation_space = gym.spaces.Box(0, 10, (2,), np.float32)
    action_space = gym.spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.square, self.lives, self.t = START, 3, 0
        return self._obs(), {}

    def _obs(self):
        return np.array([self.square, self.lives], dtype=np.float32)

    def step(self, action):
        self.t += 1
        self.square += (-1, 1, 0)[int(action)]
        reward = 0.0
        if self.square == 0:
            self.lives -= 1
            self.square = START
        elif self.square == RIGHT_END:
            reward = 1.0
        done = self.lives == 0 or self.square == RIGHT_END
        return self._obs(), reward, done, self.t >= 40 and not done, {}


class CorridorGoals(GoalSpace):
    """Reach the right end (6) or the square next to the pit (1); the lives counter is the input's second entry."""

    lives = 1

    def __init__(self, observation_space: gym.Space) -> None:
        super().__init__(observation_space)
        self.goals = ["right", "left"]
        self.reached_when = [[(0, RIGHT_END, RIGHT_END)], [(0, 1, 1)]]


def _register() -> None:
    """At run time, not at import: the registry tests enumerate what collection registered."""
    register_env("lives-corridor", Corridor)
    register_goal_space("lives-corridor-ends")(CorridorGoals)


CORRIDOR = [
    "env.id=lives-corridor",
    "agent.name=hdqn",
    "agent.goal_space=lives-corridor-ends",
    "agent.max_option_steps=2",
    "agent.step_penalty=0.1",
    "agent.meta_epsilon.start=0.0",
    "agent.meta_epsilon.end=0.0",
    "network.hidden_sizes=[8]",
    "tracking.enabled=false",
    "replay.capacity=2000",
]


def _prefer(agent, goal: int) -> None:
    """Make the meta-controller prefer ``goal`` everywhere (its last layer: zero weights, a bias)."""
    last = [m for m in agent.meta.q_net.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([1.0 if g == goal else 0.0 for g in range(agent.n_goals)]))


def _collect(overrides: list[str], steps: int):
    _register()
    config = resolve_config({}, [*CORRIDOR, *overrides])
    envs = make_vector_env(config.env, 2)
    agent = build_agent(config, envs.single_observation_space, envs.single_action_space)
    _prefer(agent, 0)  # "right": never reachable within an option of 2 steps from where options start
    memory = agent.make_memory(config, envs, seed=0)
    actor = agent.actor(None, envs, memory, seed=0)
    Collector(envs, actor, seed=0).collect(steps, 0)
    return agent, memory, actor


def record_encoded_adds(d1, encoding) -> list[tuple[np.ndarray, np.ndarray]]:
    """Wrap D1's ``add`` so each transition's encoded ``(s, g)`` and ``(s', g)`` are kept, in arrival order."""
    recorded: list[tuple[np.ndarray, np.ndarray]] = []
    add = d1.add

    def recording_add(obs, action, reward, next_obs, terminated, truncated, envs=None, *, goals, continues):
        recorded.extend(zip(encoding(obs, goals), encoding(next_obs, goals), strict=True))
        return add(obs, action, reward, next_obs, terminated, truncated, envs, goals=goals, continues=continues)

    d1.add = recording_add
    return recorded


def _arrival_order(buffer: ReplayBuffer) -> np.ndarray:
    slots = np.flatnonzero(buffer.valid)
    return slots[np.argsort(buffer.transition_id[slots])]


# ---------------------------------------------------------------------- D1: frames once, goals beside them


def test_controller_memory_builds_the_inputs_it_used_to_store(workdir):
    """Atari frames with goal masks: each transition's sampled (s, g) and (s', g) equal the encoded
    inputs of the step, frame stacks reaching back across options, and D1 costs what a flat buffer does."""
    config = resolve_config(
        {},
        [
            "agent.name=hdqn",
            "env.id=ALE/MontezumaRevenge-v5",
            "agent.goal_space=montezuma-ram",
            "network.name=nature-cnn",
            "agent.max_option_steps=5",
            "env.atari.max_frames=600",
            "replay.capacity=4000",
            "tracking.enabled=false",
        ],
    )
    envs = make_vector_env(config.env, 2)
    agent = build_agent(config, envs.single_observation_space, envs.single_action_space)
    assert agent.encoding.kind == "mask" and agent.encoding.shape == (5, 84, 84)
    memory = agent.make_memory(config, envs, seed=0)
    d1 = memory.controller
    stored_whole = record_encoded_adds(d1, agent.encoding)  # what D1 stored before: encoded (s, g) and (s', g)
    Collector(envs, agent.actor(None, envs, memory, seed=0), seed=0).collect(400, 0)
    storage = d1.storage
    slots = _arrival_order(storage)
    assert len(slots) == len(stored_whole) == 800  # 400 steps of 2 envs
    ended = storage.terminated[slots] | storage.truncated[slots]
    assert ended.sum() > 20  # many options ended inside games, episodes too (600-frame games)
    batch = d1.encode(storage.get(slots))
    for k, (obs, next_obs) in enumerate(stored_whole):
        assert np.array_equal(batch.obs[k].numpy(), obs), k
        assert np.array_equal(batch.next_obs[k].numpy(), next_obs), k
    sampled = next(iter(d1.sample_many(1, 64)))
    order = {int(s): k for k, s in enumerate(slots)}
    for row, slot in enumerate(sampled.indices):
        assert np.array_equal(sampled.obs[row].numpy(), stored_whole[order[int(slot)]][0])
    flat = ReplayBuffer(4000, envs.single_observation_space, 0.99, 2, stack=4)
    assert d1.nbytes <= 1.05 * flat.nbytes
    assert d1.nbytes < 0.25 * 4000 * int(np.prod(agent.encoding.shape))  # whole inputs: 35 kB each


def test_controller_memory_resumes_with_its_goals(workdir, tmp_path):
    agent, memory, _ = _collect([], 300)
    path = tmp_path / "buffer-0000000300.npz"
    memory.save(path)
    config = resolve_config({}, CORRIDOR)
    envs = make_vector_env(config.env, 2)
    again = agent.make_memory(config, envs, seed=0)
    again.load(path)
    slots = _arrival_order(memory.controller.storage)
    assert np.array_equal(again.controller.goal, memory.controller.goal) and len(again.meta) == len(memory.meta)
    a = memory.controller.encode(memory.controller.storage.get(slots))
    b = again.controller.encode(again.controller.storage.get(slots))
    assert torch.equal(a.obs, b.obs) and torch.equal(a.next_obs, b.next_obs)
    path.with_name("buffer-0000000300-goals.npz").unlink()
    from qagent.errors import CheckpointError

    with pytest.raises(CheckpointError, match="no goals file"):
        again.load(path)


# ---------------------------------------------------------------------- options that fail well


def test_a_lost_life_ends_the_option_as_a_failure(workdir):
    agent, memory, actor = _collect([], 600)
    d1 = memory.controller.storage
    slots = _arrival_order(d1)
    obs, next_obs = d1.observations(slots), d1.observations(d1._next(slots))
    lost = next_obs[:, 1] < obs[:, 1]
    assert lost.sum() >= 5
    assert d1.terminated[slots][lost].all()  # terminal for the controller
    assert np.allclose(d1.reward[slots][lost], -0.1)  # no intrinsic reward (less the step penalty)
    # the next transition of that stream continues the game: it starts from the respawned square
    stats = actor.exploration.stats
    assert stats.chosen.sum() > 0 and stats.success_rate(1) is not None


def _options_by_stream(d2: ReplayBuffer) -> list[list[tuple[np.ndarray, int, np.ndarray, bool]]]:
    """Per env, its options in order: (start observation, goal, end observation, episode over)."""
    slots = _arrival_order(d2)
    starts, ends = d2.observations(slots), d2.observations(d2._next(slots))
    streams: list[list] = [[] for _ in range(d2.num_envs)]
    for k, slot in enumerate(slots):
        over = bool(d2.terminated[slot] or d2.truncated[slot])
        streams[slot // d2.per_env].append((starts[k], int(d2.action[slot]), ends[k], over))
    return streams


def test_a_goal_whose_option_timed_out_is_not_chosen_again_at_once(workdir):
    """The meta-controller prefers "right", which an option of 2 steps never reaches: without the bar,
    every option would pursue it; with it, a timed-out "right" is followed by "left" wherever "left" is valid."""
    agent, memory, actor = _collect([], 600)
    checked = 0
    for options in _options_by_stream(memory.meta):
        for (start, goal, end, over), (next_start, next_goal, _, _) in zip(options, options[1:]):
            timed_out = goal == 0 and not over and end[1] == start[1]  # no life lost, the game went on
            if timed_out and next_start[0] != 1:  # "left" is valid where the player does not stand on it
                assert next_goal == 1
                checked += 1
    assert checked > 20
    goals = memory.meta.action[_arrival_order(memory.meta)]
    assert 0.3 < (goals == 1).mean() < 0.7


def test_goal_keeper_bars_failed_goals_until_something_changes():
    test = GoalTest({"goals": ["a", "b", "c"], "reached_when": [[(0, 1, 1)], [(0, 2, 2)], [(0, 3, 3)]], "lives": 1})
    keeper = GoalKeeper(test, max_option_steps=2)
    prefer_a = lambda: np.array([3.0, 2.0, 1.0])  # noqa: E731
    here = np.array([0, 5])
    picks = [keeper.step(here, prefer_a) for _ in range(8)]
    # a times out, then b (a barred), then c (a, b barred), then all are barred: a again
    assert [g for g, new in picks if new] == [0, 1, 2, 0]
    keeper.reset()
    keeper.step(here, prefer_a)
    keeper.step(here, prefer_a)
    assert keeper.step(here, prefer_a) == (1, True)  # a failed
    assert keeper.step(np.array([0, 4]), prefer_a) == (0, True)  # a life lost: the option fails, the bar lifts
    assert keeper.step(np.array([1, 4]), prefer_a) == (1, True)  # a reached: b (a is reached, so not valid)
    four = GoalTest({"goals": list("abcd"), "reached_when": [[(0, g, g)] for g in range(1, 5)]})
    prefer_order = lambda: np.array([4.0, 3.0, 2.0, 1.0])  # noqa: E731
    for retry_after, fourth in ((None, 3), (2, 0)):  # with retry_failed_after=2, a is allowed again at step 4
        keeper = GoalKeeper(four, max_option_steps=1, retry_failed_after=retry_after)
        assert [keeper.step(np.array([0]), prefer_order)[0] for _ in range(4)] == [0, 1, 2, fourth]
    failed = FailedGoals(2, None)
    failed.fail(0)
    assert failed.allowed(np.array([True, True])).tolist() == [False, True]
    assert failed.allowed(np.array([True, False])).tolist() == [True, False]  # all barred: a new round
    assert failed.allowed(np.array([True, True])).tolist() == [True, True]


def test_goal_inputs_must_reach_every_clause_the_test_reads():
    """``requires`` clauses may read past every ``reached_when`` index (minigrid-objects' presence bits)."""
    test = GoalTest({"goals": ["a"], "reached_when": [[(0, 1, 1)]], "requires": [[(9, 1, 1)]], "lives": 4})
    assert test.input_size == 10
    with pytest.raises(ValueError, match="at least 10 numbers"):
        test.check_input([0, 0, 0])
    with pytest.raises(ValueError, match="'lives' must be an index"):
        GoalTest({"goals": ["a"], "reached_when": [[(0, 1, 1)]], "lives": -1})


def test_training_reads_the_lives_counter_when_an_episode_starts(workdir):
    agent, memory, actor = _collect([], 5)
    actor.lives[:] = np.nan
    obs = np.array([[START, 3], [START, 2]], dtype=np.float32)
    actor.episodes_started(np.array([True, True]), obs)
    assert actor.lives.tolist() == [3.0, 2.0]  # each reset's goal input: a life lost at once then counts


def test_goal_keeper_epsilon_picks_random_allowed_goals():
    test = GoalTest({"goals": ["a", "b", "c"], "reached_when": [[(0, 1, 1)], [(0, 2, 2)], [(0, 3, 3)]]})
    keeper = GoalKeeper(test, max_option_steps=1)
    keeper.explore(1.0, np.random.default_rng(0))
    picks = {keeper.step(np.array([2]), lambda: np.array([3.0, 2.0, 1.0]))[0] for _ in range(30)}
    assert picks == {0, 2}  # b is reached where the player stands, so never chosen


# ---------------------------------------------------------------------- evaluation and serving agree


@pytest.fixture(scope="module")
def corridor_run(tmp_path_factory):
    _register()
    root = tmp_path_factory.mktemp("corridor")
    import os

    cwd = os.getcwd()
    os.chdir(root)
    try:
        sets = [
            *CORRIDOR,
            "agent.meta_epsilon.start=1.0",
            "agent.controller.learning_starts=100",
            "agent.meta.learning_starts=100",
            "train.total_steps=600",
            "eval.every=null",
            "eval.final_episodes=2",
        ]
        result = start_training(resolve_config({}, sets), run_name="c", progress=False)
        export_checkpoint(result.checkpoint, root / "c.onnx")
    finally:
        os.chdir(cwd)
    return root


@pytest.mark.parametrize("epsilon", [0.0, 0.3])
def test_served_sessions_act_as_evaluation_does(corridor_run, epsilon):
    """Same seed, same episodes: the checkpoint's evaluator and the ONNX file's served sessions choose
    the same goals (failed ones barred, random ones with epsilon at both levels) and actions."""
    policy = Policy.load(corridor_run / "c.onnx")
    assert policy.metadata["hierarchy"]["goal_space"]["lives"] == 1
    assert policy.retry_failed_after is None and policy.max_option_steps == 2
    checkpoint = evaluate_checkpoint(str(corridor_run / "runs/c"), episodes=6, seed=3, epsilon=epsilon)
    served = evaluate_policy_file(corridor_run / "c.onnx", episodes=6, seed=3, epsilon=epsilon)
    assert checkpoint.returns == served.returns and checkpoint.lengths == served.lengths
    assert checkpoint.protocol == served.protocol == ("greedy (ε=0)" if epsilon == 0 else "ε=0.3")


def test_evaluation_epsilon_reaches_the_goal_level(corridor_run):
    from qagent.agents.base import explore_goals
    from qagent.training.build import load_agent
    from qagent.training.evaluation import SessionActor

    loaded = load_agent(str(corridor_run / "runs/c"))
    for actor in (loaded.agent.policy.evaluator(), SessionActor(Policy.load(corridor_run / "c.onnx"))):
        explore_goals(actor, 0.5, seed=0)
        actor.reset(np.ones(3, dtype=bool))
        keepers = getattr(actor, "keepers", None) or [session.keeper for session in actor.sessions]
        assert [k.epsilon for k in keepers] == [0.5] * 3 and keepers[0].rng is keepers[2].rng
        explore_goals(actor, 0.0, seed=0)  # a greedy evaluation after it is greedy at the goal level too
        assert [k.epsilon for k in keepers] == [0.0] * 3


def test_controller_memory_builds_observed_masks_from_the_stored_grids(workdir):
    """MiniGrid planes with observed masks: D1 keeps the grid alone and reads each goal's plane
    from it when sampling, as the actor did when it acted."""
    config = resolve_config(
        {},
        [
            "agent.name=hdqn",
            "env.id=MiniGrid-UnlockPickup-v0",
            "env.minigrid.observation=onehot-image",
            "network.name=grid-cnn",
            "agent.goal_space=minigrid-objects",
            "agent.goal_encoding=observed-mask",
            "agent.max_option_steps=10",
            "replay.capacity=1000",
            "tracking.enabled=false",
        ],
    )
    envs = make_vector_env(config.env, 2)
    agent = build_agent(config, envs.single_observation_space, envs.single_action_space)
    memory = agent.make_memory(config, envs, seed=0)
    d1 = memory.controller
    pairs = record_encoded_adds(d1, agent.encoding)
    Collector(envs, agent.actor(None, envs, memory, seed=0), seed=0).collect(150, 0)
    encoded = [obs for obs, _ in pairs]
    slots = _arrival_order(d1.storage)
    batch = d1.encode(d1.storage.get(slots))
    assert len(encoded) == len(slots) == 300 and batch.obs.shape[1:] == (16, 11, 6)
    assert all(np.array_equal(batch.obs[k].numpy(), x) for k, x in enumerate(encoded))
    assert batch.obs[:, -1].amax() == 255  # the goals' objects are marked
