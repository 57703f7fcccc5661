"""A convolution stack with BatchNorm: (3x3 `core.Conv2D`, `core.BatchNorm`, ReLU) x layers."""

import tensorflow as tf

import core
from benchmarks import cases, registry

DECAY = 0.999
EPS = 1e-5


def _inputs(dtype: tf.DType, batch: int, image: int, in_channels: int):
    return lambda seed: cases.normal(seed, [batch, image, image, in_channels], dtype)


class ConvStack(core.Module):
    """`layers` blocks of 3x3 convolution, batch norm (`norm`, `core.BatchNorm` by default) and ReLU."""

    def __init__(self, layers: int, channels: int, name: str | None = None, norm: type = core.BatchNorm):
        super().__init__(name=name)
        self.convs = [core.Conv2D(channels, 3, name=f"conv_{i}") for i in range(layers)]
        self.norms = [norm(True, True, decay_rate=DECAY, eps=EPS, name=f"bn_{i}") for i in range(layers)]

    def __call__(self, x: tf.Tensor, is_training: bool) -> tf.Tensor:
        for conv, norm in zip(self.convs, self.norms):
            x = tf.nn.relu(norm(conv(x), is_training=is_training))
        return x


def build(dtype: tf.DType, batch: int, image: int, in_channels: int, channels: int, layers: int) -> registry.Case:
    net = ConvStack(layers, channels)
    return cases.core_case(
        net,
        batch,
        _inputs(dtype, batch, image, in_channels),
        forward=lambda x: net(x, is_training=False),
        train_forward=lambda x: net(x, is_training=True),
    )


def build_sonnet(
    dtype: tf.DType, batch: int, image: int, in_channels: int, channels: int, layers: int
) -> registry.Case:
    import sonnet as snt

    class SonnetConvStack(snt.Module):
        def __init__(self):
            super().__init__(name="conv_stack")
            self.convs = [snt.Conv2D(channels, 3, name=f"conv_{i}") for i in range(layers)]
            self.norms = [snt.BatchNorm(True, True, decay_rate=DECAY, eps=EPS, name=f"bn_{i}") for i in range(layers)]

        def __call__(self, x, is_training):
            for conv, norm in zip(self.convs, self.norms):
                x = tf.nn.relu(norm(conv(x), is_training=is_training))
            return x

    net = SonnetConvStack()
    return cases.sonnet_case(
        net,
        batch,
        _inputs(dtype, batch, image, in_channels),
        forward=lambda x: net(x, is_training=False),
        train_forward=lambda x: net(x, is_training=True),
    )


def build_keras(dtype: tf.DType, batch: int, image: int, in_channels: int, channels: int, layers: int) -> registry.Case:
    import keras

    d = dtype.name
    blocks = []
    for _ in range(layers):
        blocks += [
            keras.layers.Conv2D(channels, 3, padding="same", dtype=d),
            keras.layers.BatchNormalization(momentum=DECAY, epsilon=EPS, dtype=d),
            keras.layers.ReLU(dtype=d),
        ]
    net = keras.Sequential([keras.Input([image, image, in_channels], dtype=d), *blocks])
    return cases.keras_case(
        net,
        batch,
        _inputs(dtype, batch, image, in_channels),
        forward=lambda x: net(x, training=False),
        train_forward=lambda x: net(x, training=True),
    )


def flops(batch: int, image: int, in_channels: int, channels: int, layers: int) -> registry.Flops:
    """Convolutions: forward, filter gradients and (beyond the first layer) input gradients."""
    per_layer = [2 * batch * image * image * 9 * cin * channels for cin in [in_channels] + [channels] * (layers - 1)]
    forward = sum(per_layer)
    return registry.Flops(forward, 2 * forward + sum(per_layer[1:]), "convolutions only")


registry.register(
    registry.Workload(
        name="conv_bn",
        description="3x3 Conv2D + BatchNorm + ReLU stack",
        sizes={
            "smoke": {"batch": 2, "image": 8, "in_channels": 3, "channels": 4, "layers": 3},
            "quick": {"batch": 32, "image": 32, "in_channels": 3, "channels": 64, "layers": 3},
            "paper": {"batch": 128, "image": 32, "in_channels": 3, "channels": 64, "layers": 3},
        },
        build=build,
        peers={"sonnet": build_sonnet, "keras": build_keras},
        flops=flops,
    )
)
