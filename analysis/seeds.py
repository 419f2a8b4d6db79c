"""Choose which trained models (seeds) represent each grid point, and resample them.

A grid point is one combination of the group keys and a sparsity. Only rows with status
``ok`` are used, because dead and diverged models carry no trained geometry.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd

SEED_MODES = ("best", "live")
DEFAULT_GROUP_BY = ("model", "k", "n_hidden", "n_features", "seq_len")


def validate_seed_mode(seeds: str) -> None:
    """Raise ValueError unless ``seeds`` is one of SEED_MODES."""
    if seeds not in SEED_MODES:
        raise ValueError(f"invalid seeds={seeds!r}; expected one of {', '.join(map(repr, SEED_MODES))}")


def _ranked(ok_rows: pd.DataFrame) -> pd.DataFrame:
    """Sort rows by final loss (missing losses last), breaking ties by the lower seed."""
    return ok_rows.sort_values(["final_loss", "seed"], na_position="last", kind="stable")


def select_seeds(df: pd.DataFrame, seeds: str = "best", group_by: Sequence[str] = DEFAULT_GROUP_BY) -> pd.DataFrame:
    """Return the ``ok`` rows that represent each grid point.

    ``seeds="best"`` keeps, per grid point (group keys plus sparsity), the row with the
    lowest ``final_loss``, breaking ties by the lower seed. ``seeds="live"`` keeps every
    ``ok`` row. The result is sorted by group keys, sparsity and seed.
    """
    validate_seed_mode(seeds)
    point_keys = [*group_by, "sparsity"]
    ok_rows = df[df["status"] == "ok"]
    if seeds == "best":
        ok_rows = _ranked(ok_rows).drop_duplicates(subset=point_keys, keep="first")
    return ok_rows.sort_values([*point_keys, "seed"], kind="stable")


def bootstrap_samples(
    ok_rows: pd.DataFrame,
    order_parameter: str,
    seeds: str,
    n_bootstrap: int,
    rng: np.random.Generator,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``n_bootstrap`` resampled (sparsity, order parameter) curves of one group.

    In best mode the set of seeds is resampled with replacement, and each sparsity takes
    the best row among the drawn seeds, exactly as select_seeds would. In live mode the
    rows at each sparsity are resampled with replacement. Rows whose order parameter is
    NaN are dropped from each sample.
    """
    validate_seed_mode(seeds)
    if seeds == "best":
        yield from _best_seed_samples(ok_rows, order_parameter, n_bootstrap, rng)
    else:
        yield from _live_seed_samples(ok_rows, order_parameter, n_bootstrap, rng)


def _best_seed_samples(
    ok_rows: pd.DataFrame, order_parameter: str, n_bootstrap: int, rng: np.random.Generator
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    sparsities, sparsity_index = np.unique(ok_rows["sparsity"].to_numpy(float), return_inverse=True)
    seed_values, seed_index = np.unique(ok_rows["seed"].to_numpy(), return_inverse=True)

    # rank[i, j] is the loss rank of the best row at sparsity i with seed j, inf if none.
    # Several rows can share a cell when a hyperparameter outside the group keys varies.
    order = _ranked(ok_rows.assign(_sparsity=sparsity_index, _seed=seed_index))
    order = order.assign(_rank=np.arange(len(order))).drop_duplicates(["_sparsity", "_seed"], keep="first")
    rank = np.full((sparsities.size, seed_values.size), np.inf)
    value = np.full((sparsities.size, seed_values.size), np.nan)
    cells = (order["_sparsity"].to_numpy(), order["_seed"].to_numpy())
    rank[cells] = order["_rank"].to_numpy(float)
    value[cells] = order[order_parameter].to_numpy(float)

    rows = np.arange(sparsities.size)
    for _ in range(n_bootstrap):
        drawn = np.unique(rng.integers(seed_values.size, size=seed_values.size))
        best_column = np.argmin(rank[:, drawn], axis=1)
        has_row = np.isfinite(rank[rows, drawn[best_column]])
        y = value[rows, drawn[best_column]]
        keep = has_row & np.isfinite(y)
        yield sparsities[keep], y[keep]


def _live_seed_samples(
    ok_rows: pd.DataFrame, order_parameter: str, n_bootstrap: int, rng: np.random.Generator
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    finite = ok_rows[np.isfinite(ok_rows[order_parameter].to_numpy(float))]
    by_sparsity = [
        (float(sparsity), rows[order_parameter].to_numpy(float))
        for sparsity, rows in finite.groupby("sparsity", sort=True)
    ]
    for _ in range(n_bootstrap):
        x_parts, y_parts = [], []
        for sparsity, values in by_sparsity:
            x_parts.append(np.full(values.size, sparsity))
            y_parts.append(rng.choice(values, size=values.size, replace=True))
        if not x_parts:
            yield np.empty(0), np.empty(0)
            continue
        yield np.concatenate(x_parts), np.concatenate(y_parts)
