"""Masked categorical distributions over logits, and sampling that is the same eagerly, traced and under XLA.

Unavailable choices get the logit `MASKED_LOGIT`, a large negative number rather than
-inf: their probability underflows to exactly zero, a fully masked row stays finite
(uniform), and p * log p is 0 * (finite) = 0 in an entropy, never NaN.

Sampling uses the Gumbel-max trick, argmax(logits + g) with g = -log(-log u), on
uniform noise u made by an integer hash of (seed, stream, position). TensorFlow's
stateless random ops give different numbers under XLA than outside it on this
platform, so their samples would depend on `jit_compile`; the hash uses only 64-bit
integer multiplies, shifts and xors, which every backend computes alike, so a seed
gives the same actions eagerly, in `tf.function` and with XLA.
"""

import tensorflow as tf

MASKED_LOGIT = -1e9

_LOW32 = 0xFFFFFFFF


def _mix(x: tf.Tensor) -> tf.Tensor:
    """A 32-bit integer hash (xor-shift-multiply rounds) of int64 values in [0, 2^32).

    The multipliers are odd and below 2^31, so every product fits in an int64 and is then
    cut to 32 bits: the arithmetic is exact on every backend.
    """
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 16))
    x = tf.bitwise.bitwise_and(x * 0x7FEB352D, _LOW32)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 15))
    x = tf.bitwise.bitwise_and(x * 0x6C8E9CF5, _LOW32)
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 16))


def uniform(seed: tf.Tensor, stream: int | tf.Tensor, shape: tf.Tensor | list) -> tf.Tensor:
    """float32 noise in (0, 1) of `shape`, a pure function of (seed, stream, position).

    Args:
      seed: an integer tensor [2].
      stream: a non-negative integer (or int scalar tensor) that separates independent
        draws made with one seed.
      shape: the output shape (a list or an int tensor).
    """
    seed = tf.bitwise.bitwise_and(tf.cast(seed, tf.int64), _LOW32)
    stream = tf.cast(stream, tf.int64)
    key = _mix(tf.bitwise.bitwise_and(_mix(seed[0]) + seed[1] * 0x2545F491 + stream, _LOW32))
    key = _mix(tf.bitwise.bitwise_and(key + 0x9E3779B9, _LOW32))
    count = tf.reduce_prod(tf.cast(shape, tf.int64))
    position = tf.range(count, dtype=tf.int64)
    bits = _mix(tf.bitwise.bitwise_and(_mix(tf.bitwise.bitwise_xor(position, key)) + key, _LOW32))
    # The top 24 bits, centred in their interval: never exactly 0 or 1.
    u = (tf.cast(tf.bitwise.right_shift(bits, 8), tf.float32) + 0.5) * (1.0 / (1 << 24))
    return tf.reshape(u, shape)


def mask_logits(logits: tf.Tensor, mask: tf.Tensor | None, temperature: float | tf.Tensor = 1.0) -> tf.Tensor:
    """`logits / temperature`, with `MASKED_LOGIT` where `mask` is False."""
    if not (isinstance(temperature, (int, float)) and temperature == 1.0):
        logits = logits / tf.cast(temperature, logits.dtype)
    if mask is None:
        return logits
    return tf.where(mask, logits, tf.constant(MASKED_LOGIT, logits.dtype))


def sample(logits: tf.Tensor, seed: tf.Tensor, stream: int | tf.Tensor) -> tf.Tensor:
    """One draw from softmax(logits) over the last axis (Gumbel-max): int32 [batch...]."""
    u = uniform(seed, stream, tf.shape(logits))
    gumbel = -tf.math.log(-tf.math.log(u))
    return tf.argmax(tf.cast(logits, tf.float32) + gumbel, axis=-1, output_type=tf.int32)


def log_prob(logits: tf.Tensor, choice: tf.Tensor) -> tf.Tensor:
    """log softmax(logits)[choice] over the last axis; 0 where `choice` is negative (not chosen)."""
    log_probs = tf.nn.log_softmax(logits)
    chosen = choice >= 0
    index = tf.where(chosen, choice, tf.zeros_like(choice))
    picked = tf.gather(log_probs, index, batch_dims=len(index.shape))
    return tf.where(chosen, picked, tf.zeros_like(picked))


def entropy(logits: tf.Tensor) -> tf.Tensor:
    """The entropy of softmax(logits) over the last axis (masked choices contribute 0)."""
    log_probs = tf.nn.log_softmax(logits)
    return -tf.reduce_sum(tf.exp(log_probs) * log_probs, axis=-1)


def greedy(logits: tf.Tensor) -> tf.Tensor:
    """The most likely choice over the last axis: int32 [batch...]."""
    return tf.argmax(logits, axis=-1, output_type=tf.int32)
