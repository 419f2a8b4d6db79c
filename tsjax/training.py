"""Training of one grid point, written for a single model; `train_chunk` vmaps it.

The whole loop runs inside `lax.scan`: an outer scan over checkpoint segments and an
inner scan over the steps of each segment, so the loss curve and the checkpoint
metrics come out of the compiled program without host round trips.
"""

import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jax import lax

from tsjax.grid import GridPoint, StaticSpec
from tsjax.models import RNN, init_rnn
from tsjax.task import delayed_targets, importance_weights, sample_inputs
from tsjax.theory import expected_objective, model_theory_metrics

_trace_count = 0


class TrainState(eqx.Module):
    """The training carry of one model.

    `diverged_step` is -1 while every loss and parameter has been finite, and otherwise
    the first step whose loss or update was not finite. From then on the model and
    optimizer state stay frozen at their last finite values.
    """

    model: RNN
    opt_state: optax.OptState
    diverged_step: jax.Array


class TrainResult(NamedTuple):
    """What training one grid point returns; in a chunk every field gains a leading axis.

    - `model`: the trained RNN.
    - `loss_curve`: mean training loss of each checkpoint segment, shape (checkpoints,).
    - `checkpoint_metrics`: dict of arrays of shape (checkpoints, ...) measured on the
      model at the end of each segment.
    - `diverged_step`: int32, -1 if training stayed finite.
    - `eval_loss`, `eval_loss_stderr`: Monte Carlo loss on held-out sequences and its
      standard error.
    - `eval_output_max`: max output per coordinate over the held-out sequences,
      shape (n_features,); 0 marks a silent ReLU readout.
    - `feature_directions`: impulse response w_s, shape (seq_len, n_hidden, n_features).
    - `projections`: a_s = W_yᵀ w_s, shape (seq_len, n_features, n_features).
    """

    model: RNN
    loss_curve: jax.Array
    checkpoint_metrics: dict
    diverged_step: jax.Array
    eval_loss: jax.Array
    eval_loss_stderr: jax.Array
    eval_output_max: jax.Array
    feature_directions: jax.Array
    projections: jax.Array


def trace_count() -> int:
    """Return how many times `train` has been traced in this process."""
    return _trace_count


def segment_plan(steps: int, checkpoints: int) -> tuple[int, int]:
    """Return (segment length, number of segments) that tile `steps` exactly.

    The number of segments is the largest divisor of `steps` not above `checkpoints`.
    """
    segments = max(d for d in range(1, min(steps, checkpoints) + 1) if steps % d == 0)
    return steps // segments, segments


def make_optimizer(name: str, learning_rate) -> optax.GradientTransformation:
    if name == "adam":
        return optax.adam(learning_rate)
    if name == "sgd":
        return optax.sgd(learning_rate)
    raise ValueError(f"unknown optimizer {name!r}")


def sequence_loss(model: RNN, xs, k, weights):
    """Squared error of one sequence, summed over time and weighted output coordinates."""
    errors = model(xs) - delayed_targets(xs, k)
    return jnp.sum(weights * errors**2)


def batch_loss(model: RNN, xs, k, weights):
    """Mean over the batch (leading axis of `xs`) of `sequence_loss`."""
    return jnp.mean(jax.vmap(sequence_loss, in_axes=(None, 0, None, None))(model, xs, k, weights))


def checkpoint_metrics(model: RNN, point: GridPoint, spec: StaticSpec) -> dict:
    """Measure a model at a checkpoint; the values go to the `checkpoint_metrics` field.

    The metrics are the closed-form loss terms of `tsjax.theory.model_theory_metrics`,
    so the values at the last checkpoint are those of the trained model.
    """
    return model_theory_metrics(model, point, spec)


def _all_finite(tree) -> jax.Array:
    leaves = jax.tree.leaves(eqx.filter(tree, eqx.is_inexact_array))
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves]))


def _tree_where(condition, new, old):
    return jax.tree.map(lambda a, b: jnp.where(condition, a, b), new, old)


def train(point: GridPoint, spec: StaticSpec) -> TrainResult:
    """Train one model at one grid point; every random draw derives from `point.seed`."""
    global _trace_count
    _trace_count += 1

    key = jax.random.key(point.seed)
    init_key, train_key, eval_key = jax.random.split(key, 3)
    model = init_rnn(init_key, n_features=spec.n_features, n_hidden=spec.n_hidden,
                     sigma_h=spec.sigma_h, sigma_y=spec.sigma_y,
                     readout_bias=spec.readout_bias, init_scale=point.init_scale,
                     init_spectral_norm=point.init_spectral_norm)
    optimizer = make_optimizer(spec.optimizer, point.learning_rate)
    weights = importance_weights(spec.n_features, point.importance_decay)
    batch_shape = (spec.batch_size, spec.seq_len, spec.n_features)

    def sample(key):
        return sample_inputs(key, batch_shape, point.sparsity, point.magnitude_low,
                             point.magnitude_high)

    # The `expected` trainer minimises the closed-form loss and draws no samples.
    def objective(model, step):
        if spec.trainer == "expected":
            return expected_objective(model, point, spec)
        xs = sample(jax.random.fold_in(train_key, step))
        return batch_loss(model, xs, point.k, weights)

    def train_step(state: TrainState, step):
        loss, grads = eqx.filter_value_and_grad(objective)(state.model, step)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.model)
        model = eqx.apply_updates(state.model, updates)

        # A non-finite loss or update freezes this model only. `where` acts per model
        # under vmap, so the other models in the chunk are unaffected.
        finite = jnp.isfinite(loss) & _all_finite(model)
        still_healthy = state.diverged_step < 0
        candidate = TrainState(model, opt_state, state.diverged_step)
        state = _tree_where(finite & still_healthy, candidate, state)
        diverged_step = jnp.where(still_healthy & ~finite, step, state.diverged_step)
        return TrainState(state.model, state.opt_state, diverged_step.astype(jnp.int32)), loss

    segment_length, segments = segment_plan(spec.steps, spec.checkpoints)

    def run_segment(state, segment):
        steps = segment * segment_length + jnp.arange(segment_length)
        state, losses = lax.scan(train_step, state, steps)
        return state, (jnp.mean(losses), checkpoint_metrics(state.model, point, spec))

    state = TrainState(model, optimizer.init(model), jnp.int32(-1))
    state, (loss_curve, metrics) = lax.scan(run_segment, state, jnp.arange(segments))
    model = state.model

    eval_loss, eval_stderr, output_max = evaluate(model, eval_key, sample, point.k, weights,
                                                  spec.eval_samples, spec.batch_size)
    directions = model.impulse_response(spec.seq_len)
    projections = jnp.einsum("hi,shj->sij", model.W_y, directions)
    return TrainResult(model, loss_curve, metrics, state.diverged_step, eval_loss,
                       eval_stderr, output_max, directions, projections)


def evaluate(model: RNN, key, sample, k, weights, samples: int, batch_size: int):
    """Estimate the expected loss on fresh sequences drawn with `key`.

    Returns the mean sequence loss, its standard error and the max output per
    coordinate. Batches are combined with the pairwise variance formula, which stays
    accurate in float32 where a running sum of squares would not.
    """
    batches = math.ceil(samples / batch_size)

    def eval_batch(output_max, index):
        xs = sample(jax.random.fold_in(key, index))
        losses = jax.vmap(sequence_loss, in_axes=(None, 0, None, None))(model, xs, k, weights)
        outputs = jax.vmap(model)(xs)
        output_max = jnp.maximum(output_max, jnp.max(outputs, axis=(0, 1)))
        mean = jnp.mean(losses)
        return output_max, (mean, jnp.sum((losses - mean) ** 2))

    initial_max = jnp.full(model.W_y.shape[1], -jnp.inf)
    output_max, (means, squares) = lax.scan(eval_batch, initial_max, jnp.arange(batches))
    mean = jnp.mean(means)
    total_squares = jnp.sum(squares) + batch_size * jnp.sum((means - mean) ** 2)
    count = batches * batch_size
    stderr = jnp.sqrt(total_squares / max(count - 1, 1) / count)
    return mean, stderr, output_max


# The one place where the grid axis is added: a chunk of grid points trains as one
# vmapped, compiled call per static spec.
train_chunk = jax.jit(jax.vmap(train, in_axes=(0, None)), static_argnums=1)
