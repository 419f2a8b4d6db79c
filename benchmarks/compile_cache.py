"""Show that a second run of the same sweep, in a new process, does not recompile.

Runs `benchmarks/bench.toml` (or the config given) twice, each time in a fresh Python
process that calls `run_sweep` as `tsjax sweep` does. The persistent cache is empty
before the first run, and each run writes to a fresh output directory, so both runs
train every model. Each run reports four figures from `jax.monitoring` events. They
are the XLA compile seconds (on a cache hit, the time to load the cached executable),
the seconds spent tracing and lowering to StableHLO (not cached), the persistent-cache
hits and misses, and the wall time of the sweep.

Usage: python benchmarks/compile_cache.py [CONFIG]
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent

RUN_SCRIPT = """
import json, sys, time
from collections import Counter
from tsjax import distributed
distributed.use_cpu_cores()
import jax
from jax import monitoring
from tsjax.config import load_config
from tsjax.sweep import run_sweep

seconds, counts = Counter(), Counter()
monitoring.register_event_duration_secs_listener(
    lambda event, duration, **_: seconds.update({event: duration}))
monitoring.register_event_listener(lambda event, **_: counts.update([event]))
start = time.perf_counter()
summary = run_sweep(load_config(sys.argv[1]), sys.argv[2], progress=False)
print(json.dumps({
    "wall_s": time.perf_counter() - start,
    "trained": summary.trained,
    "xla_compile_s": seconds["/jax/core/compile/backend_compile_duration"],
    "trace_and_lower_s": seconds["/jax/core/compile/jaxpr_trace_duration"]
                         + seconds["/jax/core/compile/jaxpr_to_mlir_module_duration"],
    "cache_hits": counts["/jax/compilation_cache/cache_hits"],
    "cache_misses": counts["/jax/compilation_cache/cache_misses"],
}))
"""


def run_once(config: Path, out: Path, cache: Path) -> dict:
    environment = dict(os.environ, TSJAX_CACHE_DIR=str(cache))
    completed = subprocess.run([sys.executable, "-c", RUN_SCRIPT, str(config), str(out)],
                               env=environment, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"sweep run failed (exit {completed.returncode}): "
                           f"{completed.stderr.strip()[-2000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    config = Path(argv[0]) if argv else REPOSITORY / "benchmarks" / "bench.toml"
    with tempfile.TemporaryDirectory(prefix="tsjax-compile-cache-") as scratch:
        scratch = Path(scratch)
        runs = [run_once(config, scratch / f"out{index}", scratch / "cache")
                for index in (1, 2)]
    print("| run | XLA compile s | trace + lower s | cache hits / misses | sweep wall s |")
    print("|---|---|---|---|---|")
    for index, run in enumerate(runs, start=1):
        print(f"| {index} | {run['xla_compile_s']:.2f} | {run['trace_and_lower_s']:.2f} | "
              f"{run['cache_hits']} / {run['cache_misses']} | {run['wall_s']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
