"""Shared figure style, axis labels and figure output for the analysis plots.

Figures are built with matplotlib's object-oriented API on an Agg canvas, never through
pyplot, so plotting neither needs a display nor changes the caller's pyplot backend.
"""

from __future__ import annotations

import functools
from pathlib import Path

import matplotlib
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analysis.atomic import atomic_path

PAPER_STYLE = {
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "legend.fontsize": 7.5,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.5,
    "lines.linewidth": 1.5,
    "lines.markersize": 4,
    "legend.frameon": False,
    "savefig.dpi": 150,
}

SPARSITY_LABEL = "sparsity S (probability an input is zero)"
ORDER_PARAMETER_LABELS = {
    "k_theta_deg": "angle swept from $w_0$ to $w_k$ (degrees)",
    "spectral_radius": "spectral radius of $W_h$",
    "final_loss": "final training loss",
    "eval_loss": "evaluation loss",
}


def order_parameter_label(order_parameter: str) -> str:
    """Axis label for an order-parameter column, falling back to the column name."""
    return ORDER_PARAMETER_LABELS.get(order_parameter, order_parameter)


def paper_style(function):
    """Run a plotting function under PAPER_STYLE, which rcParams read when artists are made and saved."""

    @functools.wraps(function)
    def styled(*args, **kwargs):
        with matplotlib.rc_context(PAPER_STYLE):
            return function(*args, **kwargs)

    return styled


def new_figure(n_columns: int = 1, n_rows: int = 1, panel_size=(3.6, 2.8)) -> tuple[Figure, list[Axes]]:
    """Create an Agg-backed figure with a grid of panels and return it with its axes, row-major."""
    figure = Figure(figsize=(panel_size[0] * n_columns, panel_size[1] * n_rows), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(n_rows, n_columns, squeeze=False)
    return figure, list(axes.ravel())


def figure_and_axes(path_or_ax, panel_size=(3.6, 2.8)) -> tuple[Figure, Axes, Path | None]:
    """Return the figure and axes to draw on, and the PNG path to write or None.

    ``path_or_ax`` is an existing Axes to draw into, a file path, or None for a new
    figure of ``panel_size`` inches that is not written.
    """
    if isinstance(path_or_ax, Axes):
        return path_or_ax.figure, path_or_ax, None
    figure, axes = new_figure(panel_size=panel_size)
    return figure, axes[0], None if path_or_ax is None else Path(path_or_ax)


def save_figure(figure: Figure, path: str | Path | None) -> None:
    """Write the figure as PNG to ``path`` atomically, or do nothing when ``path`` is None."""
    if path is None:
        return
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png")
