"""The experiment grid: the product of all config axes, split into static groups.

This module is the one place that decides which grid axes are static (one compiled
program per distinct value) and which are traced (vmapped inside that program): the
`static` flag of each field in `tsjax.config.FIELDS`.
"""

import dataclasses
from typing import NamedTuple

import numpy as np

from tsjax.config import FIELDS, MODEL_ACTIVATIONS, STATIC_FIELDS, TRACED_FIELDS, SweepConfig


@dataclasses.dataclass(frozen=True)
class StaticSpec:
    """The static fields of one group. Hashable, so it can be a `jit` static argument."""

    model: str
    sigma_h: str
    sigma_y: str
    n_features: int
    n_hidden: int
    seq_len: int
    batch_size: int
    steps: int
    optimizer: str
    lr_schedule: str
    readout_bias: bool
    trainer: str
    checkpoints: int
    eval_samples: int

    @classmethod
    def from_values(cls, values: dict) -> "StaticSpec":
        values = dict(values)
        if values["model"] in MODEL_ACTIVATIONS:
            values["sigma_h"], values["sigma_y"] = MODEL_ACTIVATIONS[values["model"]]
        return cls(**values)


class GridPoint(NamedTuple):
    """The traced fields of one grid point, each a scalar array.

    With a leading axis on every field it stores a whole chunk of points.
    """

    k: np.ndarray
    sparsity: np.ndarray
    seed: np.ndarray
    learning_rate: np.ndarray
    magnitude_low: np.ndarray
    magnitude_high: np.ndarray
    importance_decay: np.ndarray
    init_scale: np.ndarray
    init_spectral_norm: np.ndarray


assert GridPoint._fields == TRACED_FIELDS, "GridPoint must list the traced config fields"

TRACED_DTYPES = {"k": np.int32, "seed": np.uint32}


@dataclasses.dataclass
class StaticGroup:
    """Grid points that share one static spec, hence one compiled program.

    `values` contains the traced fields of every point as float64 or int64 host arrays,
    the exact values written to the results.
    """

    spec: StaticSpec
    point_ids: np.ndarray
    values: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.point_ids)

    def select(self, positions) -> "StaticGroup":
        return StaticGroup(self.spec, self.point_ids[positions],
                           {name: array[positions] for name, array in self.values.items()})

    def grid_points(self, positions=slice(None)) -> GridPoint:
        """Return the traced values at `positions` in the dtypes the program takes."""
        return GridPoint(**{
            name: self.values[name][positions].astype(TRACED_DTYPES.get(name, np.float32))
            for name in TRACED_FIELDS
        })


def axis_indices(config: SweepConfig, point_ids: np.ndarray) -> dict[str, np.ndarray]:
    """Return, per field, the index into its axis of each point (C order, last field fastest)."""
    sizes = [len(config.axes[name]) for name in FIELDS]
    strides = np.cumprod([1, *sizes[::-1]])[:-1][::-1]
    return {name: (point_ids // stride) % size
            for name, stride, size in zip(FIELDS, strides, sizes)}


def expand_grid(config: SweepConfig, point_ids: np.ndarray | None = None) -> list[StaticGroup]:
    """Split the grid (or the points `point_ids` of it) into static groups.

    Point ids number the full product of axes in config field order, so a point's id
    depends only on the config. Groups come in order of their first point.
    """
    if point_ids is None:
        point_ids = np.arange(config.grid_size, dtype=np.int64)
    point_ids = np.asarray(point_ids, dtype=np.int64)
    indices = axis_indices(config, point_ids)

    static_index = np.stack([indices[name] for name in STATIC_FIELDS], axis=1)
    keys, first, inverse = np.unique(static_index, axis=0, return_index=True,
                                     return_inverse=True)
    groups = []
    for group in np.argsort(first):
        members = np.flatnonzero(inverse.reshape(-1) == group)
        spec = StaticSpec.from_values({name: config.axes[name][keys[group][column]]
                                       for column, name in enumerate(STATIC_FIELDS)})
        values = {name: np.asarray(config.axes[name])[indices[name][members]]
                  for name in TRACED_FIELDS}
        groups.append(StaticGroup(spec, point_ids[members], values))
    return groups
