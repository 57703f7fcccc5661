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


_SHOWN = 10  # out-of-range ids an error lists


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

        Ids must lie in [0, vocab_size). Eagerly and in a `tf.function` that is checked
        before the lookup, on every device (TensorFlow's own gather raises on CPU but
        returns zero vectors on GPU): an id outside raises `InvalidArgumentError` naming
        the module, the vocabulary size, how many ids are outside it and the first ten
        of them with their positions in `inputs`. The check costs a minimum and a
        maximum over the ids. Compiled with XLA (`jit_compile=True`, on CPU
        too) there is no check: XLA drops assertions, and its gather clamps, so an id
        >= vocab_size silently gets the last row and a negative id the first; validate
        ids where they are made if they can be out of range there.

        Raises:
          TypeError: if `inputs` is not an integer tensor.
          tf.errors.InvalidArgumentError: for an id outside [0, vocab_size), eagerly
            at the call, in a `tf.function` when it runs.
        """
        dtype = getattr(inputs, "dtype", None)
        if dtype is not tf.int32 and dtype is not tf.int64:
            inputs = self._check(inputs)
        inputs = self._check_range(inputs)
        table = _with_dense_gradient(self.embeddings) if self.densify_gradients else self.embeddings
        return tf.nn.embedding_lookup(table, inputs)

    def _check_range(self, ids: tf.Tensor) -> tf.Tensor:
        """`ids`, once every one is known to lie in [0, vocab_size) (in a graph: once the check has run).

        The check is a minimum and a maximum over the ids; which ids are outside, and
        where, is worked out only when one is.
        """
        low, high = tf.reduce_min(ids), tf.reduce_max(ids)  # of no ids: the dtype's max and min, which pass
        expected = f"ids must lie in [0, vocab_size) = [0, {self.vocab_size})"
        if tf.executing_eagerly():
            if low < 0 or high >= self.vocab_size:
                count, values, positions = (t.numpy() for t in self._outside(ids))
                listed = ", ".join(f"{v} at {list(map(int, i))}" for v, i in zip(values, positions))
                more = f", and {count - len(values)} more" if count > len(values) else ""
                message = f"{utils.describe(self)}: {expected}, got {count} outside it: {listed}{more}"
                raise tf.errors.InvalidArgumentError(None, None, message)
            return ids
        # The graph's message prints quotes escaped, so it names the module without them.
        prefix = f"{type(self).__name__} {self.name}: {expected}, got"

        def fail():
            count, values, positions = self._outside(ids)
            data = [prefix, count, "outside it; the first:", values, "at", positions]
            return tf.debugging.Assert(False, data, summarize=3 * _SHOWN)

        fits = tf.logical_and(low >= 0, high < tf.cast(self.vocab_size, ids.dtype))
        with tf.control_dependencies([tf.cond(fits, tf.no_op, fail)]):
            return tf.identity(ids)

    def _outside(self, ids: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """How many ids lie outside [0, vocab_size); the first `_SHOWN` of them and their positions."""
        where = tf.where(tf.logical_or(ids < 0, ids >= tf.cast(self.vocab_size, ids.dtype)))
        return tf.shape(where)[0], tf.gather_nd(ids, where[:_SHOWN]), where[:_SHOWN]

    def _check(self, inputs) -> tf.Tensor:
        """Converts Python, NumPy and narrow integer ids to int32/int64; raises TypeError on others."""
        if not tf.is_tensor(inputs):
            inputs = tf.convert_to_tensor(inputs)
        if not inputs.dtype.is_integer:
            raise TypeError(f"{utils.describe(self)}: inputs must be integer ids, got dtype {inputs.dtype.name}")
        return inputs if inputs.dtype in (tf.int32, tf.int64) else tf.cast(inputs, tf.int64)
