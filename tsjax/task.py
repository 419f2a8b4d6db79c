"""The k-delay recall task on sparse inputs.

Each input coordinate is zero with probability `sparsity` and otherwise drawn from
Uniform[magnitude_low, magnitude_high]. The target is the input k steps earlier, and
zero for the first k steps.
"""

import jax
import jax.numpy as jnp


def sample_inputs(key, shape, sparsity, magnitude_low, magnitude_high):
    """Draw sparse inputs of `shape`, e.g. (batch, seq_len, n_features).

    One uniform draw u per element gives both parts: the element is active when
    u >= sparsity, and then (u - sparsity) / (1 - sparsity) is again Uniform[0, 1),
    so it sets the magnitude. Equal keys therefore give coupled inputs across sparsities.
    """
    return inputs_from_uniforms(jax.random.uniform(key, shape), sparsity, magnitude_low,
                                magnitude_high)


def inputs_from_uniforms(u, sparsity, magnitude_low, magnitude_high):
    """Turn Uniform[0, 1) draws `u` into sparse inputs, as `sample_inputs` does."""
    active = u >= sparsity
    fraction = (u - sparsity) / (1.0 - sparsity)
    magnitude = magnitude_low + (magnitude_high - magnitude_low) * fraction
    return jnp.where(active, magnitude, 0.0)


def delayed_targets(xs, k):
    """Return the k-delay targets of `xs`, whose leading axis is time.

    `xs` is one sequence (seq_len, n_features) or a batch laid out time first, such as
    (seq_len, n_features, batch). `k` may be traced: the shift is a gather with a mask,
    never a Python slice.
    """
    seq_len = xs.shape[0]
    t = jnp.arange(seq_len)
    source = jnp.clip(t - k, 0, seq_len - 1)
    has_target = (t >= k).reshape((seq_len,) + (1,) * (xs.ndim - 1))
    return jnp.where(has_target, xs[source], 0.0)


def importance_weights(n_features, decay):
    """Return the loss weight of each output coordinate: decay**i for feature i."""
    return decay ** jnp.arange(n_features, dtype=jnp.float32)


def magnitude_moments(magnitude_low, magnitude_high):
    """Return μ = E[v] and ν = E[v²] of v ~ Uniform[magnitude_low, magnitude_high]."""
    mean = (magnitude_low + magnitude_high) / 2
    second_moment = (magnitude_low**2 + magnitude_low * magnitude_high + magnitude_high**2) / 3
    return mean, second_moment
