"""Devices and processes: the mesh a chunk is sharded over, and multi-host runs.

Within one process, `train_chunk` shards a chunk's grid axis over every local device
through a 1-D mesh whose axis is named `grid`, and the devices never communicate. On
a CPU, `use_cpu_cores` exposes one JAX device per core, which is how a sweep uses
every core. XLA's own threading within one device measured about 3 times slower on the
benchmark grid (BENCHMARKS.md).

Across processes, `initialize` connects them through `jax.distributed`. Process 0
prepares the results directory, the others attach to it, every process trains the
chunks whose index i satisfies i % process_count == process_index, and each writes its
own part files (one part and one chunk record per chunk, so writers never collide).
"""

import logging
import os

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh

logger = logging.getLogger(__name__)

GRID_AXIS = "grid"

COORDINATOR_VARIABLE = "TSJAX_COORDINATOR"
NUM_PROCESSES_VARIABLE = "TSJAX_NUM_PROCESSES"
PROCESS_ID_VARIABLE = "TSJAX_PROCESS_ID"


def local_mesh() -> Mesh:
    """Return the 1-D mesh over this process's devices, axis name `grid`."""
    return Mesh(np.array(jax.local_devices()), (GRID_AXIS,))


def available_cores() -> int:
    """Return the number of CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def use_cpu_cores(count: int | None = None) -> int | None:
    """Expose `count` JAX CPU devices (default: one per available core).

    Must run before JAX initializes its backends. Afterwards it changes nothing and
    returns None, and so it does when the user already chose a count
    (`JAX_NUM_CPU_DEVICES`, or `--xla_force_host_platform_device_count` in `XLA_FLAGS`).
    Accelerator backends are not affected. Returns the count it set.
    """
    if ("JAX_NUM_CPU_DEVICES" in os.environ
            or "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "")):
        return None
    count = count or available_cores()
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError as error:
        # JAX raises once a backend exists; the process keeps its devices.
        logger.info("keeping the existing JAX CPU devices: %s", error)
        return None
    return count


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> bool:
    """Join a multi-process run through `jax.distributed`, if one is requested.

    Arguments left as None come from the environment variables `TSJAX_COORDINATOR`
    (host:port of process 0), `TSJAX_NUM_PROCESSES` and `TSJAX_PROCESS_ID`. Returns
    False, doing nothing, when no coordinator is given. Raises ValueError when the
    coordinator is given without the process count or id, or they are out of range.
    """
    coordinator = coordinator or os.environ.get(COORDINATOR_VARIABLE)
    if not coordinator:
        return False
    num_processes = num_processes if num_processes is not None else _environment_int(
        NUM_PROCESSES_VARIABLE)
    process_id = process_id if process_id is not None else _environment_int(
        PROCESS_ID_VARIABLE)
    if num_processes is None or process_id is None:
        raise ValueError(f"coordinator {coordinator!r} is set but the process count or id "
                         "is missing; pass --num-processes and --process-id (or set "
                         f"{NUM_PROCESSES_VARIABLE} and {PROCESS_ID_VARIABLE})")
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise ValueError(f"invalid process id {process_id} for {num_processes} processes; "
                         "expected 0 <= process id < number of processes >= 1")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id)
    logger.info("joined %s as process %d of %d", coordinator, process_id, num_processes)
    return True


def _environment_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is invalid; expected an "
                         "integer") from None


def is_main_process() -> bool:
    """Return whether this is process 0, the one that prepares the results directory."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Wait until every process reaches the barrier `name`; free in a single process."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def process_share(items: list) -> list:
    """Return the items this process handles: every process_count-th, from its index."""
    return items[jax.process_index()::jax.process_count()]
