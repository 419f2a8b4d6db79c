"""Sweep configs as Python dicts, written out as TOML text for the config tests."""

import copy
import json
import math

# A valid config: one static group of 12 tiny models that trains in about a second.
VALID_CONFIG = {
    "name": "valid",
    "grid": {
        "model": "nonlinear",
        "n_hidden": 2,
        "seq_len": 8,
        "k": [1, 2],
        "sparsity": [0.5, 0.9],
        "seed": [0, 1, 2],
        "steps": 60,
        "batch_size": 32,
        "checkpoints": 6,
        "eval_samples": 64,
    },
}


def valid_config(**grid_updates) -> dict:
    """Return a deep copy of VALID_CONFIG with `grid_updates` applied to its grid."""
    document = copy.deepcopy(VALID_CONFIG)
    document["grid"].update(grid_updates)
    return document


def toml_value(value) -> str:
    """Write one value as a TOML value: a scalar, an array or an inline table."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{json.dumps(key)} = {toml_value(item)}" for key, item in value.items())
        return "{" + items + "}"
    raise TypeError(f"no TOML form for {value!r}")


def toml_text(document: dict) -> str:
    """Write a config dict as TOML; top-level dicts become [tables] after the scalars."""
    lines = [f"{json.dumps(key)} = {toml_value(value)}"
             for key, value in document.items() if not isinstance(value, dict)]
    for key, table in document.items():
        if isinstance(table, dict):
            lines.append(f"[{json.dumps(key)}]")
            lines.extend(f"{json.dumps(name)} = {toml_value(value)}"
                         for name, value in table.items())
    return "\n".join(lines) + "\n"
