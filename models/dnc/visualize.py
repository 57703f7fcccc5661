"""Draws what a trained DNC does on one sequence: memory weights, gates and usage over time.

    python -m models.dnc.visualize --workdir=/tmp/dnc --out=dnc.png [--seed=0]

Like the extended-data figure of Graves et al. (2016): for one held-out repeat-copy
sequence, the inputs, the targets and the outputs, then per time step the write weights
and each read head's weights over the memory slots, the usage of every slot, and the
write, allocation and free gates. The figure comes from a run's workdir (its config and
latest checkpoint).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import matplotlib  # noqa: E402
from absl import app, flags  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from models.dnc import train  # noqa: E402

FLAGS = flags.FLAGS


def trace(net, observations: tf.Tensor) -> dict[str, np.ndarray]:
    """Runs `net` step by step on one sequence [T, 1, C]; returns per-step arrays [T, ...]."""
    state = net.initial_state(1)
    records: dict[str, list] = {}
    for x in tf.unstack(observations):
        output, state, interface = net.step_with_interface(x, state)
        access = state.access_state
        for key, value in [
            ("outputs", tf.sigmoid(output)),
            ("write_weights", access.write_weights[:, 0]),
            ("read_weights", access.read_weights),
            ("usage", access.usage),
            ("write_gate", interface["write_gate"][:, 0]),
            ("allocation_gate", interface["allocation_gate"][:, 0]),
            ("free_gate", interface["free_gate"]),
        ]:
            records.setdefault(key, []).append(value.numpy()[0])
    return {key: np.stack(values) for key, values in records.items()}


def draw(records: dict[str, np.ndarray], observations: np.ndarray, targets: np.ndarray, path: str, title: str) -> None:
    """Writes the figure: one panel per quantity, time along the x axis."""
    reads = records["read_weights"].shape[1]
    panels = [
        ("inputs", observations.T, "channel"),
        ("targets", targets.T, "channel"),
        ("outputs (sigmoid)", records["outputs"].T, "channel"),
        ("write weights", records["write_weights"].T, "slot"),
        *[(f"read weights, head {r}", records["read_weights"][:, r].T, "slot") for r in range(reads)],
        ("usage", records["usage"].T, "slot"),
    ]
    fig, axes = plt.subplots(len(panels) + 1, 1, figsize=(8, 1.6 * (len(panels) + 1)), sharex=True)
    for ax, (name, image, ylabel) in zip(axes, panels):
        ax.imshow(image, aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(name, fontsize=9, loc="left")
        ax.set_ylabel(ylabel, fontsize=8)
    gates = axes[-1]
    t = np.arange(len(records["write_gate"]))
    gates.plot(t, records["write_gate"], label="write gate")
    gates.plot(t, records["allocation_gate"], label="allocation gate")
    for r in range(records["free_gate"].shape[1]):
        gates.plot(t, records["free_gate"][:, r], linestyle=":", label=f"free gate {r}")
    gates.set_ylim(-0.05, 1.05)
    gates.set_xlabel("time step")
    gates.legend(fontsize=7, ncol=3, loc="upper left")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def visualize(workdir: str, out: str, seed: int = 1) -> dict[str, np.ndarray]:
    """Draws one held-out sequence of the run in `workdir` to `out`; returns the traced arrays."""
    task, net, step = train.restore(workdir)
    generator = getattr(task, "train", None)
    if generator is None or not hasattr(generator, "batch"):
        raise ValueError("visualize draws repeat-copy runs; this workdir trained another task")
    batch = generator.batch(tf.constant([seed, -7], tf.int64), 1)  # a held-out seed stream
    length = int(np.nonzero(batch.mask.numpy()[:, 0])[0].max()) + 1  # drop the padding
    observations = batch.observations[:length]
    records = trace(net, observations)
    draw(
        records,
        observations.numpy()[:, 0],
        batch.targets.numpy()[:length, 0],
        out,
        f"DNC on repeat copy, step {step} of {os.path.basename(os.path.abspath(workdir))}",
    )
    return records


def main(argv: list[str]) -> None:
    del argv
    if FLAGS.workdir is None:
        raise app.UsageError("--workdir is required")
    visualize(FLAGS.workdir, FLAGS.out, FLAGS.seed)
    print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
    flags.DEFINE_string("workdir", None, "the run to draw (a train.py workdir)")
    flags.DEFINE_string("out", "dnc.png", "where to write the PNG")
    flags.DEFINE_integer("seed", 1, "which held-out sequence to draw")
    app.run(main)
