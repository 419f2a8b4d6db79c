#!/usr/bin/env bash
# Time the benchmark grid scaled to 65,536 models on a CUDA GPU.
#
# Installs tsjax with the CUDA 12 build of JAX into its own virtual environment
# (default .venv-gpu), then trains benchmarks/bench.toml with the seed axis widened
# from 4 to 1,024 seeds (16 sparsities x 4 delays x 1,024 seeds = 65,536 models) and
# prints compile seconds, steady model-steps/s and useful GFLOP/s. Finally it runs the
# same grid end to end with `tsjax sweep` (training, result tables and Parquet files).
#
# Usage: bash benchmarks/gpu_bench.sh
# Environment: VENV (virtual environment path), JAX_VERSION (default: the version
# pinned below), CUDA_EXTRA (default: cuda12; use cuda13 for a CUDA 13 driver).
#
# NOTE: never run here, because no GPU was available when it was written. The block
# and chunk settings for accelerators in tsjax.training and tsjax.chunking are untested.
set -euo pipefail

cd "$(dirname "$0")/.."
VENV=${VENV:-.venv-gpu}
JAX_VERSION=${JAX_VERSION:-0.10.2}
CUDA_EXTRA=${CUDA_EXTRA:-cuda12}

if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet -e . "jax[${CUDA_EXTRA}]==${JAX_VERSION}"
"$VENV/bin/python" -c "import jax; print('devices:', jax.devices())"

SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
sed -e 's/^name = "bench"/name = "bench65k"/' \
    -e 's/^seed = \[0, 1, 2, 3\]/seed = {range = [0, 1024]}/' \
    benchmarks/bench.toml > "$SCRATCH/bench65k.toml"

"$VENV/bin/python" - "$SCRATCH/bench65k.toml" <<'PYTHON'
import sys
import time

import jax

from tsjax.config import load_config
from tsjax.grid import expand_grid
from tsjax.training import train_chunk

(group,) = expand_grid(load_config(sys.argv[1]))
spec = group.spec
points = group.grid_points()
start = time.perf_counter()
jax.block_until_ready(train_chunk(points, spec))
first = time.perf_counter() - start
start = time.perf_counter()
train_chunk(points, spec)
steady = time.perf_counter() - start
rate = len(group) * spec.steps / steady
flops = 6.0 * spec.seq_len * spec.batch_size * spec.n_hidden * (2 * spec.n_features
                                                                 + spec.n_hidden)
print(f"{len(group)} models x {spec.steps} steps on {jax.devices()[0].device_kind}: "
      f"compile {max(first - steady, 0):.1f} s, {rate:,.0f} model-steps/s, "
      f"{rate * flops / 1e9:.1f} useful GFLOP/s")
PYTHON

/usr/bin/time -v "$VENV/bin/tsjax" sweep "$SCRATCH/bench65k.toml" --out "$SCRATCH/out" \
    --no-progress 2>&1 | grep -E "trained|Maximum resident|Elapsed"
