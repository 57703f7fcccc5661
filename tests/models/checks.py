"""Checks the models' training tests share."""

import numpy as np


def max_difference(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    """The largest absolute difference between two sets of named arrays with the same names."""
    assert a.keys() == b.keys()
    return max(float(np.max(np.abs(a[n].astype(np.float64) - b[n]))) for n in a)
