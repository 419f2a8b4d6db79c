"""Write a Markdown report with figures for one results directory: the work behind ``tsjax report``.

The report goes to ``RESULTS_DIR/_analysis/report.md`` beside its PNG figures and
CSV tables. Each section is written only when the data supports it: fans of feature
directions need N_h = 2, transition fits need at least 5 sparsities, the phase diagram
needs fits at 2 or more delays, heatmaps of a_k need N_x > 1, and the loss staircase
needs the loss-term curve columns. Imports no JAX.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.atomic import atomic_path
from analysis.findings import (
    CONVERGED_CHANGE,
    OFFDIAGONAL_TOLERANCE,
    RECALL_ABSENT,
    RECALL_KEPT,
    STUCK_LOSS_RATIO,
    all_or_none,
    convergence,
    geometry_summary,
    interference_free_grouping,
    staircase,
    status_fractions,
)
from analysis.fit import fit_transition
from analysis.fit_command import ANALYSIS_DIR_NAME
from analysis.loader import load_manifest, load_results_dir
from analysis.plots import plot_loss_curves, plot_order_parameter, plot_phase_diagram
from analysis.report_plots import (
    best_row,
    fan_rows,
    plot_fans,
    plot_intermediate_projections,
    plot_recall_heatmaps,
    plot_recall_histogram,
    plot_staircase,
)
from analysis.sigmoid import MIN_DISTINCT_SPARSITIES
from analysis.theory_plots import loss_agreement, plot_loss_decomposition

REPORT_NAME = "report.md"
TRANSITION_ORDER_PARAMETERS = ("k_theta_deg", "spectral_radius", "interference_free_fraction")


@dataclass
class Report:
    """The Markdown text of a report, the tables it quotes and the files written."""

    text: str
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    paths: list[Path] = field(default_factory=list)


class _Writer:
    """Collect Markdown sections and write figures and tables into the analysis folder."""

    def __init__(self, analysis_dir: Path):
        self.analysis_dir = analysis_dir
        self.lines: list[str] = []
        self.tables: dict[str, pd.DataFrame] = {}
        self.paths: list[Path] = []

    def section(self, title: str, *paragraphs: str) -> None:
        self.lines += [f"## {title}", ""]
        for paragraph in paragraphs:
            self.lines += [paragraph, ""]

    def figure(self, name: str, draw, caption: str) -> None:
        """Draw a figure with `draw(path)` and embed it, or note in the text why `draw` raised ValueError."""
        path = self.analysis_dir / f"{name}.png"
        try:
            draw(path)
        except ValueError as error:
            self.lines += [f"(figure {name} not drawn: {error})", ""]
            return
        self.paths.append(path)
        self.lines += [f"![{caption}]({path.name})", "", f"*{caption}*", ""]

    def table(self, name: str, table: pd.DataFrame, columns: list[str] | None = None) -> None:
        """Store a table as CSV and show it (or the given columns) as a Markdown table."""
        self.tables[name] = table
        path = self.analysis_dir / f"{name}.csv"
        with atomic_path(path) as temporary:
            table.to_csv(temporary, index=False)
        self.paths.append(path)
        selected = table if columns is None else table[[column for column in columns if column in table]]
        self.lines += [markdown_table(selected), "", f"(all columns: `{path.name}`)", ""]


def _format_cell(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            return "–"
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def markdown_table(table: pd.DataFrame) -> str:
    """Format a frame as a GitHub Markdown table, numbers to 3 significant digits."""
    if table.empty:
        return "(no rows)"
    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(_format_cell(value) for value in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def write_report(results_dir: str | Path, seeds: str = "best", n_bootstrap: int = 200, rng: int = 0) -> Report:
    """Analyse a results directory and write ``_analysis/report.md`` with its figures and tables.

    `seeds` chooses the models fitted and drawn per grid point (see select_seeds), and
    `n_bootstrap` the resamples behind each confidence interval. Raises FileNotFoundError
    for a missing directory and ValueError for a directory with no committed results.
    """
    results_dir = Path(results_dir)
    results = load_results_dir(results_dir, "write_report")
    manifest = load_manifest(results_dir) or {}
    writer = _Writer(results_dir / ANALYSIS_DIR_NAME)

    _write_header(writer, results, manifest, results_dir)
    _write_status(writer, results)
    _write_fans(writer, results, seeds)
    fits = _write_transition(writer, results, seeds, n_bootstrap, rng)
    _write_phase_diagram(writer, fits)
    _write_high_dimensional(writer, results, seeds)
    _write_staircase(writer, results, seeds)

    text = "\n".join(writer.lines).rstrip() + "\n"
    report_path = writer.analysis_dir / REPORT_NAME
    with atomic_path(report_path) as temporary:
        Path(temporary).write_text(text, encoding="utf-8")
    writer.paths.append(report_path)
    return Report(text=text, tables=writer.tables, paths=writer.paths)


def _describe_axis(results: pd.DataFrame, column: str) -> str:
    values = sorted(results[column].dropna().unique())
    if len(values) > 6:
        return f"{len(values)} values in [{values[0]:.3g}, {values[-1]:.3g}]"
    return ", ".join(_format_cell(value) for value in values)


def _write_header(writer: _Writer, results: pd.DataFrame, manifest: dict, results_dir: Path) -> None:
    name = manifest.get("sweep") or results["sweep"].iloc[0]
    provenance = manifest.get("provenance") if isinstance(manifest.get("provenance"), dict) else {}
    writer.lines += [f"# Report of sweep `{name}`", ""]
    axes = ["model", "n_hidden", "n_features", "k", "sparsity", "seed", "learning_rate", "steps", "batch_size"]
    described = [f"{column} = {_describe_axis(results, column)}" for column in axes if column in results]
    writer.lines += [
        f"{len(results)} trained models in `{results_dir}`; grid: " + "; ".join(described) + ".",
        "",
        f"Written by tsjax from git commit `{provenance.get('git_commit', 'unknown')}` on "
        f"{provenance.get('devices', {}).get('device_kind', 'unknown device')}. Geometry and fits use the "
        "best ok seed (lowest final training loss) of each grid point unless stated.",
        "",
    ]


def _write_status(writer: _Writer, results: pd.DataFrame) -> None:
    writer.section(
        "Dead and diverged models",
        "A model is dead when its ReLU readout output 0 on every held-out input, so no gradient "
        "reaches it, and diverged when its loss or an update became non-finite. `stuck` counts ok "
        f"models whose held-out loss is at least {STUCK_LOSS_RATIO:.0%} of the loss of an always-zero "
        "output: alive, but they learned almost nothing.")
    writer.table("status", status_fractions(results))
    by = ["model"] + [key for key in ("n_hidden", "k") if results[key].nunique() > 1]
    writer.section(
        "Convergence",
        "Relative change of the mean training loss from the third to the last quarter of training, "
        f"per ok model. `converged_fraction` counts the models that changed by less than "
        f"{CONVERGED_CHANGE:.0%}. At high sparsity the training loss is a noisy estimate, which sets a "
        "floor on the change.")
    writer.table("convergence", convergence(results, by=by))
    writer.figure("loss_curves", lambda path: plot_loss_curves(results, path),
                  "Training loss (mean per checkpoint segment) of every model, coloured by sparsity.")


def _write_fans(writer: _Writer, results: pd.DataFrame, seeds: str) -> None:
    rows = fan_rows(results)
    rows = rows[rows["n_features"] == 1]
    if rows.empty:
        return
    writer.section(
        "Feature directions in the hidden plane",
        "w_s is the hidden state s steps after a unit input. The shaded half-plane has a negative "
        "readout, which a ReLU readout sets to zero, so features there cause no interference. "
        "Columns: densest and sparsest input of the sweep, at its largest k.")
    writer.figure("fans", lambda path: plot_fans(rows, path),
                  "Feature directions w_s of the best seed per model at the extreme sparsities.")
    summary = geometry_summary(rows, seeds)
    extremes = summary["sparsity"].isin([summary["sparsity"].min(), summary["sparsity"].max()])
    writer.lines += [
        "`interference_free_fraction`: share of the intermediate features (a_s, s < k) below 0; "
        "`norm_weighted_free`: the same share weighted by |w_s|; `largest_free`: whether the largest "
        "intermediate feature is below 0; `forgetting_residual`: readout left after recall relative "
        "to the recall (0 is sharp forgetting).",
        "",
    ]
    writer.table("geometry", summary[extremes], [
        "model", "k", "sparsity", "seed", "final_loss", "k_theta_deg", "spectral_radius",
        "eigenvalue_angle_deg", "interference_free_fraction", "norm_weighted_free", "largest_free",
        "forgetting_ratio", "forgetting_residual"])


def _transition_parameters(results: pd.DataFrame) -> list[str]:
    return [name for name in TRANSITION_ORDER_PARAMETERS
            if name in results and results.loc[results["status"] == "ok", name].notna().any()]


def _write_transition(writer: _Writer, results, seeds, n_bootstrap, rng) -> dict[str, pd.DataFrame]:
    if results["sparsity"].nunique() < MIN_DISTINCT_SPARSITIES:
        return {}
    writer.section(
        "Dense-to-sparse transition",
        "A sigmoid of each order parameter against sparsity, fitted per model, k and hidden size. "
        f"S_c is its midpoint with a {n_bootstrap}-resample bootstrap 95% interval over seeds; "
        "`low_plateau` and `high_plateau` are its dense and sparse values.")
    fits = {}
    for order_parameter in _transition_parameters(results):
        table = fit_transition(results, order_parameter, seeds=seeds, n_bootstrap=n_bootstrap, rng=rng)
        fits[order_parameter] = table
        writer.lines += [f"### {order_parameter}", ""]
        writer.figure(f"transition_{order_parameter}",
                      lambda path, table=table, name=order_parameter: plot_order_parameter(results, table, name, path),
                      f"{order_parameter} against sparsity with the fitted sigmoid and its bootstrap band.")
        writer.table(f"fit_{order_parameter}", table.drop(columns=["bootstrap_params"]), [
            "model", "n_hidden", "k", "critical_sparsity", "critical_sparsity_low", "critical_sparsity_high",
            "low_plateau", "high_plateau", "r_squared", "n_not_ok", "converged", "message"])
    return fits


def _write_phase_diagram(writer: _Writer, fits: dict[str, pd.DataFrame]) -> None:
    usable = {name: table for name, table in fits.items()
              if table.loc[table["converged"].astype(bool), "k"].nunique() >= 2}
    if not usable:
        return
    writer.section("Phase diagram", "Critical sparsity against k, one line per model and hidden size; "
                   "only converged fits are drawn.")
    for order_parameter, table in usable.items():
        writer.figure(f"phase_diagram_{order_parameter}", lambda path, table=table: plot_phase_diagram(table, path),
                      f"Critical sparsity of {order_parameter} against k with 95% bootstrap intervals.")


def _write_high_dimensional(writer: _Writer, results: pd.DataFrame, seeds: str) -> None:
    rows = results[results["n_features"] > 1]
    if rows.empty:
        return
    writer.section(
        "Many features: sign pattern of a_k and all-or-none recall",
        f"A feature i is kept when its recall (a_k)_ii >= {RECALL_KEPT}, absent when it is <= "
        f"{RECALL_ABSENT} and partial between. `all_or_none` is the share of features that are not "
        "partial; `kept_intermediate_free` the share of the kept features' intermediate projections "
        "(a_s)_ii, s < k, below 0. The sign pattern of a_k: the share of its diagonal above 0, of its "
        f"off-diagonal entries at or below 0, and (`offdiagonal_small`) at or below {OFFDIAGONAL_TOLERANCE}.")
    for model in sorted(rows["model"].unique()):
        writer.figure(f"recall_heatmaps_{model}", lambda path, model=model: plot_recall_heatmaps(rows, model, path),
                      f"a_k = W_yᵀ w_k of {model} per hidden size and k (red: positive, blue: negative).")
    writer.figure("recall_histogram", lambda path: plot_recall_histogram(rows, path),
                  "Recall (a_k)_ii of every feature; dotted lines are the kept and absent thresholds.")
    writer.table("all_or_none", all_or_none(rows, seeds), [
        "model", "n_hidden", "k", "sparsity", "final_loss", "kept", "partial", "absent", "all_or_none",
        "kept_intermediate_free", "recall_diagonal_positive_fraction", "recall_offdiagonal_nonpositive_fraction",
        "offdiagonal_small"])

    grouping = interference_free_grouping(rows, seeds)
    if grouping.empty:
        return
    writer.lines += [
        "Which intermediate features sit in the interference-free half-space: over all, over the half "
        "with the largest and the smallest norm |w_s|, and over the most and least important quarter "
        "of features (importance falls with the index when importance_decay < 1).",
        "",
    ]
    writer.table("interference_free_grouping", grouping)
    for model in sorted(rows["model"].unique()):
        model_rows = rows[(rows["model"] == model) & (rows["k"] > 0)]
        if model_rows.empty:
            continue
        row = best_row(model_rows, n_hidden=model_rows["n_hidden"].max(), sparsity=model_rows["sparsity"].max())
        if row is not None:
            writer.figure(f"intermediate_projections_{model}",
                          lambda path, row=row: plot_intermediate_projections(row, path),
                          f"(a_s)_ii per feature for the best {model} model at the largest hidden size.")


def _write_staircase(writer: _Writer, results: pd.DataFrame, seeds: str) -> None:
    table = staircase(results, seeds)
    if table.empty:
        return
    writer.section(
        "Loss staircase",
        "The expected loss along training split into the task term pν Σ_t (a_k − 1)² (falls as the "
        "readout aligns with w_k) and the interference terms (fall as features of other ages separate "
        "from the readout). `drops` counts the runs of checkpoints where the expected loss falls fast "
        "(2 or more make a staircase). `alignment_step` is where the task term has fallen halfway, "
        "`separation_step` where the interference term has fallen halfway from its peak (blank when "
        "it never falls by 5% of the largest loss). With a ReLU readout the split uses the sparse-limit "
        "loss, where only positive projections cost.")

    sparsest = table["sparsity"].max()
    panels = []
    for model in sorted(table["model"].unique()):
        model_rows = results[(results["model"] == model) & (results["sparsity"] == sparsest)]
        row = best_row(model_rows, k=int(model_rows["k"].max()))
        if row is not None:
            panels.append(row)

    writer.figure("staircase", lambda path: plot_staircase(panels, path),
                  "Task and interference terms of the expected loss along training, best seed per model "
                  "at the sparsest input; shaded: drops; dotted: alignment (blue) and separation (green) steps.")

    linear_panels = [row for row in panels if row.get("sigma_h") == "identity" and row.get("sigma_y") == "identity"]
    if linear_panels:
        writer.figure("loss_decomposition_linear",
                      lambda path: plot_loss_decomposition(linear_panels[0], path),
                      "The four terms of the exact expected loss of the best linear model along training, "
                      "with the training loss and the held-out loss.")
    _write_loss_agreement(writer, results)

    extremes = table["sparsity"].isin([table["sparsity"].min(), sparsest])
    writer.table("staircase", table[extremes], [
        "model", "n_hidden", "k", "sparsity", "final_loss", "drops", "alignment_step", "interference_peak_step",
        "separation_step", "task_start", "task_end", "interference_peak", "interference_end",
        "alignment_then_separation"])


def _write_loss_agreement(writer: _Writer, results: pd.DataFrame) -> None:
    """Compare the closed-form expected loss with the held-out loss of every ok linear model."""
    linear = results[(results["status"] == "ok") & (results.get("sigma_h") == "identity")
                     & (results.get("sigma_y") == "identity")]
    if linear.empty or "expected_loss" not in linear or linear["expected_loss"].isna().all():
        return
    agreement = loss_agreement(linear)
    usable = agreement[~agreement["at_float_floor"] & agreement["z"].notna()]
    if usable.empty:
        return
    writer.lines += [
        f"Closed-form expected loss against the held-out Monte Carlo loss of {len(linear)} ok linear "
        f"models (exact for them): {usable['agrees'].mean():.0%} of {len(usable)} agree within 3 "
        f"standard errors (median |z| = {usable['z'].abs().median():.2f}).",
        "",
    ]
