"""DNC: the `models.dnc` core unrolled over a sequence, trained with RMSProp.

`quick` is repeat copy with DeepMind's defaults (LSTM 64, memory 16 x 16, 4 reads,
1 write) at batch 16 and 9 time steps (the longest repeat-copy sequence); `paper` is
the bAbI configuration (LSTM 256, memory 256 x 64, 4 reads, 1 write) at batch 16 and
50 time steps, with 160 inputs and outputs: one-hot words over about the vocabulary of
the 20 tasks (the bAbI pipeline counts the real one from the data).
"""

import tensorflow as tf

import core
from benchmarks import cases, registry
from models.dnc import dnc


def build(
    dtype: tf.DType, batch: int, steps: int, inputs: int, outputs: int, hidden: int, memory: int, word: int, reads: int
) -> registry.Case:
    model = dnc.DNC(
        dict(memory_size=memory, word_size=word, num_reads=reads, num_writes=1),
        dict(hidden_size=hidden),
        outputs,
        clip_value=20,
        dtype=dtype,
    )

    def forward(x: tf.Tensor) -> tf.Tensor:
        return core.dynamic_unroll(model, x, model.initial_state(batch))[0]

    return cases.core_case(
        model,
        batch,
        make_inputs=lambda seed: cases.normal(seed, [steps, batch, inputs], dtype),
        forward=forward,
        # DeepMind's optimizer for the DNC (configs/repeat_copy.gin).
        optimizer=core.optimizers.RMSProp(1e-4, epsilon=1e-10),
    )


def flops(
    batch: int, steps: int, inputs: int, outputs: int, hidden: int, memory: int, word: int, reads: int
) -> registry.Flops:
    """Per step: the controller, interface and output products, and the memory's
    N x W and N x N work (content lookup, erase/write, link update, link reads, reading)."""
    interface = reads * word + 3 * word + 5 * reads + 3
    controller = 2 * (inputs + reads * word + hidden) * 4 * hidden
    linear = 2 * hidden * interface + 2 * (hidden + reads * word) * outputs
    content = 2 * (reads + 1) * memory * word * 2  # dot products and norms, read and write keys
    write = 4 * memory * word  # erase and add
    link = 6 * memory * memory + 2 * 2 * reads * memory * memory  # update, forward and backward reads
    read = 2 * reads * memory * word
    step = batch * (controller + linear + content + write + link + read)
    return registry.Flops(steps * step, 3 * steps * step, "analytic: matrix products and the N^2 link terms")


registry.register(
    registry.Workload(
        name="dnc",
        description="models.dnc DNC + dynamic_unroll, RMSProp",
        sizes={
            "smoke": dict(batch=2, steps=3, inputs=6, outputs=5, hidden=8, memory=6, word=4, reads=2),
            "quick": dict(batch=16, steps=9, inputs=6, outputs=5, hidden=64, memory=16, word=16, reads=4),
            "paper": dict(batch=16, steps=50, inputs=160, outputs=160, hidden=256, memory=256, word=64, reads=4),
        },
        build=build,
        flops=flops,
        recurrent=True,
    )
)
