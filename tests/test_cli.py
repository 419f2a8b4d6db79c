import subprocess
import sys
from pathlib import Path

import pandas as pd

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
