"""Measure the peak memory of `tsjax sweep` as the grid and the chunk size grow.

Each run is a separate `tsjax sweep` process under `/usr/bin/time -v`, which reports
the child's peak resident set size. The grid is the benchmark model (ReLU RNN,
n_hidden = 2, n_features = 1, batch 256) with few steps, scaled by the number of
sparsity values. With the default chunk size the peak should not depend on the grid
size. Runs with explicit chunk sizes give the memory per model of a chunk, which is
compared with the estimate `tsjax.chunking.model_bytes`.

Usage: python benchmarks/memory.py [--sizes 4096,16384,65536] [--chunk-sizes 1024,4096]
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIG = """
name = "memory"
[grid]
model = "nonlinear"
n_features = 1
n_hidden = 2
seq_len = 20
batch_size = 256
steps = 20
checkpoints = 4
eval_samples = 256
k = [1, 2, 3, 4]
sparsity = {{linspace = [0.0, 0.95, {sparsities}]}}
seed = [0, 1, 2, 3]
"""


def run_sweep(config_text: str, scratch: Path, chunk_size: int | None) -> tuple[float, float]:
    """Run one sweep in a child process; return (peak RSS in MiB, wall seconds)."""
    config = scratch / "config.toml"
    config.write_text(config_text)
    out = scratch / f"out-{time.monotonic_ns()}"
    command = ["/usr/bin/time", "-v", sys.executable, "-m", "tsjax.cli", "sweep", str(config),
               "--out", str(out), "--no-progress"]
    if chunk_size is not None:
        command += ["--chunk-size", str(chunk_size)]
    start = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if completed.returncode != 0:
        raise RuntimeError(f"sweep failed (exit {completed.returncode}): "
                           f"{completed.stderr.strip()[-2000:]}")
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", completed.stderr)
    if match is None:
        raise RuntimeError("/usr/bin/time -v printed no maximum resident set size")
    return int(match.group(1)) / 1024, wall


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="4096,16384,65536",
                        help="grid sizes, multiples of 16 (default: %(default)s)")
    parser.add_argument("--chunk-sizes", default="1024,4096",
                        help="explicit chunk sizes for the per-model slope, run on the "
                             "smallest grid (default: %(default)s)")
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",")]
    chunk_sizes = [int(size) for size in args.chunk_sizes.split(",") if size]

    from tsjax.chunking import model_bytes, plan_chunks
    from tsjax.config import parse_config
    from tsjax.grid import expand_grid

    # The runs share one empty compilation cache, so no earlier program is reused.
    with tempfile.TemporaryDirectory(prefix="tsjax-memory-") as scratch:
        scratch = Path(scratch)
        os.environ["TSJAX_CACHE_DIR"] = str(scratch / "jax_cache")
        print("| grid models | chunk size | compilation cache | peak RSS MiB | sweep wall s |")
        print("|---|---|---|---|---|")
        for index, size in enumerate(sizes):
            text = CONFIG.format(sparsities=size // 16)
            (group,) = expand_grid(parse_config(text))
            chunk = len(plan_chunks(group)[0].padded)
            # The first run compiles, which takes more memory than training. The others
            # load the program from the cache, because every grid has the same chunk shape.
            runs = ("cold", "warm") if index == 0 else ("warm",)
            for cache in runs:
                peak, wall = run_sweep(text, scratch, None)
                print(f"| {size:,} | {chunk:,} (default) | {cache} | {peak:,.0f} | "
                      f"{wall:.1f} |", flush=True)

        text = CONFIG.format(sparsities=sizes[0] // 16)
        peaks = []
        for chunk_size in chunk_sizes:
            run_sweep(text, scratch, chunk_size)  # compiles this chunk shape
            peak, wall = run_sweep(text, scratch, chunk_size)
            peaks.append(peak)
            print(f"| {sizes[0]:,} | {chunk_size:,} | warm | {peak:,.0f} | {wall:.1f} |",
                  flush=True)
        if len(chunk_sizes) >= 2:
            (group,) = expand_grid(parse_config(text))
            slope = (peaks[-1] - peaks[0]) * 2**20 / (chunk_sizes[-1] - chunk_sizes[0])
            print(f"\nmeasured memory per model of a chunk: {slope:,.0f} bytes; "
                  f"estimate model_bytes: {model_bytes(group.spec):,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
