"""Atari: the preprocessing chain on real ALE games, and a short run trained, exported and served."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_qagent
from stable_baselines3.common.atari_wrappers import EpisodicLifeEnv, FireResetEnv, NoopResetEnv

from qagent.config import AtariConfig, EnvConfig, resolve_config
from qagent.envs import make_env
from qagent.envs.factory import frame_stack_of
from qagent.errors import ConfigError


def wrappers(env) -> list[type]:
    found, layer = [], env
    while hasattr(layer, "env"):
        found.append(type(layer))
        layer = layer.env
    return found


def test_observations_are_stacked_84x84_bytes():
    env = make_env(EnvConfig(id="ALE/Pong-v5"))
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    assert env.observation_space.shape == (4, 84, 84) and frame_stack_of(env) == 4
    assert all(np.array_equal(obs[0], obs[i]) for i in range(1, 4))  # a new episode repeats its first frame
    first = obs[-1]
    obs, *_ = env.step(0)
    assert all(np.array_equal(obs[i], first) for i in range(3))  # oldest first; the newest frame is last
    assert env.unwrapped.get_action_meanings()[:2] == ["NOOP", "FIRE"]


def test_frame_skip_noops_and_fire_reset():
    env = make_env(EnvConfig(id="ALE/Breakout-v5", atari=AtariConfig(sticky_actions=0.0)))
    kinds = wrappers(env)
    assert FireResetEnv in kinds and NoopResetEnv in kinds and any(issubclass(k, EpisodicLifeEnv) for k in kinds)
    ale = env.unwrapped.ale
    starts = set()
    for seed in range(6):
        env.reset(seed=seed)
        starts.add(ale.getEpisodeFrameNumber())
        # a new game each time: 1 to 30 no-op frames (below the frame skip), then FIRE and one more
        # step, each repeated over 4 frames (SB3's wrapper alone went on with the old game)
        assert 1 + 2 * 4 <= ale.getEpisodeFrameNumber() <= 30 + 2 * 4
    assert len(starts) > 1  # the number of no-ops varies with the seed
    before = ale.getEpisodeFrameNumber()
    env.step(0)
    assert ale.getEpisodeFrameNumber() - before == 4
    pong = make_env(EnvConfig(id="PongNoFrameskip-v4"))
    assert pong.unwrapped.ale.getFloat("repeat_action_probability") == 0.0
    assert make_env(EnvConfig(id="ALE/Pong-v5")).unwrapped.ale.getFloat("repeat_action_probability") == 0.25


def play(env, seed: int, max_steps: int = 20_000):
    """Random play until a done; returns (rewards, terminated, lives, info)."""
    rng = np.random.default_rng(seed)
    rewards = []
    for _ in range(max_steps):
        _, reward, terminated, truncated, info = env.step(int(rng.integers(env.action_space.n)))
        rewards.append(reward)
        if terminated or truncated:
            return rewards, terminated, env.unwrapped.ale.lives(), info
    raise AssertionError("no episode end")


def test_life_loss_is_terminal_only_in_training_and_returns_are_full_games():
    config = EnvConfig(id="ALE/Breakout-v5", atari=AtariConfig(sticky_actions=0.0))
    training = make_env(config, training=True)
    training.reset(seed=1)
    clipped_total, pieces, steps = 0.0, 0, 0
    while True:
        rewards, terminated, lives, info = play(training, seed=pieces)
        clipped_total += sum(rewards)
        pieces, steps = pieces + 1, steps + len(rewards)
        assert terminated and all(r in (0.0, 1.0) for r in rewards)  # clipped
        if lives == 0:
            break
        assert "episode" not in info  # a lost life ends the training episode, not the game
        training.reset()
    assert pieces == 5  # Breakout's five lives
    assert info["episode"]["r"] >= clipped_total and info["episode"]["r"] > 0
    assert info["episode"]["l"] >= 4 * steps  # counted in emulator frames, across all five lives

    evaluation = make_env(config, training=False)
    evaluation.reset(seed=1)
    rewards, terminated, lives, info = play(evaluation, seed=0)
    assert terminated and lives == 0  # one episode is the whole game
    assert info["episode"]["r"] == pytest.approx(sum(rewards))  # unclipped game score


def test_episode_cap_and_config_errors():
    env = make_env(EnvConfig(id="ALE/Pong-v5", atari=AtariConfig(max_frames=400)), training=False)
    env.reset(seed=0)
    rewards, terminated, _, info = play(env, seed=0)
    assert not terminated and info["episode"]["l"] <= 400 + 4  # truncated by the frame cap
    with pytest.raises(ConfigError, match="does not apply to ALE games"):
        make_env(EnvConfig(id="ALE/Pong-v5", max_episode_steps=10))
    with pytest.raises(ConfigError, match="needs \\(channels, height, width\\) image observations"):
        from qagent.training.build import build_agent, probe_spaces

        config = resolve_config({}, ["network.name=nature-cnn"])
        build_agent(config, *probe_spaces(config))


def test_short_atari_run_checkpoints_evaluates_exports_and_serves(tmp_path):
    sets = [
        "--set",
        "network.name=nature-cnn",
        "--set",
        "agent.learning_starts=500",
        "--set",
        "replay.capacity=3000",
        "--set",
        "eval.every=null",
        "--set",
        "eval.final_episodes=1",
        "--set",
        "eval.num_envs=1",
        "--set",
        "env.atari.max_frames=2000",
    ]
    train = run_qagent(
        "train",
        "--env",
        "ALE/Breakout-v5",
        "--total-steps",
        "1200",
        *sets,
        "--no-track",
        "--run-name",
        "atari",
        cwd=tmp_path,
    )
    assert train.returncode == 0, train.stderr
    assert (tmp_path / "runs/atari/checkpoints/step-0000001200.pt").exists()
    evaluated = run_qagent("eval", "runs/atari", "-n", "2", "--video", "game.mp4", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    assert (tmp_path / "game.mp4").stat().st_size > 1000
    exported = run_qagent("export", "runs/atari", "-o", "breakout.onnx", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert "256/256" in exported.stdout and "FAIL" not in exported.stdout

    from qagent.serve import Policy

    policy = Policy.load(tmp_path / "breakout.onnx")
    assert policy.observation_shape == (4, 84, 84) and policy.frame_stack == 4
    assert policy.action_meanings == ["NOOP", "FIRE", "RIGHT", "LEFT"]
    assert policy.metadata["env"]["atari"]["frame_stack"] == 4
    env = make_env(EnvConfig(id="ALE/Breakout-v5"), training=False)
    obs, _ = env.reset(seed=3)
    session = policy.session()
    for _ in range(40):  # single frames through the session == stacked observations straight in
        action = session.act(obs[-1])
        assert action == policy.act(obs)
        obs, _, terminated, truncated, _ = env.step(action)
        assert not (terminated or truncated)


def test_a_resumed_collector_replays_atari_episodes_to_their_saved_state(recwarn):
    """A seeded reset starts a new game even right after FIRE-on-reset steps (SB3's EpisodicLifeEnv
    alone kept the old game running, so resumed Atari runs restarted their episodes instead)."""
    import warnings

    from qagent.agents.dqn import QActor
    from qagent.agents.exploration import EpsilonGreedy
    from qagent.envs.factory import make_vector_env
    from qagent.training.collector import Collector

    class Zero:
        def q_values(self, obs):
            return np.zeros((len(obs), 4))

    class Nowhere:
        def add(self, *transition):
            pass

    config = EnvConfig(id="ALE/Breakout-v5", atari=AtariConfig(max_frames=600))

    def collector(seed):
        strategy = EpsilonGreedy(EpsilonGreedy.Config(start=1.0, end=1.0), 4, 1000, seed=seed)
        return Collector(make_vector_env(config, 2), QActor(Zero(), strategy, Nowhere(), 4), seed=seed)

    a = collector(0)
    episodes = a.collect(200, 0)  # across lost lives and whole games
    assert len(episodes) >= 2  # games ended (and lives were lost) in both envs
    b = collector(1)  # its envs have played (reset, FIRE) from other seeds
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "did not replay to its saved state" fails the test
        b.load_state_dict(a.state_dict())
    assert np.array_equal(b.obs, a.obs)


@pytest.mark.parametrize("preset", ["breakout-dqn", "pong-dqn", "montezuma-hdqn", "montezuma-hdqn-pixels"])
def test_atari_presets_evaluate_under_the_standard_protocol(preset):
    from qagent.config import load_config
    from qagent.training.evaluation import describe_protocol

    config = load_config(preset, [])
    assert config.eval.epsilon == 0.05
    sticky = "0" if preset.startswith("montezuma") else "0.25"  # ALE/*-v5 ids default to 0.25
    details = f"up to 30 no-op starts, 108,000-frame cap, sticky actions {sticky}"
    assert describe_protocol(config.env, config.eval.epsilon) == f"standard Atari: ε=0.05, {details}"
    assert describe_protocol(config.env, 0.0) == f"greedy (ε=0), {details}"
    assert describe_protocol(EnvConfig(id="CartPole-v1"), 0.0) == "greedy (ε=0)"


def test_a_policy_that_never_fires_cannot_hold_a_standard_evaluation_at_the_frame_cap():
    """Breakout waits for FIRE after a lost life: a greedy NOOP policy would play to the 27,000-step
    cap; the standard protocol's random actions press FIRE, so the game ends long before it."""
    from qagent.agents.base import GreedyActor
    from qagent.config import load_config
    from qagent.training.evaluation import Evaluator

    config = load_config("breakout-dqn", [])
    noop_first = GreedyActor(lambda obs: np.tile(np.array([1.0, 0, 0, 0]), (len(obs), 1)))
    evaluator = Evaluator(config.env, 1)
    try:
        result = evaluator.run(noop_first, 1, seed=0, epsilon=config.eval.epsilon)
    finally:
        evaluator.close()
    assert result.lengths[0] < 5_000 and result.protocol.startswith("standard Atari")
