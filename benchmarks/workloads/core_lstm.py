"""LSTM: `core.LSTM` unrolled with `core.dynamic_unroll` over a time-major sequence."""

import tensorflow as tf

import core
from benchmarks import cases, registry


def sequence(dtype: tf.DType, batch: int, steps: int, inputs: int, batch_major: bool = False):
    """seed -> a normal sequence [steps, batch, inputs] (or batch-major, for Keras)."""

    def make(seed: int) -> tf.Tensor:
        x = cases.normal(seed, [steps, batch, inputs], dtype)
        return tf.transpose(x, [1, 0, 2]) if batch_major else x

    return make


def build(
    dtype: tf.DType, batch: int, steps: int, inputs: int, hidden: int, lstm: core.LSTM | None = None
) -> registry.Case:
    lstm = lstm or core.LSTM(hidden, dtype=dtype)

    def forward(x: tf.Tensor) -> tf.Tensor:
        return core.dynamic_unroll(lstm, x, lstm.initial_state(batch))[0]

    return cases.core_case(lstm, batch, sequence(dtype, batch, steps, inputs), forward)


def build_sonnet(dtype: tf.DType, batch: int, steps: int, inputs: int, hidden: int) -> registry.Case:
    import sonnet as snt

    lstm = snt.LSTM(hidden, dtype=dtype)

    def forward(x: tf.Tensor) -> tf.Tensor:
        return snt.dynamic_unroll(lstm, x, lstm.initial_state(batch))[0]

    return cases.sonnet_case(lstm, batch, sequence(dtype, batch, steps, inputs), forward)


def build_keras(dtype: tf.DType, batch: int, steps: int, inputs: int, hidden: int) -> registry.Case:
    import keras

    # Keras's recurrent layers are batch-major; the data is the same sequence, transposed.
    # Glorot, not Keras's default orthogonal recurrent initializer: that one needs a QR
    # decomposition, which has no bfloat16 kernel. The values do not change the timing.
    lstm = keras.layers.LSTM(hidden, return_sequences=True, recurrent_initializer="glorot_uniform", dtype=dtype.name)
    return cases.keras_case(
        lstm,
        batch,
        sequence(dtype, batch, steps, inputs, batch_major=True),
        forward=lambda x: lstm(x, training=False),
        train_forward=lambda x: lstm(x, training=True),
    )


# Shared with `lstm_ln` and `gru`.
SIZES = {
    "smoke": {"batch": 2, "steps": 3, "inputs": 4, "hidden": 8},
    "quick": {"batch": 16, "steps": 50, "inputs": 64, "hidden": 256},
    "paper": {"batch": 64, "steps": 100, "inputs": 128, "hidden": 512},
}


def flops(batch: int, steps: int, inputs: int, hidden: int) -> registry.Flops:
    """Per step, [x, h] (inputs + hidden) times the four gates' weights.

    Backward: the weight gradients, and the gradients into h, but not into the data nor
    into the first step's (constant) initial state.
    """
    step = 2 * batch * (inputs + hidden) * 4 * hidden
    forward = steps * step
    hidden_grads = (steps - 1) * 2 * batch * hidden * 4 * hidden
    return registry.Flops(forward, 2 * forward + hidden_grads, "matrix products only")


registry.register(
    registry.Workload(
        name="lstm",
        description="core.LSTM + dynamic_unroll",
        sizes=SIZES,
        build=build,
        peers={"sonnet": build_sonnet, "keras": build_keras},
        flops=flops,
        recurrent=True,
    )
)
