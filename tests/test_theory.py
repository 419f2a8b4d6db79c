"""Tests of the closed-form expected loss against Monte Carlo and a loop reference.

The Monte Carlo estimates draw inputs with numpy and run the recurrence in numpy, so
they share no code with tsjax's sampler or model.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tsjax.grid import GridPoint, StaticSpec
from tsjax.models import RNN
from tsjax.theory import TERM_NAMES, loss_terms, model_projections, sparse_relu_loss
from tsjax.training import train_chunk


def random_weights(rng, n_hidden, n_features, radius=0.7):
    """Draw W_x, W_h (spectral radius `radius`) and W_y as float64 arrays."""
    W_x = rng.normal(size=(n_hidden, n_features))
    W_h = rng.normal(size=(n_hidden, n_hidden))
    W_h *= radius / np.max(np.abs(np.linalg.eigvals(W_h)))
    W_y = rng.normal(size=(n_hidden, n_features)) / np.sqrt(n_hidden)
    return W_x, W_h, W_y


def projections_of(W_x, W_h, W_y, seq_len):
    """Return a_s = W_yᵀ W_h^s W_x, shape (seq_len, n_features, n_features)."""
    directions = np.stack([np.linalg.matrix_power(W_h, s) @ W_x for s in range(seq_len)])
    return np.einsum("hi,shj->sij", W_y, directions)


def monte_carlo_loss(rng, W_x, W_h, W_y, *, seq_len, k, sparsity, low, high, weights,
                     samples, relu_readout=False, uniforms=None):
    """Estimate the expected weighted sequence loss; return (mean, standard error)."""
    n_hidden, n_features = W_x.shape
    shape = (samples, seq_len, n_features)
    active_draw, magnitude_draw = uniforms if uniforms is not None else (
        rng.random(shape), rng.random(shape))
    inputs = np.where(active_draw < 1 - sparsity, low + (high - low) * magnitude_draw, 0.0)
    hidden = np.zeros((samples, n_hidden))
    losses = np.zeros(samples)
    for t in range(seq_len):
        hidden = inputs[:, t] @ W_x.T + hidden @ W_h.T
        outputs = hidden @ W_y
        if relu_readout:
            outputs = np.maximum(outputs, 0.0)
        targets = inputs[:, t - k] if t >= k else 0.0
        losses += np.sum(weights * (outputs - targets) ** 2, axis=1)
    return losses.mean(), losses.std(ddof=1) / np.sqrt(samples)


def reference_terms(a, k, sparsity, low, high, weights):
    """Compute the four terms by explicit loops over t, i and entries (s, j), (s', j')."""
    seq_len, n_features = a.shape[:2]
    p = 1 - sparsity
    mu = (low + high) / 2
    nu = (low**2 + low * high + high**2) / 3
    terms = dict.fromkeys(TERM_NAMES, 0.0)
    for t, i in itertools.product(range(seq_len), range(n_features)):
        entries = [(s, j) for s in range(t + 1) for j in range(n_features)]
        target = (k, i) if t >= k else None
        for s, j in entries:
            if (s, j) == target:
                terms["task_reward"] += weights[i] * p * nu * (a[s, i, j] - 1) ** 2
            else:
                terms["projection_interference"] += weights[i] * p * nu * a[s, i, j] ** 2
                if target is not None:
                    terms["mean_correction"] -= weights[i] * 2 * p**2 * mu**2 * a[s, i, j]
            for s2, j2 in entries:
                if (s2, j2) != (s, j):
                    terms["compositional_interference"] += (
                        weights[i] * p**2 * mu**2 * a[s, i, j] * a[s2, i, j2])
    return terms


def closed_form(a, k, sparsity, low, high, weights):
    result = loss_terms(jnp.asarray(a, jnp.float32), k, sparsity, low, high,
                        jnp.asarray(weights, jnp.float32))
    return {name: float(value) for name, value in result.items()}


# (n_hidden, n_features, seq_len, k, sparsity, magnitude_low, magnitude_high, decay)
CASES = [
    (2, 1, 6, 1, 0.0, 0.0, 1.0, 1.0),
    (2, 1, 8, 3, 0.9, 0.0, 1.0, 1.0),
    (5, 1, 5, 0, 0.5, 0.2, 1.5, 1.0),
    (3, 2, 6, 2, 0.4, 0.0, 1.0, 0.7),
    (4, 3, 5, 4, 0.7, 0.5, 0.5, 0.8),
    (6, 4, 4, 1, 0.2, 0.0, 2.0, 0.9),
]


@pytest.mark.parametrize("case", CASES)
def test_closed_form_matches_monte_carlo(case):
    n_hidden, n_features, seq_len, k, sparsity, low, high, decay = case
    rng = np.random.default_rng(sum(case[:4]))
    W_x, W_h, W_y = random_weights(rng, n_hidden, n_features)
    weights = decay ** np.arange(n_features)
    a = projections_of(W_x, W_h, W_y, seq_len)

    expected = closed_form(a, k, sparsity, low, high, weights)["expected_loss"]
    mean, stderr = monte_carlo_loss(rng, W_x, W_h, W_y, seq_len=seq_len, k=k,
                                    sparsity=sparsity, low=low, high=high, weights=weights,
                                    samples=40_000)
    assert abs(expected - mean) < 4 * stderr, (expected, mean, stderr)


@pytest.mark.parametrize("case", CASES)
def test_terms_match_loop_reference(case):
    n_hidden, n_features, seq_len, k, sparsity, low, high, decay = case
    rng = np.random.default_rng(1 + sum(case[:4]))
    a = projections_of(*random_weights(rng, n_hidden, n_features), seq_len)
    weights = decay ** np.arange(n_features)

    computed = closed_form(a, k, sparsity, low, high, weights)
    reference = reference_terms(a, k, sparsity, low, high, weights)
    for name in TERM_NAMES:
        assert computed[name] == pytest.approx(reference[name], rel=1e-4, abs=1e-5), name


@pytest.mark.parametrize("case", CASES)
def test_terms_sum_to_total(case):
    n_hidden, n_features, seq_len, k, sparsity, low, high, decay = case
    rng = np.random.default_rng(2 + sum(case[:4]))
    # Arbitrary projections, recall entries far from 1, so the cross terms matter.
    a = rng.normal(size=(seq_len, n_features, n_features))
    weights = decay ** np.arange(n_features)

    computed = closed_form(a, k, sparsity, low, high, weights)
    total = sum(computed[name] for name in TERM_NAMES)
    assert computed["expected_loss"] == pytest.approx(total, rel=1e-6)


def test_total_is_exact_expectation_in_float64():
    # E[e²] = (pν − p²μ²) Σ c² + p²μ² (Σ c)² with c = a − [target], per t and output.
    rng = np.random.default_rng(3)
    seq_len, n_features, k, sparsity, low, high = 5, 2, 2, 0.3, 0.1, 0.9
    a = rng.normal(size=(seq_len, n_features, n_features))
    weights = np.array([1.0, 0.6])
    p, mu = 1 - sparsity, (low + high) / 2
    nu = (low**2 + low * high + high**2) / 3
    exact = 0.0
    for t, i in itertools.product(range(seq_len), range(n_features)):
        c = a[: t + 1, i, :].copy()
        if t >= k:
            c[k, i] -= 1
        exact += weights[i] * ((p * nu - (p * mu) ** 2) * np.sum(c**2)
                               + (p * mu) ** 2 * np.sum(c) ** 2)
    computed = closed_form(a, k, sparsity, low, high, weights)["expected_loss"]
    assert computed == pytest.approx(exact, rel=1e-5)


def test_near_perfect_model_keeps_precision():
    # A shift register recalls exactly, and a 1e-4 leak makes the loss about 1e-8.
    # Subtracting the target entry from a full float32 sum would leave errors near 1e-7.
    seq_len, k = 8, 1
    a = np.zeros((seq_len, 1, 1))
    a[k] = 1.0
    a[k + 1] = 1e-4
    expected = closed_form(a, k, 0.5, 0.0, 1.0, np.ones(1))["expected_loss"]
    reference = sum(reference_terms(a, k, 0.5, 0.0, 1.0, np.ones(1)).values())
    assert expected == pytest.approx(reference, rel=1e-3)


def test_loss_terms_vmap_with_traced_k():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(3, 6, 2, 2)).astype(np.float32)
    ks = np.array([0, 2, 5], dtype=np.int32)
    sparsities = np.array([0.1, 0.5, 0.9], dtype=np.float32)
    weights = jnp.ones(2)

    batched = jax.jit(jax.vmap(loss_terms, in_axes=(0, 0, 0, None, None, None)))(
        a, ks, sparsities, 0.0, 1.0, weights)
    for index in range(3):
        single = closed_form(a[index], int(ks[index]), float(sparsities[index]), 0.0, 1.0,
                             np.ones(2))
        for name, value in single.items():
            assert float(batched[name][index]) == pytest.approx(value, rel=1e-5, abs=1e-6)


def test_impulse_response_equals_matrix_powers():
    rng = np.random.default_rng(5)
    W_x, W_h, W_y = (array.astype(np.float32) for array in random_weights(rng, 4, 3))
    model = RNN(jnp.asarray(W_x), jnp.asarray(W_h), jnp.asarray(W_y), None, "identity",
                "identity")
    directions = np.asarray(model.impulse_response(6))
    for s in range(6):
        np.testing.assert_allclose(directions[s], np.linalg.matrix_power(W_h, s) @ W_x,
                                   rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(model_projections(model, 6)),
                               projections_of(W_x, W_h, W_y, 6), rtol=1e-5, atol=1e-6)


def test_impulse_response_of_relu_recurrence():
    # w_s is the hidden state s steps after a unit input on a zero background.
    rng = np.random.default_rng(6)
    W_x, W_h, W_y = (jnp.asarray(array, jnp.float32) for array in random_weights(rng, 3, 2))
    model = RNN(W_x, W_h, W_y, None, "relu", "identity")
    directions = np.asarray(model.impulse_response(5))
    for feature in range(2):
        hidden = jnp.zeros(3)
        for s in range(5):
            x = jnp.zeros(2).at[feature].set(1.0 if s == 0 else 0.0)
            hidden, _ = model.step(hidden, x)
            np.testing.assert_allclose(directions[s, :, feature], np.asarray(hidden),
                                       rtol=1e-5, atol=1e-6)


def test_sparse_relu_error_shrinks_with_p():
    rng = np.random.default_rng(7)
    seq_len, n_features, k = 5, 2, 2
    W_x, W_h, W_y = random_weights(rng, 3, n_features)
    a = jnp.asarray(projections_of(W_x, W_h, W_y, seq_len), jnp.float32)
    samples = 400_000
    shape = (samples, seq_len, n_features)
    # The same uniforms at every p, so the estimates are coupled and their errors shrink
    # together.
    uniforms = (rng.random(shape), rng.random(shape))

    errors = []
    for p in (0.2, 0.05, 0.0125):
        mean, stderr = monte_carlo_loss(rng, W_x, W_h, W_y, seq_len=seq_len, k=k,
                                        sparsity=1 - p, low=0.0, high=1.0,
                                        weights=np.ones(n_features), samples=samples,
                                        relu_readout=True, uniforms=uniforms)
        approximation = float(sparse_relu_loss(a, k, 1 - p, 0.0, 1.0, jnp.ones(n_features)))
        errors.append((abs(approximation - mean) / mean, stderr / mean))
    relative_errors = [error for error, _ in errors]
    assert relative_errors[0] > relative_errors[1] > relative_errors[2], errors
    assert relative_errors[2] < 0.03 + 3 * errors[2][1], errors


def linear_spec(trainer, *, n_features=1, n_hidden=2, seq_len=6, steps=300, model="linear",
                readout_bias=False, checkpoints=5, batch_size=128, eval_samples=2048):
    return StaticSpec.from_values(dict(
        model=model, sigma_h=None, sigma_y=None, n_features=n_features, n_hidden=n_hidden,
        seq_len=seq_len, batch_size=batch_size, steps=steps, optimizer="adam",
        lr_schedule="constant", readout_bias=readout_bias, trainer=trainer, checkpoints=checkpoints,
        eval_samples=eval_samples))


def grid_points(k, sparsity, seeds, learning_rate=0.03, decay=1.0):
    count = len(seeds)
    return GridPoint(
        k=np.full(count, k, np.int32), sparsity=np.full(count, sparsity, np.float32),
        seed=np.asarray(seeds, np.uint32),
        learning_rate=np.full(count, learning_rate, np.float32),
        magnitude_low=np.zeros(count, np.float32), magnitude_high=np.ones(count, np.float32),
        importance_decay=np.full(count, decay, np.float32),
        init_scale=np.ones(count, np.float32),
        init_spectral_norm=np.full(count, 0.5, np.float32))


def test_expected_trainer_reaches_sampled_optimum():
    # N_h = 2 with k = 3 cannot recall exactly, so the optimum has a nonzero loss.
    points = grid_points(k=3, sparsity=0.5, seeds=[0, 1, 2, 3])
    finals = {}
    for trainer in ("sampled", "expected"):
        result = train_chunk(points, linear_spec(trainer))
        finals[trainer] = np.asarray(result.checkpoint_metrics["expected_loss"][:, -1])
        assert np.all(np.asarray(result.diverged_step) == -1)
    # Seeds may settle in different basins, so compare the best seed of each trainer.
    assert finals["expected"].min() == pytest.approx(finals["sampled"].min(), rel=0.02)
    # The closed-form objective has no sampling noise, so it ends at least as low.
    assert finals["expected"].min() <= finals["sampled"].min() * 1.001


def test_expected_trainer_on_ssm_lowers_sparse_objective():
    spec = linear_spec("expected", model="ssm", steps=100)
    result = train_chunk(grid_points(k=1, sparsity=0.9, seeds=[0, 1]), spec)
    objective = np.asarray(result.checkpoint_metrics["expected_loss_sparse_relu"])
    loss_curve = np.asarray(result.loss_curve)

    # Seed 0 trains: the sparse-limit objective falls by orders of magnitude.
    assert objective[0, -1] < 0.01 * objective[0, 0]
    assert loss_curve[0, -1] < loss_curve[0, 0]
    # Seed 1 starts with a dead readout (every a_s <= 0), so it has no gradient and keeps
    # the loss of a silent output: pν per target step, pν = 0.1 / 3, seq_len - k = 5 steps.
    np.testing.assert_allclose(objective[1], 0.1 / 3 * 5, rtol=1e-4)
