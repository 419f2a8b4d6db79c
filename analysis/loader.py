"""Load a tsjax results directory into a pandas DataFrame, one row per trained model.

A results directory contains ``part-*.parquet`` files and non-data entries whose names
start with an underscore: ``_manifest.json`` (sweep metadata with ``schema_version``),
``_chunks/`` (one JSON record per committed part) and ``_analysis/`` (fit outputs).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

CURRENT_SCHEMA_VERSION = 1
MANIFEST_NAME = "_manifest.json"
CHUNKS_DIR_NAME = "_chunks"
PART_GLOB = "part-*.parquet"

# Flat float32 array columns and the shape of each, given (seq_len, n_hidden, n_features).
_ARRAY_SHAPES = {
    "W_x": lambda t, h, x: (h, x),
    "W_h": lambda t, h, x: (h, h),
    "W_y": lambda t, h, x: (h, x),
    "feature_directions": lambda t, h, x: (t, h, x),
    "projections": lambda t, h, x: (t, x, x),
}


def load_manifest(results_dir: str | Path) -> dict[str, Any] | None:
    """Read ``_manifest.json`` from a results directory, or return None when it is absent.

    Raises ValueError when the manifest is not UTF-8 JSON, not a JSON object, or its
    ``schema_version`` is newer than CURRENT_SCHEMA_VERSION, because columns may then
    mean something else.
    """
    manifest_path = Path(results_dir) / MANIFEST_NAME
    if not manifest_path.is_file():
        return None
    manifest = _read_json(manifest_path, "manifest")
    if not isinstance(manifest, dict):
        raise ValueError(f"{manifest_path} must contain a JSON object, got {type(manifest).__name__}")

    version = manifest.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ValueError(f"{manifest_path} has invalid schema_version {version!r}; expected an integer")
    if version > CURRENT_SCHEMA_VERSION:
        raise ValueError(
            f"{manifest_path} has schema_version {version}, but this analysis package reads "
            f"versions up to {CURRENT_SCHEMA_VERSION}; upgrade tsjax (which includes analysis) to load it"
        )
    return manifest


def committed_parts(results_dir: str | Path) -> list[Path]:
    """List the part files of a results directory that count as results, sorted by name.

    When ``_chunks/`` exists, only the parts named by its JSON records count, so a part
    written by a chunk that never committed (an orphan) is ignored. Without ``_chunks/``,
    every ``part-*.parquet`` counts. Hidden files in ``_chunks/`` are skipped. Raises
    ValueError for a record that is not a file or not a JSON object naming its part, and
    FileNotFoundError for a record whose part file is missing.
    """
    results_dir = Path(results_dir)
    chunks_dir = results_dir / CHUNKS_DIR_NAME
    if not chunks_dir.is_dir():
        return sorted(results_dir.glob(PART_GLOB))

    parts: set[Path] = set()
    for record_path in sorted(chunks_dir.glob("*.json")):
        # pathlib's glob also matches hidden names, which writers use for temporary files.
        if record_path.name.startswith("."):
            continue
        if not record_path.is_file():
            raise ValueError(f"chunk record {record_path} is not a file; move it out of {chunks_dir}")
        record = _read_json(record_path, "chunk record")
        if not isinstance(record, dict) or not isinstance(record.get("part"), str):
            raise ValueError(f"chunk record {record_path} is missing the string field 'part'")
        part_path = results_dir / record["part"]
        if not part_path.is_file():
            raise FileNotFoundError(f"chunk record {record_path} names a missing part file: {part_path}")
        parts.add(part_path)
    return sorted(parts)


def _read_json(path: Path, description: str) -> Any:
    """Parse a UTF-8 JSON file; raise ValueError naming `path` when it is not one."""
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as error:
        raise ValueError(f"{description} {path} is not UTF-8 text ({error.reason} at byte {error.start})") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"invalid JSON in {description} {path}: {error}") from None


def load_results(path: str | Path) -> pd.DataFrame:
    """Load a results directory or a single parquet file into one DataFrame.

    For a directory, the manifest's schema version is checked first (see load_manifest)
    and only committed parts are read (see committed_parts). Parts written by different
    engine versions may have different columns, and missing values become NaN. Rows are
    sorted by ``point_id`` and ``seed`` when those columns exist. A directory with no parts
    yet returns an empty DataFrame.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"results path not found: {path}")
    if path.is_file():
        return pd.read_parquet(path)

    load_manifest(path)
    frames = [pd.read_parquet(part) for part in committed_parts(path)]
    frames = [frame for frame in frames if not frame.empty]
    if not frames:
        return pd.DataFrame()
    results = pd.concat(frames, ignore_index=True)

    sort_columns = [column for column in ("point_id", "seed") if column in results.columns]
    if sort_columns:
        results = results.sort_values(sort_columns, kind="stable", ignore_index=True)
    return results


def load_results_dir(results_dir: str | Path, command: str) -> pd.DataFrame:
    """Load a sweep's results directory for `command` (e.g. "write_fit").

    Raises FileNotFoundError for a missing path, and ValueError for a file or a
    directory without committed results, each naming `command` and the path.
    """
    results_dir = Path(results_dir)
    results = load_results(results_dir)
    if not results_dir.is_dir():
        raise ValueError(f"{command} needs a results directory, got the file {results_dir}")
    if results.empty:
        raise ValueError(f"{results_dir} contains no committed results yet; run or resume "
                         "the sweep first")
    return results


def weights(row: Mapping[str, Any] | pd.Series) -> dict[str, np.ndarray]:
    """Reshape the flat array columns of one results row into float32 numpy arrays.

    Returns ``W_x`` (N_h, N_x), ``W_h`` (N_h, N_h), ``W_y`` (N_h, N_x),
    ``feature_directions`` (T, N_h, N_x) and ``projections`` (T, N_x, N_x), where
    T = seq_len. Array columns that are absent or null in the row are left out.
    """
    n_hidden = int(row["n_hidden"])
    n_features = int(row["n_features"])
    seq_len = int(row["seq_len"])

    arrays: dict[str, np.ndarray] = {}
    for name, shape_of in _ARRAY_SHAPES.items():
        flat = row.get(name)
        if flat is None or (not hasattr(flat, "__len__") and pd.isna(flat)):
            continue
        flat = np.asarray(flat, dtype=np.float32)
        shape = shape_of(seq_len, n_hidden, n_features)
        if flat.size != int(np.prod(shape)):
            raise ValueError(
                f"column {name} has {flat.size} values, but n_hidden={n_hidden}, "
                f"n_features={n_features}, seq_len={seq_len} require shape {shape}"
            )
        arrays[name] = flat.reshape(shape)
    return arrays
