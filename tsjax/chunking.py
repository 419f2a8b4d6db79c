"""Splitting a static group into chunks that fit a memory budget.

Every chunk of a group is padded to the same size, so the group compiles once.
"""

import math
import os
from typing import NamedTuple

import jax
import numpy as np

from tsjax.grid import StaticGroup, StaticSpec
from tsjax.training import default_block_size, segment_plan

# On CPU the budget is a quarter of physical memory, capped, because XLA's CPU
# scratch space and the host-side result tables come on top of it.
CPU_BUDGET_FRACTION = 0.25
CPU_BUDGET_CAP_MB = 4096
ACCELERATOR_BUDGET_FRACTION = 0.5

# Chunks hold at most this many models unless `chunk_size` requests more. Blocks train
# one after another, so larger chunks do not train faster, and a fixed cap keeps the
# peak memory of a sweep independent of its grid size (BENCHMARKS.md shows it flat from
# 4,096 to 65,536 models). A chunk of 4,096 benchmark models trains in about 20 s.
MAX_CHUNK_MODELS = 4096

# Checkpoint metric values per checkpoint (the theory loss terms); an estimate.
CHECKPOINT_METRICS_ESTIMATE = 8
# Peak RSS of `tsjax sweep` grew by about 44 KB per model of a chunk for the benchmark
# model (chunks of 1,024 and 4,096, BENCHMARKS.md), most of it not in the arrays above.
# NOTE: in-process measurements of train_chunk plus chunk_rows grew by only about 5 KB
# per model. Where the rest goes in the CLI process is not known.
ROW_OVERHEAD_BYTES = 40_000


class Chunk(NamedTuple):
    """Positions of a chunk's points within its group: the real ones, and the padded
    list the program runs (real positions, then repeats of the last one)."""

    real: np.ndarray
    padded: np.ndarray


def model_bytes(spec: StaticSpec) -> int:
    """Estimate the memory that one model of `spec` holds for a whole chunk, in bytes.

    A chunk's blocks train one after another, so what grows with the chunk is each
    model's results: on the device, on the host as numpy arrays, and in the chunk's
    Arrow table (about three float32 copies in all), plus `ROW_OVERHEAD_BYTES`.
    """
    _, segments = segment_plan(spec.steps, spec.checkpoints)
    parameters = spec.n_hidden * (spec.n_hidden + 2 * spec.n_features) + spec.n_features
    geometry = spec.seq_len * spec.n_features * (spec.n_hidden + spec.n_features)
    curves = segments * (1 + CHECKPOINT_METRICS_ESTIMATE)
    return 4 * 3 * (parameters + geometry + curves + spec.n_features) + ROW_OVERHEAD_BYTES


def block_bytes(spec: StaticSpec, block_size: int) -> int:
    """Estimate the working memory of one block in flight, in bytes.

    The backward pass keeps each step's hidden states and the batch's inputs, targets,
    outputs and their cotangents; the factor 3 covers XLA temporaries. An estimate.
    """
    per_model = spec.batch_size * spec.seq_len * (4 * spec.n_hidden + 6 * spec.n_features)
    return 4 * 3 * per_model * block_size


def memory_budget_bytes(memory_budget_mb: float | None = None) -> int:
    """Return the chunk memory budget: the given value, or one derived from the device."""
    if memory_budget_mb is not None:
        return int(memory_budget_mb * 2**20)
    device = jax.local_devices()[0]
    if device.platform != "cpu":
        stats = device.memory_stats() or {}
        if "bytes_limit" in stats:
            return int(stats["bytes_limit"] * ACCELERATOR_BUDGET_FRACTION)
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return int(min(physical * CPU_BUDGET_FRACTION, CPU_BUDGET_CAP_MB * 2**20))


def plan_chunks(group: StaticGroup, *, chunk_size: int | None = None,
                memory_budget_mb: float | None = None,
                device_count: int | None = None) -> list[Chunk]:
    """Split a group into balanced chunks of at most `chunk_size` points.

    Without `chunk_size`, the size comes from the memory budget, `model_bytes` and
    `block_bytes`, capped at `MAX_CHUNK_MODELS`, so peak memory stops growing with the
    grid. The padded size is a multiple of the block size times the device count, so
    every device trains whole blocks and no padding beyond the last block is wasted.
    """
    device_count = device_count or jax.local_device_count()
    spec = group.spec
    block = default_block_size(spec)
    if chunk_size is None:
        budget = memory_budget_bytes(memory_budget_mb) - device_count * block_bytes(spec, block)
        chunk_size = min(MAX_CHUNK_MODELS, max(1, budget // model_bytes(spec)))
    chunks = math.ceil(len(group) / chunk_size)
    size = math.ceil(len(group) / chunks)
    per_call = min(block, math.ceil(size / device_count)) * device_count
    size = math.ceil(size / per_call) * per_call

    return split_into_chunks(len(group), size)


def pad_positions(real: np.ndarray, size: int) -> np.ndarray:
    """Extend positions `real` to `size` entries by repeating the last one."""
    return np.concatenate([real, np.full(size - len(real), real[-1])])


def split_into_chunks(count: int, size: int) -> list[Chunk]:
    """Split positions 0 .. count-1 into consecutive chunks, each padded to `size`."""
    chunks = []
    for start in range(0, count, size):
        real = np.arange(start, min(start + size, count))
        chunks.append(Chunk(real, pad_positions(real, size)))
    return chunks
