"""Sharding a chunk over devices and splitting a sweep over processes change no result.

JAX fixes its device count when it starts, so the runs with 4 fake CPU devices
(`--xla_force_host_platform_device_count=4`) and with two processes joined through
`jax.distributed` on 127.0.0.1 happen in subprocesses, and this process compares their
results with a plain single-device run.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest

from tsjax.config import parse_config
from tsjax.grid import expand_grid
from tsjax.sweep import run_sweep
from tsjax.training import train_chunk

CONFIG = """
name = "distributed"
[grid]
model = ["nonlinear", "ssm"]
seq_len = 6
k = [1, 2]
sparsity = [0.3, 0.8]
seed = [0, 1, 2]
steps = 12
batch_size = 8
checkpoints = 3
eval_samples = 16
"""

FOUR_DEVICE_SCRIPT = textwrap.dedent("""
    import os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    import jax
    import numpy as np
    from tsjax.config import parse_config
    from tsjax.grid import expand_grid
    from tsjax.training import train_chunk

    assert jax.local_device_count() == 4, jax.local_devices()
    group = expand_grid(parse_config(open(sys.argv[1]).read()))[0]
    result = train_chunk(group.grid_points(), group.spec, block_size=2)
    np.savez(sys.argv[2], W_h=result.model.W_h, W_y=result.model.W_y,
             loss_curve=result.loss_curve, eval_loss=result.eval_loss)
""")


def subprocess_environment(tmp_path: Path) -> dict:
    environment = dict(os.environ, JAX_PLATFORMS="cpu",
                       TSJAX_CACHE_DIR=str(tmp_path / "jax_cache"))
    environment.pop("XLA_FLAGS", None)
    environment.pop("JAX_NUM_CPU_DEVICES", None)
    return environment


def test_four_device_chunk_equals_one_device(tmp_path):
    config_path = tmp_path / "config.toml"
    config_path.write_text(CONFIG)
    output = tmp_path / "sharded.npz"

    completed = subprocess.run(
        [sys.executable, "-c", FOUR_DEVICE_SCRIPT, str(config_path), str(output)],
        env=subprocess_environment(tmp_path), capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]

    group = expand_grid(parse_config(CONFIG))[0]
    unsharded = train_chunk(group.grid_points(), group.spec, block_size=2)
    sharded = np.load(output)
    assert jax.local_device_count() == 1
    np.testing.assert_allclose(sharded["W_h"], unsharded.model.W_h, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(sharded["W_y"], unsharded.model.W_y, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(sharded["loss_curve"], unsharded.loss_curve, rtol=1e-6)
    np.testing.assert_allclose(sharded["eval_loss"], unsharded.eval_loss, rtol=1e-6)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def sorted_by_point(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("point_id").reset_index(drop=True)


@pytest.mark.slow
def test_two_processes_write_one_dataset(tmp_path):
    config_path = tmp_path / "config.toml"
    config_path.write_text(CONFIG)
    out = tmp_path / "two_processes"
    coordinator = f"127.0.0.1:{free_port()}"
    command = [sys.executable, "-m", "tsjax.cli", "sweep", str(config_path), "--out", str(out),
               "--no-progress", "--coordinator", coordinator, "--num-processes", "2"]
    environment = subprocess_environment(tmp_path)

    processes = [subprocess.Popen(command + ["--process-id", str(index)], env=environment,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for index in (0, 1)]
    outputs = [process.communicate(timeout=600) for process in processes]
    for process, (_, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr[-3000:]

    config = parse_config(CONFIG)
    single = sorted_by_point(pd.read_parquet(
        run_sweep(config, tmp_path / "one_process", progress=False).out))
    both = sorted_by_point(pd.read_parquet(out))
    manifest = json.loads((out / "_manifest.json").read_text())

    assert manifest["sweep"] == "distributed"
    assert len(both) == config.grid_size
    assert both.point_id.is_unique
    # Each process trained one of the two static groups.
    assert all("trained 12 models" in stdout for stdout, _ in outputs)
    np.testing.assert_array_equal(both.point_id, single.point_id)
    np.testing.assert_array_equal(both.status, single.status)
    for column in ("W_h", "W_x", "W_y"):
        np.testing.assert_allclose(np.stack(both[column]), np.stack(single[column]),
                                   rtol=1e-5, atol=1e-6, err_msg=column)
    np.testing.assert_allclose(both.final_loss, single.final_loss, rtol=1e-5)
