"""Test that the analysis package works in a Python where JAX cannot be imported."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
TESTS_DIR = Path(__file__).resolve().parent

# Loaded by site at start-up from PYTHONPATH, before any test code runs.
BLOCK_JAX = """
import importlib.abc
import sys


class BlockJax(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("jax", "jaxlib"):
            raise ImportError(f"{name} is blocked for this test")
        return None


sys.meta_path.insert(0, BlockJax())
"""

SCRIPT = """
import sys
from pathlib import Path

import analysis
from analysis_synthetic import synthetic_results, write_results_dir

results_dir = write_results_dir(
    synthetic_results(models=("linear",), ks=(1,), seeds=range(2)), Path(sys.argv[1])
)
results = analysis.load_results(results_dir)
table = analysis.fit_transition(results, n_bootstrap=5)
assert table["converged"].all(), table["message"].tolist()
analysis.plot_feature_directions(results.iloc[0], results_dir / "fan.png")
report = analysis.write_fit(results_dir, order_parameters=("k_theta_deg",), n_bootstrap=5)

loaded = sorted(name for name in sys.modules if name.split(".")[0] in ("jax", "jaxlib"))
print("loaded:", loaded)

if "--check-blocked" in sys.argv:
    try:
        import jax
    except ImportError:
        print("jax blocked")
"""


def _run_script(tmp_path, python_path, *arguments):
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT), str(tmp_path / "sweep"), *arguments],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(python_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_analysis_runs_without_jax(tmp_path):
    hook_dir = tmp_path / "hook"
    hook_dir.mkdir()
    (hook_dir / "sitecustomize.py").write_text(textwrap.dedent(BLOCK_JAX))

    python_path = [str(hook_dir), str(REPOSITORY_ROOT), str(TESTS_DIR)]
    completed = _run_script(tmp_path, python_path, "--check-blocked")

    assert completed.returncode == 0, completed.stderr
    assert "jax blocked" in completed.stdout
    assert "loaded: []" in completed.stdout
    assert (tmp_path / "sweep" / "fan.png").stat().st_size > 0
    assert (tmp_path / "sweep" / "_analysis" / "order_parameter_k_theta_deg.png").stat().st_size > 0
    assert (tmp_path / "sweep" / "_analysis" / "fit_k_theta_deg.csv").is_file()


def test_analysis_leaves_installed_jax_unloaded(tmp_path):
    # With JAX importable, a library that imports it only when present would show up here.
    completed = _run_script(tmp_path, [str(REPOSITORY_ROOT), str(TESTS_DIR)])

    assert completed.returncode == 0, completed.stderr
    assert "loaded: []" in completed.stdout
