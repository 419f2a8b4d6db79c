"""A diverging or dead model is marked in its row and never disturbs the other models.

Under `vmap` every model has its own slice of each array and `jnp.where` freezes only the
diverged slices, so at a fixed padded chunk size a model's row does not depend on the
other models of its chunk. Across padded sizes XLA compiles different programs, so rows
agree only to float32 rounding; the sweep therefore keeps one chunk size per group.
"""

import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import tsjax.training
from config_text import toml_text, valid_config
from frames import KEY_COLUMNS, differing_columns, sorted_rows
from tsjax.config import parse_config
from tsjax.geometry import k_theta_deg
from tsjax.grid import expand_grid
from tsjax.sweep import run_sweep
from tsjax.training import train_chunk

ABSURD_LEARNING_RATE = 1e6


@pytest.fixture(scope="module")
def mixed_and_sane(tmp_path_factory):
    """Run one sweep with sane and absurd learning rates mixed in every chunk, and one
    with the sane points only, both with chunks of 3 models."""
    root = tmp_path_factory.mktemp("divergence")
    mixed = parse_config(toml_text(valid_config(learning_rate=[0.01, ABSURD_LEARNING_RATE])))
    sane = parse_config(toml_text(valid_config(learning_rate=0.01)))
    mixed_summary = run_sweep(mixed, root / "mixed", chunk_size=3, progress=False)
    run_sweep(sane, root / "sane", chunk_size=3, progress=False)
    return (mixed_summary, pd.read_parquet(root / "mixed"), pd.read_parquet(root / "sane"))


def test_absurd_rate_marked_diverged(mixed_and_sane):
    summary, mixed, _ = mixed_and_sane
    absurd = mixed[mixed.learning_rate == ABSURD_LEARNING_RATE]
    diverged = mixed[mixed.status == "diverged"]

    assert summary.trained == 24
    assert len(absurd) == 12
    # Adam's first step moves every weight by about 1e6. Most such models overflow
    # (diverged); some end with a silent ReLU readout (dead) instead.
    assert len(diverged) >= 3
    assert (diverged.learning_rate == ABSURD_LEARNING_RATE).all()
    assert (diverged.diverged_step >= 0).all()
    assert (diverged.diverged_step < diverged.steps).all()
    assert (mixed[mixed.status != "diverged"].diverged_step == -1).all()


def test_diverged_weights_stay_finite(mixed_and_sane):
    _, mixed, _ = mixed_and_sane
    diverged = mixed[mixed.status == "diverged"]

    for column in ("W_x", "W_h", "W_y"):
        for weights in diverged[column]:
            assert np.all(np.isfinite(weights)), column


def test_sane_rows_bitwise_unaffected(mixed_and_sane):
    _, mixed, sane = mixed_and_sane
    mixed_sane = sorted_rows(mixed[mixed.learning_rate == 0.01], KEY_COLUMNS)
    sane = sorted_rows(sane, KEY_COLUMNS)

    assert (sane.status != "diverged").all()
    assert (sane.diverged_step == -1).all()
    assert differing_columns(mixed_sane, sane) == []


def test_chunk_neighbours_do_not_matter():
    group = expand_grid(parse_config(toml_text(valid_config(
        learning_rate=[0.01, ABSURD_LEARNING_RATE]))))[0]

    def train(positions):
        result = train_chunk(group.grid_points(np.asarray(positions)), group.spec)
        return jax.tree.map(np.asarray, result)

    alone_with_copies = train([0, 0, 0])
    among_absurd = train([1, 0, 3])
    last_of_three = train([5, 2, 0])

    for leaf_a, leaf_b, leaf_c in zip(jax.tree.leaves(alone_with_copies),
                                      jax.tree.leaves(among_absurd),
                                      jax.tree.leaves(last_of_three)):
        assert leaf_a[0].tobytes() == leaf_b[1].tobytes()
        assert leaf_a[0].tobytes() == leaf_c[2].tobytes()


def test_chunk_size_changes_only_rounding():
    group = expand_grid(parse_config(toml_text(valid_config())))[0]
    single = jax.tree.map(np.asarray, train_chunk(group.grid_points(np.array([0])), group.spec))
    padded = jax.tree.map(np.asarray,
                          train_chunk(group.grid_points(np.array([0, 0, 0])), group.spec))

    for leaf_single, leaf_padded in zip(jax.tree.leaves(single), jax.tree.leaves(padded)):
        np.testing.assert_allclose(leaf_single[0], leaf_padded[0], rtol=1e-4, atol=1e-5)


def dead_when_scaled(real_init):
    """Wrap `init_rnn` so that models with init_scale > 1.5 start with a dead ReLU readout.

    Inputs are nonnegative, so nonnegative W_x and W_h give a nonnegative hidden state,
    and a nonpositive W_y makes every readout logit <= 0: the ReLU output is 0 and no
    gradient reaches any weight.
    """
    def init(key, *, init_scale, **options):
        model = real_init(key, init_scale=init_scale, **options)
        dead = init_scale > 1.5
        return eqx.tree_at(
            lambda m: (m.W_x, m.W_h, m.W_y), model,
            (jnp.where(dead, jnp.abs(model.W_x), model.W_x),
             jnp.where(dead, jnp.abs(model.W_h), model.W_h),
             jnp.where(dead, -jnp.abs(model.W_y), model.W_y)))
    return init


def test_dead_and_diverged_do_not_stop_sweep(tmp_path, monkeypatch):
    monkeypatch.setattr(tsjax.training, "init_rnn", dead_when_scaled(tsjax.training.init_rnn))
    # eval_samples = 40 gives a static spec no other test compiles, so `train` is traced
    # again with the patched init instead of reusing a cached program.
    config = parse_config(toml_text(valid_config(
        model="ssm", k=1, sparsity=0.5, seed=[0, 1], eval_samples=40,
        init_scale=[1.0, 2.0], learning_rate=[0.01, ABSURD_LEARNING_RATE])))

    summary = run_sweep(config, tmp_path / "out", chunk_size=4, progress=False)

    frame = pd.read_parquet(tmp_path / "out")
    scaled = frame[frame.init_scale == 2.0]
    absurd = frame[(frame.init_scale == 1.0) & (frame.learning_rate == ABSURD_LEARNING_RATE)]
    assert summary.trained == 8
    assert len(frame) == 8
    assert (scaled.status == "dead").all()
    assert (scaled.diverged_step == -1).all()
    assert (absurd.status == "diverged").all()
    assert summary.status_counts["dead"] >= 4
    assert summary.status_counts["diverged"] == 2


def test_k_theta_of_infinite_directions_is_quiet_nan():
    # A diverged model's impulse response can overflow to inf; its angle is NaN and
    # numpy must not warn about inf - inf.
    directions = np.zeros((2, 4, 2, 1))
    directions[0, :, 0, 0] = [1.0, np.inf, np.inf, -np.inf]
    directions[0, :, 1, 0] = [0.0, np.inf, -np.inf, np.inf]
    directions[1, :, :, 0] = [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]]

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        angles = k_theta_deg(directions, np.array([3, 3]))

    assert np.isnan(angles[0])
    assert angles[1] == pytest.approx(270.0)
