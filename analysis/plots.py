"""Plots of the sparsity transition: order parameter with fits, phase diagram and loss curves.

Each function returns the matplotlib Figure and writes a PNG when ``path`` is given. The
weight-geometry plots live in analysis.geometry_plots and are re-exported here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from analysis.fit import FIT_COLUMNS
from analysis.geometry_plots import plot_feature_directions, plot_projection_heatmap
from analysis.seeds import select_seeds
from analysis.sigmoid import sigmoid
from analysis.style import SPARSITY_LABEL, new_figure, order_parameter_label, paper_style, save_figure

__all__ = [
    "plot_order_parameter",
    "plot_phase_diagram",
    "plot_loss_curves",
    "plot_feature_directions",
    "plot_projection_heatmap",
]

LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P")


def _group_keys(fit_table: pd.DataFrame) -> list[str]:
    return [column for column in fit_table.columns if column not in FIT_COLUMNS]


def _colours_by_k(values) -> dict:
    """Map each distinct k to a colour from viridis, skipping its pale yellow end."""
    distinct = sorted(pd.unique(pd.Series(values)))
    positions = np.linspace(0.05, 0.8, len(distinct)) if len(distinct) > 1 else [0.3]
    return {value: colormaps["viridis"](position) for value, position in zip(distinct, positions)}


def _rows_matching(df: pd.DataFrame, keys: dict) -> pd.DataFrame:
    mask = np.ones(len(df), dtype=bool)
    for column, value in keys.items():
        mask &= (df[column].isna() if pd.isna(value) else df[column] == value).to_numpy()
    return df[mask]


def _band(fit: pd.Series, sparsity: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Pointwise bootstrap band of the fitted curve at the fit's confidence level.

    Uses the resampled fits in ``bootstrap_params`` when present. A table read back from
    CSV has no resampled fits, so the band then shifts S_c across its confidence interval.
    """
    samples = fit.get("bootstrap_params")
    if isinstance(samples, np.ndarray) and samples.ndim == 2 and len(samples):
        curves = np.array([sigmoid(sparsity, *parameters) for parameters in samples])
        tail = (1 - float(fit["confidence"])) / 2
        return np.quantile(curves, tail, axis=0), np.quantile(curves, 1 - tail, axis=0)
    low, high = fit.get("critical_sparsity_low"), fit.get("critical_sparsity_high")
    if low is None or high is None or not (np.isfinite(low) and np.isfinite(high)):
        return None
    shape = (fit["low_plateau"], fit["high_plateau"])
    edges = [sigmoid(sparsity, *shape, centre, fit["width"]) for centre in (low, high)]
    return np.minimum(*edges), np.maximum(*edges)


@paper_style
def plot_order_parameter(
    df: pd.DataFrame, fit_table: pd.DataFrame, order_parameter: str = "k_theta_deg", path: str | Path | None = None
):
    """Plot an order parameter against sparsity with the fitted sigmoids, one panel per model.

    Faint dots show every ``ok`` model, so the seed spread is visible. Markers show the
    points the fit used: the best seed per sparsity, or the mean over seeds for a fit
    with ``seeds="live"``. Each k gets its own colour, and other varying group keys get
    their own line style. The shaded band is the bootstrap band of the sigmoid.
    """
    available = sorted(map(str, fit_table["order_parameter"].unique()))
    fit_table = fit_table[fit_table["order_parameter"] == order_parameter]
    if fit_table.empty:
        raise ValueError(
            f"fit_table has no fits of order_parameter={order_parameter!r}; it contains {available or 'no fits'}"
        )
    group_keys = _group_keys(fit_table)
    models = sorted(fit_table["model"].unique()) if "model" in group_keys else [None]
    colours = _colours_by_k(fit_table["k"]) if "k" in group_keys else {}
    style_keys = [key for key in group_keys if key not in ("model", "k") and fit_table[key].nunique() > 1]
    styles = {
        values: LINESTYLES[index % len(LINESTYLES)]
        for index, values in enumerate(sorted(set(map(tuple, fit_table[style_keys].to_numpy()))))
    }

    figure, axes = new_figure(n_columns=len(models), panel_size=(3.8, 3.6))
    for ax, model in zip(axes, models):
        panel = fit_table if model is None else fit_table[fit_table["model"] == model]
        for _, fit in panel.iterrows():
            _draw_group(ax, df, fit, group_keys, order_parameter, colours, styles, style_keys)
        ax.set_xlabel(SPARSITY_LABEL)
        ax.set_ylabel(order_parameter_label(order_parameter))
        if model is not None:
            ax.set_title(f"model: {model}")
        if order_parameter == "k_theta_deg":
            for reference in (90, 270):
                ax.axhline(reference, color="0.6", linewidth=0.6, linestyle=":", zorder=0)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2))
    save_figure(figure, path)
    return figure


def _draw_group(ax, df, fit, group_keys, order_parameter, colours, styles, style_keys) -> None:
    keys = {key: fit[key] for key in group_keys}
    ok_rows = _rows_matching(df, keys)
    ok_rows = ok_rows[ok_rows["status"] == "ok"]
    if fit["seeds"] == "best":
        # Select before dropping NaN values, as fit_transition does.
        points = select_seeds(ok_rows, "best", group_by=()).set_index("sparsity")[order_parameter]
    else:
        points = ok_rows.groupby("sparsity")[order_parameter].mean()
    points = points[np.isfinite(points.to_numpy(float))]
    ok_rows = ok_rows[np.isfinite(ok_rows[order_parameter].to_numpy(float))]
    colour = colours.get(fit.get("k"), "tab:blue")
    linestyle = styles.get(tuple(fit[style_keys]), "-")

    label_parts = [f"k={fit['k']}"] if "k" in keys else []
    label_parts += [f"{key}={fit[key]}" for key in style_keys]
    if fit["converged"]:
        label_parts.append(
            f"$S_c$={fit['critical_sparsity']:.3f} [{fit['critical_sparsity_low']:.3f}, "
            f"{fit['critical_sparsity_high']:.3f}]"
        )
    else:
        label_parts.append("no fit")
    label = ", ".join(label_parts)

    ax.scatter(ok_rows["sparsity"], ok_rows[order_parameter], s=6, color=colour, alpha=0.25, linewidths=0)
    ax.plot(points.index, points.to_numpy(), linestyle="none", marker="o", color=colour, label=label)

    if not fit["converged"] or ok_rows.empty:
        return
    sparsity = np.linspace(ok_rows["sparsity"].min(), ok_rows["sparsity"].max(), 300)
    parameters = [fit[name] for name in ("low_plateau", "high_plateau", "critical_sparsity", "width")]
    ax.plot(sparsity, sigmoid(sparsity, *parameters), color=colour, linestyle=linestyle)
    band = _band(fit, sparsity)
    if band is not None:
        ax.fill_between(sparsity, *band, color=colour, alpha=0.2, linewidth=0)


@paper_style
def plot_phase_diagram(fit_table: pd.DataFrame, path: str | Path | None = None):
    """Plot critical sparsity against k with its bootstrap CI as error bars.

    One line per combination of the other group keys (model, n_hidden, ...). Only
    converged fits are drawn. Raises ValueError when the table has no ``k`` column.
    """
    group_keys = _group_keys(fit_table)
    if "k" not in group_keys:
        raise ValueError(f"fit_table must be grouped by 'k' for a phase diagram; its group keys are {group_keys}")
    line_keys = [key for key in group_keys if key != "k"]
    converged = fit_table[fit_table["converged"].astype(bool)]
    # Labels name only the keys that differ between lines, or the model when none do.
    label_keys = [key for key in line_keys if converged[key].nunique(dropna=False) > 1]
    if not label_keys and "model" in line_keys:
        label_keys = ["model"]

    figure, (ax,) = new_figure(panel_size=(4.2, 3.0))
    lines = converged.groupby(line_keys, dropna=False, sort=True) if line_keys else [((), converged)]
    for index, (values, line) in enumerate(lines):
        line = line.sort_values("k")
        centre = line["critical_sparsity"].to_numpy(float)
        below = centre - line["critical_sparsity_low"].to_numpy(float)
        above = line["critical_sparsity_high"].to_numpy(float) - centre
        # A missing CI (no bootstrap) draws no bar, and a CI that excludes the point estimate
        # draws a one-sided bar.
        errors = np.nan_to_num(np.clip(np.vstack([below, above]), 0, None))
        label = ", ".join(f"{key}={value}" for key, value in zip(line_keys, values) if key in label_keys) or None
        marker = MARKERS[index % len(MARKERS)]
        ax.errorbar(line["k"], centre, yerr=errors, marker=marker, capsize=2.5, label=label)

    order_parameters = ", ".join(map(str, fit_table["order_parameter"].unique()))
    confidence = fit_table["confidence"].iloc[0] if len(fit_table) else 0.95
    ax.set_title(f"fits of {order_parameters}, {confidence:.0%} bootstrap CI")
    ax.set_xlabel("recall delay k (time steps)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("critical sparsity $S_c$")
    if converged.empty:
        ax.text(0.5, 0.5, "no converged fits", transform=ax.transAxes, ha="center", va="center")
    elif label_keys:
        ax.legend(loc="best")
    save_figure(figure, path)
    return figure


@paper_style
def plot_loss_curves(df: pd.DataFrame, path: str | Path | None = None):
    """Plot each model's training loss curve, coloured by sparsity, one panel per model type.

    Rows with status ``ok`` are solid lines and other rows dotted. Rows without a
    ``loss_curve`` are skipped. The y axis is logarithmic when every plotted loss is positive.
    """
    if "loss_curve" in df.columns:
        rows = df[df["loss_curve"].map(lambda curve: hasattr(curve, "__len__") and len(curve) > 0)]
    else:
        rows = df.iloc[:0]
    models = sorted(rows["model"].unique()) if "model" in rows.columns and len(rows) else [None]
    norm = Normalize(rows["sparsity"].min(), rows["sparsity"].max()) if len(rows) else Normalize(0, 1)
    colormap = colormaps["viridis"]

    figure, axes = new_figure(n_columns=len(models))
    for ax, model in zip(axes, models):
        panel = rows if model is None else rows[rows["model"] == model]
        segments, colours, linestyles, all_positive = [], [], [], True
        for _, row in panel.iterrows():
            loss = np.asarray(row["loss_curve"], dtype=float)
            steps = row.get("loss_curve_step")
            steps = np.arange(loss.size) if steps is None or len(steps) != loss.size else np.asarray(steps, float)
            # Diverged runs end in inf or NaN, which would break autoscaling.
            finite = np.isfinite(loss)
            segments.append(np.column_stack([steps[finite], loss[finite]]))
            colours.append(colormap(norm(row["sparsity"])))
            linestyles.append("-" if row["status"] == "ok" else ":")
            all_positive &= bool(not finite.any() or loss[finite].min() > 0)
        if segments:
            ax.add_collection(LineCollection(segments, colors=colours, linestyles=linestyles, linewidths=0.8))
            ax.autoscale_view()
            if all_positive:
                ax.set_yscale("log")
        else:
            ax.text(0.5, 0.5, "no loss curves", transform=ax.transAxes, ha="center", va="center")
        ax.set_xlabel("training step")
        ax.set_ylabel("mean training loss per segment")
        if model is not None:
            ax.set_title(f"model: {model}")
        if panel["status"].ne("ok").any():
            handles = [
                Line2D([], [], color="0.3", linestyle="-", label="ok"),
                Line2D([], [], color="0.3", linestyle=":", label="dead or diverged"),
            ]
            ax.legend(handles=handles, loc="best")
    figure.colorbar(ScalarMappable(norm=norm, cmap=colormap), ax=axes, label="sparsity S", shrink=0.9)
    save_figure(figure, path)
    return figure
