"""The recurrent model: h_t = W_x x_t + W_h σ_h(h_{t-1}), ŷ_t = σ_y(W_yᵀ h_t + b_y)."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax

ACTIVATION_FUNCTIONS = {"identity": lambda x: x, "relu": jax.nn.relu}


class RNN(eqx.Module):
    """A recurrent network without biases in the recurrence, with h_0 = 0.

    **Fields:**
    - `W_x`: input weights, shape (n_hidden, n_features).
    - `W_h`: recurrent weights, shape (n_hidden, n_hidden).
    - `W_y`: readout weights, shape (n_hidden, n_features); the output is W_yᵀ h.
    - `b_y`: readout bias, shape (n_features,), or None when the model has none.
    - `sigma_h`, `sigma_y`: names of the recurrent and readout activations.
    """

    W_x: jax.Array
    W_h: jax.Array
    W_y: jax.Array
    b_y: jax.Array | None
    sigma_h: str = eqx.field(static=True)
    sigma_y: str = eqx.field(static=True)

    def step(self, h, x):
        """Advance the hidden state by one input; return the new state and the output."""
        h = self.W_x @ x + self.W_h @ ACTIVATION_FUNCTIONS[self.sigma_h](h)
        return h, self.readout(h)

    def readout(self, h):
        """Map a hidden state (n_hidden,) to the output (n_features,)."""
        logits = self.W_y.T @ h
        if self.b_y is not None:
            logits = logits + self.b_y
        return ACTIVATION_FUNCTIONS[self.sigma_y](logits)

    def __call__(self, xs):
        """Run one sequence `xs` of shape (seq_len, n_features); return ŷ of the same shape."""
        h0 = jnp.zeros(self.W_h.shape[0], dtype=xs.dtype)
        # A lambda, because lax.scan hashes its function and a bound method of a
        # module holding tracers cannot be hashed.
        _, ys = lax.scan(lambda h, x: self.step(h, x), h0, xs)
        return ys

    def impulse_response(self, length: int):
        """Return the feature directions w_s, shape (length, n_hidden, n_features).

        w_s[:, j] is the hidden state s steps after a unit input on coordinate j on an
        otherwise zero background. With an identity recurrence it equals W_h^s W_x.
        """
        sigma_h = ACTIVATION_FUNCTIONS[self.sigma_h]

        def advance(w, _):
            return self.W_h @ sigma_h(w), w

        _, directions = lax.scan(advance, self.W_x, None, length=length)
        return directions


def init_rnn(key, *, n_features, n_hidden, sigma_h, sigma_y, readout_bias,
             init_scale, init_spectral_norm) -> RNN:
    """Draw a random RNN.

    W_x and W_y have i.i.d. normal entries with variance init_scale² / fan-in. W_h is a
    normal matrix rescaled to spectral norm `init_spectral_norm` (< 1); since the
    spectral radius never exceeds the spectral norm, the recurrence starts contracting.
    """
    x_key, h_key, y_key = jax.random.split(key, 3)
    W_x = jax.random.normal(x_key, (n_hidden, n_features)) * init_scale / jnp.sqrt(n_features)
    W_y = jax.random.normal(y_key, (n_hidden, n_features)) * init_scale / jnp.sqrt(n_hidden)
    gaussian = jax.random.normal(h_key, (n_hidden, n_hidden))
    W_h = gaussian * (init_spectral_norm / jnp.linalg.norm(gaussian, ord=2))
    b_y = jnp.zeros(n_features) if readout_bias else None
    return RNN(W_x, W_h, W_y, b_y, sigma_h, sigma_y)
