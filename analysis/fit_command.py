"""Fit every order parameter of a results directory and write tables and plots to ``_analysis/``.

This is the work behind ``tsjax fit``. It imports no JAX, so it also runs on machines
that only analyse results.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.atomic import atomic_path
from analysis.fit import FIT_COLUMNS, fit_transition
from analysis.loader import load_results_dir
from analysis.plots import plot_loss_curves, plot_order_parameter, plot_phase_diagram

ANALYSIS_DIR_NAME = "_analysis"
DEFAULT_ORDER_PARAMETERS = ("k_theta_deg", "spectral_radius")


@dataclass
class FitReport:
    """Fit tables keyed by order parameter, their printable summary and the files written.

    ``skipped`` maps each requested order parameter that was not fitted to the reason.
    """

    tables: dict[str, pd.DataFrame]
    text: str
    paths: list[Path] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        """Return the printable summary, so ``print(report)`` shows the fit tables."""
        return self.text

    @property
    def any_converged(self) -> bool:
        """True when at least one group of one order parameter has a converged fit."""
        return any(table["converged"].astype(bool).any() for table in self.tables.values())


def write_fit(
    results_dir: str | Path,
    seeds: str = "best",
    order_parameters: Sequence[str] = DEFAULT_ORDER_PARAMETERS,
    n_bootstrap: int = 200,
    confidence: float = 0.95,
    rng: int = 0,
) -> FitReport:
    """Load a results directory, fit each order parameter and write the outputs.

    Writes ``_analysis/fit_<order_parameter>.csv`` (the fit table without the resampled
    fits), ``order_parameter_<order_parameter>.png``, ``phase_diagram_<order_parameter>.png``
    and ``loss_curves.png``, each atomically. Every fit runs before the first file is
    written, so an invalid argument or missing column leaves ``_analysis/`` unchanged. An
    order parameter that is not a column of the results is skipped and named in
    ``FitReport.skipped``. Groups whose fit fails still get a row (``converged`` False).

    Raises FileNotFoundError for a missing directory, and ValueError when the path is not
    a directory, has no committed results yet, lacks every requested order parameter, has
    a file where ``_analysis/`` belongs, or an argument is invalid (see fit_transition).
    OSError from reading or writing passes through.
    """
    results_dir = Path(results_dir)
    results = load_results_dir(results_dir, "write_fit")
    analysis_dir = results_dir / ANALYSIS_DIR_NAME
    if analysis_dir.exists() and not analysis_dir.is_dir():
        raise ValueError(f"{analysis_dir} is a file, but fit outputs go into a directory of that name; move the file")
    if isinstance(order_parameters, str):
        order_parameters = (order_parameters,)

    skipped = {
        name: f"results have no column {name!r}, so {name} is not fitted"
        for name in order_parameters
        if name not in results.columns
    }
    available = [name for name in order_parameters if name not in skipped]
    if not available:
        raise ValueError(f"results in {results_dir} have no column {' or '.join(map(repr, order_parameters))} to fit")
    tables = {
        name: fit_transition(results, name, seeds=seeds, n_bootstrap=n_bootstrap, confidence=confidence, rng=rng)
        for name in available
    }

    paths: list[Path] = []
    for order_parameter, table in tables.items():
        csv_path = analysis_dir / f"fit_{order_parameter}.csv"
        with atomic_path(csv_path) as temporary:
            table.drop(columns=["bootstrap_params"]).to_csv(temporary, index=False)
        order_parameter_path = analysis_dir / f"order_parameter_{order_parameter}.png"
        plot_order_parameter(results, table, order_parameter, order_parameter_path)
        paths += [csv_path, order_parameter_path]
        if "k" in table.columns:
            phase_diagram_path = analysis_dir / f"phase_diagram_{order_parameter}.png"
            plot_phase_diagram(table, phase_diagram_path)
            paths.append(phase_diagram_path)

    loss_curves_path = analysis_dir / "loss_curves.png"
    plot_loss_curves(results, loss_curves_path)
    paths.append(loss_curves_path)
    return FitReport(tables=tables, text=format_fit_tables(tables, n_bootstrap), paths=paths, skipped=skipped)


def _format_number(value: float, digits: int = 3) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def format_fit_tables(tables: dict[str, pd.DataFrame], n_bootstrap: int | None = None) -> str:
    """Format fit tables as plain text, one section per order parameter."""
    sections = []
    for order_parameter, table in tables.items():
        group_keys = [column for column in table.columns if column not in FIT_COLUMNS]
        summary = table[group_keys].copy()
        summary["S_c"] = table["critical_sparsity"].map(_format_number)
        summary["CI"] = [
            f"[{_format_number(low)}, {_format_number(high)}]"
            for low, high in zip(table["critical_sparsity_low"], table["critical_sparsity_high"])
        ]
        summary["jump"] = table["jump"].map(lambda value: _format_number(value, 3 if abs(value) < 10 else 1))
        # A trailing * marks an unresolved width, and a trailing space keeps the other rows aligned.
        unresolved = table["width_unresolved"].astype(bool) if "width_unresolved" in table else [False] * len(table)
        summary["width"] = [
            _format_number(width, 4) + ("*" if flagged else " ") for width, flagged in zip(table["width"], unresolved)
        ]
        summary["points"] = table["n_points"]
        statuses = [
            "converged" if converged else f"failed: {message}"
            for converged, message in zip(table["converged"], table["message"])
        ]

        header = f"{order_parameter}"
        if len(table):
            header += f" (seeds={table['seeds'].iloc[0]}, {table['confidence'].iloc[0]:.0%} CI"
            header += f", {n_bootstrap} bootstrap resamples)" if n_bootstrap is not None else ")"
        if len(summary):
            # The status goes last and unpadded, because to_string would right-align it.
            lines = summary.to_string(index=False).splitlines()
            rows = [f"{line}  {status}" for line, status in zip(lines[1:], statuses)]
            body = "\n".join([f"{lines[0]}  status", *rows])
            if any(unresolved):
                body += (
                    "\n* width unresolved (at its lower bound or no sparsity inside the 10-90% rise): the step is "
                    "sharper than the grid spacing, so S_c is located only to within the grid gap that contains it"
                )
        else:
            body = "(no groups)"
        sections.append(f"{header}\n{body}")
    return "\n\n".join(sections)
