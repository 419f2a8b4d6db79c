"""Fit the sparsity at which an order parameter jumps, per group of the sweep, with bootstrap CIs."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis.seeds import DEFAULT_GROUP_BY, bootstrap_samples, select_seeds, validate_seed_mode
from analysis.sigmoid import fit_sigmoid

# Columns of a fit table after the group keys, in order.
FIT_COLUMNS = (
    "order_parameter",
    "seeds",
    "confidence",
    "critical_sparsity",
    "critical_sparsity_low",
    "critical_sparsity_high",
    "width",
    "width_unresolved",
    "jump",
    "low_plateau",
    "high_plateau",
    "r_squared",
    "n_points",
    "n_models",
    "n_not_ok",
    "n_bootstrap_converged",
    "converged",
    "message",
    "bootstrap_params",
)


def _validate_arguments(
    df: pd.DataFrame,
    order_parameter: str,
    group_by: Sequence[str],
    seeds: str,
    n_bootstrap: int,
    confidence: float,
) -> None:
    validate_seed_mode(seeds)
    if isinstance(group_by, str):
        raise ValueError(f"invalid group_by={group_by!r}; expected a sequence of column names such as ('model', 'k')")
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, numbers.Integral) or n_bootstrap < 0:
        raise ValueError(f"invalid n_bootstrap={n_bootstrap!r}; expected an integer >= 0")
    if not isinstance(confidence, numbers.Real) or not 0 < confidence < 1:
        raise ValueError(f"invalid confidence={confidence!r}; expected a number strictly between 0 and 1")

    if order_parameter not in df.columns:
        numeric = sorted(str(column) for column in df.select_dtypes("number").columns)
        raise ValueError(
            f"invalid order_parameter={order_parameter!r}, which is not a column. Numeric columns: {', '.join(numeric)}"
        )
    required = [*group_by, "sparsity", "seed", "status", "final_loss"]
    missing = [column for column in required if column not in df.columns]
    if missing:
        raise ValueError(f"results are missing required columns: {', '.join(missing)}")


def fit_transition(
    df: pd.DataFrame,
    order_parameter: str = "k_theta_deg",
    group_by: Sequence[str] = DEFAULT_GROUP_BY,
    seeds: str = "best",
    n_bootstrap: int = 200,
    confidence: float = 0.95,
    rng: int | np.random.Generator | None = 0,
) -> pd.DataFrame:
    """Fit a sigmoid to order parameter versus sparsity in each group and return one row per group.

    Only ``ok`` rows enter a fit, chosen per grid point by ``seeds`` (see select_seeds),
    and selected rows whose order parameter is NaN are dropped. The confidence interval
    of the critical sparsity comes from ``n_bootstrap`` resamples of the seeds (see
    bootstrap_samples) and is NaN when the point fit did not converge or n_bootstrap is 0.
    Resampled fits that do not converge are left out of the interval, and
    ``n_bootstrap_converged`` counts the rest.
    NOTE: this percentile interval is too narrow with few seeds. On synthetic data with
    5 seeds per sparsity, the nominal 95% interval covered the true S_c in about 80-90%
    of 30 noise draws (tests/analysis_synthetic.py data, both seed modes). Best mode with
    n seeds has only 2^n - 1 distinct resamples, so with 2 or 3 seeds the interval
    carries little information.

    ``n_points`` is the number of distinct sparsities fitted, ``n_models`` the number of
    rows fitted and ``n_not_ok`` the number of dead or diverged rows in the group. A group
    whose fit fails still gets a row, with ``converged`` False and the reason in
    ``message``. ``width_unresolved`` flags a step sharper than the grid spacing (see
    SigmoidFit), whose S_c is located only to within the grid gap that contains it.
    ``bootstrap_params`` contains an (n, 4) array of the converged resampled fits in the
    order (lo, hi, S_c, width), for plotting bands. Raises ValueError for invalid
    arguments or missing columns.
    """
    _validate_arguments(df, order_parameter, group_by, seeds, n_bootstrap, confidence)
    group_by = list(group_by)
    generator = np.random.default_rng(rng)

    records = []
    grouped = df.groupby(group_by, dropna=False, sort=True) if group_by else [((), df)]
    for keys, group in grouped:
        record = dict(zip(group_by, keys))
        record.update(
            order_parameter=order_parameter,
            seeds=seeds,
            confidence=float(confidence),
            **_fit_group(group, order_parameter, seeds, n_bootstrap, confidence, generator),
        )
        records.append(record)
    return pd.DataFrame.from_records(records, columns=[*group_by, *FIT_COLUMNS])


def _fit_group(
    group: pd.DataFrame,
    order_parameter: str,
    seeds: str,
    n_bootstrap: int,
    confidence: float,
    generator: np.random.Generator,
) -> dict:
    ok_rows = group[group["status"] == "ok"]
    selected = select_seeds(ok_rows, seeds, group_by=())
    values = selected[order_parameter].to_numpy(float)
    finite = np.isfinite(values)
    x = selected["sparsity"].to_numpy(float)[finite]
    y = values[finite]

    point = fit_sigmoid(x, y)
    message = point.message
    if ok_rows.empty:
        message = f"no ok models in this group ({len(group)} dead or diverged)"
    elif not finite.any():
        message = f"{order_parameter} is null for every selected ok model"

    samples = np.empty((0, 4))
    if point.converged and n_bootstrap > 0:
        fits = [
            fit_sigmoid(sample_x, sample_y, initial=point.parameters)
            for sample_x, sample_y in bootstrap_samples(ok_rows, order_parameter, seeds, n_bootstrap, generator)
        ]
        converged = [fit.parameters for fit in fits if fit.converged]
        if converged:
            samples = np.array(converged)

    low, high = np.nan, np.nan
    if len(samples):
        tail = (1 - confidence) / 2
        low, high = np.quantile(samples[:, 2], [tail, 1 - tail])

    return dict(
        critical_sparsity=point.critical_sparsity,
        critical_sparsity_low=float(low),
        critical_sparsity_high=float(high),
        width=point.width,
        width_unresolved=bool(point.width_unresolved),
        jump=point.jump,
        low_plateau=point.low_plateau,
        high_plateau=point.high_plateau,
        r_squared=point.r_squared,
        n_points=int(np.unique(x).size),
        n_models=int(x.size),
        n_not_ok=int(len(group) - len(ok_rows)),
        n_bootstrap_converged=int(len(samples)),
        converged=bool(point.converged),
        message=message,
        bootstrap_params=samples,
    )
