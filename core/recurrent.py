"""Recurrent cores (LSTM, GRU, Conv2DLSTM, DeepRNN) and the functions that unroll them.

A core computes one time step, `outputs, next_state = core(inputs, prev_state)`, and
makes its first state with `core.initial_state(batch_size)`. `dynamic_unroll` and
`static_unroll` run a core over a time-major sequence [T, B, ...].

The arithmetic of each step is written with `tf.raw_ops` on purpose: the `tf.*` wrappers
add a few microseconds of Python each, which is a large share of an eager step of a
small RNN. Gradients and XLA support are those of the same ops. For the same reason,
shape arguments are kept as NumPy arrays: eager ops convert a Python list several
times more slowly.
"""

import abc
import collections
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from core import conv, initializers, utils
from core.module import Module, once

__all__ = [
    "RNNCore",
    "LSTMState",
    "LSTM",
    "GRU",
    "Conv2DLSTM",
    "DeepRNN",
    "deep_rnn_with_skip_connections",
    "deep_rnn_with_residual_connections",
    "dynamic_unroll",
    "static_unroll",
    "checkpointed_unroll",
]

_raw = tf.raw_ops
_LAYER_NORM_EPS = 1e-5

LSTMState = collections.namedtuple("LSTMState", ["hidden", "cell"])
LSTMState.__doc__ = "The state of an `LSTM` or `Conv2DLSTM`: the hidden state `h` and the cell `c`."


class _RNNCoreType(type(Module), abc.ABCMeta):
    """Module construction plus abstract-method checks."""


class RNNCore(Module, metaclass=_RNNCoreType):
    """Base class of recurrent cores: one time step of a recurrent network.

    Subclasses implement `__call__(inputs, prev_state) -> (outputs, next_state)`, where
    the inputs and outputs are (nests of) tensors [batch, ...] and `next_state` has the
    structure and shapes of `prev_state`, and `initial_state(batch_size)`.
    """

    @abc.abstractmethod
    def __call__(self, inputs: Any, prev_state: Any) -> tuple[Any, Any]:
        """Runs one step; returns `(outputs, next_state)`."""

    @abc.abstractmethod
    def initial_state(self, batch_size: int | tf.Tensor, **kwargs: Any) -> Any:
        """Returns the state before the first step, for `batch_size` sequences."""


# --- shared helpers -------------------------------------------------------------------


def _summary(value: Any) -> str:
    """Says what a bad state is, for errors: `a tuple of length 1: (tensor (2, 3))`."""

    def leaf(x):
        return f"tensor {tf.TensorShape(x.shape)}" if hasattr(x, "shape") else type(x).__name__

    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of length {len(value)}: ({', '.join(leaf(x) for x in value)})"
    if hasattr(value, "shape"):
        return f"a single {leaf(value)}"
    return "None" if value is None else f"a {type(value).__name__}"


def _floating_dtype(module: Module, dtype: Any) -> tf.DType:
    dtype = tf.as_dtype(dtype)
    if not dtype.is_floating:
        raise TypeError(f"{utils.describe(module)}: dtype must be floating point, got {dtype.name}")
    return dtype


def _check_dtype(module: Module, value: Any, dtype: tf.DType, what: str) -> None:
    """TypeError unless `value` has the core's dtype (set by its `dtype` argument)."""
    got = tf.as_dtype(value.dtype)
    if got != dtype:
        verb = "have" if what == "inputs" else "has"
        raise TypeError(
            f"{utils.describe(module)}: {what} {verb} dtype {got.name}, but the core was built with "
            f"dtype={dtype.name} (its parameters and initial_state use it); cast the {what} or "
            "pass another dtype to the constructor"
        )


def _check_state(module: Module, state: Any, inputs: Any, size: int, what: str) -> None:
    """ValueError unless `state` is [batch, size] with the batch size of `inputs`."""
    utils.check_rank(module, state, 2, what=what, layout="[batch, size]")
    utils.check_size(module, state, -1, size, what=what)
    _check_batch(module, state, inputs, what)


def _check_batch(module: Module, state: Any, inputs: Any, what: str) -> None:
    batch, state_batch = tf.TensorShape(inputs.shape)[0], tf.TensorShape(state.shape)[0]
    if batch is not None and state_batch is not None and batch != state_batch:
        raise ValueError(
            f"{utils.describe(module)}: {what} has batch size {state_batch} but the inputs have "
            f"{batch} (shapes {state.shape} and {inputs.shape}); make the state with "
            f"initial_state({batch})"
        )


def _vector_input_size(core: Module, inputs: tf.Tensor) -> int:
    """The input size of a core on [batch, input_size] inputs of its dtype, from the first call."""
    utils.check_rank(core, inputs, 2, layout="[batch, input_size]")
    _check_dtype(core, inputs, core._dtype, "inputs")
    input_size = inputs.shape[1]
    if input_size is None:
        raise ValueError(f"{utils.describe(core)}: the input size (axis 1) must be known, got shape {inputs.shape}")
    return input_size


def _unpack_state(core: Module, prev_state: Any) -> tuple[tf.Tensor, tf.Tensor]:
    """(hidden, cell) of an LSTM-like core's state, or the core's error for anything else."""
    try:
        hidden, cell = prev_state
    except (TypeError, ValueError):
        raise core._bad_state(prev_state) from None
    if not (hasattr(hidden, "shape") and hasattr(cell, "shape")):
        raise core._bad_state(prev_state)
    return hidden, cell


def _normalize(x: tf.Tensor, axis: int) -> tf.Tensor:
    """`(x - mean) / sqrt(variance + eps)`, the (biased) moments taken over `axis`."""
    mean = _raw.Mean(input=x, axis=axis, keep_dims=True)
    centred = _raw.Sub(x=x, y=mean)
    variance = _raw.Mean(input=_raw.Square(x=centred), axis=axis, keep_dims=True)
    return _raw.Mul(x=centred, y=_raw.Rsqrt(x=_raw.AddV2(x=variance, y=_LAYER_NORM_EPS)))


def _gate_bias(b_init: initializers.Initializer, size: int, forget_bias: float, dtype: tf.DType) -> tf.Tensor:
    """The initial [4 * size] bias of LSTM gates (i, f, g, o), `forget_bias` added to f."""
    b_i, b_f, b_g, b_o = tf.split(b_init([4 * size], dtype), 4)
    return tf.concat([b_i, b_f + tf.cast(forget_bias, dtype), b_g, b_o], axis=0)


def _lstm_cell(
    gates: tf.Tensor,
    cell: tf.Tensor,
    axis: int,
    cell_norm: Callable[[tf.Tensor], tf.Tensor] | None = None,
) -> tuple[tf.Tensor, tf.Tensor]:
    """The LSTM update from gate pre-activations ordered (i, f, g, o) along `axis`.

    Returns (h, c). `cell_norm`, if given, maps c to what enters the output tanh.
    """
    i, f, g, o = _raw.Split(axis=axis, value=gates, num_split=4)
    next_cell = _raw.AddV2(
        x=_raw.Mul(x=_raw.Sigmoid(x=f), y=cell),
        y=_raw.Mul(x=_raw.Sigmoid(x=i), y=_raw.Tanh(x=g)),
    )
    squashed = next_cell if cell_norm is None else cell_norm(next_cell)
    next_hidden = _raw.Mul(x=_raw.Sigmoid(x=o), y=_raw.Tanh(x=squashed))
    return next_hidden, next_cell


# --- LSTM -----------------------------------------------------------------------------


class LSTM(RNNCore):
    r"""Long short-term memory core (Hochreiter & Schmidhuber, 1997), optionally layer-normalised.

    With gates ordered (i, f, g, o) in the weights' columns, each step computes

        z   = x_t W_i + h_{t-1} W_h + b                  (z_i, z_f, z_g, z_o: hidden_size each)
        c_t = sigmoid(z_f) * c_{t-1} + sigmoid(z_i) * tanh(z_g)
        h_t = sigmoid(z_o) * tanh(c_t)

    and, with a projection (Sak et al., 2014, arXiv:1402.1128), h_t <- h_t P, which is both
    the output and the recurrent state. The outputs are h_t; the state is
    `LSTMState(hidden=h_t, cell=c_t)`. Numerics, variable names and shapes are those of
    Sonnet 2's `snt.LSTM`: `w_i` [input_size, 4 * hidden_size], `w_h` [hidden_size (or
    projection_size), 4 * hidden_size], `b` [4 * hidden_size], `projection`
    [hidden_size, projection_size].

    With `layer_norm=True` (used by the AlphaStar core), each gate's pre-activation is
    normalised over its own hidden units, and so is the new cell before the output tanh,
    as in the layer-normalised LSTM of Ba, Kiros & Hinton (2016, "Layer Normalization",
    arXiv:1607.06450):

        z   = x_t W_i + h_{t-1} W_h                      (no bias before normalising)
        u_k = gamma_k * LN(z_k) + b_k                    for each gate k in (i, f, g, o)
        c_t = sigmoid(u_f) * c_{t-1} + sigmoid(u_i) * tanh(u_g)
        h_t = sigmoid(u_o) * tanh(gamma_c * LN(c_t) + beta_c)

    where LN(v) = (v - mean(v)) / sqrt(var(v) + 1e-5), the mean and the (biased) variance
    taken over the hidden_size units of one example. The gains `gates_scale` (gamma_i..o,
    [4 * hidden_size]) and `cell_scale` (gamma_c, [hidden_size]) start at 1, the cell
    offset `cell_offset` (beta_c) at 0; the gate offsets are the ordinary bias `b`, which
    starts at `b_init` (zeros) plus `forget_bias` on the forget gate, as without
    normalisation. The state carries the unnormalised c_t. Ba et al. normalise the input
    and the recurrent contributions separately; normalising their sum, as here, needs one
    normalisation per gate instead of two and is the common variant.

    Args:
      hidden_size: size of the cell and, without projection, of the hidden state.
      projection_size: if set, the hidden state is projected to this size.
      projection_init: initializer of `projection`;
        `TruncatedNormal(stddev=1/sqrt(hidden_size))` by default. Only with
        `projection_size`.
      w_i_init: initializer of `w_i`; by default, as in Sonnet,
        `TruncatedNormal(stddev=1/sqrt(input_size))`, a normal cut at two standard
        deviations whose actual standard deviation is about 0.88/sqrt(input_size). The
        1/sqrt(fan_in) scale keeps the pre-activations' variance near the inputs' for
        independent zero-mean inputs (LeCun et al., 1998, "Efficient BackProp"); the
        truncation makes it about 0.77 times the inputs'.
      w_h_init: initializer of `w_h`; by default
        `TruncatedNormal(stddev=1/sqrt(hidden state size))`, for the same reason.
      b_init: initializer of `b`; zeros by default.
      forget_bias: added to the forget gate's bias at initialisation, so that the cell
        remembers by default early in training (Jozefowicz et al., 2015, "An Empirical
        Exploration of Recurrent Network Architectures").
      dtype: dtype of the parameters and of `initial_state`; inputs must have it.
      name: module name.
      layer_norm: normalise the gates and the cell as above. Not in Sonnet; keyword-only,
        so that every positional call Sonnet accepts means the same here.

    Raises:
      ValueError: for a non-positive size, or `projection_init` without `projection_size`.
      TypeError: for a non-floating `dtype`.
    """

    def __init__(
        self,
        hidden_size: int,
        projection_size: int | None = None,
        projection_init: initializers.Initializer | None = None,
        w_i_init: initializers.Initializer | None = None,
        w_h_init: initializers.Initializer | None = None,
        b_init: initializers.Initializer | None = None,
        forget_bias: float = 1.0,
        dtype: tf.DType = tf.float32,
        name: str | None = None,
        *,
        layer_norm: bool = False,
    ):
        super().__init__(name=name)
        self._hidden_size = utils.positive_int(self, hidden_size, "hidden_size")
        if projection_size is not None:
            projection_size = utils.positive_int(self, projection_size, "projection_size")
        elif projection_init is not None:
            raise ValueError(f"{utils.describe(self)}: projection_init given but projection_size is None")
        self._projection_size = projection_size
        self._state_size = projection_size or self._hidden_size
        self._projection_init = projection_init
        self._w_i_init = w_i_init
        self._w_h_init = w_h_init
        self._b_init = b_init or initializers.Zeros()
        self._forget_bias = float(forget_bias)
        self._dtype = _floating_dtype(self, dtype)
        self._layer_norm = bool(layer_norm)
        self._per_gate_shape = np.array([-1, 4, self._hidden_size], np.int32)
        self._gates_shape = np.array([-1, 4 * self._hidden_size], np.int32)

    @property
    def hidden_size(self) -> int:
        return self._hidden_size

    @property
    def input_to_hidden(self) -> tf.Variable:
        """`w_i`, the input-to-gates weights [input_size, 4 * hidden_size]."""
        return self._w_i

    @property
    def hidden_to_hidden(self) -> tf.Variable:
        """`w_h`, the hidden-to-gates weights [hidden state size, 4 * hidden_size]."""
        return self._w_h

    def initial_state(self, batch_size: int | tf.Tensor) -> LSTMState:
        """Zero hidden state and cell for `batch_size` sequences, in the core's dtype."""
        return LSTMState(
            hidden=tf.zeros([batch_size, self._state_size], self._dtype),
            cell=tf.zeros([batch_size, self._hidden_size], self._dtype),
        )

    @once
    def _initialize(self, inputs: tf.Tensor) -> None:
        self._input_size = input_size = _vector_input_size(self, inputs)
        dtype, hidden = self._dtype, self._hidden_size
        w_i_init = self._w_i_init or initializers.default_w_init(input_size)
        w_h_init = self._w_h_init or initializers.default_w_init(self._state_size)
        self._w_i = tf.Variable(w_i_init([input_size, 4 * hidden], dtype), name="w_i")
        self._w_h = tf.Variable(w_h_init([self._state_size, 4 * hidden], dtype), name="w_h")
        self.b = tf.Variable(_gate_bias(self._b_init, hidden, self._forget_bias, dtype), name="b")
        if self._projection_size is None:
            self.projection = None
        else:
            init = self._projection_init or initializers.default_w_init(hidden)
            self.projection = tf.Variable(init([hidden, self._projection_size], dtype), name="projection")
        if self._layer_norm:
            self.gates_scale = tf.Variable(tf.ones([4 * hidden], dtype), name="gates_scale")
            self.cell_scale = tf.Variable(tf.ones([hidden], dtype), name="cell_scale")
            self.cell_offset = tf.Variable(tf.zeros([hidden], dtype), name="cell_offset")

    def __call__(self, inputs: tf.Tensor, prev_state: LSTMState) -> tuple[tf.Tensor, LSTMState]:
        """One step on `inputs` [batch, input_size]; returns (h_t, LSTMState(h_t, c_t)).

        Raises:
          ValueError: for inputs that are not [batch, input_size], a state that is not a
            pair (hidden, cell), or one whose shape or batch size does not fit them.
          TypeError: for inputs or state of a dtype other than the core's.
        """
        self._initialize(inputs)
        hidden, cell = _unpack_state(self, prev_state)
        hs, cs = hidden.shape, cell.shape
        dtype, xs = self._dtype, inputs.shape
        # One cheap test on the hot path; the detailed checks run only when it fails.
        if (
            inputs.dtype is not dtype
            or hidden.dtype is not dtype
            or cell.dtype is not dtype
            or xs.rank != 2
            or hs.rank != 2
            or cs.rank != 2
            or xs[1] != self._input_size
            or hs[1] != self._state_size
            or cs[1] != self._hidden_size
            or hs[0] != xs[0]
            or cs[0] != xs[0]
        ):
            self._check(inputs, prev_state, hidden, cell)
        gates = _raw.AddV2(x=_raw.MatMul(a=inputs, b=self._w_i), y=_raw.MatMul(a=hidden, b=self._w_h))
        if self._layer_norm:
            next_hidden, next_cell = self._normalized_cell(gates, cell)
        else:
            next_hidden, next_cell = _lstm_cell(_raw.AddV2(x=gates, y=self.b), cell, axis=1)
        if self.projection is not None:
            next_hidden = _raw.MatMul(a=next_hidden, b=self.projection)
        return next_hidden, LSTMState(next_hidden, next_cell)

    def _normalized_cell(self, gates: tf.Tensor, cell: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """The cell update with layer-normalised gates and cell: (h_t before projection, c_t)."""
        per_gate = _raw.Reshape(tensor=gates, shape=self._per_gate_shape)
        gates = _raw.Reshape(tensor=_normalize(per_gate, axis=2), shape=self._gates_shape)
        gates = _raw.AddV2(x=_raw.Mul(x=gates, y=self.gates_scale), y=self.b)

        def cell_norm(c):
            return _raw.AddV2(x=_raw.Mul(x=_normalize(c, axis=1), y=self.cell_scale), y=self.cell_offset)

        return _lstm_cell(gates, cell, axis=1, cell_norm=cell_norm)

    def _bad_state(self, prev_state: Any) -> ValueError:
        return ValueError(
            f"{utils.describe(self)}: prev_state must be LSTMState(hidden=[batch, {self._state_size}], "
            f"cell=[batch, {self._hidden_size}]), as initial_state(batch_size) makes it; got "
            f"{_summary(prev_state)}"
        )

    def _check(self, inputs: tf.Tensor, prev_state: Any, hidden: tf.Tensor, cell: tf.Tensor) -> None:
        if not isinstance(prev_state, (tuple, list)):
            raise self._bad_state(prev_state)  # a tensor, split along its first axis
        _check_dtype(self, inputs, self._dtype, "inputs")
        _check_dtype(self, hidden, self._dtype, "prev_state.hidden")
        _check_dtype(self, cell, self._dtype, "prev_state.cell")
        utils.check_rank(self, inputs, 2, layout="[batch, input_size]")
        utils.check_size(self, inputs, 1, self._input_size, meaning="input size")
        _check_state(self, hidden, inputs, self._state_size, "prev_state.hidden")
        _check_state(self, cell, inputs, self._hidden_size, "prev_state.cell")


# --- GRU ------------------------------------------------------------------------------


class GRU(RNNCore):
    """Gated recurrent unit core (Cho et al., 2014; the form of Chung et al., 2014).

    With update gate z, reset gate r and candidate a (their weights' columns in that
    order), each step computes

        z_t = sigmoid(x_t W_iz + h_{t-1} W_hz + b_z)
        r_t = sigmoid(x_t W_ir + h_{t-1} W_hr + b_r)
        a_t = tanh(x_t W_ia + (r_t * h_{t-1}) W_ha + b_a)
        h_t = (1 - z_t) * h_{t-1} + z_t * a_t

    (the last line evaluated as h_{t-1} + z_t * (a_t - h_{t-1})); h_t is both the output and
    the state. Variables as Sonnet 2's `snt.GRU`: `w_i` [input_size, 3 * hidden_size],
    `w_h` [hidden_size, 3 * hidden_size], `b` [3 * hidden_size].

    Args:
      hidden_size: size of the hidden state.
      w_i_init: initializer of `w_i`; Glorot uniform (Glorot & Bengio, 2010) by default,
        as in Sonnet.
      w_h_init: initializer of `w_h`; Glorot uniform by default.
      b_init: initializer of `b`; zeros by default.
      dtype: dtype of the parameters and of `initial_state`; inputs must have it.
      name: module name.
    """

    def __init__(
        self,
        hidden_size: int,
        w_i_init: initializers.Initializer | None = None,
        w_h_init: initializers.Initializer | None = None,
        b_init: initializers.Initializer | None = None,
        dtype: tf.DType = tf.float32,
        name: str | None = None,
    ):
        super().__init__(name=name)
        self._hidden_size = utils.positive_int(self, hidden_size, "hidden_size")
        glorot_uniform = initializers.VarianceScaling(mode="fan_avg", distribution="uniform")
        self._w_i_init = w_i_init or glorot_uniform
        self._w_h_init = w_h_init or glorot_uniform
        self._b_init = b_init or initializers.Zeros()
        self._dtype = _floating_dtype(self, dtype)
        self._splits = np.array([2 * self._hidden_size, self._hidden_size], np.int32)

    @property
    def hidden_size(self) -> int:
        return self._hidden_size

    @property
    def input_to_hidden(self) -> tf.Variable:
        """`w_i` [input_size, 3 * hidden_size]."""
        return self._w_i

    @property
    def hidden_to_hidden(self) -> tf.Variable:
        """`w_h` [hidden_size, 3 * hidden_size]."""
        return self._w_h

    def initial_state(self, batch_size: int | tf.Tensor) -> tf.Tensor:
        """A zero state [batch_size, hidden_size] in the core's dtype."""
        return tf.zeros([batch_size, self._hidden_size], self._dtype)

    @once
    def _initialize(self, inputs: tf.Tensor) -> None:
        self._input_size = input_size = _vector_input_size(self, inputs)
        hidden, dtype = self._hidden_size, self._dtype
        self._w_i = tf.Variable(self._w_i_init([input_size, 3 * hidden], dtype), name="w_i")
        self._w_h = tf.Variable(self._w_h_init([hidden, 3 * hidden], dtype), name="w_h")
        self.b = tf.Variable(self._b_init([3 * hidden], dtype), name="b")

    def __call__(self, inputs: tf.Tensor, prev_state: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """One step on `inputs` [batch, input_size]; returns (h_t, h_t).

        Raises:
          ValueError: for inputs that are not [batch, input_size], or a state that is not
            one tensor [batch, hidden_size].
          TypeError: for inputs or state of a dtype other than the core's.
        """
        self._initialize(inputs)
        h = prev_state
        try:
            hs = h.shape
        except AttributeError:
            raise self._bad_state(prev_state) from None
        dtype, xs = self._dtype, inputs.shape
        if (
            inputs.dtype is not dtype
            or h.dtype is not dtype
            or xs.rank != 2
            or hs.rank != 2
            or xs[1] != self._input_size
            or hs[1] != self._hidden_size
            or hs[0] != xs[0]
        ):
            self._check(inputs, h)
        splits = self._splits
        zr_x, a_x = _raw.SplitV(value=_raw.MatMul(a=inputs, b=self._w_i), size_splits=splits, axis=1, num_split=2)
        w_zr, w_a = _raw.SplitV(value=self._w_h, size_splits=splits, axis=1, num_split=2)
        b_zr, b_a = _raw.SplitV(value=self.b, size_splits=splits, axis=0, num_split=2)
        zr = _raw.AddV2(x=_raw.AddV2(x=zr_x, y=_raw.MatMul(a=h, b=w_zr)), y=b_zr)
        z, r = _raw.Split(axis=1, value=_raw.Sigmoid(x=zr), num_split=2)
        a = _raw.AddV2(x=_raw.AddV2(x=a_x, y=_raw.MatMul(a=_raw.Mul(x=r, y=h), b=w_a)), y=b_a)
        next_h = _raw.AddV2(x=h, y=_raw.Mul(x=z, y=_raw.Sub(x=_raw.Tanh(x=a), y=h)))
        return next_h, next_h

    def _bad_state(self, prev_state: Any) -> ValueError:
        return ValueError(
            f"{utils.describe(self)}: prev_state must be one tensor [batch, {self._hidden_size}], as "
            f"initial_state(batch_size) makes it; got {_summary(prev_state)}"
        )

    def _check(self, inputs: tf.Tensor, h: tf.Tensor) -> None:
        _check_dtype(self, inputs, self._dtype, "inputs")
        _check_dtype(self, h, self._dtype, "prev_state")
        utils.check_rank(self, inputs, 2, layout="[batch, input_size]")
        utils.check_size(self, inputs, 1, self._input_size, meaning="input size")
        _check_state(self, h, inputs, self._hidden_size, "prev_state")


# --- Conv2DLSTM -----------------------------------------------------------------------


# Stride-1 "SAME" convolutions keep the state's spatial shape equal to the input's.
_CONV_OPTIONS = {fmt: {"strides": [1, 1, 1, 1], "padding": "SAME", "data_format": fmt} for fmt in ("NHWC", "NCHW")}


class _Kernel(Module):
    """Holds one convolution kernel `w`, named as Sonnet's `Conv2D` names its own."""

    def build(self, shape: list[int], init: initializers.Initializer, dtype: tf.DType) -> None:
        self.w = tf.Variable(init(shape, dtype), name="w")


class Conv2DLSTM(RNNCore):
    """Convolutional LSTM over 2-D feature maps (Shi et al., 2015, arXiv:1506.04214).

    The LSTM of `LSTM`, with the two matrix products replaced by stride-1 "SAME"
    convolutions, so the state keeps the inputs' spatial shape:

        z   = conv(x_t, W_i) + conv(h_{t-1}, W_h) + b    (channels ordered i, f, g, o)
        c_t = sigmoid(z_f) * c_{t-1} + sigmoid(z_i) * tanh(z_g)
        h_t = sigmoid(z_o) * tanh(c_t)

    Variables as Sonnet 2's `snt.Conv2DLSTM`: `input_to_hidden/w` [kh, kw, input_channels,
    4 * output_channels], `hidden_to_hidden/w` [kh, kw, output_channels, 4 *
    output_channels] and `b` [4 * output_channels]. Unlike Sonnet's, "NCHW" works
    (Sonnet's builds a wrong state shape and splits the wrong axis for it), on every
    device: where the device has no channels-first kernel, the convolutions run channels
    last between transposes (`core.conv.in_supported_layout`).

    Args:
      input_shape: shape of one input without the batch axis, (H, W, C) or (C, H, W)
        as `data_format` says.
      output_channels: channels of the hidden state and cell.
      kernel_shape: kernel size, an int or (kh, kw).
      data_format: "NHWC" or "NCHW".
      w_i_init: initializer of the input kernel; by default, as in Sonnet,
        `TruncatedNormal(stddev=1/sqrt(fan_in))` with fan_in = kh * kw * input_channels,
        whose actual standard deviation, the normal being cut at two standard
        deviations, is about 0.88/sqrt(fan_in). See `LSTM` for why 1/sqrt(fan_in)
        (LeCun et al., 1998, "Efficient BackProp").
      w_h_init: initializer of the hidden kernel; likewise, with fan_in =
        kh * kw * output_channels.
      b_init: initializer of `b`; zeros by default.
      forget_bias: added to the forget gate's bias at initialisation (Jozefowicz et
        al., 2015).
      dtype: dtype of the parameters and of `initial_state`; inputs must have it.
      name: module name.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        output_channels: int,
        kernel_shape: int | Sequence[int],
        data_format: str = "NHWC",
        w_i_init: initializers.Initializer | None = None,
        w_h_init: initializers.Initializer | None = None,
        b_init: initializers.Initializer | None = None,
        forget_bias: float = 1.0,
        dtype: tf.DType = tf.float32,
        name: str | None = None,
    ):
        super().__init__(name=name)
        if data_format not in ("NHWC", "NCHW"):
            raise ValueError(f"{utils.describe(self)}: data_format must be 'NHWC' or 'NCHW', got {data_format!r}")
        if isinstance(input_shape, np.ndarray):
            input_shape = input_shape.tolist()
        dims = list(input_shape) if isinstance(input_shape, (list, tuple, tf.TensorShape)) else None
        if dims is None or len(dims) != 3 or not all(utils.is_int(d) and d > 0 for d in dims):
            raise ValueError(
                f"{utils.describe(self)}: input_shape must be three positive ints (the input's shape "
                f"without the batch axis, {data_format[1:]}), got {input_shape!r}"
            )
        if isinstance(kernel_shape, np.ndarray):
            kernel_shape = kernel_shape.tolist()
        kernel = [kernel_shape] * 2 if utils.is_int(kernel_shape) else list(kernel_shape)
        if len(kernel) != 2 or not all(utils.is_int(k) and k > 0 for k in kernel):
            raise ValueError(
                f"{utils.describe(self)}: kernel_shape must be a positive int or two of them, got {kernel_shape!r}"
            )
        self._output_channels = utils.positive_int(self, output_channels, "output_channels")
        # TensorShapes, not tuples: tf.Module would wrap a tuple attribute for tracking.
        self._input_shape = tf.TensorShape([int(d) for d in dims])
        self._kernel = tf.TensorShape([int(k) for k in kernel])
        self._data_format = data_format
        self._channel_axis = 1 if data_format == "NCHW" else 3
        state_dims = list(dims)
        state_dims[self._channel_axis - 1] = self._output_channels
        self._state_dims = tf.TensorShape(state_dims)
        self._w_i_init = w_i_init
        self._w_h_init = w_h_init
        self._b_init = b_init or initializers.Zeros()
        self._forget_bias = float(forget_bias)
        self._dtype = _floating_dtype(self, dtype)
        self._input_to_hidden = _Kernel(name="input_to_hidden")
        self._hidden_to_hidden = _Kernel(name="hidden_to_hidden")

    @property
    def input_to_hidden(self) -> tf.Variable:
        return self._input_to_hidden.w

    @property
    def hidden_to_hidden(self) -> tf.Variable:
        return self._hidden_to_hidden.w

    def initial_state(self, batch_size: int | tf.Tensor) -> LSTMState:
        """Zero hidden state and cell [batch_size, *spatial, output_channels] (or NCHW)."""
        shape = [batch_size, *self._state_dims]
        return LSTMState(hidden=tf.zeros(shape, self._dtype), cell=tf.zeros(shape, self._dtype))

    @once
    def _initialize(self, inputs: tf.Tensor) -> None:
        nhwc = self._data_format == "NHWC"
        layout = "[batch, height, width, channels]" if nhwc else "[batch, channels, height, width]"
        utils.check_rank(self, inputs, 4, layout=layout)
        _check_dtype(self, inputs, self._dtype, "inputs")
        self._check_input_shape(inputs)
        dtype, out = self._dtype, self._output_channels
        in_channels = self._input_shape[self._channel_axis - 1]
        receptive = self._kernel[0] * self._kernel[1]
        w_i_init = self._w_i_init or initializers.default_w_init(receptive * in_channels)
        w_h_init = self._w_h_init or initializers.default_w_init(receptive * out)
        self._input_to_hidden.build([*self._kernel, in_channels, 4 * out], w_i_init, dtype)
        self._hidden_to_hidden.build([*self._kernel, out, 4 * out], w_h_init, dtype)
        self.b = tf.Variable(_gate_bias(self._b_init, out, self._forget_bias, dtype), name="b")

    def __call__(self, inputs: tf.Tensor, prev_state: LSTMState) -> tuple[tf.Tensor, LSTMState]:
        """One step on `inputs` [batch, *input_shape]; returns (h_t, LSTMState(h_t, c_t)).

        Raises:
          ValueError: for inputs not of shape [batch, *input_shape], a state that is not
            a pair (hidden, cell), or one that does not fit them.
          TypeError: for inputs or state of a dtype other than the core's.
        """
        self._initialize(inputs)
        hidden, cell = _unpack_state(self, prev_state)
        hs, cs = hidden.shape, cell.shape
        dtype, xs = self._dtype, inputs.shape
        if (
            inputs.dtype is not dtype
            or hidden.dtype is not dtype
            or cell.dtype is not dtype
            or xs[1:] != self._input_shape
            or hs[1:] != self._state_dims
            or cs[1:] != self._state_dims
            or hs[0] != xs[0]
            or cs[0] != xs[0]
        ):
            self._check(inputs, prev_state, hidden, cell)
        gates = conv.in_supported_layout(self._gates, (inputs, hidden), self._data_format)
        next_hidden, next_cell = _lstm_cell(gates, cell, axis=self._channel_axis)
        return next_hidden, LSTMState(next_hidden, next_cell)

    def _gates(self, inputs_and_hidden: tuple[tf.Tensor, tf.Tensor], fmt: str) -> tf.Tensor:
        """z of the docstring's equations, from inputs and hidden state laid out as `fmt`."""
        inputs, hidden = inputs_and_hidden
        from_inputs = _raw.Conv2D(input=inputs, filter=self._input_to_hidden.w, **_CONV_OPTIONS[fmt])
        from_hidden = _raw.Conv2D(input=hidden, filter=self._hidden_to_hidden.w, **_CONV_OPTIONS[fmt])
        return _raw.BiasAdd(value=_raw.AddV2(x=from_inputs, y=from_hidden), bias=self.b, data_format=fmt)

    def _check_input_shape(self, inputs: tf.Tensor) -> None:
        shape = tf.TensorShape(inputs.shape)
        if not shape[1:].is_compatible_with(self._input_shape):
            raise ValueError(
                f"{utils.describe(self)}: expected inputs of shape [batch, {', '.join(map(str, self._input_shape))}] "
                f"(input_shape, {self._data_format}), got shape {shape}"
            )

    def _bad_state(self, prev_state: Any) -> ValueError:
        dims = ", ".join(map(str, self._state_dims))
        return ValueError(
            f"{utils.describe(self)}: prev_state must be LSTMState(hidden=[batch, {dims}], "
            f"cell=[batch, {dims}]), as initial_state(batch_size) makes it; got {_summary(prev_state)}"
        )

    def _check(self, inputs: tf.Tensor, prev_state: Any, hidden: tf.Tensor, cell: tf.Tensor) -> None:
        if not isinstance(prev_state, (tuple, list)):
            raise self._bad_state(prev_state)  # a tensor, split along its first axis
        _check_dtype(self, inputs, self._dtype, "inputs")
        _check_dtype(self, hidden, self._dtype, "prev_state.hidden")
        _check_dtype(self, cell, self._dtype, "prev_state.cell")
        utils.check_rank(self, inputs, 4)
        self._check_input_shape(inputs)
        for state, what in ((hidden, "prev_state.hidden"), (cell, "prev_state.cell")):
            utils.check_rank(self, state, 4, what=what)
            shape = tf.TensorShape(state.shape)
            if not shape[1:].is_compatible_with(self._state_dims):
                raise ValueError(
                    f"{utils.describe(self)}: expected {what} of shape [batch, "
                    f"{', '.join(map(str, self._state_dims))}], got shape {shape}"
                )
            _check_batch(self, state, inputs, what)


# --- DeepRNN --------------------------------------------------------------------------


def _concat_last(*tensors: tf.Tensor) -> tf.Tensor:
    return tf.concat(tensors, axis=-1)


class _StackedRNN(RNNCore):
    """A chain of cores and plain callables, optionally with skip connections.

    The public faces are `DeepRNN` and `deep_rnn_with_skip_connections`.
    """

    def __init__(
        self,
        layers: Sequence[Callable[..., Any]],
        skip_connections: bool = False,
        concat_final_output: bool = True,
        name: str | None = None,
    ):
        super().__init__(name=name)
        layers = list(layers)
        if not all(callable(layer) for layer in layers):
            raise TypeError(f"{utils.describe(self)}: every layer must be an RNNCore or a callable, got {layers!r}")
        self._layers = layers
        self._is_core = tuple(isinstance(layer, RNNCore) for layer in layers)
        self._num_cores = sum(self._is_core)
        self._skip_connections = skip_connections
        self._concat_final_output = concat_final_output

    @property
    def layers(self) -> list[Callable[..., Any]]:
        return list(self._layers)

    def initial_state(self, batch_size: int | tf.Tensor, **kwargs: Any) -> tuple:
        """A tuple with the initial state of each core among the layers, in order."""
        cores = [layer for layer, is_core in zip(self._layers, self._is_core) if is_core]
        return tuple(layer.initial_state(batch_size, **kwargs) for layer in cores)

    def __call__(self, inputs: Any, prev_state: Sequence[Any]) -> tuple[Any, tuple]:
        """Runs the layers in order; returns (outputs, tuple of the cores' next states)."""
        if len(prev_state) != self._num_cores:
            raise ValueError(
                f"{utils.describe(self)}: prev_state must hold one state per recurrent core "
                f"({self._num_cores}), got {len(prev_state)}"
            )
        x = inputs
        next_states = []
        skip_outputs = []
        for index, (layer, is_core) in enumerate(zip(self._layers, self._is_core)):
            if self._skip_connections and index > 0:
                x = tf.nest.map_structure(_concat_last, inputs, x)
            if is_core:
                x, state = layer(x, prev_state[len(next_states)])
                next_states.append(state)
            else:
                x = layer(x)
            if self._skip_connections:
                skip_outputs.append(x)
        if self._skip_connections and self._concat_final_output:
            x = tf.nest.map_structure(_concat_last, *skip_outputs)
        return x, tuple(next_states)


class DeepRNN(_StackedRNN):
    """A chain of recurrent cores and plain callables, run as one core.

    The inputs pass through `layers` in order; each `RNNCore` among them takes its own
    part of the state. The state is a tuple with one entry per core (empty when no layer
    is a core); the outputs are the last layer's. As Sonnet 2's `snt.DeepRNN`.

    Args:
      layers: `RNNCore`s and callables (a `Linear`, `tf.nn.relu`, ...).
      name: module name.
    """

    def __init__(self, layers: Sequence[Callable[..., Any]], name: str | None = None):
        super().__init__(layers, skip_connections=False, name=name)


def deep_rnn_with_skip_connections(
    layers: Sequence[RNNCore],
    concat_final_output: bool = True,
    name: str = "deep_rnn_with_skip_connections",
) -> RNNCore:
    """A stack of cores where each core after the first also sees the stack's inputs.

    Layer i > 0 takes `concat([inputs, outputs of layer i - 1], -1)` (Graves, 2013,
    arXiv:1308.0850). The outputs are the concatenation of every layer's outputs, or
    only the last layer's with `concat_final_output=False`. As Sonnet 2's function.

    Raises:
      ValueError: if a layer is not an `RNNCore`.
    """
    if not all(isinstance(layer, RNNCore) for layer in layers):
        raise ValueError("deep_rnn_with_skip_connections needs every layer to be an RNNCore")
    return _StackedRNN(layers, skip_connections=True, concat_final_output=concat_final_output, name=name)


class _Residual(RNNCore):
    """A core whose outputs are its inputs plus the wrapped core's outputs."""

    def __init__(self, base_core: RNNCore):
        super().__init__(name=base_core.name + "_residual")
        self._base_core = base_core

    def __call__(self, inputs: Any, prev_state: Any) -> tuple[Any, Any]:
        outputs, next_state = self._base_core(inputs, prev_state)
        return tf.nest.map_structure(lambda i, o: _raw.AddV2(x=i, y=o), inputs, outputs), next_state

    def initial_state(self, batch_size: int | tf.Tensor, **kwargs: Any) -> Any:
        return self._base_core.initial_state(batch_size, **kwargs)


def deep_rnn_with_residual_connections(
    layers: Sequence[RNNCore],
    name: str = "deep_rnn_with_residual_connections",
) -> RNNCore:
    """A stack of cores, each adding its inputs to its outputs (a residual connection).

    Layer i's outputs are `inputs_i + core_i(inputs_i)`, and they are layer i + 1's
    inputs, so every core's output size must equal its input size. As Sonnet 2's
    function.

    Raises:
      ValueError: if a layer is not an `RNNCore`.
    """
    if not all(isinstance(layer, RNNCore) for layer in layers):
        raise ValueError("deep_rnn_with_residual_connections needs every layer to be an RNNCore")
    return _StackedRNN([_Residual(layer) for layer in layers], name=name)


# --- unrolling ------------------------------------------------------------------------


def _sequence(who: str, input_sequence: Any, static: bool = False) -> tuple[Any, list[tf.Tensor], int | None]:
    """`input_sequence` with its leaves as tensors, the flat list of them, and the number of
    time steps (None when unknown; an error when `static` and unknown)."""
    flat_inputs = [tf.convert_to_tensor(x) for x in tf.nest.flatten(input_sequence)]
    if flat_inputs and not isinstance(input_sequence, tf.Tensor):
        input_sequence = tf.nest.pack_sequence_as(input_sequence, flat_inputs)
    num_steps = _num_steps(who, flat_inputs)
    if static and num_steps is None:
        raise ValueError(f"{who}: the number of time steps (axis 0 of input_sequence) must be known statically")
    return input_sequence, flat_inputs, num_steps


def _num_steps(who: str, flat_inputs: list[tf.Tensor]) -> int | None:
    """The static number of time steps shared by `flat_inputs` (None when unknown)."""
    if not flat_inputs:
        raise ValueError(f"{who}: input_sequence is empty; it needs at least one tensor [T, B, ...]")
    known = set()
    for x in flat_inputs:
        shape = x.shape
        if shape.rank is not None and shape.rank < 2:
            raise ValueError(f"{who}: every input_sequence tensor must be [T, B, ...] (rank >= 2), got shape {shape}")
        if shape.rank is not None and shape[0] is not None:
            known.add(shape[0])
    if len(known) > 1:
        raise ValueError(f"{who}: the input_sequence tensors disagree on the number of time steps: {sorted(known)}")
    steps = known.pop() if known else None
    if steps == 0:
        raise ValueError(f"{who}: input_sequence must have at least one time step, got 0")
    return steps


def _lengths(who: str, sequence_length: Any, flat_inputs: list[tf.Tensor]) -> tf.Tensor | None:
    if sequence_length is None:
        return None
    lengths = tf.convert_to_tensor(sequence_length)
    if not lengths.dtype.is_integer:
        raise TypeError(f"{who}: sequence_length must be integers, got dtype {lengths.dtype.name}")
    batch = flat_inputs[0].shape[1]
    if lengths.shape.rank != 1 or (batch is not None and lengths.shape[0] not in (None, batch)):
        raise ValueError(f"{who}: sequence_length must have shape [batch] = [{batch}], got shape {lengths.shape}")
    return tf.cast(lengths, tf.int32)


def _keep_done(done: tf.Tensor, old: tf.Tensor, new: tf.Tensor) -> tf.Tensor:
    """`old` for the sequences that are `done` [B], `new` for the others.

    A scalar has no batch axis to select on, so it takes the new value (as Sonnet and
    `tf.nn` RNNs do).
    """
    if new.shape.rank == 0:
        return new
    return _raw.Select(condition=done, x=old, y=new)


def _hold(done: tf.Tensor, old: Any, new: Any) -> Any:
    """`_keep_done` over matching nests (leaner than `tf.nest.map_structure` eagerly)."""
    if isinstance(new, tf.Tensor):
        return _keep_done(done, old, new)
    flat_old, flat_new = tf.nest.flatten(old), tf.nest.flatten(new)
    if len(flat_old) != len(flat_new):
        raise ValueError(f"the core's next state or outputs do not match the previous ones: {new} vs {old}")
    return tf.nest.pack_sequence_as(new, [_keep_done(done, o, n) for o, n in zip(flat_old, flat_new)])


def _masked_step(core, step_input, state, prev_outputs, done):
    """One core step; finished sequences keep their previous outputs and state."""
    outputs, next_state = core(step_input, state)
    if done is None:
        return outputs, next_state
    if prev_outputs is None:
        prev_outputs = tf.nest.map_structure(tf.zeros_like, outputs)
    return _hold(done, prev_outputs, outputs), _hold(done, state, next_state)


def _stack_steps(per_step: list[Any]) -> Any:
    first = per_step[0]
    if isinstance(first, tf.Tensor):
        return _raw.Pack(values=per_step, axis=0)
    flat = [tf.nest.flatten(o) for o in per_step]
    return tf.nest.pack_sequence_as(first, [_raw.Pack(values=list(leaves), axis=0) for leaves in zip(*flat)])


def _python_unroll(core, input_sequence, initial_state, lengths, num_steps):
    """The unroll as a Python loop: eager execution, or a static unroll in a graph."""
    if isinstance(input_sequence, tf.Tensor):
        step_inputs = _raw.Unpack(value=input_sequence, num=num_steps, axis=0)
    else:
        per_leaf = [_raw.Unpack(value=x, num=num_steps, axis=0) for x in tf.nest.flatten(input_sequence)]
        step_inputs = [tf.nest.pack_sequence_as(input_sequence, list(leaves)) for leaves in zip(*per_leaf)]
    if lengths is None:
        done = [None] * num_steps
    else:
        # All the "finished" flags [T, B] at once, rather than a comparison per step.
        steps = _raw.ExpandDims(input=tf.range(num_steps), axis=1)
        done = _raw.Unpack(value=_raw.GreaterEqual(x=steps, y=lengths), num=num_steps, axis=0)
    state, outputs, per_step = initial_state, None, []
    for t in range(num_steps):
        outputs, state = _masked_step(core, step_inputs[t], state, outputs, done[t])
        per_step.append(outputs)
    return _stack_steps(per_step), state


def _while_unroll(core, input_sequence, initial_state, lengths, num_steps, parallel_iterations, swap_memory):
    """The unroll as one `tf.while_loop`, reading and writing `TensorArray`s."""
    flat_inputs = tf.nest.flatten(input_sequence)
    size = num_steps if num_steps is not None else tf.shape(flat_inputs[0])[0]
    # Reading a TensorArray keeps the backward pass O(step size) per step, where slicing
    # the sequence would make each step's gradient as large as the whole sequence.
    input_tas = [tf.TensorArray(x.dtype, size=size, element_shape=x.shape[1:]).unstack(x) for x in flat_inputs]

    def step(t, state, prev_outputs):
        step_input = tf.nest.pack_sequence_as(input_sequence, [ta.read(t) for ta in input_tas])
        done = None if lengths is None else t >= lengths
        return _masked_step(core, step_input, state, prev_outputs, done)

    # The first step runs outside the loop: it fixes the outputs' structure and shapes,
    # and a core creating its variables does so outside the loop body.
    outputs, state = step(0, initial_state, None)
    flat_outputs = tf.nest.flatten(outputs)
    output_tas = [tf.TensorArray(o.dtype, size=size, element_shape=o.shape).write(0, o) for o in flat_outputs]
    carry = flat_outputs if lengths is not None else []

    def body(t, state, carried, tas):
        prev = tf.nest.pack_sequence_as(outputs, carried) if lengths is not None else None
        new_outputs, new_state = step(t, state, prev)
        flat = tf.nest.flatten(new_outputs)
        tas = [ta.write(t, o) for ta, o in zip(tas, flat)]
        return t + 1, new_state, flat if lengths is not None else [], tas

    _, state, _, output_tas = tf.while_loop(
        lambda t, *_: t < size,
        body,
        (tf.constant(1), state, carry, output_tas),
        parallel_iterations=parallel_iterations,
        swap_memory=swap_memory,
        maximum_iterations=size - 1,
    )
    return tf.nest.pack_sequence_as(outputs, [ta.stack() for ta in output_tas]), state


@tf.autograph.experimental.do_not_convert
def dynamic_unroll(
    core: Callable[[Any, Any], tuple[Any, Any]],
    input_sequence: Any,
    initial_state: Any,
    sequence_length: Any = None,
    parallel_iterations: int = 1,
    swap_memory: bool = False,
) -> tuple[Any, Any]:
    """Runs `core` over a time-major sequence, as a loop that stays a loop in graphs.

    Inside `tf.function` the steps become one `tf.while_loop` (the core is traced twice:
    once for the first step, which fixes the outputs' structure, and once as the loop
    body), so the core must not branch in Python on tensor values. Eagerly it is a Python
    loop. As Sonnet 2's `snt.dynamic_unroll`.

    With `sequence_length`, a sequence b is finished at steps t >= sequence_length[b]:
    from then on its state stays that of its last step and its outputs repeat its last
    step's outputs (zeros if its length is 0), as in Sonnet. Scalar state or outputs,
    having no batch axis, are not held.

    Args:
      core: an `RNNCore`, or any callable `(inputs, state) -> (outputs, next_state)`.
      input_sequence: a (nest of) tensor(s) [T, B, ...], all with the same T > 0.
      initial_state: the state before the first step (`core.initial_state(B)`).
      sequence_length: optional integer tensor [B], the length of each sequence.
      parallel_iterations: passed to `tf.while_loop` in graphs.
      swap_memory: passed to `tf.while_loop` in graphs (saves GPU memory).

    Returns:
      `(output_sequence, final_state)`: the outputs stacked on a new leading time axis,
      and the state after the last step.

    Raises:
      ValueError: for an empty `input_sequence`, zero steps, inputs that disagree on T,
        or a `sequence_length` that is not [B].
      TypeError: for a non-integer `sequence_length`.
    """
    input_sequence, flat_inputs, num_steps = _sequence("dynamic_unroll", input_sequence)
    lengths = _lengths("dynamic_unroll", sequence_length, flat_inputs)
    if tf.executing_eagerly():
        return _python_unroll(core, input_sequence, initial_state, lengths, num_steps)
    return _while_unroll(core, input_sequence, initial_state, lengths, num_steps, parallel_iterations, swap_memory)


def static_unroll(
    core: Callable[[Any, Any], tuple[Any, Any]],
    input_sequence: Any,
    initial_state: Any,
    sequence_length: Any = None,
) -> tuple[Any, Any]:
    """Runs `core` over a time-major sequence as a Python loop, repeating the step in graphs.

    Same arguments, results and `sequence_length` semantics as `dynamic_unroll` (less
    the loop options); inside `tf.function` the graph holds one copy of the core per
    step, which lets the compiler fuse across steps but grows with T. As Sonnet 2's
    `snt.static_unroll`.

    Raises:
      ValueError: as `dynamic_unroll`, and when T is not known statically.
    """
    input_sequence, flat_inputs, num_steps = _sequence("static_unroll", input_sequence, static=True)
    lengths = _lengths("static_unroll", sequence_length, flat_inputs)
    return _python_unroll(core, input_sequence, initial_state, lengths, num_steps)


def checkpointed_unroll(
    core: Callable[[Any, Any], tuple[Any, Any]],
    input_sequence: Any,
    initial_state: Any,
    chunk_size: int,
) -> tuple[Any, Any]:
    """`dynamic_unroll` that stores less for the backward pass by recomputing it.

    The sequence is cut into chunks of `chunk_size` steps. The forward pass keeps only
    the state at each chunk boundary; the backward pass reruns each chunk's forward
    pass (`tf.recompute_grad`) to get the activations it needs. Activation memory falls
    from about T steps' worth to T / chunk_size states plus one chunk's activations
    (least near chunk_size = sqrt(T)), for about one more forward pass of compute
    (Chen et al., 2016, "Training Deep Nets with Sublinear Memory Cost",
    arXiv:1604.06174). Values and gradients equal `dynamic_unroll`'s. No
    `sequence_length`: mask the loss instead.

    Args:
      core: an `RNNCore` or callable `(inputs, state) -> (outputs, next_state)`.
      input_sequence: a (nest of) tensor(s) [T, B, ...]; T must be known statically.
      initial_state: the state before the first step.
      chunk_size: steps per recomputed chunk, >= 1.

    Returns:
      `(output_sequence, final_state)`, as `dynamic_unroll`.

    Raises:
      ValueError: for a bad `chunk_size`, or T unknown statically.
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"checkpointed_unroll: chunk_size must be a positive int, got {chunk_size!r}")
    input_sequence, flat_inputs, num_steps = _sequence("checkpointed_unroll", input_sequence, static=True)
    num_inputs = len(flat_inputs)
    state, chunks, seen = initial_state, [], {}
    for start in range(0, num_steps, chunk_size):
        structure = state

        # `tf.recompute_grad` takes and returns flat lists of tensors.
        @tf.recompute_grad
        def run_chunk(*flat):
            inputs = tf.nest.pack_sequence_as(input_sequence, list(flat[:num_inputs]))
            # Called in the iteration that defines it, so the loop variable is the right one.
            initial = tf.nest.pack_sequence_as(structure, list(flat[num_inputs:]))  # noqa: B023
            outputs, final = dynamic_unroll(core, inputs, initial)
            seen["outputs"] = outputs  # the outputs' nesting, to rebuild it below
            return [*tf.nest.flatten(outputs), *tf.nest.flatten(final)]

        chunk_inputs = [x[start : start + chunk_size] for x in flat_inputs]
        flat = run_chunk(*chunk_inputs, *tf.nest.flatten(state))
        num_outputs = len(flat) - len(tf.nest.flatten(state))
        chunks.append(flat[:num_outputs])
        state = tf.nest.pack_sequence_as(state, flat[num_outputs:])
    outputs = [tf.concat(parts, axis=0) for parts in zip(*chunks)]
    return tf.nest.pack_sequence_as(seen["outputs"], outputs), state
