"""How the DNC's train step grows with the memory size N, and what recomputation saves.

    python -m benchmarks.dnc_memory [--sizes 64,256,1024] [--babi_sizes 256,1024] [--chunks 7] [--repeats 5]

Two tables, each a train step (forward, backward, RMSProp) under `tf.function`:

1. Repeat-copy sizes (LSTM 64, words of 16, 4 reads, 1 write, batch 16, 9 steps) for
   each N: median step time and peak memory.
2. bAbI sizes (LSTM 256, words of 64, 4 reads, 1 write, batch 16, 50 steps) for each N,
   unrolled with `core.dynamic_unroll` (which stores every step's activations for the
   backward pass) and with `core.checkpointed_unroll` (which recomputes them). Storing
   grows as T x N^2, so the stored unroll is measured at shorter T and extrapolated
   linearly to T = 50 (said in the table) whenever the extrapolation would not fit in
   the memory this machine has: running it would take the machine down, not measure it.

Peak memory is TensorFlow's own count for the CPU device
(`tf.config.experimental.get_memory_info`), reset before each configuration, so it
covers tensors TensorFlow allocates (activations, gradients, state). The last column is
the process's peak resident memory so far (it only rises, so it bounds the largest
configuration run yet, allocator overheads included).
"""

import argparse
import os
import resource
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import core  # noqa: E402
from models.dnc import dnc  # noqa: E402

GIB = 2.0**30


def train_step_fn(memory_size: int, word_size: int, hidden: int, steps: int, batch: int, chunk: int | None):
    """A traced train step and its input; the model and optimizer built eagerly first."""
    inputs, outputs = 6, 5
    model = dnc.DNC(
        dict(memory_size=memory_size, word_size=word_size, num_reads=4, num_writes=1),
        dict(hidden_size=hidden),
        outputs,
        clip_value=20,
    )
    optimizer = core.optimizers.RMSProp(1e-4, epsilon=1e-10)
    x = tf.random.stateless_normal([steps, batch, inputs], [0, 1])
    target = tf.random.stateless_uniform([steps, batch, outputs], [0, 2])

    def unroll(x):
        state = model.initial_state(batch)
        if chunk:
            return core.checkpointed_unroll(model, x, state, chunk)[0]
        return core.dynamic_unroll(model, x, state)[0]

    model(x[0], model.initial_state(batch))
    optimizer.build(model.trainable_variables)

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(target, unroll(x)))
        optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
        return loss

    return step, x


def measure(repeats: int, **config) -> tuple[float, float]:
    """(median seconds per step, peak GiB) of one configuration."""
    tf.config.experimental.reset_memory_stats("CPU:0")
    base = tf.config.experimental.get_memory_info("CPU:0")["current"]
    step, x = train_step_fn(**config)
    step(x).numpy()  # trace and first run
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step(x).numpy()
        times.append(time.perf_counter() - start)
    peak = tf.config.experimental.get_memory_info("CPU:0")["peak"] - base
    return float(np.median(times)), peak / GIB


def max_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB


def machine_memory_gib() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024 / GIB
    return float("inf")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="64,256,1024", help="memory sizes N at repeat-copy sizes")
    parser.add_argument("--babi_sizes", default="256,1024", help="memory sizes N at bAbI sizes ('' to skip)")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per configuration")
    parser.add_argument("--chunks", default="7", help="checkpointed_unroll chunk sizes (7 is about sqrt(50))")
    args = parser.parse_args(argv)

    print("Repeat-copy sizes: LSTM 64, W 16, R 4, batch 16, T 9; train step under tf.function")
    print("| N | step (ms) | peak memory (MiB) | process max RSS (GiB) |\n|---|---|---|---|")
    for n in [int(s) for s in args.sizes.split(",") if s]:
        seconds, peak = measure(args.repeats, memory_size=n, word_size=16, hidden=64, steps=9, batch=16, chunk=None)
        print(f"| {n} | {seconds * 1e3:.1f} | {peak * 1024:.0f} | {max_rss_gib():.2f} |", flush=True)

    babi_sizes = [int(s) for s in args.babi_sizes.split(",") if s]
    if not babi_sizes:
        return
    available = machine_memory_gib()
    print(f"\nbAbI sizes: LSTM 256, W 64, R 4, batch 16, T 50 (memory available now: {available:.1f} GiB)")
    print("| N | unroll | T | step (s) | peak memory (GiB) | at T = 50 | process max RSS (GiB) |")
    print("|---|---|---|---|---|---|---|")
    config = dict(word_size=64, hidden=256, batch=16)
    for n in babi_sizes:
        # Stored activations: measure at T = 5 and 10, fit a line, extrapolate to 50.
        points = []
        for steps in (5, 10):
            seconds, peak = measure(max(1, args.repeats // 2), memory_size=n, steps=steps, chunk=None, **config)
            points.append((steps, seconds, peak))
            print(
                f"| {n} | dynamic_unroll | {steps} | {seconds:.2f} | {peak:.2f} | | {max_rss_gib():.2f} |", flush=True
            )
        (t0, s0, p0), (t1, s1, p1) = points
        peak_50 = p1 + (p1 - p0) / (t1 - t0) * (50 - t1)
        time_50 = s1 + (s1 - s0) / (t1 - t0) * (50 - t1)
        if peak_50 < 0.6 * available:
            seconds, peak = measure(max(1, args.repeats // 2), memory_size=n, steps=50, chunk=None, **config)
            print(
                f"| {n} | dynamic_unroll | 50 | {seconds:.2f} | {peak:.2f} | measured | {max_rss_gib():.2f} |",
                flush=True,
            )
        else:
            print(
                f"| {n} | dynamic_unroll | 50 | ~{time_50:.1f} (extrapolated) | ~{peak_50:.1f} (extrapolated) | "
                f"does not fit: not run | |",
                flush=True,
            )
        for chunk in [int(c) for c in args.chunks.split(",")]:
            seconds, peak = measure(max(1, args.repeats // 2), memory_size=n, steps=50, chunk=chunk, **config)
            print(
                f"| {n} | checkpointed_unroll, chunk {chunk} | 50 | {seconds:.2f} | {peak:.2f} | measured | "
                f"{max_rss_gib():.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
