"""Tests of the loss-term and geometry result columns and of the `expected` trainer config."""

import numpy as np
import pytest

from tsjax.config import ConfigError, parse_config
from tsjax.grid import expand_grid
from tsjax.results import SCHEMA
from tsjax.sweep import train_padded
from tsjax.theory_columns import (
    LOSS_COLUMNS,
    forgetting_ratio,
    forgetting_residual,
    interference_free_fraction,
    recall_sign_pattern,
)

TINY_GRID = """
name = "tiny"
[grid]
model = "{model}"
readout_bias = {bias}
n_features = {n_features}
n_hidden = 2
seq_len = 5
k = [0, 2]
sparsity = 0.5
steps = 8
batch_size = 8
checkpoints = 4
eval_samples = 16
"""


def table_of(model="linear", bias="false", n_features=1):
    config = parse_config(TINY_GRID.format(model=model, bias=bias, n_features=n_features))
    (group,) = expand_grid(config)
    return train_padded("tiny", group, len(group)).to_pandas()


def test_schema_has_theory_columns():
    names = SCHEMA.names
    for name in LOSS_COLUMNS:
        assert name in names
        assert f"{name}_curve" in names
    for name in ("interference_free_fraction", "forgetting_ratio", "forgetting_residual",
                 "recall_diagonal_positive_fraction",
                 "recall_offdiagonal_nonpositive_fraction"):
        assert name in names


def test_linear_rows_carry_terms_and_curves():
    rows = table_of()
    for _, row in rows.iterrows():
        assert len(row["expected_loss_curve"]) == len(row["loss_curve_step"])
        assert row["expected_loss"] == pytest.approx(float(row["expected_loss_curve"][-1]))
        total = sum(row[name] for name in LOSS_COLUMNS[:4])
        assert row["expected_loss"] == pytest.approx(total, rel=1e-5, abs=1e-6)
        assert row["expected_loss_sparse_relu"] is None or np.isnan(
            row["expected_loss_sparse_relu"])
        assert row["expected_loss_sparse_relu_curve"] is None
    # k = 0 has no intermediate features, k = 2 has two.
    assert np.isnan(rows.loc[rows.k == 0, "interference_free_fraction"]).all()
    assert rows.loc[rows.k == 2, "interference_free_fraction"].notna().all()


def test_ssm_rows_carry_sparse_relu_term():
    rows = table_of(model="ssm")
    assert rows["expected_loss_sparse_relu"].notna().all()
    for curve in rows["expected_loss_sparse_relu_curve"]:
        assert len(curve) == 4


def test_readout_bias_rows_have_null_terms():
    rows = table_of(bias="true")
    for name in LOSS_COLUMNS:
        assert rows[name].isna().all(), name
        assert rows[f"{name}_curve"].isna().all(), name
    assert rows["forgetting_ratio"].notna().all()


def test_spectral_columns_match_stored_w_h():
    rows = table_of(n_features=3)
    for _, row in rows.iterrows():
        eigenvalues = np.linalg.eigvals(np.asarray(row["W_h"], np.float64).reshape(2, 2))
        leading = eigenvalues[np.argmax(np.abs(eigenvalues))]
        assert row["spectral_radius"] == pytest.approx(abs(leading), rel=1e-5)
        assert row["eigenvalue_angle_deg"] == pytest.approx(
            abs(np.degrees(np.angle(leading))), abs=1e-3)
        assert row["recall_offdiagonal_nonpositive_fraction"] is not None


def test_interference_free_fraction_counts_negative_diagonals():
    projections = np.zeros((2, 4, 2, 2))
    projections[0, :, 0, 0] = [-1.0, 2.0, -3.0, 1.0]
    projections[0, :, 1, 1] = [-1.0, -2.0, 3.0, 1.0]
    projections[0, :, 0, 1] = -5.0                  # off-diagonal: not counted
    k = np.array([2, 0])
    fractions = interference_free_fraction(projections, k)
    assert fractions[0] == pytest.approx(3 / 4)     # s = 0, 1 and i = 0, 1
    assert fractions[1] is None


def test_forgetting_measures():
    projections = np.zeros((3, 5, 1, 1))
    projections[0, :, 0, 0] = [0.3, 2.0, 1.0, 0.5, 0.0]     # k = 1: ratio 1/2
    projections[1, :, 0, 0] = [0.3, 2.0, 0.0, 0.0, 0.0]     # sharp forgetting
    projections[2, :, 0, 0] = [0.3, 0.0, 1.0, 0.0, 0.0]     # a_k = 0
    k = np.array([1, 1, 1])
    ratios = forgetting_ratio(projections, k)
    residuals = forgetting_residual(projections, k)
    assert ratios[0] == pytest.approx(0.5)
    assert residuals[0] == pytest.approx(np.sqrt(1.25) / 2)
    assert ratios[1] == 0.0
    assert residuals[1] == 0.0
    assert ratios[2] is None
    assert residuals[2] is None
    assert forgetting_ratio(projections[:1], np.array([4]))[0] is None


def test_recall_sign_pattern():
    recall = np.array([[1.0, -0.2, 0.0],
                       [0.3, 2.0, -0.1],
                       [-0.4, -0.5, -1.0]])
    projections = np.zeros((1, 3, 3, 3))
    projections[0, 1] = recall
    diagonal_positive, offdiagonal_nonpositive = recall_sign_pattern(projections, np.array([1]))
    assert diagonal_positive[0] == pytest.approx(2 / 3)
    assert offdiagonal_nonpositive[0] == pytest.approx(5 / 6)
    single = recall_sign_pattern(np.ones((1, 2, 1, 1)), np.array([0]))
    assert single == ([1.0], [None])


EXPECTED_CONFIG = """
name = "expected"
[grid]
model = {model}
trainer = "expected"
{extra}
"""


@pytest.mark.parametrize("model, extra", [
    ('"nonlinear"', ""),
    ('["linear", "nonlinear"]', ""),
    ('"custom"', 'sigma_h = "relu"\nsigma_y = "identity"'),
    ('"linear"', "readout_bias = [false, true]"),
])
def test_expected_trainer_rejects_impossible_models(model, extra):
    with pytest.raises(ConfigError, match=r"field 'grid.trainer' = 'expected' is invalid"):
        parse_config(EXPECTED_CONFIG.format(model=model, extra=extra))


@pytest.mark.parametrize("model, extra", [
    ('["linear", "ssm"]', ""),
    ('"custom"', 'sigma_h = "identity"\nsigma_y = ["identity", "relu"]'),
])
def test_expected_trainer_accepts_identity_recurrence(model, extra):
    config = parse_config(EXPECTED_CONFIG.format(model=model, extra=extra))
    assert config.axes["trainer"] == ("expected",)


def test_config_error_is_one_line():
    with pytest.raises(ConfigError) as error:
        parse_config(EXPECTED_CONFIG.format(model='"nonlinear"', extra=""))
    assert "\n" not in str(error.value)
    assert "sampled" in str(error.value)
