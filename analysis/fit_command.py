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
from analysis.loader import load_results
from analysis.plots import plot_loss_curves, plot_order_parameter, plot_phase_diagram

ANALYSIS_DIR_NAME = "_analysis"
DEFAULT_ORDER_PARAMETERS = ("k_theta_deg", "spectral_radius")


@dataclass
class FitReport:
    """Fit tables keyed by order parameter, their printable summary and the files written."""

    tables: dict[str, pd.DataFrame]
    text: str
    paths: list[Path] = field(default_factory=list)

    def __str__(self) -> str:
        """Return the printable summary, so ``print(report)`` shows the fit tables."""
        return self.text


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
    and ``loss_curves.png``, each atomically. Raises FileNotFoundError for a missing
    directory and ValueError when the path is not a directory, has no committed results
    yet, or an argument is invalid (see fit_transition).
    """
    results_dir = Path(results_dir)
    results = load_results(results_dir)
    if not results_dir.is_dir():
        raise ValueError(f"write_fit needs a results directory, got the file {results_dir}")
    if results.empty:
        raise ValueError(f"{results_dir} contains no committed results yet; run or resume the sweep first")
    if isinstance(order_parameters, str):
        order_parameters = (order_parameters,)

    analysis_dir = results_dir / ANALYSIS_DIR_NAME
    tables: dict[str, pd.DataFrame] = {}
    paths: list[Path] = []
    for order_parameter in order_parameters:
        table = fit_transition(
            results, order_parameter, seeds=seeds, n_bootstrap=n_bootstrap, confidence=confidence, rng=rng
        )
        tables[order_parameter] = table

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
    return FitReport(tables=tables, text=format_fit_tables(tables, n_bootstrap), paths=paths)


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
        summary["width"] = table["width"].map(lambda value: _format_number(value, 4))
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
        else:
            body = "(no groups)"
        sections.append(f"{header}\n{body}")
    return "\n\n".join(sections)
