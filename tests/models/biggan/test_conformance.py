"""BigGAN's modules through the shared conformance checks (tests/conformance/suite.py), at tiny sizes."""

import numpy as np

from models.biggan import biggan, layers, metrics
from tests.conformance import registry
from tests.conformance.registry import Entry, call_training, normal
from tests.conformance.suite import *  # noqa: F403 (the shared checks, run over ENTRIES)


def _images_and_ids(shape, classes):
    return lambda rng: (
        rng.normal(size=shape).astype(np.float32),
        rng.randint(0, classes, size=shape[0]).astype(np.int32),
    )


def _latents(dim_z, classes):
    return lambda rng: (
        rng.normal(size=[2, dim_z]).astype(np.float32),
        rng.randint(0, classes, size=2).astype(np.int32),
    )


def _with_condition(shape, condition):
    return lambda rng: (
        rng.normal(size=shape).astype(np.float32),
        rng.normal(size=[shape[0], condition]).astype(np.float32),
    )


def _two(m, x, t):
    return m(x[0], x[1], t)


def _ids(m, x, t):
    return m(x[0], t)


# Convolutions under XLA round differently from the eager kernels.
CONV_RTOL = 1e-4
# The whole networks are covered piecewise by the block entries for what costs most
# (each replica traces, and XLA compiles, the whole network: minutes on a 2-core CPU),
# and as wholes by the tests named here.
NETWORK_SKIPS = {
    "mirrored": "test_biggan.py runs the generator under 4 replicas with uneven batches, and test_gan.py "
    "(-m slow) whole training steps; the block entries run here",
    "xla": "the block entries compile here; test_gan.py (-m slow) compiles whole training steps",
}

ENTRIES = [
    Entry("SNLinear", layers.SNLinear, lambda: layers.SNLinear(3), normal(2, 4), forward=call_training),
    Entry(
        "SNConv2D",
        layers.SNConv2D,
        lambda: layers.SNConv2D(3, 3),
        normal(2, 5, 5, 2),
        forward=call_training,
        rtol=CONV_RTOL,
    ),
    Entry(
        "SNEmbed",
        layers.SNEmbed,
        lambda: layers.SNEmbed(5, 3),
        lambda rng: (rng.randint(0, 5, size=[3]).astype(np.int32),),
        forward=_ids,
    ),
    Entry(
        "ConditionalBatchNorm",
        biggan.ConditionalBatchNorm,
        lambda: biggan.ConditionalBatchNorm(),
        _with_condition([3, 4, 4, 2], 5),
        forward=_two,
    ),
    Entry(
        "NonLocalBlock",
        biggan.NonLocalBlock,
        lambda: biggan.NonLocalBlock(),
        normal(2, 4, 4, 8),
        forward=call_training,
        rtol=CONV_RTOL,
    ),
    Entry(
        "GBlock",
        biggan.GBlock,
        lambda: biggan.GBlock(3),
        _with_condition([2, 4, 4, 2], 5),
        forward=_two,
        rtol=CONV_RTOL,
    ),
    Entry(
        "DBlock",
        biggan.DBlock,
        lambda: biggan.DBlock(3, preactivation=False),
        normal(2, 4, 4, 2),
        forward=call_training,
        rtol=CONV_RTOL,
    ),
    Entry(
        "Generator",
        biggan.Generator,
        lambda: biggan.Generator(ch=2, resolution=32, num_classes=3, dim_z=8, shared_dim=4, attention_resolution=16),
        _latents(8, 3),
        forward=_two,
        skip=NETWORK_SKIPS,
        rtol=CONV_RTOL,
    ),
    Entry(
        "Discriminator",
        biggan.Discriminator,
        lambda: biggan.Discriminator(ch=2, resolution=32, num_classes=3, attention_resolution=16),
        _images_and_ids([2, 32, 32, 3], 3),
        forward=_two,
        skip=NETWORK_SKIPS,
        rtol=CONV_RTOL,
    ),
    Entry("Classifier", metrics.Classifier, lambda: metrics.Classifier(3), normal(2, 8, 8, 3), rtol=CONV_RTOL),
]
PUBLIC_MODULES = registry.module_classes_in("models.biggan")
