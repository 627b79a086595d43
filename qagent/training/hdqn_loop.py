"""The h-DQN training loop: options in the envs, two memories, two learners.

It reuses the DQN loop (:class:`qagent.training.Trainer`) for everything but collection and
learning: evaluation, checkpoints, resume (episodes replayed from their seeds, the current
options saved with the checkpoint), MLflow tracking and the progress bar.

Per env step, in every env: an env without a goal asks the meta-controller for one (epsilon_2
greedy over the goals the goal space allows); the controller acts epsilon_1-greedily on
``(s, g)``; the internal critic pays ``intrinsic_reward`` if ``g`` is reached in ``s'`` (less
``step_penalty``); D1 gets ``((s, g), a, r_int, (s', g))``, terminal when the goal is reached
or the episode terminates. When the option ends (goal reached, episode over, or
``max_option_steps``), D2 gets ``(s0, g, F, s_end)`` with ``F`` the extrinsic reward summed
over the option, terminal when the episode terminated.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qagent.agents.hdqn.agent import GoalStats, HDQNAgent, HDQNConfig
from qagent.agents.replay.buffer import Replay
from qagent.agents.replay.factory import make_replay
from qagent.envs.factory import make_vector_env
from qagent.errors import ConfigError
from qagent.serve.goals import choose_goal
from qagent.training.build import build_agent
from qagent.training.collector import Collector, Episode
from qagent.training.loop import MetricWindow, Trainer, crossings


class HDQNExploration:
    """Both levels' exploration: epsilon_2 over goals, epsilon_1 over actions (annealed or per goal)."""

    def __init__(self, config: HDQNConfig, n_goals: int, n_actions: int, seed: int) -> None:
        self.config = config
        self.n_goals = n_goals
        self.n_actions = n_actions
        self.rng = np.random.default_rng(seed)
        self.stats = GoalStats(n_goals, config.success_window)

    def meta_epsilon(self, step: int) -> float:
        """1 while the controller pre-trains, then annealed."""
        c = self.config
        return 1.0 if step < c.pretrain_steps else c.meta_epsilon.at(step - c.pretrain_steps)

    def controller_epsilon(self, step: int, goal: int) -> float:
        c = self.config
        if c.controller_epsilon == "success-rate":
            return self.stats.epsilon(goal, c.success_epsilon_min)
        return c.controller_annealing.at(step)

    def choose_goal(self, meta_q: Any, valid: np.ndarray, step: int) -> int:
        """A random valid goal with probability epsilon_2, else the best valid one (``meta_q()`` is lazy)."""
        if self.rng.random() < self.meta_epsilon(step):
            goal = int(self.rng.choice(np.flatnonzero(valid)))
        else:
            goal = choose_goal(meta_q(), valid)
        self.stats.chosen[goal] += 1
        return goal

    def prepare(self, agent: Any) -> None:
        """Nothing to set up (the exploration API's hook)."""

    def metrics(self, step: int) -> dict[str, float]:
        out = {"epsilon": self.meta_epsilon(step)}
        if self.config.controller_epsilon == "anneal":
            out["controller_epsilon"] = self.config.controller_annealing.at(step)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state, "stats": self.stats.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.stats.load_state_dict(state["stats"])


class Memories:
    """D1 and D2 as one buffer for the loop: length, saving and loading both (D2 next to D1's file)."""

    def __init__(self, controller: Replay, meta: Replay) -> None:
        self.controller = controller
        self.meta = meta

    def __len__(self) -> int:
        return len(self.controller)

    @staticmethod
    def meta_path(path: Path) -> Path:
        return path.with_name(path.stem + "-meta" + path.suffix)

    def save(self, path: Path) -> None:
        self.controller.save(path)
        self.meta.save(self.meta_path(path))

    def load(self, path: Path) -> None:
        self.controller.load(path)
        self.meta.load(self.meta_path(path))


class HierarchicalCollector(Collector):
    """Steps the envs with options: goals from the meta-controller, actions from the controller."""

    def __init__(
        self, envs: Any, agent: HDQNAgent, exploration: HDQNExploration, memories: Memories, seed: int
    ) -> None:
        super().__init__(envs, agent.policy.meta_q_values, exploration, memories.controller, seed)  # type: ignore[arg-type]
        self.agent = agent
        self.memories = memories
        self.config = agent.config
        n = self.num_envs
        self.goal = np.full(n, -1, dtype=np.int64)  # -1: choose one at the next step
        self.option_start = np.array(self.obs)
        self.option_return = np.zeros(n)  # F, the extrinsic reward of the option so far
        self.option_steps = np.zeros(n, dtype=np.int64)
        self.intrinsic_return = np.zeros(n)  # of the current episode
        discrete = agent.observation.get("space") == "Discrete"
        self.visits = np.zeros((n, int(agent.observation["n"]))) if discrete else None
        if self.visits is not None:
            self.visits[np.arange(n), np.asarray(self.obs, dtype=np.int64)] += 1
        self.finished: list[dict[str, Any]] = []  # per finished episode: intrinsic return, visits
        self.options_ended: list[tuple[int, bool]] = []  # (goal, reached) since the trainer last looked

    def goal_inputs(self, obs: np.ndarray) -> list[np.ndarray]:
        return [self.agent.goal_space.goal_input(env, obs[i]) for i, env in enumerate(self.envs.envs)]

    def collect(self, vector_steps: int, step: int) -> list[Episode]:
        episodes: list[Episode] = []
        n, agent, cfg, test = self.num_envs, self.agent, self.config, self.agent.test
        for k in range(vector_steps):
            now = step + k * n
            self._start_options(now)
            controller_obs = agent.controller_obs(self.obs, self.goal)
            actions = self._actions(controller_obs, now)
            next_obs, reward, terminated, truncated, info = self.envs.step(actions)
            for i in range(n):
                self.actions[i].append(int(actions[i]))
            x_next = self.goal_inputs(next_obs)
            reached = np.array([test.reached(test.check_input(x_next[i]))[self.goal[i]] for i in range(n)])
            intrinsic = cfg.intrinsic_reward * reached - cfg.step_penalty  # the internal critic
            self.option_steps += 1
            self.option_return += reward
            self.intrinsic_return += intrinsic
            if self.visits is not None:
                self.visits[np.arange(n), np.asarray(next_obs, dtype=np.int64)] += 1
            timed_out = self.option_steps >= (cfg.max_option_steps or np.iinfo(np.int64).max)
            option_terminal = reached | terminated
            self.memories.controller.add(
                controller_obs,
                actions,
                intrinsic,
                agent.controller_obs(next_obs, self.goal),
                option_terminal,
                (truncated | timed_out) & ~option_terminal,
            )
            self._end_options(
                np.flatnonzero(option_terminal | truncated | timed_out), next_obs, reached, terminated, truncated
            )
            done = terminated | truncated
            if done.any():
                next_obs = self._end_episodes(done, info, next_obs, now + n, episodes)
            self.obs = next_obs
        return episodes

    def _start_options(self, now: int) -> None:
        """A goal for every env without one (epsilon_2-greedy over the valid goals)."""
        test = self.agent.test
        for i in np.flatnonzero(self.goal < 0):
            x = test.check_input(self._goal_input(i))
            self.goal[i] = self.exploration.choose_goal(partial(self._meta_q, i), test.valid(x), now)
            self.option_start[i] = self.obs[i]
            self.option_return[i] = 0.0
            self.option_steps[i] = 0

    def _meta_q(self, i: int) -> np.ndarray:
        return self.agent.policy.meta_q_values(self.obs[i : i + 1])[0]

    def _actions(self, controller_obs: np.ndarray, now: int) -> np.ndarray:
        """epsilon_1-greedy actions of the controller (epsilon per env's goal)."""
        explore, n = self.exploration, self.num_envs
        epsilons = np.array([explore.controller_epsilon(now, int(g)) for g in self.goal])
        random_pick = explore.rng.random(n) < epsilons
        actions = explore.rng.integers(0, self.n_actions, size=n)
        if not random_pick.all():
            greedy = self.agent.controller.policy.q_values(controller_obs).argmax(axis=1)
            actions = np.where(random_pick, actions, greedy)
        return actions

    def _end_options(
        self, over: np.ndarray, next_obs: np.ndarray, reached: np.ndarray, terminated: np.ndarray, truncated: np.ndarray
    ) -> None:
        """D2 gets ``(s0, g, F, s_end)`` for every option that ended; its goal's record its outcome."""
        if not len(over):
            return
        self.memories.meta.add(
            self.option_start[over],
            self.goal[over],
            self.option_return[over],
            next_obs[over],
            terminated[over],
            truncated[over] & ~terminated[over],
            envs=over,
        )
        for i in over:
            self.exploration.stats.record(int(self.goal[i]), bool(reached[i]))
            self.options_ended.append((int(self.goal[i]), bool(reached[i])))
        self.goal[over] = -1

    def _end_episodes(
        self, done: np.ndarray, info: dict[str, Any], next_obs: np.ndarray, step: int, episodes: list[Episode]
    ) -> np.ndarray:
        """Record finished games (return, intrinsic return, state visits) and reset the envs that ended."""
        finished = done & info.get("_episode", np.zeros(self.num_envs, dtype=bool))
        for i in np.flatnonzero(finished):
            stats = info["episode"]
            episodes.append(Episode(step, float(stats["r"][i]), int(stats["l"][i])))
            record: dict[str, Any] = {"step": step, "intrinsic_return": float(self.intrinsic_return[i])}
            if self.visits is not None:
                record["visits"] = self.visits[i].copy()
            self.finished.append(record)
        self.intrinsic_return[finished] = 0.0
        next_obs = self._reset(done, finished, next_obs)
        if self.visits is not None:
            self.visits[finished] = 0.0
            self.visits[np.flatnonzero(done), np.asarray(next_obs, dtype=np.int64)[done]] += 1
        return next_obs

    def _goal_input(self, i: int) -> np.ndarray:
        return self.agent.goal_space.goal_input(self.envs.envs[i], self.obs[i])

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "goal": self.goal.tolist(),
            "option_start": np.array(self.option_start),
            "option_return": self.option_return.tolist(),
            "option_steps": self.option_steps.tolist(),
            "intrinsic_return": self.intrinsic_return.tolist(),
            "visits": None if self.visits is None else self.visits.tolist(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.goal[:] = state["goal"]
        self.option_start = np.asarray(state["option_start"]).astype(self.option_start.dtype)
        self.option_return[:] = state["option_return"]
        self.option_steps[:] = state["option_steps"]
        self.intrinsic_return[:] = state["intrinsic_return"]
        if self.visits is not None and state.get("visits") is not None:
            self.visits[:] = state["visits"]


class HDQNTrainer(Trainer):
    """:class:`Trainer` with h-DQN's collection and two learners."""

    agent: HDQNAgent

    def build(self, seeds: list[int], device: str) -> None:
        config = self.config
        if config.train.async_collection:
            raise ConfigError("h-DQN collects serially", hint="set train.async_collection=false")
        torch.manual_seed(seeds[0])
        self.envs = make_vector_env(config.env, config.env.num_envs, training=True)
        self.agent = build_agent(config, self.envs.single_observation_space, self.envs.single_action_space, device)
        a = self.agent
        self.exploration = HDQNExploration(a.config, a.n_goals, a.n_actions, seed=seeds[1])
        n = self.envs.num_envs
        d1 = make_replay(config.replay, a.controller_space, a.config.controller.gamma, n, seeds[2])
        d2 = make_replay(
            a.config.meta_replay,
            self.envs.single_observation_space,
            a.config.meta.gamma,
            n,
            seeds[2] + 7,
            section="agent.meta_replay",
        )
        self.buffer = Memories(d1, d2)
        self.collector = HierarchicalCollector(self.envs, a, self.exploration, self.buffer, seed=seeds[3])
        self.meta_window = MetricWindow()

    def run_chunk(self) -> list[Episode]:
        cfg: HDQNConfig = self.config.agent  # type: ignore[assignment]
        n = self.collector.num_envs
        every = min(cfg.controller.train_freq, cfg.meta.train_freq)
        prev = self.step
        chunk_end = min(self.config.train.total_steps, (prev // every + 1) * every)
        target = prev + -(-(chunk_end - prev) // n) * n
        episodes = self.collector.collect(max(0, target - self.collected) // n, self.collected)
        self.collected = max(self.collected, target)
        self.step = target
        progress = self.step / self.config.train.total_steps
        levels = (
            (self.agent.controller, cfg.controller, self.buffer.controller, self.window, True),
            (self.agent.meta, cfg.meta, self.buffer.meta, self.meta_window, self.step > cfg.pretrain_steps),
        )
        for learner, level, memory, window, active in levels:
            learner.update_target(crossings(prev, self.step, level.target_update_interval))
            if not active or self.step <= level.learning_starts or len(memory) < level.batch_size:
                continue
            updates = level.gradient_steps * crossings(prev, self.step, level.train_freq)
            for batch in memory.sample_many(updates, level.batch_size, progress):
                result = learner.update(batch)
                memory.update_priorities(batch.indices, result.td_errors)
                window.add(result.loss, result.q_mean)
        return episodes

    def metric_windows(self) -> list[MetricWindow]:
        return [self.window, self.meta_window]

    def _finish(self, interrupted: bool, start_step: int, train_seconds: float, signal: int | None = None) -> Any:
        """As for DQN, and each goal's choices and recent success rate into run.json."""
        stats = self.exploration.stats
        self.run.update_meta(
            goals={
                name: {"chosen": int(stats.chosen[g]), "success_rate": stats.success_rate(g)}
                for g, name in enumerate(self.agent.goals)
            }
        )
        return super()._finish(interrupted, start_step, train_seconds, signal)

    def _record_episodes(self, episodes: list[Episode]) -> None:
        super()._record_episodes(episodes)
        collector: HierarchicalCollector = self.collector  # type: ignore[assignment]
        for record in collector.finished:
            metrics = {"train/intrinsic_return": record["intrinsic_return"]}
            if "visits" in record:
                metrics.update({f"hdqn/visits_s{k + 1}": float(v) for k, v in enumerate(record["visits"])})
            self.tracker.log_metrics(metrics, record["step"])
        collector.finished.clear()

    def _log_window(self, steps_per_second: float) -> None:
        collector: HierarchicalCollector = self.collector  # type: ignore[assignment]
        stats = self.exploration.stats
        metrics: dict[str, float] = {f"train/meta_{k.split('/')[1]}": v for k, v in self.meta_window.means().items()}
        options = collector.options_ended
        for g, name in enumerate(self.agent.goals):
            if options:
                metrics[f"hdqn/goal_share/{name}"] = sum(goal == g for goal, _ in options) / len(options)
            rate = stats.success_rate(g)
            if rate is not None:
                metrics[f"hdqn/success_rate/{name}"] = rate
        collector.options_ended = []
        self.meta_window = MetricWindow()
        self.tracker.log_metrics(metrics, self.step)
        super()._log_window(steps_per_second)
