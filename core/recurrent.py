"""Recurrent cores (LSTM, GRU, convolutional LSTMs, DeepRNN) and the functions that unroll them.

A core computes one time step, `outputs, next_state = core(inputs, prev_state)`, and
makes its first state with `core.initial_state(batch_size)`. `dynamic_unroll` and
`static_unroll` run a core over a time-major sequence [T, B, ...].

The gated cores split a step in two: `_project`, the part that depends on the inputs
alone (x_t W_i + b), and `_recur`, the rest. An unroll that has the whole sequence
projects every step in one product before its loop, and in graphs also takes the
recurrent weights' gradients out of the loop (`_fast_recurrence`).
"""

import abc
import collections
from collections.abc import Callable, Sequence
from typing import Any

import tensorflow as tf

from core import conv, initializers, utils
from core.module import Module, once

__all__ = [
    "RNNCore",
    "LSTMState",
    "LSTM",
    "GRU",
    "Conv1DLSTM",
    "Conv2DLSTM",
    "Conv3DLSTM",
    "DeepRNN",
    "deep_rnn_with_skip_connections",
    "deep_rnn_with_residual_connections",
    "dynamic_unroll",
    "static_unroll",
    "checkpointed_unroll",
]

_LAYER_NORM_EPS = 1e-5

LSTMState = collections.namedtuple("LSTMState", ["hidden", "cell"])
LSTMState.__doc__ = "The state of an `LSTM` or a convolutional LSTM: the hidden state `h` and the cell `c`."


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


# --- the cells' maths ------------------------------------------------------------------


def _lstm_update(
    gates: tf.Tensor,
    prev_cell: tf.Tensor,
    axis: int = -1,
    normalize_cell: Callable[[tf.Tensor], tf.Tensor] | None = None,
) -> tuple[tf.Tensor, tf.Tensor]:
    """The LSTM's new hidden state and cell from gate pre-activations (i, f, g, o) along `axis`.

    c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g)
    h_t = sigmoid(o) * tanh(c_t)           (tanh(normalize_cell(c_t)) when given)
    """
    i, f, g, o = tf.split(gates, 4, axis=axis)
    cell = tf.sigmoid(f) * prev_cell + tf.sigmoid(i) * tf.tanh(g)
    squashed = cell if normalize_cell is None else normalize_cell(cell)
    return tf.sigmoid(o) * tf.tanh(squashed), cell


def _layer_norm(x: tf.Tensor, axis: int) -> tf.Tensor:
    """`(x - mean) / sqrt(variance + eps)`, the (biased) moments taken over `axis`."""
    centred = x - tf.reduce_mean(x, axis, keepdims=True)
    return centred * tf.math.rsqrt(tf.reduce_mean(tf.square(centred), axis, keepdims=True) + _LAYER_NORM_EPS)


def _gate_bias(b_init: initializers.Initializer, size: int, forget_bias: float, dtype: tf.DType) -> tf.Tensor:
    """The initial [4 * size] bias of LSTM gates (i, f, g, o), `forget_bias` added to f."""
    b_i, b_f, b_g, b_o = tf.split(b_init([4 * size], dtype), 4)
    return tf.concat([b_i, b_f + tf.cast(forget_bias, dtype), b_g, b_o], axis=0)


def _linear(a: tf.Tensor, w: Any) -> tf.Tensor:
    """`a @ w` for a weight matrix `w`, or `w(a)` for a linear module (a convolution)."""
    return w(a) if callable(w) else tf.matmul(a, w)


# --- checks shared by the cores --------------------------------------------------------


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


def _check_batch(module: Module, state: Any, inputs: Any, what: str) -> None:
    batch, state_batch = tf.TensorShape(inputs.shape)[0], tf.TensorShape(state.shape)[0]
    if batch is not None and state_batch is not None and batch != state_batch:
        raise ValueError(
            f"{utils.describe(module)}: {what} has batch size {state_batch} but the inputs have "
            f"{batch} (shapes {state.shape} and {inputs.shape}); make the state with "
            f"initial_state({batch})"
        )


def _check_vector_state(module: Module, state: Any, inputs: Any, size: int, what: str) -> None:
    """ValueError unless `state` is [batch, size] with the batch size of `inputs`."""
    utils.check_rank(module, state, 2, what=what, layout="[batch, size]")
    utils.check_size(module, state, -1, size, what=what)
    _check_batch(module, state, inputs, what)


def _vector_input_size(core: Module, inputs: tf.Tensor) -> int:
    """The input size of a core on [batch, input_size] inputs of its dtype, from the first call."""
    utils.check_rank(core, inputs, 2, layout="[batch, input_size]")
    _check_dtype(core, inputs, core._dtype, "inputs")
    input_size = inputs.shape[1]
    if input_size is None:
        raise ValueError(f"{utils.describe(core)}: the input size (axis 1) must be known, got shape {inputs.shape}")
    return input_size


def _pair(core: Module, prev_state: Any) -> tuple[Any, Any]:
    """(hidden, cell) of an LSTM-like core's state, or the core's error for anything else."""
    if not isinstance(prev_state, (tuple, list)) or len(prev_state) != 2:
        raise core._bad_state(prev_state)  # a [2, n] tensor would otherwise be split into two rows
    hidden, cell = prev_state
    if not (hasattr(hidden, "shape") and hasattr(cell, "shape")):
        raise core._bad_state(prev_state)
    return hidden, cell


def _signature(inputs: Any, prev_state: Any) -> tuple | None:
    """The dtypes and shapes of a call's inputs and state (None if they are not all tensors)."""
    leaves = prev_state if isinstance(prev_state, tuple) else (prev_state,)
    try:
        return (inputs.dtype, inputs.shape, *[(s.dtype, s.shape) for s in leaves])
    except AttributeError:
        return None


class _ProjectedCore(RNNCore):
    """Shared body of the gated cores, whose step is `_recur(_project(inputs), prev_state)`.

    `_project(x)` is the part of a step that depends on the inputs alone (x W_i + b), for
    any number of examples, so that an unroll can project every step in one product.
    `_recur(projected, prev_state, linear)` is the rest; it applies each map linear in
    (a function of) the state as `linear(a, w)`: `a @ w` for a weight matrix, `w(a)` for
    a linear module such as a convolution. `_fast_recurrence` passes its own `linear`,
    to record and replay them.

    Subclasses define those two, `_initialize` (the variables, from the first inputs) and
    `_check` (every check of the inputs and state, raising the core's errors).
    """

    def __init__(self, name: str | None = None):
        super().__init__(name=name)
        self._seen = set()

    def __call__(self, inputs: tf.Tensor, prev_state: Any) -> tuple[tf.Tensor, Any]:
        """One step; returns `(outputs, next_state)`.

        Raises:
          ValueError: for inputs of the wrong rank or size, or a state whose structure,
            shapes or batch size do not fit the core and the inputs.
          TypeError: for inputs or state of a dtype other than the core's.
        """
        self._prepare(inputs, prev_state)
        return self._recur(self._project(inputs), prev_state)

    def _prepare(self, inputs: tf.Tensor, prev_state: Any) -> None:
        """Makes the variables on the first call; checks in full a signature not seen before."""
        self._initialize(inputs)
        signature = _signature(inputs, prev_state)
        if signature is None or signature not in self._seen:
            self._check(inputs, prev_state)
            if signature is not None:
                if len(self._seen) > 64:  # batch sizes that keep changing
                    self._seen.clear()
                self._seen.add(signature)


# --- LSTM -----------------------------------------------------------------------------


class LSTM(_ProjectedCore):
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
      projection_init: initializer of `projection`; `initializers.default_w_init` by
        default. Only with `projection_size`.
      w_i_init: initializer of `w_i`; `initializers.default_w_init` (Sonnet's) by default.
      w_h_init: initializer of `w_h`; likewise.
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

    def _project(self, inputs: tf.Tensor) -> tf.Tensor:
        # With layer norm the bias comes after the normalisation, in `_recur`.
        projected = tf.matmul(inputs, self._w_i)
        return projected if self._layer_norm else projected + self.b

    def _recur(self, projected: tf.Tensor, prev_state: LSTMState, linear=_linear) -> tuple[tf.Tensor, LSTMState]:
        hidden, cell = prev_state
        gates = projected + linear(hidden, self._w_h)
        if self._layer_norm:
            hidden, cell = _lstm_update(self._normalize_gates(gates), cell, normalize_cell=self._normalize_cell)
        else:
            hidden, cell = _lstm_update(gates, cell)
        if self.projection is not None:
            hidden = linear(hidden, self.projection)
        return hidden, LSTMState(hidden, cell)

    def _normalize_gates(self, gates: tf.Tensor) -> tf.Tensor:
        per_gate = tf.reshape(gates, [-1, 4, self._hidden_size])
        normalized = tf.reshape(_layer_norm(per_gate, axis=2), [-1, 4 * self._hidden_size])
        return normalized * self.gates_scale + self.b

    def _normalize_cell(self, cell: tf.Tensor) -> tf.Tensor:
        return _layer_norm(cell, axis=1) * self.cell_scale + self.cell_offset

    def _bad_state(self, prev_state: Any) -> ValueError:
        return ValueError(
            f"{utils.describe(self)}: prev_state must be LSTMState(hidden=[batch, {self._state_size}], "
            f"cell=[batch, {self._hidden_size}]), as initial_state(batch_size) makes it; got "
            f"{_summary(prev_state)}"
        )

    def _check(self, inputs: tf.Tensor, prev_state: Any) -> None:
        hidden, cell = _pair(self, prev_state)
        _check_dtype(self, inputs, self._dtype, "inputs")
        _check_dtype(self, hidden, self._dtype, "prev_state.hidden")
        _check_dtype(self, cell, self._dtype, "prev_state.cell")
        utils.check_rank(self, inputs, 2, layout="[batch, input_size]")
        utils.check_size(self, inputs, 1, self._input_size, meaning="input size")
        _check_vector_state(self, hidden, inputs, self._state_size, "prev_state.hidden")
        _check_vector_state(self, cell, inputs, self._hidden_size, "prev_state.cell")


# --- GRU ------------------------------------------------------------------------------


class GRU(_ProjectedCore):
    """Gated recurrent unit core (Cho et al., 2014; the form of Chung et al., 2014).

    With update gate z, reset gate r and candidate a (their weights' columns in that
    order), each step computes

        z_t = sigmoid(x_t W_iz + h_{t-1} W_hz + b_z)
        r_t = sigmoid(x_t W_ir + h_{t-1} W_hr + b_r)
        a_t = tanh(x_t W_ia + (r_t * h_{t-1}) W_ha + b_a)
        h_t = (1 - z_t) * h_{t-1} + z_t * a_t

    h_t is both the output and the state. Variables as Sonnet 2's `snt.GRU`: `w_i`
    [input_size, 3 * hidden_size], `w_h` [hidden_size, 3 * hidden_size], `b`
    [3 * hidden_size].

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

    def _project(self, inputs: tf.Tensor) -> tf.Tensor:
        return tf.matmul(inputs, self._w_i) + self.b

    def _recur(self, projected: tf.Tensor, prev_state: tf.Tensor, linear=_linear) -> tuple[tf.Tensor, tf.Tensor]:
        h = prev_state
        zr_x, a_x = tf.split(projected, [2 * self._hidden_size, self._hidden_size], axis=1)
        w_zr, w_a = tf.split(self._w_h, [2 * self._hidden_size, self._hidden_size], axis=1)
        z, r = tf.split(tf.sigmoid(zr_x + linear(h, w_zr)), 2, axis=1)
        a = tf.tanh(a_x + linear(r * h, w_a))
        next_h = (1 - z) * h + z * a
        return next_h, next_h

    def _bad_state(self, prev_state: Any) -> ValueError:
        return ValueError(
            f"{utils.describe(self)}: prev_state must be one tensor [batch, {self._hidden_size}], as "
            f"initial_state(batch_size) makes it; got {_summary(prev_state)}"
        )

    def _check(self, inputs: tf.Tensor, prev_state: Any) -> None:
        if not hasattr(prev_state, "shape"):
            raise self._bad_state(prev_state)
        _check_dtype(self, inputs, self._dtype, "inputs")
        _check_dtype(self, prev_state, self._dtype, "prev_state")
        utils.check_rank(self, inputs, 2, layout="[batch, input_size]")
        utils.check_size(self, inputs, 1, self._input_size, meaning="input size")
        _check_vector_state(self, prev_state, inputs, self._hidden_size, "prev_state")


# --- convolutional LSTMs --------------------------------------------------------------


class _ConvNDLSTM(_ProjectedCore):
    """Shared body of Conv1D/2D/3DLSTM; subclasses fix the number of spatial axes."""

    NUM_SPATIAL: int = 0  # set by subclasses
    _CONV: type = conv.Conv2D

    def __init__(
        self,
        input_shape: Sequence[int],
        output_channels: int,
        kernel_shape: int | Sequence[int],
        data_format: str | None = None,
        w_i_init: initializers.Initializer | None = None,
        w_h_init: initializers.Initializer | None = None,
        b_init: initializers.Initializer | None = None,
        forget_bias: float = 1.0,
        dtype: tf.DType = tf.float32,
        name: str | None = None,
    ):
        super().__init__(name=name)
        n = self.NUM_SPATIAL
        data_format = data_format or conv.DATA_FORMATS[n][0]
        self._channel_axis = conv.channel_axis(self, data_format, n)
        self._data_format = data_format
        dims = input_shape.tolist() if hasattr(input_shape, "tolist") else input_shape
        dims = list(dims) if isinstance(dims, (list, tuple, tf.TensorShape)) else None
        if dims is None or len(dims) != n + 1 or not all(utils.is_int(d) and d > 0 for d in dims):
            layout = data_format[1:]
            raise ValueError(
                f"{utils.describe(self)}: input_shape must be {n + 1} positive ints (the input's shape "
                f"without the batch axis, {layout}), got {input_shape!r}"
            )
        self._output_channels = utils.positive_int(self, output_channels, "output_channels")
        # TensorShapes, not tuples: tf.Module would wrap a tuple attribute for tracking.
        self._input_shape = tf.TensorShape([int(d) for d in dims])
        state_dims = list(self._input_shape)
        state_dims[0 if self._channel_axis == 1 else -1] = self._output_channels  # no batch axis here
        self._state_dims = tf.TensorShape(state_dims)
        self._b_init = b_init or initializers.Zeros()
        self._forget_bias = float(forget_bias)
        self._dtype = _floating_dtype(self, dtype)
        # Stride-1 "SAME" convolutions keep the state's spatial shape equal to the input's.
        # Their default initializer is `initializers.default_w_init` of their fan-in.
        options = {"padding": "SAME", "with_bias": False, "data_format": data_format}
        self._input_to_hidden = self._CONV(
            4 * self._output_channels, kernel_shape, w_init=w_i_init, name="input_to_hidden", **options
        )
        self._hidden_to_hidden = self._CONV(
            4 * self._output_channels, kernel_shape, w_init=w_h_init, name="hidden_to_hidden", **options
        )

    @property
    def input_to_hidden(self) -> tf.Variable:
        """The input kernel [*kernel_shape, input_channels, 4 * output_channels]."""
        return self._input_to_hidden.w

    @property
    def hidden_to_hidden(self) -> tf.Variable:
        """The hidden kernel [*kernel_shape, output_channels, 4 * output_channels]."""
        return self._hidden_to_hidden.w

    def initial_state(self, batch_size: int | tf.Tensor) -> LSTMState:
        """Zero hidden state and cell [batch_size, *spatial, output_channels] (or channels first)."""
        shape = [batch_size, *self._state_dims]
        return LSTMState(hidden=tf.zeros(shape, self._dtype), cell=tf.zeros(shape, self._dtype))

    @once
    def _initialize(self, inputs: tf.Tensor) -> None:
        utils.check_rank(self, inputs, self.NUM_SPATIAL + 2, layout=f"[{', '.join(self._data_format)}]")
        _check_dtype(self, inputs, self._dtype, "inputs")
        self._check_input_shape(inputs)
        dtype = self._dtype
        self.b = tf.Variable(_gate_bias(self._b_init, self._output_channels, self._forget_bias, dtype), name="b")
        # Both kernels now, not inside an unroll's loop: a one-example call makes each.
        self._input_to_hidden(tf.zeros([1, *self._input_shape], dtype))
        self._hidden_to_hidden(tf.zeros([1, *self._state_dims], dtype))

    def _project(self, inputs: tf.Tensor) -> tf.Tensor:
        return tf.nn.bias_add(self._input_to_hidden(inputs), self.b, data_format=self._data_format)

    def _recur(self, projected: tf.Tensor, prev_state: LSTMState, linear=_linear) -> tuple[tf.Tensor, LSTMState]:
        hidden, cell = prev_state
        gates = projected + linear(hidden, self._hidden_to_hidden)
        hidden, cell = _lstm_update(gates, cell, axis=self._channel_axis)
        return hidden, LSTMState(hidden, cell)

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

    def _check(self, inputs: tf.Tensor, prev_state: Any) -> None:
        hidden, cell = _pair(self, prev_state)
        _check_dtype(self, inputs, self._dtype, "inputs")
        _check_dtype(self, hidden, self._dtype, "prev_state.hidden")
        _check_dtype(self, cell, self._dtype, "prev_state.cell")
        utils.check_rank(self, inputs, self.NUM_SPATIAL + 2)
        self._check_input_shape(inputs)
        for state, what in ((hidden, "prev_state.hidden"), (cell, "prev_state.cell")):
            utils.check_rank(self, state, self.NUM_SPATIAL + 2, what=what)
            shape = tf.TensorShape(state.shape)
            if not shape[1:].is_compatible_with(self._state_dims):
                raise ValueError(
                    f"{utils.describe(self)}: expected {what} of shape [batch, "
                    f"{', '.join(map(str, self._state_dims))}], got shape {shape}"
                )
            _check_batch(self, state, inputs, what)


_CONV_LSTM_DOC = """

    The LSTM of `LSTM` (Shi et al., 2015, arXiv:1506.04214) with its two matrix products
    replaced by stride-1 "SAME" convolutions, so the state keeps the inputs' spatial
    shape:

        z   = conv(x_t, W_i) + conv(h_{{t-1}}, W_h) + b    (channels ordered i, f, g, o)
        c_t = sigmoid(z_f) * c_{{t-1}} + sigmoid(z_i) * tanh(z_g)
        h_t = sigmoid(z_o) * tanh(c_t)

    The convolutions are `core.{conv}` modules, `input_to_hidden` and `hidden_to_hidden`
    (variables `input_to_hidden/w` [*kernel_shape, input_channels, 4 * output_channels],
    `hidden_to_hidden/w` [*kernel_shape, output_channels, 4 * output_channels]), and `b`
    is [4 * output_channels], as in Sonnet 2's `snt.{name}`. Unlike Sonnet's, channels
    first works (Sonnet's builds a wrong state shape and splits the wrong axis for it), on
    every device: where the device has no channels-first kernel, the convolutions run
    channels last between transposes (`core.conv.in_supported_layout`).

    Args:
      input_shape: shape of one input without the batch axis, channels last or first
        as `data_format` says.
      output_channels: channels of the hidden state and cell.
      kernel_shape: kernel size, an int or one per spatial axis.
      data_format: {formats}.
      w_i_init: initializer of the input kernel; `initializers.default_w_init` of its
        fan-in, prod(kernel_shape) * input_channels, by default (as `core.{conv}`).
      w_h_init: initializer of the hidden kernel; likewise, with fan-in
        prod(kernel_shape) * output_channels.
      b_init: initializer of `b`; zeros by default.
      forget_bias: added to the forget gate's bias at initialisation (Jozefowicz et
        al., 2015).
      dtype: dtype of the parameters and of `initial_state`; inputs must have it.
      name: module name.
"""


def _conv_lstm_doc(n: int, name: str) -> str:
    last, first = conv.DATA_FORMATS[n]
    formats = f'"{last}" (channels last, default) or "{first}"'
    return _CONV_LSTM_DOC.format(conv=f"Conv{n}D", name=name, formats=formats)


class Conv1DLSTM(_ConvNDLSTM):
    """Convolutional LSTM over 1-D feature maps [batch, width, channels]."""

    __doc__ += _conv_lstm_doc(1, "Conv1DLSTM")
    NUM_SPATIAL = 1
    _CONV = conv.Conv1D


class Conv2DLSTM(_ConvNDLSTM):
    """Convolutional LSTM over 2-D feature maps [batch, height, width, channels]."""

    __doc__ += _conv_lstm_doc(2, "Conv2DLSTM")
    NUM_SPATIAL = 2
    _CONV = conv.Conv2D


class Conv3DLSTM(_ConvNDLSTM):
    """Convolutional LSTM over 3-D feature maps [batch, depth, height, width, channels]."""

    __doc__ += _conv_lstm_doc(3, "Conv3DLSTM")
    NUM_SPATIAL = 3
    _CONV = conv.Conv3D


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
        return tf.nest.map_structure(lambda i, o: i + o, inputs, outputs), next_state

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


def _finished(lengths: tf.Tensor | None, num_steps: int | tf.Tensor) -> tf.Tensor | None:
    """[T, B]: whether sequence b is finished at step t (t >= its length); None without lengths."""
    if lengths is None:
        return None
    return tf.range(num_steps)[:, None] >= lengths


def _hold(done: tf.Tensor, old: Any, new: Any) -> Any:
    """`old` for the sequences that are `done` [B], `new` for the others.

    A scalar has no batch axis to select on, so it takes the new value (as Sonnet and
    `tf.nn` RNNs do).
    """
    flat_old, flat_new = tf.nest.flatten(old), tf.nest.flatten(new)
    if len(flat_old) != len(flat_new):
        raise ValueError(f"the core's next state or outputs do not match the previous ones: {new} vs {old}")
    held = [n if n.shape.rank == 0 else tf.where(_batch_mask(done, n), o, n) for o, n in zip(flat_old, flat_new)]
    return tf.nest.pack_sequence_as(new, held)


def _batch_mask(done: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    """`done` [B] shaped to broadcast along `like` [B, ...]."""
    return tf.reshape(done, [-1] + [1] * (like.shape.rank - 1))


def _masked_step(step, step_input, state, prev_outputs, done):
    """`step(step_input, state)`; finished sequences keep their previous outputs and state."""
    outputs, next_state = step(step_input, state)
    if done is None:
        return outputs, next_state
    if prev_outputs is None:
        prev_outputs = tf.nest.map_structure(tf.zeros_like, outputs)
    return _hold(done, prev_outputs, outputs), _hold(done, state, next_state)


def _stack_steps(per_step: list[Any]) -> Any:
    return tf.nest.map_structure(lambda *steps: tf.stack(steps), *per_step)


def _merge_time(x: tf.Tensor) -> tf.Tensor:
    """[T, B, ...] -> [T * B, ...]."""
    if x.shape[2:].is_fully_defined():
        return tf.reshape(x, [-1, *x.shape[2:]])
    return tf.reshape(x, tf.concat([[-1], tf.shape(x)[2:]], 0))


def _split_time(y: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    """[T * B, ...] -> [T, B, ...], with the T and B of `like`."""
    if like.shape[:2].is_fully_defined() and y.shape[1:].is_fully_defined():
        return tf.reshape(y, [*like.shape[:2], *y.shape[1:]])
    return tf.reshape(y, tf.concat([tf.shape(like)[:2], tf.shape(y)[1:]], 0))


def _projects(core: Any, input_sequence: Any) -> bool:
    """Whether to unroll `core` by projecting the whole sequence first: one of the gated
    cores (and not a subclass with its own step), on one tensor."""
    return (
        isinstance(core, _ProjectedCore)
        and type(core).__call__ is _ProjectedCore.__call__
        and isinstance(input_sequence, tf.Tensor)
    )


def _project_sequence(core: _ProjectedCore, input_sequence: tf.Tensor, initial_state: Any) -> tf.Tensor:
    """Every step's `core._project` in one call, after the checks of the first step's call."""
    core._prepare(input_sequence[0], initial_state)
    return _split_time(core._project(_merge_time(input_sequence)), input_sequence)


def _python_unroll(core, input_sequence, initial_state, lengths, num_steps):
    """The unroll as a Python loop: eager execution, or a static unroll in a graph."""
    if _projects(core, input_sequence):
        input_sequence, step = _project_sequence(core, input_sequence, initial_state), core._recur
    else:
        step = core
    per_leaf = [tf.unstack(x, num_steps) for x in tf.nest.flatten(input_sequence)]
    step_inputs = [tf.nest.pack_sequence_as(input_sequence, list(leaves)) for leaves in zip(*per_leaf)]
    done = [None] * num_steps if lengths is None else tf.unstack(_finished(lengths, num_steps), num_steps)
    state, outputs, per_step = initial_state, None, []
    for t in range(num_steps):
        outputs, state = _masked_step(step, step_inputs[t], state, outputs, done[t])
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


def _tensor_arrays(like: list[tf.Tensor], size: int | tf.Tensor) -> list[tf.TensorArray]:
    return [tf.TensorArray(x.dtype, size=size, element_shape=x.shape) for x in like]


def _zeros_for_none(grads: list, like: list) -> list:
    return [tf.zeros_like(x) if g is None else g for g, x in zip(grads, like)]


class _Products:
    """The `linear` that `_fast_recurrence` passes to `core._recur`: it records each product's
    input a and output m, computed with the weights of the first step's products."""

    def __init__(self, weights: list | None = None):
        self.weights = [] if weights is None else weights
        self._first = weights is None
        self.inputs, self.outputs = [], []

    def __call__(self, a: tf.Tensor, w: Any) -> tf.Tensor:
        if self._first:  # read once here, then used as it is by every step
            self.weights.append(w if callable(w) else tf.convert_to_tensor(w))
        elif len(self.inputs) == len(self.weights):
            raise ValueError("_recur must apply the same linear maps at every step")
        m = _linear(a, self.weights[len(self.inputs)])
        self.inputs.append(a)
        self.outputs.append(m)
        return m


class _Replay:
    """The `linear` of the backward pass: each product's recorded output, whose gradient
    into its input is dm W^T (W^T transposed once, before the loop) or, for a linear module,
    autodiff's."""

    def __init__(self, outputs: list[tf.Tensor], transposed: list):
        self._outputs, self._transposed = outputs, transposed
        self._count = 0

    def __call__(self, a: tf.Tensor, w: Any) -> tf.Tensor:
        k, self._count = self._count, self._count + 1
        return _replayed(a, self._outputs[k], self._transposed[k])


def _replayed(a: tf.Tensor, m: tf.Tensor, transposed: Any) -> tf.Tensor:
    """`m`, recorded as a product of `a`, with that product's gradients: dm into `m` itself,
    and into `a` dm W^T, or autodiff's through `transposed`, a linear module."""

    @tf.custom_gradient
    def replay(a, m):
        def grad(d_m):
            if not callable(transposed):
                return tf.matmul(d_m, transposed), d_m
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(a)
                product = transposed(a)
            return tape.gradient(product, a, output_gradients=d_m), d_m

        return tf.identity(m), grad

    return replay(a, m)


def _first_order(core: RNNCore, grads: list[tf.Tensor]) -> list[tf.Tensor]:
    """`grads`, with an error instead of their own gradient (which would be wrong: they use
    values recorded inside the forward loop, which autodiff does not see)."""
    message = (
        f"dynamic_unroll of {utils.describe(core)} in a graph computes its gradient by hand and has no "
        "second derivatives; for a gradient of a gradient, unroll with static_unroll (or eagerly)"
    )
    return [tf.raw_ops.PreventGradient(input=g, message=message) for g in grads]


def _fast_recurrence(core, projected, initial_state, done, parallel_iterations, swap_memory):
    """`core._recur` over `projected` [T, B, ...] from `initial_state`: (outputs [T, ...], final state).

    A loop differentiated by autodiff forms, in each backward step, the gradient of every
    recurrent weight (h_{t-1}^T dz_t, a product with only B rows, at a small fraction of
    the machine's peak) and adds it to an accumulator; it multiplies by W^T as a
    transposed product, which TensorFlow's CPU kernel (without oneDNN) runs about 4 times
    slower than a product by a transposed copy; and it keeps every intermediate of the
    forward step on a stack. The gradient here is written out instead:

    - forward, each `linear(a, w)` of `core._recur` records its input a_t and output m_t,
      computed with w as the first step read it; the state before each step is kept;
    - backward, each step reruns `core._recur` under a tape with the products replayed
      (m_t as recorded, with the gradient dm_t W^T into a_t, W^T transposed once), which
      gives the gradients of the projected inputs, of the state before the step and of
      each m_t; the loop carries only the state's gradient;
    - after the loop, each weight's gradient sum_t a_t^T dm_t is one product over all
      T * B rows (for a linear module such as a convolution, autodiff's on the stacked a_t).

    The values are those of autodiff through the loop, up to the order of float sums; the
    gradients themselves refuse to be differentiated (`_first_order`). `done` is None or
    [T, B], the steps at which each sequence has finished.

    A forward pass without a gradient runs this loop too (whether a tape records cannot
    be asked through TensorFlow's public API). Against a loop of the recurrence alone,
    forward only, batch 16, 50 steps, 256 units, one thread (`python -m
    benchmarks.unroll_paths`), its time is 0.99x (tf.function) and 0.99x (XLA) for the
    LSTM, 1.12x and 1.00x with layer norm, 0.79x and 0.75x for the GRU.
    """
    num_steps = projected.shape[0] or tf.shape(projected)[0]
    masked = done is not None
    flat_initial = [tf.convert_to_tensor(s) for s in tf.nest.flatten(initial_state)]
    structure = {}

    def step(t, p, carry, linear):
        """One step from `carry` = (state, the outputs of the step before, or () without `done`)."""
        state, prev_outputs = carry
        if not masked:
            outputs, state = core._recur(p, state, linear)
            return outputs, (state, ())
        outputs, state = _masked_step(lambda x, s: core._recur(x, s, linear), p, state, prev_outputs, done[t])
        return outputs, (state, outputs)

    def loop(cond, body, loop_vars):
        return tf.while_loop(
            cond,
            body,
            loop_vars,
            parallel_iterations=parallel_iterations,
            swap_memory=swap_memory,
            maximum_iterations=num_steps - 1,
        )

    @tf.custom_gradient
    def run(projected, *flat_initial):
        projected_ta = tf.TensorArray(projected.dtype, size=num_steps, element_shape=projected.shape[1:])
        projected_ta = projected_ta.unstack(projected)
        initial = tf.nest.pack_sequence_as(initial_state, list(flat_initial))
        # Step 0 outside the loop: it reads the products' weights, under a tape that later
        # takes their gradients to the variables, and fixes the shapes of what is recorded.
        products = _Products()
        with tf.GradientTape() as weight_tape:
            outputs, carry = step(0, projected_ta.read(0), (initial, None), products)
        weights = products.weights
        structure["outputs"] = outputs
        flat_outputs = tf.nest.flatten(outputs)
        before = tf.nest.flatten((initial, tf.nest.map_structure(tf.zeros_like, outputs) if masked else ()))
        firsts = (flat_outputs, before, products.inputs, products.outputs)
        tas = [[ta.write(0, x) for ta, x in zip(_tensor_arrays(xs, num_steps), xs)] for xs in firsts]

        def body(t, carry, tas):
            products = _Products(weights)
            outputs, new_carry = step(t, projected_ta.read(t), carry, products)
            written = (tf.nest.flatten(outputs), tf.nest.flatten(carry), products.inputs, products.outputs)
            return t + 1, new_carry, [[ta.write(t, x) for ta, x in zip(g, xs)] for g, xs in zip(tas, written)]

        _, carry, tas = loop(lambda t, *_: t < num_steps, body, (tf.constant(1), carry, tas))
        output_tas, before_tas, input_tas, product_tas = tas
        output_sequence = [ta.stack() for ta in output_tas]

        def grad(*grads, variables=None):
            variables = list(variables or [])
            d_outputs = _zeros_for_none(grads[: len(output_sequence)], output_sequence)
            d_output_tas = [ta.unstack(g) for ta, g in zip(_tensor_arrays(flat_outputs, num_steps), d_outputs)]
            transposed = [w if callable(w) else tf.transpose(w) for w in weights]

            def backward_step(t, d_carry):
                """Step t's gradients: of its projected inputs, of the carry before it, of its
                products' outputs, and of the variables `_recur` reads outside the products."""
                p = projected_ta.read(t)
                carry_before = [ta.read(t) for ta in before_tas]
                recorded = [ta.read(t) for ta in product_tas]
                with tf.GradientTape() as tape:
                    tape.watch([p, *carry_before, *recorded])
                    carry = tf.nest.pack_sequence_as((initial, outputs if masked else ()), carry_before)
                    outputs_t, new_carry = step(t, p, carry, _Replay(recorded, transposed))
                targets = tf.nest.flatten(outputs_t) + tf.nest.flatten(new_carry)
                d_targets = [ta.read(t) for ta in d_output_tas] + list(d_carry)
                sources = [p, *carry_before, *recorded]
                all_grads = tape.gradient(targets, sources + variables, output_gradients=d_targets)
                d_sources = _zeros_for_none(all_grads[: len(sources)], sources)
                n = len(before)
                return d_sources[0], d_sources[1 : 1 + n], d_sources[1 + n :], all_grads[len(sources) :]

            # The carry's gradient after the last step: the final state's, none into its outputs.
            d_final = _zeros_for_none(grads[len(output_sequence) :], flat_initial)
            d_carry = d_final + [tf.zeros_like(x) for x in before[len(d_final) :]]
            d_tas = _tensor_arrays([projected[0], *products.outputs], num_steps)
            last = num_steps - 1
            d_p, d_carry, d_products, d_variables = backward_step(last, d_carry)
            d_tas = [ta.write(last, g) for ta, g in zip(d_tas, [d_p, *d_products])]
            # Variables read outside the products (layer norm's gains, say) accumulate their
            # gradient in the loop.
            read_here = [i for i, g in enumerate(d_variables) if g is not None]

            def backward_body(t, d_carry, accumulated, d_tas):
                d_p, d_carry, d_products, d_variables = backward_step(t, d_carry)
                d_tas = [ta.write(t, g) for ta, g in zip(d_tas, [d_p, *d_products])]
                return t - 1, d_carry, [a + d_variables[i] for a, i in zip(accumulated, read_here)], d_tas

            loop_vars = (last - 1, d_carry, [d_variables[i] for i in read_here], d_tas)
            _, d_carry, accumulated, d_tas = loop(lambda t, *_: t >= 0, backward_body, loop_vars)
            variable_grads = [None] * len(variables)
            for i, g in zip(read_here, accumulated):
                variable_grads[i] = g
            _add_product_grads(variable_grads, variables, weights, weight_tape, input_tas, d_tas[1:])
            input_grads = [d_tas[0].stack(), *d_carry[: len(flat_initial)]]
            return _first_order(core, input_grads), _first_order(core, _zeros_for_none(variable_grads, variables))

        return [*output_sequence, *tf.nest.flatten(carry[0])], grad

    results = run(projected, *flat_initial)
    num_outputs = len(results) - len(flat_initial)
    outputs = tf.nest.pack_sequence_as(structure["outputs"], results[:num_outputs])
    return outputs, tf.nest.pack_sequence_as(initial_state, results[num_outputs:])


def _add_product_grads(variable_grads, variables, weights, weight_tape, input_tas, d_product_tas) -> None:
    """Adds to `variable_grads` the gradients through the products: for a matrix W, sum_t
    a_t^T dm_t as one product over every step, taken on to the variables W was read from
    by `weight_tape`; for a linear module, autodiff's on the stacked inputs."""
    matrices, d_matrices = [], []
    for w, input_ta, d_product_ta in zip(weights, input_tas, d_product_tas):
        inputs, d_products = _merge_time(input_ta.stack()), _merge_time(d_product_ta.stack())
        if callable(w):
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(variables)
                products = w(inputs)
            grads = tape.gradient(products, variables, output_gradients=d_products)
        else:
            matrices.append(w)
            d_matrices.append(tf.matmul(inputs, d_products, transpose_a=True))
            continue
        for i, g in enumerate(grads):
            if g is not None:
                variable_grads[i] = g if variable_grads[i] is None else variable_grads[i] + g
    if matrices:
        for i, g in enumerate(weight_tape.gradient(matrices, variables, output_gradients=d_matrices)):
            if g is not None:
                variable_grads[i] = g if variable_grads[i] is None else variable_grads[i] + g


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

    For `LSTM`, `GRU` and the convolutional LSTMs on a tensor sequence, the inputs' part
    of every step (x_t W_i + b) is computed before the loop in one product, and in graphs
    the gradients of the recurrent weights after it in one product over all steps (see
    `_fast_recurrence`): the same values, up to the order of float sums, in less time.

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
    if _projects(core, input_sequence):
        # With or without a tape: recording what its gradient needs costs a forward pass
        # from nothing to 12 % (measured in `_fast_recurrence`'s docstring).
        projected = _project_sequence(core, input_sequence, initial_state)
        done = _finished(lengths, num_steps or tf.shape(input_sequence)[0])
        return _fast_recurrence(core, projected, initial_state, done, parallel_iterations, swap_memory)
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
