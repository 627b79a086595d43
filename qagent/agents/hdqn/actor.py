"""h-DQN's actor: options in the envs, both levels' exploration, and what goes into D1 and D2.

Per env step, in every env: an env without a goal asks the meta-controller for one (epsilon_2
greedy over the goals the goal space allows, less those that just failed: see
:class:`~qagent.serve.goals.FailedGoals`); the controller acts epsilon_1-greedily on
``(s, g)``; the internal critic pays ``intrinsic_reward`` if ``g`` is reached in ``s'`` (less
``step_penalty``, and nothing when a life is lost); D1 gets ``((s, g), a, r_int, (s', g))``,
terminal when the goal is reached, a life is lost or the episode terminates. When the option
ends (those, a truncated episode, or ``max_option_steps``), D2 gets ``(s0, g, F, s_end)`` with
``F`` the extrinsic reward summed over the option, terminal when the episode terminated.
"""

from __future__ import annotations

from collections import deque
from functools import partial
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from qagent.agents.base import Actor, Transition
from qagent.serve.goals import FailedGoals, choose_goal

if TYPE_CHECKING:
    from qagent.agents.hdqn.config import HDQNConfig
    from qagent.agents.hdqn.memory import HierarchicalMemory
    from qagent.agents.hdqn.policy import HierarchicalPolicy


class GoalStats:
    """Per-goal choices and outcomes of recent options: success rates and the per-goal epsilon_1."""

    def __init__(self, n_goals: int, window: int) -> None:
        self.outcomes = [deque(maxlen=window) for _ in range(n_goals)]
        self.chosen = np.zeros(n_goals, dtype=np.int64)

    def record(self, goal: int, reached: bool) -> None:
        self.outcomes[goal].append(bool(reached))

    def success_rate(self, goal: int) -> float | None:
        outcomes = self.outcomes[goal]
        return sum(outcomes) / len(outcomes) if outcomes else None

    def epsilon(self, goal: int, floor: float) -> float:
        """1 - the goal's recent success rate, at least ``floor``; 1 before its first attempt."""
        rate = self.success_rate(goal)
        return 1.0 if rate is None else max(floor, 1.0 - rate)

    def state_dict(self) -> dict[str, Any]:
        return {"outcomes": [list(o) for o in self.outcomes], "chosen": self.chosen.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for outcomes, saved in zip(self.outcomes, state["outcomes"], strict=True):
            outcomes.clear()
            outcomes.extend(bool(x) for x in saved)
        self.chosen[:] = state["chosen"]


class HDQNExploration:
    """Both levels' exploration: epsilon_2 over goals, epsilon_1 over actions (annealed or per goal)."""

    def __init__(
        self, config: HDQNConfig, n_goals: int, n_actions: int, seed: int, total_steps: int | None = None
    ) -> None:
        self.config = config
        self.n_goals = n_goals
        self.n_actions = n_actions
        self.total_steps = total_steps  # for schedules given as a fraction of the run
        self.rng = np.random.default_rng(seed)
        self.stats = GoalStats(n_goals, config.success_window)

    def meta_epsilon(self, step: int) -> float:
        """1 while the controller pre-trains, then annealed."""
        c = self.config
        return 1.0 if step < c.pretrain_steps else c.meta_epsilon.at(step - c.pretrain_steps, self.total_steps)

    def controller_epsilon(self, step: int, goal: int) -> float:
        c = self.config
        if c.controller_epsilon == "success-rate":
            return self.stats.epsilon(goal, c.success_epsilon_min)
        return c.controller_annealing.at(step, self.total_steps)

    def choose_goal(self, meta_q: Any, valid: np.ndarray, step: int) -> int:
        """A random valid goal with probability epsilon_2, else the best valid one (``meta_q()`` is lazy)."""
        if self.rng.random() < self.meta_epsilon(step):
            goal = int(self.rng.choice(np.flatnonzero(valid)))
        else:
            goal = choose_goal(meta_q(), valid)
        self.stats.chosen[goal] += 1
        return goal

    def metrics(self, step: int) -> dict[str, float]:
        out = {"epsilon": self.meta_epsilon(step)}
        if self.config.controller_epsilon == "anneal":
            out["controller_epsilon"] = self.config.controller_annealing.at(step, self.total_steps)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state, "stats": self.stats.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.stats.load_state_dict(state["stats"])


class HierarchicalActor(Actor):
    """Steps a batch of envs with options: goals from the meta-controller, actions from the controller.

    :param policy: both networks, the goal encoding and the goal test.
    :param envs: the sub-envs, from which the goal space reads each env's goal input.
    :param memory: D1 and D2.
    """

    def __init__(
        self,
        policy: HierarchicalPolicy,
        exploration: HDQNExploration,
        envs: list[gym.Env],
        memory: HierarchicalMemory,
        config: HDQNConfig,
        observation: dict[str, Any],
    ) -> None:
        self.policy = policy
        self.exploration = exploration
        self.envs = envs
        self.memory = memory
        self.config = config
        self.goals = policy.test.goals
        n = self.num_envs = len(envs)
        self.goal = np.full(n, -1, dtype=np.int64)  # -1: choose one at the next step
        self.option_start: np.ndarray | None = None  # the observation each option started from
        self.option_return = np.zeros(n)  # F, the extrinsic reward of the option so far
        self.option_steps = np.zeros(n, dtype=np.int64)
        self.intrinsic_return = np.zeros(n)  # of the current episode
        discrete = observation.get("space") == "Discrete"
        self.visits = np.zeros((n, int(observation["n"]))) if discrete else None
        self.options_ended: list[tuple[int, bool]] = []  # (goal, reached) since the last metrics()
        self.failed = [FailedGoals(len(self.goals), config.retry_failed_after) for _ in envs]
        self.lives = np.full(n, np.nan)  # each env's lives counter (NaN: unknown, or no lives)
        self._obs = np.zeros(0)  # the observations of the step in progress

    def _goal_inputs(self, obs: np.ndarray) -> list[np.ndarray]:
        space = self.policy.goal_space
        return [space.goal_input(env, obs[i]) for i, env in enumerate(self.envs)]

    def act(self, obs: np.ndarray, step: int) -> np.ndarray:
        self._start_options(obs, step)
        explore, n = self.exploration, self.num_envs
        epsilons = np.array([explore.controller_epsilon(step, int(g)) for g in self.goal])
        random_pick = explore.rng.random(n) < epsilons
        actions = explore.rng.integers(0, explore.n_actions, size=n)
        self._obs = obs  # the step's observations, for D1
        if not random_pick.all():
            greedy = self.policy.controller.q_values(self.policy.encoding(obs, self.goal)).argmax(axis=1)
            actions = np.where(random_pick, actions, greedy)
        return actions

    def _start_options(self, obs: np.ndarray, step: int) -> None:
        """A goal for every env without one (epsilon_2-greedy over the valid goals)."""
        test, space = self.policy.test, self.policy.goal_space
        if self.option_start is None:
            self.option_start = np.array(obs)
        for i in np.flatnonzero(self.goal < 0):
            x = test.check_input(space.goal_input(self.envs[i], obs[i]))
            meta_q = partial(self._meta_q, obs, i)
            self.goal[i] = self.exploration.choose_goal(meta_q, self.failed[i].allowed(test.valid(x)), step)
            self.option_start[i] = obs[i]
            self.option_return[i] = 0.0
            self.option_steps[i] = 0

    def _meta_q(self, obs: np.ndarray, i: int) -> np.ndarray:
        return self.policy.q_values(obs[i : i + 1])[0]

    def observe(self, step: Transition) -> None:
        _, actions, reward, next_obs, terminated, truncated = step
        cfg, test, n = self.config, self.policy.test, self.num_envs
        x_next = [test.check_input(x) for x in self._goal_inputs(next_obs)]
        lives = np.array([np.nan if test.lives_index is None else test.lives(x) for x in x_next])
        lost_life = lives < self.lives  # False where either is NaN
        self.lives = lives
        reached = np.array([test.reached(x_next[i])[self.goal[i]] for i in range(n)]) & ~lost_life
        intrinsic = cfg.intrinsic_reward * reached - cfg.step_penalty  # the internal critic
        self.option_steps += 1
        self.option_return += reward
        self.intrinsic_return += intrinsic
        if self.visits is not None:
            self.visits[np.arange(n), np.asarray(next_obs, dtype=np.int64)] += 1
        timed_out = self.option_steps >= (cfg.max_option_steps or np.iinfo(np.int64).max)
        option_terminal = reached | lost_life | terminated
        self.memory.controller.add(
            self._obs,
            actions,
            intrinsic,
            next_obs,
            option_terminal,
            (truncated | timed_out) & ~option_terminal,
            goals=self.goal.copy(),
            continues=~(terminated | truncated),
        )
        for i in range(n):
            self.failed[i].tick()
            if reached[i] or lost_life[i]:
                self.failed[i].clear()  # a new situation
            elif timed_out[i]:
                self.failed[i].fail(int(self.goal[i]))
        self._end_options(
            np.flatnonzero(option_terminal | truncated | timed_out), next_obs, reached, terminated, truncated
        )

    def _end_options(
        self, over: np.ndarray, next_obs: np.ndarray, reached: np.ndarray, terminated: np.ndarray, truncated: np.ndarray
    ) -> None:
        """D2 gets ``(s0, g, F, s_end)`` for every option that ended; its goal's record its outcome."""
        if not len(over):
            return
        self.memory.meta.add(
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

    def episodes_ended(self, finished: np.ndarray) -> list[dict[str, float]]:
        """Each game's intrinsic return (and, on discrete states, how often it visited each state)."""
        records = []
        for i in finished:
            record = {"train/intrinsic_return": float(self.intrinsic_return[i])}
            if self.visits is not None:
                record.update({f"hdqn/visits_s{k + 1}": float(v) for k, v in enumerate(self.visits[i])})
                self.visits[i] = 0.0
            records.append(record)
        self.intrinsic_return[finished] = 0.0
        return records

    def episodes_started(self, mask: np.ndarray, obs: np.ndarray) -> None:
        test = self.policy.test
        for i in np.flatnonzero(mask):
            self.failed[i].clear()
            if test.lives_index is not None:  # the counter at the start, so a life lost at once counts
                self.lives[i] = test.lives(test.check_input(self.policy.goal_space.goal_input(self.envs[i], obs[i])))
        if self.visits is not None:
            self.visits[np.flatnonzero(mask), np.asarray(obs, dtype=np.int64)[mask]] += 1

    def metrics(self, step: int) -> dict[str, float]:
        """Both epsilons, and per goal its share of the options ended since the last call and its success rate."""
        out = {f"train/{k}": v for k, v in self.exploration.metrics(step).items()}
        options, stats = self.options_ended, self.exploration.stats
        for g, name in enumerate(self.goals):
            if options:
                out[f"hdqn/goal_share/{name}"] = sum(goal == g for goal, _ in options) / len(options)
            rate = stats.success_rate(g)
            if rate is not None:
                out[f"hdqn/success_rate/{name}"] = rate
        self.options_ended = []
        return out

    def epsilon(self, step: int) -> float | None:
        return self.exploration.meta_epsilon(step)

    def summary(self) -> dict[str, Any]:
        """Each goal's choices and recent success rate, for run.json."""
        stats = self.exploration.stats
        return {
            "goals": {
                name: {"chosen": int(stats.chosen[g]), "success_rate": stats.success_rate(g)}
                for g, name in enumerate(self.goals)
            }
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "exploration": self.exploration.state_dict(),
            "goal": self.goal.tolist(),
            "option_start": None if self.option_start is None else np.array(self.option_start),
            "option_return": self.option_return.tolist(),
            "option_steps": self.option_steps.tolist(),
            "intrinsic_return": self.intrinsic_return.tolist(),
            "visits": None if self.visits is None else self.visits.tolist(),
            "failed": [failed.state() for failed in self.failed],
            "lives": self.lives.tolist(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.exploration.load_state_dict(state["exploration"])
        self.goal[:] = state["goal"]
        if state.get("option_start") is not None:
            self.option_start = np.asarray(state["option_start"]).copy()
        self.option_return[:] = state["option_return"]
        self.option_steps[:] = state["option_steps"]
        self.intrinsic_return[:] = state["intrinsic_return"]
        if self.visits is not None and state.get("visits") is not None:
            self.visits[:] = state["visits"]
        for failed, saved in zip(self.failed, state.get("failed", []), strict=False):
            failed.load_state(saved)
        if "lives" in state:
            self.lives[:] = state["lives"]
