"""Splitting a static group into chunks that fit a memory budget.

Every chunk of a group is padded to the same size, so the group compiles once.
"""

import math
import os
from typing import NamedTuple

import jax
import numpy as np

from tsjax.grid import StaticGroup, StaticSpec
from tsjax.training import segment_plan

# On CPU the budget is a quarter of physical memory, capped, because XLA's CPU
# scratch space and the host-side result tables come on top of it.
CPU_BUDGET_FRACTION = 0.25
CPU_BUDGET_CAP_MB = 4096
ACCELERATOR_BUDGET_FRACTION = 0.5


class Chunk(NamedTuple):
    """Positions of a chunk's points within its group: the real ones, and the padded
    list the program runs (real positions, then repeats of the last one)."""

    real: np.ndarray
    padded: np.ndarray


def model_bytes(spec: StaticSpec) -> int:
    """Estimate the peak memory of training one model of `spec`, in bytes.

    The backward pass of the time scan keeps every step's hidden state, input, target
    and output for one batch; the eval pass and the stored results add less. The
    factor 3 covers XLA temporaries; it is an estimate, not a measurement.
    """
    per_step = spec.batch_size * spec.seq_len * (4 * spec.n_features + 3 * spec.n_hidden)
    parameters = spec.n_hidden * (spec.n_hidden + 2 * spec.n_features)
    _, segments = segment_plan(spec.steps, spec.checkpoints)
    stored = spec.seq_len * spec.n_hidden * spec.n_features * 2 + segments * 8
    return 4 * (3 * per_step + 4 * parameters + stored)


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

    Without `chunk_size`, the size comes from the memory budget and `model_bytes`.
    The padded size is a multiple of the device count, so a chunk can be sharded.
    """
    device_count = device_count or jax.local_device_count()
    if chunk_size is None:
        chunk_size = max(1, memory_budget_bytes(memory_budget_mb) // model_bytes(group.spec))
    chunks = math.ceil(len(group) / chunk_size)
    size = math.ceil(len(group) / chunks)
    size = math.ceil(size / device_count) * device_count

    plan = []
    for start in range(0, len(group), size):
        real = np.arange(start, min(start + size, len(group)))
        padded = np.concatenate([real, np.full(size - len(real), real[-1])])
        plan.append(Chunk(real, padded))
    return plan
