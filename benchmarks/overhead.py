"""Eager call overhead of core modules against dm-sonnet 2, as interleaved ratios.

    python -m benchmarks.overhead [--repeats 30] [--number 50]

Measures, in eager mode with small inputs (where Python overhead dominates):
- `Linear(256)` on a [16, 256] batch;
- one step of `LSTM(256)` and of `GRU(256)` on a [16, 64] batch;
- `dynamic_unroll` of `LSTM(256)` over 50 steps of [16, 64];
- `Dropout(0.5)` while training, on [16, 256];
- `BatchNorm` (learnt scale and offset) on [16, 8, 8, 32], training and inference.
Each row is the median over repeats of (our time / Sonnet's time) with a 95% bootstrap
interval; below 1 means ours is cheaper.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import sonnet as snt  # noqa: E402
import tensorflow as tf  # noqa: E402

import core  # noqa: E402
from benchmarks import stats  # noqa: E402


def cases():
    """(name, our callable, Sonnet's callable, calls per repeat scale) for each case."""
    x = tf.random.normal([16, 256])
    ours_linear, their_linear = core.Linear(256), snt.Linear(256)
    step_in = tf.random.normal([16, 64])
    seq = tf.random.normal([50, 16, 64])
    ours_lstm, their_lstm = core.LSTM(256), snt.LSTM(256)
    ours_state, their_state = ours_lstm.initial_state(16), their_lstm.initial_state(16)
    ours_gru, their_gru = core.GRU(256), snt.GRU(256)
    gru_state = ours_gru.initial_state(16)
    ours_drop, their_drop = core.Dropout(0.5, seed=0), snt.Dropout(0.5)
    images = tf.random.normal([16, 8, 8, 32])
    ours_bn = core.BatchNorm(create_scale=True, create_offset=True)
    their_bn = snt.BatchNorm(create_scale=True, create_offset=True)
    return [
        ("Linear(256), [16, 256]", lambda: ours_linear(x), lambda: their_linear(x), 1),
        (
            "LSTM(256) one step, [16, 64]",
            lambda: ours_lstm(step_in, ours_state),
            lambda: their_lstm(step_in, their_state),
            1,
        ),
        ("GRU(256) one step, [16, 64]", lambda: ours_gru(step_in, gru_state), lambda: their_gru(step_in, gru_state), 1),
        (
            "dynamic_unroll LSTM(256), 50 x [16, 64]",
            lambda: core.dynamic_unroll(ours_lstm, seq, ours_state),
            lambda: snt.dynamic_unroll(their_lstm, seq, their_state),
            50,
        ),
        ("Dropout(0.5) training, [16, 256]", lambda: ours_drop(x, True), lambda: their_drop(x, True), 1),
        (
            "BatchNorm training, [16, 8, 8, 32]",
            lambda: ours_bn(images, is_training=True),
            lambda: their_bn(images, is_training=True),
            1,
        ),
        (
            "BatchNorm inference, [16, 8, 8, 32]",
            lambda: ours_bn(images, is_training=False),
            lambda: their_bn(images, is_training=False),
            1,
        ),
    ]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30, help="interleaved repeats per case")
    parser.add_argument("--number", type=int, default=50, help="calls per repeat (divided by the unroll length)")
    args = parser.parse_args(argv)
    print(f"TensorFlow {tf.__version__}, dm-sonnet {snt.__version__}, eager mode")
    print("| case | ours (us) | sonnet (us) | ours / sonnet [95% CI] |")
    print("|---|---|---|---|")
    for name, ours, theirs, scale in cases():
        ours(), theirs()  # build variables, warm caches
        number = max(1, args.number // scale)
        for _ in range(3):
            ours(), theirs()
        t_ours, t_theirs, ratio = stats.interleaved(ours, theirs, args.repeats, number)
        a, b = stats.Summary.of(t_ours), stats.Summary.of(t_theirs)
        print(f"| {name} | {a.median * 1e6:.0f} | {b.median * 1e6:.0f} | {ratio} |")


if __name__ == "__main__":
    main()
