"""MultiHeadAttention: scaled dot-product attention with several heads and a key mask."""

import math

import tensorflow as tf

from core import initializers, utils
from core.linear import Linear
from core.module import Module, once


def _leading_dims(x: tf.Tensor) -> list:
    """The first two dimensions of `x`: ints where known statically, else tensors."""
    shape = x.shape
    if shape[0] is None or shape[1] is None:
        return tf.unstack(tf.shape(x))[:2]
    return shape[:2].as_list()


class MultiHeadAttention(Module):
    """Multi-head scaled dot-product attention (Vaswani et al., 2017, arXiv:1706.03762).

    Queries, keys and values are projected into `num_heads` heads; in each head the
    attention weights are `softmax(q k^T / sqrt(key_size))` over the keys, and the
    weighted sum of the values goes, heads concatenated, through an output projection.
    The 1/sqrt(key_size) factor is the paper's: it keeps the logits' variance near one
    whatever the key size, so the softmax does not saturate. Sonnet 2 has no attention
    module; the arguments follow its `Linear` (`with_bias`, `w_init`, `b_init`).

    The four projections are `Linear` submodules named `query`, `key`, `value` and
    `output`, so the variables read `multi_head_attention/query/w` and so on. They are
    made on first use: `attention_weights` alone makes only `query` and `key`.

    A key mask serves padded sets (the entities of AlphaStar's encoder): a masked key
    gets weight exactly zero, and a query whose keys are all masked gets all-zero
    weights and a zero attention output before the output projection (so the module
    returns the output bias there), with finite gradients.

    Args:
      num_heads: number of attention heads.
      key_size: size of each head's queries and keys.
      value_size: size of each head's values; `key_size` by default.
      model_size: size of the output's last axis; by default the query's feature size,
        so that `x + mha(x)` (a residual connection) works.
      with_bias: whether the projections have biases.
      w_init: initializer of the projection weights; by default `Linear`'s,
        `TruncatedNormal(stddev=1/sqrt(fan_in))`, which keeps projected queries and keys
        near the inputs' variance (about 0.77 times it, from the truncation), so that
        with the 1/sqrt(key_size) factor the logits' variance is of that order too.
      b_init: initializer of the projection biases; zeros by default.
      name: module name.
    """

    def __init__(
        self,
        num_heads: int,
        key_size: int,
        value_size: int | None = None,
        model_size: int | None = None,
        with_bias: bool = True,
        w_init: initializers.Initializer | None = None,
        b_init: initializers.Initializer | None = None,
        name: str | None = None,
    ):
        super().__init__(name=name)
        for arg, value, optional in [
            ("num_heads", num_heads, False),
            ("key_size", key_size, False),
            ("value_size", value_size, True),
            ("model_size", model_size, True),
        ]:
            if not (optional and value is None):
                utils.positive_int(self, value, arg)
        if not with_bias and b_init is not None:
            raise ValueError(f"{utils.describe(self)}: b_init given but with_bias=False")
        # NumPy integers are stored as ints: they would make the reshapes below NumPy-typed.
        num_heads, key_size = int(num_heads), int(key_size)
        self.num_heads = num_heads
        self.key_size = key_size
        self.value_size = key_size if value_size is None else int(value_size)
        self.model_size = None if model_size is None else int(model_size)
        self.with_bias = with_bias
        self.w_init = w_init
        self.b_init = b_init
        self._scale = 1.0 / math.sqrt(key_size)
        self.query_proj = self._linear(num_heads * key_size, "query")
        self.key_proj = self._linear(num_heads * key_size, "key")
        self.value_proj = self._linear(num_heads * self.value_size, "value")
        # `output_proj` is made by `_initialize`: its size may come from the first query.

    @once
    def _initialize(self, query: tf.Tensor) -> None:
        utils.check_rank(self, query, 3, what="query", layout="[batch, queries, features]")
        utils.check_floating(self, query, what="query")
        size = query.shape[-1]
        if size is None:
            raise ValueError(f"{utils.describe(self)}: the query's feature size must be known, got shape {query.shape}")
        self._dtype = tf.as_dtype(query.dtype)
        self._query_size = size
        self._key_size_in = None  # the key and value feature sizes, fixed by the first call with them
        self._value_size_in = None
        self.output_proj = self._linear(self.model_size or size, "output")

    def _linear(self, size: int, name: str) -> Linear:
        """A projection with the module's bias and initializer settings."""
        return Linear(size, self.with_bias, self.w_init, self.b_init, name=name)

    def __call__(
        self,
        query: tf.Tensor,
        key: tf.Tensor | None = None,
        value: tf.Tensor | None = None,
        key_mask: tf.Tensor | None = None,
    ) -> tf.Tensor:
        """Attends from each query to the keys and returns the projected mixture of values.

        Args:
          query: [batch, queries, features].
          key: [batch, keys, key_features]; `query` by default (self-attention).
          value: [batch, keys, value_features]; `key` by default.
          key_mask: optional bool [batch, keys]; True where a key may be attended to.

        Returns:
          [batch, queries, model_size].

        Raises:
          ValueError: on a wrong rank, mismatched batch or key counts, feature sizes
            other than the first call's, or a mask of the wrong shape.
          TypeError: on a dtype other than the first query's, or a non-bool mask.
        """
        key = query if key is None else key
        value = key if value is None else value
        weights = self._weights(query, key, key_mask, value)
        v = self._split_heads(self.value_proj(value), self.value_size)
        mixed = tf.matmul(weights, v)  # [batch, heads, queries, value_size]
        mixed = tf.transpose(mixed, [0, 2, 1, 3])
        mixed = tf.reshape(mixed, [*_leading_dims(mixed), self.num_heads * self.value_size])
        return self.output_proj(mixed)

    def attention_weights(
        self, query: tf.Tensor, key: tf.Tensor | None = None, key_mask: tf.Tensor | None = None
    ) -> tf.Tensor:
        """Returns the attention weights [batch, heads, queries, keys], sharing the variables.

        Arguments as in `__call__`. Each row sums to one over the unmasked keys, or is all
        zeros when every key is masked.
        """
        return self._weights(query, query if key is None else key, key_mask, None)

    def _weights(
        self, query: tf.Tensor, key: tf.Tensor, key_mask: tf.Tensor | None, value: tf.Tensor | None
    ) -> tf.Tensor:
        self._initialize(query)
        qs, ks = query.shape, key.shape
        # One cheap test on the hot path; `_check` explains any failure.
        suspect = (
            query.dtype is not self._dtype
            or key.dtype is not self._dtype
            or len(qs) != 3
            or len(ks) != 3
            or qs[0] != ks[0]
            or qs[-1] != self._query_size
            or ks[-1] != self._key_size_in
        )
        if value is not None:
            vs = value.shape
            suspect = (
                suspect
                or value.dtype is not self._dtype
                or len(vs) != 3
                or vs[0] != ks[0]
                or vs[1] != ks[1]
                or vs[-1] != self._value_size_in
            )
        if key_mask is not None:
            ms = key_mask.shape
            suspect = suspect or key_mask.dtype is not tf.bool or len(ms) != 2 or ms[0] != ks[0] or ms[1] != ks[1]
        if suspect:
            self._check(query, key, value, key_mask)
        q = self._split_heads(self.query_proj(query), self.key_size)
        k = self._split_heads(self.key_proj(key), self.key_size)
        # Scaling q (queries x key_size values) is cheaper than scaling the logits.
        logits = tf.matmul(q * self._scale, k, transpose_b=True)  # [batch, heads, queries, keys]
        if key_mask is None:
            return tf.nn.softmax(logits)
        mask = key_mask[:, None, None, :]
        # The lowest finite logit, not -inf: a row with every key masked then has a
        # finite uniform softmax (no inf - inf), which the final `where` zeroes; in any
        # other row exp(lowest - max) underflows to exactly zero.
        logits = tf.where(mask, logits, self._dtype.min)
        return tf.where(mask, tf.nn.softmax(logits), 0.0)

    def _split_heads(self, x: tf.Tensor, size: int) -> tf.Tensor:
        """[batch, time, heads * size] -> [batch, heads, time, size]."""
        return tf.transpose(tf.reshape(x, [*_leading_dims(x), self.num_heads, size]), [0, 2, 1, 3])

    def _check(self, query, key, value, key_mask) -> None:
        """Raises the detailed error for whatever failed the cheap test; records new sizes."""
        layout = "[batch, {}, features]"
        utils.check_rank(self, query, 3, what="query", layout=layout.format("queries"))
        utils.check_dtype(self, query, self._dtype, what="query tensors")
        utils.check_size(self, query, -1, self._query_size, what="query", meaning="feature size")
        batch = query.shape[0]
        named = [("key", key)] + ([("value", value)] if value is not None else [])
        for what, x in named:
            utils.check_rank(self, x, 3, what=what, layout=layout.format("keys"))
            utils.check_dtype(self, x, self._dtype, what=f"{what} tensors")
            if batch is not None:
                utils.check_size(self, x, 0, batch, what=what, meaning="batch size")
        if value is not None and key.shape[1] is not None:
            utils.check_size(self, value, 1, key.shape[1], what="value", meaning="key count")
        for what, x, attr in [("key", key, "_key_size_in"), ("value", value, "_value_size_in")]:
            if x is None or x.shape[-1] is None:
                continue
            known = getattr(self, attr)
            if known is None:
                setattr(self, attr, x.shape[-1])
            else:
                utils.check_size(self, x, -1, known, what=what, meaning="feature size")
        if key_mask is not None:
            if tf.as_dtype(key_mask.dtype) != tf.bool:
                raise TypeError(
                    f"{utils.describe(self)}: key_mask must be bool (True = may attend), "
                    f"got dtype {tf.as_dtype(key_mask.dtype).name}"
                )
            expected = tf.TensorShape([batch, key.shape[1]])
            mask_shape = tf.TensorShape(key_mask.shape)  # NumPy masks have tuple shapes
            if not mask_shape.is_compatible_with(expected):
                raise ValueError(
                    f"{utils.describe(self)}: expected key_mask of shape {expected} [batch, keys], "
                    f"got shape {mask_shape}"
                )
