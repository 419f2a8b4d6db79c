"""Time tsjax against one-model-at-a-time training, side by side in one process.

For each row (a grid of one static group) the script measures, in this order and in
this one process:

- tsjax: `train_chunk` on the whole grid, sharded over one CPU device per core. The
  first call traces and compiles; a second call gives the steady time. Peak RSS is the
  process's resident-memory high-water mark during the row (reset before it through
  /proc/self/clear_refs), so it includes the interpreter, JAX, PyTorch and the
  baselines.
- per-point JAX: `jax.jit(train)` called once per grid point on a subset of points,
  after one compiling call.
- straightforward JAX: `jax.jit(jax.vmap(train))` on a subset of the grid with
  `reference=True`, so the loss runs `RNN.__call__` (one `lax.scan` per sequence)
  under `vmap` over the batch, the formulation the fast paths are tested against.
- PyTorch: a plain loop on one thread (`torch.set_num_threads(1)`) with nn.Parameter
  weights, a Python loop over time steps and torch.optim.Adam, the way a single model
  is usually trained, on a subset of models and steps. Its rate is extrapolated from
  that subset.

tsjax's time includes the held-out evaluation at the end of training and the copy of
the results to the host. The baselines time training steps only. The three trainers
alternate for two rounds and each keeps its best rate, because other processes on the
machine change the load over time. The load average is printed with each row. Useful FLOPs count
the three matmuls of the recurrence, forward and backward: 6 · seq_len · batch ·
(2 · n_hidden · n_features + n_hidden²) per model-step. The matmul peak is a float32
(2048 × 2048) matmul on every device at once, measured in the same run.

Usage: python benchmarks/bench.py [--rows NAME,...] [--markdown]
"""

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPOSITORY = Path(__file__).resolve().parent.parent
ROUNDS = 2
BENCH_CONFIG = REPOSITORY / "benchmarks" / "bench.toml"


def row_configs() -> dict[str, dict]:
    """Return each row's config text and the subset sizes the baselines time."""
    bench = BENCH_CONFIG.read_text()
    wide = """
name = "{name}"
[grid]
model = "{model}"
n_features = {n_features}
n_hidden = {n_hidden}
seq_len = 20
batch_size = 256
steps = {steps}
checkpoints = {checkpoints}
eval_samples = {eval_samples}
k = {k}
sparsity = {sparsity}
seed = {seed}
"""
    return {
        "nonlinear 2x1 (bench.toml)": dict(text=bench, torch=(4, 60), per_point=4,
                                           straightforward=32),
        "ssm 2x1": dict(text=bench.replace('model = "nonlinear"', 'model = "ssm"'),
                        torch=(4, 60), per_point=4, straightforward=32),
        "linear 2x1": dict(text=bench.replace('model = "nonlinear"', 'model = "linear"'),
                           torch=(4, 60), per_point=4, straightforward=32),
        "nonlinear 10x10": dict(text=wide.format(
            name="wide10", model="nonlinear", n_features=10, n_hidden=10, steps=100,
            checkpoints=10, eval_samples=2048, k="[1, 2, 3, 4]",
            sparsity="{linspace = [0.0, 0.95, 16]}", seed=0), torch=(2, 30), per_point=2,
            straightforward=8),
        "ssm 10x10": dict(text=wide.format(
            name="wide10", model="ssm", n_features=10, n_hidden=10, steps=100,
            checkpoints=10, eval_samples=2048, k="[1, 2, 3, 4]",
            sparsity="{linspace = [0.0, 0.95, 16]}", seed=0), torch=(2, 30), per_point=2,
            straightforward=8),
        "nonlinear 100x75": dict(text=wide.format(
            name="wide100", model="nonlinear", n_features=75, n_hidden=100, steps=20,
            checkpoints=5, eval_samples=512, k="[1, 2]", sparsity="[0.5, 0.9]",
            seed="[0, 1]"), torch=(2, 5), per_point=2, straightforward=2),
    }


def useful_flops_per_step(spec) -> float:
    """Return the matmul FLOPs of one training step of one model (forward and backward)."""
    multiply_adds = spec.n_hidden * (2 * spec.n_features + spec.n_hidden)
    return 6.0 * spec.seq_len * spec.batch_size * multiply_adds


def reset_peak_rss() -> bool:
    """Reset this process's resident-memory high-water mark (Linux 4.0 and later)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Return VmHWM, the resident-memory high-water mark, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def matmul_peak_gflops(jax, size=2048, repeats=8) -> float:
    """Measure float32 matmul GFLOP/s with every local device multiplying at once."""
    import jax.numpy as jnp
    from jax import lax
    from jax.sharding import NamedSharding, PartitionSpec

    from tsjax.distributed import GRID_AXIS, local_mesh

    mesh = local_mesh()
    devices = mesh.size

    def multiply(a, b):
        return lax.fori_loop(0, repeats, lambda i, c: jnp.matmul(c, b) * 1e-3, a)

    sharded = jax.jit(jax.shard_map(jax.vmap(multiply), mesh=mesh,
                                    in_specs=PartitionSpec(GRID_AXIS),
                                    out_specs=PartitionSpec(GRID_AXIS)))
    placement = NamedSharding(mesh, PartitionSpec(GRID_AXIS))
    a = jax.device_put(np.ones((devices, size, size), np.float32), placement)
    b = jax.device_put(np.full((devices, size, size), 0.5, np.float32), placement)
    sharded(a, b).block_until_ready()
    best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        sharded(a, b).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 * repeats * devices / best / 1e9


def time_tsjax(jax, group) -> tuple[float, float]:
    """Return (seconds of the first call, which traces and compiles, model-steps/s of
    the second call)."""
    from tsjax.training import train_chunk

    points = group.grid_points()
    start = time.perf_counter()
    jax.block_until_ready(train_chunk(points, group.spec))
    first = time.perf_counter() - start
    start = time.perf_counter()
    train_chunk(points, group.spec)
    steady = time.perf_counter() - start
    return first, len(group) * group.spec.steps / steady


def time_per_point(jax, group, count: int) -> float:
    """Return model-steps/s of `jax.jit(train)` called once per grid point."""
    from tsjax.training import train

    single = jax.jit(train, static_argnums=1)
    points = [jax.tree.map(lambda values: values[i], group.grid_points())
              for i in range(min(count + 1, len(group)))]
    jax.block_until_ready(single(points[0], group.spec))
    start = time.perf_counter()
    for point in points[1:]:
        jax.block_until_ready(single(point, group.spec))
    return (len(points) - 1) * group.spec.steps / (time.perf_counter() - start)


def time_straightforward(jax, group, count: int) -> float:
    """Return model-steps/s of `jax.jit(jax.vmap(train))` with the reference forward pass
    on the first `count` points of the grid, after one compiling call."""
    import functools

    from tsjax.training import train

    reference = jax.jit(jax.vmap(functools.partial(train, reference=True), in_axes=(0, None)),
                        static_argnums=1)
    points = jax.tree.map(lambda values: values[:count], group.grid_points())
    jax.block_until_ready(reference(points, group.spec))
    start = time.perf_counter()
    jax.block_until_ready(reference(points, group.spec))
    return count * group.spec.steps / (time.perf_counter() - start)


def torch_model_steps_per_second(spec, models: int, steps: int, sparsity=0.9, k=2) -> float:
    """Train `models` models for `steps` steps, one after another, in a plain PyTorch loop."""
    import torch

    torch.set_num_threads(1)
    activations = {"identity": lambda x: x, "relu": torch.relu}
    sigma_h, sigma_y = activations[spec.sigma_h], activations[spec.sigma_y]
    n_hidden, n_features, seq_len, batch = (spec.n_hidden, spec.n_features, spec.seq_len,
                                            spec.batch_size)

    def train_one(seed):
        generator = torch.Generator().manual_seed(seed)
        W_x = torch.nn.Parameter(torch.randn(n_hidden, n_features, generator=generator)
                                 / n_features**0.5)
        W_h = torch.nn.Parameter(torch.randn(n_hidden, n_hidden, generator=generator)
                                 * 0.5 / n_hidden**0.5)
        W_y = torch.nn.Parameter(torch.randn(n_hidden, n_features, generator=generator)
                                 / n_hidden**0.5)
        optimizer = torch.optim.Adam([W_x, W_h, W_y], lr=0.01)
        for _ in range(steps):
            u = torch.rand(batch, seq_len, n_features, generator=generator)
            xs = torch.where(u >= sparsity, (u - sparsity) / (1 - sparsity), 0.0)
            targets = torch.zeros_like(xs)
            targets[:, k:] = xs[:, :seq_len - k]
            h = torch.zeros(batch, n_hidden)
            loss = 0.0
            for t in range(seq_len):
                h = xs[:, t] @ W_x.T + sigma_h(h) @ W_h.T
                loss = loss + ((sigma_y(h @ W_y) - targets[:, t]) ** 2).sum()
            loss = loss / batch
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    train_one(1000)  # warm up allocators and autograd
    start = time.perf_counter()
    for seed in range(models):
        train_one(seed)
    return models * steps / (time.perf_counter() - start)


def main(argv=None) -> int:
    configs = row_configs()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", help="comma-separated row names (default: all): "
                                       + "; ".join(configs))
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args(argv)
    names = list(configs) if args.rows is None else [n.strip() for n in args.rows.split(",")]
    unknown = [name for name in names if name not in configs]
    if unknown:
        parser.error(f"unknown row {unknown[0]!r}; valid rows: {', '.join(configs)}")

    # Compile seconds are only meaningful with an empty persistent cache.
    cache = tempfile.TemporaryDirectory(prefix="tsjax-bench-cache-")
    os.environ.setdefault("TSJAX_CACHE_DIR", cache.name)

    from tsjax import distributed
    distributed.use_cpu_cores()  # before JAX starts its backend
    import jax

    from tsjax.config import parse_config
    from tsjax.grid import expand_grid

    peak = matmul_peak_gflops(jax)
    print(f"devices: {jax.device_count()} x {jax.devices()[0].device_kind}; float32 matmul "
          f"peak {peak:.1f} GFLOP/s", flush=True)

    results = []
    for name in names:
        row = configs[name]
        (group,) = expand_grid(parse_config(row["text"]))
        # Other processes may load the machine unevenly over time, so the three
        # trainers alternate for ROUNDS rounds and each keeps its best round.
        reset_peak_rss()
        rates = {"rate": [], "per_point": [], "torch": []}
        straightforward = time_straightforward(jax, group, row["straightforward"])
        first_calls = []
        for _ in range(ROUNDS):
            first, rate = time_tsjax(jax, group)
            first_calls.append(first)
            rates["rate"].append(rate)
            rates["per_point"].append(time_per_point(jax, group, row["per_point"]))
            rates["torch"].append(torch_model_steps_per_second(group.spec, *row["torch"]))
        measured = {key: max(values) for key, values in rates.items()}
        measured["straightforward"] = straightforward
        # The first call of the first round compiles; later first calls hit the
        # in-memory cache, so their time is a run.
        measured["compile_s"] = max(first_calls[0] - len(group) * group.spec.steps
                                    / measured["rate"], 0.0)
        measured["peak_rss_mb"] = peak_rss_mb()
        measured["gflops"] = measured["rate"] * useful_flops_per_step(group.spec) / 1e9
        measured.update(name=name, models=len(group), steps=group.spec.steps,
                        load=os.getloadavg()[0])
        results.append(measured)
        print(f"{name}: {measured['rate']:.0f} model-steps/s tsjax, "
              f"{measured['per_point']:.0f} per-point jit, "
              f"{measured['straightforward']:.0f} straightforward jit(vmap), "
              f"{measured['torch']:.0f} torch "
              f"({measured['rate'] / measured['torch']:.0f}x); compile "
              f"{measured['compile_s']:.1f} s; peak RSS {measured['peak_rss_mb']:.0f} MiB; "
              f"{measured['gflops']:.2f} GFLOP/s; load average {measured['load']:.1f}",
              flush=True)

    if args.markdown:
        print_markdown(results, peak)
    return 0


def print_markdown(results: list[dict], peak: float) -> None:
    print()
    print("| row | models × steps | compile s | tsjax model-steps/s | peak RSS MiB | "
          "useful GFLOP/s (% of matmul peak) | straightforward jit(vmap) model-steps/s | "
          "per-point jit model-steps/s | PyTorch model-steps/s | tsjax / PyTorch | "
          "straightforward / PyTorch | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['name']} | {r['models']} × {r['steps']} | {r['compile_s']:.1f} | "
              f"{r['rate']:,.0f} | {r['peak_rss_mb']:,.0f} | {r['gflops']:.2f} "
              f"({100 * r['gflops'] / peak:.1f}%) | {r['straightforward']:,.0f} | "
              f"{r['per_point']:,.0f} | {r['torch']:,.0f} | {r['rate'] / r['torch']:.0f}× | "
              f"{r['straightforward'] / r['torch']:.1f}× | {r['load']:.1f} |")


if __name__ == "__main__":
    sys.exit(main())
