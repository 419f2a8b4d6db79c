"""The recurrent model: h_t = W_x x_t + W_h σ_h(h_{t-1}), ŷ_t = σ_y(W_yᵀ h_t + b_y)."""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
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

    def batch_outputs(self, xs):
        """Run a batch `xs` of shape (seq_len, n_features, batch); return ŷ, same shape.

        Equals `__call__` on each sequence up to float rounding, and runs much faster:
        the batch is the contiguous axis, and an identity recurrence runs in parallel
        form (see `toeplitz_outputs_matrix`).
        """
        seq_len, n_features, _ = xs.shape
        if uses_parallel_form(self.sigma_h, seq_len, n_features):
            logits = self._linear_logits(xs)
        elif self.W_h.shape[0] < BATCH_MAJOR_MIN_HIDDEN:
            hs = hidden_states(self.W_h, batch_matmul(self.W_x, xs), self.sigma_h, False)
            logits = batch_matmul(self.W_y.T, hs)
        else:
            # Wide models run batch-major, (seq_len, batch, n_hidden): every step is a
            # (batch × n_hidden) matmul, and the weight gradients contract over the
            # contiguous (seq_len · batch) axis without a transpose.
            drive = jnp.swapaxes(xs, 1, 2) @ self.W_x.T
            hs = hidden_states(self.W_h, drive, self.sigma_h, True)
            logits = jnp.swapaxes(hs @ self.W_y, 1, 2)
        if self.b_y is not None:
            logits = logits + self.b_y[:, None]
        return ACTIVATION_FUNCTIONS[self.sigma_y](logits)

    def _linear_logits(self, xs):
        # With an identity recurrence h_t = Σ_s W_h^s W_x x_{t-s}, so the pre-activation
        # output is the causal convolution Σ_s a_s x_{t-s} with a_s = W_yᵀ W_h^s W_x:
        # one matmul with a block-Toeplitz matrix instead of seq_len dependent steps.
        seq_len, n_features, batch = xs.shape
        kernel = jnp.einsum("hi,shj->sij", self.W_y, self.impulse_response(seq_len))
        matrix = toeplitz_outputs_matrix(kernel)
        return (matrix @ xs.reshape(seq_len * n_features, batch)).reshape(xs.shape)

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


# Fast forward pass for a whole batch. Inputs are laid out (seq_len, n_features, batch):
# the batch is the last, contiguous axis, so every elementwise step is a SIMD loop
# over the batch, and under vmap the grid axis goes in front of it.

# Contractions over at most this many terms are written as broadcast multiply-adds.
# In microbenchmarks with jax 0.10.2 on a 2-core Xeon, a batched dot_general over a
# 2-term contraction ran 1.2 times slower than the fused multiply-adds, and the weight
# gradient's contraction over time and batch ran about 5 times slower.
SMALL_CONTRACTION = 4

# Models with at least this many hidden units run batch-major (see `batch_outputs`).
# Measured on the 2-core Xeon: n_hidden = 10 ran 1.5 times faster hidden-major,
# n_hidden = 100 ran 1.4 times faster batch-major; the cut between them is a guess.
BATCH_MAJOR_MIN_HIDDEN = 32

# The linear recurrence (identity σ_h) runs as one matmul with the block-Toeplitz
# matrix of its impulse response when that matrix has at most this many entries.
# Above that size the sequential scan does fewer operations.
TOEPLITZ_MAX_ENTRIES = 160 * 160


def uses_parallel_form(sigma_h: str, seq_len: int, n_features: int) -> bool:
    """Return whether `RNN.batch_outputs` runs the block-Toeplitz form for these sizes."""
    return sigma_h == "identity" and (seq_len * n_features) ** 2 <= TOEPLITZ_MAX_ENTRIES


def batch_matmul(W, v):
    """Return W @ v contracted over axis -2 of `v`: (n, m) × (..., m, batch) → (..., n, batch)."""
    m = W.shape[1]
    if m > SMALL_CONTRACTION:
        return jnp.matmul(W, v)
    column_shape = (W.shape[0], 1)
    out = W[:, 0].reshape(column_shape) * v[..., 0:1, :]
    for j in range(1, m):
        out = out + W[:, j].reshape(column_shape) * v[..., j:j + 1, :]
    return out


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def hidden_states(W_h, drive, sigma_h: str, batch_major: bool):
    """Run h_t = drive_t + W_h σ_h(h_{t-1}) from h_{-1} = 0 over a batch.

    `drive` has shape (seq_len, n_hidden, batch), or (seq_len, batch, n_hidden) when
    `batch_major`; returns every h_t in the same layout.

    The gradient is written by hand so that the backward scan only propagates the
    hidden-state cotangent, and the W_h gradient is one contraction after the scan.
    Autodiff of the scan instead reduces over the batch inside every backward step,
    which measured 1.5 times slower on the benchmark grid.
    """
    return _hidden_states_fwd(W_h, drive, sigma_h, batch_major)[0]


def _recurrent_matmul(W, v, batch_major):
    return v @ W.T if batch_major else batch_matmul(W, v)


def _hidden_states_fwd(W_h, drive, sigma_h, batch_major):
    activation = ACTIVATION_FUNCTIONS[sigma_h]

    def step(h, d):
        h = d + _recurrent_matmul(W_h, activation(h), batch_major)
        return h, h

    _, hs = lax.scan(step, jnp.zeros_like(drive[0]), drive)
    return hs, (W_h, hs)


def _hidden_states_bwd(sigma_h, batch_major, residuals, cotangent):
    # With δ_t = dL/dh_t and g_t the cotangent of h_t from later layers:
    # δ_t = g_t + σ_h'(h_t) ⊙ W_hᵀ δ_{t+1} with δ_seq_len = 0, dL/d drive_t = δ_t,
    # and dL/dW_h = Σ_t Σ_batch δ_t σ_h(h_{t-1})ᵀ.
    W_h, hs = residuals
    W_h_T = W_h.T

    def step(delta_next, inputs):
        g, h = inputs
        back = _recurrent_matmul(W_h_T, delta_next, batch_major)
        if sigma_h == "relu":
            back = jnp.where(h > 0, back, 0.0)
        delta = g + back
        return delta, delta

    _, deltas = lax.scan(step, jnp.zeros_like(cotangent[0]), (cotangent, hs), reverse=True)
    previous = ACTIVATION_FUNCTIONS[sigma_h](hs[:-1])
    if batch_major:
        grad_W_h = jnp.einsum("tbn,tbm->nm", deltas[1:], previous)
    else:
        grad_W_h = jnp.sum(deltas[1:, :, None, :] * previous[:, None, :, :], axis=(0, 3))
    return grad_W_h, deltas


hidden_states.defvjp(_hidden_states_fwd, _hidden_states_bwd)


def toeplitz_outputs_matrix(kernel):
    """Return the block-Toeplitz matrix M with M[t, i, u, j] = kernel[t-u, i, j] for
    u <= t and 0 otherwise, reshaped to (seq_len·n_out, seq_len·n_in)."""
    seq_len, n_out, n_in = kernel.shape
    lag = np.arange(seq_len)[:, None] - np.arange(seq_len)[None, :]
    blocks = jnp.where((lag >= 0)[:, :, None, None], kernel[np.maximum(lag, 0)], 0.0)
    return blocks.transpose(0, 2, 1, 3).reshape(seq_len * n_out, seq_len * n_in)
