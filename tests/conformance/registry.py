"""The conformance registry: every public module of the core, with a small constructor and input.

Each entry is run through the shared checks in `suite.py` (eager vs tf.function vs
XLA, checkpoints, SavedModel, MirroredStrategy, deepcopy, variable names) by
`test_conformance.py`. Covering a new core module takes one `Entry(...)` line here;
`test_every_public_module_has_an_entry` fails while a public module class has none.
Models keep their entries with their own tests (`tests/models/<model>/test_conformance.py`),
built from the same `Entry`.

Inputs are NumPy arrays drawn from a generator the test passes in, so each replica of a
multi-replica test gets different data.
"""

import dataclasses
import importlib
import inspect
import pkgutil
import typing
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

import core

Inputs = tuple
Forward = Callable[[tf.Module, Inputs, bool], Any]


def call(module: tf.Module, inputs: Inputs, is_training: bool) -> Any:
    """Calls a module that takes no `is_training` argument."""
    del is_training
    return module(*inputs)


def call_training(module: tf.Module, inputs: Inputs, is_training: bool) -> Any:
    """Calls a module that takes `is_training` as a keyword argument."""
    return module(*inputs, is_training=is_training)


def normal(*shape: int) -> Callable[[np.random.RandomState], Inputs]:
    """Inputs: one float32 array of standard normals of the given shape."""
    return lambda rng: (rng.normal(size=shape).astype(np.float32),)


@dataclasses.dataclass(frozen=True)
class Entry:
    """How to build and call one public module in the shared tests.

    Attributes:
      name: unique id of the entry (test ids, the variable-name list).
      cls: the public class the entry covers.
      make: builds a fresh instance.
      inputs: draws the positional inputs (nested NumPy arrays) from a generator.
      forward: runs the module; `is_training=False` must be deterministic.
      updates_itself: the forward pass applies its own parameter update (optimizer
        entries), so the multi-replica test runs it rather than an outer SGD step.
      skip: shared tests this entry opts out of, mapped to the reason.
      rtol: tolerance of eager vs tf.function vs XLA agreement.
    """

    name: str
    cls: type
    make: Callable[[], tf.Module]
    inputs: Callable[[np.random.RandomState], Inputs]
    forward: Forward = call
    updates_itself: bool = False
    skip: dict[str, str] = dataclasses.field(default_factory=dict)
    rtol: float = 1e-5


ENTRIES: list[Entry] = [
    # --- linear -------------------------------------------------------------------
    Entry("Linear", core.Linear, lambda: core.Linear(3), normal(2, 4)),
    Entry("Linear_nobias_rank3", core.Linear, lambda: core.Linear(3, with_bias=False), normal(2, 3, 4)),
    # --- conv, conv_transpose, embed, dropout, sequential, batch_apply, reshape ----
    Entry("Conv1D", core.Conv1D, lambda: core.Conv1D(3, 2), normal(2, 5, 2)),
    Entry(
        "Conv1D_ncw_causal",
        core.Conv1D,
        lambda: core.Conv1D(3, 3, padding=lambda k: [k - 1, 0], data_format="NCW"),
        normal(2, 2, 5),
    ),
    Entry("Conv2D", core.Conv2D, lambda: core.Conv2D(3, 3, stride=2), normal(2, 5, 5, 2)),
    Entry(
        "Conv2D_nchw_rate2_valid",
        core.Conv2D,
        lambda: core.Conv2D(2, 2, rate=2, padding="VALID", with_bias=False, data_format="NCHW"),
        normal(1, 2, 4, 4),
    ),
    Entry("Conv3D", core.Conv3D, lambda: core.Conv3D(2, 2), normal(1, 3, 3, 3, 2)),
    Entry("Conv1DTranspose", core.Conv1DTranspose, lambda: core.Conv1DTranspose(3, 3, stride=2), normal(2, 4, 2)),
    Entry(
        "Conv2DTranspose_valid",
        core.Conv2DTranspose,
        lambda: core.Conv2DTranspose(3, 3, stride=2, padding="VALID"),
        normal(1, 3, 3, 2),
    ),
    Entry(
        "Conv2DTranspose_nchw_output_shape",
        core.Conv2DTranspose,
        lambda: core.Conv2DTranspose(2, 3, output_shape=[5, 5], stride=2, data_format="NCHW"),
        normal(1, 2, 3, 3),
    ),
    Entry("Conv3DTranspose", core.Conv3DTranspose, lambda: core.Conv3DTranspose(2, 2, stride=2), normal(1, 2, 2, 2, 2)),
    Entry(
        "Embed", core.Embed, lambda: core.Embed(10, 3), lambda rng: (rng.randint(0, 10, size=(2, 3)).astype(np.int32),)
    ),
    Entry(
        "Embed_densify",
        core.Embed,
        lambda: core.Embed(10, 3, densify_gradients=True),
        lambda rng: (rng.randint(0, 10, size=(4,)).astype(np.int64),),
    ),
    Entry("Dropout", core.Dropout, lambda: core.Dropout(0.5, seed=0), normal(3, 4), forward=call_training),
    Entry(
        "Dropout_unseeded_noise_shape",
        core.Dropout,
        lambda: core.Dropout(0.3, noise_shape=[None, 1, 3]),
        normal(2, 3, 3),
        forward=call_training,
    ),
    Entry(
        "Sequential",
        core.Sequential,
        lambda: core.Sequential([core.Linear(3, name="first"), tf.nn.relu, core.Linear(2, name="second")]),
        normal(2, 4),
    ),
    Entry("BatchApply", core.BatchApply, lambda: core.BatchApply(core.Linear(3)), normal(2, 3, 4)),
    Entry(
        "BatchApply_nested",
        core.BatchApply,
        lambda: core.BatchApply(
            core.Sequential(
                [lambda d: tf.concat([d["a"], d["b"]], -1), core.Linear(2), lambda y: (y, {"double": 2 * y})]
            ),
            num_dims=3,
        ),
        lambda rng: (
            {
                "a": rng.normal(size=(2, 1, 3, 2)).astype(np.float32),
                "b": rng.normal(size=(2, 1, 3, 1)).astype(np.float32),
            },
        ),
    ),
    Entry("Reshape", core.Reshape, lambda: core.Reshape((-1, 2)), normal(2, 3, 4)),
    Entry("Flatten", core.Flatten, lambda: core.Flatten(preserve_dims=2), normal(2, 3, 2, 2)),
    # nets (MLP is in this family's care)
    Entry("MLP", core.nets.MLP, lambda: core.nets.MLP([4, 3]), normal(2, 5)),
    Entry(
        "MLP_dropout",
        core.nets.MLP,
        lambda: core.nets.MLP([4, 3], dropout_rate=0.5, activation=tf.nn.tanh, activate_final=True),
        normal(2, 5),
        forward=call_training,
    ),
    # --- batch_norm, moving_averages --------------------------------------------------
    Entry(
        "BatchNorm",
        core.BatchNorm,
        lambda: core.BatchNorm(True, True, decay_rate=0.9),
        normal(4, 3),
        forward=call_training,
    ),
    Entry(  # rank 4, channels last: TensorFlow's fused kernel
        "BatchNorm_rank4",
        core.BatchNorm,
        lambda: core.BatchNorm(True, False, decay_rate=0.9),
        normal(2, 2, 3, 3),
        forward=call_training,
    ),
    Entry(
        "CrossReplicaBatchNorm",
        core.CrossReplicaBatchNorm,
        lambda: core.CrossReplicaBatchNorm(True, True, decay_rate=0.9),
        normal(2, 2, 2, 3),
        forward=call_training,
    ),
    Entry(
        # Updates when training. Returns the input's deviation from the average, and the
        # average: the average alone is the same on every replica by design (its state
        # is synchronised), so the deviation shows that each replica got its own data.
        "ExponentialMovingAverage",
        core.ExponentialMovingAverage,
        lambda: core.ExponentialMovingAverage(0.9),
        normal(3),
        forward=lambda m, x, is_training: (
            m.update(x[0]) if is_training else m.initialize(x[0]),
            (x[0] - m.value, m.value),
        )[1],
    ),
    # --- layer_norm, attention, spectral_norm, nets -----------------------------------
    Entry("LayerNorm", core.LayerNorm, lambda: core.LayerNorm(-1, True, True), normal(2, 3, 4)),
    Entry(
        "LayerNorm_channels_first",
        core.LayerNorm,
        lambda: core.LayerNorm(slice(1, None), True, True, data_format="NCHW"),
        normal(2, 3, 2, 2),
    ),
    Entry("GroupNorm", core.GroupNorm, lambda: core.GroupNorm(2), normal(2, 3, 3, 4)),
    Entry(
        "MultiHeadAttention_masked",  # the second example has every key masked
        core.MultiHeadAttention,
        lambda: core.MultiHeadAttention(2, 3),
        lambda rng: (
            rng.normal(size=(2, 4, 5)).astype(np.float32),
            np.array([[True, False, True, True], [False] * 4]),
        ),
        forward=lambda m, x, is_training: m(x[0], key_mask=x[1]),
    ),
    Entry(
        "MultiHeadAttention_cross",
        core.MultiHeadAttention,
        lambda: core.MultiHeadAttention(2, 3, value_size=2, model_size=4, with_bias=False),
        lambda rng: (rng.normal(size=(2, 3, 5)).astype(np.float32), rng.normal(size=(2, 4, 6)).astype(np.float32)),
    ),
    Entry("SpectralNorm", core.SpectralNorm, lambda: core.SpectralNorm(), normal(3, 3, 2, 4), forward=call_training),
    # --- recurrent ------------------------------------------------------------------
    # The forward is one step from the initial state: `m(x, m.initial_state(batch))`.
    Entry("LSTM", core.LSTM, lambda: core.LSTM(3), normal(2, 4), forward=lambda m, x, t: m(x[0], m.initial_state(2))),
    Entry(
        "LSTM_projection",
        core.LSTM,
        lambda: core.LSTM(4, projection_size=2, forget_bias=0.5),
        normal(2, 3),
        forward=lambda m, x, t: m(x[0], m.initial_state(2)),
    ),
    Entry(
        "LSTM_layer_norm",
        core.LSTM,
        lambda: core.LSTM(3, layer_norm=True),
        normal(2, 4),
        forward=lambda m, x, t: m(x[0], m.initial_state(2)),
    ),
    Entry("GRU", core.GRU, lambda: core.GRU(3), normal(2, 4), forward=lambda m, x, t: m(x[0], m.initial_state(2))),
    Entry(
        "Conv1DLSTM",
        core.Conv1DLSTM,
        lambda: core.Conv1DLSTM([5, 2], 3, 3),
        normal(2, 5, 2),
        forward=lambda m, x, t: m(x[0], m.initial_state(2)),
    ),
    Entry(
        "Conv2DLSTM",
        core.Conv2DLSTM,
        lambda: core.Conv2DLSTM([4, 4, 2], 3, 3),
        normal(2, 4, 4, 2),
        forward=lambda m, x, t: m(x[0], m.initial_state(2)),
    ),
    Entry(
        "Conv3DLSTM",
        core.Conv3DLSTM,
        lambda: core.Conv3DLSTM([3, 3, 3, 2], 2, 3),
        normal(2, 3, 3, 3, 2),
        forward=lambda m, x, t: m(x[0], m.initial_state(2)),
    ),
    Entry(
        "DeepRNN",
        core.DeepRNN,
        lambda: core.DeepRNN([core.LSTM(3, name="lstm"), tf.nn.relu, core.GRU(2, name="gru")]),
        normal(2, 4),
        forward=lambda m, x, t: m(x[0], m.initial_state(2)),
    ),
    # The public factories below return a private class (see FACTORIES).
    Entry(
        "deep_rnn_with_skip_connections",
        core.recurrent._StackedRNN,
        lambda: core.deep_rnn_with_skip_connections([core.LSTM(3, name="lstm"), core.GRU(2, name="gru")]),
        normal(2, 4),
        forward=lambda m, x, t: m(x[0], m.initial_state(x[0].shape[0])),  # any batch size
    ),
    Entry(
        "deep_rnn_with_residual_connections",  # residual: each core keeps the input size
        core.recurrent._StackedRNN,
        lambda: core.deep_rnn_with_residual_connections([core.LSTM(4, name="lstm"), core.GRU(4, name="gru")]),
        normal(2, 4),
        forward=lambda m, x, t: m(x[0], m.initial_state(x[0].shape[0])),  # any batch size
    ),
    # --- optimizers -------------------------------------------------------------------
    # Each trains a Linear inside its forward pass (OptimizerHarness, below the list).
    Entry(
        "SGD",
        core.optimizers.SGD,
        lambda: OptimizerHarness(lambda: core.optimizers.SGD(0.1)),
        normal(2, 4),
        forward=call_training,
        updates_itself=True,
    ),
    Entry(
        "SGD_schedule",  # a schedule adds the step counter
        core.optimizers.SGD,
        lambda: OptimizerHarness(lambda: core.optimizers.SGD(core.optimizers.schedules.CosineDecay(0.1, 10))),
        normal(2, 4),
        forward=call_training,
        updates_itself=True,
    ),
    Entry(
        "Momentum",
        core.optimizers.Momentum,
        lambda: OptimizerHarness(lambda: core.optimizers.Momentum(0.1, 0.9, use_nesterov=True)),
        normal(2, 4),
        forward=call_training,
        updates_itself=True,
    ),
    Entry(
        "Adam",
        core.optimizers.Adam,
        lambda: OptimizerHarness(lambda: core.optimizers.Adam(0.01)),
        normal(2, 4),
        forward=call_training,
        updates_itself=True,
    ),
    Entry(
        "RMSProp",
        core.optimizers.RMSProp,
        lambda: OptimizerHarness(lambda: core.optimizers.RMSProp(0.01, momentum=0.5, centered=True)),
        normal(2, 4),
        forward=call_training,
        updates_itself=True,
    ),
]


# --- optimizers: the test-only harness of the optimizer entries --------------------------


class OptimizerHarness(core.Module):
    """Test-only: a Linear whose forward pass also trains it with the given optimizer.

    With `is_training=True` it takes the gradients of a squared loss, all-reduces them
    and applies the optimizer; with `is_training=False` it only builds the optimizer's
    slots (so a multi-replica test can build everything eagerly before tracing).
    """

    def __init__(self, make_optimizer: Callable[[], tf.Module], name: str | None = None):
        super().__init__(name=name)
        self.linear = core.Linear(3)
        self.optimizer = make_optimizer()

    def __call__(self, inputs: tf.Tensor, is_training: bool) -> tf.Tensor:
        with tf.GradientTape() as tape:
            outputs = self.linear(inputs)
            loss = tf.reduce_mean(tf.square(outputs - 1.0))
        params = self.linear.trainable_variables
        if not is_training:
            self.optimizer.build(params)
            return outputs
        grads = core.distribute.all_reduce_gradients(tape.gradient(loss, params))
        self.optimizer.apply(grads, params)
        return outputs


# Abstract bases and the base class itself have no entry of their own.
NOT_CONCRETE = {core.Module}


def module_classes_in(package: str) -> set[type]:
    """Every public concrete `tf.Module` subclass defined in a package's modules (a model's)."""
    found = set()
    root = importlib.import_module(package)
    for info in pkgutil.walk_packages(root.__path__, package + "."):
        if info.name.rsplit(".", 1)[-1].startswith("_") or info.name.endswith(".train"):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (
                not name.startswith("_")
                and isinstance(obj, type)
                and issubclass(obj, tf.Module)
                and obj.__module__ == module.__name__
                and not getattr(obj, "__abstractmethods__", None)
            ):
                found.add(obj)
    return found


def public_module_classes() -> set[type]:
    """Every concrete `core.Module` subclass reachable from core's public API."""
    found = set()
    namespaces = [core] + [getattr(core, n) for n in core.__all__ if isinstance(getattr(core, n), type(core))]
    for ns in namespaces:
        for name in getattr(ns, "__all__", []):
            obj = getattr(ns, name)
            if isinstance(obj, type) and issubclass(obj, core.Module):
                found.add(obj)
    return {c for c in found if c not in NOT_CONCRETE and not getattr(c, "__abstractmethods__", None)}


# --- public functions that return modules ---------------------------------------------
# Each with example arguments: `test_registry_is_complete` checks that every public
# function annotated to return a module is listed here, and that the class each returns
# has an entry above.
FACTORIES: dict[Callable[..., Any], Callable[[], tf.Module]] = {
    core.deep_rnn_with_skip_connections: lambda: core.deep_rnn_with_skip_connections([core.LSTM(2)]),
    core.deep_rnn_with_residual_connections: lambda: core.deep_rnn_with_residual_connections([core.LSTM(2)]),
}


def _returns_module(annotation: Any) -> bool:
    if isinstance(annotation, type):
        return issubclass(annotation, tf.Module)
    return any(_returns_module(a) for a in typing.get_args(annotation))  # unions, Optional


def _return_annotation(fn: Callable[..., Any]) -> Any:
    try:
        return typing.get_type_hints(fn).get("return")
    except Exception:  # noqa: BLE001  (an unresolvable hint elsewhere in the signature)
        return inspect.signature(fn).return_annotation


def public_module_factories() -> set[Callable[..., Any]]:
    """Every function in core's public API whose return annotation is a module class."""
    found = set()
    namespaces = [core] + [getattr(core, n) for n in core.__all__ if isinstance(getattr(core, n), type(core))]
    for ns in namespaces:
        for name in getattr(ns, "__all__", []):
            obj = getattr(ns, name)
            if inspect.isfunction(obj) and _returns_module(_return_annotation(obj)):
                found.add(obj)
    return found
