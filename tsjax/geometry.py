"""Geometry measured from trained weights, on the host with numpy.

These run once per chunk after training, on arrays with a leading model axis.
"""

import numpy as np


def k_theta_deg(feature_directions: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Return the angle swept from w_0 to w_k in degrees, per model.

    `feature_directions` has shape (models, seq_len, 2, 1). The signed angle between
    each consecutive pair w_s, w_{s+1} lies in (-180°, 180°]; summing them for
    s = 0 .. k-1 unwraps the total, and the absolute value is returned. A pair with a
    zero vector contributes 0°, because its angle is undefined. A diverged model's
    directions can hold inf, which gives NaN for that model.
    """
    w = feature_directions[..., 0].astype(np.float64)
    current, following = w[:, :-1], w[:, 1:]
    # inf - inf is NaN by design here, so numpy need not warn about it.
    with np.errstate(invalid="ignore"):
        cross = current[..., 0] * following[..., 1] - current[..., 1] * following[..., 0]
        dot = np.sum(current * following, axis=-1)
    steps = np.degrees(np.arctan2(cross, dot))
    ages = np.arange(steps.shape[1])
    return np.abs(np.sum(np.where(ages[None, :] < np.asarray(k)[:, None], steps, 0.0), axis=1))


def eigenvalues(W_h: np.ndarray) -> np.ndarray:
    """Return the eigenvalues of each W_h (models, n_hidden, n_hidden), largest modulus first."""
    values = np.linalg.eigvals(W_h.astype(np.float64))
    order = np.argsort(-np.abs(values), axis=-1, kind="stable")
    return np.take_along_axis(values, order, axis=-1)


def spectral_radius(W_h: np.ndarray) -> np.ndarray:
    """Return the largest eigenvalue modulus of each W_h (models, n_hidden, n_hidden)."""
    return np.abs(eigenvalues(W_h)[:, 0])


def model_status(diverged_step: np.ndarray, eval_output_max: np.ndarray,
                 sigma_y: str, finite: np.ndarray) -> np.ndarray:
    """Classify each model as `diverged`, `dead` or `ok`.

    A model is diverged when training hit a non-finite loss or update (or its stored
    weights are not finite), and dead when its ReLU readout output was 0 on every
    held-out input, which leaves it no gradient.
    """
    silent = np.all(eval_output_max <= 0, axis=-1) if sigma_y == "relu" else np.zeros(
        len(diverged_step), dtype=bool)
    status = np.where(silent, "dead", "ok")
    return np.where((diverged_step >= 0) | ~finite, "diverged", status).astype(object)
