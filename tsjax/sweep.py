"""Running a sweep: plan chunks, train them, write each one as it finishes.

A point's result can change in the last float32 bits with the padded size of its chunk,
because XLA compiles a separate program for each shape. On CPU with jax 0.10, padded
sizes 1, 2 to 15, and 16 or more were measured to round differently. At a fixed padded
size, neither the other points of the chunk nor the point's position in it change its
result. So each static group keeps one padded chunk size, recorded in the manifest, and
a resumed sweep splits its remaining points into chunks of that size. Its rows then
equal those of an uninterrupted run bit for bit.
"""

import dataclasses
import logging
import numbers
import os
import signal
import threading
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import jax
import numpy as np
import pyarrow.parquet as pq
from tqdm import tqdm

from tsjax import distributed
from tsjax.chunking import Chunk, pad_positions, plan_chunks, split_into_chunks
from tsjax.config import SweepConfig
from tsjax.dataset import ResultsDir, ResultsDirError
from tsjax.grid import StaticGroup, expand_grid
from tsjax.results import chunk_rows
from tsjax.training import train_chunk

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class SweepInterrupted(Exception):
    """The user stopped the sweep; finished chunks are saved and a rerun resumes."""

    def __init__(self, saved: int, grid_size: int, out: Path, signal_number: int):
        self.saved = saved
        self.grid_size = grid_size
        self.out = out
        self.signal_number = signal_number
        super().__init__(f"interrupted: {saved} of {grid_size} models are saved in {out}; "
                         "run the same command again to train the rest")


class SweepFailed(RuntimeError):
    """Training or writing a chunk failed; the chunks written before stay valid.

    The message is one line with the number of saved models and how to resume.
    """


@dataclasses.dataclass
class SweepSummary:
    """Summary of a sweep run and of the results directory it leaves."""

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

    Called in the main thread, the sweep turns the first SIGINT or SIGTERM into a stop
    after the chunk in flight is written, and then raises `SweepInterrupted`. A second
    signal drops that chunk. Raises ValueError for an empty `out` or a `chunk_size` that
    is not an integer >= 1 or None, `ResultsDirError` when `out` cannot be used, and
    `SweepFailed` when a chunk fails to train or write. In every case the parts already
    written stay valid, and a rerun of the same call trains only the rest.
    """
    start = time.perf_counter()
    _check_run_arguments(out, chunk_size)
    out = Path(out) if out is not None else default_out(config)
    all_groups = expand_grid(config)
    request = int(chunk_size) if chunk_size is not None else config.chunk_size
    planned = [planned_chunk_size(group, request, config.memory_budget_mb)
               for group in all_groups]

    with ResultsDir(out) as results_dir, _stop_on_signals() as stop:
        finished, sizes = _open_results(results_dir, config, overwrite, request, planned)
        chunks = distributed.process_share(plan_remaining(config, all_groups, finished, sizes))
        trained = _train_chunks(config, results_dir, chunks, stop, progress,
                                already_saved=len(finished))
        distributed.barrier("tsjax-sweep-trained")

    return SweepSummary(out=out, grid_size=config.grid_size, trained=trained,
                        skipped=len(finished), status_counts=status_counts(out),
                        seconds=time.perf_counter() - start)


def _open_results(results_dir: ResultsDir, config: SweepConfig, overwrite: bool,
                  request: int | None, planned: list[int]) -> tuple[np.ndarray, list[int]]:
    """Return the finished point ids and the chunk sizes in force for this run.

    Process 0 prepares the directory and the other processes of a multi-process run
    attach to it. Process 0 writes no part until every process has read the finished
    points, so all of them plan the same chunks.
    """
    if distributed.is_main_process():
        finished = results_dir.prepare(
            config, overwrite=overwrite,
            run_settings={"chunk_size_request": request, "chunk_sizes": planned})
        resuming = 0 < len(finished) < config.grid_size
        sizes = _chunk_sizes_in_force(results_dir, request, planned, resuming)
    distributed.barrier("tsjax-results-prepared")
    if not distributed.is_main_process():
        finished = results_dir.attach(config)
        sizes = results_dir.manifest["chunk_sizes"]
    distributed.barrier("tsjax-results-read")
    return finished, sizes


def _check_run_arguments(out, chunk_size) -> None:
    # Path("") is the current directory, which is almost never the intended output.
    if isinstance(out, str) and not out:
        raise ValueError(f"invalid out={out!r}; expected a directory path or None "
                         "(results/<sweep name>)")
    if chunk_size is not None and (isinstance(chunk_size, bool)
                                   or not isinstance(chunk_size, numbers.Integral)
                                   or chunk_size < 1):
        raise ValueError(f"invalid chunk_size={chunk_size!r}; expected an integer >= 1 or "
                         "None (sized from the memory budget)")


def _train_chunks(config, results_dir, chunks, stop, progress, already_saved) -> int:
    """Train and write `chunks` in order; return the number of models trained."""
    trained = 0
    total = sum(len(chunk.real) for _, _, chunk in chunks)
    bar = tqdm(total=total, unit="model", disable=not progress, desc=f"sweep {config.name}")

    def saved():
        return already_saved + trained

    try:
        for group_index, group, chunk in chunks:
            if stop.signal_number is not None:
                raise SweepInterrupted(saved(), config.grid_size, results_dir.path,
                                       stop.signal_number)
            points = group.select(chunk.real)
            try:
                table = train_padded(config.name, points, len(chunk.padded))
            except jax.errors.JaxRuntimeError as error:
                first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
                raise SweepFailed(
                    f"training a chunk of {len(chunk.padded)} models of group "
                    f"{group_index} failed ({first_line}); {saved()} of {config.grid_size} "
                    f"models are saved in {results_dir.path}; if memory ran out, pass a "
                    "smaller --chunk-size, then run the same command to resume") from None
            try:
                results_dir.write_chunk(table, group_index)
            except ResultsDirError as error:
                raise SweepFailed(f"{error}; {saved()} of {config.grid_size} models are "
                                  "saved; fix the cause, then run the same command to "
                                  "resume") from None
            trained += len(points)
            bar.update(len(points))
    except KeyboardInterrupt:
        raise SweepInterrupted(saved(), config.grid_size, results_dir.path,
                               stop.signal_number or signal.SIGINT) from None
    finally:
        bar.close()
    return trained


def planned_chunk_size(group: StaticGroup, request: int | None,
                       memory_budget_mb: float | None) -> int:
    """Return the padded chunk size that `plan_chunks` picks for a whole static group."""
    plan = plan_chunks(group, chunk_size=request, memory_budget_mb=memory_budget_mb)
    return len(plan[0].padded)


def _chunk_sizes_in_force(results_dir: ResultsDir, request: int | None,
                          planned: list[int], resuming: bool) -> list[int]:
    """Return the padded chunk size of each group for this run.

    A resume keeps the sizes recorded in the manifest, so its rows equal those of an
    uninterrupted run. A different explicit chunk size (or recorded sizes that no longer
    divide among the devices) replaces them, and only rows trained from now on use the
    new sizes.
    """
    manifest = results_dir.manifest
    recorded = manifest.get("chunk_sizes")
    device_count = jax.local_device_count()
    valid = (isinstance(recorded, list) and len(recorded) == len(planned)
             and all(isinstance(size, int) and size >= 1 and size % device_count == 0
                     for size in recorded))
    if valid and manifest.get("chunk_size_request") == request:
        return recorded
    if resuming:
        logger.warning(
            "resuming %s with chunk sizes %s instead of the recorded %s; models trained "
            "from now on may differ from an uninterrupted run in the last float32 bits",
            results_dir.path, planned, recorded)
    results_dir.update_manifest(chunk_size_request=request, chunk_sizes=planned)
    return planned


def plan_remaining(config: SweepConfig, all_groups: list[StaticGroup],
                   finished: np.ndarray, sizes: list[int]) -> list[tuple[int, StaticGroup, Chunk]]:
    """Split the points not in `finished` into chunks of each group's fixed size.

    Returns (group index, group, chunk) triples in grid order. Every chunk of a group is
    padded to the group's size with repeats of its last point, so the group compiles
    once and a point's result does not depend on which points remain.
    """
    remaining = np.setdiff1d(np.arange(config.grid_size), finished)
    if not len(remaining):
        return []
    group_index = {group.spec: index for index, group in enumerate(all_groups)}
    chunks = []
    for group in expand_grid(config, remaining):
        index = group_index[group.spec]
        size = sizes[index]
        chunks.extend((index, group, chunk) for chunk in split_into_chunks(len(group), size))
    return chunks


def train_padded(sweep: str, chunk: StaticGroup, padded_size: int):
    """Train a chunk padded to `padded_size` points and return the rows of its real points.

    Padding gives every chunk of a static group one shape, so the group compiles once.
    """
    count = len(chunk)
    result = train_chunk(chunk.grid_points(pad_positions(np.arange(count), padded_size)),
                         chunk.spec)
    result = jax.tree.map(lambda leaf: np.asarray(leaf)[:count], result)
    return chunk_rows(sweep, chunk, result)


def status_counts(out: Path) -> dict[str, int]:
    """Count the status of every recorded model in a results directory."""
    counts = Counter()
    for record in ResultsDir(out).chunk_records():
        table = pq.read_table(Path(out) / record["part"], columns=["status"])
        counts.update(table.column("status").to_pylist())
    return dict(counts)


class _StopRequest:
    """The first stop signal received, or None."""

    signal_number: int | None = None


@contextmanager
def _stop_on_signals():
    """Turn the first SIGINT or SIGTERM into a stop request; a second one raises
    KeyboardInterrupt. Outside the main thread, signals keep their handlers."""
    stop = _StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def request_stop(signal_number, frame):
        if stop.signal_number is not None:
            raise KeyboardInterrupt
        stop.signal_number = signal_number
        # os.write, because print could re-enter a stderr write that this signal
        # interrupted (the progress bar writes there).
        os.write(2, f"\ntsjax: {signal.Signals(signal_number).name} received; stopping "
                    "after the chunk in progress is saved (send it again to stop at once)\n"
                 .encode())

    previous = {number: signal.signal(number, request_stop) for number in STOP_SIGNALS}
    try:
        yield stop
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
