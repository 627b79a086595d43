"""The generic Registry: registering, duplicates, unknown names, listing and sources."""

from __future__ import annotations

import pytest

from qagent import register_agent
from qagent.errors import RegistryError, UnknownNameError
from qagent.plugins import AGENTS, ENVS, EXPLORATIONS, NETWORKS
from qagent.plugins.registry import BUILT_IN, Registry, Source, registering_from


def test_register_returns_the_object_unchanged_and_describes_it():
    registry: Registry = Registry("shape")

    @registry.register("unit-square")
    def unit_square() -> float:
        """A square of side 1.

        More text that is not part of the description."""
        return 1.0

    assert unit_square() == 1.0
    assert registry.get("unit-square") is unit_square
    entry = registry.entry("unit-square")
    assert entry.description == "A square of side 1."
    assert entry.source == Source("module", __name__)
    assert "unit-square" in registry and len(registry) == 1


def test_explicit_description_and_function_form():
    registry: Registry = Registry("shape")
    obj = object()
    assert registry.register("thing", obj, description="a thing") is obj
    assert registry.entry("thing").description == "a thing"


def test_duplicate_name_names_both_sources():
    registry: Registry = Registry("agent")
    with registering_from(Source("file", "a.py")):
        registry.register("twice", object())
    with registering_from(Source("file", "b.py")), pytest.raises(RegistryError) as info:
        registry.register("twice", object())
    assert "registered twice" in info.value.message
    assert "file a.py" in info.value.message and "file b.py" in info.value.message


@pytest.mark.parametrize("bad", ["CamelCase", "with_underscore", "-leading", "double--dash", "", "space name"])
def test_names_must_be_kebab_case(bad):
    with pytest.raises(RegistryError, match="kebab-case"):
        Registry("agent").register(bad, object())


def test_unknown_name_lists_close_matches():
    with pytest.raises(UnknownNameError) as info:
        AGENTS.get("dqm")
    assert "unknown agent 'dqm'" in info.value.message
    assert "did you mean 'dqn'" in info.value.message
    assert "qagent plugins list" in info.value.hint


def test_unknown_name_without_close_match_lists_known_names():
    with pytest.raises(UnknownNameError) as info:
        EXPLORATIONS.get("zzzzzz")
    assert "epsilon-greedy" in info.value.message and "greedy" in info.value.message


def test_names_listing_with_patterns_and_sorted_iteration():
    registry: Registry = Registry("thing")
    for name in ("beta", "alpha", "alpha-two"):
        registry.register(name, object())
    assert registry.names() == ["alpha", "alpha-two", "beta"]
    assert registry.names("alpha*") == ["alpha", "alpha-two"]
    assert [e.name for e in registry] == ["alpha", "alpha-two", "beta"]
    registry.unregister("beta")
    assert "beta" not in registry


def test_builtins_are_registered_with_builtin_source():
    assert AGENTS.entry("dqn").source == BUILT_IN
    assert NETWORKS.entry("mlp").source == BUILT_IN
    assert {"epsilon-greedy", "greedy"} <= set(EXPLORATIONS.names())
    assert all(entry.description for reg in (AGENTS, NETWORKS, EXPLORATIONS) for entry in reg)


def test_top_level_decorator_registers_into_the_agent_registry():
    @register_agent("test-agent-from-decorator")
    class Agent:
        """A test agent."""

    assert AGENTS.get("test-agent-from-decorator") is Agent
    assert "test-agent-from-decorator" not in ENVS
