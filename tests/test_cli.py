import importlib.metadata
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from analysis_synthetic import synthetic_results, write_results_dir
from config_text import VALID_CONFIG, toml_text

from tsjax.cli import main

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*arguments, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "tsjax.cli", *arguments], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def test_cli_smoke_sweep_and_fit(tmp_path):
    out = tmp_path / "smoke"

    sweep = run_cli("sweep", str(ROOT / "sweeps" / "smoke.toml"), "--out", str(out),
                    "--no-progress")
    assert sweep.returncode == 0, sweep.stderr
    assert "trained 48 models" in sweep.stdout
    assert str(out) in sweep.stdout

    frame = pd.read_parquet(out)
    assert len(frame) == 48
    assert frame.point_id.is_unique

    fit = run_cli("fit", str(out))
    assert fit.returncode == 0, fit.stderr
    assert "k_theta_deg" in fit.stdout
    assert "S_c" in fit.stdout
    assert list((out / "_analysis").glob("*.png"))
    assert list((out / "_analysis").glob("*.csv"))
    assert len(pd.read_parquet(out)) == 48


def test_cli_rerun_trains_nothing(tmp_path):
    out = tmp_path / "smoke"
    first = run_cli("sweep", str(ROOT / "sweeps" / "smoke.toml"), "--out", str(out),
                    "--no-progress")
    assert first.returncode == 0, first.stderr

    second = run_cli("sweep", str(ROOT / "sweeps" / "smoke.toml"), "--out", str(out),
                     "--no-progress")

    assert second.returncode == 0, second.stderr
    assert "trained 0 models" in second.stdout
    assert len(pd.read_parquet(out)) == 48


def test_cli_bad_config_is_one_line_error(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('name = "bad"\n[grid]\nsparsty = 0.5\n')

    result = run_cli("sweep", str(config), "--out", str(tmp_path / "out"))

    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "sparsty" in result.stderr
    assert "sparsity" in result.stderr
    assert not (tmp_path / "out").exists()


def test_cli_missing_config(tmp_path):
    result = run_cli("sweep", str(tmp_path / "absent.toml"))

    assert result.returncode == 2
    assert "not found" in result.stderr


def test_cli_fit_missing_dir(tmp_path):
    result = run_cli("fit", str(tmp_path / "absent"))

    assert result.returncode == 2
    assert "not found" in result.stderr


def one_line_error(capsys) -> str:
    error = capsys.readouterr().err
    assert error.startswith("tsjax: error: "), error
    assert len(error.strip().splitlines()) == 1, error
    return error


def flat_results_dir(directory, sparsities=None):
    """Write synthetic results whose order parameters are constant, so no fit converges."""
    options = {} if sparsities is None else {"sparsities": sparsities}
    frame = synthetic_results(models=("linear",), ks=(1,), seeds=range(2), **options)
    frame["k_theta_deg"] = 90.0
    frame["spectral_radius"] = 0.5
    return write_results_dir(frame, directory)


def test_cli_version(capsys):
    with pytest.raises(SystemExit) as raised:
        main(["--version"])

    assert raised.value.code == 0
    assert capsys.readouterr().out.strip() == f"tsjax {importlib.metadata.version('tsjax')}"


def test_cli_empty_out_rejected(tmp_path, monkeypatch, capsys):
    config = tmp_path / "valid.toml"
    config.write_text(toml_text(VALID_CONFIG))
    monkeypatch.chdir(tmp_path)

    code = main(["sweep", str(config), "--out", ""])

    assert code == 2
    assert "option '--out' is empty" in one_line_error(capsys)
    assert [path.name for path in tmp_path.iterdir()] == ["valid.toml"]


def test_cli_info_prints_axis_values(tmp_path, capsys):
    document = {**VALID_CONFIG, "expected_cpu_minutes": 2}
    document["grid"] = {**VALID_CONFIG["grid"], "sparsity": {"linspace": [0.0, 0.9, 30]}}
    config = tmp_path / "valid.toml"
    config.write_text(toml_text(document))

    assert main(["info", str(config)]) == 0

    output = capsys.readouterr().out
    assert "sweep valid: 180 models in 1 static groups" in output
    assert "expected CPU time: 2 minutes" in output
    assert '  model = "nonlinear"' in output
    assert "  k = [1, 2]" in output
    assert "  seed = [0, 1, 2]" in output
    assert "  readout_bias = false" in output
    assert "  sparsity = [0.0, 0.03103448275862069," in output
    assert "..., 0.8689655172413793, 0.9]  (30 values)" in output


def test_cli_info_into_closed_pipe_is_quiet(tmp_path):
    config = tmp_path / "valid.toml"
    config.write_text(toml_text(VALID_CONFIG))
    process = subprocess.Popen([sys.executable, "-m", "tsjax.cli", "info", str(config)], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # Closing the read end before tsjax prints (it imports JAX first) makes its first
    # write fail with EPIPE, as when `head` exits early.
    process.stdout.close()
    stderr = process.stderr.read().decode()
    process.wait(timeout=600)

    assert process.returncode == 128 + signal.SIGPIPE
    assert stderr == ""


def test_cli_fit_no_fit_converged(tmp_path, capsys):
    results_dir = flat_results_dir(tmp_path / "flat", sparsities=[0.2, 0.5, 0.8])

    code = main(["fit", str(results_dir)])

    captured = capsys.readouterr()
    assert code == 1
    assert captured.err.startswith("tsjax: warning: no fit converged for any order parameter")
    assert len(captured.err.strip().splitlines()) == 1
    assert "needs at least 5 distinct sparsities" in captured.out
    assert (results_dir / "_analysis" / "fit_k_theta_deg.csv").is_file()
    assert (results_dir / "_analysis" / "fit_spectral_radius.csv").is_file()


def test_cli_fit_skips_missing_order_parameter(tmp_path, capsys):
    frame = synthetic_results(models=("linear",), ks=(1,), seeds=range(2))
    results_dir = write_results_dir(frame.drop(columns=["spectral_radius"]), tmp_path / "no_radius")

    code = main(["fit", str(results_dir)])

    captured = capsys.readouterr()
    assert code == 0
    assert captured.err == ("tsjax: warning: results have no column 'spectral_radius', so "
                            "spectral_radius is not fitted\n")
    assert "k_theta_deg" in captured.out
    assert not list((results_dir / "_analysis").glob("*spectral_radius*"))


def test_cli_fit_without_order_parameters_writes_nothing(tmp_path, capsys):
    frame = synthetic_results(models=("linear",), ks=(1,), seeds=range(2))
    frame = frame.drop(columns=["k_theta_deg", "spectral_radius"])
    results_dir = write_results_dir(frame, tmp_path / "none")

    code = main(["fit", str(results_dir)])

    error = one_line_error(capsys)
    assert code == 2
    assert "no column 'k_theta_deg' or 'spectral_radius' to fit" in error
    assert not (results_dir / "_analysis").exists()


def test_cli_fit_rejects_file_path(tmp_path, capsys):
    path = tmp_path / "afile.txt"
    path.write_text("not results")

    code = main(["fit", str(path)])

    error = one_line_error(capsys)
    assert code == 2
    assert f"results path '{path}' is not a directory" in error


def test_cli_fit_analysis_path_is_file(tmp_path, capsys):
    results_dir = flat_results_dir(tmp_path / "flat")
    (results_dir / "_analysis").write_text("mine")

    code = main(["fit", str(results_dir)])

    error = one_line_error(capsys)
    assert code == 2
    assert f"{results_dir / '_analysis'} is a file" in error
    assert (results_dir / "_analysis").read_text() == "mine"


def test_cli_fit_write_error_names_path(tmp_path, capsys):
    results_dir = flat_results_dir(tmp_path / "flat")
    blocked = results_dir / "_analysis" / "fit_k_theta_deg.csv"
    blocked.mkdir(parents=True)

    code = main(["fit", str(results_dir)])

    error = one_line_error(capsys)
    assert code == 2
    assert f"{blocked}: Is a directory" in error
    assert [path.name for path in (results_dir / "_analysis").iterdir()] == ["fit_k_theta_deg.csv"]


def test_cli_fit_chunk_record_directory(tmp_path, capsys):
    results_dir = flat_results_dir(tmp_path / "flat")
    (results_dir / "_chunks" / "b.json").mkdir()

    code = main(["fit", str(results_dir)])

    error = one_line_error(capsys)
    assert code == 2
    assert f"chunk record {results_dir / '_chunks' / 'b.json'} is not a file" in error


def test_cli_fit_non_utf8_manifest(tmp_path, capsys):
    results_dir = flat_results_dir(tmp_path / "flat")
    (results_dir / "_manifest.json").write_bytes(b'{"schema_version": 1, "sweep": "\xff"}')

    code = main(["fit", str(results_dir)])

    error = one_line_error(capsys)
    assert code == 2
    assert f"{results_dir / '_manifest.json'} is not UTF-8 text" in error


def test_cli_report_no_fit_converged(tmp_path, capsys):
    results_dir = flat_results_dir(tmp_path / "flat")

    code = main(["report", str(results_dir)])

    captured = capsys.readouterr()
    assert code == 1
    assert captured.err.startswith("tsjax: warning: no transition fit converged")
    assert len(captured.err.strip().splitlines()) == 1
    assert (results_dir / "_analysis" / "report.md").is_file()


def test_cli_report_rejects_file_path(tmp_path, capsys):
    path = tmp_path / "afile.txt"
    path.write_text("not results")

    code = main(["report", str(path)])

    assert code == 2
    assert "is not a directory" in one_line_error(capsys)
