"""tsjax: a JAX sweep engine for temporal superposition in recurrent networks.

Train whole grids of RNNs on k-delay recall of sparse inputs as a few compiled calls,
and write one Parquet row per trained model.
"""

from tsjax.cache import enable_compilation_cache
from tsjax.config import FIELDS, ConfigError, SweepConfig, load_config, parse_config
from tsjax.dataset import ResultsDir, ResultsDirError
from tsjax.grid import GridPoint, StaticGroup, StaticSpec, expand_grid
from tsjax.models import RNN, init_rnn
from tsjax.results import SCHEMA, SCHEMA_VERSION
from tsjax.sweep import SweepFailed, SweepInterrupted, SweepSummary, run_sweep
from tsjax.task import delayed_targets, importance_weights, magnitude_moments, sample_inputs
from tsjax.training import TrainResult, TrainState, batch_loss, train, train_chunk

__all__ = [
    "FIELDS", "ConfigError", "SweepConfig", "load_config", "parse_config",
    "ResultsDir", "ResultsDirError",
    "GridPoint", "StaticGroup", "StaticSpec", "expand_grid",
    "RNN", "init_rnn",
    "SCHEMA", "SCHEMA_VERSION",
    "SweepFailed", "SweepInterrupted", "SweepSummary", "run_sweep",
    "delayed_targets", "importance_weights", "magnitude_moments", "sample_inputs",
    "TrainResult", "TrainState", "batch_loss", "train", "train_chunk",
    "enable_compilation_cache",
]

# Compiled programs persist across runs (see tsjax.cache for the directory and opt-out).
enable_compilation_cache()
