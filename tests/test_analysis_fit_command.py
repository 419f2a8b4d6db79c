"""Tests of write_fit, the work behind ``tsjax fit``."""

import json

import numpy as np
import pandas as pd
import pytest
from analysis_synthetic import synthetic_results, true_critical_sparsity, write_results_dir

from analysis import load_results, write_fit


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory):
    results = synthetic_results(ks=(1, 2), seeds=range(3))
    return write_results_dir(results, tmp_path_factory.mktemp("sweep"), n_parts=2)


@pytest.fixture(scope="module")
def report(results_dir):
    return write_fit(results_dir, n_bootstrap=20)


def test_write_fit_writes_tables_and_plots(results_dir, report):
    analysis_dir = results_dir / "_analysis"

    expected = {
        "fit_k_theta_deg.csv",
        "fit_spectral_radius.csv",
        "order_parameter_k_theta_deg.png",
        "order_parameter_spectral_radius.png",
        "phase_diagram_k_theta_deg.png",
        "phase_diagram_spectral_radius.png",
        "loss_curves.png",
    }
    assert {path.name for path in analysis_dir.iterdir()} == expected
    assert {path.name for path in report.paths} == expected
    assert set(report.tables) == {"k_theta_deg", "spectral_radius"}
    for path in report.paths:
        assert path.stat().st_size > 0


def test_write_fit_csv_matches_table(results_dir, report):
    table = report.tables["k_theta_deg"]

    written = pd.read_csv(results_dir / "_analysis" / "fit_k_theta_deg.csv")

    assert "bootstrap_params" not in written.columns
    assert written["critical_sparsity"].tolist() == pytest.approx(table["critical_sparsity"].tolist())
    assert written["converged"].all()
    for _, fit in written.iterrows():
        assert abs(fit["critical_sparsity"] - true_critical_sparsity(fit["model"], fit["k"])) < 0.02


def test_write_fit_text_table(report):
    sections = report.text.split("\n\n")

    assert len(sections) == 2
    assert sections[0].startswith("k_theta_deg (seeds=best, 95% CI, 20 bootstrap resamples)")
    assert sections[1].startswith("spectral_radius (seeds=best, 95% CI, 20 bootstrap resamples)")
    assert sections[0].count("converged") == 4
    assert "nonlinear" in sections[0]
    assert str(report) == report.text


def test_write_fit_outputs_do_not_change_results(results_dir, report):
    # The report fixture has already written _analysis/, which loading must skip.
    assert (results_dir / "_analysis").is_dir()
    assert len(load_results(results_dir)) == 12 * 19


def test_write_fit_single_order_parameter_name(tmp_path):
    results = synthetic_results(models=("linear",), ks=(1,), seeds=range(2))
    write_results_dir(results, tmp_path)

    report = write_fit(tmp_path, order_parameters="spectral_radius", n_bootstrap=5)

    assert set(report.tables) == {"spectral_radius"}
    assert (tmp_path / "_analysis" / "fit_spectral_radius.csv").is_file()
    assert not (tmp_path / "_analysis" / "fit_k_theta_deg.csv").exists()


def test_write_fit_rejects_empty_directory(tmp_path):
    (tmp_path / "_manifest.json").write_text(json.dumps({"schema_version": 1, "sweep": "empty"}))

    with pytest.raises(ValueError, match="contains no committed results yet"):
        write_fit(tmp_path)


def test_write_fit_rejects_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="results path not found"):
        write_fit(tmp_path / "missing")


def test_write_fit_marks_unresolved_width(tmp_path):
    results = synthetic_results(models=("linear",), ks=(1,), seeds=range(2))
    results["k_theta_deg"] = np.where(results["sparsity"] < 0.42, 90.0, 270.0)
    write_results_dir(results, tmp_path)

    report = write_fit(tmp_path, order_parameters="k_theta_deg", n_bootstrap=0)

    table = report.tables["k_theta_deg"]
    assert table["converged"].all()
    assert table["width_unresolved"].all()
    row = report.text.splitlines()[2]
    assert "* " in row, row
    assert row.endswith("converged"), row
    assert report.text.splitlines()[-1].startswith("* width unresolved")
    written = pd.read_csv(tmp_path / "_analysis" / "fit_k_theta_deg.csv")
    assert written["width_unresolved"].all()


def test_write_fit_skips_missing_order_parameter(tmp_path):
    results = synthetic_results(models=("linear",), ks=(1,), seeds=range(2))
    write_results_dir(results.drop(columns=["spectral_radius"]), tmp_path)

    report = write_fit(tmp_path, n_bootstrap=5)

    assert set(report.tables) == {"k_theta_deg"}
    assert report.skipped == {
        "spectral_radius": "results have no column 'spectral_radius', so spectral_radius is not fitted"
    }
    assert report.any_converged
    assert not list((tmp_path / "_analysis").glob("*spectral_radius*"))


def test_write_fit_without_order_parameters_writes_nothing(tmp_path):
    results = synthetic_results(models=("linear",), ks=(1,), seeds=range(2))
    write_results_dir(results.drop(columns=["spectral_radius"]), tmp_path)

    with pytest.raises(ValueError, match="no column 'spectral_radius' to fit"):
        write_fit(tmp_path, order_parameters="spectral_radius")
    assert not (tmp_path / "_analysis").exists()


def test_write_fit_failed_fits_still_written(tmp_path):
    results = synthetic_results(models=("linear",), ks=(1,), sparsities=[0.2, 0.5, 0.8], seeds=range(2))
    write_results_dir(results, tmp_path)

    report = write_fit(tmp_path, n_bootstrap=5)

    assert not report.any_converged
    assert (tmp_path / "_analysis" / "fit_k_theta_deg.csv").is_file()
    assert "failed: needs at least 5 distinct sparsities" in report.text
