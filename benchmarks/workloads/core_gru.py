"""GRU: `core.GRU` unrolled with `core.dynamic_unroll` over a time-major sequence."""

import tensorflow as tf

import core
from benchmarks import cases, registry
from benchmarks.workloads import core_lstm


def build(dtype: tf.DType, batch: int, steps: int, inputs: int, hidden: int) -> registry.Case:
    gru = core.GRU(hidden, dtype=dtype)

    def forward(x: tf.Tensor) -> tf.Tensor:
        return core.dynamic_unroll(gru, x, gru.initial_state(batch))[0]

    return cases.core_case(gru, batch, core_lstm.sequence(dtype, batch, steps, inputs), forward)


def build_sonnet(dtype: tf.DType, batch: int, steps: int, inputs: int, hidden: int) -> registry.Case:
    import sonnet as snt

    gru = snt.GRU(hidden, dtype=dtype)

    def forward(x: tf.Tensor) -> tf.Tensor:
        return snt.dynamic_unroll(gru, x, gru.initial_state(batch))[0]

    return cases.sonnet_case(gru, batch, core_lstm.sequence(dtype, batch, steps, inputs), forward)


def build_keras(dtype: tf.DType, batch: int, steps: int, inputs: int, hidden: int) -> registry.Case:
    import keras

    # reset_after=False: the reset gate before the recurrent product, as in Sonnet's GRU
    # and ours (Keras's default applies it after, the cuDNN form). Glorot recurrent
    # weights, as in `core_lstm`.
    gru = keras.layers.GRU(
        hidden, return_sequences=True, reset_after=False, recurrent_initializer="glorot_uniform", dtype=dtype.name
    )
    return cases.keras_case(
        gru,
        batch,
        core_lstm.sequence(dtype, batch, steps, inputs, batch_major=True),
        forward=lambda x: gru(x, training=False),
        train_forward=lambda x: gru(x, training=True),
    )


def flops(batch: int, steps: int, inputs: int, hidden: int) -> registry.Flops:
    """Per step, [x, h] (inputs + hidden) times the three gates' weights; backward as `lstm`'s."""
    step = 2 * batch * (inputs + hidden) * 3 * hidden
    forward = steps * step
    hidden_grads = (steps - 1) * 2 * batch * hidden * 3 * hidden
    return registry.Flops(forward, 2 * forward + hidden_grads, "matrix products only")


registry.register(
    registry.Workload(
        name="gru",
        description="core.GRU + dynamic_unroll",
        sizes=core_lstm.SIZES,
        build=build,
        peers={"sonnet": build_sonnet, "keras": build_keras},
        flops=flops,
        recurrent=True,
    )
)
