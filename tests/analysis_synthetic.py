"""Synthetic tsjax results for the analysis tests, built with numpy only.

Each model's k_theta_deg follows a sigmoid step in sparsity from 90 to 270 degrees plus
Gaussian noise, and its weights are a scaled rotation, so the rows look like a real sweep
with known critical sparsities.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd


def true_critical_sparsity(model: str, k: int) -> float:
    """Critical sparsity used to generate the synthetic order parameter."""
    return 0.35 + 0.1 * k + (0.05 if model == "nonlinear" else 0.0)


TRUE_WIDTH = 0.03


def _model_arrays(theta_deg: float, k: int, radius: float, n_features: int, seq_len: int, rng) -> dict:
    step = np.deg2rad(theta_deg) / k
    rotation = np.array([[np.cos(step), -np.sin(step)], [np.sin(step), np.cos(step)]])
    w_h = radius * rotation
    w_x = rng.normal(size=(2, n_features))
    w_y = rng.normal(size=(2, n_features))
    directions = np.stack([np.linalg.matrix_power(w_h, s) @ w_x for s in range(seq_len)])
    projections = np.einsum("hi,shj->sij", w_y, directions)
    return {
        "W_x": w_x,
        "W_h": w_h,
        "W_y": w_y,
        "feature_directions": directions,
        "projections": projections,
    }


def synthetic_results(
    models=("linear", "nonlinear"),
    ks=(1, 2),
    sparsities=np.linspace(0.05, 0.95, 19),
    seeds=(0, 1, 2, 3),
    n_features: int = 1,
    seq_len: int = 6,
    noise_deg: float = 6.0,
    rng: int = 0,
) -> pd.DataFrame:
    """Build a results table with every column of the data contract, all rows ``ok``."""
    generator = np.random.default_rng(rng)
    rows = []
    for model in models:
        for k in ks:
            critical = true_critical_sparsity(model, k)
            for sparsity in sparsities:
                step = 1.0 / (1.0 + np.exp(-(sparsity - critical) / TRUE_WIDTH))
                for seed in seeds:
                    theta = 90.0 + 180.0 * step + generator.normal(scale=noise_deg)
                    radius = 1.0 - 0.4 * step + generator.normal(scale=0.01)
                    arrays = _model_arrays(theta, k, radius, n_features, seq_len, generator)
                    steps = np.arange(1, 11, dtype=np.int32) * 100
                    rows.append(
                        {
                            "sweep": "synthetic",
                            "point_id": len(rows),
                            "model": model,
                            "sigma_h": "relu" if model == "nonlinear" else "identity",
                            "sigma_y": "relu" if model == "nonlinear" else "identity",
                            "n_features": n_features,
                            "n_hidden": 2,
                            "seq_len": seq_len,
                            "k": k,
                            "batch_size": 64,
                            "steps": 1000,
                            "sparsity": float(sparsity),
                            "seed": seed,
                            "learning_rate": 1e-2,
                            "magnitude_low": 0.0,
                            "magnitude_high": 1.0,
                            "importance_decay": 1.0,
                            "init_scale": 1.0,
                            "init_spectral_norm": 1.0,
                            "optimizer": "adam",
                            "readout_bias": False,
                            "trainer": "synthetic",
                            "final_loss": float(generator.uniform(0.01, 0.1)),
                            "eval_loss": float(generator.uniform(0.01, 0.1)),
                            "eval_loss_stderr": 1e-3,
                            "status": "ok",
                            "diverged_step": -1,
                            "k_theta_deg": theta,
                            "spectral_radius": radius,
                            "loss_curve": (0.1 * np.exp(-steps / 400.0) + 0.01).astype(np.float32),
                            "loss_curve_step": steps,
                            **{name: value.astype(np.float32).ravel() for name, value in arrays.items()},
                        }
                    )
    frame = pd.DataFrame(rows)
    frame["steps"] = frame["steps"].astype(np.int32)
    frame["diverged_step"] = frame["diverged_step"].astype(np.int32)
    return frame


def write_results_dir(
    frame: pd.DataFrame,
    directory: Path,
    n_parts: int = 2,
    schema_version: int = 1,
    with_chunks: bool = True,
    orphan: pd.DataFrame | None = None,
) -> Path:
    """Write ``frame`` as a results directory the way the engine does and return the directory.

    The rows are split into ``n_parts`` part files, each with a ``_chunks/`` record when
    ``with_chunks`` is set. ``orphan`` rows go to a part file with no chunk record.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    manifest = {"schema_version": schema_version, "sweep": "synthetic"}
    (directory / "_manifest.json").write_text(json.dumps(manifest))
    if with_chunks:
        (directory / "_chunks").mkdir(exist_ok=True)

    for index, part in enumerate(np.array_split(np.arange(len(frame)), n_parts)):
        name = f"part-{index:05d}.parquet"
        frame.iloc[part].to_parquet(directory / name, index=False)
        if with_chunks:
            record = {"part": name, "point_ids": frame["point_id"].iloc[part].tolist()}
            (directory / "_chunks" / f"chunk-{index:05d}.json").write_text(json.dumps(record))

    if orphan is not None:
        orphan.to_parquet(directory / "part-99999.parquet", index=False)
    return directory
