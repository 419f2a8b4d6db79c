"""Tests of the reproduction report and the finding metrics behind it, on synthetic results."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from analysis_synthetic import synthetic_results, write_results_dir

from analysis.findings import (
    all_or_none,
    feature_fates,
    interference_free_grouping,
    loss_change,
    staircase,
    status_fractions,
)
from analysis.report import markdown_table, write_report

ROOT = Path(__file__).resolve().parent.parent


def staircase_curves(checkpoints=40):
    """Curves of a model that aligns its readout by step 100, then separates by step 300."""
    steps = 10.0 * np.arange(1, checkpoints + 1)
    task = 0.5 / (1 + np.exp((steps - 100) / 10))
    bump = 0.2 / (1 + np.exp(-(steps - 80) / 10))
    interference = bump / (1 + np.exp((steps - 300) / 10)) + 0.01
    return steps, task, interference


def with_loss_terms(frame: pd.DataFrame) -> pd.DataFrame:
    """Add the loss-term curve columns that tsjax writes, with one staircase per row."""
    steps, task, interference = staircase_curves()
    frame = frame.copy()
    count = len(frame)
    frame["loss_curve_step"] = [steps.astype(np.int32)] * count
    frame["loss_curve"] = [(task + interference).astype(np.float32)] * count
    frame["task_reward_curve"] = [task.astype(np.float32)] * count
    frame["mean_correction_curve"] = [np.zeros_like(task, dtype=np.float32)] * count
    frame["projection_interference_curve"] = [(0.75 * interference).astype(np.float32)] * count
    frame["compositional_interference_curve"] = [(0.25 * interference).astype(np.float32)] * count
    frame["expected_loss_curve"] = [(task + interference).astype(np.float32)] * count
    frame["expected_loss_sparse_relu_curve"] = [(task + interference).astype(np.float32)] * count
    return frame


def recall_row(recall_diagonal, intermediate_diagonal, k=2):
    """A results row with n_features = len(recall_diagonal), given diagonals of a_k and a_s (s < k)."""
    n_features = len(recall_diagonal)
    seq_len = k + 2
    projections = np.zeros((seq_len, n_features, n_features))
    for s in range(k):
        projections[s] = np.diag(intermediate_diagonal)
    projections[k] = np.diag(recall_diagonal) - 0.1 * (1 - np.eye(n_features))
    directions = np.ones((seq_len, 3, n_features))
    return pd.Series({
        "model": "nonlinear", "n_hidden": 3, "n_features": n_features, "seq_len": seq_len, "k": k,
        "sparsity": 0.99, "seed": 0, "status": "ok", "final_loss": 0.1,
        "projections": projections.ravel(), "feature_directions": directions.ravel(),
        "recall_diagonal_positive_fraction": 1.0, "recall_offdiagonal_nonpositive_fraction": 1.0,
    })


def test_markdown_table_formats_numbers():
    table = pd.DataFrame({"model": ["ssm"], "S_c": [0.412345], "ok": [True], "missing": [np.nan]})

    text = markdown_table(table)

    assert text.splitlines()[0] == "| model | S_c | ok | missing |"
    assert "| ssm | 0.412 | yes | – |" in text


def test_loss_change_last_quarter():
    assert loss_change([4.0, 3.0, 2.0, 1.0, 1.02, 0.98, 1.0, 1.0]) == pytest.approx(0.0)
    assert loss_change([4.0, 3.0, 4.0, 2.0]) == pytest.approx(0.5)
    assert loss_change([2.0, 1.0]) == pytest.approx(0.5)
    assert np.isnan(loss_change([1.0]))
    assert np.isnan(loss_change([1.0, np.inf]))


def test_status_fractions_counts_dead():
    frame = pd.DataFrame({"model": ["ssm"] * 4 + ["linear"], "status": ["ok", "dead", "dead", "diverged", "ok"]})

    table = status_fractions(frame).set_index("model")

    assert table.loc["ssm", "dead"] == 2
    assert table.loc["ssm", "dead_fraction"] == 0.5
    assert table.loc["ssm", "diverged_fraction"] == 0.25
    assert table.loc["linear", "dead_fraction"] == 0.0


def test_status_fractions_counts_stuck():
    # The always-zero output loses (T - k) p ν = 10 * 0.1 * 1/3 per sequence here.
    frame = pd.DataFrame({"model": ["ssm"] * 3, "status": ["ok", "ok", "dead"],
                          "eval_loss": [0.32, 0.05, 0.33], "seq_len": 12, "k": 2, "sparsity": 0.9,
                          "magnitude_low": 0.0, "magnitude_high": 1.0, "importance_decay": 1.0,
                          "n_features": 1})

    table = status_fractions(frame)

    assert table.loc[0, "stuck"] == 1
    assert table.loc[0, "stuck_fraction"] == pytest.approx(1 / 3)
    assert table.loc[0, "dead"] == 1


def test_feature_fates_thresholds():
    row = recall_row([1.0, 0.3, 0.0, 0.8], [-0.5, -0.2, 0.0, 0.4])

    fates = feature_fates(row)

    assert fates["fate"].tolist() == ["kept", "partial", "absent", "kept"]
    assert fates["intermediate_free"].tolist() == [1.0, 1.0, 0.0, 0.0]


def test_all_or_none_summary():
    frame = pd.DataFrame([recall_row([1.0, 0.3, 0.0, 0.8], [-0.5, -0.2, 0.0, 0.4])])

    table = all_or_none(frame)

    assert table.loc[0, "kept"] == 2
    assert table.loc[0, "partial"] == 1
    assert table.loc[0, "absent"] == 1
    assert table.loc[0, "all_or_none"] == 0.75
    assert table.loc[0, "kept_intermediate_free"] == 0.5
    assert table.loc[0, "offdiagonal_small"] == 1.0


def test_grouping_splits_by_importance():
    # The first 4 of 8 features are recalled with intermediate projections below 0.
    row = recall_row([1.0] * 4 + [0.0] * 4, [-0.5] * 4 + [0.2] * 4)

    table = interference_free_grouping(pd.DataFrame([row]))

    assert table.loc[0, "free_fraction"] == 0.5
    assert table.loc[0, "free_top_quarter"] == 1.0
    assert table.loc[0, "free_bottom_quarter"] == 0.0
    assert table.loc[0, "kept_top_quarter"] == 1.0
    assert table.loc[0, "kept_bottom_quarter"] == 0.0


def test_staircase_alignment_then_separation():
    frame = with_loss_terms(synthetic_results(models=("ssm",), ks=(2,), sparsities=[0.9], seeds=(0,)))
    frame["sigma_y"] = "relu"

    table = staircase(frame)

    assert len(table) == 1
    assert 90 <= table.loc[0, "alignment_step"] <= 110
    assert 290 <= table.loc[0, "separation_step"] <= 310
    assert table.loc[0, "alignment_then_separation"]


def test_staircase_skips_rows_without_terms():
    frame = synthetic_results(models=("ssm",), ks=(2,), sparsities=[0.9], seeds=(0,))

    assert staircase(frame).empty


def test_report_plane_sweep(tmp_path):
    frame = with_loss_terms(synthetic_results(models=("ssm", "nonlinear"), ks=(1, 2), seeds=range(3)))
    frame.loc[frame.index[::7], "status"] = "dead"
    results_dir = write_results_dir(frame, tmp_path / "plane")

    report = write_report(results_dir, n_bootstrap=5)

    analysis_dir = results_dir / "_analysis"
    text = (analysis_dir / "report.md").read_text()
    for heading in ("Dead and diverged models", "Convergence", "Feature directions", "Dense-to-sparse transition",
                    "Phase diagram", "Loss staircase"):
        assert f"## {heading}" in text
    assert "Many features" not in text
    assert "not drawn" not in text
    for name in ("fans", "loss_curves", "transition_k_theta_deg", "transition_spectral_radius",
                 "phase_diagram_k_theta_deg", "staircase"):
        assert f"]({name}.png)" in text
        assert (analysis_dir / f"{name}.png").stat().st_size > 0
    assert report.tables["fit_k_theta_deg"]["converged"].all()
    assert report.tables["status"].set_index("model")["dead"].sum() == (frame["status"] == "dead").sum()


def test_report_many_features(tmp_path):
    frame = synthetic_results(models=("nonlinear",), ks=(1, 2), sparsities=[0.9, 0.99], seeds=(0, 1), n_features=3)
    results_dir = write_results_dir(frame, tmp_path / "features")

    write_report(results_dir, n_bootstrap=5)

    analysis_dir = results_dir / "_analysis"
    text = (analysis_dir / "report.md").read_text()
    assert "## Many features" in text
    assert "## Feature directions" not in text
    assert "## Dense-to-sparse transition" not in text
    assert "## Loss staircase" not in text
    for name in ("recall_heatmaps_nonlinear", "recall_histogram", "intermediate_projections_nonlinear"):
        assert (analysis_dir / f"{name}.png").stat().st_size > 0
    assert len(pd.read_csv(analysis_dir / "all_or_none.csv")) == 4


def test_report_empty_dir_raises(tmp_path):
    results_dir = write_results_dir(synthetic_results().iloc[:0], tmp_path / "empty", n_parts=1)

    with pytest.raises(ValueError, match="no committed results"):
        write_report(results_dir)


def test_cli_report_missing_dir(tmp_path):
    result = subprocess.run([sys.executable, "-m", "tsjax.cli", "report", str(tmp_path / "absent")],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)

    assert result.returncode == 2
    assert "not found" in result.stderr


def test_report_imports_no_jax():
    code = "import sys, analysis.report; print(sorted(m for m in sys.modules if m.split('.')[0] == 'jax'))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
