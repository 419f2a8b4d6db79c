"""The expected loss of k-delay recall in closed form, split into four named terms.

Everything here is pure `jax.numpy` on one model's projections, so it runs inside the
compiled training program, under `vmap`, and under `grad` (the `expected` trainer).

Notation. a_s = W_yᵀ w_s is the (n_features, n_features) projection of the feature
direction w_s (the impulse response s steps after an input) onto the readout: entry
(i, j) is the pre-activation of output i, s steps after a unit input on coordinate j.
Each input x_{t,j} is independently 0 with probability S and otherwise v ~
Uniform[magnitude_low, magnitude_high], so with p = 1 − S, μ = E[v], ν = E[v²]:
E[x] = pμ and E[x²] = pν.

Derivation. With σ_h = σ_y = identity and no readout bias, output i at time t is
Σ_{s≤t} Σ_j (a_s)_{ij} x_{t−s,j} and its target is x_{t−k,i} for t ≥ k, else 0. The
error is Σ_{(s,j)} c_{s,ij} x_{t−s,j} with c_s = a_s − [t ≥ k][s = k] I. All inputs
are independent, so

    E[e²] = pν Σ_{(s,j)} c²_{s,ij} + p²μ² Σ_{(s,j)≠(s',j')} c_{s,ij} c_{s',ij'}.

Substituting c and splitting off the target entry (s, j) = (k, i) gives four terms per
time step t and output i. Write d = (a_k)_{ii}, call every other existing entry
(s, j) ≠ (k, i) with s ≤ t an *interfering* entry, and for t < k call every existing
entry interfering and set the target terms to 0:

    task_reward                 pν (d − 1)²                                (t ≥ k)
    mean_correction           −2p²μ² Σ_interfering (a_s)_{ij}              (t ≥ k)
    projection_interference     pν Σ_interfering (a_s)²_{ij}
    compositional_interference  p²μ² Σ_{(s,j)≠(s',j')} (a_s)_{ij} (a_{s'})_{ij'}

The compositional sum runs over ordered pairs of *all* existing entries, the target
entry included. That is where the cross terms 2(d − 1) Σ_interfering a go: the d·a part
sits in the compositional term and the −a part is the mean correction. With this
assignment the four terms sum exactly to E[e²] for every value of d, not only d = 1.
For n_features = 1 they are the textbook form

    E[L] = Σ_t [ pν (a_k − 1)² − 2p²μ² Σ_{s≠k} a_s + pν Σ_{s≠k} a_s²
                 + p²μ² Σ_{s≠s'} a_s a_{s'} ].

The loss sums E[e²] over t and over outputs i with importance weight decay**i.

For other models the same formula evaluated on the impulse-response projections is
only an approximation: with a ReLU readout the output is not linear in the inputs, and
with a ReLU recurrence neither is the hidden state. `sparse_relu_loss` is the first
order in p of the ReLU-readout loss instead. With a readout bias neither formula holds,
because the bias adds terms in b and b·pμ; callers report them as missing.
"""

import jax
import jax.numpy as jnp

from tsjax.grid import GridPoint, StaticSpec
from tsjax.models import RNN
from tsjax.task import importance_weights, magnitude_moments

TERM_NAMES = ("task_reward", "mean_correction", "projection_interference",
              "compositional_interference")


def loss_terms(projections, k, sparsity, magnitude_low, magnitude_high, weights) -> dict:
    """Compute the four terms of the expected sequence loss and their sum.

    `projections` has shape (seq_len, n_features, n_features) with a_s[i, j] as in the
    module docstring; `weights` has shape (n_features,). `k` may be traced. Returns a
    dict of scalars keyed by `TERM_NAMES` plus `expected_loss`, their sum, which is the
    exact expected loss of a linear model without readout bias.
    """
    seq_len, n_features = projections.shape[:2]
    mean, second_moment = magnitude_moments(magnitude_low, magnitude_high)
    active = 1.0 - sparsity
    first = active * mean                # E[x]
    second = active * second_moment      # E[x²]

    # Zero the target entries (a_k)_{ii}, so the running sums over ages s <= t hold only
    # interfering entries. For t < k the target entry has not appeared yet, so the same
    # sums serve every t. Summing the interfering entries directly, rather than
    # subtracting the target from a full sum, keeps float32 accurate for a model near
    # zero loss, whose terms would otherwise be differences of numbers near 1.
    recall = jnp.diagonal(projections[k])                               # (N,) d_i
    is_target = (jnp.arange(seq_len) == k)[:, None, None] & jnp.eye(n_features, dtype=bool)
    interfering = jnp.where(is_target, 0.0, projections)
    interfering_sum = jnp.cumsum(jnp.sum(interfering, axis=2), axis=0)             # (T, N)
    interfering_squares = jnp.cumsum(jnp.sum(interfering**2, axis=2), axis=0)      # (T, N)
    has_target = (jnp.arange(seq_len) >= k)[:, None]                                # (T, 1)
    existing_recall = jnp.where(has_target, recall, 0.0)                            # (T, N)

    task_reward = jnp.where(has_target, second * (recall - 1.0) ** 2, 0.0)
    mean_correction = -2.0 * first**2 * jnp.where(has_target, interfering_sum, 0.0)
    projection_interference = second * interfering_squares
    # Ordered pairs of distinct existing entries, target included:
    # (Σ a)² − Σ a² with Σ a = interfering_sum + d, Σ a² = interfering_squares + d².
    compositional_interference = first**2 * (
        interfering_sum**2 - interfering_squares + 2.0 * existing_recall * interfering_sum)

    terms = {
        "task_reward": task_reward,
        "mean_correction": mean_correction,
        "projection_interference": projection_interference,
        "compositional_interference": compositional_interference,
    }
    totals = {name: jnp.sum(weights * value) for name, value in terms.items()}
    totals["expected_loss"] = sum(totals[name] for name in TERM_NAMES)
    return totals


def sparse_relu_loss(projections, k, sparsity, magnitude_low, magnitude_high, weights):
    """Return the first order in p = 1 − S of the expected loss with a ReLU readout.

        E[L] ≈ pν Σ_t Σ_i w_i [ (ReLU((a_k)_{ii}) − 1)² + Σ_interfering ReLU((a_s)_{ij})² ]

    with the target term only for t ≥ k. To first order in p at most one input of a
    sequence is active. A single input v ≥ 0 on coordinate j, s steps old, gives output
    i the value ReLU((a_s)_{ij}) v, so an entry with (a_s)_{ij} < 0 costs nothing.
    The error is O(p²) relative to p, and the formula needs magnitude_low >= 0 and no
    readout bias. Because ReLU is positively homogeneous this also holds for a ReLU
    recurrence when `projections` come from its impulse response.
    """
    seq_len = projections.shape[0]
    _, second_moment = magnitude_moments(magnitude_low, magnitude_high)
    second = (1.0 - sparsity) * second_moment

    positive = jax.nn.relu(projections)
    squares = jnp.cumsum(jnp.sum(positive**2, axis=2), axis=0)          # (T, N)
    recall = jnp.diagonal(positive[k])
    has_target = (jnp.arange(seq_len) >= k)[:, None]
    per_step = squares + jnp.where(has_target, (recall - 1.0) ** 2 - recall**2, 0.0)
    return second * jnp.sum(weights * per_step)


def model_projections(model: RNN, seq_len: int):
    """Return a_s = W_yᵀ w_s for s < seq_len, shape (seq_len, n_features, n_features)."""
    directions = model.impulse_response(seq_len)
    return jnp.einsum("hi,shj->sij", model.W_y, directions)


def model_theory_metrics(model: RNN, point: GridPoint, spec: StaticSpec) -> dict:
    """Compute the closed-form loss terms of `model` at one grid point.

    Returns the `loss_terms` dict, plus `expected_loss_sparse_relu` when the readout is
    ReLU. Returns an empty dict for a model with a readout bias, where neither formula
    applies.
    """
    if spec.readout_bias:
        return {}
    projections = model_projections(model, spec.seq_len)
    weights = importance_weights(spec.n_features, point.importance_decay)
    arguments = (projections, point.k, point.sparsity, point.magnitude_low,
                 point.magnitude_high, weights)
    metrics = loss_terms(*arguments)
    if spec.sigma_y == "relu":
        metrics["expected_loss_sparse_relu"] = sparse_relu_loss(*arguments)
    return metrics


def expected_objective(model: RNN, point: GridPoint, spec: StaticSpec):
    """Return the training objective of the `expected` trainer: no sampling.

    With an identity readout it is the exact expected loss (`loss_terms`). With a ReLU
    readout it is the sparse-limit approximation `sparse_relu_loss`, whose minimiser
    does not depend on the sparsity, because p only scales it. The config rejects a ReLU
    recurrence and a readout bias with this trainer.
    """
    projections = model_projections(model, spec.seq_len)
    weights = importance_weights(spec.n_features, point.importance_decay)
    arguments = (projections, point.k, point.sparsity, point.magnitude_low,
                 point.magnitude_high, weights)
    if spec.sigma_y == "relu":
        return sparse_relu_loss(*arguments)
    return loss_terms(*arguments)["expected_loss"]
