"""ale-py's AtariVectorEnv behind qagent's vector env contract, checked against the gymnasium wrapper chain.

Both run the same emulator, so with the same seeds and actions they play the same games: the
tests compare them step by step where the preprocessing agrees exactly, and pin down where it
does not (ale-py takes the max over the last two frames after the grayscale conversion; the
chain resets with steps the agent does not see after a lost life).
"""

from __future__ import annotations

import shutil
import warnings

import cv2
import numpy as np
import pytest
import torch
from stable_baselines3.common.atari_wrappers import MaxAndSkipEnv

from qagent.agents.dqn import QActor
from qagent.agents.exploration import EpsilonGreedy
from qagent.config import AtariConfig, EnvConfig, load_config
from qagent.envs.ale_vector import AleVectorEnv
from qagent.envs.factory import frame_stack_of, make_vector_env
from qagent.errors import ConfigError
from qagent.training.build import load_agent
from qagent.training.checkpoint import load_checkpoint
from qagent.training.collector import RESET, Collector
from qagent.training.loop import resume_training, start_training
from qagent.training.runs import RunDir

# With these, a game without FIRE starts and plays the same in both from the same seed and actions.
EXACT = {"sticky_actions": 0.0, "noop_max": 0}


def both(env_id: str, num_envs: int = 2, training: bool = True, **atari) -> tuple[AleVectorEnv, object]:
    """The same config as ale-py's vector env and as gymnasium's SyncVectorEnv over the chain."""
    config = EnvConfig(id=env_id, atari=AtariConfig(**atari))
    ale = make_vector_env(config.model_copy(update={"vectorization": "ale"}), num_envs, training=training)
    chain = make_vector_env(config.model_copy(update={"vectorization": "gymnasium"}), num_envs, training=training)
    assert isinstance(ale, AleVectorEnv) and hasattr(chain, "envs")
    return ale, chain


def gray_first_max(chain_env) -> np.ndarray:
    """The chain's last two emulator frames, max-pooled after the grayscale conversion (as ale-py does)."""
    layer = chain_env
    while not isinstance(layer, MaxAndSkipEnv):
        layer = layer.env
    gray = [cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in layer._obs_buffer]
    return cv2.resize(np.maximum(*gray), (84, 84), interpolation=cv2.INTER_AREA)


def test_auto_picks_the_ale_vector_env_where_it_plays_as_the_chain():
    def kind(*sets: str) -> str:
        config = load_config(None, list(sets)).env
        envs = make_vector_env(config, 1)
        envs.close()
        return type(envs).__name__

    assert kind("env.id=ALE/Pong-v5") == "AleVectorEnv"  # no lives: nothing the chain does differently
    assert kind("env.id=ALE/Breakout-v5") == "SyncVectorEnv"  # lost lives: the chain's NOOP/FIRE reset
    assert kind("env.id=ALE/Breakout-v5", "env.atari.terminal_on_life_loss=false") == "AleVectorEnv"
    assert kind("env.id=ALE/Breakout-v5", "env.vectorization=ale") == "AleVectorEnv"
    assert kind("env.id=ALE/Pong-v5", "env.atari.observation=ram") == "SyncVectorEnv"
    assert kind("env.id=ALE/Pong-v5", "env.vectorization=gymnasium") == "SyncVectorEnv"
    assert kind("env.id=CartPole-v1") == "SyncVectorEnv"
    evaluation = make_vector_env(EnvConfig(id="ALE/Pong-v5", vectorization="ale"), 1, training=False)
    assert hasattr(evaluation, "envs")  # evaluation steps each env itself
    with pytest.raises(ConfigError, match="cannot observe env.atari.observation=ram.*nor shape rewards"):
        make_vector_env(EnvConfig(id="ALE/Pong-v5", vectorization="ale", atari={"observation": "ram"}, shaping={"potential": "x"}), 1)  # fmt: skip
    with pytest.raises(ConfigError, match="'CartPole-v1', which is not an ALE game"):
        make_vector_env(EnvConfig(id="CartPole-v1", vectorization="ale"), 1)
    with pytest.raises(ConfigError, match=r"env.kwargs \['mode'\]"):
        make_vector_env(EnvConfig(id="ALE/Pong-v5", vectorization="ale", kwargs={"mode": 1}), 1)


def test_spaces_frame_stacks_and_reset_observations_match_the_chain():
    ale, chain = both("ALE/Breakout-v5", **EXACT)
    assert ale.single_observation_space == chain.single_observation_space  # Box(0, 255, (4, 84, 84), uint8)
    assert ale.single_action_space == chain.single_action_space and ale.num_envs == chain.num_envs == 2
    assert frame_stack_of(ale) == frame_stack_of(chain) == 4  # the replay memory stores each frame once
    obs, _ = ale.reset(seed=[3, 4])
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8 and obs.max() > 0
    assert all(np.array_equal(obs[:, k], obs[:, 3]) for k in range(3))  # the first frame fills the stack
    first = obs[:, 3]
    obs, *_ = ale.step(np.array([0, 2]))
    assert all(np.array_equal(obs[:, k], first) for k in range(3))  # oldest first, the newest last
    assert not np.array_equal(obs[:, 3], first)
    chain_obs, _ = chain.reset(seed=[3, 4])
    # Breakout presses FIRE on reset: once here, FIRE then RIGHT over a frame skip each in the chain,
    # so the screens differ only where the two resets moved the paddle, and otherwise agree
    assert np.mean(obs[:, 0] != chain_obs[:, 0]) < 0.01


def test_every_step_matches_the_chain_up_to_the_order_of_grayscale_and_max():
    ale, chain = both("ALE/MsPacman-v5", terminal_on_life_loss=False, clip_rewards=False, **EXACT)
    obs, _ = ale.reset(seed=[1, 2])
    assert np.array_equal(obs, chain.reset(seed=[1, 2])[0])  # the same first screen, to the byte
    rng = np.random.default_rng(0)
    differing, steps, games = 0.0, 0, 0
    while games == 0:
        actions = rng.integers(0, 9, size=2)
        previous = obs
        obs, reward, terminated, truncated, info = ale.step(actions)
        chain_obs, chain_reward, chain_terminated, chain_truncated, chain_info = chain.step(actions)
        assert np.array_equal(reward, chain_reward) and reward.dtype == chain_reward.dtype
        assert np.array_equal(terminated, chain_terminated) and np.array_equal(truncated, chain_truncated)
        for i in range(2):  # ale-py maxes the last two frames after converting them to grayscale
            assert np.array_equal(obs[i, -1], gray_first_max(chain.envs[i]))
        assert np.array_equal(obs[:, :-1], previous[:, 1:])  # the stack moves by one frame
        differing += np.mean(obs[:, -1] != chain_obs[:, -1])
        steps += 1
        if (terminated | truncated).any():
            # whole-game statistics, as RecordEpisodeStatistics reports them in a SyncVectorEnv
            assert np.array_equal(info["_episode"], chain_info["_episode"])
            for key in ("r", "_r", "l", "_l", "_t"):
                assert np.array_equal(info["episode"][key], chain_info["episode"][key]), key
                assert info["episode"][key].dtype == chain_info["episode"][key].dtype, key
            games += int(info["_episode"].sum())
            done = terminated | truncated
            reset_obs, _ = ale.reset(seed=[5, 6], options={"reset_mask": done})
            assert np.array_equal(reset_obs[done], chain.reset(seed=[5, 6], options={"reset_mask": done})[0][done])
            obs[done] = reset_obs[done]
    assert steps > 300 and differing / steps < 0.02  # moving sprites only: under 2% of the pixels


def test_a_lost_life_ends_the_training_episode_and_the_game_goes_on():
    ale = make_vector_env(EnvConfig(id="ALE/Breakout-v5", vectorization="ale"), 1)
    ale.reset(seed=[1])
    rng = np.random.default_rng(0)
    pieces, clipped, steps = 0, 0.0, 0
    while True:
        obs, reward, terminated, truncated, info = ale.step(rng.integers(0, 4, size=1))
        steps += 1
        assert reward[0] in (0.0, 1.0)  # clipped in training
        clipped += reward[0]
        if not (terminated | truncated)[0]:
            continue
        if "_episode" in info:
            break
        pieces += 1  # a lost life: no statistics, the game goes on
        with pytest.raises(RuntimeError, match="first"):  # no autoreset: a finished env is reset first
            ale.step(np.zeros(1, dtype=np.int64))
        lives, frame = info["lives"][0], info["episode_frame_number"][0]
        obs, reset_info = ale.reset(options={"reset_mask": np.ones(1, dtype=bool)})  # no seed: continue
        assert reset_info["lives"][0] == lives
        assert all(np.array_equal(obs[0, k], obs[0, 3]) for k in range(3))  # the stack restarts from this screen
        _, _, _, _, info = ale.step(np.zeros(1, dtype=np.int64))
        assert info["episode_frame_number"][0] == frame + 4
        steps += 1
    assert pieces == 4 and info["_episode"][0]  # Breakout's five lives, one game
    assert info["episode"]["l"][0] >= 4 * steps  # counted in emulator frames, across all five lives
    assert info["episode"]["r"][0] >= clipped > 0  # the raw score
    _, reset_info = ale.reset(seed=[7])
    assert reset_info["lives"][0] == 5  # a new game


def test_lost_lives_end_at_the_step_the_chain_ends_them_which_then_resets_unseen():
    ale, chain = both("ALE/MsPacman-v5", **EXACT)
    ale.reset(seed=[1, 2])
    chain.reset(seed=[1, 2])
    rng = np.random.default_rng(1)
    for _ in range(2000):
        actions = rng.integers(0, 9, size=2)
        obs, reward, terminated, _, info = ale.step(actions)
        chain_obs, chain_reward, chain_terminated, _, chain_info = chain.step(actions)
        assert np.array_equal(reward, chain_reward) and np.array_equal(terminated, chain_terminated)
        if terminated.any():
            break
    assert terminated.any() and "_episode" not in info and "_episode" not in chain_info
    frames = info["episode_frame_number"]
    obs, _ = ale.reset(options={"reset_mask": terminated})
    chain_obs, _ = chain.reset(options={"reset_mask": terminated})
    i = np.flatnonzero(terminated)[0]
    assert np.array_equal(obs[i], np.repeat(obs[i, -1:], 4, axis=0))  # both restart the stack from one screen
    assert np.array_equal(chain_obs[i], np.repeat(chain_obs[i, -1:], 4, axis=0))
    # here the game goes on from the screen of the lost life; the chain first takes a NOOP step (4 frames)
    assert ale.step(np.zeros(2, dtype=np.int64))[4]["episode_frame_number"][i] == frames[i] + 4
    assert chain.step(np.zeros(2, dtype=np.int64))[4]["episode_frame_number"][i] == frames[i] + 8


class Nowhere:
    def add(self, *transition):
        pass


class ScreenPolicy:
    """Q-values that depend on the newest frame: a deterministic policy that still varies its actions."""

    def q_values(self, obs):
        return obs[:, -1, 40:46].sum(axis=2, dtype=np.int64)[:, : self.n_actions].astype(np.float32)


def actor(n_actions: int, epsilon: float, seed: int) -> QActor:
    policy = ScreenPolicy()
    policy.n_actions = n_actions
    strategy = EpsilonGreedy(EpsilonGreedy.Config(start=epsilon, end=epsilon), n_actions, 1000, seed=seed)
    return QActor(policy, strategy, Nowhere(), n_actions)


def random_collector(config: EnvConfig, seed: int, num_envs: int = 2) -> Collector:
    envs = make_vector_env(config, num_envs)
    return Collector(envs, actor(int(envs.single_action_space.n), 1.0, seed), seed=seed)


@pytest.mark.parametrize(
    "config",
    [
        EnvConfig(id="ALE/Pong-v5", atari=AtariConfig(max_frames=600)),
        EnvConfig(id="ALE/Breakout-v5", vectorization="ale", atari=AtariConfig(max_frames=600)),
    ],
    ids=["pong", "breakout-lives"],
)
def test_a_resumed_collector_replays_every_env_to_its_saved_state(config):
    a = random_collector(config, seed=0)
    assert isinstance(a.envs, AleVectorEnv)
    episodes = a.collect(200, 0)
    assert episodes and all(e.length > 0 for e in episodes)
    state = a.state_dict()
    if config.id.startswith("ALE/Breakout"):
        assert any(RESET in log for log in state["actions"])  # lost lives in the logs
    b = random_collector(config, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "did not replay to its saved state" fails the test
        b.load_state_dict(state)
    assert np.array_equal(b.obs, a.obs)
    # the two go on identically under the same (deterministic) actor: same screens, same statistics
    n_actions = int(a.envs.single_action_space.n)
    a.actor, b.actor = actor(n_actions, 0.0, 0), actor(n_actions, 0.0, 0)
    later_a, later_b = a.collect(200, 300), b.collect(200, 300)
    assert later_a
    assert [(e.ret, e.length) for e in later_a] == [(e.ret, e.length) for e in later_b]
    assert np.array_equal(a.obs, b.obs)

    # an env that does not replay to its saved state restarts its episode, with a warning
    state = a.state_dict()
    state["obs"][1] = 0
    c = random_collector(config, seed=2)
    with pytest.warns(UserWarning, match="did not replay to its saved state"):
        c.load_state_dict(state)
    assert np.array_equal(c.obs[0], a.obs[0]) and c.actions[1] == [] and c.obs[1].max() > 0
    c.collect(20, 500)


def _tensors(tree, prefix=""):
    if isinstance(tree, torch.Tensor):
        yield prefix, tree
    elif isinstance(tree, dict):
        for key, value in tree.items():
            yield from _tensors(value, f"{prefix}.{key}")


def test_a_short_pong_run_on_the_ale_vector_env_resumes_exactly(workdir):
    sets = [
        *("env.vectorization=ale", "env.id=ALE/Pong-v5", "env.num_envs=2", "env.atari.max_frames=400"),
        *("env.atari.screen_size=48", "network.name=nature-cnn", "agent.learning_starts=100"),
        *("agent.train_freq=16", "agent.batch_size=8", "replay.capacity=1000", "tracking.enabled=false"),
        *("train.total_steps=400", "train.checkpoint_every=200", "train.save_buffer=true"),
        *("eval.every=null", "eval.final_episodes=1", "eval.num_envs=1"),
    ]
    straight = start_training(load_config(None, sets), run_name="straight", progress=False)
    assert straight.step == 400 and straight.episodes > 0
    loaded = load_agent(straight.run_dir)
    assert loaded.agent.make_memory(loaded.config, make_vector_env(loaded.config.env, 2), 0).stacked  # frames once

    shutil.copytree(straight.run_dir, workdir / "runs" / "resumed")
    [(step, halfway)] = [(s, p) for s, p in RunDir(workdir / "runs" / "resumed").checkpoints() if s < 400]
    assert step >= 200
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # every env replays to its saved state
        resumed = resume_training(halfway, progress=False)
    assert resumed.step == 400
    a = dict(_tensors(load_checkpoint(resumed.checkpoint)["agent"]))
    b = dict(_tensors(load_checkpoint(straight.checkpoint)["agent"]))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (resumed.run_dir / "episodes.csv").read_text() == (straight.run_dir / "episodes.csv").read_text()
