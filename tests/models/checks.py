"""Checks the models' training tests share."""

import os
import pathlib
import shutil

import numpy as np


def max_difference(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    """The largest absolute difference between two sets of named arrays with the same names."""
    assert a.keys() == b.keys()
    return max(float(np.max(np.abs(a[n].astype(np.float64) - b[n]))) for n in a)


def copy_checkpoints(source: pathlib.Path, target: pathlib.Path, steps: list[int]) -> None:
    """Copies the checkpoints of `steps` from one workdir into a new one's checkpoints/,
    without the list of checkpoints: a run stopped after writing the last of them."""
    os.makedirs(target / "checkpoints")
    for step in steps:
        for path in (source / "checkpoints").glob(f"ckpt-{step}.*"):
            shutil.copy(path, target / "checkpoints")
