"""Multi-head self-attention over a padded set: `core.MultiHeadAttention` with a key mask.

Sonnet 2 has no attention module, so the only peer is Keras's `MultiHeadAttention`.
"""

import tensorflow as tf

import core
from benchmarks import cases, registry

MASKED_FRACTION = 0.25


def _inputs(dtype: tf.DType, batch: int, entities: int, features: int, pairwise: bool = False):
    """(entities [B, N, D], mask): the key mask [B, N] for ours, the [B, N, N] pair mask for Keras."""

    def make(seed: int):
        x = cases.normal(seed, [batch, entities, features], dtype)
        mask = cases.padding_mask(seed, batch, entities, MASKED_FRACTION)
        if pairwise:
            mask = tf.broadcast_to(mask[:, None, :], [batch, entities, entities])
        return x, mask

    return make


def build(dtype: tf.DType, batch: int, entities: int, features: int, heads: int, key_size: int) -> registry.Case:
    mha = core.MultiHeadAttention(heads, key_size)
    return cases.core_case(
        mha, batch, _inputs(dtype, batch, entities, features), forward=lambda x: mha(x[0], key_mask=x[1])
    )


def build_keras(dtype: tf.DType, batch: int, entities: int, features: int, heads: int, key_size: int) -> registry.Case:
    import keras

    mha = keras.layers.MultiHeadAttention(heads, key_size, dtype=dtype.name)
    return cases.keras_case(
        mha,
        batch,
        _inputs(dtype, batch, entities, features, pairwise=True),
        forward=lambda x: mha(x[0], x[0], attention_mask=x[1], training=False),
        train_forward=lambda x: mha(x[0], x[0], attention_mask=x[1], training=True),
    )


def flops(batch: int, entities: int, features: int, heads: int, key_size: int) -> registry.Flops:
    """Projections (query, key, value, output) and the two attention products; no input gradient."""
    projection = 2 * batch * entities * features * heads * key_size
    attention = 2 * 2 * batch * heads * entities * entities * key_size
    forward = 4 * projection + attention
    # Backward: every weight gradient, and every input gradient except the three into the data.
    return registry.Flops(forward, 3 * forward - 3 * projection, "matrix products only")


registry.register(
    registry.Workload(
        name="attention",
        description="core.MultiHeadAttention, padded set",
        sizes={
            "smoke": {"batch": 2, "entities": 6, "features": 8, "heads": 2, "key_size": 4},
            "quick": {"batch": 32, "entities": 64, "features": 256, "heads": 2, "key_size": 128},
            "paper": {"batch": 32, "entities": 512, "features": 256, "heads": 2, "key_size": 128},
        },
        build=build,
        peers={"keras": build_keras},
        flops=flops,
    )
)
