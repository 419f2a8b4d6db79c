"""Tests of analysis.theory_plots on rows built with numpy, without JAX."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from analysis.theory_plots import (
    TERM_COLUMNS,
    loss_agreement,
    plot_loss_decomposition,
    plot_projections_by_age,
    plot_theory_summary,
)


def synthetic_row(n_hidden=2, n_features=1, seq_len=5, k=2, checkpoints=4):
    rng = np.random.default_rng(0)
    W_x = rng.normal(size=(n_hidden, n_features))
    W_h = 0.5 * rng.normal(size=(n_hidden, n_hidden))
    W_y = rng.normal(size=(n_hidden, n_features))
    directions = np.stack([np.linalg.matrix_power(W_h, s) @ W_x for s in range(seq_len)])
    projections = np.einsum("hi,shj->sij", W_y, directions)
    curves = {f"{name}_curve": rng.normal(size=checkpoints) for name in TERM_COLUMNS}
    curves["expected_loss_curve"] = sum(curves.values())
    return pd.Series({
        "model": "linear", "sigma_h": "identity", "sigma_y": "identity",
        "n_hidden": n_hidden, "n_features": n_features, "seq_len": seq_len, "k": k,
        "sparsity": 0.5, "W_x": W_x.ravel(), "W_h": W_h.ravel(), "W_y": W_y.ravel(),
        "feature_directions": directions.ravel(), "projections": projections.ravel(),
        "loss_curve": rng.random(checkpoints),
        "loss_curve_step": np.arange(1, checkpoints + 1) * 10,
        "eval_loss": 0.5, "eval_loss_stderr": 0.01, **curves,
    })


def test_loss_decomposition_draws_every_term(tmp_path):
    path = tmp_path / "terms.png"
    figure = plot_loss_decomposition(synthetic_row(), path)
    assert path.stat().st_size > 0
    labels = [line.get_label() for line in figure.axes[0].get_lines()]
    assert sum(label.startswith(("task", "mean", "projection", "compositional"))
               for label in labels) == 4


def test_loss_decomposition_rejects_row_without_curves():
    row = synthetic_row()
    row["task_reward_curve"] = None
    with pytest.raises(ValueError, match="task_reward_curve"):
        plot_loss_decomposition(row)


def test_theory_summary_panels(tmp_path):
    fan = plot_theory_summary(synthetic_row(n_hidden=2), tmp_path / "fan.png")
    heatmap = plot_theory_summary(synthetic_row(n_hidden=3, n_features=3), tmp_path / "heat.png")
    alone = plot_theory_summary(synthetic_row(n_hidden=3, n_features=1))
    assert isinstance(fan, Figure)
    assert (tmp_path / "fan.png").exists()
    assert (tmp_path / "heat.png").exists()
    assert len(alone.axes) == 1
    assert len(heatmap.axes) >= 2


def test_projections_by_age(tmp_path):
    row = synthetic_row(n_hidden=3, n_features=3)
    figure = plot_projections_by_age(row, tmp_path / "ages.png", ages=[0, 2, 4])
    assert len(figure.axes) == 4       # three panels and the colour bar
    with pytest.raises(ValueError, match="n_features > 1"):
        plot_projections_by_age(synthetic_row(n_features=1))
    with pytest.raises(ValueError, match="invalid ages"):
        plot_projections_by_age(row, ages=[7])


def test_loss_agreement_flags_float_floor():
    frame = pd.DataFrame({
        "expected_loss": [1.00, 1.00, 2e-14, 1.0],
        "eval_loss": [1.02, 1.10, 1e-14, 1.0],
        "eval_loss_stderr": [0.01, 0.01, 1e-16, 0.01],
        "magnitude_low": 0.0, "magnitude_high": 1.0, "importance_decay": [1.0, 1.0, 1.0, 0.5],
        "n_features": [1, 1, 1, 2], "seq_len": 10, "k": 1, "sparsity": 0.5,
    })
    result = loss_agreement(frame)
    assert result["agrees"].tolist() == [True, False, False, True]
    assert result["at_float_floor"].tolist() == [False, False, True, False]
    assert result["z"].iloc[0] == pytest.approx(-2.0)


def test_theory_plots_never_import_jax():
    code = "import sys, analysis, analysis.theory_plots; print('jax' in sys.modules)"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert output == "False"
