"""Goal spaces for h-DQN: what the meta-controller may ask for, and when it is done.

A goal space lists its goals and, for each, *declarative* clauses over a goal-input vector
read from the game (see :mod:`qagent.serve.goals`): the goal is reached when all its clauses
``(index, low, high)`` hold. Because the test is data, an exported hierarchy carries it in
its metadata and the torch-free server runs it. The goal input is the observation itself
(``input = "observation"``) or a vector the goal space reads from the env, such as the Atari
RAM (``input = "client"``: a served policy gets it from the client with each observation).

Write your own with ``@register_goal_space("name")`` on a subclass of :class:`GoalSpace`
(docs/hdqn.md works an example through).
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from qagent.envs.minigrid import OBJECT_TYPES, STATES
from qagent.errors import ConfigError
from qagent.plugins.registries import register_goal_space
from qagent.serve.goals import Clause, GoalTest

Region = tuple[float, float, float, float]
"""A rectangle on a rendered frame: ``(top, bottom, left, right)`` as fractions of its height and width."""


class GoalSpace:
    """Base class: set :attr:`goals` and :attr:`reached_when`; override :meth:`goal_input` to read the env.

    :param observation_space: the env's observation space.
    :param kwargs: the goal space's options (``agent.goal_space_kwargs``).
    """

    input: ClassVar[str] = "observation"
    """``"observation"``: the goal input is the observation; ``"client"``: :meth:`goal_input` reads the env."""

    goals: list[str]
    """Goal names, in the order of the meta-controller's outputs."""
    reached_when: list[list[Clause]]
    """Per goal, clauses ``(index, low, high)`` on the goal input that all hold when it is reached."""
    requires: list[list[Clause]] = []
    """Per goal, clauses that must hold for the meta-controller to choose it (empty: none)."""
    lives: ClassVar[int | None] = None
    """The goal input's index of the game's lives counter (a drop ends the option as a failure); None: no lives."""

    def __init__(self, observation_space: gym.Space, **kwargs: Any) -> None:
        self.observation_space = observation_space
        if kwargs:
            raise ConfigError(
                f"goal space {type(self).__name__} takes no option {sorted(kwargs)[0]!r}",
                hint="check agent.goal_space_kwargs",
            )

    def goal_input(self, env: gym.Env, obs: Any) -> np.ndarray:
        """The vector the goal test reads in the env's current state (whose observation is ``obs``)."""
        return np.atleast_1d(np.asarray(obs)).reshape(-1)

    def masks(self) -> list[list[int]] | None:
        """Per goal, where it lies in an image observation: ``[row0, row1, col0, col1)``.

        The ``mask`` goal encoding draws it as the controller's goal plane; None (the default)
        when the goal space cannot place its goals in the observation.
        """
        return None

    def channels(self) -> list[list[int]] | None:
        """Per goal, the image observation's channels that show where it is now (their maximum).

        The ``observed-mask`` goal encoding adds that as the controller's goal plane, so a goal whose
        place changes from episode to episode is marked where it lies; None (the default) when the
        observation does not show the goals.
        """
        return None

    def regions(self, env: gym.Env) -> list[Region | None] | None:
        """Per goal, where it is on the env's rendered frame now, for people watching (``qagent watch``).

        Each is ``(top, bottom, left, right)`` as fractions of the frame's height and width, or
        None where the goal is nowhere on screen; None (the default) when the goal space cannot say.
        """
        return None

    def describe(self, name: str) -> dict[str, Any]:
        """What export writes into the metadata: enough to run the goal test without this class."""
        return {
            "name": name,
            "goals": list(self.goals),
            "input": self.input,
            "reached_when": [[list(c) for c in clauses] for clauses in self.reached_when],
            "requires": [[list(c) for c in clauses] for clauses in self.requires],
            "lives": self.lives,
        }

    @staticmethod
    def pick(requested: list[str] | None, known: Any, game: str) -> list[str]:
        """The goals a config asks for (``goals: [...]``), all of ``known`` by default; unknown names are errors."""
        goals = list(requested or known)
        unknown = [g for g in goals if g not in known]
        if unknown:
            raise ConfigError(f"unknown {game} goal {unknown[0]!r}", hint=f"choose from {', '.join(known)}")
        return goals

    @cached_property
    def test(self) -> GoalTest:
        return GoalTest(self.describe(type(self).__name__))


@register_goal_space("state-index")
class StateIndexGoals(GoalSpace):
    """Every state of a discrete observation space is a goal (Kulkarni et al.'s decision process)."""

    def __init__(self, observation_space: gym.Space, states: list[int] | None = None) -> None:
        super().__init__(observation_space)
        if not isinstance(observation_space, gym.spaces.Discrete):
            raise ConfigError(
                f"the state-index goal space needs a Discrete observation space, not {observation_space}",
                hint="use a goal space that reads your env's state, e.g. minigrid-objects",
            )
        n = int(observation_space.n)
        self.states = list(range(n)) if states is None else [int(s) for s in states]
        if not self.states or any(not 0 <= s < n for s in self.states):
            raise ConfigError(f"agent.goal_space_kwargs.states must be states in 0..{n - 1}, got {states}")
        self.goals = [f"s{s + 1}" for s in self.states]
        self.reached_when = [[(0, s, s)] for s in self.states]


MINIGRID_OBJECTS = ("key", "door", "goal", "ball", "box")
HANDS_FREE = 2 * len(MINIGRID_OBJECTS)  # the goal input's last entry: the agent carries nothing


def _minigrid_state(env: gym.Env) -> np.ndarray:
    """What the agent has done, which objects the task has (carried ones count), whether its hands are free:
    ``[has_key, doors_open, at_goal, has_ball, has_box, key, door, goal, ball, box, hands_free]``."""
    grid_env = env.unwrapped
    carrying = getattr(grid_env, "carrying", None)
    carried = carrying.type if carrying is not None else None
    cells = [cell for cell in grid_env.grid.grid if cell is not None]
    present = {cell.type for cell in cells} | ({carried} if carried else set())
    doors = [cell for cell in cells if cell.type == "door"]
    here = grid_env.grid.get(*grid_env.agent_pos)
    done = [
        carried == "key",
        bool(doors) and all(door.is_open for door in doors),
        here is not None and here.type == "goal",
        carried == "ball",
        carried == "box",
    ]
    return np.array(done + [name in present for name in MINIGRID_OBJECTS] + [carried is None], dtype=np.uint8)


@register_goal_space("minigrid-objects")
class MiniGridObjectGoals(GoalSpace):
    """MiniGrid's objects as goals: pick up the key, open the doors, reach the goal square, pick up
    the ball or the box; and, when named in ``goals: [...]``, ``drop``: carry nothing.

    Read from the env's grid, so it works on any MiniGrid task with these objects (DoorKey,
    KeyCorridor, UnlockPickup, MultiRoom, ...): a goal is chosen only in tasks that have its
    object. The goal input is ``[has_key, doors_open, at_goal, has_ball, has_box]`` (``doors_open``:
    every door of the grid is open), then whether the task has a key, a door, a goal square, a
    ball and a box, then whether the agent's hands are free. ``drop`` (chosen only while carrying
    something, once every door is open) splits "pick up the box" in tasks where the key is still in
    hand (UnlockPickup) into two options a controller can find by chance; with it, ``key`` is chosen
    only while a door is closed.
    """

    input = "client"
    ALL: ClassVar[dict[str, int]] = {name: i for i, name in enumerate(MINIGRID_OBJECTS)}

    def __init__(self, observation_space: gym.Space, goals: list[str] | None = None) -> None:
        super().__init__(observation_space)
        self.goals = self.pick(goals or list(MINIGRID_OBJECTS), [*MINIGRID_OBJECTS, "drop"], "MiniGrid")
        present = len(MINIGRID_OBJECTS)
        self.reached_when = [[(HANDS_FREE, 1, 1)] if g == "drop" else [(self.ALL[g], 1, 1)] for g in self.goals]
        self.requires = [[(HANDS_FREE, 0, 0)] if g == "drop" else [(present + self.ALL[g], 1, 1)] for g in self.goals]
        if "drop" in self.goals:
            # A key serves to open doors: taken only while one is closed, dropped only once all are
            # open, so key and drop cannot undo each other in a loop that always succeeds.
            doors_open = self.ALL["door"]
            for g, goal in enumerate(self.goals):
                if goal == "key":
                    self.requires[g].append((doors_open, 0, 0))
                elif goal == "drop":
                    self.requires[g].append((doors_open, 1, 1))

    def goal_input(self, env: gym.Env, obs: Any) -> np.ndarray:
        return _minigrid_state(env)

    def channels(self) -> list[list[int]] | None:
        """With ``onehot-image`` observations, each goal's object-type plane (``door``: every door)."""
        shape = getattr(self.observation_space, "shape", ())
        if len(shape) != 3 or shape[0] != OBJECT_TYPES + STATES:  # not env.minigrid.observation=onehot-image
            return None
        from minigrid.core.constants import OBJECT_TO_IDX

        return [[OBJECT_TO_IDX[goal]] if goal in OBJECT_TO_IDX else [] for goal in self.goals]

    def regions(self, env: gym.Env) -> list[Region | None]:
        """The cell of each goal's object (the first closed door for ``door``); None once carried or done."""
        grid = env.unwrapped.grid
        found: dict[str, Region] = {}
        for index, cell in enumerate(grid.grid):
            if cell is None or cell.type in found or (cell.type == "door" and cell.is_open):
                continue
            row, col = divmod(index, grid.width)
            found[cell.type] = (row / grid.height, (row + 1) / grid.height, col / grid.width, (col + 1) / grid.width)
        return [found.get(goal) for goal in self.goals]


# Montezuma's Revenge, first room, in the RAM's coordinates: player x at address 42 (the
# sprite's left edge is x - 1 on the 160-pixel screen), player y at 43 (235 on the top
# platform, 192 on the middle ones, 148 on the floor; the sprite's top row is 310 - y on the
# 210-line screen), the room at 3, the inventory bits at 65 (2: the key). Measured by placing
# the player with ALE's setRAM and reading the screen (tests/test_hdqn.py replays it).
MONTEZUMA_ROOM, MONTEZUMA_X, MONTEZUMA_Y, MONTEZUMA_INVENTORY = 3, 42, 43, 65
MONTEZUMA_LIVES = 58  # lives left after this one (ALE's lives() - 1)
HAS_KEY: Clause = (MONTEZUMA_INVENTORY, 2, 3)


SCREEN_HEIGHT, SCREEN_WIDTH = 210, 160
KEY_ON_SCREEN = (95, 140, 8, 22)  # rows and columns of the key and of the player taking it


def _at(x: tuple[int, int], y: tuple[int, int], room: int = 1) -> list[Clause]:
    return [(MONTEZUMA_ROOM, room, room), (MONTEZUMA_X, *x), (MONTEZUMA_Y, *y)]


def _player_on_screen(clauses: list[Clause]) -> tuple[int, int, int, int]:
    """The screen rectangle the player's sprite covers anywhere in a position goal's ranges."""
    bounds = {index: (low, high) for index, low, high in clauses}
    (x_low, x_high), (y_low, y_high) = bounds[MONTEZUMA_X], bounds[MONTEZUMA_Y]
    return int(310 - y_high - 3), int(310 - y_low + 22), int(x_low - 5), int(x_high + 6)


@register_goal_space("montezuma-ram")
class MontezumaRamGoals(GoalSpace):
    """The first room of Montezuma's Revenge: ladders, rope, key and doors, located from the Atari RAM.

    The goal input is the 128-byte RAM (``input = "client"``: a served policy needs it with
    each frame). The doors count as reached when the player stands in the doorway, which only
    a player with the key gets to (the door opens for +300); the meta-controller may choose a
    door only while holding the key. With pixel observations each goal also has a mask (its
    place on the screen) for the ``mask`` goal encoding, the paper's controller input.
    """

    input = "client"
    lives = MONTEZUMA_LIVES
    ENTITIES: ClassVar[dict[str, list[Clause]]] = {
        "middle-ladder": _at((72, 82), (190, 194)),
        "rope": _at((108, 113), (196, 225)),
        "lower-left-ladder": _at((16, 26), (146, 150)),
        "lower-right-ladder": _at((128, 138), (146, 150)),
        "key": [HAS_KEY],
        "left-door": _at((14, 25), (230, 240)),
        "right-door": _at((130, 141), (230, 240)),
    }
    NEEDS_KEY: ClassVar[set[str]] = {"left-door", "right-door"}

    def __init__(self, observation_space: gym.Space, goals: list[str] | None = None) -> None:
        super().__init__(observation_space)
        self.goals = self.pick(goals, self.ENTITIES, "Montezuma")
        self.reached_when = [self.ENTITIES[g] for g in self.goals]
        self.requires = [[HAS_KEY] if g in self.NEEDS_KEY else [] for g in self.goals]

    def goal_input(self, env: gym.Env, obs: Any) -> np.ndarray:
        return np.asarray(env.unwrapped.ale.getRAM(), dtype=np.uint8)

    def regions(self, env: gym.Env) -> list[Region | None]:
        """Each goal's place on the 210x160 screen (fixed: the first room's)."""
        return [
            (top / SCREEN_HEIGHT, bottom / SCREEN_HEIGHT, left / SCREEN_WIDTH, right / SCREEN_WIDTH)
            for top, bottom, left, right in self._screen_rectangles()
        ]

    def _screen_rectangles(self) -> list[tuple[int, int, int, int]]:
        return [KEY_ON_SCREEN if g == "key" else _player_on_screen(self.ENTITIES[g]) for g in self.goals]

    def masks(self) -> list[list[int]] | None:
        """Each goal's place on the screen, scaled to pixel observations (a door: where the player stands in it)."""
        shape = getattr(self.observation_space, "shape", ())
        if len(shape) != 3:
            return None  # RAM observations: nothing to draw into
        rows, cols = shape[1] / SCREEN_HEIGHT, shape[2] / SCREEN_WIDTH
        masks = []
        for top, bottom, left, right in self._screen_rectangles():
            masks.append([int(top * rows), int(np.ceil(bottom * rows)), int(left * cols), int(np.ceil(right * cols))])
        return masks
