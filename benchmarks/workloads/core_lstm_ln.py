"""Layer-normalised LSTM: `core.LSTM(layer_norm=True)` (the AlphaStar core's) with `core.dynamic_unroll`.

Neither dm-sonnet 2 nor Keras 3 has a layer-normalised LSTM, so this workload has no peers;
`lstm` compares the plain LSTM with theirs.
"""

import tensorflow as tf

import core
from benchmarks import registry
from benchmarks.workloads import core_lstm


def build(dtype: tf.DType, batch: int, steps: int, inputs: int, hidden: int) -> registry.Case:
    return core_lstm.build(dtype, batch, steps, inputs, hidden, lstm=core.LSTM(hidden, dtype=dtype, layer_norm=True))


registry.register(
    registry.Workload(
        name="lstm_ln",
        description="core.LSTM(layer_norm=True) + dynamic_unroll",
        sizes=core_lstm.SIZES,
        build=build,
        flops=core_lstm.flops,
        recurrent=True,
    )
)
