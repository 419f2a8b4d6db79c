"""Fit a sigmoid step to one order-parameter curve and locate its critical sparsity.

The model is f(S) = lo + (hi - lo) / (1 + exp(-(S - S_c) / width)) with width > 0, so
lo is the plateau at low sparsity, hi the plateau at high sparsity and hi - lo the
signed jump.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit
from scipy.special import expit

MIN_DISTINCT_SPARSITIES = 5
# NOTE: a heuristic threshold. On pure Gaussian noise, fits passed it in about 4% of 300
# draws with 16 sparsities and one seed each, but in 29% with 8 sparsities.
MIN_R_SQUARED = 0.5
# Width bounds as fractions of the scanned sparsity range. A jump sharper than the grid
# spacing can drive the width to the lower bound, and the critical sparsity is then only
# located to within one grid step (see SigmoidFit.width_unresolved).
MIN_WIDTH_FRACTION = 1e-3
MAX_WIDTH_FRACTION = 1.0
# A fitted width within this factor of the lower bound counts as at the bound, because
# the optimizer stops near a bound rather than exactly on it.
AT_BOUND_TOLERANCE = 1.01
# The logistic rises from 10% to 90% of its jump over 2 ln 9 widths. A fit whose rise is
# wider than the scanned range is a smooth trend with no resolved plateaus, not a step.
RISE_WIDTHS = 2 * np.log(9)


def sigmoid(
    sparsity: np.ndarray | float,
    low_plateau: float,
    high_plateau: float,
    critical_sparsity: float,
    width: float,
) -> np.ndarray:
    """Evaluate the step model at the given sparsities."""
    z = (np.asarray(sparsity, dtype=float) - critical_sparsity) / width
    return low_plateau + (high_plateau - low_plateau) * expit(z)


@dataclass(frozen=True)
class SigmoidFit:
    """Fitted step parameters, the fraction of variance explained and whether the fit is usable.

    When ``converged`` is False, ``message`` gives the reason. The parameters are still
    filled when the optimizer ran, so a rejected fit can be inspected, and are NaN when
    it did not run.

    ``width_unresolved`` is True when the width sits at its lower bound
    (MIN_WIDTH_FRACTION of the scanned range) or no scanned sparsity lies inside the
    fitted 10-90% rise. The step is then sharper than the grid spacing: the width is only
    an upper limit, and S_c is located only to within the grid gap that contains it,
    whatever digits it shows.
    """

    critical_sparsity: float
    width: float
    low_plateau: float
    high_plateau: float
    r_squared: float
    converged: bool
    message: str = ""
    width_unresolved: bool = False

    @property
    def jump(self) -> float:
        """Signed jump: high plateau minus low plateau."""
        return self.high_plateau - self.low_plateau

    @property
    def parameters(self) -> np.ndarray:
        """Parameters in the argument order of ``sigmoid``: lo, hi, S_c, width."""
        return np.array([self.low_plateau, self.high_plateau, self.critical_sparsity, self.width])

    def evaluate(self, sparsity: np.ndarray | float) -> np.ndarray:
        """Evaluate the fitted curve at the given sparsities."""
        return sigmoid(sparsity, *self.parameters)


def _failed_fit(message: str) -> SigmoidFit:
    nan = float("nan")
    return SigmoidFit(nan, nan, nan, nan, nan, converged=False, message=message)


def _initial_guesses(x: np.ndarray, y: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> list[np.ndarray]:
    """Build starting points from the per-sparsity mean curve.

    The plateaus start at the means of the lowest and highest quarter of sparsities, and
    S_c starts at the steepest crossing of their midpoint or at the median sparsity.
    """
    distinct = np.unique(x)
    mean_curve = np.array([y[x == value].mean() for value in distinct])
    quarter = max(1, distinct.size // 4)
    low_start = mean_curve[:quarter].mean()
    high_start = mean_curve[-quarter:].mean()

    centre_starts = [float(np.median(distinct))]
    above = mean_curve > (low_start + high_start) / 2
    crossings = np.flatnonzero(above[1:] != above[:-1])
    if crossings.size:
        steepest = crossings[np.argmax(np.abs(np.diff(mean_curve)[crossings]))]
        centre_starts.insert(0, float((distinct[steepest] + distinct[steepest + 1]) / 2))

    scanned_range = distinct[-1] - distinct[0]
    guesses = []
    for centre in centre_starts:
        for width in (scanned_range / 50, scanned_range / 10):
            guess = np.array([low_start, high_start, centre, width])
            # Trust-region fits need a start strictly inside the bounds.
            margin = 1e-9 * (upper - lower)
            guesses.append(np.clip(guess, lower + margin, upper - margin))
    return guesses


def _width_unresolved(x: np.ndarray, critical_sparsity: float, width: float, min_width: float) -> bool:
    """Return whether the data cannot resolve the fitted width (see SigmoidFit)."""
    if width <= AT_BOUND_TOLERANCE * min_width:
        return True
    half_rise = RISE_WIDTHS * width / 2
    return not np.any(np.abs(x - critical_sparsity) < half_rise)


def fit_sigmoid(x: np.ndarray, y: np.ndarray, initial: np.ndarray | None = None) -> SigmoidFit:
    """Fit the step model to points (sparsity, order parameter) with scipy's curve_fit.

    Non-finite points are dropped. S_c is bounded to the scanned sparsity range, the width
    to [1e-3, 1] times that range and each plateau to the data range widened by its span
    on both sides. ``initial`` (lo, hi, S_c, width) is tried first, and the built-in
    starting points are used only if it fails.

    Data that cannot be fitted returns a fit with converged False and a message,
    instead of raising. That happens with fewer than 5 distinct sparsities, constant
    values or a failed optimizer, when S_c ends on the edge of the scanned range, when the
    10-90% rise is wider than that range, or when the step explains less than half of
    the variance. Raises ValueError only when x and y differ
    in length.
    """
    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length, got {x.size} and {y.size}")
    finite = np.isfinite(x) & np.isfinite(y)
    x, y = x[finite], y[finite]

    distinct_count = np.unique(x).size
    if distinct_count < MIN_DISTINCT_SPARSITIES:
        return _failed_fit(
            f"needs at least {MIN_DISTINCT_SPARSITIES} distinct sparsities with finite values, got {distinct_count}"
        )
    span = y.max() - y.min()
    if span <= 1e-12 * max(1.0, np.abs(y).max()):
        return _failed_fit(f"order parameter is constant ({y[0]:.6g}), so there is no step to fit")

    x_min, x_max = x.min(), x.max()
    scanned_range = x_max - x_min
    lower = np.array([y.min() - span, y.min() - span, x_min, MIN_WIDTH_FRACTION * scanned_range])
    upper = np.array([y.max() + span, y.max() + span, x_max, MAX_WIDTH_FRACTION * scanned_range])

    starts = _initial_guesses(x, y, lower, upper)
    if initial is not None:
        starts.insert(0, np.clip(np.asarray(initial, dtype=float), lower, upper))

    best_parameters, best_error, last_error = None, np.inf, None
    for index, start in enumerate(starts):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", OptimizeWarning)
                parameters, _ = curve_fit(sigmoid, x, y, p0=start, bounds=(lower, upper), maxfev=2000)
        except (RuntimeError, ValueError) as error:
            last_error = error
            continue
        squared_error = float(np.sum((sigmoid(x, *parameters) - y) ** 2))
        if squared_error < best_error:
            best_parameters, best_error = parameters, squared_error
        if index == 0 and initial is not None:
            break
    if best_parameters is None:
        return _failed_fit(f"curve_fit failed from every starting point: {last_error}")

    low_plateau, high_plateau, critical_sparsity, width = (float(value) for value in best_parameters)
    r_squared = 1.0 - best_error / float(np.sum((y - y.mean()) ** 2))
    message = ""
    edge_tolerance = 1e-6 * scanned_range
    if critical_sparsity - x_min <= edge_tolerance or x_max - critical_sparsity <= edge_tolerance:
        message = (
            f"critical sparsity {critical_sparsity:.4g} is on the edge of the scanned range "
            f"[{x_min:.4g}, {x_max:.4g}], so the step may lie outside it"
        )
    elif RISE_WIDTHS * width > scanned_range:
        message = (
            f"the 10-90% rise spans {RISE_WIDTHS * width:.3g}, wider than the scanned range "
            f"{scanned_range:.3g}, so the plateaus are not resolved"
        )
    elif r_squared < MIN_R_SQUARED:
        message = f"the step explains only {r_squared:.0%} of the variance (minimum {MIN_R_SQUARED:.0%})"
    return SigmoidFit(
        critical_sparsity,
        width,
        low_plateau,
        high_plateau,
        r_squared,
        converged=not message,
        message=message,
        width_unresolved=_width_unresolved(x, critical_sparsity, width, lower[3]),
    )
