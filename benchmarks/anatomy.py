"""Where the time goes in two results of the harness, measured the harness's way.

    python -m benchmarks.anatomy [--repeats 20]

1. Why `tf.function` gains only about 2x over eager on the `lstm` workload: the
   forward unroll at the `quick` size, eager, in `tf.function` and in XLA, against
   `tf.function` loops over the same 50 steps that do less: nothing (the loop's own
   cost), and only the step's two matrix products.
2. Why our `conv_bn` train step trails Sonnet's: ours, Sonnet's, and ours with
   Sonnet's `BatchNorm` in place of `core.BatchNorm` (same convolutions, same Adam).

Every variant is timed in interleaved rounds; each row is the median time and the
median per-round ratio to the first row, with a 95% bootstrap interval.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import core  # noqa: E402
from benchmarks import cases, registry, stats, steps  # noqa: E402
from benchmarks.workloads import core_conv  # noqa: E402


def _table(calls: dict, repeats: int, number: int, steps_per_call: int | None = None) -> str:
    """Times `calls` in rotating rounds; a Markdown table of medians and ratios to the first.

    With `steps_per_call`, a column gives the time per time step of the unroll.
    """
    times = {name: [] for name in calls}
    names = list(calls)
    for r in range(repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(stats.time_calls(calls[name], number))
    first = times[names[0]]
    per_step = " per time step (us) |" if steps_per_call else ""
    rule = "|---|---|" + ("---|" if steps_per_call else "") + "---|"
    lines = [f"| variant | median (ms) |{per_step} {names[0]} / variant [95% CI] |", rule]
    for name in names:
        median = float(np.median(times[name]))
        step = f" {median / steps_per_call * 1e6:.0f} |" if steps_per_call else ""
        lines.append(f"| {name} | {median * 1e3:.2f} |{step} {stats.ratio(first, times[name])} |")
    return "\n".join(lines)


def lstm_loop(repeats: int) -> str:
    """The `lstm` workload's forward unroll against loops doing part of its work."""
    size = registry.select(["lstm"])[0].size("quick")
    batch, length, hidden = size["batch"], size["steps"], size["hidden"]
    lstm = core.LSTM(hidden)
    x = cases.normal(0, [length, batch, size["inputs"]], tf.float32)

    def unroll(x: tf.Tensor) -> tf.Tensor:
        return core.dynamic_unroll(lstm, x, lstm.initial_state(batch))[0]

    unroll(x)  # creates the variables
    w_i, w_h = lstm.input_to_hidden, lstm.hidden_to_hidden
    gates = tf.zeros([batch, 4 * hidden])

    def loop(body):
        """A `tf.function` looping over the sequence like the unroll, carrying [batch, 4 * hidden]."""

        def run(x):
            inputs = tf.TensorArray(tf.float32, size=length).unstack(x)
            step = lambda t, g: (t + 1, body(inputs.read(t), g))  # noqa: E731
            return tf.while_loop(lambda t, _: t < length, step, (0, gates))[1]

        return tf.function(run)

    variants = {
        "eager unroll": unroll,
        "tf.function unroll": tf.function(unroll),
        "XLA unroll": tf.function(unroll, jit_compile=True),
        "tf.function loop, empty body": loop(lambda x_t, g: g + 0.0),
        "tf.function loop, the two products only": loop(
            lambda x_t, g: tf.matmul(x_t, w_i) + tf.matmul(g[:, :hidden], w_h)
        ),
    }
    calls = {}
    for name, fn in variants.items():
        steps.to_host(fn(x))
        calls[name] = lambda fn=fn: steps.to_host(fn(x))
    return _table(calls, repeats, number=3, steps_per_call=length)


def batch_norm(repeats: int) -> str:
    """The `conv_bn` train step: ours, Sonnet's, and ours with Sonnet's BatchNorm."""
    size = registry.select(["conv_bn"])[0].size("quick")
    import sonnet as snt

    # Ours with Sonnet's BatchNorm in place of `core.BatchNorm` (same convolutions, same Adam).
    mixed = core_conv.ConvStack(size["layers"], size["channels"], name="conv_stack", norm=snt.BatchNorm)
    shape = [size["batch"], size["image"], size["image"], size["in_channels"]]
    builds = {
        "ours": core_conv.build(tf.float32, **size),
        "sonnet": core_conv.build_sonnet(tf.float32, **size),
        "ours with Sonnet's BatchNorm": cases.core_case(
            mixed,
            size["batch"],
            lambda seed: cases.normal(seed, shape, tf.float32),
            forward=lambda x: mixed(x, is_training=False),
            train_forward=lambda x: mixed(x, is_training=True),
        ),
    }
    calls = {}
    for name, case in builds.items():
        x = case.make_inputs(0)
        case.initialize(x)
        case.initialize_optimizer()
        fn = steps.single_device(case, "train", "function")
        steps.to_host(fn(x))
        calls[name] = lambda fn=fn, x=x: steps.to_host(fn(x))
    return _table(calls, repeats, number=1)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20, help="interleaved rounds per table (default 20)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be positive, got {args.repeats}")
    tf.get_logger().setLevel("ERROR")
    print(f"TensorFlow {tf.__version__}; load average {os.getloadavg()[0]:.2f}\n")
    print("1. The `lstm` workload's forward unroll (quick size: 50 steps) and loops doing part of it:\n")
    print(lstm_loop(args.repeats) + "\n")
    print("2. The `conv_bn` train step (quick size), tf.function:\n")
    print(batch_norm(args.repeats))


if __name__ == "__main__":
    main()
