"""Result columns of the loss decomposition and of the projection geometry.

The loss terms come out of the compiled program as checkpoint metrics (see
`tsjax.theory`); the geometry is measured here on the host with numpy from the stored
projections a_s = W_yᵀ w_s, shape (models, seq_len, n_features, n_features), where
entry (i, j) is the readout of output i, s steps after a unit input on coordinate j.
A value that is undefined for a model (for example a fraction over an empty set) is
None, which the Parquet file stores as null.
"""

import numpy as np

from tsjax.theory import TERM_NAMES

LOSS_COLUMNS = (*TERM_NAMES, "expected_loss", "expected_loss_sparse_relu")


def _nullable(values: np.ndarray, defined: np.ndarray) -> list:
    return [float(value) if ok else None for value, ok in zip(values, defined)]


def _recall_projection(projections: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Return a_k of each model, shape (models, n_features, n_features)."""
    return projections[np.arange(len(projections)), k]


def interference_free_fraction(projections: np.ndarray, k: np.ndarray) -> list:
    """Return the fraction of intermediate features in the interference-free half-space.

    The intermediate features are the diagonal entries (a_s)_{ii} for ages s < k and
    every coordinate i. A feature counts when (a_s)_{ii} < 0, where a ReLU readout maps
    it to zero. None when k = 0, because then no intermediate feature exists.
    """
    seq_len, n_features = projections.shape[1], projections.shape[2]
    diagonals = np.diagonal(projections, axis1=2, axis2=3)                  # (M, T, N)
    intermediate = np.arange(seq_len)[None, :] < k[:, None]                 # (M, T)
    negative = np.sum((diagonals < 0) & intermediate[..., None], axis=(1, 2))
    count = np.sum(intermediate, axis=1) * n_features
    return _nullable(negative / np.maximum(count, 1), count > 0)


def forgetting_ratio(projections: np.ndarray, k: np.ndarray) -> list:
    """Return ‖a_{k+1}‖ / ‖a_k‖ (Frobenius norms), the readout left one step after recall.

    0 is sharp forgetting and 1 none. None when k + 1 = seq_len or a_k = 0.
    """
    seq_len = projections.shape[1]
    rows = np.arange(len(projections))
    norms = np.linalg.norm(projections.astype(np.float64), axis=(2, 3))      # (M, T)
    recall = norms[rows, k]
    following = norms[rows, np.minimum(k + 1, seq_len - 1)]
    defined = (k + 1 < seq_len) & (recall > 0)
    return _nullable(following / np.where(defined, recall, 1.0), defined)


def forgetting_residual(projections: np.ndarray, k: np.ndarray) -> list:
    """Return sqrt(Σ_{s>k} ‖a_s‖²) / ‖a_k‖, all the readout left after recall.

    Unlike `forgetting_ratio` it also counts features that come back later, as in a
    rotating (spiral) recurrence. 0 is sharp forgetting. None when k + 1 = seq_len or
    a_k = 0.
    """
    seq_len = projections.shape[1]
    rows = np.arange(len(projections))
    squares = np.sum(projections.astype(np.float64) ** 2, axis=(2, 3))      # (M, T)
    recall = np.sqrt(squares[rows, k])
    later = np.arange(seq_len)[None, :] > k[:, None]
    residual = np.sqrt(np.sum(np.where(later, squares, 0.0), axis=1))
    defined = (k + 1 < seq_len) & (recall > 0)
    return _nullable(residual / np.where(defined, recall, 1.0), defined)


def recall_sign_pattern(projections: np.ndarray, k: np.ndarray) -> tuple[list, list]:
    """Return the sign pattern of a_k: (diagonal positive fraction, off-diagonal <= 0 fraction).

    The diagonal fraction counts (a_k)_{ii} > 0, outputs that recall their own input.
    The off-diagonal fraction counts (a_k)_{ij} <= 0 for i != j, compared exactly with 0,
    inputs that do not leak into another output. It is None when n_features = 1.
    """
    recall = _recall_projection(projections, k)
    n_features = recall.shape[1]
    diagonal = np.diagonal(recall, axis1=1, axis2=2)
    positive = np.mean(diagonal > 0, axis=1)
    off_diagonal = ~np.eye(n_features, dtype=bool)
    nonpositive = np.sum((recall <= 0) & off_diagonal, axis=(1, 2)) / max(off_diagonal.sum(), 1)
    defined = np.full(len(recall), n_features > 1)
    return _nullable(positive, np.ones(len(recall), dtype=bool)), _nullable(nonpositive, defined)


def theory_columns(k: np.ndarray, projections: np.ndarray, checkpoint_metrics: dict) -> dict:
    """Build the loss-term and geometry columns of a chunk of trained models.

    `checkpoint_metrics` maps metric names to arrays (models, checkpoints). Each loss
    term gets a scalar column (its value at the last checkpoint, the trained model) and
    a `<name>_curve` column with one value per checkpoint. A term the program did not
    compute (readout bias, or the sparse ReLU term of an identity readout) is None.
    """
    k = np.asarray(k, dtype=np.int64)
    projections = np.asarray(projections, dtype=np.float64)
    columns = {}
    for name in LOSS_COLUMNS:
        curve = checkpoint_metrics.get(name)
        if curve is None:
            columns[name] = columns[f"{name}_curve"] = None
            continue
        curve = np.asarray(curve, dtype=np.float32)
        columns[name] = curve[:, -1].astype(np.float64)
        columns[f"{name}_curve"] = list(curve)

    diagonal_positive, offdiagonal_nonpositive = recall_sign_pattern(projections, k)
    columns.update({
        "interference_free_fraction": interference_free_fraction(projections, k),
        "forgetting_ratio": forgetting_ratio(projections, k),
        "forgetting_residual": forgetting_residual(projections, k),
        "recall_diagonal_positive_fraction": diagonal_positive,
        "recall_offdiagonal_nonpositive_fraction": offdiagonal_nonpositive,
    })
    return columns
