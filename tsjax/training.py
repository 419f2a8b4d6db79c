"""Training of one grid point, written for a single model; `train_chunk` vmaps it.

The whole loop runs inside `lax.scan`: an outer scan over checkpoint segments and an
inner scan over the steps of each segment, so the loss curve and the checkpoint
metrics come out of the compiled program without host round trips.

`train_chunk` runs a chunk as blocks of a few models: each block is `vmap` of `train`,
a device trains its blocks one after another with `lax.map`, and the chunk is sharded
over the local devices with `shard_map`. Models of a block that share a seed share
their input draws.
"""

import functools
import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.sharding import PartitionSpec as P

from tsjax.distributed import GRID_AXIS, local_mesh
from tsjax.grid import GridPoint, StaticSpec
from tsjax.models import RNN, init_rnn, uses_parallel_form
from tsjax.task import delayed_targets, importance_weights, inputs_from_uniforms
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
    """Result of training one grid point; in a chunk every field gains a leading axis.

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


class InputStream(NamedTuple):
    """The source of one model's training and eval inputs.

    A model's inputs depend only on its seed, so models with equal seeds see equal
    inputs. A compiled block of models draws them once per distinct seed in `seeds`,
    and each model reads row `slot`. Training a single model alone uses its own seed:
    `seeds = [seed]`, `slot = 0`.
    """

    seeds: jax.Array
    slot: jax.Array


# Inputs come from Threefry 4x32 (128-bit key). On CPU, XLA runs it about three times
# faster than the default Threefry 2x32, whose rounds JAX 0.10.2 lowers as a loop.
# Philox 4x32 is about as fast, but in JAX 0.10.2 it fails to lower under shard_map.
DATA_PRNG = "threefry4x32"
TRAIN_STREAM, EVAL_STREAM = 0, 1


def shared_uniforms(seeds, stream: int, index, shape):
    """Draw Uniform[0, 1) arrays of `shape` for the seeds in `seeds`.

    Returns (table, rows): the draws for `seeds[i]` are `table[rows[i]]`, and each is
    a function of (seeds[i], stream, index) alone. When at most half the seeds are
    distinct, a loop draws each distinct seed once, so a block whose models share one
    seed draws once, however many models it holds.
    """

    def draw(seed):
        key = jax.random.split(jax.random.key(seed, impl=DATA_PRNG))[stream]
        return jax.random.uniform(jax.random.fold_in(key, index), shape)

    count = seeds.shape[0]
    if count == 1:
        return draw(seeds[0])[None], jnp.zeros(1, dtype=jnp.int32)
    first = jnp.argmax(seeds[:, None] == seeds[None, :], axis=1)
    is_first = first == jnp.arange(count)
    rank = jnp.cumsum(is_first) - 1
    distinct = seeds[jnp.argsort(~is_first, stable=True)]

    def fill(row, table):
        return lax.dynamic_update_index_in_dim(table, draw(distinct[row]), row, 0)

    def draw_distinct():
        return lax.fori_loop(0, distinct_count, fill, jnp.zeros((count, *shape)))

    def draw_every_seed():
        return jax.vmap(draw)(distinct)

    # With mostly distinct seeds one vectorized draw of every row beats the loop.
    distinct_count = jnp.sum(is_first)
    table = lax.cond(2 * distinct_count > count, draw_every_seed, draw_distinct)
    return table, rank[first].astype(jnp.int32)


def trace_count() -> int:
    """Return how many times `train` has been traced in this process."""
    return _trace_count


def segment_plan(steps: int, checkpoints: int) -> tuple[int, int]:
    """Return (segment length, number of segments) that tile `steps` exactly.

    The number of segments is the largest divisor of `steps` not above `checkpoints`.
    """
    segments = max(d for d in range(1, min(steps, checkpoints) + 1) if steps % d == 0)
    return steps // segments, segments


def learning_rate_schedule(name: str, learning_rate, steps: int):
    """Return the learning rate for optax: the scalar itself for `constant`, or a
    schedule of the step count for `cosine`.

    `cosine` is optax.cosine_decay_schedule from `learning_rate` at step 0 down to 0 at
    step `steps`, so the last of the `steps` updates uses
    learning_rate * (1 - cos(pi / steps)) / 2, close to 0. `constant` passes the scalar unchanged, which keeps the
    optimizer state and the results of runs without a schedule as they were.
    """
    if name == "constant":
        return learning_rate
    if name == "cosine":
        return optax.cosine_decay_schedule(learning_rate, decay_steps=steps, alpha=0.0)
    raise ValueError(f"unknown learning-rate schedule {name!r}")


def make_optimizer(name: str, learning_rate, schedule: str = "constant",
                   steps: int = 1) -> optax.GradientTransformation:
    """Build optimizer `name` with `learning_rate` under `schedule` over `steps` updates."""
    rate = learning_rate_schedule(schedule, learning_rate, steps)
    if name == "adam":
        return optax.adam(rate)
    if name == "sgd":
        return optax.sgd(rate)
    raise ValueError(f"unknown optimizer {name!r}")


def sequence_loss(model: RNN, xs, k, weights):
    """Squared error of one sequence, summed over time and weighted output coordinates."""
    errors = model(xs) - delayed_targets(xs, k)
    return jnp.sum(weights * errors**2)


def batch_loss(model: RNN, xs, k, weights):
    """Mean over the batch (leading axis of `xs`) of `sequence_loss`."""
    return jnp.mean(jax.vmap(sequence_loss, in_axes=(None, 0, None, None))(model, xs, k, weights))


def fast_batch_loss(model: RNN, xs, k, weights):
    """`batch_loss` for a batch laid out (seq_len, n_features, batch), on the fast forward."""
    errors = model.batch_outputs(xs) - delayed_targets(xs, k)
    return jnp.sum(weights[:, None] * errors**2) / xs.shape[-1]


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


def train(point: GridPoint, spec: StaticSpec, stream: InputStream | None = None, *,
          reference: bool = False) -> TrainResult:
    """Train one model at one grid point; every random draw derives from `point.seed`.

    `stream` lets a block of models share input draws (see `InputStream`); its
    default draws this model's own. With `reference`, the loss runs the
    straightforward forward pass (`batch_loss`, one `lax.scan` per sequence) on the
    same inputs; tests compare the fast path against it.
    """
    global _trace_count
    _trace_count += 1

    if stream is None:
        stream = InputStream(jnp.reshape(point.seed, (1,)), jnp.int32(0))
    # Initial weights come from the first of three keys split from the seed's key.
    # Inputs come from `shared_uniforms`, which derives its own keys from the seed.
    init_key = jax.random.split(jax.random.key(point.seed), 3)[0]
    model = init_rnn(init_key, n_features=spec.n_features, n_hidden=spec.n_hidden,
                     sigma_h=spec.sigma_h, sigma_y=spec.sigma_y,
                     readout_bias=spec.readout_bias, init_scale=point.init_scale,
                     init_spectral_norm=point.init_spectral_norm)
    optimizer = make_optimizer(spec.optimizer, point.learning_rate, spec.lr_schedule,
                               spec.steps)
    weights = importance_weights(spec.n_features, point.importance_decay)
    batch_shape = (spec.seq_len, spec.n_features, spec.batch_size)

    def sample(stream_id, index):
        """Return the inputs of one batch, laid out (seq_len, n_features, batch)."""
        table, rows = shared_uniforms(stream.seeds, stream_id, index, batch_shape)
        u = table[rows[stream.slot]]
        return inputs_from_uniforms(u, point.sparsity, point.magnitude_low,
                                    point.magnitude_high)

    def loss_function(model, xs):
        if reference:
            return batch_loss(model, jnp.transpose(xs, (2, 0, 1)), point.k, weights)
        return fast_batch_loss(model, xs, point.k, weights)

    # The `expected` trainer minimises the closed-form loss and draws no samples.
    def objective(model, step):
        if spec.trainer == "expected":
            return expected_objective(model, point, spec)
        return loss_function(model, sample(TRAIN_STREAM, step))

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

    eval_loss, eval_stderr, output_max = evaluate(
        model, lambda index: sample(EVAL_STREAM, index), point.k, weights,
        spec.eval_samples, spec.batch_size, reference=reference)
    directions = model.impulse_response(spec.seq_len)
    projections = jnp.einsum("hi,shj->sij", model.W_y, directions)
    return TrainResult(model, loss_curve, metrics, state.diverged_step, eval_loss,
                       eval_stderr, output_max, directions, projections)


def evaluate(model: RNN, sample, k, weights, samples: int, batch_size: int, *,
             reference: bool = False):
    """Estimate the expected loss on fresh sequences; `sample(index)` returns batch
    `index` laid out (seq_len, n_features, batch).

    Returns the mean sequence loss, its standard error and the max output per
    coordinate. Batches are combined with the pairwise variance formula, which stays
    accurate in float32 where a running sum of squares would not.
    """
    batches = math.ceil(samples / batch_size)

    def eval_batch(output_max, index):
        xs = sample(index)
        if reference:
            sequences = jnp.transpose(xs, (2, 0, 1))
            outputs = jnp.transpose(jax.vmap(model)(sequences), (1, 2, 0))
        else:
            outputs = model.batch_outputs(xs)
        errors = outputs - delayed_targets(xs, k)
        losses = jnp.sum(weights[:, None] * errors**2, axis=(0, 1))
        output_max = jnp.maximum(output_max, jnp.max(outputs, axis=(0, 2)))
        mean = jnp.mean(losses)
        return output_max, (mean, jnp.sum((losses - mean) ** 2))

    initial_max = jnp.full(model.W_y.shape[1], -jnp.inf)
    output_max, (means, squares) = lax.scan(eval_batch, initial_max, jnp.arange(batches))
    mean = jnp.mean(means)
    total_squares = jnp.sum(squares) + batch_size * jnp.sum((means - mean) ** 2)
    count = batches * batch_size
    stderr = jnp.sqrt(total_squares / max(count - 1, 1) / count)
    return mean, stderr, output_max


# Models per vmapped block. A block trains as one vmapped program, and the blocks of a
# device run one after another, so the block's working set stays in cache. Measured on
# the benchmark grid on a 2-core Xeon (BENCHMARKS.md): the recurrent path ran fastest
# with blocks of about this many hidden-state elements (4 models of n_hidden = 2 at
# batch 256; 16-model blocks ran 1.2 times slower), the block-Toeplitz path with
# blocks of 16 models. These are tuning knobs, not limits.
BLOCK_ELEMENTS = 2048
PARALLEL_FORM_BLOCK = 16


# On a GPU or TPU a block is a device's whole share of the chunk: one wide program
# keeps the accelerator busy, and it has no small cache to fit.
# NOTE: the accelerator settings have not been measured; no GPU was available.
ACCELERATOR_BLOCK = 2**30


def default_block_size(spec: StaticSpec, platform: str | None = None) -> int:
    """Return how many models of `spec` one vmapped block trains together on `platform`
    (default: JAX's default backend)."""
    if (platform or jax.default_backend()) != "cpu":
        return ACCELERATOR_BLOCK
    if uses_parallel_form(spec.sigma_h, spec.seq_len, spec.n_features):
        return PARALLEL_FORM_BLOCK
    return max(1, BLOCK_ELEMENTS // (spec.n_hidden * spec.batch_size))


def train_chunk(points: GridPoint, spec: StaticSpec, *,
                block_size: int | None = None) -> TrainResult:
    """Train a chunk of grid points (each field with a leading axis) in one compiled call.

    The chunk is sorted by seed, so that models with equal seeds share input draws.
    It is padded to a whole number of blocks per local device and sharded over the
    local devices, and each device trains its blocks one after another. Returns the
    results in the order of `points`, as host arrays. A model's result does not depend on the
    other models of its chunk; it depends on the block size in the last float32 bits.
    """
    points = jax.tree.map(np.asarray, points)
    count = len(points.seed)
    mesh = local_mesh()
    devices = mesh.size
    block = block_size or min(default_block_size(spec), math.ceil(count / devices))
    padded = math.ceil(count / (block * devices)) * block * devices

    order = np.argsort(points.seed, kind="stable")
    order = np.concatenate([order, np.full(padded - count, order[-1])])
    blocked = jax.tree.map(lambda values: values[order].reshape(padded // block, block),
                           points)
    result = _train_blocks(blocked, spec, mesh)

    position = np.empty(count, dtype=np.int64)
    position[order[:count]] = np.arange(count)
    return jax.tree.map(
        lambda leaf: np.asarray(leaf).reshape(padded, *leaf.shape[2:])[position], result)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _train_blocks(points: GridPoint, spec: StaticSpec, mesh) -> TrainResult:
    """Train points laid out (blocks, block); blocks are sharded over `mesh`."""

    def train_block(block_points):
        # The one place where the grid axis is added: every model of a block runs the
        # single-model `train` under vmap. The block's seeds are not batched, so the
        # input draws they index are computed once per block.
        stream = InputStream(block_points.seed, jnp.arange(block_points.seed.shape[0]))
        return jax.vmap(train, in_axes=(0, None, InputStream(None, 0)))(
            block_points, spec, stream)

    def train_device_blocks(device_points):
        return lax.map(train_block, device_points)

    # Devices never communicate: each trains its own blocks. check_vma=False, because
    # the carries of the input-draw scans start as device-invariant zeros.
    return jax.shard_map(train_device_blocks, mesh=mesh, in_specs=P(GRID_AXIS),
                         out_specs=P(GRID_AXIS), check_vma=False)(points)
