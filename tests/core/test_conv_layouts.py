"""Channels-first convolutions on every device: the device's own kernels where it has them,
channels-last kernels between transposes where it does not; the same numbers either way.

Each case builds a module channels last and its twin channels first with the same
weights, and compares outputs and gradients (inputs and weights) in eager mode, in a
`tf.function` and under XLA, along two paths: the one this device takes, and the
transposes forced (as on a device without channels-first kernels). On a CPU without
oneDNN the two paths are one; CI runs this file with oneDNN off and on.
"""

import numpy as np
import pytest
import tensorflow as tf

import core
from core import conv

pytestmark = pytest.mark.onednn

MODES = ("eager", "function", "xla")


def _lstm_step(module, inputs):
    x, hidden, cell = inputs
    return module(x, core.LSTMState(hidden, cell))


# (name, constructor taking data_format, channels-last input shapes, call)
CASES = [
    ("Conv1D", lambda f: core.Conv1D(3, 3, rate=2, data_format=f), [(2, 7, 2)], None),
    ("Conv1D_causal", lambda f: core.Conv1D(3, 2, padding=lambda k: [k - 1, 0], data_format=f), [(2, 5, 2)], None),
    ("Conv2D", lambda f: core.Conv2D(3, (3, 2), stride=2, data_format=f), [(2, 5, 6, 2)], None),
    ("Conv2D_valid", lambda f: core.Conv2D(2, 3, rate=2, padding="VALID", data_format=f), [(1, 6, 6, 2)], None),
    ("Conv3D", lambda f: core.Conv3D(2, 2, stride=(1, 2, 1), data_format=f), [(1, 3, 4, 3, 2)], None),
    ("Conv1DTranspose", lambda f: core.Conv1DTranspose(2, 3, rate=2, data_format=f), [(2, 5, 3)], None),
    (
        "Conv2DTranspose",
        lambda f: core.Conv2DTranspose(2, 3, output_shape=(6, 5), stride=2, data_format=f),
        [(2, 3, 3, 2)],
        None,
    ),
    (
        "Conv2DTranspose_strided_dilated",
        lambda f: core.Conv2DTranspose(2, 2, stride=2, rate=2, padding="VALID", data_format=f),
        [(1, 3, 2, 2)],
        None,
    ),
    ("Conv3DTranspose", lambda f: core.Conv3DTranspose(2, 2, stride=2, data_format=f), [(1, 2, 2, 3, 2)], None),
    (
        "Conv2DLSTM",
        lambda f: core.Conv2DLSTM([4, 5, 2] if f == "NHWC" else [2, 4, 5], 3, 3, data_format=f),
        [(2, 4, 5, 2), (2, 4, 5, 3), (2, 4, 5, 3)],
        _lstm_step,
    ),
]


class _NoKernels(dict):
    """A kernel table that answers "no kernel" to every question: every device lacks them."""

    def __contains__(self, key):
        return True

    def __getitem__(self, key):
        return False


@pytest.fixture
def no_kernels(monkeypatch):
    """Makes every device lack channels-first and dilated transposed kernels."""
    monkeypatch.setattr(conv, "_KERNELS", _NoKernels())
    monkeypatch.setattr(conv, "_EVERYWHERE", {})


def _to_first(x: np.ndarray) -> np.ndarray:
    return np.moveaxis(x, -1, 1)


def _to_last(x: np.ndarray) -> np.ndarray:
    return np.moveaxis(x, 1, -1)


def _outputs_and_gradients(module, call, inputs, mode, channels_first):
    """Outputs (channels last) and the gradients of a fixed weighting of them, inputs' then weights'."""

    def run(*xs):
        with tf.GradientTape() as tape:
            tape.watch(xs)
            outputs = tf.nest.flatten(call(module, list(xs)))
            if channels_first:
                outputs = [tf.experimental.numpy.moveaxis(o, 1, -1) for o in outputs]
            # A fixed, uneven weighting: every output element counts differently.
            loss = tf.add_n(
                [tf.reduce_sum(o * tf.sin(tf.reshape(tf.range(tf.size(o), dtype=o.dtype), o.shape))) for o in outputs]
            )
        return outputs, tape.gradient(loss, [*xs, *module.trainable_variables])

    fn = {"eager": run, "function": tf.function(run), "xla": tf.function(run, jit_compile=True)}[mode]
    outputs, grads = fn(*inputs)
    return [o.numpy() for o in outputs], [g.numpy() for g in grads]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("path", ["device", "transposes"])
@pytest.mark.parametrize("name, make, shapes, call", CASES, ids=[c[0] for c in CASES])
def test_channels_first_equals_channels_last(name, make, shapes, call, path, mode, request, rng):
    n = len(shapes[0]) - 2
    if path == "device" and not conv.runs_natively(n, tf.float32, conv.DATA_FORMATS[n][1]):
        pytest.skip("this device has no channels-first kernel: its path is the transposes' path")
    if path == "transposes":
        request.getfixturevalue("no_kernels")
    call = call or (lambda module, xs: module(xs[0]))
    last_format, first_format = conv.DATA_FORMATS[n]
    last, first = make(last_format), make(first_format)
    xs = [rng.normal(size=s).astype(np.float32) for s in shapes]
    call(last, [tf.constant(x) for x in xs])
    call(first, [tf.constant(_to_first(x)) for x in xs])
    core.utils.port_variables(last, first)

    want_out, want_grads = _outputs_and_gradients(last, call, [tf.constant(x) for x in xs], mode, False)
    got_out, got_grads = _outputs_and_gradients(first, call, [tf.constant(_to_first(x)) for x in xs], mode, True)
    assert len(got_out) == len(want_out)
    for got, want in zip(got_out, want_out):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # Input gradients come back channels first; weight gradients have the same layout in both.
    got_grads = [_to_last(g) for g in got_grads[: len(xs)]] + got_grads[len(xs) :]
    assert len(got_grads) == len(want_grads) == len(xs) + len(last.trainable_variables)
    for i, (got, want) in enumerate(zip(got_grads, want_grads)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=f"gradient {i}")


def _op_types(fn, *args) -> set[str]:
    graph = tf.function(fn).get_concrete_function(*args).graph
    return {op.type for op in graph.get_operations()}


def test_transposes_only_where_the_device_lacks_the_kernel(monkeypatch):
    """The native layout is kept where the device has its kernel; transposes are added only where not."""
    x = tf.zeros([1, 2, 5, 5])
    module = core.Conv2D(3, 3, data_format="NCHW")
    monkeypatch.setattr(conv, "_EVERYWHERE", {})
    monkeypatch.setitem(conv._KERNELS, ("CPU", (2, tf.float32, "NCHW", False)), True)
    assert "Transpose" not in _op_types(module, x)  # traced, not run: this CPU may lack the kernel
    monkeypatch.setattr(conv, "_EVERYWHERE", {})
    monkeypatch.setitem(conv._KERNELS, ("CPU", (2, tf.float32, "NCHW", False)), False)
    ops = _op_types(module, x)
    assert "Transpose" in ops and "Conv2D" in ops
    # Channels last never transposes, and asks nothing of the device.
    assert "Transpose" not in _op_types(core.Conv2D(3, 3), tf.zeros([1, 5, 5, 2]))


def test_a_mixed_machine_asks_the_device_scope(monkeypatch):
    """With a GPU that has the kernel and a CPU that lacks it, the `tf.device` scope decides;
    without one, the GPU (where TensorFlow places convolutions) does."""
    kind = (2, tf.float32, "NCHW", False)
    monkeypatch.setattr(conv, "_DEVICE_TYPES", ["CPU", "GPU"])
    monkeypatch.setattr(conv, "_EVERYWHERE", {})
    monkeypatch.setitem(conv._KERNELS, ("CPU", kind), False)
    monkeypatch.setitem(conv._KERNELS, ("GPU", kind), True)

    def decide():
        return conv.runs_natively(*kind)

    assert decide()
    with tf.device("/CPU:0"):
        assert not decide()
    decisions = []

    @tf.function
    def traced():
        decisions.append(decide())
        with tf.device("/CPU:0"):
            decisions.append(decide())
        with tf.device("/GPU:0"):
            decisions.append(decide())
        return tf.constant(0)

    traced.get_concrete_function()
    assert decisions == [True, False, True]
    assert conv._EVERYWHERE[kind] is None  # the device types disagree: decided per call
    # A CPU-only machine decides once, and never looks at the scope.
    monkeypatch.setattr(conv, "_DEVICE_TYPES", ["CPU"])
    monkeypatch.setattr(conv, "_EVERYWHERE", {})
    monkeypatch.setattr(conv, "_scope_device_type", lambda: pytest.fail("looked at the scope"))
    assert not decide() and conv._EVERYWHERE[kind] is False


def test_the_probe_finds_what_this_cpu_has(monkeypatch):
    """oneDNN's CPU kernels take channels first, and run dilated transposed convolutions, in
    float32 (bfloat16 too on CPUs with bfloat16 instructions); TensorFlow's own do neither
    (TensorFlow 2.21, x86-64)."""
    import platform

    from tensorflow.python.util import _pywrap_util_port

    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("the expected answers are those of x86-64 CPUs")
    onednn = _pywrap_util_port.IsMklEnabled()
    monkeypatch.setattr(conv, "_KERNELS", {})
    answers = []

    @tf.function
    def traced():  # the probe runs eagerly even when first asked while tracing
        answers.append(conv.has_kernels("CPU", 2, tf.float32, "NCHW"))
        return tf.constant(0)

    traced.get_concrete_function()
    assert answers == [onednn]
    assert conv._KERNELS == {("CPU", (2, tf.float32, "NCHW", False)): onednn}  # asked once, kept
    assert conv.has_kernels("CPU", 3, tf.float32, "NCDHW") == onednn
    assert not conv.has_kernels("CPU", 2, tf.float64, "NCHW")
    # oneDNN's bfloat16 kernels depend on the CPU (present with AVX512-BF16 or AMX, absent on
    # many others): the answer must be what the public ops do here, and False without oneDNN.
    assert conv.has_kernels("CPU", 2, tf.bfloat16, "NCHW") == (onednn and _bfloat16_channels_first_runs())
    assert conv.has_kernels("CPU", 2, tf.float32, "NHWC", dilated_transpose=True) == onednn
    assert conv.has_kernels("CPU", 1, tf.float32, "NCW", dilated_transpose=True) == onednn
    assert not conv.has_kernels("CPU", 2, tf.float64, "NHWC", dilated_transpose=True)
    assert conv.has_kernels("CPU", 3, tf.float64, "NDHWC")


def _bfloat16_channels_first_runs() -> bool:
    """Whether a bfloat16 NCHW convolution and its gradients run on this CPU, through public ops."""
    x, w = tf.ones([1, 2, 4, 4], tf.bfloat16), tf.Variable(tf.ones([2, 2, 2, 3], tf.bfloat16))
    try:
        with tf.device("/CPU:0"), tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.nn.conv2d(x, w, strides=1, padding="SAME", data_format="NCHW")
        [g.numpy() for g in tape.gradient(y, [x, w])]
    except (tf.errors.OpError, ValueError):
        return False
    return True


@pytest.mark.parametrize("dtype", [tf.float64, tf.bfloat16])
def test_channels_first_in_other_dtypes(dtype, rng):
    """float64 has no channels-first CPU kernel even with oneDNN, nor has bfloat16 on CPUs without
    bfloat16 instructions: the transposes' path; either path equals the channels-last module."""
    x = rng.normal(size=(1, 2, 5, 4)).astype(np.float32)
    first, last = core.Conv2D(3, 3, data_format="NCHW"), core.Conv2D(3, 3)
    xf, xl = tf.cast(x, dtype), tf.cast(_to_last(x), dtype)
    first(xf), last(xl)
    core.utils.port_variables(last, first)
    tol = 1e-12 if dtype == tf.float64 else 0.0
    np.testing.assert_allclose(
        _to_last(tf.cast(first(xf), tf.float32).numpy()), tf.cast(last(xl), tf.float32).numpy(), atol=tol, rtol=tol
    )


def test_dilate_kernel_puts_zeros_between_the_taps():
    w = tf.reshape(tf.range(1.0, 7.0), [2, 3, 1, 1])
    expected = np.zeros([3, 7])
    expected[::2, ::3] = np.arange(1.0, 7.0).reshape(2, 3)
    np.testing.assert_array_equal(conv.dilate_kernel(w, (2, 3))[..., 0, 0].numpy(), expected)
    assert conv.dilate_kernel(w, (1, 1)) is w


@pytest.mark.parametrize(
    "make,shape",
    [
        (lambda: core.Conv1D(4, 3), [0, 8, 6]),
        (lambda: core.Conv2D(4, 3), [0, 8, 8, 6]),
        (lambda: core.Conv2D(4, 3, stride=2, padding="VALID"), [0, 9, 9, 6]),
        (lambda: core.Conv2D(4, 3, data_format="NCHW"), [0, 6, 8, 8]),
        (lambda: core.Conv3D(4, 3), [0, 4, 4, 4, 6]),
    ],
)
def test_an_empty_batch_gives_an_empty_output_of_the_output_shape(make, shape):
    """TensorFlow 2.21's oneDNN convolutions return an empty batch unchanged (the input's
    channels); ours give the output's shape with oneDNN on and off, eagerly and traced."""
    conv = make()
    one = conv(tf.ones([1, *shape[1:]]))
    for call in (conv, tf.function(conv)):
        assert call(tf.zeros(shape)).shape == [0, *one.shape[1:]]


def test_a_conv_lstm_builds_and_steps_on_an_empty_batch():
    lstm = core.Conv2DLSTM([8, 8, 6], 4, 5)
    outputs, state = lstm(tf.zeros([0, 8, 8, 6]), lstm.initial_state(0))
    assert outputs.shape == [0, 8, 8, 4] and state.cell.shape == [0, 8, 8, 4]
