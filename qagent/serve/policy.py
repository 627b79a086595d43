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
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import onnxruntime as ort

from qagent.serve import metadata as md


class InputError(ValueError):
    """An observation that does not fit the policy: shape, dtype or values."""


class PolicyLoadError(Exception):
    """A file that is missing, not an ONNX model, or not a qagent policy it can serve."""


MAX_RANK = 32
"""Observations have at most this many axes."""
MAX_OBSERVATION_SIZE = 1 << 24
"""Values in one observation at most (an Atari stack of four RGB frames holds 0.4 M)."""
SERVABLE_DTYPES = tuple(name for name in md.V2_DATATYPES if name != "bool")
"""Observation dtypes a policy may declare: numbers (booleans are refused as observations)."""
ONNX_TYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    **{f"tensor({name})": name for name in md.V2_DATATYPES if name not in ("float32", "float64")},
}
"""onnxruntime's type names -> numpy dtype names."""

Failure = Callable[[str], PolicyLoadError]


class Policy:
    """An exported Q-network: observations in; Q-values and greedy actions out.

    The metadata is checked against the graph when the policy is made, so a file that
    declares what it cannot do fails here, with a :class:`PolicyLoadError`, and not on every
    request. Nothing the metadata names (plugins, modules, files) is ever imported or opened.

    :param session: an onnxruntime session of a qagent export.
    :param metadata: the export's metadata (see :mod:`qagent.serve.metadata`).
    """

    graph_inputs: tuple[str, ...] = (md.INPUT_NAME,)
    """The inputs the ONNX graph must take, no more and no fewer."""
    graph_outputs: tuple[str, ...] = md.OUTPUT_NAMES
    """The outputs the ONNX graph must give."""
    kinds: ClassVar[dict[str, type[Policy]]] = {}
    """Subclasses by the metadata section that marks their files (``hierarchy``); :meth:`load` picks one."""

    def __init_subclass__(cls, section: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if section is not None:
            Policy.kinds[section] = cls

    def __init__(self, session: ort.InferenceSession, metadata: dict[str, Any], path: str | None = None) -> None:
        self._session = session
        self.metadata = metadata
        self.path = path

        def fail(message: str) -> PolicyLoadError:
            return PolicyLoadError(f"{path or 'the policy'}: {message}; re-export it with 'qagent export'")

        self._read_metadata(fail)
        self._check_graph(fail)
        self._probe(fail)

    def _read_metadata(self, fail: Failure) -> None:
        """The observation, action and preprocessing sections, checked (untrusted data)."""
        meta = self.metadata
        observation = meta.get("observation")
        if not isinstance(observation, dict):
            raise fail("its metadata has no 'observation' section (the model's input shape and dtype)")
        shape = observation.get("shape")
        if not isinstance(shape, list) or len(shape) > MAX_RANK or not all(_is_size(d) for d in shape):
            raise fail(f"the metadata's observation shape {shape!r} is not a list of positive integers")
        if math.prod(shape) > MAX_OBSERVATION_SIZE:
            raise fail(f"an observation of shape {shape} is larger than qagent.serve serves ({MAX_OBSERVATION_SIZE})")
        dtype = observation.get("dtype")
        if dtype not in SERVABLE_DTYPES:
            raise fail(
                f"the metadata declares observations of dtype {dtype!r}, which qagent.serve cannot serve "
                f"(it serves {', '.join(SERVABLE_DTYPES)})"
            )
        self.observation_shape: tuple[int, ...] = tuple(shape)
        self.observation_dtype = np.dtype(dtype)
        self._integer_limit: int | None = None
        if observation.get("space") == "Discrete":
            if not _is_size(observation.get("n")) or shape or self.observation_dtype.kind not in "iu":
                raise fail("a Discrete observation needs a positive integer 'n', shape [] and an integer dtype")
            self._integer_limit = observation["n"]
        action = meta.get("action")
        if not isinstance(action, dict) or not _is_size(action.get("n")):
            raise fail("its metadata has no 'action' section with the number of actions 'n'")
        self.n_actions: int = action["n"]
        meanings = action.get("meanings")
        if meanings is not None and not (
            isinstance(meanings, list) and len(meanings) == self.n_actions and all(isinstance(m, str) for m in meanings)
        ):
            raise fail(f"the metadata's action meanings are not a list of {self.n_actions} strings")
        self.action_meanings: list[str] | None = meanings
        preprocessing = meta.get("preprocessing") or {}
        stack = preprocessing.get("frame_stack") if isinstance(preprocessing, dict) else None
        if stack is not None and not (_is_size(stack) and shape and shape[0] == stack):
            raise fail(f"frame_stack {stack!r} does not match the observation shape {shape} (stacked frames first)")
        self.frame_stack: int | None = stack
        for section in ("inputs", "outputs"):
            _check_tensor_specs(meta.get(section, {}), section, fail)
        declared = meta.get("inputs", {}).get(md.INPUT_NAME, {}).get("dtype", dtype)
        if declared != dtype:
            raise fail(f"the metadata's inputs say {md.INPUT_NAME!r} is {declared}, its observation says {dtype}")

    def _check_graph(self, fail: Failure) -> None:
        """The graph's inputs and outputs are those the metadata describes."""
        inputs = {arg.name: arg for arg in self._session.get_inputs()}
        outputs = {arg.name: arg for arg in self._session.get_outputs()}
        if set(inputs) != set(self.graph_inputs):
            raise fail(f"the ONNX graph takes inputs {sorted(inputs)}; this policy takes {list(self.graph_inputs)}")
        missing = [name for name in self.graph_outputs if name not in outputs]
        if missing:
            raise fail(f"the ONNX graph has no output {missing[0]!r} (it has {sorted(outputs)})")
        obs = inputs[md.INPUT_NAME]
        shape = (None, *self.observation_shape)
        check_graph_tensor(obs, self.observation_dtype.name, shape, fail, "the observation shape")
        if isinstance(obs.shape[0], int):
            raise fail(f"the graph's input {obs.name!r} has a fixed batch size of {obs.shape[0]}, not a batch axis")
        check_graph_tensor(outputs["q_values"], "float32", (None, self.n_actions), fail, "the number of actions")
        check_graph_tensor(outputs["action"], "int64", (None,), fail, "one action per observation")

    def _probe(self, fail: Failure) -> None:
        """One inference on a zero observation, so a graph that only claims the metadata's shapes fails now."""
        try:
            actions, q_values = self.predict(np.zeros((1, *self.observation_shape), self.observation_dtype))
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises several unrelated types
            first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise fail(f"the model does not run on an observation of the metadata's shape: {first}") from None
        if q_values.shape != (1, self.n_actions) or actions.shape != (1,):
            raise fail(
                f"the model answers one observation with q_values of shape {list(q_values.shape)} and actions "
                f"of shape {list(actions.shape)}; the metadata says [1, {self.n_actions}] and [1]"
            )

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
            raise PolicyLoadError(f"no policy file at {path}; export one with 'qagent export RUN_DIR -o policy.onnx'")
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
        if cls is Policy and isinstance(metadata, dict):
            for section, kind in cls.kinds.items():
                if section in metadata:
                    return kind(session, metadata, path)
            if "hierarchy" in metadata:  # its class registers itself when qagent.serve.hierarchy is imported
                raise PolicyLoadError(f"{path} holds an h-DQN: load it with 'from qagent.serve import Policy'")
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

    def describe(self) -> str:
        """``agent on env`` from the metadata, for log lines."""
        env = self.metadata.get("env")
        return f"{self.metadata.get('agent', '?')} on {env.get('id', '?') if isinstance(env, dict) else '?'}"

    def __repr__(self) -> str:
        env = self.metadata.get("env")
        return (
            f"Policy({self.path!r}, agent={self.metadata.get('agent')!r}, "
            f"env={env.get('id') if isinstance(env, dict) else None!r}, "
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
        """``(action, q_values)`` for the next observation of the episode (``goal_input``: h-DQN only).

        A step that raises (an observation that does not fit) leaves the session as it was.
        """
        state = self.snapshot()
        try:
            return self._step(frame, goal_input)
        except BaseException:
            self.restore(state)
            raise

    def _step(self, frame: Any, goal_input: Any) -> tuple[int, np.ndarray]:
        actions, q_values = self.policy.predict(self.observation(frame)[None])
        self.steps += 1
        return int(actions[0]), q_values[0]

    def snapshot(self) -> Any:
        """The session's state, for :meth:`restore` (a server takes back a step it cannot answer)."""
        return list(self._frames), self.steps

    def restore(self, state: Any) -> None:
        """Go back to a :meth:`snapshot`."""
        frames, self.steps = state
        self._frames.clear()
        self._frames.extend(frames)

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
        with np.errstate(over="ignore"):  # a float64 beyond float32's range becomes inf, refused below
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


# ---------------------------------------------------------------------- checking metadata


def _is_size(value: Any) -> bool:
    """A positive int that fits an array axis (not a bool, though JSON's true is an int to Python)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**31


def _check_tensor_specs(specs: Any, section: str, fail: Failure) -> None:
    """The metadata's ``inputs`` / ``outputs``: name -> {dtype, shape}, in dtypes the v2 API can name."""
    if not isinstance(specs, dict):
        raise fail(f"the metadata's {section!r} is not an object of tensor descriptions")
    for name, spec in specs.items():
        shape = spec.get("shape") if isinstance(spec, dict) else None
        if not isinstance(spec, dict) or spec.get("dtype") not in md.V2_DATATYPES or not isinstance(shape, list):
            raise fail(f"the metadata's {section}[{name!r}] needs a known 'dtype' and a 'shape' list")
        if len(shape) > MAX_RANK or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
            raise fail(f"the metadata's {section}[{name!r}] shape is not a list of integers")


def check_graph_tensor(arg: Any, dtype: str, shape: tuple[int | None, ...], fail: Failure, what: str) -> None:
    """A graph input or output against a dtype and a shape (``None`` and symbolic dims: any size)."""
    graph_dtype = ONNX_TYPES.get(arg.type, arg.type)
    if graph_dtype != dtype:
        raise fail(f"the graph's {arg.name!r} is {graph_dtype}, but the metadata says {dtype}")
    graph_shape = list(arg.shape)
    if len(graph_shape) != len(shape) or any(
        isinstance(got, int) and want is not None and got != want for got, want in zip(graph_shape, shape, strict=True)
    ):
        expected = ["batch" if d is None else d for d in shape]
        raise fail(f"the graph's {arg.name!r} has shape {graph_shape}, but the metadata says {expected} ({what})")
