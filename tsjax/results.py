"""Result rows: the Parquet schema and the conversion of a trained chunk into rows.

Every column has an explicit pyarrow type, so a dataset reads back with the same
dtypes whatever values a chunk happened to hold. Arrays (weights, feature directions,
loss curve) are stored flattened in row-major order; their shapes follow from
`n_hidden`, `n_features`, `seq_len` and the length of `loss_curve_step`.
"""

import jax
import numpy as np
import pyarrow as pa

from tsjax.geometry import eigenvalues, k_theta_deg, model_status
from tsjax.grid import StaticGroup
from tsjax.theory_columns import theory_columns
from tsjax.training import TrainResult, segment_plan

SCHEMA_VERSION = 1

_float_list = pa.list_(pa.float32())

CONFIG_COLUMNS = [
    ("sweep", pa.string()),
    ("point_id", pa.int64()),
    ("model", pa.string()),
    ("sigma_h", pa.string()),
    ("sigma_y", pa.string()),
    ("n_features", pa.int32()),
    ("n_hidden", pa.int32()),
    ("seq_len", pa.int32()),
    ("batch_size", pa.int32()),
    ("steps", pa.int32()),
    ("optimizer", pa.string()),
    ("lr_schedule", pa.string()),
    ("readout_bias", pa.bool_()),
    ("trainer", pa.string()),
    ("checkpoints", pa.int32()),
    ("eval_samples", pa.int32()),
    ("k", pa.int32()),
    ("sparsity", pa.float64()),
    ("seed", pa.int64()),
    ("learning_rate", pa.float64()),
    ("magnitude_low", pa.float64()),
    ("magnitude_high", pa.float64()),
    ("importance_decay", pa.float64()),
    ("init_scale", pa.float64()),
    ("init_spectral_norm", pa.float64()),
]

OUTCOME_COLUMNS = [
    ("status", pa.string()),
    ("diverged_step", pa.int32()),
    ("final_loss", pa.float64()),
    ("eval_loss", pa.float64()),
    ("eval_loss_stderr", pa.float64()),
    ("k_theta_deg", pa.float64()),
    ("spectral_radius", pa.float64()),
    ("eigenvalue_angle_deg", pa.float64()),
    ("loss_curve", _float_list),
    ("loss_curve_step", pa.list_(pa.int32())),
    ("W_x", _float_list),
    ("W_h", _float_list),
    ("W_y", _float_list),
    ("b_y", _float_list),
    ("feature_directions", _float_list),
    ("projections", _float_list),
    # Closed-form expected loss of the trained model and its four terms (tsjax.theory).
    # Exact for sigma_h = sigma_y = identity; for other models the same formula on the
    # impulse-response projections, an approximation. Null with a readout bias.
    ("task_reward", pa.float64()),
    ("mean_correction", pa.float64()),
    ("projection_interference", pa.float64()),
    ("compositional_interference", pa.float64()),
    ("expected_loss", pa.float64()),
    # First order in p = 1 - sparsity of the ReLU-readout loss; null unless sigma_y = relu.
    ("expected_loss_sparse_relu", pa.float64()),
    # The same six values at every checkpoint, aligned with loss_curve_step.
    ("task_reward_curve", _float_list),
    ("mean_correction_curve", _float_list),
    ("projection_interference_curve", _float_list),
    ("compositional_interference_curve", _float_list),
    ("expected_loss_curve", _float_list),
    ("expected_loss_sparse_relu_curve", _float_list),
    # Geometry of the projections a_s (tsjax.theory_columns).
    ("interference_free_fraction", pa.float64()),
    ("forgetting_ratio", pa.float64()),
    ("forgetting_residual", pa.float64()),
    ("recall_diagonal_positive_fraction", pa.float64()),
    ("recall_offdiagonal_nonpositive_fraction", pa.float64()),
]

SCHEMA = pa.schema(CONFIG_COLUMNS + OUTCOME_COLUMNS,
                   metadata={"tsjax_schema_version": str(SCHEMA_VERSION)})


def _flatten(array: np.ndarray) -> list:
    """Turn (models, ...) into one float32 list per model, with non-finite values kept."""
    array = np.asarray(array, dtype=np.float32)
    return list(array.reshape(array.shape[0], -1))


def chunk_rows(sweep: str, group: StaticGroup, result: TrainResult) -> pa.Table:
    """Build the result table of a trained chunk; `result` contains exactly its models."""
    spec = group.spec
    count = len(group)
    result = type(result)(*[_to_numpy(field) for field in result])
    model = result.model

    finite = np.ones(count, dtype=bool)
    for weights in (model.W_x, model.W_h, model.W_y):
        finite &= np.all(np.isfinite(weights.reshape(count, -1)), axis=1)
    status = model_status(result.diverged_step, result.eval_output_max, spec.sigma_y, finite)

    values = eigenvalues(np.nan_to_num(model.W_h))
    leading = values[:, 0]
    theta = (k_theta_deg(result.feature_directions, group.values["k"])
             if spec.n_hidden == 2 and spec.n_features == 1 else None)
    segment_length, segments = segment_plan(spec.steps, spec.checkpoints)

    columns = {
        "sweep": [sweep] * count,
        "point_id": group.point_ids,
        **{name: [getattr(spec, name)] * count for name in (
            "model", "sigma_h", "sigma_y", "n_features", "n_hidden", "seq_len", "batch_size",
            "steps", "optimizer", "lr_schedule", "readout_bias", "trainer", "checkpoints",
            "eval_samples")},
        **group.values,
        "status": status,
        "diverged_step": result.diverged_step,
        "final_loss": result.loss_curve[:, -1],
        "eval_loss": result.eval_loss,
        "eval_loss_stderr": result.eval_loss_stderr,
        "k_theta_deg": theta,
        "spectral_radius": np.abs(leading),
        "eigenvalue_angle_deg": np.abs(np.degrees(np.angle(leading))),
        "loss_curve": _flatten(result.loss_curve),
        "loss_curve_step": [segment_length * np.arange(1, segments + 1, dtype=np.int32)] * count,
        "W_x": _flatten(model.W_x),
        "W_h": _flatten(model.W_h),
        "W_y": _flatten(model.W_y),
        "b_y": _flatten(model.b_y) if model.b_y is not None else None,
        "feature_directions": _flatten(result.feature_directions),
        "projections": _flatten(result.projections),
        **theory_columns(group.values["k"], result.projections, result.checkpoint_metrics),
    }
    arrays = []
    for field in SCHEMA:
        value = columns[field.name]
        if value is None:
            arrays.append(pa.nulls(count, field.type))
        else:
            arrays.append(pa.array(_float64_safe(value), type=field.type))
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def _to_numpy(tree):
    return jax.tree.map(np.asarray, tree)


def _float64_safe(value):
    """Cast half-precision arrays up, because Parquet has no float16 or bfloat16 type.

    bfloat16 and the float8 types come from ml_dtypes with numpy kind "V", so a test of
    kind "f" alone would miss them. `jax.dtypes.issubdtype` classes them as floating.
    """
    if (isinstance(value, np.ndarray) and value.dtype.itemsize < 4
            and jax.dtypes.issubdtype(value.dtype, np.floating)):
        return value.astype(np.float32)
    return value
