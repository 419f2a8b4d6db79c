import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from tsjax.config import parse_config
from tsjax.results import SCHEMA
from tsjax.sweep import run_sweep

REQUIRED_COLUMNS = ["sweep", "model", "n_features", "n_hidden", "seq_len", "k", "sparsity",
                    "seed", "learning_rate", "steps", "batch_size", "final_loss",
                    "k_theta_deg", "spectral_radius", "status"]

CONFIG = """
name = "roundtrip"
[grid]
model = "ssm"
n_hidden = {n_hidden}
n_features = {n_features}
seq_len = 5
k = [1, 3]
sparsity = [0.5, 0.9]
seed = [0, 1]
steps = 8
batch_size = 4
checkpoints = 4
eval_samples = 8
"""


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("results") / "roundtrip"
    run_sweep(parse_config(CONFIG.format(n_hidden=2, n_features=1)), out, progress=False)
    return out


def test_parquet_has_required_columns(dataset):
    frame = pd.read_parquet(dataset)

    for column in REQUIRED_COLUMNS:
        assert column in frame.columns, column
    assert len(frame) == 8
    assert sorted(frame.point_id) == list(range(8))
    assert set(frame.status) <= {"ok", "dead", "diverged"}


def test_parquet_roundtrip_keeps_schema(dataset):
    for part in dataset.glob("part-*.parquet"):
        assert pq.read_schema(part).remove_metadata().equals(SCHEMA.remove_metadata())

    frame = pd.read_parquet(dataset)
    assert frame["k"].dtype == np.int32
    assert frame["seed"].dtype == np.int64
    assert frame["sparsity"].dtype == np.float64
    assert frame["final_loss"].dtype == np.float64


def test_arrays_reshape_to_documented_shapes(dataset):
    row = pd.read_parquet(dataset).iloc[0]

    assert len(row.W_x) == 2 * 1
    assert len(row.W_h) == 2 * 2
    assert len(row.feature_directions) == 5 * 2 * 1
    assert len(row.projections) == 5 * 1 * 1
    assert len(row.loss_curve) == len(row.loss_curve_step) == 4
    assert list(row.loss_curve_step) == [2, 4, 6, 8]

    W_h = np.asarray(row.W_h).reshape(2, 2)
    assert row.spectral_radius == pytest.approx(np.max(np.abs(np.linalg.eigvals(W_h))), rel=1e-5)


def test_k_theta_matches_numpy_angles(dataset):
    for _, row in pd.read_parquet(dataset).iterrows():
        w = np.asarray(row.feature_directions).reshape(5, 2)
        total = 0.0
        for s in range(row.k):
            a, b = w[s], w[s + 1]
            total += np.degrees(np.arctan2(a[0] * b[1] - a[1] * b[0], a @ b))

        assert row.k_theta_deg == pytest.approx(abs(total), abs=1e-3)


def test_k_theta_null_unless_two_hidden(tmp_path):
    out = tmp_path / "wide"
    run_sweep(parse_config(CONFIG.format(n_hidden=3, n_features=2)), out, progress=False)
    frame = pd.read_parquet(out)

    assert frame.k_theta_deg.isna().all()
    assert frame.spectral_radius.notna().all()
