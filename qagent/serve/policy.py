"""Run an exported policy with onnxruntime and numpy alone.

>>> policy = Policy.load("cartpole.onnx")           # doctest: +SKIP
>>> policy.act([0.01, -0.02, 0.03, 0.04])           # one observation -> one action
1
>>> policy.q_values(np.zeros((8, 4), np.float32))    # a batch -> an (8, 2) array
>>> with_state = policy.session()                   # frame stacking between steps
>>> with_state.act(frame)

Observations are checked against the metadata the file carries: shape (one observation or a
batch), dtype (numbers that fit, e.g. integers for a float model; never floats for a uint8
model), and values (finite, and within range for integer inputs). Every mismatch is an
:class:`InputError` with a message a client can act on.
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from qagent.serve import metadata as md


class InputError(ValueError):
    """An observation that does not fit the policy: shape, dtype or values."""


class PolicyLoadError(Exception):
    """A file that is missing, not an ONNX model, or not a qagent policy."""


class Policy:
    """An exported Q-network: observations in; Q-values and greedy actions out.

    :param session: an onnxruntime session of a qagent export.
    :param metadata: the export's metadata (see :mod:`qagent.serve.metadata`).
    """

    def __init__(self, session: ort.InferenceSession, metadata: dict[str, Any], path: str | None = None) -> None:
        self._session = session
        self.metadata = metadata
        self.path = path
        observation = metadata["observation"]
        self.observation_shape: tuple[int, ...] = tuple(int(d) for d in observation["shape"])
        self.observation_dtype = np.dtype(observation["dtype"])
        self.n_actions = int(metadata["action"]["n"])
        self.action_meanings: list[str] | None = metadata["action"].get("meanings")
        self.frame_stack: int | None = (metadata.get("preprocessing") or {}).get("frame_stack")
        self._integer_limit = int(observation["n"]) if observation.get("space") == "Discrete" else None

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        intra_op_num_threads: int = 1,
        inter_op_num_threads: int = 1,
        providers: list[str] | None = None,
    ) -> Policy:
        """Open an exported policy.

        One intra-op thread by default: these models are small, and on a small machine a
        single thread gives the lowest tail latency under concurrent requests.
        """
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_num_threads
        options.inter_op_num_threads = inter_op_num_threads
        options.log_severity_level = 3
        path = str(path)
        if not Path(path).is_file():
            raise PolicyLoadError(f"no policy file at {path}")
        try:
            session = ort.InferenceSession(path, options, providers=providers or ["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises several unrelated types
            raise PolicyLoadError(f"{path} is not a loadable ONNX model: {str(exc).splitlines()[0][:200]}") from None
        text = session.get_modelmeta().custom_metadata_map.get(md.METADATA_KEY)
        if text is None:
            raise PolicyLoadError(f"{path} is an ONNX model without qagent metadata; export it with 'qagent export'")
        try:
            metadata = md.loads(text)
        except ValueError as exc:
            raise PolicyLoadError(f"{path}: {exc}") from None
        if "hierarchy" in metadata and cls is Policy:
            from qagent.serve.hierarchy import HierarchicalPolicy

            return HierarchicalPolicy(session, metadata, path)
        return cls(session, metadata, path)

    # ------------------------------------------------------------------ inference

    def prepare(self, obs: Any) -> tuple[np.ndarray, bool]:
        """Check and convert ``obs``; returns ``(batch, single)`` where ``batch`` has a batch axis."""
        array = as_numeric_array(obs)
        shape = self.observation_shape
        if array.shape == shape:
            single = True
            array = array[None]
        elif array.ndim == len(shape) + 1 and array.shape[1:] == shape:
            single = False
            if array.shape[0] == 0:
                raise InputError("obs is an empty batch")
        else:
            expected = f"{shape} for one observation or (batch, {', '.join(map(str, shape))}) for a batch"
            raise InputError(f"obs has shape {array.shape}; expected {expected}".replace(", )", ")"))
        return self._convert(array), single

    def _convert(self, array: np.ndarray) -> np.ndarray:
        target = self.observation_dtype
        return convert_values(array, target, self._integer_limit)

    def predict(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Greedy actions ``int64[B]`` and Q-values ``float32[B, A]`` of a prepared batch."""
        q_values, actions = self._session.run(list(md.OUTPUT_NAMES), {md.INPUT_NAME: batch})
        return actions, q_values

    def q_values(self, obs: Any) -> np.ndarray:
        """Q-values: ``(n_actions,)`` for one observation, ``(batch, n_actions)`` for a batch."""
        batch, single = self.prepare(obs)
        q = self.predict(batch)[1]
        return q[0] if single else q

    def act(self, obs: Any) -> int | np.ndarray:
        """The greedy action: an int for one observation, an ``int64`` array for a batch."""
        batch, single = self.prepare(obs)
        actions = self.predict(batch)[0]
        return int(actions[0]) if single else actions

    def session(self) -> PolicySession:
        """Per-episode state (frame stacking) for stepping through one episode."""
        return PolicySession(self)

    def __repr__(self) -> str:
        return (
            f"Policy({self.path!r}, agent={self.metadata.get('agent')!r}, env={self.metadata['env']['id']!r}, "
            f"obs={self.observation_shape} {self.observation_dtype}, actions={self.n_actions})"
        )


class PolicySession:
    """Steps through one episode, keeping what the policy needs between steps.

    For a policy trained on stacked frames (``preprocessing.frame_stack = k``), :meth:`act`
    takes one frame at a time and feeds the model the last ``k`` frames, the first frame of an
    episode repeated to fill the stack (as gymnasium's ``FrameStackObservation`` does).
    Without frame stacking it passes observations through.
    """

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.stack = policy.frame_stack
        self.frame_shape = policy.observation_shape[1:] if self.stack else policy.observation_shape
        self._frames: collections.deque[np.ndarray] = collections.deque(maxlen=self.stack or 1)
        self.steps = 0

    def reset(self) -> None:
        """Start a new episode."""
        self._frames.clear()
        self.steps = 0

    def observation(self, frame: Any) -> np.ndarray:
        """The model input for this step (the stacked frames), after checking ``frame``."""
        array = as_numeric_array(frame)
        if array.shape != self.frame_shape:
            raise InputError(
                f"obs has shape {array.shape}; a session step takes one observation of shape {self.frame_shape}"
            )
        array = convert_values(array[None], self.policy.observation_dtype, self.policy._integer_limit)[0]
        if not self.stack:
            return array
        if not self._frames:
            self._frames.extend(array for _ in range(self.stack))
        else:
            self._frames.append(array)
        return np.stack(self._frames)

    def step(self, frame: Any, goal_input: Any = None) -> tuple[int, np.ndarray]:
        """``(action, q_values)`` for the next observation of the episode (``goal_input``: h-DQN only)."""
        actions, q_values = self.policy.predict(self.observation(frame)[None])
        self.steps += 1
        return int(actions[0]), q_values[0]

    def act(self, frame: Any, goal_input: Any = None) -> int:
        """The greedy action for the next observation of the episode."""
        return self.step(frame, goal_input)[0]

    def info(self) -> dict[str, Any]:
        """What else the session knows after a step (an h-DQN session's current goal)."""
        return {}


def as_numeric_array(obs: Any) -> np.ndarray:
    """``obs`` as a numeric numpy array, or an :class:`InputError` saying why not."""
    try:
        array = np.asarray(obs)
    except (ValueError, TypeError) as exc:  # ragged nested lists
        raise InputError(f"obs is not a rectangular array of numbers ({exc})") from None
    if array.dtype.kind not in "biuf":
        what = {"U": "text", "S": "bytes", "O": "mixed or nested values"}.get(array.dtype.kind, array.dtype.name)
        raise InputError(f"obs must hold numbers, not {what}")
    return array


def convert_values(array: np.ndarray, target: np.dtype, limit: int | None = None) -> np.ndarray:
    """Cast ``array`` to ``target`` when that loses nothing; an :class:`InputError` otherwise.

    Float models take any finite numbers. Integer models (uint8 frames, discrete states) take
    integers within range, never floats.
    """
    kind = array.dtype.kind
    if kind == "b":
        raise InputError(f"obs must hold numbers of dtype {target.name}, not booleans")
    if target.kind == "f":
        out = array.astype(target, copy=False)
        if kind == "f" and not np.isfinite(out).all():
            raise InputError("obs contains NaN or infinite values")
        return out
    if kind == "f":
        raise InputError(f"obs must hold integers ({target.name}); got {array.dtype.name} values")
    info = np.iinfo(target)
    low, high = (0, limit - 1) if limit is not None else (int(info.min), int(info.max))
    if array.size and (array.min() < low or array.max() > high):
        raise InputError(f"obs values must lie in [{low}, {high}] ({target.name})")
    return array.astype(target, copy=False)
