"""Fuzz the config loader: whatever the input, it returns a SweepConfig or raises
ConfigError with a one-line message, and every config it returns can be expanded."""

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tsjax.config
from config_text import VALID_CONFIG, toml_text, toml_value, valid_config
from tsjax.config import FIELDS, RUN_KEYS, TOP_LEVEL_KEYS, ConfigError, SweepConfig, parse_config
from tsjax.grid import expand_grid

# Accepted grids in these tests stay small, so expanding them takes milliseconds. The
# limit is patched, not the inputs, so the fuzz still reaches the grid-size check.
FUZZ_MAX_GRID_POINTS = 2_000
FUZZ_SETTINGS = settings(max_examples=150, deadline=None, derandomize=True,
                         suppress_health_check=[HealthCheck.too_slow,
                                                HealthCheck.filter_too_much,
                                                HealthCheck.function_scoped_fixture])

present_scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-2**63, max_value=2**63 - 1),
    st.integers(min_value=-3, max_value=40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-2.0, max_value=2.0),
    st.text(max_size=12),
    st.sampled_from(["ssm", "nonlinear", "linear", "custom", "relu", "identity", "adam",
                     "sgd", "sampled", "expected", ""]),
)
range_tables = st.fixed_dictionaries({}, optional={
    "linspace": st.lists(present_scalars, max_size=4),
    "logspace": st.lists(st.floats(min_value=-400, max_value=400) | st.integers(0, 30),
                         max_size=4),
    "range": st.lists(st.integers(-50, 50) | present_scalars, max_size=4),
    "other": st.just([1, 2, 3]),
})
values = st.recursive(
    present_scalars | range_tables,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(
        st.text(max_size=6), children, max_size=3),
    max_leaves=12,
)
keys = st.sampled_from([*TOP_LEVEL_KEYS, *FIELDS, *RUN_KEYS]) | st.text(max_size=10)


@pytest.fixture(autouse=True)
def small_grid_limit(monkeypatch):
    monkeypatch.setattr(tsjax.config, "MAX_GRID_POINTS", FUZZ_MAX_GRID_POINTS)


def check_outcome(text):
    """Parse `text`; fail on any exception but ConfigError, and check what comes back."""
    try:
        config = parse_config(text, source="fuzz.toml")
    except ConfigError as error:
        message = str(error)
        assert message.startswith("fuzz.toml: "), message
        assert "\n" not in message, message
        assert "\r" not in message, message
        return None

    assert isinstance(config, SweepConfig)
    assert 1 <= config.grid_size <= FUZZ_MAX_GRID_POINTS
    assert set(config.axes) == set(FIELDS)
    for name, axis in config.axes.items():
        assert len(set(axis)) == len(axis), name
    assert max(config.axes["k"]) < min(config.axes["seq_len"])
    assert all(0 <= sparsity < 1 for sparsity in config.axes["sparsity"])
    assert all(0 < rate < math.inf for rate in config.axes["learning_rate"])
    groups = expand_grid(config)
    assert sum(len(group) for group in groups) == config.grid_size
    return config


@FUZZ_SETTINGS
@given(text=st.text(max_size=200))
def test_fuzz_random_text(text):
    check_outcome(text)


@FUZZ_SETTINGS
@given(text=st.lists(st.sampled_from([
    'name = "a"', "[grid]", "[run]", "k = [1, 2]", "seq_len = 4", "sparsity = 0.5",
    "sparsity = {linspace = [0, 0.9, 4]}", "seed = {range = [0, 3]}", "steps = 2",
    "chunk_size = 2", "[grid.k]", "[[grid]]", "k = 1e400", "model = 'custom'",
    "sigma_h = 'relu'", "sigma_y = 'identity'", "= 3", "k = ", '"k" = 2', "k.x = 1",
]), max_size=12).map("\n".join))
def test_fuzz_toml_fragments(text):
    check_outcome(text)


@FUZZ_SETTINGS
@given(document=st.dictionaries(keys, values | st.dictionaries(keys, values, max_size=6),
                                max_size=6))
def test_fuzz_random_structures(document):
    check_outcome(toml_text(document))


@st.composite
def mutated_configs(draw):
    """Draw VALID_CONFIG with a few fields replaced, removed, renamed or wrapped."""
    document = valid_config()
    for _ in range(draw(st.integers(1, 4))):
        table = draw(st.sampled_from(["top", "grid", "grid", "grid", "run"]))
        if table == "top":
            target = document
            key = draw(st.sampled_from(TOP_LEVEL_KEYS) | keys)
        elif table == "grid":
            target = document.setdefault("grid", {})
            if not isinstance(target, dict):
                continue
            key = draw(st.sampled_from(list(FIELDS)))
        else:
            target = document.setdefault("run", {})
            if not isinstance(target, dict):
                continue
            key = draw(st.sampled_from(RUN_KEYS) | keys)
        action = draw(st.sampled_from(["set", "set", "delete", "rename", "wrap"]))
        if action == "set":
            target[key] = draw(values)
        elif action == "delete":
            target.pop(key, None)
        elif action == "rename" and key in target:
            target[key + draw(st.text(min_size=1, max_size=2))] = target.pop(key)
        elif action == "wrap" and key in target:
            target[key] = [target[key], draw(present_scalars)]
    return document


@FUZZ_SETTINGS
@given(document=mutated_configs())
def test_fuzz_mutated_configs(document):
    check_outcome(toml_text(document))


def test_fuzz_base_config_is_valid():
    assert check_outcome(toml_text(VALID_CONFIG)) is not None


def test_toml_writer_round_trips():
    for value in [0.1, -2.5e-300, 1e300, True, "a\"b\n", [1, [2.5]], {"range": [0, 3]}]:
        assert parse_value(toml_value(value)) == value


def parse_value(text):
    import tomllib

    return tomllib.loads(f"v = {text}")["v"]
