"""Tests that every plot renders and writes a non-empty PNG."""

import numpy as np
import pytest
from analysis_synthetic import synthetic_results
from matplotlib.figure import Figure

from analysis import (
    fit_transition,
    plot_feature_directions,
    plot_loss_curves,
    plot_order_parameter,
    plot_phase_diagram,
    plot_projection_heatmap,
)
from analysis.style import new_figure

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def results():
    return synthetic_results(ks=(1, 2), seeds=range(3), n_features=3)


@pytest.fixture(scope="module")
def fit_table(results):
    return fit_transition(results, n_bootstrap=20)


def _assert_png(path):
    assert path.is_file()
    assert path.stat().st_size > 1000
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert not list(path.parent.glob(".*.tmp"))


@pytest.mark.parametrize("seeds", ["best", "live"])
def test_order_parameter_plot_writes_png(tmp_path, results, seeds):
    table = fit_transition(results, seeds=seeds, n_bootstrap=20)
    path = tmp_path / "order_parameter.png"

    figure = plot_order_parameter(results, table, "k_theta_deg", path)

    assert isinstance(figure, Figure)
    assert len(figure.axes) == 2
    _assert_png(path)


def test_order_parameter_plot_without_bootstrap_samples(tmp_path, results, fit_table):
    # A table read back from CSV has no bootstrap_params column.
    path = tmp_path / "order_parameter.png"

    plot_order_parameter(results, fit_table.drop(columns=["bootstrap_params"]), "k_theta_deg", path)

    _assert_png(path)


def test_order_parameter_plot_rejects_unfitted_column(results, fit_table):
    with pytest.raises(ValueError, match="no fits of order_parameter='spectral_radius'"):
        plot_order_parameter(results, fit_table, "spectral_radius")


def test_phase_diagram_writes_png(tmp_path, fit_table):
    path = tmp_path / "phase.png"

    plot_phase_diagram(fit_table, path)

    _assert_png(path)


def test_phase_diagram_without_converged_fits(tmp_path, fit_table):
    path = tmp_path / "phase.png"

    plot_phase_diagram(fit_table.assign(converged=False), path)

    _assert_png(path)


def test_phase_diagram_needs_k(fit_table):
    with pytest.raises(ValueError, match="grouped by 'k'"):
        plot_phase_diagram(fit_table.drop(columns=["k"]))


def test_feature_directions_writes_png(tmp_path, results):
    path = tmp_path / "fan.png"

    plot_feature_directions(results.iloc[10], path, feature=2)

    _assert_png(path)


def test_feature_directions_draws_into_axes(results):
    figure, (ax,) = new_figure()

    returned = plot_feature_directions(results.iloc[10], ax)

    assert returned is figure
    assert ax.get_xlabel() == "hidden unit 1 (activation)"


def test_feature_directions_rejects_three_hidden_units(results):
    row = results.iloc[0].copy()
    row["n_hidden"] = 3

    with pytest.raises(ValueError, match="needs n_hidden == 2"):
        plot_feature_directions(row)


def test_projection_heatmap_writes_png(tmp_path, results):
    path = tmp_path / "heatmap.png"

    figure = plot_projection_heatmap(results.iloc[10], 1, path)

    image = figure.axes[0].images[0]
    low, high = image.get_clim()
    assert low == pytest.approx(-high)
    _assert_png(path)


def test_projection_heatmap_rejects_bad_input(results):
    with pytest.raises(ValueError, match="invalid s=6"):
        plot_projection_heatmap(results.iloc[0], 6)

    single_feature = synthetic_results(models=("linear",), ks=(1,), sparsities=[0.5], seeds=[0])
    with pytest.raises(ValueError, match="needs n_features > 1"):
        plot_projection_heatmap(single_feature.iloc[0], 0)


def test_loss_curves_writes_png_with_diverged_row(tmp_path, results):
    rows = results.copy()
    rows.loc[0, "status"] = "diverged"
    rows.at[0, "loss_curve"] = np.array([0.1, np.inf, np.nan] + [np.nan] * 7, dtype=np.float32)
    path = tmp_path / "loss.png"

    plot_loss_curves(rows, path)

    _assert_png(path)
