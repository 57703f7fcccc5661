"""Embed: a lookup table from integer ids to learned vectors."""

import math

import tensorflow as tf

from core import initializers, utils
from core.module import Module


def embedding_dim(vocab_size: int) -> int:
    """A rule-of-thumb embedding size for a vocabulary: round(6 * vocab_size ** 0.25), as Sonnet uses."""
    if not utils.is_int(vocab_size) or vocab_size < 1:
        raise ValueError(f"embedding_dim needs a positive int vocab_size, got {vocab_size!r}")
    return int(round(6.0 * math.sqrt(math.sqrt(vocab_size))))


@tf.custom_gradient
def _with_dense_gradient(table: tf.Tensor):
    """Identity whose gradient is always a dense tensor, never `tf.IndexedSlices`."""

    def grad(upstream):
        return tf.convert_to_tensor(upstream)

    return tf.identity(table), grad


class Embed(Module):
    """Maps integer ids to rows of the `embeddings` table [vocab_size, embed_dim].

    Unlike most modules, the table is made in the constructor: its shape does not depend
    on the input. Its gradient is `tf.IndexedSlices` (only the looked-up rows), unless
    `densify_gradients`.

    Args:
      vocab_size: number of rows (ids 0 .. vocab_size - 1), a Python or NumPy integer.
        Give it or `existing_vocab`.
      embed_dim: size of each vector; defaults to round(6 * vocab_size ** 0.25).
      existing_vocab: a [vocab_size, embed_dim] table to start from (converted to
        `dtype`); then `vocab_size`, `embed_dim` and `initializer` must not be given.
      densify_gradients: make the table's gradient a dense tensor. That suits small
        vocabularies (up to thousands of rows), where scattering slices costs more than
        adding a dense tensor; leave it off for large ones.
      initializer: initializer of the table; `TruncatedNormal()` by default, as in
        Sonnet: a unit normal cut at two standard deviations, whose actual standard
        deviation is about 0.88.
      trainable: whether the table is a trainable variable.
      dtype: the table's dtype (floating point).
      name: module name.

    Raises:
      ValueError: when neither or both of `vocab_size` and `existing_vocab` are given, or
        sizes are not positive.
    """

    def __init__(
        self,
        vocab_size: int | None = None,
        embed_dim: int | None = None,
        existing_vocab: tf.Tensor | None = None,
        densify_gradients: bool = False,
        initializer: initializers.Initializer | None = None,
        trainable: bool = True,
        dtype: tf.DType = tf.float32,
        name: str | None = None,
    ):
        super().__init__(name=name)
        dtype = tf.as_dtype(dtype)
        if not dtype.is_floating:
            raise TypeError(f"{utils.describe(self)}: dtype must be floating point, got {dtype.name}")
        if existing_vocab is None:
            if vocab_size is None:
                raise ValueError(f"{utils.describe(self)}: give vocab_size or existing_vocab")
            for what, value in (("vocab_size", vocab_size), ("embed_dim", embed_dim)):
                if value is not None:
                    utils.positive_int(self, value, what)
            vocab_size = int(vocab_size)
            embed_dim = embedding_dim(vocab_size) if embed_dim is None else int(embed_dim)
            initializer = initializer or initializers.TruncatedNormal()
            table = initializer([vocab_size, embed_dim], dtype)
        else:
            if vocab_size is not None or embed_dim is not None or initializer is not None:
                raise ValueError(
                    f"{utils.describe(self)}: existing_vocab fixes the table, so vocab_size, "
                    "embed_dim and initializer must not be given"
                )
            table = tf.convert_to_tensor(existing_vocab, dtype=dtype)
            if table.shape.rank != 2:
                raise ValueError(
                    f"{utils.describe(self)}: existing_vocab must be [vocab_size, embed_dim], got shape {table.shape}"
                )
            vocab_size, embed_dim = table.shape.as_list()
        self.vocab_size = vocab_size
        self.embed_dim = embed_dim
        self.densify_gradients = densify_gradients
        self.embeddings = tf.Variable(table, trainable=trainable, name="embeddings")

    def __call__(self, inputs: tf.Tensor) -> tf.Tensor:
        """Looks up `inputs`, integer ids of any shape; returns [*inputs.shape, embed_dim].

        Ids outside [0, vocab_size) are not checked here, and what they give depends
        on where the lookup runs: eagerly or in a `tf.function` on CPU, TensorFlow's
        gather raises `InvalidArgumentError`; on GPU it returns zero vectors; compiled
        with XLA (`jit_compile=True`, on CPU too) it clamps them silently, so an id
        >= vocab_size gets the last row and a negative id the first. A check of its own
        would cost a reduction over the ids on every call (and XLA drops assertions),
        so validate ids where they are made if they can be out of range.

        Raises:
          TypeError: if `inputs` is not an integer tensor.
        """
        dtype = getattr(inputs, "dtype", None)
        if dtype is not tf.int32 and dtype is not tf.int64:
            inputs = self._check(inputs)
        table = _with_dense_gradient(self.embeddings) if self.densify_gradients else self.embeddings
        return tf.nn.embedding_lookup(table, inputs)

    def _check(self, inputs) -> tf.Tensor:
        """Converts Python, NumPy and narrow integer ids to int32/int64; raises TypeError on others."""
        if not tf.is_tensor(inputs):
            inputs = tf.convert_to_tensor(inputs)
        if not inputs.dtype.is_integer:
            raise TypeError(f"{utils.describe(self)}: inputs must be integer ids, got dtype {inputs.dtype.name}")
        return inputs if inputs.dtype in (tf.int32, tf.int64) else tf.cast(inputs, tf.int64)
