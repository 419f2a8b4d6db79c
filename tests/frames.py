"""Bitwise comparison of result rows, for the determinism and isolation tests."""

import numpy as np
import pandas as pd

KEY_COLUMNS = ["k", "sparsity", "seed"]


def differing_columns(left: pd.DataFrame, right: pd.DataFrame,
                      ignore=("sweep", "point_id")) -> list[str]:
    """Return the columns whose values differ in any bit between two frames of equal rows.

    Rows are matched by position, so sort both frames the same way first. NaN equals NaN
    and array cells compare element by element.
    """
    assert list(left.columns) == list(right.columns)
    assert len(left) == len(right)
    differing = []
    for column in left.columns:
        if column in ignore:
            continue
        if not all(cells_equal(a, b) for a, b in zip(left[column], right[column])):
            differing.append(column)
    return differing


def cells_equal(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if a is None or b is None:
            return a is None and b is None
        a, b = np.asarray(a), np.asarray(b)
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) and isinstance(b, float):
        return np.float64(a).tobytes() == np.float64(b).tobytes() or (a != a and b != b)
    return a == b


def sorted_rows(frame: pd.DataFrame, by=("point_id",)) -> pd.DataFrame:
    return frame.sort_values(list(by), kind="stable", ignore_index=True)
