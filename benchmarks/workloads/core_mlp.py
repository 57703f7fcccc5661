"""MLP: `core.nets.MLP` on a batch of flattened images (784-1024-1024-10 at `quick`)."""

import tensorflow as tf

import core
from benchmarks import cases, registry


def _inputs(dtype: tf.DType, batch: int, sizes: tuple[int, ...]):
    return lambda seed: cases.normal(seed, [batch, sizes[0]], dtype)


def build(dtype: tf.DType, batch: int, sizes: tuple[int, ...]) -> registry.Case:
    mlp = core.nets.MLP(list(sizes[1:]))
    return cases.core_case(mlp, batch, _inputs(dtype, batch, sizes), forward=mlp)


def build_sonnet(dtype: tf.DType, batch: int, sizes: tuple[int, ...]) -> registry.Case:
    import sonnet as snt

    mlp = snt.nets.MLP(list(sizes[1:]))
    return cases.sonnet_case(mlp, batch, _inputs(dtype, batch, sizes), forward=mlp)


def build_keras(dtype: tf.DType, batch: int, sizes: tuple[int, ...]) -> registry.Case:
    import keras

    *hidden, last = sizes[1:]
    layers = [keras.layers.Dense(n, activation="relu", dtype=dtype.name) for n in hidden]
    output = keras.layers.Dense(last, dtype=dtype.name)
    mlp = keras.Sequential([keras.Input([sizes[0]], dtype=dtype.name), *layers, output])
    return cases.keras_case(
        mlp,
        batch,
        _inputs(dtype, batch, sizes),
        forward=lambda x: mlp(x, training=False),
        train_forward=lambda x: mlp(x, training=True),
    )


def flops(batch: int, sizes: tuple[int, ...]) -> registry.Flops:
    """Matrix products: forward, then weight gradients and (beyond the first layer) input gradients."""
    layers = [2 * batch * i * o for i, o in zip(sizes[:-1], sizes[1:])]
    forward = sum(layers)
    return registry.Flops(forward, forward + forward + sum(layers[1:]), "matrix products only")


registry.register(
    registry.Workload(
        name="mlp",
        description="core.nets.MLP, ReLU",
        sizes={
            "smoke": {"batch": 8, "sizes": (32, 16, 16, 4)},
            "quick": {"batch": 256, "sizes": (784, 1024, 1024, 10)},
            "paper": {"batch": 1024, "sizes": (784, 1024, 1024, 10)},
        },
        build=build,
        peers={"sonnet": build_sonnet, "keras": build_keras},
        flops=flops,
    )
)
