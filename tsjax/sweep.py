"""Running a sweep: plan chunks, train them, write each one as it finishes."""

import dataclasses
import time
from collections import Counter
from pathlib import Path

import jax
import numpy as np
import pyarrow.parquet as pq
from tqdm import tqdm

from tsjax.chunking import plan_chunks
from tsjax.config import SweepConfig
from tsjax.dataset import ResultsDir
from tsjax.grid import StaticGroup, expand_grid
from tsjax.results import chunk_rows
from tsjax.training import train_chunk


class SweepInterrupted(Exception):
    """The user stopped the sweep; finished chunks are saved and a rerun resumes."""


@dataclasses.dataclass
class SweepSummary:
    """What a sweep run did and what its results directory now holds."""

    out: Path
    grid_size: int
    trained: int
    skipped: int
    status_counts: dict[str, int]
    seconds: float

    def describe(self) -> str:
        counts = ", ".join(f"{self.status_counts.get(name, 0)} {name}"
                           for name in ("ok", "dead", "diverged"))
        return (f"trained {self.trained} models in {self.seconds:.1f} s "
                f"({self.skipped} already done); dataset of {self.grid_size} models: {counts}; "
                f"results in {self.out}")


def default_out(config: SweepConfig) -> Path:
    return Path("results") / config.name


def run_sweep(config: SweepConfig, out=None, *, overwrite: bool = False,
              chunk_size: int | None = None, progress: bool = True) -> SweepSummary:
    """Train every grid point of `config` not yet in `out` and write its rows there.

    Raises `SweepInterrupted` on Ctrl-C after the chunk in flight is dropped; the parts
    already written stay valid and a rerun of the same call trains only the rest.
    """
    start = time.perf_counter()
    out = Path(out) if out is not None else default_out(config)
    results_dir = ResultsDir(out)
    finished = results_dir.prepare(config, overwrite=overwrite)

    all_groups = expand_grid(config)
    group_index = {group.spec: index for index, group in enumerate(all_groups)}
    remaining = np.setdiff1d(np.arange(config.grid_size), finished)
    groups = expand_grid(config, remaining) if len(remaining) else []
    chunk_size = chunk_size or config.chunk_size
    chunks = [(group, positions)
              for group in groups
              for positions in plan_chunks(group, chunk_size=chunk_size,
                                           memory_budget_mb=config.memory_budget_mb)]

    trained = 0
    bar = tqdm(total=len(remaining), unit="model", disable=not progress,
               desc=f"sweep {config.name}")
    try:
        for group, positions in chunks:
            chunk = group.select(positions.real)
            table = train_padded(config.name, chunk, len(positions.padded))
            results_dir.write_chunk(table, group_index[group.spec])
            trained += len(chunk)
            bar.update(len(chunk))
    except KeyboardInterrupt:
        bar.close()
        raise SweepInterrupted(
            f"interrupted: {len(finished) + trained} of {config.grid_size} models are saved "
            f"in {out}; run the same command again to train the rest") from None
    bar.close()

    return SweepSummary(out=out, grid_size=config.grid_size, trained=trained,
                        skipped=len(finished), status_counts=status_counts(out),
                        seconds=time.perf_counter() - start)


def train_padded(sweep: str, chunk: StaticGroup, padded_size: int):
    """Train a chunk padded to `padded_size` points, so every chunk of a static group
    has one shape and compiles once; return the rows of the real points only."""
    count = len(chunk)
    pad = np.concatenate([np.arange(count), np.full(padded_size - count, count - 1)])
    result = train_chunk(chunk.grid_points(pad), chunk.spec)
    result = jax.tree.map(lambda leaf: np.asarray(leaf)[:count], result)
    return chunk_rows(sweep, chunk, result)


def status_counts(out: Path) -> dict[str, int]:
    """Count the status of every recorded model in a results directory."""
    counts = Counter()
    for record in ResultsDir(out).chunk_records():
        table = pq.read_table(Path(out) / record["part"], columns=["status"])
        counts.update(table.column("status").to_pylist())
    return dict(counts)
