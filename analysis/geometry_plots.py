"""Plots of one trained model's geometry: the fan of feature directions and the projections a_s.

Each function draws into a given Axes, or into a new figure written as PNG when given a
path, and returns the figure.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Polygon
from matplotlib.ticker import MaxNLocator

from analysis.loader import weights
from analysis.style import figure_and_axes, paper_style, save_figure

HIGHLIGHT_COLOUR = "tab:red"
HALF_PLANE_COLOUR = "tab:green"


def _title(row) -> str:
    parts = [f"{row.get('model', '?')}", f"S = {float(row['sparsity']):.3g}", f"k = {int(row['k'])}"]
    k_theta = row.get("k_theta_deg")
    if k_theta is not None and np.isfinite(k_theta):
        parts.append(f"angle to $w_k$ = {k_theta:.0f}°")
    return ", ".join(parts)


@paper_style
def plot_feature_directions(row: pd.Series, path_or_ax=None, feature: int = 0):
    """Draw the feature directions w_0..w_{T-1} of one input coordinate as a fan of arrows.

    w_s is the hidden state s steps after a unit input on coordinate ``feature``. The
    arrow for w_k, the recall target, is highlighted. The readout column W_y[:, feature]
    is drawn rescaled to the longest w_s, and the half-plane {h : W_y^T h < 0} is shaded:
    states there give a negative readout, which a ReLU readout sets to zero, so they
    cause no interference. Only for n_hidden == 2, otherwise raises ValueError.
    """
    if int(row["n_hidden"]) != 2:
        raise ValueError(f"plot_feature_directions needs n_hidden == 2, got n_hidden={int(row['n_hidden'])}")
    n_features = int(row["n_features"])
    if not 0 <= feature < n_features:
        raise ValueError(f"invalid feature={feature}; expected 0 <= feature < n_features={n_features}")
    arrays = weights(row)
    if "feature_directions" not in arrays or "W_y" not in arrays:
        raise ValueError("row has no feature_directions or W_y values to plot")

    directions = arrays["feature_directions"][:, :, feature].astype(float)
    readout = arrays["W_y"][:, feature].astype(float)
    k = int(row["k"])
    longest = max(float(np.linalg.norm(directions, axis=1).max()), 1e-12)
    limit = 1.2 * longest

    figure, ax, path = figure_and_axes(path_or_ax, panel_size=(4.2, 4.3))
    readout_norm = float(np.linalg.norm(readout))
    if readout_norm > 0:
        normal = readout / readout_norm
        tangent = np.array([-normal[1], normal[0]])
        far = 4 * limit
        corners = [tangent * far, tangent * far - normal * far, -tangent * far - normal * far, -tangent * far]
        ax.add_patch(Polygon(corners, closed=True, color=HALF_PLANE_COLOUR, alpha=0.12, linewidth=0))
        readout_arrow = readout / readout_norm * longest
        ax.annotate("", xy=readout_arrow, xytext=(0, 0), arrowprops=dict(arrowstyle="-|>", color="black", linestyle="--"))

    steps = np.arange(len(directions))
    norm = Normalize(0, max(len(directions) - 1, 1))
    others = steps != k
    step_colours = ScalarMappable(norm=norm, cmap=colormaps["viridis"])
    arrow_style = dict(angles="xy", scale_units="xy", scale=1)
    for step in steps[others]:
        colour = step_colours.to_rgba(step)
        ax.quiver(0, 0, *directions[step], color=colour, width=0.006, **arrow_style)
    if 0 <= k < len(directions):
        ax.quiver(0, 0, *directions[k], color=HIGHLIGHT_COLOUR, width=0.011, **arrow_style)
    for step, direction in zip(steps, directions):
        ax.text(*(direction * 1.08), str(step), fontsize=7, ha="center", va="center")

    ax.set_xlim(-limit, limit)
    ax.set_ylim(-limit, limit)
    ax.set_aspect("equal")
    ax.axhline(0, color="0.7", linewidth=0.5)
    ax.axvline(0, color="0.7", linewidth=0.5)
    ax.set_xlabel("hidden unit 1 (activation)")
    ax.set_ylabel("hidden unit 2 (activation)")
    ax.set_title(_title(row))
    ax.legend(
        handles=[
            Line2D([], [], color=HIGHLIGHT_COLOUR, linewidth=2, label=f"$w_k$, k = {k}"),
            Line2D([], [], color="black", linestyle="--", label="readout $W_y$ (rescaled)"),
            Patch(color=HALF_PLANE_COLOUR, alpha=0.25, label="$W_y^T h < 0$ (interference-free)"),
        ],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.16),
        ncols=2,
    )
    figure.colorbar(step_colours, ax=ax, label="steps since input s", shrink=0.7)
    save_figure(figure, path)
    return figure


@paper_style
def plot_projection_heatmap(row: pd.Series, s: int, path_or_ax=None):
    """Draw a_s = W_y^T w_s as a heatmap with a diverging colormap centred at 0.

    Entry [i, j] is the readout of output i, s steps after a unit input on coordinate j.
    Needs n_features > 1 and 0 <= s < seq_len, otherwise raises ValueError.
    """
    n_features = int(row["n_features"])
    if n_features <= 1:
        raise ValueError(f"plot_projection_heatmap needs n_features > 1, got n_features={n_features}")
    arrays = weights(row)
    if "projections" not in arrays:
        raise ValueError("row has no projections values to plot")
    projections = arrays["projections"]
    if not 0 <= s < len(projections):
        raise ValueError(f"invalid s={s}; expected 0 <= s < seq_len={len(projections)}")

    projection = projections[s].astype(float)
    largest = float(np.abs(projection).max()) or 1.0
    figure, ax, path = figure_and_axes(path_or_ax)
    image = ax.imshow(projection, cmap="RdBu_r", norm=Normalize(-largest, largest), interpolation="nearest")
    ax.grid(False)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("input feature j")
    ax.set_ylabel("output feature i")
    target = " (recall target, s = k)" if s == int(row["k"]) else ""
    ax.set_title(f"$a_{{{s}}} = W_y^T w_{{{s}}}${target}\n{_title(row)}")
    figure.colorbar(image, ax=ax, label=f"$a_{{{s}}}[i, j]$ (output per unit input)", shrink=0.8)
    save_figure(figure, path)
    return figure
