"""The generic :class:`Registry`: named entries with a description and a source.

One registry per kind of plugin (see :mod:`qagent.plugins.registries`). Registering returns
the object unchanged, so the decorator form leaves classes and functions as they were:

>>> from qagent.plugins.registry import Registry
>>> SHAPES = Registry("shape")
>>> @SHAPES.register("unit-square")
... def unit_square():
...     "A square of side 1."
...     return 1.0
>>> SHAPES.get("unit-square")()
1.0

A name registered twice is an error naming both sources; an unknown name is an error that
lists the close matches (as mmengine does, and unlike timm, which only warns).
"""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
import inspect
import re
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, overload

from qagent.errors import RegistryError, UnknownNameError

T = TypeVar("T")

NAME_PATTERN = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


@dataclass(frozen=True)
class Source:
    """Where a registration came from.

    :param kind: ``built-in``, ``package`` (an installed distribution's entry point),
        ``file`` (a ``.py`` plugin file) or ``module`` (an importable module).
    :param detail: the distribution, file path or module name.
    """

    kind: str
    detail: str = ""

    def __str__(self) -> str:
        return self.kind if not self.detail else f"{self.kind} {self.detail}"


BUILT_IN = Source("built-in")

# Set by plugin discovery while it imports a plugin, so registrations know their source.
_current_source: ContextVar[Source | None] = ContextVar("qagent_plugin_source", default=None)

# Plugins that failed to import, as one-line reports; unknown-name errors mention them.
load_failures: list[str] = []


@contextlib.contextmanager
def registering_from(source: Source) -> Iterator[None]:
    """Attribute every registration made inside the block to ``source``."""
    token = _current_source.set(source)
    try:
        yield
    finally:
        _current_source.reset(token)


def _source_of(obj: Any) -> Source:
    source = _current_source.get()
    if source is not None:
        return source
    module = getattr(obj, "__module__", "") or ""
    if module == "qagent" or module.startswith("qagent."):
        return BUILT_IN
    return Source("module", module)


def _describe(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered object with its name, one-line description and source."""

    name: str
    obj: T
    description: str
    source: Source


class Registry(Generic[T]):
    """Named objects of one kind (agents, environments, ...).

    :param kind: the singular noun used in messages, e.g. ``"agent"``.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    @overload
    def register(self, name: str, obj: None = None, *, description: str | None = None) -> Callable[[T], T]: ...

    @overload
    def register(self, name: str, obj: T, *, description: str | None = None) -> T: ...

    def register(self, name: str, obj: T | None = None, *, description: str | None = None) -> Any:
        """Register ``obj`` under ``name``; without ``obj``, return a decorator.

        :param name: kebab-case name, unique in this registry.
        :param description: one line for ``qagent plugins list``; defaults to the first line
            of the object's docstring.
        """
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            raise RegistryError(
                f"invalid {self.kind} name {name!r}",
                hint="names are kebab-case: lowercase letters, digits and single dashes, e.g. 'my-agent'",
            )

        def add(target: T) -> T:
            source = _source_of(target)
            if name in self._entries:
                first = self._entries[name].source
                raise RegistryError(
                    f"{self.kind} {name!r} is registered twice: by {first} and by {source}",
                    hint="rename one of them or remove the duplicate plugin",
                )
            text = description if description is not None else _describe(target)
            self._entries[name] = Entry(name, target, text, source)
            return target

        return add if obj is None else add(obj)

    def unregister(self, name: str) -> None:
        """Remove ``name`` (used to roll back a plugin that failed halfway through)."""
        self._entries.pop(name, None)

    def entry(self, name: str) -> Entry[T]:
        """The entry for ``name``; raises :class:`UnknownNameError` with close matches."""
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.unknown_message(name), hint=self.unknown_hint()) from None

    def get(self, name: str) -> T:
        """The object registered under ``name``."""
        return self.entry(name).obj

    def unknown_message(self, name: str, extra_names: list[str] | None = None) -> str:
        """The message for an unknown ``name``, listing close matches among known names."""
        known = sorted(self._entries) + list(extra_names or [])
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        message = f"unknown {self.kind} {name!r}"
        if close:
            message += "; did you mean " + " or ".join(repr(c) for c in close) + "?"
        elif len(self._entries) <= 12:
            message += f"; known {self.kind}s: " + (", ".join(sorted(self._entries)) or "none")
        return message

    def unknown_hint(self) -> str:
        hint = "run 'qagent plugins list' to see every registered name"
        if load_failures:
            hint += "; note that some plugins failed to load: " + "; ".join(load_failures)
        return hint

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching the fnmatch ``pattern``, sorted."""
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self)} entries)"
