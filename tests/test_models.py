import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tsjax.models import RNN, init_rnn

ACTIVATIONS = {"identity": lambda x: x, "relu": lambda x: np.maximum(x, 0.0)}
VARIANTS = [("identity", "identity"), ("identity", "relu"), ("relu", "relu"), ("relu", "identity")]


def numpy_rnn(W_x, W_h, W_y, b_y, sigma_h, sigma_y, xs):
    """Plain loop: h_t = W_x x_t + W_h σ_h(h_{t-1}), ŷ_t = σ_y(W_yᵀ h_t + b_y), h_{-1} = 0."""
    h = np.zeros(W_h.shape[0])
    outputs = []
    for x in xs:
        h = W_x @ x + W_h @ ACTIVATIONS[sigma_h](h)
        outputs.append(ACTIVATIONS[sigma_y](W_y.T @ h + b_y))
    return np.array(outputs)


def random_model(seed, n_features, n_hidden, sigma_h, sigma_y, bias):
    rng = np.random.default_rng(seed)
    W_x, W_h, W_y = (rng.normal(size=shape) * 0.7 for shape in
                     [(n_hidden, n_features), (n_hidden, n_hidden), (n_hidden, n_features)])
    b_y = rng.normal(size=n_features) if bias else np.zeros(n_features)
    model = RNN(jnp.asarray(W_x), jnp.asarray(W_h), jnp.asarray(W_y),
                jnp.asarray(b_y) if bias else None, sigma_h, sigma_y)
    return model, (W_x, W_h, W_y, b_y)


@pytest.mark.parametrize("sigma_h,sigma_y", VARIANTS)
@pytest.mark.parametrize("bias", [False, True])
def test_rnn_output_matches_numpy_loop(sigma_h, sigma_y, bias):
    model, (W_x, W_h, W_y, b_y) = random_model(1, 3, 4, sigma_h, sigma_y, bias)
    xs = np.random.default_rng(2).normal(size=(9, 3))

    expected = numpy_rnn(W_x, W_h, W_y, b_y, sigma_h, sigma_y, xs)

    np.testing.assert_allclose(np.asarray(model(jnp.asarray(xs, jnp.float32))), expected,
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sigma_h", ["identity", "relu"])
def test_impulse_response_matches_unit_input(sigma_h):
    model, (W_x, W_h, W_y, b_y) = random_model(3, 2, 3, sigma_h, "identity", False)
    directions = np.asarray(model.impulse_response(6))

    for j in range(2):
        h = np.zeros(3)
        for s in range(6):
            x = np.eye(2)[j] if s == 0 else np.zeros(2)
            h = W_x @ x + W_h @ ACTIVATIONS[sigma_h](h)
            np.testing.assert_allclose(directions[s, :, j], h, rtol=1e-5, atol=1e-6)


def test_impulse_response_linear_is_matrix_power():
    model, (W_x, W_h, _, _) = random_model(4, 2, 3, "identity", "identity", False)
    directions = np.asarray(model.impulse_response(5))

    for s in range(5):
        np.testing.assert_allclose(directions[s], np.linalg.matrix_power(W_h, s) @ W_x,
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n_hidden", [1, 2, 10])
def test_init_spectral_radius_below_one(n_hidden):
    for seed in range(20):
        model = init_rnn(jax.random.key(seed), n_features=3, n_hidden=n_hidden,
                         sigma_h="identity", sigma_y="relu", readout_bias=False,
                         init_scale=1.0, init_spectral_norm=0.9)
        radius = np.max(np.abs(np.linalg.eigvals(np.asarray(model.W_h))))

        assert radius <= 0.9 + 1e-5
        assert model.b_y is None
