"""Tests of the sigmoid fit of the sparsity transition."""

import importlib

import numpy as np
import pandas as pd
import pytest
from analysis_synthetic import TRUE_WIDTH, synthetic_results, true_critical_sparsity

from analysis import FIT_COLUMNS, fit_sigmoid, fit_transition, sigmoid

SPARSITIES = np.linspace(0.05, 0.95, 21)


@pytest.fixture(scope="module")
def one_group():
    return synthetic_results(models=("linear",), ks=(1,), sparsities=SPARSITIES, seeds=range(5), noise_deg=8.0)


@pytest.mark.parametrize("seeds", ["best", "live"])
def test_fit_recovers_critical_sparsity(one_group, seeds):
    table = fit_transition(one_group, "k_theta_deg", seeds=seeds, n_bootstrap=200, rng=1)
    truth = true_critical_sparsity("linear", 1)

    assert len(table) == 1
    fit = table.iloc[0]
    assert fit["converged"], fit["message"]
    assert fit["message"] == ""
    assert abs(fit["critical_sparsity"] - truth) < 0.015
    assert fit["critical_sparsity_low"] <= fit["critical_sparsity"] <= fit["critical_sparsity_high"]
    assert fit["critical_sparsity_high"] - fit["critical_sparsity_low"] < 0.03
    assert fit["jump"] == pytest.approx(180.0, abs=15.0)
    assert fit["low_plateau"] == pytest.approx(90.0, abs=8.0)
    assert fit["high_plateau"] == pytest.approx(270.0, abs=8.0)
    assert fit["width"] == pytest.approx(TRUE_WIDTH, rel=0.5)
    assert fit["n_points"] == SPARSITIES.size
    assert fit["n_models"] == (SPARSITIES.size if seeds == "best" else 5 * SPARSITIES.size)
    assert fit["n_bootstrap_converged"] > 150
    assert fit["bootstrap_params"].shape == (fit["n_bootstrap_converged"], 4)


@pytest.mark.parametrize("seeds", ["best", "live"])
def test_fit_interval_covers_truth_usually(seeds):
    # The percentile bootstrap under-covers with 5 seeds per sparsity: about 80-90% of
    # 30 noise draws for a nominal 95%, so 10 draws must give at least 7 hits.
    truth = true_critical_sparsity("linear", 1)
    hits = 0
    for draw in range(10):
        results = synthetic_results(
            models=("linear",), ks=(1,), sparsities=SPARSITIES, seeds=range(5), noise_deg=8.0, rng=draw
        )
        fit = fit_transition(results, seeds=seeds, n_bootstrap=60, rng=draw).iloc[0]
        assert abs(fit["critical_sparsity"] - truth) < 0.02
        hits += bool(fit["critical_sparsity_low"] <= truth <= fit["critical_sparsity_high"])

    assert hits >= 7


def test_fit_jump_negative_for_falling_order_parameter(one_group):
    fit = fit_transition(one_group, "spectral_radius", n_bootstrap=20).iloc[0]

    assert fit["converged"], fit["message"]
    assert fit["jump"] == pytest.approx(-0.4, abs=0.05)
    assert abs(fit["critical_sparsity"] - true_critical_sparsity("linear", 1)) < 0.015


def test_fit_one_row_per_group():
    results = synthetic_results(models=("linear", "nonlinear"), ks=(1, 2), seeds=range(3))
    table = fit_transition(results, n_bootstrap=10)

    assert list(table.columns) == ["model", "k", "n_hidden", "n_features", "seq_len", *FIT_COLUMNS]
    assert len(table) == 4
    for _, fit in table.iterrows():
        assert fit["converged"], fit["message"]
        assert abs(fit["critical_sparsity"] - true_critical_sparsity(fit["model"], fit["k"])) < 0.02


def test_fit_bootstrap_reproducible_for_same_rng(one_group):
    first = fit_transition(one_group, n_bootstrap=30, rng=7)
    second = fit_transition(one_group, n_bootstrap=30, rng=7)

    assert first["critical_sparsity_low"].equals(second["critical_sparsity_low"])
    assert first["critical_sparsity_high"].equals(second["critical_sparsity_high"])


def test_fit_without_bootstrap_has_nan_interval(one_group):
    fit = fit_transition(one_group, n_bootstrap=0).iloc[0]

    assert fit["converged"]
    assert np.isnan(fit["critical_sparsity_low"])
    assert np.isnan(fit["critical_sparsity_high"])
    assert fit["n_bootstrap_converged"] == 0


def test_fit_sigmoid_noise_free_curve():
    x = np.linspace(0.0, 1.0, 30)
    y = sigmoid(x, 1.0, -2.0, 0.37, 0.05)

    fit = fit_sigmoid(x, y)

    assert fit.converged, fit.message
    assert fit.critical_sparsity == pytest.approx(0.37, abs=1e-6)
    assert fit.width == pytest.approx(0.05, rel=1e-4)
    assert fit.jump == pytest.approx(-3.0, rel=1e-5)
    assert fit.r_squared == pytest.approx(1.0)
    assert np.allclose(fit.evaluate(x), y, atol=1e-6)


def test_fit_sigmoid_flags_step_between_grid_points():
    # Every point lies on a plateau, so the data fix neither the width nor where in the
    # gap [0.4, 0.5] the step sits.
    x = np.linspace(0.0, 1.0, 11)
    y = np.where(x < 0.45, 0.0, 1.0)

    fit = fit_sigmoid(x, y)

    assert fit.converged, fit.message
    assert fit.width_unresolved
    assert 0.4 < fit.critical_sparsity < 0.5


def test_fit_sigmoid_flags_width_at_lower_bound(monkeypatch):
    # With the lower bound raised to 1/20 of the range, the true width 0.01 is out of
    # reach and the fit stops at the bound, although points lie inside its rise.
    # The package exports the function `sigmoid`, which hides the module of that name.
    monkeypatch.setattr(importlib.import_module("analysis.sigmoid"), "MIN_WIDTH_FRACTION", 0.05)
    x = np.linspace(0.0, 1.0, 101)

    fit = fit_sigmoid(x, sigmoid(x, 0.0, 1.0, 0.503, 0.01))

    assert fit.width == pytest.approx(0.05, rel=0.01)
    assert fit.width_unresolved


def test_fit_sigmoid_resolved_width_not_flagged():
    x = np.linspace(0.0, 1.0, 30)

    fit = fit_sigmoid(x, sigmoid(x, 1.0, -2.0, 0.37, 0.05))

    assert not fit.width_unresolved


def test_fit_table_has_width_unresolved(one_group):
    sharp = one_group.assign(k_theta_deg=np.where(one_group["sparsity"] < 0.42, 90.0, 270.0))

    flagged = fit_transition(sharp, n_bootstrap=0).iloc[0]
    resolved = fit_transition(one_group, n_bootstrap=0).iloc[0]

    assert flagged["converged"], flagged["message"]
    assert flagged["width_unresolved"]
    assert not resolved["width_unresolved"]


def _failing_groups() -> pd.DataFrame:
    """Three groups that cannot be fitted: flat values, too few sparsities and only dead models."""
    flat = synthetic_results(models=("linear",), ks=(1,), seeds=range(2))
    flat["k_theta_deg"] = 90.0
    few = synthetic_results(models=("linear",), ks=(2,), sparsities=[0.2, 0.5, 0.8], seeds=range(2))
    dead = synthetic_results(models=("linear",), ks=(3,), seeds=range(2))
    dead["status"] = "dead"
    return pd.concat([flat, few, dead], ignore_index=True)


def test_failed_fits_are_rows_not_errors():
    table = fit_transition(_failing_groups(), n_bootstrap=20).set_index("k")

    assert list(table.index) == [1, 2, 3]
    assert not table["converged"].any()
    assert "constant" in table.loc[1, "message"]
    assert "at least 5 distinct sparsities" in table.loc[2, "message"]
    assert "no ok models" in table.loc[3, "message"]
    assert table.loc[3, "n_not_ok"] == 2 * 19
    assert table["critical_sparsity_low"].isna().all()


def test_failed_fit_for_null_order_parameter():
    results = synthetic_results(models=("linear",), ks=(1,), seeds=range(2))
    results["k_theta_deg"] = np.nan

    fit = fit_transition(results, n_bootstrap=5).iloc[0]

    assert not fit["converged"]
    assert "null for every selected ok model" in fit["message"]


def test_fit_sigmoid_noisy_flat_curve_not_converged():
    rng = np.random.default_rng(3)
    x = np.repeat(np.linspace(0.05, 0.95, 19), 4)

    fit = fit_sigmoid(x, 90.0 + rng.normal(scale=5.0, size=x.size))

    assert not fit.converged
    assert fit.message


def test_fit_sigmoid_smooth_ramp_not_converged():
    x = np.linspace(0.0, 0.9, 6)

    fit = fit_sigmoid(x, 55.0 - 10.0 * x)

    assert not fit.converged
    assert "wider than the scanned range" in fit.message


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"seeds": "worst"}, "invalid seeds='worst'; expected one of 'best', 'live'"),
        ({"order_parameter": "angle"}, "invalid order_parameter='angle'"),
        ({"n_bootstrap": -1}, "invalid n_bootstrap=-1"),
        ({"confidence": 1.5}, "invalid confidence=1.5"),
        ({"group_by": "model"}, "invalid group_by='model'"),
        ({"group_by": ("model", "width_of_grid")}, "missing required columns: width_of_grid"),
    ],
)
def test_fit_invalid_arguments(one_group, arguments, expected):
    with pytest.raises(ValueError) as error:
        fit_transition(one_group, **arguments)

    assert expected in str(error.value)
    assert "\n" not in str(error.value)
