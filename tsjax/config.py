"""Sweep configuration: the TOML format, its fields and their validation.

A sweep config is a TOML file with a few top-level keys and a `[grid]` table:

    name = "phase_transition"
    description = "What the sweep measures."

    [grid]
    model = ["ssm", "nonlinear"]
    k = [1, 2, 3]
    sparsity = {linspace = [0.0, 0.95, 16]}
    seed = {range = [0, 8]}

Every grid field takes a single value, a list, or a range table (`linspace`,
`logspace` or `range`); the grid is the product of all fields. The optional `[run]`
table sets how the sweep runs (chunk size, memory budget). It changes results at most in
the last float32 bits, because XLA compiles one program per padded chunk size.
"""

import dataclasses
import difflib
import math
import reprlib
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

MODEL_ACTIVATIONS = {
    "linear": ("identity", "identity"),
    "ssm": ("identity", "relu"),
    "nonlinear": ("relu", "relu"),
}
MODELS = (*MODEL_ACTIVATIONS, "custom")
ACTIVATIONS = ("identity", "relu")
OPTIMIZERS = ("adam", "sgd")
LR_SCHEDULES = ("constant", "cosine")
TRAINERS = ("sampled", "expected")

# Grids larger than this are almost certainly a typo in a range, and their index
# arrays would not fit in memory anyway.
MAX_GRID_POINTS = 50_000_000
# Integer fields are int32 in the compiled program and in the results.
MAX_INT = 2**31 - 1
# The results directory is named after the sweep; 255 bytes is NAME_MAX on Linux.
MAX_NAME_BYTES = 255


class ConfigError(ValueError):
    """An invalid sweep config. The message is one line naming the field, the value
    and what is allowed."""


@dataclasses.dataclass(frozen=True)
class Field:
    """One grid field: its type, default, whether it is static, and its valid range."""

    name: str
    kind: type
    default: Any
    static: bool
    allowed: str
    check: Callable[[Any], bool]
    doc: str


def _in(options):
    return lambda value: value in options


def _positive(value):
    return value > 0


def _non_negative(value):
    return value >= 0


# Static fields change array shapes or program structure, so each distinct
# combination compiles its own program. Traced fields are vmapped inside one program.
FIELDS = {
    field.name: field
    for field in [
        Field("model", str, "nonlinear", True, f"one of {', '.join(MODELS)}",
              _in(MODELS), "Model variant; `custom` takes sigma_h and sigma_y from the config."),
        Field("sigma_h", str, None, True, "identity or relu", _in(ACTIVATIONS),
              "Recurrent nonlinearity; set only for model = custom."),
        Field("sigma_y", str, None, True, "identity or relu", _in(ACTIVATIONS),
              "Readout nonlinearity; set only for model = custom."),
        Field("n_features", int, 1, True, "an integer >= 1", _positive,
              "Input and output dimension N_x."),
        Field("n_hidden", int, 2, True, "an integer >= 1", _positive,
              "Hidden state dimension N_h."),
        Field("seq_len", int, 20, True, "an integer >= 1", _positive,
              "Sequence length T."),
        Field("batch_size", int, 256, True, "an integer >= 1", _positive,
              "Sequences per training step."),
        Field("steps", int, 2000, True, "an integer >= 1", _positive,
              "Training steps."),
        Field("optimizer", str, "adam", True, f"one of {', '.join(OPTIMIZERS)}",
              _in(OPTIMIZERS), "Optax optimizer."),
        Field("lr_schedule", str, "constant", True, f"one of {', '.join(LR_SCHEDULES)}",
              _in(LR_SCHEDULES),
              "Learning-rate schedule: constant, or cosine (optax.cosine_decay_schedule "
              "from learning_rate down to 0 at the last step)."),
        Field("readout_bias", bool, False, True, "true or false", _in((True, False)),
              "Whether the readout has a trainable bias."),
        Field("trainer", str, "sampled", True, f"one of {', '.join(TRAINERS)}",
              _in(TRAINERS),
              "How the training loss is computed: sampled (a Monte Carlo batch per step) or "
              "expected (the closed-form expected loss, no sampling; needs sigma_h = identity "
              "and no readout bias, and with a ReLU readout it is the sparse-limit "
              "approximation)."),
        Field("checkpoints", int, 20, True, "an integer >= 1", _positive,
              "Points on the stored loss curve."),
        Field("eval_samples", int, 8192, True, "an integer >= 1", _positive,
              "Held-out sequences for eval_loss."),
        Field("k", int, 1, False, "an integer >= 0 and < seq_len", _non_negative,
              "Recall delay."),
        Field("sparsity", float, 0.9, False, "a number in [0, 1)",
              lambda value: 0 <= value < 1, "Probability that an input coordinate is zero."),
        Field("seed", int, 0, False, "an integer in [0, 2**31)",
              lambda value: 0 <= value < 2**31, "Seed for init, data and eval keys."),
        Field("learning_rate", float, 0.01, False, "a finite number > 0",
              lambda value: 0 < value < math.inf, "Optimizer learning rate."),
        Field("magnitude_low", float, 0.0, False, "a finite number >= 0",
              lambda value: 0 <= value < math.inf, "Lower end of the Uniform input magnitude."),
        Field("magnitude_high", float, 1.0, False, "a finite number >= magnitude_low",
              lambda value: 0 <= value < math.inf, "Upper end of the Uniform input magnitude."),
        Field("importance_decay", float, 1.0, False, "a number in (0, 1]",
              lambda value: 0 < value <= 1, "Feature i has loss weight importance_decay**i."),
        Field("init_scale", float, 1.0, False, "a finite number > 0",
              lambda value: 0 < value < math.inf, "Scale of the W_x and W_y init."),
        Field("init_spectral_norm", float, 0.5, False, "a number in (0, 1)",
              lambda value: 0 < value < 1,
              "Spectral norm of W_h at init; it bounds the spectral radius below 1."),
    ]
}
STATIC_FIELDS = tuple(name for name, field in FIELDS.items() if field.static)
TRACED_FIELDS = tuple(name for name, field in FIELDS.items() if not field.static)

TOP_LEVEL_KEYS = ("name", "description", "expected_cpu_minutes", "grid", "run")
RUN_KEYS = ("chunk_size", "memory_budget_mb")


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """A validated sweep config: its name, the values of every grid axis, run options."""

    name: str
    axes: dict[str, tuple]
    description: str = ""
    expected_cpu_minutes: float | None = None
    chunk_size: int | None = None
    memory_budget_mb: float | None = None
    text: str = ""
    source: str = "<string>"

    @property
    def grid_size(self) -> int:
        return math.prod(len(values) for values in self.axes.values())


def load_config(path) -> SweepConfig:
    """Read and validate a sweep config file (UTF-8, with or without a byte order mark)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: config path is a directory; pass a TOML file")
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read config file ({error})") from None
    return parse_config(text, source=str(path))


def parse_config(text: str, source: str = "<string>") -> SweepConfig:
    """Parse and validate the text of a sweep config."""
    # Windows editors often save UTF-8 with a byte order mark, which tomllib rejects.
    text = text.removeprefix("\ufeff")
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{source}: invalid TOML ({error})") from None
    except RecursionError:
        raise ConfigError(f"{source}: invalid TOML (arrays or tables nested too deep)") from None

    _reject_unknown(document, TOP_LEVEL_KEYS, source, prefix="")
    name = document.get("name")
    if not isinstance(name, str) or not _is_safe_name(name):
        raise ConfigError(
            f"{source}: field 'name' = {_show(name)} is invalid; expected a non-empty string "
            f"of at most {MAX_NAME_BYTES} bytes of letters, digits, '-', '_' or '.', not "
            "starting with '.' or '_' (it names the results directory)"
        )
    description = document.get("description", "")
    if not isinstance(description, str):
        raise ConfigError(f"{source}: field 'description' = {_show(description)} is invalid; "
                          "expected a string")
    minutes = document.get("expected_cpu_minutes")
    if minutes is not None and (not _is_number(minutes) or not 0 <= minutes < math.inf):
        raise ConfigError(f"{source}: field 'expected_cpu_minutes' = {_show(minutes)} is "
                          "invalid; expected a finite number >= 0")

    grid = document.get("grid", {})
    if not isinstance(grid, dict):
        raise ConfigError(f"{source}: field 'grid' = {_show(grid)} is invalid; expected a "
                          "table of grid fields ([grid])")
    _reject_unknown(grid, tuple(FIELDS), source, prefix="grid.")
    # Count the points before expanding any axis, so a typo such as
    # range = [0, 10000000000] fails at once instead of filling memory.
    grid_size = math.prod(_axis_length(FIELDS[name], grid.get(name), source)
                          for name in FIELDS)
    if grid_size > MAX_GRID_POINTS:
        raise ConfigError(f"{source}: field 'grid' has {grid_size} points, more than the "
                          f"maximum {MAX_GRID_POINTS}; shorten a list or range")
    axes = {name: _expand_field(FIELDS[name], grid.get(name), source) for name in FIELDS}
    _check_model_activations(axes, source)
    _check_combinations(axes, source)
    _check_trainer(axes, source)

    run = document.get("run", {})
    if not isinstance(run, dict):
        raise ConfigError(f"{source}: field 'run' = {_show(run)} is invalid; expected a "
                          "table of run options ([run])")
    _reject_unknown(run, RUN_KEYS, source, prefix="run.")
    chunk_size = run.get("chunk_size")
    if chunk_size is not None and (not _is_int(chunk_size) or not 1 <= chunk_size <= MAX_INT):
        raise ConfigError(f"{source}: field 'run.chunk_size' = {_show(chunk_size)} is "
                          f"invalid; expected an integer in [1, {MAX_INT}]")
    budget = run.get("memory_budget_mb")
    if budget is not None and (not _is_number(budget) or not 0 < budget < math.inf):
        raise ConfigError(f"{source}: field 'run.memory_budget_mb' = {_show(budget)} is "
                          "invalid; expected a finite number > 0")

    return SweepConfig(name=name, axes=axes, description=description,
                       expected_cpu_minutes=minutes, chunk_size=chunk_size, memory_budget_mb=budget,
                       text=text, source=source)


class _TomlRepr(reprlib.Repr):
    """A repr that writes booleans as TOML does (true, false)."""

    def repr_bool(self, value, level):
        return "true" if value else "false"


def _make_value_repr() -> reprlib.Repr:
    """Return a repr that shortens long lists and strings, so errors stay one short line."""
    shortened = _TomlRepr()
    shortened.maxlevel, shortened.maxlist, shortened.maxdict = 3, 6, 4
    shortened.maxstring = shortened.maxother = 60
    return shortened


_show = _make_value_repr().repr


def _reject_unknown(table, known, source, prefix):
    for key in table:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else ""
            raise ConfigError(f"{source}: unknown field {_show(prefix + key)}{hint} "
                              f"(valid: {', '.join(known)})")


def _is_safe_name(name):
    return (bool(name) and len(name.encode("utf-8", "surrogatepass")) <= MAX_NAME_BYTES
            and all(char.isalnum() or char in "-_." for char in name)
            and not name.startswith((".", "_")))


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _axis_length(field: Field, raw, source) -> int:
    """Return the number of values a field's value, list or range table expands to."""
    label = f"{source}: field 'grid.{field.name}'"
    if raw is None:
        return 1
    if isinstance(raw, dict):
        kind, arguments = _range_arguments(raw, source, f"grid.{field.name}")
        length = _range_length(*arguments) if kind == "range" else arguments[2]
    elif isinstance(raw, list):
        length = len(raw)
    else:
        length = 1
    if length == 0:
        raise ConfigError(f"{label} = {_show(raw)} is empty; give at least one value")
    return length


def _range_length(start: int, stop: int, step: int = 1) -> int:
    """Return len(range(start, stop, step)), which raises OverflowError beyond sys.maxsize."""
    if step > 0:
        return max(0, (stop - start + step - 1) // step)
    return max(0, (start - stop - step - 1) // -step)


def _expand_field(field: Field, raw, source) -> tuple:
    """Turn a field's value, list or range table into a tuple of checked, distinct values."""
    label = f"{source}: field 'grid.{field.name}'"
    if raw is None:
        return (field.default,)
    if isinstance(raw, dict):
        values = _expand_range(raw, source, f"grid.{field.name}")
    elif isinstance(raw, list):
        values = raw
    else:
        values = [raw]
    if not values:
        raise ConfigError(f"{label} = {_show(raw)} is empty; give at least one value")
    values = tuple(_check_value(field, value, label) for value in values)
    if len(set(values)) != len(values):
        repeated = next(value for index, value in enumerate(values) if value in values[:index])
        raise ConfigError(f"{label} = {_show(raw)} repeats the value {_show(repeated)}; list "
                          "each value once, because equal grid points would train twice")
    if field.kind is float:
        _reject_float32_collisions(values, label)
    return values


def _reject_float32_collisions(values: tuple, label: str) -> None:
    """Reject distinct values that round to one float32, because training runs in float32
    and would train both as the same model."""
    seen = {}
    for value in values:
        rounded = float(np.float32(value))
        if rounded in seen:
            raise ConfigError(f"{label} has the values {seen[rounded]!r} and {value!r}, which "
                              f"are equal after rounding to float32 ({rounded!r}); list each "
                              "value once, because equal grid points would train twice")
        seen[rounded] = value


def _range_arguments(table, source, path):
    """Check the range table of field `path` and return its kind and argument list."""
    label = f"{source}: field '{path}'"
    if len(table) != 1 or next(iter(table)) not in ("linspace", "logspace", "range"):
        raise ConfigError(f"{label} = {_show(table)} is invalid; a range table has exactly "
                          "one key: linspace = [start, stop, num], logspace = [start, stop, "
                          "num] (powers of 10) or range = [start, stop, step]")
    kind, arguments = next(iter(table.items()))
    if kind == "range":
        if (not isinstance(arguments, list) or len(arguments) not in (2, 3)
                or not all(_is_int(value) for value in arguments)
                or (len(arguments) == 3 and arguments[2] == 0)):
            raise ConfigError(f"{source}: field '{path}.range' = {_show(arguments)} is "
                              "invalid; expected [start, stop] or [start, stop, step] with "
                              "integers, step != 0")
        return kind, arguments
    if (not isinstance(arguments, list) or len(arguments) != 3
            or not all(_is_number(value) for value in arguments[:2])
            or not _is_int(arguments[2]) or arguments[2] < 1
            or not all(math.isfinite(value) for value in arguments[:2])):
        raise ConfigError(f"{source}: field '{path}.{kind}' = {_show(arguments)} is "
                          "invalid; expected [start, stop, num] with finite numbers and an "
                          "integer num >= 1")
    if kind == "logspace" and max(arguments[:2]) > math.log10(np.finfo(np.float64).max):
        raise ConfigError(f"{source}: field '{path}.logspace' = {_show(arguments)} is "
                          "invalid; expected start and stop <= 308.25, because 10**308.26 "
                          "overflows a float64")
    return kind, arguments


def _expand_range(table, source, path):
    kind, arguments = _range_arguments(table, source, path)
    if kind == "range":
        return list(range(*arguments))
    start, stop, num = arguments
    step = (stop - start) / (num - 1) if num > 1 else 0.0
    points = [start + i * step for i in range(num)]
    if kind == "logspace":
        points = [10.0 ** value for value in points]
    return points


def _check_value(field: Field, value, label):
    if field.kind is float and _is_number(value):
        value = float(value)
    elif field.kind is int and isinstance(value, float) and value.is_integer():
        value = int(value)
    kind_ok = (isinstance(value, field.kind) and not (field.kind is int and isinstance(value, bool)))
    if not kind_ok or (field.kind is float and math.isnan(value)) or not field.check(value):
        raise ConfigError(f"{label} = {_show(value)} is invalid; expected {field.allowed}")
    if field.kind is int and not -MAX_INT - 1 <= value <= MAX_INT:
        raise ConfigError(f"{label} = {value} is invalid; expected {field.allowed} and at "
                          f"most {MAX_INT}, because it is stored as int32")
    if field.kind is float and not field.static:
        # Training runs in float32, so the rounded value must pass the same check:
        # 0.99999999999 rounds to sparsity 1.0 and 1e-50 to learning rate 0.0.
        with np.errstate(over="ignore", under="ignore"):
            rounded = float(np.float32(value))
        if not math.isfinite(rounded) or not field.check(rounded):
            raise ConfigError(f"{label} = {value!r} is invalid; expected {field.allowed}, "
                              f"also after rounding to float32 (which gives {rounded!r})")
    return value


def _check_model_activations(axes, source):
    models = axes["model"]
    for name in ("sigma_h", "sigma_y"):
        given = axes[name] != (None,)
        if given and any(model != "custom" for model in models):
            raise ConfigError(f"{source}: field 'grid.{name}' = {list(axes[name])!r} is only "
                              "allowed with model = 'custom'; the named models fix it")
        if not given and "custom" in models:
            raise ConfigError(f"{source}: field 'grid.{name}' is missing; model = 'custom' "
                              "needs sigma_h and sigma_y (identity or relu)")


def _check_combinations(axes, source):
    k_max, seq_min = max(axes["k"]), min(axes["seq_len"])
    if k_max >= seq_min:
        raise ConfigError(f"{source}: field 'grid.k' = {k_max} is invalid with seq_len = "
                          f"{seq_min}; expected k < seq_len for every grid point")
    low_max, high_min = max(axes["magnitude_low"]), min(axes["magnitude_high"])
    if low_max > high_min:
        raise ConfigError(f"{source}: field 'grid.magnitude_high' = {high_min} is invalid with "
                          f"magnitude_low = {low_max}; expected magnitude_high >= magnitude_low")
    if high_min <= 0:
        raise ConfigError(f"{source}: field 'grid.magnitude_high' = {high_min} is invalid; "
                          "expected a number > 0, because otherwise every input is zero")


def _check_trainer(axes, source):
    """Reject the `expected` trainer where its closed-form loss does not exist."""
    if "expected" not in axes["trainer"]:
        return
    recurrences = {MODEL_ACTIVATIONS[model][0] for model in axes["model"] if model != "custom"}
    if "custom" in axes["model"]:
        recurrences.update(axes["sigma_h"])
    if "relu" in recurrences:
        raise ConfigError(f"{source}: field 'grid.trainer' = 'expected' is invalid with "
                          "sigma_h = relu, because a ReLU recurrence has no closed-form "
                          "loss; use trainer = 'sampled' or a model with sigma_h = identity "
                          "(linear, ssm)")
    if True in axes["readout_bias"]:
        raise ConfigError(f"{source}: field 'grid.trainer' = 'expected' is invalid with "
                          "readout_bias = true, because the closed-form loss assumes no "
                          "bias; use trainer = 'sampled' or readout_bias = false")
