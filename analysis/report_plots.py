"""Figures of the reproduction report that combine several models or grid points.

Each function draws from a results frame, writes a PNG when given a path and returns the
figure. They pick one representative row per panel (the best ok seed, see
`analysis.select_seeds`) and reuse the single-model plots of analysis.geometry_plots.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import Normalize

from analysis.findings import RECALL_ABSENT, RECALL_KEPT, loss_drops, staircase, staircase_terms
from analysis.geometry_plots import plot_feature_directions, plot_projection_heatmap
from analysis.loader import weights
from analysis.seeds import select_seeds
from analysis.style import new_figure, paper_style, save_figure

TASK_COLOUR = "tab:blue"
INTERFERENCE_COLOUR = "tab:green"
# Colour range of the a_k heatmaps: recall entries are near 1, so ±1.5 keeps them visible.
HEATMAP_LIMIT = 1.5


def best_row(df: pd.DataFrame, **keys) -> pd.Series | None:
    """Return the lowest-loss ok row matching `keys` (column=value), or None when there is none."""
    rows = df[df["status"] == "ok"]
    for column, value in keys.items():
        rows = rows[rows[column] == value]
    if rows.empty:
        return None
    return select_seeds(rows, "best", group_by=()).sort_values("final_loss", kind="stable").iloc[0]


def fan_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Return the rows whose feature directions can be drawn in the plane (N_h = 2)."""
    return df[(df["n_hidden"] == 2) & (df["status"] == "ok")]


@paper_style
def plot_fans(df: pd.DataFrame, path: str | Path | None = None, k: int | None = None):
    """Draw the fan of feature directions of each model type at the densest and sparsest inputs.

    One row of panels per model, one column per sparsity extreme. Each panel is the best
    ok seed at the largest k (or `k`). Raises ValueError when no ok row has N_h = 2.
    """
    rows = fan_rows(df)
    if rows.empty:
        raise ValueError("plot_fans needs ok rows with n_hidden = 2")
    k = int(rows["k"].max()) if k is None else k
    rows = rows[rows["k"] == k]
    models = sorted(rows["model"].unique())
    sparsities = sorted({rows["sparsity"].min(), rows["sparsity"].max()})
    figure, axes = new_figure(n_columns=len(sparsities), n_rows=len(models), panel_size=(4.4, 4.0))
    for model_index, model in enumerate(models):
        for sparsity_index, sparsity in enumerate(sparsities):
            ax = axes[model_index * len(sparsities) + sparsity_index]
            row = best_row(rows, model=model, sparsity=sparsity)
            if row is None:
                ax.set_axis_off()
                ax.text(0.5, 0.5, f"{model}, S = {sparsity:.3g}: no ok model", transform=ax.transAxes,
                        ha="center", va="center")
                continue
            plot_feature_directions(row, ax)
    save_figure(figure, path)
    return figure


@paper_style
def plot_recall_heatmaps(df: pd.DataFrame, model: str, path: str | Path | None = None):
    """Draw a_k = W_yᵀ w_k of one model type for every hidden size (rows) and delay k (columns).

    Each panel is the best ok seed at the sparsest input. Raises ValueError when the model
    has no ok row with n_features > 1.
    """
    rows = df[(df["model"] == model) & (df["n_features"] > 1) & (df["status"] == "ok")]
    if rows.empty:
        raise ValueError(f"plot_recall_heatmaps needs ok rows of model {model!r} with n_features > 1")
    rows = rows[rows["sparsity"] == rows["sparsity"].max()]
    hidden_sizes = sorted(rows["n_hidden"].unique())
    delays = sorted(rows["k"].unique())
    figure, axes = new_figure(n_columns=len(delays), n_rows=len(hidden_sizes), panel_size=(3.3, 3.0))
    for row_index, n_hidden in enumerate(hidden_sizes):
        for column_index, k in enumerate(delays):
            ax = axes[row_index * len(delays) + column_index]
            row = best_row(rows, n_hidden=n_hidden, k=k)
            if row is None:
                ax.set_axis_off()
                continue
            plot_projection_heatmap(row, int(k), ax)
            # A few large negative entries would otherwise wash out the recall diagonal near 1.
            ax.images[0].set_clim(-HEATMAP_LIMIT, HEATMAP_LIMIT)
            ax.set_title(f"$a_k$, $N_h$ = {n_hidden}, k = {k}")
    figure.suptitle(f"{model}, S = {rows['sparsity'].max():.3g}\nbest seed per panel, "
                    f"colours clipped to ±{HEATMAP_LIMIT}")
    save_figure(figure, path)
    return figure


@paper_style
def plot_recall_histogram(df: pd.DataFrame, path: str | Path | None = None):
    """Histogram the recall (a_k)_ii of every feature of the best seed per grid point, per model.

    A bimodal histogram, with mass near 0 and near 1 and little between the dotted
    thresholds, is all-or-none recall. Only rows with n_features > 1, at each model's
    sparsest input.
    """
    rows = df[(df["n_features"] > 1) & (df["status"] == "ok")]
    if rows.empty:
        raise ValueError("plot_recall_histogram needs ok rows with n_features > 1")
    rows = rows[rows["sparsity"] == rows.groupby("model")["sparsity"].transform("max")]
    best = select_seeds(rows, "best", group_by=("model", "n_hidden", "n_features", "k"))
    models = sorted(best["model"].unique())
    figure, axes = new_figure(n_columns=len(models), panel_size=(3.6, 2.8))
    bins = np.linspace(-0.5, 1.5, 41)
    for ax, model in zip(axes, models):
        panel = best[best["model"] == model]
        hidden_sizes = sorted(panel["n_hidden"].unique())
        values = []
        for n_hidden in hidden_sizes:
            recalls = [np.diagonal(weights(row)["projections"][int(row["k"])])
                       for _, row in panel[panel["n_hidden"] == n_hidden].iterrows()]
            values.append(np.clip(np.concatenate(recalls), bins[0], bins[-1]))
        ax.hist(values, bins=bins, stacked=True, label=[f"$N_h$ = {n}" for n in hidden_sizes])
        for threshold in (RECALL_ABSENT, RECALL_KEPT):
            ax.axvline(threshold, color="0.4", linestyle=":", linewidth=0.8)
        ax.set_xlabel("recall $(a_k)_{ii}$ (output per unit input)")
        ax.set_ylabel("features (all k, best seed)")
        ax.set_title(f"model: {model}, S = {panel['sparsity'].iloc[0]:.3g}")
        ax.legend(loc="upper center")
    save_figure(figure, path)
    return figure


@paper_style
def plot_intermediate_projections(row: pd.Series, path: str | Path | None = None):
    """Plot (a_s)_ii against feature index i for every age s <= k of one model.

    Points below zero at ages s < k are intermediate features in the interference-free
    half-space, and the age s = k points are the recall. Feature importance falls with i when
    the model was trained with importance_decay < 1.
    """
    projections = weights(row)["projections"].astype(float)
    k = int(row["k"])
    figure, (ax,) = new_figure(panel_size=(6.0, 3.0))
    norm = Normalize(0, max(k, 1))
    features = np.arange(projections.shape[1])
    for s in range(k + 1):
        colour = "tab:red" if s == k else colormaps["viridis"](norm(s) * 0.8)
        label = f"s = {s}" + (" (recall, s = k)" if s == k else " (intermediate)")
        ax.plot(features, np.diagonal(projections[s]), linestyle="none", marker="o" if s == k else ".",
                color=colour, label=label)
    ax.axhline(0, color="0.3", linewidth=0.8)
    ax.axhspan(ax.get_ylim()[0], 0, color="tab:green", alpha=0.08, linewidth=0,
               label="interference-free ($a_s$ < 0)")
    ax.set_xlabel("feature index i (importance decay$^i$)")
    ax.set_ylabel("$(a_s)_{ii}$ (output per unit input)")
    ax.set_title(f"{row['model']}, $N_h$ = {int(row['n_hidden'])}, $N_x$ = {int(row['n_features'])}, "
                 f"k = {k}, S = {float(row['sparsity']):.3g}, seed {int(row['seed'])}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0))
    save_figure(figure, path)
    return figure


@paper_style
def plot_staircase(rows: list[pd.Series], path: str | Path | None = None):
    """Draw the task and interference terms of the expected loss along training, one panel per row.

    The drops found by `loss_drops` are shaded, and dotted lines mark the alignment and
    separation steps of `analysis.findings.staircase`. The step axis is logarithmic so the early stages stay visible. Rows
    without loss-term curves are skipped. Raises ValueError when none is left.
    """
    panels = [(row, staircase_terms(row)) for row in rows]
    panels = [(row, terms) for row, terms in panels if terms is not None]
    if not panels:
        raise ValueError("plot_staircase needs rows with loss-term curves (task_reward_curve)")
    figure, axes = new_figure(n_columns=len(panels), panel_size=(3.9, 3.1))
    for ax, (row, terms) in zip(axes, panels):
        steps = terms["step"]
        for _, drop in loss_drops(terms).iterrows():
            ax.axvspan(drop["start_step"], drop["end_step"], color="0.5", alpha=0.12, linewidth=0)
        stages = staircase(pd.DataFrame([row]), seeds="live")
        for column, colour in (("alignment_step", TASK_COLOUR), ("separation_step", INTERFERENCE_COLOUR)):
            if len(stages) and np.isfinite(stages[column].iloc[0]):
                ax.axvline(stages[column].iloc[0], color=colour, linestyle=":", linewidth=1)
        if terms["training"] is not None and len(terms["training"]) == len(steps):
            ax.plot(steps, terms["training"], color="0.6", linestyle="--", linewidth=1, label="training loss")
        ax.plot(steps, terms["total"], color="black", label="expected loss")
        ax.plot(steps, terms["task"], color=TASK_COLOUR, label="task term")
        ax.plot(steps, terms["interference"], color=INTERFERENCE_COLOUR, label="interference terms")
        ax.set_xscale("log")
        ax.set_xlabel("training step")
        ax.set_ylabel("loss per sequence")
        kind = "sparse-limit ReLU" if terms["relu_readout"] else "exact linear"
        ax.set_title(f"{row['model']}, k = {int(row['k'])}, S = {float(row['sparsity']):.3g} ({kind})")
    axes[0].legend(loc="upper right")
    save_figure(figure, path)
    return figure
