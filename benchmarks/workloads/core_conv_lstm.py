"""Convolutional LSTM: `core.Conv2DLSTM` unrolled with `core.dynamic_unroll` (the GQN generator's core)."""

import tensorflow as tf

import core
from benchmarks import cases, registry


def _inputs(dtype: tf.DType, batch: int, steps: int, image: int, in_channels: int, batch_major: bool = False):
    def make(seed: int) -> tf.Tensor:
        x = cases.normal(seed, [steps, batch, image, image, in_channels], dtype)
        return tf.transpose(x, [1, 0, 2, 3, 4]) if batch_major else x

    return make


def build(
    dtype: tf.DType, batch: int, steps: int, image: int, in_channels: int, channels: int, kernel: int
) -> registry.Case:
    cell = core.Conv2DLSTM((image, image, in_channels), channels, kernel, dtype=dtype)

    def forward(x: tf.Tensor) -> tf.Tensor:
        return core.dynamic_unroll(cell, x, cell.initial_state(batch))[0]

    return cases.core_case(cell, batch, _inputs(dtype, batch, steps, image, in_channels), forward)


def build_sonnet(
    dtype: tf.DType, batch: int, steps: int, image: int, in_channels: int, channels: int, kernel: int
) -> registry.Case:
    import sonnet as snt

    cell = snt.Conv2DLSTM((image, image, in_channels), channels, kernel, dtype=dtype)

    def forward(x: tf.Tensor) -> tf.Tensor:
        return snt.dynamic_unroll(cell, x, cell.initial_state(batch))[0]

    return cases.sonnet_case(cell, batch, _inputs(dtype, batch, steps, image, in_channels), forward)


def build_keras(
    dtype: tf.DType, batch: int, steps: int, image: int, in_channels: int, channels: int, kernel: int
) -> registry.Case:
    import keras

    # Glorot, not the default orthogonal recurrent initializer (no bfloat16 QR kernel).
    cell = keras.layers.ConvLSTM2D(
        channels,
        kernel,
        padding="same",
        return_sequences=True,
        recurrent_initializer="glorot_uniform",
        dtype=dtype.name,
    )
    return cases.keras_case(
        cell,
        batch,
        _inputs(dtype, batch, steps, image, in_channels, batch_major=True),
        forward=lambda x: cell(x, training=False),
        train_forward=lambda x: cell(x, training=True),
    )


def flops(batch: int, steps: int, image: int, in_channels: int, channels: int, kernel: int) -> registry.Flops:
    """Per step, the input and hidden convolutions into four gates.

    Backward: the filter gradients, and the gradients into h, but not into the data nor
    into the first step's (constant) initial state.
    """
    per_position = 2 * batch * image * image * kernel * kernel * 4 * channels
    forward = steps * per_position * (in_channels + channels)
    hidden_grads = (steps - 1) * per_position * channels
    return registry.Flops(forward, 2 * forward + hidden_grads, "convolutions only")


registry.register(
    registry.Workload(
        name="conv_lstm",
        description="core.Conv2DLSTM + dynamic_unroll",
        sizes={
            "smoke": {"batch": 2, "steps": 3, "image": 4, "in_channels": 2, "channels": 4, "kernel": 3},
            "quick": {"batch": 8, "steps": 10, "image": 16, "in_channels": 32, "channels": 64, "kernel": 5},
            "paper": {"batch": 8, "steps": 12, "image": 16, "in_channels": 256, "channels": 256, "kernel": 5},
        },
        build=build,
        peers={"sonnet": build_sonnet, "keras": build_keras},
        flops=flops,
        recurrent=True,
    )
)
