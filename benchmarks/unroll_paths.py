"""What a forward pass pays for `dynamic_unroll` recording its gradient's inputs.

    python -m benchmarks.unroll_paths [--repeats 15] [--number 10]

In graphs, `core.dynamic_unroll` of a gated core (LSTM, GRU) projects the inputs of all
steps at once, then runs the recurrence in a loop that also records what its written-out
gradient needs (`core.recurrent._fast_recurrence`), whether or not a gradient is taken:
TensorFlow's public API cannot tell whether a tape records. This compares that forward
pass, under `tf.function` and XLA, with a loop of the recurrence alone on the same
projected inputs (`_while_unroll` of the core's `_recur`, what a gradient-free path would
run), at the quick size: batch 16, 50 steps, 64 inputs, 256 units. Each row is the
median over repeats of (recording time / plain time) with a 95% bootstrap interval,
the two timed alternately in one process.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import core  # noqa: E402
from benchmarks import stats  # noqa: E402
from core import recurrent  # noqa: E402

CORES = {
    "LSTM": lambda: core.LSTM(256),
    "LSTM, layer_norm=True": lambda: core.LSTM(256, layer_norm=True),
    "GRU": lambda: core.GRU(256),
}


def _recording(cell, x):
    """`dynamic_unroll` as a user calls it."""
    return core.dynamic_unroll(cell, x, cell.initial_state(x.shape[1]))[0]


def _plain(cell, x):
    """The recurrence alone on the projected inputs, in one `tf.while_loop`."""
    state = cell.initial_state(x.shape[1])
    projected = recurrent._project_sequence(cell, x, state)
    return recurrent._while_unroll(cell._recur, projected, state, None, x.shape[0], 1, False)[0]  # as dynamic_unroll


def _seconds(fn, x, number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        fn(x).numpy()
    return (time.perf_counter() - start) / number


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--number", type=int, default=10, help="calls per timing")
    args = p.parse_args(argv)
    x = tf.random.normal([50, 16, 64], seed=0)
    print("| core | mode | recording / plain, forward: median [95% CI] | plain (ms) |")
    print("|---|---|---|---|")
    for name, make in CORES.items():
        cell = make()
        for jit in (False, True):
            recording = tf.function(lambda x, cell=cell: _recording(cell, x), jit_compile=jit)
            plain = tf.function(lambda x, cell=cell: _plain(cell, x), jit_compile=jit)
            np.testing.assert_allclose(recording(x).numpy(), plain(x).numpy(), rtol=1e-5, atol=1e-5)
            ratios, plain_times = [], []
            for _ in range(args.repeats):
                plain_times.append(_seconds(plain, x, args.number))
                ratios.append(_seconds(recording, x, args.number) / plain_times[-1])
            median = float(np.median(ratios))
            low, high = stats.bootstrap_median_ci(ratios)
            mode = "XLA" if jit else "tf.function"
            print(
                f"| {name} | {mode} | {median:.2f} [{low:.2f}, {high:.2f}] | {1e3 * np.median(plain_times):.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
