"""Kill and interrupt `tsjax sweep` subprocesses, then resume them.

A killed sweep must leave a directory that `pandas.read_parquet` reads, holding only
complete chunks, and the same command must then finish the grid with exactly one row per
point, equal bit for bit to an uninterrupted run.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from config_text import toml_text, valid_config
from frames import differing_columns, sorted_rows

TESTS = Path(__file__).resolve().parent
# 24 models in chunks of 2: 12 chunks, enough to stop a sweep between two of them.
CONFIG = valid_config(seed=list(range(6)))
GRID_SIZE = 24
CHUNK_SIZE = "2"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A config file, a compilation cache shared by the subprocesses, and a reference
    dataset from one uninterrupted run."""
    root = tmp_path_factory.mktemp("crash")
    config = root / "crash.toml"
    config.write_text(toml_text({**CONFIG, "name": "crash"}))
    environment = {**os.environ, "JAX_PLATFORMS": "cpu",
                   "JAX_COMPILATION_CACHE_DIR": str(root / "jax-cache"),
                   "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
                   "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    reference = root / "reference"
    finished = run_to_end(sweep_command(config, reference), environment)
    assert finished.returncode == 0, finished.stderr
    return {"root": root, "config": config, "environment": environment,
            "reference": sorted_rows(pd.read_parquet(reference))}


def sweep_command(config, out):
    return ["sweep", str(config), "--out", str(out), "--chunk-size", CHUNK_SIZE,
            "--no-progress"]


def run_to_end(arguments, environment, fault=None):
    prefix = ([sys.executable, str(TESTS / "sweep_with_faults.py"), *fault] if fault
              else [sys.executable, "-m", "tsjax.cli"])
    return subprocess.run([*prefix, *arguments], env=environment, capture_output=True,
                          text=True, timeout=300)


def start(arguments, environment):
    return subprocess.Popen([sys.executable, "-m", "tsjax.cli", *arguments], env=environment,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def record_count(out: Path) -> int:
    chunks = out / "_chunks"
    return len(list(chunks.glob("part-*.json"))) if chunks.is_dir() else 0


def wait_for_records(process, out: Path, count: int, timeout=240.0) -> None:
    deadline = time.monotonic() + timeout
    while record_count(out) < count:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "sweep wrote no chunk record in time"
        time.sleep(0.005)


def check_readable(out: Path) -> pd.DataFrame:
    """Check what a killed sweep left: every visible part is complete and no point twice."""
    frame = pd.read_parquet(out) if out.is_dir() else pd.DataFrame()
    if len(frame):
        assert frame.point_id.is_unique
        assert frame.point_id.between(0, GRID_SIZE - 1).all()
    parts = sorted(out.glob("part-*.parquet")) if out.is_dir() else []
    assert sum(pq.read_metadata(part).num_rows for part in parts) == len(frame)
    return frame


def check_complete(out: Path, reference: pd.DataFrame) -> None:
    frame = sorted_rows(pd.read_parquet(out))
    records = [json.loads(path.read_text()) for path in (out / "_chunks").glob("*.json")]
    recorded_ids = sorted(i for record in records for i in record["point_ids"])
    leftovers = [path.name for path in [*out.iterdir(), *(out / "_chunks").iterdir()]
                 if path.name.startswith(".")]

    assert list(frame.point_id) == list(range(GRID_SIZE))
    assert recorded_ids == list(range(GRID_SIZE))
    assert leftovers == []
    assert differing_columns(frame, reference) == []


def test_sigkill_at_each_write_then_resume(workspace):
    out = workspace["root"] / "faults"
    arguments = sweep_command(workspace["config"], out)
    # (fault, N, rows readable afterwards). A kill before a record or during its write
    # leaves a complete orphan part, which pandas reads and the next run adopts.
    stages = [("kill-in-manifest-write", 0, 0), ("kill-in-part-write", 2, 2),
              ("kill-before-record", 2, 6), ("kill-in-record-write", 2, 8),
              ("kill-after-records", 2, 10)]

    for fault, n, rows in stages:
        killed = run_to_end(arguments, workspace["environment"], fault=(fault, str(n)))

        assert killed.returncode == -signal.SIGKILL, (fault, killed.stderr)
        assert len(check_readable(out)) == rows, fault

    finished = run_to_end(arguments, workspace["environment"])

    assert finished.returncode == 0, finished.stderr
    assert "trained 14 models" in finished.stdout
    check_complete(out, workspace["reference"])


def test_sigkill_and_sigint_then_resume(workspace):
    out = workspace["root"] / "signals"
    arguments = sweep_command(workspace["config"], out)

    killed = start(arguments, workspace["environment"])
    wait_for_records(killed, out, 1)
    killed.send_signal(signal.SIGKILL)
    killed.communicate(timeout=60)
    after_kill = len(check_readable(out))

    interrupted = start(arguments, workspace["environment"])
    wait_for_records(interrupted, out, record_count(out) + 1)
    interrupted.send_signal(signal.SIGINT)
    _, error = interrupted.communicate(timeout=120)
    saved = len(check_readable(out))

    assert killed.returncode == -signal.SIGKILL
    assert 2 <= after_kill < GRID_SIZE
    assert interrupted.returncode == 130, error
    assert "SIGINT received" in error
    assert f"interrupted: {saved} of {GRID_SIZE} models are saved in {out}" in error
    assert f"tsjax sweep {workspace['config']} --out {out} --chunk-size 2" in error
    assert after_kill < saved < GRID_SIZE
    assert [path.name for path in out.iterdir() if path.name.startswith(".")] == []

    finished = run_to_end(arguments, workspace["environment"])

    assert finished.returncode == 0, finished.stderr
    assert f"({saved} already done)" in finished.stdout
    check_complete(out, workspace["reference"])
