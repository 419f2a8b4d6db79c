"""The fast training paths agree with the straightforward formulation.

The reference is `RNN.__call__` (one `lax.scan` per sequence) under `vmap` over the
batch, with `batch_loss` and JAX autodiff. The fast paths are `RNN.batch_outputs`
(hidden-major and batch-major recurrences with a hand-written backward pass, and the
block-Toeplitz form of an identity recurrence), `fast_batch_loss`, the shared input
draws and the blocked, sorted `train_chunk`.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tsjax import models
from tsjax.config import parse_config
from tsjax.grid import expand_grid
from tsjax.models import RNN
from tsjax.task import sample_inputs
from tsjax.training import (DATA_PRNG, InputStream, batch_loss, fast_batch_loss,
                            shared_uniforms, train, train_chunk)

VARIANTS = [("identity", "identity"), ("identity", "relu"), ("relu", "relu"),
            ("relu", "identity")]

# (n_hidden, n_features, seq_len): broadcast multiply-adds and the block-Toeplitz form;
# matmuls in the hidden-major layout; the batch-major layout; a Toeplitz matrix above
# the size limit, so the identity recurrence runs as a scan.
SIZES = [(2, 1, 7), (6, 5, 5), (models.BATCH_MAJOR_MIN_HIDDEN + 3, 3, 4), (3, 2, 90)]


def random_model(seed, n_hidden, n_features, sigma_h, sigma_y, bias):
    rng = np.random.default_rng(seed)
    W_x, W_y = (jnp.asarray(rng.normal(size=(n_hidden, n_features)) * 0.6, jnp.float32)
                for _ in range(2))
    W_h = jnp.asarray(rng.normal(size=(n_hidden, n_hidden)) * 0.8 / np.sqrt(n_hidden),
                      jnp.float32)
    b_y = jnp.asarray(rng.normal(size=n_features) * 0.3, jnp.float32) if bias else None
    return RNN(W_x, W_h, W_y, b_y, sigma_h, sigma_y)


def random_batch(seed, batch, seq_len, n_features):
    """Return sparse inputs laid out (batch, seq_len, n_features)."""
    return sample_inputs(jax.random.key(seed), (batch, seq_len, n_features), 0.4, 0.0, 1.0)


def time_major(xs):
    return jnp.transpose(xs, (1, 2, 0))


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("sigma_h,sigma_y", VARIANTS)
def test_batch_outputs_match_reference(size, sigma_h, sigma_y):
    n_hidden, n_features, seq_len = size
    model = random_model(0, n_hidden, n_features, sigma_h, sigma_y, bias=True)
    xs = random_batch(1, 9, seq_len, n_features)

    expected = jax.vmap(model)(xs)
    outputs = jax.jit(RNN.batch_outputs)(model, time_major(xs))

    np.testing.assert_allclose(np.asarray(outputs), np.asarray(time_major(expected)),
                               rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("sigma_h,sigma_y", VARIANTS)
@pytest.mark.parametrize("bias", [False, True])
def test_loss_and_gradients_match_reference(size, sigma_h, sigma_y, bias):
    n_hidden, n_features, seq_len = size
    model = random_model(2, n_hidden, n_features, sigma_h, sigma_y, bias)
    xs = random_batch(3, 11, seq_len, n_features)
    weights = 0.8 ** jnp.arange(n_features, dtype=jnp.float32)
    k = jnp.int32(min(2, seq_len - 1))

    loss, grads = eqx.filter_jit(eqx.filter_value_and_grad(batch_loss))(model, xs, k, weights)
    fast_loss, fast_grads = eqx.filter_jit(eqx.filter_value_and_grad(fast_batch_loss))(
        model, time_major(xs), k, weights)

    np.testing.assert_allclose(float(fast_loss), float(loss), rtol=1e-5)
    for name in ("W_x", "W_h", "W_y", "b_y"):
        expected = getattr(grads, name)
        if expected is None:
            assert getattr(fast_grads, name) is None
            continue
        scale = float(jnp.max(jnp.abs(expected))) + 1e-6
        np.testing.assert_allclose(np.asarray(getattr(fast_grads, name)), np.asarray(expected),
                                   rtol=1e-4, atol=1e-5 * scale, err_msg=name)


SMALL_GRID = """
name = "fast"
[grid]
model = "{model}"
n_hidden = {n_hidden}
n_features = {n_features}
seq_len = 6
k = [1, 3]
sparsity = [0.2, 0.8]
seed = [0, 4, 9]
steps = 30
batch_size = 16
checkpoints = 3
eval_samples = 48
learning_rate = 0.02
"""


def small_group(model="nonlinear", n_hidden=2, n_features=1):
    config = parse_config(SMALL_GRID.format(model=model, n_hidden=n_hidden,
                                            n_features=n_features))
    (group,) = expand_grid(config)
    return group


def point_at(group, position):
    return jax.tree.map(lambda values: values[position], group.grid_points())


@pytest.mark.parametrize("model,n_hidden,n_features",
                         [("nonlinear", 2, 1), ("ssm", 2, 1), ("linear", 3, 2),
                          ("nonlinear", 6, 5)])
def test_training_run_matches_reference(model, n_hidden, n_features):
    group = small_group(model, n_hidden, n_features)
    fast_train = jax.jit(train, static_argnums=1)
    reference_train = jax.jit(lambda point, spec: train(point, spec, reference=True),
                              static_argnums=1)

    for position in (0, 7):
        point = point_at(group, position)
        fast = fast_train(point, group.spec)
        reference = reference_train(point, group.spec)

        for name in ("W_x", "W_h", "W_y"):
            np.testing.assert_allclose(np.asarray(getattr(fast.model, name)),
                                       np.asarray(getattr(reference.model, name)),
                                       rtol=1e-3, atol=1e-4, err_msg=name)
        np.testing.assert_allclose(np.asarray(fast.loss_curve), np.asarray(reference.loss_curve),
                                   rtol=1e-3)
        np.testing.assert_allclose(float(fast.eval_loss), float(reference.eval_loss), rtol=1e-3)
        np.testing.assert_allclose(np.asarray(fast.eval_output_max),
                                   np.asarray(reference.eval_output_max), rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("block_size", [1, 4, 5])
def test_blocked_chunk_matches_single_runs(block_size):
    group = small_group()
    chunk = train_chunk(group.grid_points(), group.spec, block_size=block_size)
    single_train = jax.jit(train, static_argnums=1)

    for position in (0, 5, len(group) - 1):
        single = single_train(point_at(group, position), group.spec)
        np.testing.assert_allclose(chunk.model.W_h[position], np.asarray(single.model.W_h),
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(chunk.loss_curve[position], np.asarray(single.loss_curve),
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(chunk.eval_loss[position], float(single.eval_loss),
                                   rtol=1e-5, atol=1e-6)


def test_chunk_results_follow_input_order():
    group = small_group()
    order = np.array([5, 0, 11, 3, 3])
    chunk = train_chunk(group.grid_points(order), group.spec, block_size=2)
    whole = train_chunk(group.grid_points(), group.spec, block_size=2)

    np.testing.assert_array_equal(chunk.model.W_x, whole.model.W_x[order])
    np.testing.assert_array_equal(chunk.eval_loss, whole.eval_loss[order])


def draw_alone(seed, stream, index, shape):
    key = jax.random.split(jax.random.key(seed, impl=DATA_PRNG))[stream]
    return jax.random.uniform(jax.random.fold_in(key, index), shape)


@pytest.mark.parametrize("seeds", [[7], [3, 3, 3, 3], [3, 3, 5, 5], [9, 2, 9, 4, 2]])
def test_shared_uniforms_rows_depend_on_own_seed(seeds):
    seeds = jnp.asarray(seeds, dtype=jnp.uint32)
    shape = (4, 1, 8)

    table, rows = jax.jit(shared_uniforms, static_argnums=(1, 3))(seeds, 1, 6, shape)

    for seed, row in zip(np.asarray(seeds), np.asarray(rows)):
        expected = draw_alone(int(seed), 1, 6, shape)
        np.testing.assert_array_equal(np.asarray(table[row]), np.asarray(expected))


def test_shared_uniforms_draw_each_seed_once():
    seeds = jnp.asarray([4, 4, 8, 4, 8], dtype=jnp.uint32)

    _, rows = shared_uniforms(seeds, 0, 0, (2,))

    assert len(set(np.asarray(rows).tolist())) == 2
    assert np.asarray(rows)[0] == np.asarray(rows)[1] == np.asarray(rows)[3]


def test_single_model_stream_is_its_own_seed():
    group = small_group()
    point = point_at(group, 4)
    alone = jax.jit(train, static_argnums=1)(point, group.spec)
    stream = InputStream(jnp.asarray([0, point.seed, 11], dtype=jnp.uint32), jnp.int32(1))
    shared = jax.jit(train, static_argnums=1)(point, group.spec, stream)

    # The two calls compile different programs, which may round differently in the
    # last float32 bit; the inputs themselves are equal bit for bit (tested above).
    np.testing.assert_allclose(np.asarray(alone.model.W_h), np.asarray(shared.model.W_h),
                               rtol=1e-5, atol=1e-7)
