import copy
from pathlib import Path

import pytest

from config_text import VALID_CONFIG, toml_text, valid_config
from tsjax.cli import main
from tsjax.config import ConfigError, load_config, parse_config


def document_with(**top_level):
    """Return VALID_CONFIG with top-level keys replaced; a value of None deletes the key."""
    document = copy.deepcopy(VALID_CONFIG)
    for key, value in top_level.items():
        if value is None:
            document.pop(key, None)
        else:
            document[key] = value
    return document


def run_table(**run):
    document = copy.deepcopy(VALID_CONFIG)
    document["run"] = run
    return document


# (case id, config dict, text naming the field, text showing the rejected value)
BAD_CONFIGS = [
    ("unknown top-level key", document_with(nmae="x"), "'nmae'", "did you mean 'name'"),
    ("unknown grid key", valid_config(sparsty=0.5), "'grid.sparsty'", "'grid.sparsity'"),
    ("unknown run key", run_table(chunksize=4), "'run.chunksize'", "'run.chunk_size'"),
    ("name missing", document_with(name=None), "'name'", "None"),
    ("name with slash", document_with(name="a/b"), "'name'", "'a/b'"),
    ("name is dot-dot", document_with(name=".."), "'name'", "'..'"),
    ("name too long", document_with(name="a" * 300), "'name'", "255 bytes"),
    ("name not a string", document_with(name=3), "'name'", "3"),
    ("description not a string", document_with(description=3), "'description'", "3"),
    ("negative cpu minutes", document_with(expected_cpu_minutes=-1), "'expected_cpu_minutes'",
     "-1"),
    ("grid not a table", document_with(grid=3), "'grid'", "3"),
    ("grid a list", document_with(grid=[1, 2]), "'grid'", "[1, 2]"),
    ("run not a table", document_with(run="fast"), "'run'", "'fast'"),
    ("sparsity one", valid_config(sparsity=1.0), "'grid.sparsity'", "1.0"),
    ("sparsity negative", valid_config(sparsity=[-0.1, 0.5]), "'grid.sparsity'", "-0.1"),
    ("sparsity rounds to one", valid_config(sparsity=0.99999999999), "'grid.sparsity'",
     "float32"),
    ("sparsity string", valid_config(sparsity="0.5"), "'grid.sparsity'", "'0.5'"),
    ("k equals seq_len", valid_config(k=[1, 8]), "'grid.k'", "seq_len = 8"),
    ("k negative", valid_config(k=-1), "'grid.k'", "-1"),
    ("k fractional", valid_config(k=1.5), "'grid.k'", "1.5"),
    ("seq_len zero", valid_config(seq_len=0, k=0), "'grid.seq_len'", "0"),
    ("steps zero", valid_config(steps=0), "'grid.steps'", "0"),
    ("steps negative", valid_config(steps=-5), "'grid.steps'", "-5"),
    ("batch_size zero", valid_config(batch_size=0), "'grid.batch_size'", "0"),
    ("n_hidden zero", valid_config(n_hidden=0), "'grid.n_hidden'", "0"),
    ("n_features zero", valid_config(n_features=0), "'grid.n_features'", "0"),
    ("n_hidden boolean", valid_config(n_hidden=True), "'grid.n_hidden'", "true"),
    ("n_hidden beyond int32", valid_config(n_hidden=2**40), "'grid.n_hidden'", str(2**40)),
    ("checkpoints zero", valid_config(checkpoints=0), "'grid.checkpoints'", "0"),
    ("eval_samples zero", valid_config(eval_samples=0), "'grid.eval_samples'", "0"),
    ("learning rate NaN", valid_config(learning_rate=float("nan")), "'grid.learning_rate'",
     "nan"),
    ("learning rate negative", valid_config(learning_rate=-0.01), "'grid.learning_rate'",
     "-0.01"),
    ("learning rate zero", valid_config(learning_rate=0), "'grid.learning_rate'", "0.0"),
    ("learning rate infinite", valid_config(learning_rate=float("inf")),
     "'grid.learning_rate'", "inf"),
    ("learning rate boolean", valid_config(learning_rate=True), "'grid.learning_rate'",
     "true"),
    ("learning rate underflows", valid_config(learning_rate=1e-50), "'grid.learning_rate'",
     "1e-50"),
    ("learning rate overflows", valid_config(learning_rate=1e39), "'grid.learning_rate'",
     "1e+39"),
    ("empty list", valid_config(sparsity=[]), "'grid.sparsity'", "empty"),
    ("empty range", valid_config(seed={"range": [5, 0]}), "'grid.seed'", "empty"),
    ("repeated seed", valid_config(seed=[0, 1, 0]), "'grid.seed'", "repeats the value 0"),
    ("repeated float", valid_config(sparsity=[0.5, 0.5]), "'grid.sparsity'", "0.5"),
    ("seed negative", valid_config(seed=-1), "'grid.seed'", "-1"),
    ("seed too large", valid_config(seed=2**31), "'grid.seed'", str(2**31)),
    ("grid too large", valid_config(seed={"range": [0, 100_000]},
                                    sparsity={"linspace": [0.0, 0.9, 1000]}),
     "'grid'", "200000000 points"),
    ("huge range", valid_config(seed={"range": [0, 10**15]}), "'grid'", "points"),
    # The valid grid has 2 k values and 2 sparsities, so 4 points per seed.
    ("range over all int64", valid_config(seed={"range": [-2**63, 2**63 - 1]}), "'grid'",
     f"{4 * (2**64 - 1)} points"),
    ("descending range over all int64", valid_config(seed={"range": [2**63 - 1, -2**63, -1]}),
     "'grid'", f"{4 * (2**64 - 1)} points"),
    ("sparsities equal in float32", valid_config(sparsity=[0.1, 0.10000000001]),
     "'grid.sparsity'", "0.1 and 0.10000000001"),
    ("range table two keys", valid_config(sparsity={"linspace": [0, 1, 3], "range": [0, 1]}),
     "'grid.sparsity'", "linspace"),
    ("range table unknown kind", valid_config(sparsity={"geomspace": [0.1, 0.9, 3]}),
     "'grid.sparsity'", "geomspace"),
    ("linspace two arguments", valid_config(sparsity={"linspace": [0.1, 0.9]}),
     "'grid.sparsity.linspace'", "[0.1, 0.9]"),
    ("linspace zero points", valid_config(sparsity={"linspace": [0.1, 0.9, 0]}),
     "'grid.sparsity.linspace'", "0]"),
    ("linspace float count", valid_config(sparsity={"linspace": [0.1, 0.9, 3.0]}),
     "'grid.sparsity.linspace'", "3.0"),
    ("linspace not a list", valid_config(sparsity={"linspace": "0.1, 0.9, 3"}),
     "'grid.sparsity.linspace'", "'0.1, 0.9, 3'"),
    ("range step zero", valid_config(seed={"range": [0, 10, 0]}), "'grid.seed.range'",
     "[0, 10, 0]"),
    ("range floats", valid_config(seed={"range": [0.5, 3]}), "'grid.seed.range'", "0.5"),
    ("logspace overflow", valid_config(learning_rate={"logspace": [0, 400, 3]}),
     "'grid.learning_rate.logspace'", "400"),
    ("linspace values out of range", valid_config(sparsity={"linspace": [0.5, 1.5, 3]}),
     "'grid.sparsity'", "1.0"),
    ("unknown model", valid_config(model="lstm"), "'grid.model'", "'lstm'"),
    ("unknown optimizer", valid_config(optimizer="rmsprop"), "'grid.optimizer'", "'rmsprop'"),
    ("unknown lr_schedule", valid_config(lr_schedule="linear"), "'grid.lr_schedule'",
     "'linear'"),
    ("lr_schedule not a string", valid_config(lr_schedule=1), "'grid.lr_schedule'", "1"),
    ("unknown trainer", valid_config(trainer="exact"), "'grid.trainer'", "'exact'"),
    ("readout_bias integer", valid_config(readout_bias=1), "'grid.readout_bias'", "1"),
    ("sigma_h without custom", valid_config(sigma_h="relu"), "'grid.sigma_h'", "['relu']"),
    ("custom without sigma", valid_config(model="custom"), "'grid.sigma_h'", "missing"),
    ("unknown activation", valid_config(model="custom", sigma_h="tanh", sigma_y="relu"),
     "'grid.sigma_h'", "'tanh'"),
    ("magnitude low above high", valid_config(magnitude_low=2.0), "'grid.magnitude_high'",
     "magnitude_low = 2.0"),
    ("magnitude high zero", valid_config(magnitude_high=0.0), "'grid.magnitude_high'", "0.0"),
    ("importance decay zero", valid_config(importance_decay=0.0), "'grid.importance_decay'",
     "0.0"),
    ("importance decay above one", valid_config(importance_decay=1.5),
     "'grid.importance_decay'", "1.5"),
    ("spectral norm one", valid_config(init_spectral_norm=1.0), "'grid.init_spectral_norm'",
     "1.0"),
    ("init scale zero", valid_config(init_scale=0.0), "'grid.init_scale'", "0.0"),
    ("expected trainer with relu", valid_config(trainer="expected"), "'grid.trainer'",
     "sigma_h = relu"),
    ("chunk size zero", run_table(chunk_size=0), "'run.chunk_size'", "0"),
    ("chunk size boolean", run_table(chunk_size=True), "'run.chunk_size'", "true"),
    ("chunk size fractional", run_table(chunk_size=1.5), "'run.chunk_size'", "1.5"),
    ("memory budget zero", run_table(memory_budget_mb=0), "'run.memory_budget_mb'", "0"),
    ("memory budget NaN", run_table(memory_budget_mb=float("nan")), "'run.memory_budget_mb'",
     "nan"),
]


@pytest.mark.parametrize("document, field, value",
                         [case[1:] for case in BAD_CONFIGS],
                         ids=[case[0] for case in BAD_CONFIGS])
def test_bad_config_names_field(document, field, value):
    with pytest.raises(ConfigError) as raised:
        parse_config(toml_text(document), source="bad.toml")

    message = str(raised.value)
    assert message.startswith("bad.toml: "), message
    assert field in message, message
    assert value in message, message
    assert "\n" not in message, message
    assert len(message) < 600, message


def test_valid_config_parses():
    config = parse_config(toml_text(VALID_CONFIG))

    assert config.grid_size == 12
    assert config.axes["k"] == (1, 2)
    assert config.axes["sparsity"] == (0.5, 0.9)


def test_lr_schedule_defaults_to_constant():
    config = parse_config(toml_text(VALID_CONFIG))

    assert config.axes["lr_schedule"] == ("constant",)


def test_cosine_lr_schedule_parses():
    config = parse_config(toml_text(valid_config(lr_schedule="cosine")))

    assert config.axes["lr_schedule"] == ("cosine",)


def test_bad_lr_schedule_lists_allowed_values():
    with pytest.raises(ConfigError) as raised:
        parse_config(toml_text(valid_config(lr_schedule="linear")), source="bad.toml")

    assert "expected one of constant, cosine" in str(raised.value)


@pytest.mark.parametrize("path", sorted((Path(__file__).parent.parent / "sweeps").glob("*.toml")),
                         ids=lambda path: path.name)
def test_shipped_sweep_is_valid(path):
    assert load_config(path).grid_size >= 1


def test_integral_float_accepted_for_integer():
    config = parse_config(toml_text(valid_config(steps=60.0)))

    assert config.axes["steps"] == (60,)
    assert isinstance(config.axes["steps"][0], int)


def test_invalid_toml_is_config_error():
    with pytest.raises(ConfigError, match=r"^bad.toml: invalid TOML"):
        parse_config('name = "a"\n[grid\n', source="bad.toml")


def test_deep_nesting_is_config_error():
    text = 'name = "a"\n[grid]\nk = ' + "[" * 5000 + "]" * 5000 + "\n"

    with pytest.raises(ConfigError, match="invalid TOML"):
        parse_config(text)


def test_missing_file_is_config_error(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.toml")


def test_directory_as_config_is_config_error(tmp_path):
    with pytest.raises(ConfigError, match="config path is a directory; pass a TOML file"):
        load_config(tmp_path)


def test_byte_order_mark_accepted(tmp_path):
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + toml_text(VALID_CONFIG).encode())

    config = load_config(path)

    assert config.grid_size == 12
    assert not config.text.startswith("\ufeff")


def test_float32_distinct_values_accepted():
    # 0.1 and 0.1000001 differ by about 13 float32 steps, so both train.
    config = parse_config(toml_text(valid_config(sparsity=[0.1, 0.1000001])))

    assert config.axes["sparsity"] == (0.1, 0.1000001)


def test_expected_cpu_minutes_stored():
    config = parse_config(toml_text({**VALID_CONFIG, "expected_cpu_minutes": 3}))

    assert config.expected_cpu_minutes == 3
    assert parse_config(toml_text(VALID_CONFIG)).expected_cpu_minutes is None


def test_binary_file_is_config_error(tmp_path):
    path = tmp_path / "binary.toml"
    path.write_bytes(b"\xff\xfe\x00name")

    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(path)


@pytest.mark.parametrize("arguments", [
    ["sweep", "{config}"],
    ["sweep", "{config}", "--out", "{tmp}/out"],
    ["sweep", "{config}", "--out", "{tmp}/nested/out", "--overwrite"],
], ids=["default out", "explicit out", "nested out"])
def test_cli_bad_config_writes_nothing(tmp_path, monkeypatch, capsys, arguments):
    config = tmp_path / "bad.toml"
    config.write_text(toml_text(valid_config(k=[1, 8])))
    monkeypatch.chdir(tmp_path)
    arguments = [argument.format(config=config, tmp=tmp_path) for argument in arguments]

    code = main(arguments)

    error = capsys.readouterr().err
    assert code == 2
    assert error.startswith("tsjax: error: "), error
    assert len(error.strip().splitlines()) == 1, error
    assert "'grid.k'" in error
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bad.toml"]


def test_cli_missing_config_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)

    code = main(["sweep", "absent.toml"])

    error = capsys.readouterr().err
    assert code == 2
    assert error.strip() == "tsjax: error: absent.toml: config file not found"
    assert list(tmp_path.iterdir()) == []


def test_cli_bad_chunk_size_writes_nothing(tmp_path, monkeypatch, capsys):
    config = tmp_path / "valid.toml"
    config.write_text(toml_text(VALID_CONFIG))
    monkeypatch.chdir(tmp_path)

    code = main(["sweep", str(config), "--chunk-size", "0"])

    assert code == 2
    assert "'--chunk-size' = 0" in capsys.readouterr().err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["valid.toml"]
