import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tsjax.task import delayed_targets, importance_weights, magnitude_moments, sample_inputs


@pytest.mark.parametrize("k", [0, 1, 3, 7])
def test_delayed_targets_match_numpy_shift(k):
    xs = np.random.default_rng(k).random((8, 3)).astype(np.float32)
    expected = np.zeros_like(xs)
    expected[k:] = xs[: len(xs) - k]

    targets = delayed_targets(jnp.asarray(xs), k)

    np.testing.assert_array_equal(np.asarray(targets), expected)


def test_delayed_targets_traced_k_under_jit():
    xs = jnp.arange(10.0).reshape(10, 1)
    shifted = jax.jit(delayed_targets)(xs, jnp.int32(9))

    assert float(shifted[9, 0]) == 0.0
    assert float(jnp.sum(shifted[:9])) == 0.0
    assert float(jax.jit(delayed_targets)(xs, jnp.int32(2))[5, 0]) == 3.0


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.95])
def test_sample_inputs_sparsity_and_moments(sparsity):
    xs = np.asarray(sample_inputs(jax.random.key(0), (400_000,), sparsity, 0.25, 1.0))
    active = xs[xs > 0]
    mean, second = magnitude_moments(0.25, 1.0)
    fraction_stderr = np.sqrt(sparsity * (1 - sparsity) / xs.size)

    assert abs(np.mean(xs == 0) - sparsity) < 5 * fraction_stderr + 1e-6
    assert active.min() >= 0.25
    assert active.max() <= 1.0
    assert abs(active.mean() - mean) < 5 * active.std() / np.sqrt(active.size)
    assert abs(np.mean(active**2) - second) < 5 * np.std(active**2) / np.sqrt(active.size)


def test_sample_inputs_coupled_across_sparsity():
    key = jax.random.key(3)
    dense = np.asarray(sample_inputs(key, (1000,), 0.2, 0.0, 1.0))
    sparse = np.asarray(sample_inputs(key, (1000,), 0.8, 0.0, 1.0))

    # The same uniform draw decides both, so every active sparse input is active dense.
    assert np.all(dense[sparse > 0] > 0)


def test_importance_weights_geometric():
    np.testing.assert_allclose(np.asarray(importance_weights(4, 0.5)),
                               [1.0, 0.5, 0.25, 0.125])


def test_magnitude_moments_uniform():
    mean, second = magnitude_moments(0.0, 1.0)

    assert mean == pytest.approx(0.5)
    assert second == pytest.approx(1 / 3)
