"""Read tsjax results with pandas, fit the phase transition and plot it. Never imports JAX."""

from analysis.fit import FIT_COLUMNS, fit_transition
from analysis.fit_command import FitReport, format_fit_tables, write_fit
from analysis.loader import CURRENT_SCHEMA_VERSION, committed_parts, load_manifest, load_results, weights
from analysis.plots import (
    plot_feature_directions,
    plot_loss_curves,
    plot_order_parameter,
    plot_phase_diagram,
    plot_projection_heatmap,
)
from analysis.report import Report, write_report
from analysis.seeds import DEFAULT_GROUP_BY, SEED_MODES, select_seeds
from analysis.sigmoid import SigmoidFit, fit_sigmoid, sigmoid
from analysis.theory_plots import (
    loss_agreement,
    plot_loss_decomposition,
    plot_projections_by_age,
    plot_theory_summary,
)

__all__ = [
    "CURRENT_SCHEMA_VERSION",
    "DEFAULT_GROUP_BY",
    "FIT_COLUMNS",
    "SEED_MODES",
    "FitReport",
    "Report",
    "SigmoidFit",
    "committed_parts",
    "fit_sigmoid",
    "fit_transition",
    "format_fit_tables",
    "load_manifest",
    "load_results",
    "loss_agreement",
    "plot_feature_directions",
    "plot_loss_curves",
    "plot_loss_decomposition",
    "plot_order_parameter",
    "plot_phase_diagram",
    "plot_projection_heatmap",
    "plot_projections_by_age",
    "plot_theory_summary",
    "select_seeds",
    "sigmoid",
    "weights",
    "write_fit",
    "write_report",
]
