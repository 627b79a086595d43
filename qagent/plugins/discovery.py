"""Finding and importing plugins.

Order (DESIGN.md): built-ins; installed packages through the entry-point group
``qagent.plugins`` (each entry point names a module); modules or ``.py`` files listed in
``QAGENT_PLUGINS`` (``os.pathsep``-separated); ``--plugin FILE_OR_MODULE`` on the command line.

A plugin that fails to import is reported with its name and the original error, and whatever
it registered before failing is rolled back, so the rest of qagent keeps working. Plugins the
user named on the command line are required: their failure is an error. Ambient plugins
(entry points, ``QAGENT_PLUGINS``) only warn.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import sys
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from qagent.errors import PluginError
from qagent.plugins.registries import REGISTRIES
from qagent.plugins.registry import Source, load_failures, registering_from

ENTRY_POINT_GROUP = "qagent.plugins"
ENV_VAR = "QAGENT_PLUGINS"
BUILTIN_MODULES = ("qagent.agents", "qagent.envs", "qagent.agents.sb3")
RECORDED = "recorded in the run"


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


_loaded: dict[str, PluginLoad] = {}


def load_builtins() -> None:
    """Import qagent's own agents, networks, strategies and environments (idempotent)."""
    for module in BUILTIN_MODULES:
        importlib.import_module(module)


def load_plugins(
    explicit: Sequence[str] = (), *, ambient: bool = True, recorded: Sequence[str] = ()
) -> list[PluginLoad]:
    """Load built-ins, then plugins, in the documented order.

    :param explicit: plugin files or modules named with ``--plugin``; a failure raises
        :class:`PluginError`.
    :param ambient: also load entry points and ``QAGENT_PLUGINS`` (failures only warn).
    :param recorded: plugins a run was trained with (from its checkpoint); failures only warn.
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
    for spec in recorded:
        if spec in explicit:
            continue
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
    _loaded[key] = result
    return result


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
