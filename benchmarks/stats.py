"""Timing statistics: medians, interquartile ranges and ratios of interleaved timings.

On a shared machine absolute times drift with the load; the ratio of two computations
timed in alternation, each repeat close in time to its partner, is far steadier. Every
comparison here therefore alternates the two sides (and which goes first) and reports
the median of the per-repeat ratios with a bootstrap confidence interval.
"""

import dataclasses
import time
from collections.abc import Callable, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class Summary:
    """Median and interquartile range of a list of times, in seconds."""

    median: float
    q1: float
    q3: float
    n: int

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    @classmethod
    def of(cls, times: Sequence[float]) -> "Summary":
        q1, median, q3 = np.percentile(np.asarray(times, float), [25, 50, 75])
        return cls(float(median), float(q1), float(q3), len(times))


@dataclasses.dataclass(frozen=True)
class Ratio:
    """Median of per-repeat ratios a/b, with a 95% bootstrap confidence interval."""

    median: float
    low: float
    high: float
    n: int

    def __str__(self) -> str:
        return f"{self.median:.3f} [{self.low:.3f}, {self.high:.3f}]"


def time_calls(fn: Callable[[], object], number: int) -> float:
    """Seconds per call of `fn`, averaged over `number` back-to-back calls."""
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def bootstrap_median_ci(values: Sequence[float], seed: int = 0, resamples: int = 2000) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the median of `values`."""
    values = np.asarray(values, float)
    rng = np.random.default_rng(seed)
    medians = np.median(rng.choice(values, size=(resamples, values.size), replace=True), axis=1)
    low, high = np.percentile(medians, [2.5, 97.5])
    return float(low), float(high)


def interleaved(
    a: Callable[[], object], b: Callable[[], object], repeats: int, number: int
) -> tuple[list[float], list[float], Ratio]:
    """Times `a` and `b` in alternation; returns both time lists and the ratio a/b.

    Each repeat times `number` calls of each side; odd repeats run `b` first, so neither
    side always follows the other.
    """
    times_a, times_b = [], []
    for r in range(repeats):
        if r % 2:
            times_b.append(time_calls(b, number))
            times_a.append(time_calls(a, number))
        else:
            times_a.append(time_calls(a, number))
            times_b.append(time_calls(b, number))
    return times_a, times_b, ratio(times_a, times_b)


def ratio(numerators: Sequence[float], denominators: Sequence[float]) -> Ratio:
    """The median of the paired ratios numerators[i] / denominators[i], with its 95% interval.

    Pair i must come from the same repeat of an interleaved measurement, so that both
    sides saw the same machine load.
    """
    if len(numerators) != len(denominators) or not numerators:
        raise ValueError(f"need two equally long, non-empty lists, got {len(numerators)} and {len(denominators)}")
    ratios = np.asarray(numerators, float) / np.asarray(denominators, float)
    low, high = bootstrap_median_ci(ratios)
    return Ratio(float(np.median(ratios)), low, high, len(ratios))
