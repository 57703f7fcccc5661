"""Timing statistics: summaries and paired ratios."""

import pytest

from benchmarks import stats


def test_summary_has_median_and_quartiles():
    s = stats.Summary.of([4.0, 1.0, 3.0, 2.0, 5.0])
    assert (s.median, s.q1, s.q3, s.iqr, s.n) == (3.0, 2.0, 4.0, 2.0, 5)


def test_ratio_pairs_the_repeats():
    # Both sides drift together (load changes); the paired ratio stays exactly 2.
    slow = [2.0, 4.0, 8.0, 16.0]
    fast = [1.0, 2.0, 4.0, 8.0]
    r = stats.ratio(slow, fast)
    assert (r.median, r.low, r.high, r.n) == (2.0, 2.0, 2.0, 4)


def test_ratio_needs_paired_lists():
    with pytest.raises(ValueError, match="equally long"):
        stats.ratio([1.0], [1.0, 2.0])
