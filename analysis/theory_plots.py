"""Plots and checks of the closed-form loss decomposition stored in each results row.

The columns come from tsjax: `task_reward`, `mean_correction`, `projection_interference`
and `compositional_interference` sum to `expected_loss`, the exact expected loss of a
linear model, and each has a `<name>_curve` column with its value at every step of
`loss_curve_step`. For a ReLU readout or recurrence the same formula is an
approximation, and with a readout bias the columns are null.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.colors import Normalize
from matplotlib.ticker import MaxNLocator

from analysis.geometry_plots import plot_feature_directions, plot_projection_heatmap
from analysis.loader import weights
from analysis.style import figure_and_axes, new_figure, paper_style, save_figure

TERM_COLUMNS = ("task_reward", "mean_correction", "projection_interference", "compositional_interference")
TERM_LABELS = {
    "task_reward": r"task reward $p\nu(a_k-1)^2$",
    "mean_correction": r"mean correction $-2p^2\mu^2\sum a_s$",
    "projection_interference": r"projection interference $p\nu\sum a_s^2$",
    "compositional_interference": r"compositional interference $p^2\mu^2\sum a_s a_{s'}$",
}
TERM_COLOURS = {
    "task_reward": "tab:blue",
    "mean_correction": "tab:orange",
    "projection_interference": "tab:green",
    "compositional_interference": "tab:purple",
}


def _title(row) -> str:
    return f"{row.get('model', '?')}, S = {float(row['sparsity']):.3g}, k = {int(row['k'])}"


def _curve(row, column: str) -> np.ndarray | None:
    value = row.get(column)
    if value is None or not hasattr(value, "__len__"):
        return None
    return np.asarray(value, dtype=float)


@paper_style
def plot_loss_decomposition(row: pd.Series, path_or_ax=None):
    """Draw the four loss terms and their sum along training for one results row.

    The x axis is the training step of each checkpoint. The training loss (mean over each
    checkpoint segment) is drawn dashed for comparison, and the held-out `eval_loss`
    with a 2-standard-error bar at the last step. Drops of the task reward and of the
    interference terms at different steps show the staircase of training. Raises
    ValueError when the row has no loss-term curves (a model with a readout bias).
    """
    curves = {name: _curve(row, f"{name}_curve") for name in (*TERM_COLUMNS, "expected_loss")}
    missing = [name for name, curve in curves.items() if curve is None]
    if missing:
        raise ValueError(f"row has no {missing[0]}_curve values to plot; a model with a readout bias has none")
    steps = _curve(row, "loss_curve_step")
    length = len(curves["expected_loss"])
    if steps is None or len(steps) != length:
        steps = np.arange(1, length + 1, dtype=float)

    figure, ax, path = figure_and_axes(path_or_ax)
    for name in TERM_COLUMNS:
        ax.plot(steps, curves[name], color=TERM_COLOURS[name], label=TERM_LABELS[name])
    ax.plot(steps, curves["expected_loss"], color="black", linewidth=2, label="expected loss (sum)")
    training = _curve(row, "loss_curve")
    if training is not None and len(training) == length:
        ax.plot(steps, training, color="0.5", linestyle="--", label="training loss (segment mean)")
    eval_loss, stderr = row.get("eval_loss"), row.get("eval_loss_stderr")
    if eval_loss is not None and np.isfinite(eval_loss):
        error = 2 * stderr if stderr is not None and np.isfinite(stderr) else None
        ax.errorbar(steps[-1], eval_loss, yerr=error, color="tab:red", marker="o", capsize=3,
                    label="held-out loss ± 2 s.e.")
    ax.axhline(0, color="0.7", linewidth=0.5)
    ax.set_xlabel("training step")
    ax.set_ylabel("contribution to expected loss")
    exact = row.get("sigma_h") == "identity" and row.get("sigma_y") == "identity"
    ax.set_title(_title(row) + ("" if exact else "\n(approximate: nonlinear model)"))
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0))
    save_figure(figure, path)
    return figure


@paper_style
def plot_projections_by_age(row: pd.Series, path: str | Path | None = None, ages=None):
    """Draw a_s = W_y^T w_s as one heatmap per age s, on a shared colour scale centred at 0.

    Entry [i, j] of panel s is the readout of output i, s steps after a unit input on
    coordinate j. `ages` defaults to every s < seq_len. The recall target s = k is marked
    in its title: a positive diagonal there recalls each feature, and negative entries
    elsewhere lie in the interference-free half-space of a ReLU readout. Needs
    n_features > 1, otherwise raises ValueError.
    """
    n_features = int(row["n_features"])
    if n_features <= 1:
        raise ValueError(f"plot_projections_by_age needs n_features > 1, got n_features={n_features}")
    arrays = weights(row)
    if "projections" not in arrays:
        raise ValueError("row has no projections values to plot")
    projections = arrays["projections"].astype(float)
    ages = list(range(len(projections))) if ages is None else [int(age) for age in ages]
    invalid = [age for age in ages if not 0 <= age < len(projections)]
    if invalid or not ages:
        raise ValueError(f"invalid ages {invalid or ages}; expected values in 0 <= s < seq_len={len(projections)}")

    largest = float(np.abs(projections[ages]).max()) or 1.0
    norm = Normalize(-largest, largest)
    k = int(row["k"])
    figure, axes = new_figure(n_columns=len(ages), panel_size=(2.0, 2.2))
    for ax, age in zip(axes, ages):
        image = ax.imshow(projections[age], cmap="RdBu_r", norm=norm, interpolation="nearest")
        ax.grid(False)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"s = {age}" + (" (target k)" if age == k else ""))
        ax.set_xlabel("input j")
    axes[0].set_ylabel("output i")
    figure.colorbar(image, ax=axes, label="$a_s[i, j]$", shrink=0.8)
    figure.suptitle(_title(row))
    save_figure(figure, path)
    return figure


@paper_style
def plot_theory_summary(row: pd.Series, path: str | Path | None = None):
    """Draw the loss decomposition beside the row's geometry in one figure.

    The second panel is the fan of feature directions with the readout and the shaded
    interference-free half-plane when n_hidden = 2, else the heatmap of a_k when
    n_features > 1; with neither, the figure has only the first panel.
    """
    fan = int(row["n_hidden"]) == 2
    heatmap = int(row["n_features"]) > 1
    figure, axes = new_figure(n_columns=1 + int(fan or heatmap), panel_size=(5.0, 3.4))
    plot_loss_decomposition(row, axes[0])
    if fan:
        plot_feature_directions(row, axes[1])
    elif heatmap:
        plot_projection_heatmap(row, int(row["k"]), axes[1])
    save_figure(figure, path)
    return figure


def loss_agreement(df: pd.DataFrame, sigmas: float = 3.0, float_floor: float = 1e-10) -> pd.DataFrame:
    """Compare each row's closed-form `expected_loss` with its Monte Carlo `eval_loss`.

    Returns a frame with the same index and columns `z` ((expected_loss − eval_loss) /
    eval_loss_stderr), `agrees` (|z| <= sigmas) and `at_float_floor`. A row is at the
    float floor when both losses are below float_floor times the target energy
    (seq_len − k)·pν·Σ_i decay**i, the loss of a silent output. There both numbers
    measure float32 rounding, not the model, so z means nothing. Rows without an
    expected_loss get NaN in `z` and False in `agrees`.
    """
    low, high = df["magnitude_low"], df["magnitude_high"]
    second_moment = (low**2 + low * high + high**2) / 3
    weight_sum = [np.sum(decay ** np.arange(n)) for decay, n in zip(df["importance_decay"], df["n_features"])]
    energy = (df["seq_len"] - df["k"]) * (1 - df["sparsity"]) * second_moment * weight_sum
    z = (df["expected_loss"] - df["eval_loss"]) / df["eval_loss_stderr"]
    floor = float_floor * energy
    at_floor = (df["expected_loss"].abs() < floor) & (df["eval_loss"].abs() < floor)
    return pd.DataFrame({"z": z, "agrees": z.abs() <= sigmas, "at_float_floor": at_floor}, index=df.index)
