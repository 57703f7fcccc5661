"""Linear: an affine map of the last axis."""

import tensorflow as tf

from core import initializers, utils
from core.module import Module, once


class Linear(Module):
    """`outputs = inputs @ w + b` over the last axis; leading axes are batch axes.

    The parameters take the dtype of the first inputs, floating point or, as in Sonnet,
    integer (the product then runs in integers, which TensorFlow's CPU kernels do; GPU
    kernels do not). Integer inputs need integer-valued initializers, such as
    `initializers.Constant`: the default draws floats.

    Args:
      output_size: size of the output's last axis (a Python or NumPy integer).
      with_bias: whether to add the bias `b`.
      w_init: initializer of `w` [input_size, output_size];
        `initializers.default_w_init(input_size)` (Sonnet's) by default.
      b_init: initializer of `b` [output_size]; zeros by default.
      name: module name.
    """

    def __init__(
        self,
        output_size: int,
        with_bias: bool = True,
        w_init: initializers.Initializer | None = None,
        b_init: initializers.Initializer | None = None,
        name: str | None = None,
    ):
        super().__init__(name=name)
        output_size = utils.positive_int(self, output_size, "output_size")
        if not with_bias and b_init is not None:
            raise ValueError(f"{utils.describe(self)}: b_init given but with_bias=False")
        self.output_size = output_size
        self.with_bias = with_bias
        self.w_init = w_init
        self.b_init = b_init

    @once
    def _initialize(self, inputs: tf.Tensor) -> None:
        utils.check_min_rank(self, inputs, 2, layout="[batch..., input_size]")
        dtype = tf.as_dtype(inputs.dtype)
        if not (dtype.is_floating or dtype.is_integer):
            raise TypeError(f"{utils.describe(self)}: inputs must be floating point or integer, got dtype {dtype.name}")
        if dtype.is_integer and self.w_init is None:
            raise TypeError(
                f"{utils.describe(self)}: integer inputs ({dtype.name}) need an integer-valued w_init, such as "
                "initializers.Constant; the default draws floats"
            )
        input_size = inputs.shape[-1]
        if input_size is None:
            raise ValueError(
                f"{utils.describe(self)}: the input size (last axis) must be known, got shape {inputs.shape}"
            )
        self.input_size = input_size
        w_init = self.w_init or initializers.default_w_init(input_size)
        self.w = tf.Variable(w_init([input_size, self.output_size], dtype), name="w")
        if self.with_bias:
            b_init = self.b_init or initializers.Zeros()
            self.b = tf.Variable(b_init([self.output_size], dtype), name="b")

    def __call__(self, inputs: tf.Tensor) -> tf.Tensor:
        """Applies the map to `inputs` [batch..., input_size]; returns [batch..., output_size]."""
        self._initialize(inputs)
        shape = inputs.shape
        # One cheap test on the hot path; the detailed checks run only when it fails.
        if inputs.dtype is not self.w.dtype or (shape.rank or 0) < 2 or shape[-1] != self.input_size:
            self._check(inputs)
        # The raw ops are the kernels `tf.matmul` and `tf.add` run, without their Python
        # wrappers, which cost more than the arithmetic itself on small eager batches.
        if len(shape) == 2:
            outputs = tf.raw_ops.MatMul(a=inputs, b=self.w)
        else:
            outputs = tf.matmul(inputs, self.w)  # broadcasts w over the leading axes
        if self.with_bias:
            outputs = tf.raw_ops.AddV2(x=outputs, y=self.b)
        return outputs

    def _check(self, inputs: tf.Tensor) -> None:
        utils.check_dtype(self, inputs, self.w.dtype)
        utils.check_min_rank(self, inputs, 2, layout="[batch..., input_size]")
        utils.check_size(self, inputs, -1, self.input_size, meaning="input size")
