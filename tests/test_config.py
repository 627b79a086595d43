"""Config: presets, --set overrides with type coercion, and every validation error."""

from __future__ import annotations

from pathlib import Path

import pytest

from qagent.config import find_preset, load_config, parse_override, resolve_config
from qagent.errors import ConfigError, UnknownNameError


def test_defaults_resolve():
    config = resolve_config()
    assert config.seed == 0 and config.env.id == "CartPole-v1"
    assert config.agent.name == "dqn" and config.network.name == "mlp"
    assert config.exploration.name == "epsilon-greedy"


def test_preset_by_name_and_path():
    path = find_preset("cartpole-dqn")
    assert path.name == "cartpole-dqn.yaml"
    assert load_config("cartpole-dqn").agent.lr == pytest.approx(6.3e-4)  # YAML reads 6.3e-4 as a string
    assert load_config(str(path)).agent.train_freq == 64


@pytest.mark.parametrize(
    ("override", "section", "key", "expected"),
    [
        ("agent.lr=5e-4", "agent", "lr", 5e-4),
        ("train.total_steps=1e5", "train", "total_steps", 100_000),
        ("train.total_steps=50_000", "train", "total_steps", 50_000),
        ("agent.double=true", "agent", "double", True),
        ("agent.double=no", "agent", "double", False),
        ("network.hidden_sizes=[64, 32]", "network", "hidden_sizes", [64, 32]),
        ("agent.max_grad_norm=null", "agent", "max_grad_norm", None),
        ("env.id=ALE/Pong-v5", "env", "id", "ALE/Pong-v5"),
        ("env.kwargs.render_mode=rgb_array", "env", "kwargs", {"render_mode": "rgb_array"}),
        ("tracking.experiment=my runs", "tracking", "experiment", "my runs"),
    ],
)
def test_overrides_are_coerced_to_the_field_type(override, section, key, expected):
    config = resolve_config({}, [override])
    value = getattr(getattr(config, section), key)
    assert value == expected and type(value) is type(expected)


def test_seed_override_and_order_of_layers():
    config = resolve_config({"seed": 3, "agent": {"lr": 0.1}}, ["seed=7", "agent.lr=0.2", "agent.lr=0.3"])
    assert config.seed == 7 and config.agent.lr == pytest.approx(0.3)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["agent.lrr=1e-3"], "unknown config key 'agent.lrr'; did you mean 'agent.lr'?"),
        (["agnet.lr=1e-3"], "unknown config key 'agnet'; did you mean 'agent'?"),
        (["agent.lr=-1"], "invalid value for 'agent.lr': input should be greater than 0 (got -1)"),
        (["agent.lr=fast"], "invalid value for 'agent.lr'"),
        (["agent.gamma=1.5"], "invalid value for 'agent.gamma': input should be less than or equal to 1"),
        (["agent.gamma=-0.1"], "invalid value for 'agent.gamma'"),
        (["agent.batch_size=0"], "invalid value for 'agent.batch_size'"),
        (["agent.batch_size=2.5"], "invalid value for 'agent.batch_size'"),
        (["agent.loss=l1"], "invalid value for 'agent.loss'"),
        (["agent.tau=0"], "invalid value for 'agent.tau'"),
        (["exploration.start=2"], "invalid value for 'exploration.start'"),
        (["network.hidden_sizes=[64, -1]"], "invalid value for 'network.hidden_sizes.1'"),
        (["network.activation=sigmoid"], "invalid value for 'network.activation'"),
        (["train.total_steps=0"], "invalid value for 'train.total_steps'"),
        (["env.num_envs=0"], "invalid value for 'env.num_envs'"),
        (["seed=-1"], "invalid value for 'seed'"),
        (["replay.capacity=10", "agent.batch_size=64"], "agent.batch_size (64) is larger than replay.capacity (10)"),
        (
            ["agent.learning_starts=100", "train.total_steps=100"],
            "agent.learning_starts (100) is not below train.total_steps",
        ),
        (
            ["exploration.schedule=exponential", "exploration.end=0"],
            "needs exploration.start and exploration.end above 0",
        ),
        (["agent.lr"], "bad override 'agent.lr': expected KEY=VALUE"),
        (["agent=3"], "sections take section.key=VALUE"),
    ],
)
def test_invalid_configs_name_the_key(overrides, fragment):
    with pytest.raises(ConfigError) as info:
        resolve_config({}, overrides)
    assert fragment in info.value.message


def test_unknown_registered_names_are_errors_with_suggestions():
    with pytest.raises(UnknownNameError, match="did you mean 'dqn'"):
        resolve_config({}, ["agent.name=dqm"])
    with pytest.raises(UnknownNameError, match="did you mean 'epsilon-greedy'"):
        resolve_config({}, ["exploration.name=epsilon-greed"])
    with pytest.raises(UnknownNameError, match="unknown network 'mpl'"):
        resolve_config({}, ["network.name=mpl"])


def test_switching_a_named_section_drops_stale_preset_keys():
    preset = {"exploration": {"name": "epsilon-greedy", "start": 1.0, "end": 0.1}}
    with pytest.warns(UserWarning) as caught:
        config = resolve_config(preset, ["exploration.name=greedy"])
    messages = sorted(str(w.message) for w in caught)
    assert messages == [
        f"config key 'exploration.{key}' does not apply to exploration 'greedy' and was dropped"
        for key in ("end", "start")
    ]
    assert config.exploration.name == "greedy"
    with pytest.raises(ConfigError, match="unknown config key 'exploration.start'"):
        resolve_config({}, ["exploration.name=greedy", "exploration.start=1.0"])  # explicit keys are kept


def test_round_trip_through_dict_and_flat_params():
    config = load_config("cartpole-dqn", ["seed=4"])
    again = resolve_config(config.to_dict())
    assert again.to_dict() == config.to_dict() and again.hash() == config.hash()
    flat = config.flat()
    assert flat["agent.lr"] == pytest.approx(6.3e-4) and flat["network.hidden_sizes"] == [256, 256]
    assert flat["seed"] == 4 and "env.kwargs" in flat


def test_bad_files(tmp_path: Path):
    with pytest.raises(ConfigError, match="not found; did you mean preset 'cartpole-dqn'"):
        load_config("cartpole-dq")
    bad = tmp_path / "bad.yaml"
    bad.write_text("agent:\n  lr: [1, 2\n")
    with pytest.raises(ConfigError, match="is not valid YAML at line"):
        load_config(str(bad))
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(str(listy))
    section = tmp_path / "section.yaml"
    section.write_text("agent: 3\n")
    with pytest.raises(ConfigError, match="section 'agent' must be a mapping"):
        load_config(str(section))


def test_parse_override_keeps_text_that_is_not_yaml():
    assert parse_override("env.id=ALE/Pong-v5") == (["env", "id"], "ALE/Pong-v5")
    assert parse_override("tracking.uri=sqlite:///x.db") == (["tracking", "uri"], "sqlite:///x.db")
