"""Finding and importing plugins.

Order (DESIGN.md): built-ins; installed packages through the entry-point group
``qagent.plugins`` (each entry point names a module); modules or ``.py`` files listed in
``QAGENT_PLUGINS`` (``os.pathsep``-separated); ``--plugin FILE_OR_MODULE`` on the command line.

A plugin that fails to import is reported with its name and the original error, and whatever
it registered before failing is rolled back, so the rest of qagent keeps working. Plugins the
user named on the command line are required: their failure is an error. Ambient plugins
(entry points, ``QAGENT_PLUGINS``) only warn.

Plugins are code, and a checkpoint, run directory or ONNX file may come from someone else. So
the plugins a file records are data: they are imported only under ``trust=True``
(``--trust-plugins``); otherwise the user names them with ``--plugin`` (or ``QAGENT_PLUGINS``),
and a recorded plugin nobody named is an :class:`UntrustedPluginsError` that lists them.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import sys
import threading
import traceback
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from qagent.errors import PluginError
from qagent.plugins.registries import REGISTRIES
from qagent.plugins.registry import Source, load_failures, registering_from

ENTRY_POINT_GROUP = "qagent.plugins"
ENV_VAR = "QAGENT_PLUGINS"
BUILTIN_MODULES = ("qagent.agents", "qagent.envs", "qagent.contrib.sb3")
RECORDED = "recorded in the run"
TRUST_FLAG = "--trust-plugins"
SLOW_IMPORT_SECONDS = 10.0  # say which plugin is still importing after this long


@dataclass
class PluginLoad:
    """The outcome of importing one plugin."""

    spec: str
    source: Source
    origin: str
    error: str | None = None
    registered: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def recorded_as(self) -> str:
        """How a run records this plugin: a file by absolute path, a module by name."""
        return record_spec(self.spec) if self.source.kind in ("file", "module") else self.spec


class UntrustedPluginsError(PluginError):
    """A file asks for plugins the user did not name, and did not say ``--trust-plugins``."""

    def __init__(self, what: str, specs: Sequence[str]) -> None:
        super().__init__(
            f"{what} was made with plugins that qagent does not import unless told to: {', '.join(specs)} "
            "(a plugin is code, and a file from elsewhere must not run it)",
            hint=f"pass each plugin you trust with --plugin FILE_OR_MODULE, or add {TRUST_FLAG} to load them all",
        )
        self.specs = list(specs)


_loaded: dict[str, PluginLoad] = {}


def load_builtins() -> None:
    """Import qagent's own agents, networks, strategies and environments (idempotent)."""
    for module in BUILTIN_MODULES:
        importlib.import_module(module)


def load_plugins(
    explicit: Sequence[str] = (),
    *,
    ambient: bool = True,
    recorded: Sequence[str] = (),
    trust: bool = False,
    recorded_by: str = "this file",
) -> list[PluginLoad]:
    """Load built-ins, then plugins, in the documented order.

    :param explicit: plugin files or modules named with ``--plugin``; a failure raises
        :class:`PluginError`.
    :param ambient: also load entry points and ``QAGENT_PLUGINS`` (failures only warn).
    :param recorded: plugins a file (checkpoint, run, ONNX metadata) says it was made with.
        Those not loaded already are imported only with ``trust`` (failures then only warn);
        without it they raise :class:`UntrustedPluginsError` when the user named no plugin,
        and are left out with a warning when the user named others (their own copies).
    :param recorded_by: what recorded them, for the error message.
    :returns: one :class:`PluginLoad` per plugin, in load order, including failed ones.
    """
    load_builtins()
    results: list[PluginLoad] = []
    if ambient:
        for ep in _entry_points():
            dist = ep.dist.name if ep.dist is not None else "unknown distribution"
            source = Source("package", f"{dist} ({ep.name})")
            results.append(_load_once(f"entry-point:{dist}:{ep.name}", source, "entry point", ep.load))
        for spec in _split_env(os.environ.get(ENV_VAR, "")):
            results.append(_load_spec(spec, ENV_VAR))
    for spec in explicit:
        result = _load_spec(spec, "--plugin")
        results.append(result)
        if not result.ok:
            raise PluginError(result.error or f"plugin {spec} failed", hint=_hint_for(spec))
    named = {r.recorded_as for r in results if r.ok}
    pending = [spec for spec in dict.fromkeys(recorded) if record_spec(spec) not in named]
    if pending and not trust:
        if not explicit:
            raise UntrustedPluginsError(recorded_by, pending)
        warnings.warn(
            f"{recorded_by} names plugins that were not loaded: {', '.join(pending)} "
            f"(pass them with --plugin, or add {TRUST_FLAG})",
            stacklevel=2,
        )
        return results
    for spec in pending:
        if is_file_spec(spec) and not Path(spec).expanduser().exists():
            missing = f"the run used plugin {spec}, which is not there now; pass it with --plugin"
            results.append(PluginLoad(spec, Source("file", spec), RECORDED, error=missing))
            continue
        results.append(_load_spec(spec, RECORDED))
    return results


def loaded_plugins() -> list[PluginLoad]:
    """Every plugin this process has tried to load, in order."""
    return list(_loaded.values())


def plugin_sources() -> list[str]:
    """Sources of the plugins loaded successfully, for run tags and checkpoints."""
    return [str(p.source) for p in _loaded.values() if p.ok]


def record_spec(spec: str) -> str:
    """The form a run records ``spec`` in: a file by absolute path, a module by name."""
    return str(Path(spec).expanduser().resolve()) if is_file_spec(spec) else spec


def _entry_points() -> Iterable[importlib.metadata.EntryPoint]:
    return importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)


def _split_env(value: str) -> list[str]:
    return [part.strip() for part in value.split(os.pathsep) if part.strip()]


def is_file_spec(spec: str) -> bool:
    """True when ``spec`` names a ``.py`` file rather than a module."""
    return spec.endswith(".py") or os.sep in spec or Path(spec).is_file()


def _hint_for(spec: str) -> str:
    if is_file_spec(spec):
        return "check the path and fix the error in the plugin file"
    return "give the path of a .py file or the name of an importable module"


def _load_spec(spec: str, origin: str) -> PluginLoad:
    if is_file_spec(spec):
        path = Path(spec).expanduser().resolve()
        source = Source("file", spec)
        return _load_once(f"file:{path}", source, origin, lambda: _import_file(path, spec))
    return _load_once(f"module:{spec}", Source("module", spec), origin, lambda: importlib.import_module(spec))


def _load_once(key: str, source: Source, origin: str, do_import) -> PluginLoad:  # noqa: ANN001
    previous = _loaded.get(key)
    if previous is not None and previous.ok:
        return previous
    before = {kind: set(reg.names()) for kind, reg in REGISTRIES.items()}
    result = PluginLoad(spec=source.detail, source=source, origin=origin)
    notice = threading.Timer(SLOW_IMPORT_SECONDS, _say_still_importing, (source.detail, origin))
    notice.daemon = True
    notice.start()
    try:
        with registering_from(source):
            do_import()
    except Exception as exc:  # noqa: BLE001 - any error in third-party code is reported, not raised
        _roll_back(before)
        result.error = f"plugin {source.detail} ({origin}) failed to load: {_summarize(exc)}"
        load_failures.append(result.error)
    else:
        result.registered = [
            (kind, name) for kind, reg in REGISTRIES.items() for name in reg.names() if name not in before[kind]
        ]
    finally:
        notice.cancel()
    _loaded[key] = result
    return result


def _say_still_importing(spec: str, origin: str) -> None:
    """A plugin whose import hangs cannot be interrupted safely, but the user learns which it is."""
    print(
        f"qagent: still importing plugin {spec} ({origin}) after {SLOW_IMPORT_SECONDS:.0f} s; "
        "Ctrl-C stops, and the plugin's own code is what is waiting",
        file=sys.stderr,
        flush=True,
    )


def _roll_back(before: dict[str, set[str]]) -> None:
    for kind, registry in REGISTRIES.items():
        for name in registry.names():
            if name not in before[kind]:
                registry.unregister(name)


def _import_file(path: Path, spec: str) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {spec}")
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    module_name = f"qagent_plugin_{path.stem.replace('-', '_')}_{digest}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise ImportError(f"cannot import {spec} as a Python module")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module  # dataclasses and pickling look modules up here
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise


def blamed_plugin(exc: BaseException) -> tuple[str, str] | None:
    """``(plugin, "file:line")`` when the deepest frame of ``exc`` that lies in a loaded plugin's
    code is where it was raised from; None when no plugin's code is on its traceback."""
    places = {}
    for load in _loaded.values():
        if load.ok:
            place = _code_location(load)
            if place is not None:
                places[place] = load.spec
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        filename = str(Path(frame.filename).resolve()) if frame.filename else ""
        for place, spec in places.items():
            if filename == place or filename.startswith(place + os.sep):
                return spec, f"{frame.filename}:{frame.lineno}"
    return None


def _code_location(load: PluginLoad) -> str | None:
    """The file (or package folder) that holds a loaded plugin's code."""
    if load.source.kind == "file":
        return str(Path(load.spec).expanduser().resolve())
    module = sys.modules.get(load.spec) if load.source.kind == "module" else None
    filename = getattr(module, "__file__", None)
    if not filename:
        return None
    path = Path(filename).resolve()
    return str(path.parent) if path.name == "__init__.py" else str(path)


def _summarize(exc: BaseException) -> str:
    """``Type: message (file:line)``, the line being the deepest frame in the plugin's code."""
    text = f"{type(exc).__name__}: {exc}"
    qagent_dir = str(Path(__file__).resolve().parent.parent)
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if "importlib" not in f.filename and not f.filename.startswith(qagent_dir)
    ]
    if frames and not isinstance(exc, FileNotFoundError):
        last = frames[-1]
        text += f" ({last.filename}:{last.lineno})"
    return text
