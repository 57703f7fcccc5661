"""The main job (`make run`): a short demonstration of the core, trained for a few steps.

    python -m benchmarks.run [--steps 300] [--seed 0]

Fits `core.nets.MLP` with `core.optimizers.Adam` to two interleaved spirals generated
here (no download), inside `tf.function`, and prints the loss and accuracy as it goes.
The same `--seed` gives the same numbers.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import core  # noqa: E402


def spirals(n: int, rng: np.random.RandomState) -> tuple[np.ndarray, np.ndarray]:
    """`n` points on each of two interleaved spirals, with their labels (0 or 1)."""
    t = np.sqrt(rng.uniform(size=n)) * 3 * np.pi
    arm = np.stack([t * np.cos(t), t * np.sin(t)], axis=1) / (3 * np.pi)
    x = np.concatenate([arm, -arm]) + rng.normal(scale=0.02, size=(2 * n, 2))
    y = np.concatenate([np.zeros(n), np.ones(n)])
    return x.astype(np.float32), y.astype(np.int32)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps")
    parser.add_argument("--seed", type=int, default=0, help="makes the run reproducible (core.utils.set_seed)")
    args = parser.parse_args(argv)

    core.utils.set_seed(args.seed)
    x, y = spirals(512, np.random.RandomState(args.seed))
    model = core.nets.MLP([64, 64, 2])
    opt = core.optimizers.Adam(0.01)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            logits = model(x)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
        opt.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
        accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, -1, tf.int32), y), tf.float32))
        return loss, accuracy

    print(f"core demo: MLP [64, 64, 2] on two spirals ({len(x)} points), Adam(0.01), seed {args.seed}")
    for i in range(1, args.steps + 1):
        loss, accuracy = step(x, y)
        if i == 1 or i % 50 == 0 or i == args.steps:
            print(f"step {i:4d}  loss {loss.numpy():.4f}  accuracy {accuracy.numpy():.3f}")
    return {"loss": float(loss), "accuracy": float(accuracy)}


if __name__ == "__main__":
    main()
