"""Numbers behind each finding of the temporal-superposition study, computed from result rows.

Every function takes the frame of `load_results` and returns a pandas table, so the
report page and the reproduction notes quote the same numbers. Geometry is measured on
``ok`` rows only, because dead and diverged models carry no trained geometry. By default
it uses the best (lowest final loss) seed of each grid point, as `tsjax fit` does.

Notation: a_s = W_yᵀ w_s is the projection at age s, entry [i, j] the readout of output
i, s steps after a unit input on coordinate j. The intermediate features of coordinate i
are the diagonal entries (a_s)_ii for s < k. With a ReLU readout an entry below zero
costs nothing, so such a feature lies in the interference-free half-space.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.loader import weights
from analysis.seeds import select_seeds

STATUSES = ("ok", "dead", "diverged")
# A feature counts as recalled when (a_k)_ii is at least RECALL_KEPT, and as not
# recalled when it is at most RECALL_ABSENT. Values between are partial recall.
# A recalled feature's value sits below 1 when the model trades recall for less
# interference, so the upper threshold is well below 1.
RECALL_KEPT = 0.5
RECALL_ABSENT = 0.1
# Off-diagonal entries of a_k up to this value count as zero in `offdiagonal_small`:
# a leak of 5% of a unit recall.
OFFDIAGONAL_TOLERANCE = 0.05
# Convergence is judged on the loss change over the last quarter of training.
CONVERGED_CHANGE = 0.01
# An ok model whose held-out loss is at least this share of the loss of an always-zero
# output learned almost nothing (see status_fractions).
STUCK_LOSS_RATIO = 0.9
# A checkpoint interval where the expected loss falls by more than this share of its
# total fall belongs to a drop of the staircase (see loss_drops).
DROP_THRESHOLD = 0.05
# An interference fall after its peak smaller than this share of the largest expected
# loss does not count as a temporal-separation stage (see staircase).
SEPARATION_MINIMUM = 0.05
# Readout alignment has begun once the task term has fallen by this share of its total
# fall (see staircase).
ALIGNMENT_ONSET = 0.1
POINT_KEYS = ("model", "n_hidden", "n_features", "k", "sparsity")


def _point_keys(df: pd.DataFrame) -> list[str]:
    return [key for key in POINT_KEYS if key in df.columns]


def _representatives(df: pd.DataFrame, seeds: str) -> pd.DataFrame:
    keys = [key for key in _point_keys(df) if key != "sparsity"]
    return select_seeds(df, seeds, group_by=keys)


def silent_loss(df: pd.DataFrame) -> pd.Series:
    """Return each row's expected loss of a model whose output is always 0.

    It is the energy of the targets, (T − k) p ν Σ_i decay**i, with p = 1 − S and ν the
    second moment of the input magnitude.
    """
    low, high = df["magnitude_low"], df["magnitude_high"]
    second_moment = (low**2 + low * high + high**2) / 3
    weight_sum = [np.sum(decay ** np.arange(n)) for decay, n in zip(df["importance_decay"], df["n_features"])]
    return (df["seq_len"] - df["k"]) * (1 - df["sparsity"]) * second_moment * weight_sum


def status_fractions(df: pd.DataFrame, by=("model",)) -> pd.DataFrame:
    """Count the models of each status per group and the fraction that ended dead, diverged or stuck.

    A `stuck` model is ok by status but learned almost nothing: its held-out loss is at
    least STUCK_LOSS_RATIO times the loss of an always-zero output. The column is left
    out when the rows lack the magnitude, importance or eval_loss columns it needs.
    """
    by = [key for key in by if key in df.columns]
    counts = pd.crosstab([df[key] for key in by], df["status"]).reindex(columns=STATUSES, fill_value=0)
    counts.columns.name = None
    table = counts.reset_index()
    table["models"] = counts.sum(axis=1).to_numpy()
    table["dead_fraction"] = table["dead"] / table["models"]
    table["diverged_fraction"] = table["diverged"] / table["models"]

    needed = ("magnitude_low", "magnitude_high", "importance_decay", "eval_loss", "seq_len")
    if all(column in df.columns for column in needed):
        stuck = (df["status"] == "ok") & (df["eval_loss"] >= STUCK_LOSS_RATIO * silent_loss(df))
        stuck_counts = stuck.groupby([df[key] for key in by]).sum()
        table["stuck"] = stuck_counts.reindex(pd.MultiIndex.from_frame(table[by]) if len(by) > 1
                                              else table[by[0]]).to_numpy()
        table["stuck_fraction"] = table["stuck"] / table["models"]
    return table


def loss_change(curve, fraction: float = 0.25) -> float:
    """Return the relative change of a loss curve between its last two stretches of `fraction` of checkpoints.

    It is |mean(last stretch) − mean(stretch before)| / |mean(stretch before)|. Averaging
    over stretches keeps the sampling noise of single checkpoint segments, which is
    large when the segments are short or the inputs very sparse, out of the measure.
    NaN when the curve has fewer than 2 points or a non-finite one.
    """
    curve = np.asarray(curve, dtype=float)
    if curve.size < 2 or not np.all(np.isfinite(curve)):
        return float("nan")
    length = max(1, int(round(fraction * curve.size)))
    length = min(length, curve.size // 2)
    last = curve[-length:].mean()
    before = curve[-2 * length:-length].mean()
    return float(abs(last - before) / max(abs(before), 1e-12))


def convergence(df: pd.DataFrame, by=("model",)) -> pd.DataFrame:
    """Summarise the last-quarter loss change of every ok model per group.

    Columns: the group keys, `models`, the median and 90th percentile of the relative
    change (see loss_change), and `converged_fraction`, the share of models that changed
    by less than CONVERGED_CHANGE.
    """
    ok_rows = df[df["status"] == "ok"]
    changes = ok_rows["loss_curve"].map(loss_change) if "loss_curve" in ok_rows else pd.Series(dtype=float)
    frame = ok_rows[[key for key in by if key in ok_rows.columns]].assign(change=changes)
    keys = [key for key in by if key in frame.columns]
    grouped = frame.groupby(keys, sort=True)["change"] if keys else [((), frame["change"])]
    records = []
    for values, change in grouped:
        values = values if isinstance(values, tuple) else (values,)
        records.append({
            **dict(zip(keys, values)),
            "models": int(change.size),
            "median_change": float(change.median()),
            "p90_change": float(change.quantile(0.9)),
            "converged_fraction": float(np.mean(change < CONVERGED_CHANGE)),
        })
    return pd.DataFrame.from_records(records)


def intermediate_features(row) -> pd.DataFrame:
    """List the intermediate features of one model with their norm and projection.

    One row per coordinate i and age s < k: `norm` is |w_s[:, i]|, `projection` is
    (a_s)_ii, `interference_free` marks a projection below 0, and `column_free` marks a
    whole column (a_s)_{:, i} at or below 0 (no output reads the feature).
    """
    arrays = weights(row)
    k = int(row["k"])
    directions = arrays["feature_directions"].astype(float)
    projections = arrays["projections"].astype(float)
    records = []
    for s in range(k):
        norms = np.linalg.norm(directions[s], axis=0)
        diagonal = np.diagonal(projections[s])
        column_max = projections[s].max(axis=0)
        for i in range(len(diagonal)):
            records.append({"feature": i, "age": s, "norm": norms[i], "projection": diagonal[i],
                            "interference_free": diagonal[i] < 0, "column_free": column_max[i] <= 0})
    return pd.DataFrame.from_records(
        records, columns=["feature", "age", "norm", "projection", "interference_free", "column_free"])


def geometry_summary(df: pd.DataFrame, seeds: str = "best") -> pd.DataFrame:
    """Measure the geometry of each grid point's representative model.

    `norm_weighted_free` is the share of the total norm of the intermediate features
    that lies in the interference-free half-space, and `largest_free` is whether the
    largest intermediate feature lies there. Both weigh what the model keeps large, so
    an ssm that packs its largest directions into that half-space scores high there even
    when some small ones stay outside.
    """
    rows = _representatives(df, seeds)
    columns = ["seed", "final_loss", "k_theta_deg", "spectral_radius", "eigenvalue_angle_deg",
               "interference_free_fraction", "forgetting_ratio", "forgetting_residual"]
    records = []
    for _, row in rows.iterrows():
        record = {key: row[key] for key in _point_keys(rows)}
        record.update({column: row.get(column) for column in columns})
        features = intermediate_features(row) if int(row["k"]) > 0 else None
        if features is not None and len(features) and features["norm"].sum() > 0:
            free = features["interference_free"]
            record["norm_weighted_free"] = float(features["norm"][free].sum() / features["norm"].sum())
            record["largest_free"] = bool(free.iloc[int(np.argmax(features["norm"].to_numpy()))])
        else:
            record["norm_weighted_free"], record["largest_free"] = np.nan, None
        records.append(record)
    return pd.DataFrame.from_records(records)


def feature_fates(row, kept: float = RECALL_KEPT, absent: float = RECALL_ABSENT) -> pd.DataFrame:
    """Classify each input coordinate of one model as recalled, partial or not recalled.

    One row per coordinate i: `recall` is (a_k)_ii, `fate` is `kept` (recall >= kept),
    `absent` (recall <= absent) or `partial`, `intermediate_free` is the fraction of its
    intermediate features (a_s)_ii, s < k, below 0 (NaN when k = 0) and `input_norm` is
    |w_0[:, i]|, the size of its representation at the first step.
    """
    arrays = weights(row)
    k = int(row["k"])
    projections = arrays["projections"].astype(float)
    diagonals = np.diagonal(projections, axis1=1, axis2=2)                 # (T, N)
    recall = diagonals[k]
    fate = np.where(recall >= kept, "kept", np.where(recall <= absent, "absent", "partial"))
    intermediate = np.mean(diagonals[:k] < 0, axis=0) if k > 0 else np.full(recall.size, np.nan)
    input_norm = np.linalg.norm(arrays["feature_directions"][0].astype(float), axis=0)
    return pd.DataFrame({"feature": np.arange(recall.size), "recall": recall, "fate": fate,
                         "intermediate_free": intermediate, "input_norm": input_norm})


def _offdiagonal_small_fraction(row) -> float:
    recall = weights(row)["projections"][int(row["k"])].astype(float)
    off_diagonal = ~np.eye(len(recall), dtype=bool)
    return float(np.mean(recall[off_diagonal] <= OFFDIAGONAL_TOLERANCE))


def all_or_none(df: pd.DataFrame, seeds: str = "best") -> pd.DataFrame:
    """Summarise recall per grid point: how many features are kept, partial or absent.

    Columns, per representative model:
    - the counts of each fate;
    - `all_or_none`: the fraction of features that are kept or absent, 1 when none is
      partial;
    - `kept_intermediate_free`: over kept features, the fraction of their intermediate
      features in the interference-free half-space;
    - the sign pattern of a_k: `recall_diagonal_positive_fraction`,
      `recall_offdiagonal_nonpositive_fraction`, and `offdiagonal_small`, the fraction of
      off-diagonal entries at most OFFDIAGONAL_TOLERANCE.
    Only rows with n_features > 1.
    """
    rows = _representatives(df[df["n_features"] > 1], seeds)
    records = []
    for _, row in rows.iterrows():
        fates = feature_fates(row)
        counts = fates["fate"].value_counts()
        kept = fates[fates["fate"] == "kept"]
        records.append({
            **{key: row[key] for key in _point_keys(rows)},
            "seed": row["seed"],
            "final_loss": row["final_loss"],
            "kept": int(counts.get("kept", 0)),
            "partial": int(counts.get("partial", 0)),
            "absent": int(counts.get("absent", 0)),
            "all_or_none": float(1 - counts.get("partial", 0) / len(fates)),
            "kept_intermediate_free": float(kept["intermediate_free"].mean()) if len(kept) else np.nan,
            "offdiagonal_small": _offdiagonal_small_fraction(row),
            "recall_diagonal_positive_fraction": row.get("recall_diagonal_positive_fraction"),
            "recall_offdiagonal_nonpositive_fraction": row.get("recall_offdiagonal_nonpositive_fraction"),
        })
    return pd.DataFrame.from_records(records)


def interference_free_grouping(df: pd.DataFrame, seeds: str = "best") -> pd.DataFrame:
    """Compare which intermediate features each representative model puts in the free half-space.

    Per model: `free_fraction` over all intermediate features; `free_largest_half` and
    `free_smallest_half` over the half with the largest and with the smallest norm
    |w_s[:, i]|; `free_top_quarter` and `free_bottom_quarter` over the most and least
    important quarter of coordinates (importance falls with the index i); `kept_top_quarter`
    and `kept_bottom_quarter`, the recalled fraction of those coordinates. Only rows with
    n_features > 1 and k > 0.
    """
    rows = _representatives(df[(df["n_features"] > 1) & (df["k"] > 0)], seeds)
    records = []
    for _, row in rows.iterrows():
        features = intermediate_features(row)
        fates = feature_fates(row)
        n_features = int(row["n_features"])
        quarter = max(1, n_features // 4)
        by_norm = features["norm"].rank(method="first", ascending=False) <= len(features) / 2
        top = features["feature"] < quarter
        bottom = features["feature"] >= n_features - quarter
        kept = fates["fate"] == "kept"
        records.append({
            **{key: row[key] for key in _point_keys(rows)},
            "seed": row["seed"],
            "final_loss": row["final_loss"],
            "free_fraction": float(features["interference_free"].mean()),
            "free_largest_half": float(features["interference_free"][by_norm].mean()),
            "free_smallest_half": float(features["interference_free"][~by_norm].mean()),
            "free_top_quarter": float(features["interference_free"][top].mean()),
            "free_bottom_quarter": float(features["interference_free"][bottom].mean()),
            "kept_top_quarter": float(kept[:quarter].mean()),
            "kept_bottom_quarter": float(kept[-quarter:].mean()),
        })
    return pd.DataFrame.from_records(records)


def _curve(row, column: str) -> np.ndarray | None:
    value = row.get(column) if column in row.index else None
    if value is None or not hasattr(value, "__len__") or len(value) == 0:
        return None
    return np.asarray(value, dtype=float)


def staircase_terms(row) -> dict | None:
    """Split one model's expected loss along training into a task term and an interference term.

    Returns a dict of arrays aligned with `loss_curve_step`:
    - `step` and `training`, the training loss;
    - `task`, the task reward pν Σ_t (a_k − 1)², which falls as the readout aligns
      with w_k;
    - `interference`, everything else, which falls as the features of other ages
      separate from the readout. With an identity readout `interference` is the
    other three terms of the exact linear decomposition. With a ReLU readout it is the
    sparse-limit loss minus the task term, so only positive projections count. That split
    is exact to first order in p = 1 − S while a_k >= 0. Returns None when the row has no
    loss-term curves (a model with a readout bias, or results without theory columns).
    """
    task = _curve(row, "task_reward_curve")
    if task is None:
        return None
    relu_readout = row.get("sigma_y") == "relu"
    total = _curve(row, "expected_loss_sparse_relu_curve" if relu_readout else "expected_loss_curve")
    if total is None or len(total) != len(task):
        return None
    steps = _curve(row, "loss_curve_step")
    if steps is None or len(steps) != len(task):
        steps = np.arange(1, len(task) + 1, dtype=float)
    return {"step": steps, "training": _curve(row, "loss_curve"), "task": task,
            "interference": total - task, "total": total, "relu_readout": relu_readout}


def loss_drops(terms: dict, threshold: float = DROP_THRESHOLD) -> pd.DataFrame:
    """Find the drops of the expected loss along training: the risers of the staircase.

    A checkpoint interval is falling when the expected loss falls by more than
    `threshold` times its total fall (largest value minus final value). Consecutive
    falling intervals form one drop, and the flat stretches between drops are the
    plateaus. Returns one row per drop with its first and last step and the change of
    the expected loss, the task term and the interference term over it.
    """
    total, task, interference, steps = (terms[name] for name in ("total", "task", "interference", "step"))
    fall = float(np.nanmax(total) - total[-1])
    falling = np.diff(total) < -threshold * fall if fall > 0 else np.zeros(len(total) - 1, dtype=bool)
    records = []
    index = 0
    while index < len(falling):
        if not falling[index]:
            index += 1
            continue
        end = index
        while end + 1 < len(falling) and falling[end + 1]:
            end += 1
        first, last = index, end + 1
        records.append({"start_step": float(steps[first]), "end_step": float(steps[last]),
                        "total_change": float(total[last] - total[first]),
                        "task_change": float(task[last] - task[first]),
                        "interference_change": float(interference[last] - interference[first])})
        index = end + 1
    return pd.DataFrame.from_records(
        records, columns=["start_step", "end_step", "total_change", "task_change", "interference_change"])


def half_fall_step(steps: np.ndarray, curve: np.ndarray, start: int = 0) -> float:
    """Return the first step, from index `start` on, where the curve has fallen halfway to its final value.

    Halfway is between the curve's value at `start` and its last value. NaN when the
    curve does not fall over that stretch.
    """
    curve = np.asarray(curve, dtype=float)
    fall = curve[start] - curve[-1]
    if not fall > 0:
        return float("nan")
    below = np.flatnonzero(curve[start:] <= curve[start] - fall / 2)
    return float(steps[start + below[0]])


def alignment_onset(task: np.ndarray) -> int:
    """Return the first checkpoint index where the task term has fallen by ALIGNMENT_ONSET of its total fall.

    0 when the task term does not fall.
    """
    fall = task[0] - task[-1]
    if not fall > 0:
        return 0
    return int(np.flatnonzero(task <= task[0] - ALIGNMENT_ONSET * fall)[0])


def staircase(df: pd.DataFrame, seeds: str = "best") -> pd.DataFrame:
    """Time readout alignment and temporal separation for each representative model with loss-term curves.

    Columns:
    - `drops`: how many drops `loss_drops` finds (2 or more make a staircase).
    - `alignment_step`: where the task term has fallen halfway.
    - `interference_peak_step`: where the interference term is largest from the
      alignment onset on. The onset is the first checkpoint where the task term has
      fallen by ALIGNMENT_ONSET of its total fall.
    - `separation_step`: where the interference term has fallen halfway from that peak
      to its final value. NaN when that fall is under SEPARATION_MINIMUM of the largest
      expected loss, because then no separation stage happened.
    - the task and interference terms at the first checkpoint, the peak and the end.
    - `alignment_then_separation`: true when alignment comes before separation.

    The peak is searched from the alignment onset on because the interference of the
    random initial weights usually falls in the first few steps. That early fall
    silences the readout and is not the separation of features that alignment creates.
    """
    records = []
    for _, row in _representatives(df, seeds).iterrows():
        terms = staircase_terms(row)
        if terms is None:
            continue
        steps, task, interference = terms["step"], terms["task"], terms["interference"]
        onset = alignment_onset(task)
        peak = onset + int(np.nanargmax(interference[onset:]))
        separated = interference[peak] - interference[-1] >= SEPARATION_MINIMUM * np.nanmax(terms["total"])
        alignment_step = half_fall_step(steps, task)
        separation_step = half_fall_step(steps, interference, start=peak) if separated else float("nan")
        records.append({
            **{key: row[key] for key in _point_keys(df)},
            "seed": row["seed"],
            "final_loss": row["final_loss"],
            "drops": len(loss_drops(terms)),
            "alignment_step": alignment_step,
            "interference_peak_step": float(steps[peak]),
            "separation_step": separation_step,
            "task_start": task[0],
            "task_end": task[-1],
            "interference_start": interference[0],
            "interference_peak": interference[peak],
            "interference_end": interference[-1],
            "alignment_then_separation": bool(alignment_step < separation_step),
        })
    return pd.DataFrame.from_records(records)
