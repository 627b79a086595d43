"""h-DQN: the decision process, goal tests, options and memories, learning, export and serving."""

from __future__ import annotations

import http.client
import json
import threading

import gymnasium as gym
import numpy as np
import pytest
from conftest import run_qagent, train_and_export

from qagent.agents.hdqn import GoalStats, HDQNExploration
from qagent.config import resolve_config
from qagent.envs.factory import make_env, make_vector_env
from qagent.envs.goals import MiniGridObjectGoals, StateIndexGoals
from qagent.envs.sdp import StochasticDecisionProcess, optimal_value
from qagent.envs.spaces import describe_observation_space
from qagent.errors import ConfigError
from qagent.export import export_checkpoint
from qagent.plugins.registries import register_env
from qagent.serve import InputError, Policy
from qagent.serve.goals import GoalEncoding, GoalKeeper, GoalTest
from qagent.serve.http import PolicyServer, ServerOptions
from qagent.training.build import build_agent
from qagent.training.collector import Collector
from qagent.training.evaluation import evaluate_checkpoint, evaluate_policy_file
from qagent.training.loop import start_training

# ---------------------------------------------------------------------- the decision process


def test_sdp_transition_probabilities():
    env = StochasticDecisionProcess(max_steps=None)
    n = 4000
    counts: dict[tuple[int, int], dict[int, int]] = {}
    for trial in range(n):
        for state, action in ((2, 1), (5, 1), (3, 0)):
            env.reset(seed=trial * 7 + state * 3 + action)
            env.state = state
            next_state = env.step(action)[0]
            counts.setdefault((state, action), {}).setdefault(next_state, 0)
            counts[(state, action)][next_state] += 1
    sigma = 4 * np.sqrt(0.25 / n)  # four standard deviations of a fair coin's frequency
    assert set(counts[(2, 1)]) == {1, 3} and abs(counts[(2, 1)][3] / n - 0.5) < sigma
    assert set(counts[(5, 1)]) == {4, 5} and abs(counts[(5, 1)][5] / n - 0.5) < sigma  # s6 "right" stays
    assert counts[(3, 0)] == {2: n}  # "left" is deterministic


def test_sdp_rewards_start_and_terminal():
    env = StochasticDecisionProcess()
    assert env.reset(seed=0)[0] == 1  # s2
    assert env.step(0)[1:3] == (0.01, True)  # straight to s1 without s6
    env.reset(seed=0)
    env.state = 4
    rewards = []
    while True:  # right until s6, then left to s1
        obs, reward, terminated, _, _ = env.step(1 if not env.visited_last else 0)
        rewards.append(reward)
        if terminated:
            break
    assert rewards[-1] == 1.0 and sum(rewards) == 1.0


def test_sdp_value_iteration_gives_the_papers_optimum():
    assert optimal_value() == pytest.approx(0.208, abs=1e-9)
    assert optimal_value(right_success=1.0) == pytest.approx(1.0)  # deterministic: always reach s6


# ---------------------------------------------------------------------- goal tests and options


def test_goal_test_clauses_validity_and_requirements():
    test = GoalTest(
        {
            "goals": ["key", "door", "far"],
            "reached_when": [[(0, 1, 1)], [(1, 1, 1)], [(2, 5, 9), (3, 0, 0)]],
            "requires": [[], [(0, 1, 1)], []],
        }
    )
    assert test.input_size == 4
    x = np.array([0, 0, 7, 0])
    assert test.reached(x).tolist() == [False, False, True]
    assert test.valid(x).tolist() == [True, False, False]  # no key yet: the door is refused
    assert test.valid(np.array([1, 0, 0, 0])).tolist() == [False, True, True]
    assert test.valid(np.array([1, 1, 7, 0])).tolist() == [True, True, True]  # nothing left: all allowed
    with pytest.raises(ValueError, match="at least 4 numbers"):
        test.check_input([1, 2])


def test_goal_keeper_keeps_goals_until_reached_or_timed_out():
    test = StateIndexGoals(gym.spaces.Discrete(4)).test
    keeper = GoalKeeper(test, max_option_steps=3)
    q = np.array([0.1, 0.9, 0.5, 0.2])
    asked = []

    def meta_q():
        asked.append(1)
        return q

    assert keeper.step([0], meta_q) == (1, True)  # best valid goal
    assert keeper.step([2], meta_q) == (1, False)  # kept while not reached
    assert keeper.step([1], meta_q) == (2, True)  # reached s2: s2 itself is refused, s3 is next best
    keeper.step([0], meta_q)
    keeper.step([0], meta_q)
    assert keeper.step([0], meta_q) == (1, True)  # three steps without reaching s3: chosen anew (s2 again)
    assert len(asked) == 3
    keeper.reset()
    assert keeper.goal is None


def test_goal_stats_drive_the_per_goal_epsilon():
    stats = GoalStats(n_goals=2, window=4)
    assert stats.epsilon(0, floor=0.1) == 1.0  # never tried
    for reached in (True, True, True, False):
        stats.record(0, reached)
    assert stats.success_rate(0) == 0.75 and stats.epsilon(0, floor=0.1) == pytest.approx(0.25)
    for _ in range(4):
        stats.record(0, True)  # the window forgets the failure
    assert stats.epsilon(0, floor=0.1) == 0.1
    stats.record(1, False)
    assert stats.epsilon(1, floor=0.1) == 1.0

    config = resolve_config(
        {},
        [
            "agent.name=hdqn",
            "env.id=stochastic-decision-process",
            "agent.controller_epsilon=success-rate",
            "agent.success_window=4",
        ],
    ).agent
    explore = HDQNExploration(config, n_goals=2, n_actions=2, seed=0)
    for reached in (True, False, False, False):
        explore.stats.record(0, reached)
    assert explore.controller_epsilon(10**6, goal=0) == pytest.approx(0.75)  # the goal's own rate, not the step
    assert explore.controller_epsilon(0, goal=1) == 1.0
    annealed = HDQNExploration(resolve_config({}, ["agent.name=hdqn"]).agent, 2, 2, seed=0)
    assert annealed.controller_epsilon(10**6, goal=0) == pytest.approx(0.1)  # one schedule for every goal


class Chain(gym.Env):
    """Five states in a row; every step pays 0.1 * the state it lands in; state 4 is terminal."""

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Discrete(5)
        self.action_space = gym.spaces.Discrete(2)
        self.state = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.state, self.t = int(self.np_random.integers(0, 3)), 0
        return self.state, {}

    def step(self, action):
        self.state = min(4, max(0, self.state + (1 if action else -1)))
        self.t += 1
        return self.state, 0.1 * self.state, self.state == 4, self.t >= 12 and self.state != 4, {}


def _stream(memory) -> list[tuple]:
    """(obs, action, reward, next_obs, terminated, truncated) in arrival order; D1's as the controller sees them."""
    buffer = getattr(memory, "storage", memory)
    slots = np.flatnonzero(buffer.valid)
    slots = slots[np.argsort(buffer.transition_id[slots])]
    nxt = buffer._next(slots)
    obs, next_obs = buffer.observations(slots), buffer.observations(nxt)
    if buffer is not memory:  # D1 keeps raw observations and their goals
        obs, next_obs = memory.inputs(obs, slots), memory.inputs(next_obs, slots)
    return [
        (
            obs[k].copy(),
            int(buffer.action[s]),
            float(buffer.reward[s]),
            next_obs[k].copy(),
            bool(buffer.terminated[s]),
            bool(buffer.truncated[s]),
        )
        for k, (s, n) in enumerate(zip(slots, nxt))
    ]


@pytest.mark.parametrize("max_option_steps", [None, 3])
def test_options_fill_both_memories(workdir, max_option_steps):
    register_env("chain", Chain)
    overrides = [
        "env.id=chain",
        "agent.name=hdqn",
        "agent.intrinsic_reward=2.0",
        "agent.step_penalty=0.25",
        f"agent.max_option_steps={max_option_steps if max_option_steps else 'null'}",
        "network.hidden_sizes=[8]",
        "tracking.enabled=false",
        "replay.capacity=1000",
    ]
    config = resolve_config({}, overrides)
    envs = make_vector_env(config.env, 1)
    log: list[tuple] = []
    inner = envs.envs[0]
    original_step = inner.step

    def logged_step(action):
        out = original_step(action)
        log.append((int(action), float(out[1]), bool(out[2]), bool(out[3])))
        return out

    inner.step = logged_step
    agent = build_agent(config, envs.single_observation_space, envs.single_action_space)
    memory = agent.make_memory(config, envs, seed=0)
    d1, d2 = memory.controller, memory.meta
    collector = Collector(envs, agent.actor(None, envs, memory, seed=0), seed=0)  # h-DQN explores on its own
    collector.collect(200, 0)

    controller = _stream(d1)
    meta = _stream(d2)
    assert len(controller) == 200 == len(log)
    # Rebuild the options from D1 (goal = one-hot tail of the controller's input) and the env log.
    expected_meta, option, start = [], [], None
    for (c_obs, action, r_int, c_next, terminal, _), (a, r_ext, term, trunc) in zip(controller, log):
        state, goal = int(np.argmax(c_obs[:5])), int(np.argmax(c_obs[5:]))
        next_state = int(np.argmax(c_next[:5]))
        reached = next_state == goal
        assert action == a and int(np.argmax(c_next[5:])) == goal
        assert r_int == pytest.approx(2.0 * reached - 0.25)  # the internal critic
        assert terminal == (reached or term)  # reaching the goal ends the controller's episode
        if start is None:
            start = state
        option.append(r_ext)
        timed_out = max_option_steps is not None and len(option) >= max_option_steps
        if reached or term or trunc or timed_out:
            expected_meta.append((start, goal, sum(option), next_state, term, trunc and not term))
            option, start = [], None
    assert len(meta) == len(expected_meta) > 10
    for (s0, g, f, s_end, term, trunc), want in zip(meta, expected_meta):
        assert (int(s0), g, int(s_end), term, trunc) == (want[0], want[1], want[3], want[4], want[5])
        assert f == pytest.approx(want[2], abs=1e-6)  # F: the extrinsic reward summed over the option
    if max_option_steps:
        assert max(len_ for len_ in _option_lengths(controller)) <= max_option_steps


def _option_lengths(controller) -> list[int]:
    lengths, n = [], 0
    for *_, terminal, truncated in controller:
        n += 1
        if terminal or truncated:
            lengths.append(n)
            n = 0
    return lengths


def test_hdqn_config_errors(workdir):
    with pytest.raises(ConfigError, match="Discrete observation space"):
        build_agent(resolve_config({}, ["agent.name=hdqn"]), gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2))
    with pytest.raises(ConfigError, match="exploration section does not apply"):
        resolve_config({}, ["agent.name=hdqn", "env.id=stochastic-decision-process", "exploration.name=boltzmann"])
    with pytest.raises(ConfigError, match="agent.meta.name must be 'dqn'"):
        resolve_config({}, ["agent.name=hdqn", "agent.meta.name=c51"])
    with pytest.raises(ConfigError, match=r"agent.meta.batch_size \(64\) is larger than agent.meta_replay.capacity"):
        resolve_config({}, ["agent.name=hdqn", "agent.meta.batch_size=64", "agent.meta_replay.capacity=50"])
    with pytest.raises(ConfigError, match="leaves no joint training"):
        resolve_config({}, ["agent.name=hdqn", "agent.pretrain_steps=50000", "train.total_steps=50000"])
    with pytest.raises(ConfigError, match="unknown MiniGrid goal 'chest'"):
        MiniGridObjectGoals(gym.spaces.Discrete(3), goals=["key", "chest"])
    with pytest.raises(ConfigError, match="h-DQN collects serially"):  # refused with the config, before any run
        resolve_config({}, ["agent.name=hdqn", "env.id=stochastic-decision-process", "train.async_collection=true"])
    with pytest.raises(Exception, match="did you mean 'state-index'"):
        resolve_config({}, ["agent.name=hdqn", "agent.goal_space=state-indx"])
    sdp = resolve_config({}, ["agent.name=hdqn", "env.id=stochastic-decision-process", "agent.goal_encoding=planes"])
    with pytest.raises(ConfigError, match="draws goals into image observations"):
        build_agent(sdp, gym.spaces.Discrete(6), gym.spaces.Discrete(2))
    mask = resolve_config({}, ["agent.name=hdqn", "agent.goal_space=minigrid-objects", "agent.goal_encoding=mask"])
    with pytest.raises(ConfigError, match="needs a rectangle per goal") as caught:
        build_agent(mask, gym.spaces.Box(0, 255, (3, 5, 5), np.uint8), gym.spaces.Discrete(7))
    assert "use planes" in caught.value.hint
    observed = resolve_config(
        {}, ["agent.name=hdqn", "agent.goal_space=minigrid-objects", "agent.goal_encoding=observed-mask"]
    )
    with pytest.raises(ConfigError, match="channels of the observation that show where it is") as caught:
        build_agent(observed, gym.spaces.Box(0, 255, (3, 5, 5), np.uint8), gym.spaces.Discrete(7))  # MiniGrid's "image"
    assert "cannot place its goals" in caught.value.hint


def test_goal_encodings_draw_the_goal_into_vectors_and_images():
    vector = GoalEncoding("vector", {"space": "Discrete", "shape": [], "n": 3}, n_goals=2)
    assert vector.shape == (5,) and vector(np.array([2, 0]), np.array([1, 0])).tolist() == [
        [0, 0, 1, 0, 1],
        [1, 0, 0, 1, 0],
    ]
    image = {"space": "Box", "shape": [2, 4, 6], "dtype": "uint8"}
    frames = np.arange(2 * 2 * 4 * 6, dtype=np.uint8).reshape(2, 2, 4, 6)
    planes = GoalEncoding("planes", image, n_goals=3)
    x = planes(frames, np.array([2, 0]))
    assert x.shape == (2, 5, 4, 6) == (2, *planes.shape) and x.dtype == np.uint8
    assert np.array_equal(x[:, :2], frames)  # the image itself comes first, unscaled
    assert [x[0, 2 + g].max() for g in range(3)] == [0, 0, 255] and (x[1, 2] == 255).all() and x[1, 3:].max() == 0
    mask = GoalEncoding("mask", image, n_goals=2, masks=[[0, 2, 0, 3], [1, 4, 5, 6]])
    x = mask(frames, np.array([1, 0]))
    assert x.shape == (2, 3, 4, 6) and np.flatnonzero(x[0, 2].reshape(-1)).tolist() == [11, 17, 23]
    assert x[1, 2, :2, :3].min() == 255 and x[1, 2].sum() == 6 * 255
    floats = GoalEncoding("planes", {**image, "dtype": "float32"}, n_goals=1)
    assert floats(frames.astype(np.float32), np.array([0, 0]))[:, 2].max() == 1.0  # "on" is 1 for floats
    assert GoalEncoding.from_description(mask.describe(), image, 2).masks == mask.masks
    assert GoalEncoding.from_description(None, image, 2).kind == "vector"  # files exported before encodings
    observed = GoalEncoding("observed-mask", image, n_goals=3, channels=[[1], [0, 1], []])
    x = observed(frames, np.array([0, 1]))
    assert x.shape == (2, 3, 4, 6) == (2, *observed.shape) and np.array_equal(x[:, :2], frames)
    assert np.array_equal(x[0, 2], frames[0, 1]) and np.array_equal(x[1, 2], frames[1].max(axis=0))
    assert observed(frames, np.array([2, 2]))[:, 2].max() == 0  # a goal no channel shows: an empty plane
    assert GoalEncoding.from_description(observed.describe(), image, 3).channels == [[1], [0, 1], []]
    with pytest.raises(ValueError, match="channels of the observation"):
        GoalEncoding("observed-mask", image, n_goals=1, channels=[[2]])  # the image has channels 0 and 1


# ---------------------------------------------------------------------- goal spaces on real games


def test_observed_masks_mark_where_each_minigrid_object_lies_in_this_episode():
    config = resolve_config({}, ["env.id=MiniGrid-UnlockPickup-v0", "env.minigrid.observation=onehot-image"])
    env = make_env(config.env, training=False)
    goals = MiniGridObjectGoals(env.observation_space)
    encoding = GoalEncoding(
        "observed-mask", describe_observation_space(env.observation_space), len(goals.goals), channels=goals.channels()
    )
    for seed in (0, 1):  # the objects move from episode to episode, and the plane follows them (planes are x, y)
        obs, _ = env.reset(seed=seed)
        grid = env.unwrapped.grid
        for g, name in enumerate(goals.goals):
            plane = encoding(obs[None], np.array([g]))[0, -1]
            cells = {
                (i % grid.width, i // grid.width) for i, c in enumerate(grid.grid) if c is not None and c.type == name
            }
            assert {tuple(rc) for rc in np.argwhere(plane == 255)} == cells
    assert MiniGridObjectGoals(gym.spaces.Box(0, 255, (3, 6, 11), np.uint8)).channels() is None  # "image": no planes


def test_minigrid_objects_on_a_real_doorkey_game():
    config = resolve_config({}, ["env.id=MiniGrid-DoorKey-5x5-v0"])
    env = make_env(config.env, training=False)
    goals = MiniGridObjectGoals(env.observation_space)
    obs, _ = env.reset(seed=3)
    grid = env.unwrapped
    present = [1, 1, 1, 0, 0]  # DoorKey has a key, a door and a goal square; no ball, no box
    assert goals.goal_input(env, obs).tolist() == [0, 0, 0, 0, 0, *present, 1]  # hands free
    assert goals.test.valid(goals.goal_input(env, obs)).tolist() == [True, True, True, False, False]
    cells = {(c.type, i % grid.width, i // grid.width) for i, c in enumerate(grid.grid.grid) if c is not None}
    key = next((x, y) for t, x, y in cells if t == "key")
    door = next((x, y) for t, x, y in cells if t == "door")
    goal_square = next((x, y) for t, x, y in cells if t == "goal")

    def face(target):  # stand left of the target, facing right (an empty cell exists there in DoorKey)
        for dx, dy, direction in ((-1, 0, 0), (0, -1, 1), (1, 0, 2), (0, 1, 3)):
            x, y = target[0] + dx, target[1] + dy
            cell = grid.grid.get(x, y)
            if cell is None:
                grid.agent_pos, grid.agent_dir = np.array([x, y]), direction
                return
        raise AssertionError("no free cell next to the target")

    face(key)
    obs, *_ = env.step(grid.actions.pickup)
    x = goals.goal_input(env, obs)
    assert x.tolist() == [1, 0, 0, 0, 0, *present, 0]  # the carried key still counts as the task's
    assert goals.test.reached(x).tolist() == [True, False, False, False, False]
    face(door)
    obs, *_ = env.step(grid.actions.toggle)
    assert goals.goal_input(env, obs).tolist() == [1, 1, 0, 0, 0, *present, 0]
    face(goal_square)
    obs, reward, terminated, *_ = env.step(grid.actions.forward)
    assert terminated and reward > 0 and goals.goal_input(env, obs).tolist() == [1, 1, 1, 0, 0, *present, 0]


# ---------------------------------------------------------------------- learning, export, serving


SDP_SHORT = [
    "tracking.enabled=false",
    "train.max_episodes=2500",
    "agent.meta_epsilon.steps=4000",
    "agent.controller_annealing.steps=4000",
    "eval.every=null",
    "eval.final_episodes=500",
    "train.checkpoint_every=null",
]


@pytest.fixture(scope="module")
def sdp_run(tmp_path_factory):
    """h-DQN trained briefly on the decision process, and its export."""
    from qagent.config import load_config

    folder = tmp_path_factory.mktemp("hdqn")
    config = load_config("sdp-hdqn", SDP_SHORT)
    result = start_training(config, runs_dir=folder / "runs", run_name="sdp", progress=False)
    report = export_checkpoint(result.run_dir, folder / "sdp.onnx")
    return result, report


def test_hdqn_learns_to_visit_s6(sdp_run):
    result, _ = sdp_run
    # Going straight to s1 scores 0.01; the optimum is 0.208. The hierarchy finds s6 in a few
    # thousand episodes, where flat DQN has no reason to ever go there.
    assert result.last_eval["mean"] > 0.12
    assert result.episodes == 2500
    goals = json.loads((result.run_dir / "run.json").read_text())["goals"]
    assert set(goals) == {f"s{i}" for i in range(1, 7)} and goals["s6"]["chosen"] > 0
    assert 0 < goals["s1"]["success_rate"] <= 1


def test_exported_hierarchy_matches_the_checkpoint(sdp_run):
    result, report = sdp_run
    assert all(row.ok for row in report.parity)
    meta = report.metadata
    assert meta["agent"] == "hdqn" and meta["hierarchy"]["goal_space"]["goals"] == [f"s{i}" for i in range(1, 7)]
    assert set(meta["inputs"]) == {"obs", "controller_obs"} and "meta_q_values" in meta["outputs"]
    from_file = evaluate_policy_file(report.path, episodes=200, seed=5)
    from_checkpoint = evaluate_checkpoint(str(result.run_dir), episodes=200, seed=5)
    assert from_file.returns == from_checkpoint.returns and from_file.lengths == from_checkpoint.lengths


def test_hierarchical_session_steps_like_the_training_actor(sdp_run):
    result, report = sdp_run
    policy = Policy.load(report.path)
    session = policy.session()
    env = StochasticDecisionProcess()
    obs, _ = env.reset(seed=11)
    goals_seen = []
    for _ in range(200):
        action = session.act(obs)
        goals_seen.append(session.goal)
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            break
    assert goals_seen[0] == session.info()["goal"] or len(set(goals_seen)) > 1
    assert all(g in policy.goals for g in goals_seen) and session.info()["goal_index"] is not None
    with pytest.raises(InputError, match="goal_input"):
        session.step(obs, goal_input=[])


def _call(port, method, path, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, body=None if body is None else json.dumps(body).encode())
    response = conn.getresponse()
    payload = json.loads(response.read() or b"null")
    conn.close()
    return response.status, payload


def test_http_sessions_answer_with_the_current_goal(sdp_run):
    _, report = sdp_run
    policy = Policy.load(report.path)
    server = PolicyServer(policy, ("127.0.0.1", 0), ServerOptions(model_name="sdp"))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        status, created = _call(port, "POST", "/v1/sessions")
        assert status == 201
        reference = policy.session()
        env = StochasticDecisionProcess()
        obs, _ = env.reset(seed=3)
        for _ in range(30):
            status, answer = _call(port, "POST", f"/v1/sessions/{created['session_id']}/act", {"obs": int(obs)})
            assert status == 200
            action = reference.act(obs)
            assert (answer["action"], answer["goal"]) == (action, reference.goal)
            obs, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                break
        status, answer = _call(port, "POST", "/v1/act", {"obs": [1, 5]})
        assert status == 200 and len(answer["goals"]) == 2 and answer["goals"][1] != "s6"  # s6 is reached in s6
        status, answer = _call(port, "POST", "/v1/act", {"obs": [1, 5], "goal_input": [[1]]})
        assert status == 400 and "one vector per observation" in answer["error"]
        status, answer = _call(port, "POST", f"/v1/sessions/{created['session_id']}/act", {"obs": 1, "goal_input": "x"})
        assert status == 422 and "goal_input" in answer["error"]
    finally:
        server.shutdown()
        server.server_close()


FLAT_GRID = ("env.minigrid.observation=flat", ["network.hidden_sizes=[32]"])
PLANES_WITH_OBSERVED_MASKS = (
    "env.minigrid.observation=onehot-image",
    ["network.name=grid-cnn", "network.channels=[8,8]", "agent.goal_encoding=observed-mask"],
)


@pytest.mark.parametrize("observation, network", [FLAT_GRID, PLANES_WITH_OBSERVED_MASKS], ids=["flat", "observed-mask"])
def test_minigrid_hierarchy_trains_exports_and_needs_client_goal_inputs(tmp_path, observation, network):
    args = [
        "--agent",
        "hdqn",
        "--env",
        "MiniGrid-DoorKey-5x5-v0",
        *(arg for setting in (observation, *network) for arg in ("--set", setting)),
        "--set",
        "agent.goal_space=minigrid-objects",
        "--set",
        "agent.controller.learning_starts=100",
        "--set",
        "agent.meta.learning_starts=100",
        "--set",
        "eval.every=null",
        "--set",
        "eval.final_episodes=2",
    ]
    policy = Policy.load(train_and_export(tmp_path, args, 400, "mg"))
    assert policy.metadata["hierarchy"]["goal_space"]["input"] == "client"
    env = make_env(resolve_config({}, ["env.id=MiniGrid-DoorKey-5x5-v0", observation]).env, training=False)
    obs, _ = env.reset(seed=0)
    session = policy.session()
    with pytest.raises(InputError, match="send 'goal_input'"):
        session.act(obs)
    assert 0 <= session.act(obs, goal_input=[0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 1]) < 7 and session.goal in (
        "key",
        "door",
        "goal",
    )
    checked = run_qagent("eval", "mg.onnx", "-n", "2", cwd=tmp_path)
    from_checkpoint = run_qagent("eval", "runs/mg", "-n", "2", cwd=tmp_path)
    assert checked.returncode == 0 and from_checkpoint.returncode == 0
    assert (
        json.loads((tmp_path / "mg.eval.json").read_text())["returns"]
        == json.loads((tmp_path / "runs/mg/eval.json").read_text())["returns"]
    )


def test_the_docs_goal_space_example_works_on_real_taxi_states(tmp_path):
    from conftest import ROOT

    from qagent.plugins.discovery import load_plugins
    from qagent.plugins.registries import GOAL_SPACES

    plugin = ROOT / "examples" / "plugins" / "taxi_goals.py"
    load_plugins([str(plugin)], ambient=False)
    env = gym.make("Taxi-v4")
    space = GOAL_SPACES.get("taxi-stands")(env.observation_space)
    obs, _ = env.reset(seed=0)
    row, col, passenger, _ = env.unwrapped.decode(obs)
    x = space.goal_input(env, obs)
    assert x.tolist()[:3] == [row, col, passenger]
    reached = space.test.reached(x)
    stands = {(0, 0): 0, (0, 4): 1, (4, 0): 2, (4, 3): 3}
    assert reached.tolist()[:4] == [stands.get((row, col)) == k for k in range(4)] and not reached[4]
    train = run_qagent(
        "train",
        "--plugin",
        str(plugin),
        "--env",
        "Taxi-v4",
        "--agent",
        "hdqn",
        "--set",
        "agent.goal_space=taxi-stands",
        "--set",
        "network.hidden_sizes=[16]",
        "--set",
        "agent.controller.learning_starts=50",
        "--set",
        "agent.meta.learning_starts=50",
        "--set",
        "eval.every=null",
        "--set",
        "eval.final_episodes=1",
        "--set",
        "env.max_episode_steps=50",
        "--total-steps",
        "300",
        "--no-track",
        "--run-name",
        "taxi",
        cwd=tmp_path,
    )
    assert train.returncode == 0, train.stderr
    assert "taxi-stands" in (tmp_path / "runs/taxi/config.yaml").read_text()


def test_montezuma_ram_goals_on_real_ale_states():
    from qagent.envs.goals import MontezumaRamGoals

    config = resolve_config({}, ["env.id=ALE/MontezumaRevenge-v5", "env.atari.observation=ram"])
    env = make_env(config.env, training=False)
    space = MontezumaRamGoals(env.observation_space)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (128,) and obs.dtype == np.uint8
    x = space.goal_input(env, obs)
    assert x.tolist() == obs.tolist() and not space.test.reached(x).any()  # the RAM; nothing reached at the start
    door = space.goals.index("left-door")
    assert not space.test.valid(x)[door]  # no key, no door
    ale = env.unwrapped.ale
    start = ale.cloneState()

    def place(x_ram: int, y_ram: int, steps: int = 2) -> tuple[np.ndarray, float]:
        ale.restoreState(start)
        ale.setRAM(42, x_ram)
        ale.setRAM(43, y_ram)
        total = 0.0
        for _ in range(steps):
            obs, reward, *_ = env.step(0)
            total += reward
        return space.goal_input(env, obs), total

    x, reward = place(13, 195)  # where the key hangs: touching it picks it up for +100
    assert reward == 100 and space.test.reached(x)[space.goals.index("key")]
    assert space.test.valid(x)[door]  # with the key, the doors may be chosen
    x, _ = place(133, 148)
    assert space.test.reached(x).tolist() == [g == "lower-right-ladder" for g in space.goals]
    x, _ = place(109, 210)
    assert space.test.reached(x)[space.goals.index("rope")]
    env.close()


def test_montezuma_masks_cover_the_player_at_each_goal():
    from qagent.envs.goals import MontezumaRamGoals

    env = make_env(resolve_config({}, ["env.id=ALE/MontezumaRevenge-v5"]).env, training=False)
    space = MontezumaRamGoals(env.observation_space)
    masks = space.masks()
    assert MontezumaRamGoals(gym.spaces.Box(0, 255, (128,), np.uint8)).masks() is None  # RAM: nothing to draw
    env.reset(seed=0)
    ale = env.unwrapped.ale
    start = ale.cloneState()

    def frame_with_player_at(x_ram: int, y_ram: int) -> np.ndarray:
        ale.restoreState(start)
        ale.setRAM(42, x_ram)
        ale.setRAM(43, y_ram)
        for _ in range(2):
            obs, *_ = env.step(0)
        return obs[-1].astype(np.int64)

    away = frame_with_player_at(77, 235)  # the start, on the top platform
    for goal in ("middle-ladder", "rope", "lower-left-ladder", "lower-right-ladder"):
        bounds = {i: (lo, hi) for i, lo, hi in space.ENTITIES[goal]}
        frame = frame_with_player_at(int(np.mean(bounds[42])), int(np.mean(bounds[43])))
        moved = np.abs(frame - away) > 20
        moved[25:40, 35:47] = False  # the player's old place
        rows, cols = np.nonzero(moved)
        row0, row1, col0, col1 = masks[space.goals.index(goal)]
        assert len(rows) > 10 and row0 <= rows.min() and rows.max() < row1, goal
        assert col0 <= cols.min() and cols.max() < col1, goal
    env.close()


def test_cnn_controller_with_goal_masks_trains_exports_and_serves(tmp_path):
    args = [
        "--agent",
        "hdqn",
        "--env",
        "ALE/MontezumaRevenge-v5",
        *("--set", "network.name=nature-cnn"),
        *("--set", "agent.goal_space=montezuma-ram"),
        *("--set", "env.atari.max_frames=800"),
        *("--set", "replay.capacity=2000"),
        *("--set", "agent.controller.learning_starts=100"),
        *("--set", "agent.meta.learning_starts=100"),
        *("--set", "agent.controller.train_freq=8"),
        *("--set", "agent.meta.train_freq=8"),
        *("--set", "eval.every=null"),
        *("--set", "eval.final_episodes=1"),
    ]
    policy = Policy.load(train_and_export(tmp_path, args, 300, "mz"))
    hierarchy = policy.metadata["hierarchy"]
    assert hierarchy["goal_encoding"]["kind"] == "mask" and len(hierarchy["goal_encoding"]["masks"]) == 7
    assert policy.metadata["inputs"]["controller_obs"] == {"dtype": "uint8", "shape": [-1, 5, 84, 84]}
    env = make_env(resolve_config({}, ["env.id=ALE/MontezumaRevenge-v5"]).env, training=False)
    obs, _ = env.reset(seed=0)
    session = policy.session()
    action = session.act(obs[-1], goal_input=env.unwrapped.ale.getRAM())  # served sessions stack the frames
    assert 0 <= action < 18 and session.goal in policy.goals
    checked = run_qagent("eval", "mz.onnx", "-n", "1", cwd=tmp_path)
    from_checkpoint = run_qagent("eval", "runs/mz", "-n", "1", cwd=tmp_path)
    assert checked.returncode == 0 and from_checkpoint.returncode == 0, checked.stderr + from_checkpoint.stderr
    assert (
        json.loads((tmp_path / "mz.eval.json").read_text())["returns"]
        == json.loads((tmp_path / "runs/mz/eval.json").read_text())["returns"]
    )


def test_hdqn_resumes_exactly(workdir):
    import torch

    from qagent.config import load_config
    from qagent.training.checkpoint import load_checkpoint
    from qagent.training.loop import resume_training

    sets = [
        "tracking.enabled=false",
        "train.save_buffer=true",
        "eval.every=null",
        "eval.final_episodes=5",
        "agent.controller.learning_starts=200",
        "agent.meta.learning_starts=200",
        "agent.max_option_steps=4",
    ]
    straight = start_training(load_config("sdp-hdqn", [*sets, "train.total_steps=1500"]), run_name="a", progress=False)
    start_training(load_config("sdp-hdqn", [*sets, "train.total_steps=700"]), run_name="b", progress=False)
    resumed = resume_training("runs/b", ["train.total_steps=1500"], progress=False)
    a, b = load_checkpoint(straight.checkpoint), load_checkpoint(resumed.checkpoint)
    for level in ("controller", "meta"):
        for key, value in a["agent"][level]["q_net"].items():
            assert torch.equal(value, b["agent"][level]["q_net"][key]), f"{level}.{key}"
    assert a["actor"]["exploration"]["stats"] == b["actor"]["exploration"]["stats"]
    assert (workdir / "runs/a/episodes.csv").read_text() == (workdir / "runs/b/episodes.csv").read_text()
