"""BatchNorm: parity with Sonnet (outputs, input gradients, moving statistics), flags, replicas, errors."""

import contextlib

import numpy as np
import pytest
import sonnet as snt
import tensorflow as tf

import core
from tests.core.parity import assert_parity

TOL = 1e-5

LAYOUTS = [  # (input shape, data_format); rank 4 channels last is the fused kernel's case
    ((5, 3), "channels_last"),
    ((5, 3), "channels_first"),
    ((2, 3, 3, 4), "channels_last"),
    ((2, 4, 3, 3), "channels_first"),
    ((2, 3, 4), "NCW"),
]
layouts = pytest.mark.parametrize("shape,data_format", LAYOUTS, ids=[f"{len(s)}d-{f}" for s, f in LAYOUTS])


def train(m, x):
    return m(x, is_training=True)


def infer(m, x):
    return m(x, is_training=False)


def local_stats(m, x):
    return m(x, is_training=False, test_local_stats=True)


def assert_same_state(ours, theirs):
    theirs_by_name = {v.name.split("/", 1)[1]: v.numpy() for v in theirs.variables}
    ours_by_name = {v.name.split("/", 1)[1]: v.numpy() for v in ours.variables}
    assert ours_by_name.keys() == theirs_by_name.keys()
    for name, value in ours_by_name.items():
        np.testing.assert_allclose(value, theirs_by_name[name], rtol=TOL, atol=TOL, err_msg=name)


@layouts
@pytest.mark.parametrize(
    "create", [(True, True), (False, True), (True, False)], ids=["scale_offset", "offset", "scale"]
)
def test_matches_sonnet(shape, data_format, create, rng):
    ours = core.BatchNorm(*create, decay_rate=0.9, data_format=data_format)
    theirs = snt.BatchNorm(*create, decay_rate=0.9, data_format=data_format)
    x = rng.normal(1.0, 2.0, size=shape).astype(np.float32)
    # Training: two updates of the moving statistics (building, then the compared call).
    assert_parity(ours, theirs, [x], train, train)
    assert_same_state(ours, theirs)
    for _ in range(2):
        x = rng.normal(-1.0, 0.5, size=shape).astype(np.float32)
        np.testing.assert_allclose(train(ours, x).numpy(), train(theirs, x).numpy(), rtol=TOL, atol=TOL)
    assert_same_state(ours, theirs)
    # Inference, with the moving statistics and with the batch's.
    x = rng.normal(size=shape).astype(np.float32)
    assert_parity(ours, theirs, [x], infer, infer)
    assert_parity(ours, theirs, [x], local_stats, local_stats)
    assert_same_state(ours, theirs)


@pytest.mark.parametrize("shape,data_format", [((5, 3), "channels_last"), ((2, 3, 3, 4), "channels_last")])
def test_matches_sonnet_with_scale_and_offset_given(shape, data_format, rng):
    channels = shape[-1]
    scale = rng.uniform(0.5, 2.0, size=[channels]).astype(np.float32)
    offset = rng.normal(size=[channels]).astype(np.float32)
    x = rng.normal(size=shape).astype(np.float32)
    for is_training in [True, False]:
        call = lambda m, x, s, o: m(x, is_training=is_training, scale=s, offset=o)  # noqa: E731
        assert_parity(
            core.BatchNorm(False, False, data_format=data_format),
            snt.BatchNorm(False, False, data_format=data_format),
            [x, scale, offset],
            call,
            call,
        )


def test_normalises_with_batch_statistics(rng):
    x = rng.normal(3.0, 2.0, size=(6, 2, 2))  # float64, channels first
    bn = core.BatchNorm(True, True, data_format="channels_first", offset_init=core.initializers.Constant(0.5))
    y = bn(tf.constant(x), is_training=True).numpy()
    mean = x.mean(axis=(0, 2), keepdims=True)
    var = x.var(axis=(0, 2), keepdims=True)
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5) + 0.5, rtol=1e-10)
    assert bn.scale.shape == [2, 1] and bn.scale.dtype == tf.float64
    # One update of a debiased average gives the batch statistics themselves.
    np.testing.assert_allclose(bn.moving_mean.value.numpy(), mean, rtol=1e-10)
    np.testing.assert_allclose(bn.moving_variance.value.numpy(), var, rtol=1e-10)


def test_rank4_channels_last_tracks_the_unbiased_variance_in_every_dtype(rng):
    """The fused kernel (float32) and the general path (float64) agree on Sonnet's rule."""
    x = rng.normal(size=(2, 2, 3, 2))
    n = x.size // 2
    for dtype in [tf.float32, tf.float64]:
        bn = core.BatchNorm(False, False, decay_rate=0.5)
        bn(tf.constant(x, dtype), is_training=True)
        np.testing.assert_allclose(bn.moving_variance.value.numpy().ravel(), x.reshape(n, 2).var(0, ddof=1), rtol=1e-5)


@pytest.mark.parametrize("mode", ["eager", "function", "xla"])
@pytest.mark.parametrize("shape", [(4, 3), (2, 2, 2, 3)])
def test_tensor_flags_match_python_flags(mode, shape, rng):
    """A boolean tensor selects without control flow; results equal those of Python bools."""
    xs = [rng.normal(size=shape).astype(np.float32) for _ in range(3)]
    flags = [(True, False), (False, False), (False, True)]
    by_python = core.BatchNorm(True, True, decay_rate=0.5)
    by_tensor = core.BatchNorm(True, True, decay_rate=0.5)
    fn = lambda x, t, local: by_tensor(x, is_training=t, test_local_stats=local)  # noqa: E731
    fn = {"eager": fn, "function": tf.function(fn), "xla": tf.function(fn, jit_compile=True)}[mode]
    by_tensor(xs[0], is_training=False)  # variables exist before tracing
    for x, (t, local) in zip(xs, flags):
        want = by_python(x, is_training=t, test_local_stats=local).numpy()
        got = fn(x, tf.constant(t), tf.constant(local)).numpy()
        np.testing.assert_allclose(got, want, rtol=TOL, atol=TOL)
        for a, b in zip(by_tensor.variables, by_python.variables):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=TOL, atol=TOL, err_msg=a.name)


@pytest.mark.parametrize("flag", [True, tf.constant(True)], ids=["python", "tensor"])
def test_replicas_keep_equal_moving_statistics(flag, mirrored, rng):
    """Each replica normalises by its own batch; the moving statistics average the replicas'.

    The moving mean follows the mean over replicas of their batch means, the moving
    variance the mean of their batch variances (not the variance of the whole batch).
    """
    with mirrored.scope():
        bn = core.BatchNorm(True, True, decay_rate=0.5)
    steps = [[rng.normal(i, 1.0 + i, size=(4, 3)).astype(np.float32) for i in range(4)] for _ in range(2)]

    def distribute(per_replica):
        return mirrored.experimental_distribute_values_from_function(
            lambda ctx: per_replica[ctx.replica_id_in_sync_group]
        )

    mirrored.run(lambda x: bn(x, is_training=False), args=(distribute(steps[0]),))
    step = tf.function(lambda x: mirrored.run(lambda x: bn(x, is_training=flag), args=(x,)))
    outputs = [mirrored.experimental_local_results(step(distribute(xs))) for xs in steps]

    for x, y in zip(steps[-1], outputs[-1]):  # normalised by the replica's own statistics
        np.testing.assert_allclose(y.numpy(), (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5), rtol=TOL, atol=TOL)
    for var in bn.variables:
        copies = [c.numpy() for c in mirrored.experimental_local_results(var)]
        assert all(np.array_equal(c, copies[0]) for c in copies), f"{var.name} differs between replicas"
    mean_hidden = var_hidden = 0.0
    for xs in steps:
        mean_hidden = 0.5 * mean_hidden + 0.5 * np.mean([x.mean(0) for x in xs], axis=0)
        var_hidden = 0.5 * var_hidden + 0.5 * np.mean([x.var(0) for x in xs], axis=0)
    np.testing.assert_allclose(bn.moving_mean.value.numpy().ravel(), mean_hidden / 0.75, rtol=TOL, atol=TOL)
    np.testing.assert_allclose(bn.moving_variance.value.numpy().ravel(), var_hidden / 0.75, rtol=TOL, atol=TOL)


def test_bad_inputs():
    bn = core.BatchNorm(True, True, name="bn")
    with pytest.raises(TypeError, match=r"missing 1 required positional argument: 'is_training'"):
        bn(tf.ones([2, 3]))
    with pytest.raises(ValueError, match=r"BatchNorm 'bn': expected inputs of rank at least 2 .* got shape \(3,\)"):
        bn(tf.ones([3]), is_training=True)
    with pytest.raises(TypeError, match=r"BatchNorm 'bn': inputs must be floating point, got dtype int32"):
        bn(tf.ones([2, 3], tf.int32), is_training=True)
    bn(tf.ones([2, 3]), is_training=True)
    with pytest.raises(
        TypeError, match=r"BatchNorm 'bn': is_training must be a bool or a boolean scalar tensor, got None"
    ):
        bn(tf.ones([2, 3]), is_training=None)
    with pytest.raises(
        TypeError, match=r"'bn': test_local_stats must be a boolean scalar, got dtype float32 and shape \(\)"
    ):
        bn(tf.ones([2, 3]), False, tf.constant(1.0))
    with pytest.raises(ValueError, match=r"BatchNorm 'bn': expected inputs of rank 2, got shape \(2, 1, 3\)"):
        bn(tf.ones([2, 1, 3]), is_training=True)
    with pytest.raises(
        ValueError, match=r"BatchNorm 'bn': expected inputs with channel count 3 on axis -1, got shape \(2, 4\)"
    ):
        bn(tf.ones([2, 4]), is_training=True)
    with pytest.raises(TypeError, match=r"BatchNorm 'bn': inputs have dtype float64, but the module works in float32"):
        bn(tf.ones([2, 3], tf.float64), is_training=False)
    with pytest.raises(
        ValueError, match=r"'bn': scale passed at call time, but the module learns its own \(create_scale=True\)"
    ):
        bn(tf.ones([2, 3]), is_training=True, scale=tf.ones([3]))
    with pytest.raises(ValueError, match=r"'bn': offset passed at call time, but the module learns its own"):
        bn(tf.ones([2, 3]), is_training=True, offset=tf.ones([3]))
    with pytest.raises(ValueError, match="BatchNorm 'batch_norm': scale_init given but create_scale=False"):
        core.BatchNorm(False, True, scale_init=core.initializers.Ones())
    with pytest.raises(ValueError, match="offset_init given but create_offset=False"):
        core.BatchNorm(True, False, offset_init=core.initializers.Ones())
    with pytest.raises(ValueError, match=r"unknown data_format 'HWCN'; use 'channels_last', 'channels_first'"):
        core.BatchNorm(True, True, data_format="HWCN")
    with pytest.raises(ValueError, match=r"decay_rate must be in \[0, 1\), got 1.5"):
        core.BatchNorm(True, True, decay_rate=1.5)
    with pytest.raises(ValueError, match="eps must be a positive number, got 0"):
        core.BatchNorm(True, True, eps=0)
    unknown = core.BatchNorm(True, True, data_format="NC")
    with pytest.raises(ValueError, match=r"the channel count \(axis 1\) must be known, got shape \(2, None\)"):
        tf.function(lambda x: unknown(x, True)).get_concrete_function(tf.TensorSpec([2, None]))


# --- large means, every path ------------------------------------------------------------

LARGE_MEAN_LAYOUTS = {  # whole-batch shape (split over the batch axis between replicas), data_format
    "rank2": ((8, 3), "channels_last"),
    "rank4_nhwc": ((4, 2, 2, 3), "channels_last"),
    "rank4_nchw": ((4, 3, 2, 2), "channels_first"),
}
# XLA around a MirroredStrategy step does not compile on CPU: the traced function runs
# on one device and TensorFlow refuses its access to the other replicas' variables
# ("Trying to access resource ... located in device CPU:1 from device CPU:0", XLA known
# issue tfvariable_on_a_different_device), whatever the module.
_NO_MIRRORED_XLA = pytest.mark.skip(reason="XLA cannot compile a MirroredStrategy step over logical CPUs")
LARGE_MEAN_RUNS = [
    pytest.param(strategy, mode, marks=[_NO_MIRRORED_XLA] if (strategy, mode) == ("mirrored", "xla") else [])
    for strategy in ["default", "one_device", "mirrored"]
    for mode in ["eager", "function", "xla"]
]


def batch_norm_reference(xs, channel_axis, unbiased):
    """Outputs, moving mean and moving variance after one debiased update, in float64.

    `xs` is one batch per group of replicas sharing statistics.
    """
    axes = tuple(i for i in range(xs[0].ndim) if i != channel_axis % xs[0].ndim)
    ys, means, variances = [], [], []
    for x in xs:
        x = x.astype(np.float64)
        mean, var = x.mean(axes, keepdims=True), x.var(axes, keepdims=True)
        n = x.size // x.shape[channel_axis]
        ys.append((x - mean) / np.sqrt(var + 1e-5))
        means.append(mean)
        variances.append(var * (n / (n - 1) if unbiased else 1.0))
    return np.concatenate(ys), np.mean(means, axis=0), np.mean(variances, axis=0)


@pytest.mark.parametrize("layout", LARGE_MEAN_LAYOUTS)
@pytest.mark.parametrize("strategy,mode", LARGE_MEAN_RUNS)
@pytest.mark.parametrize("cls", [core.BatchNorm, core.CrossReplicaBatchNorm], ids=lambda c: c.__name__)
def test_large_mean_stays_accurate(cls, strategy, mode, layout, mirrored, rng):
    """float32 data of mean 1e4 and spread 1: variance within 1e-3, outputs within 1e-2.

    XLA lowers TensorFlow's fused batch-norm kernel with E[x^2] - E[x]^2, which gets the
    variance wrong by a factor of about 80 here. Training, then inference with the
    moving statistics so made, in one step.
    """
    shape, data_format = LARGE_MEAN_LAYOUTS[layout]
    channel_axis = -1 if data_format == "channels_last" else 1
    x = (1e4 + rng.normal(size=shape)).astype(np.float32)
    x += np.arange(shape[0], dtype=np.float32).reshape([-1] + [1] * (len(shape) - 1))  # replicas differ
    strategy = {"default": None, "one_device": tf.distribute.OneDeviceStrategy("/cpu:0"), "mirrored": mirrored}[
        strategy
    ]
    replicas = 1 if strategy is None else strategy.num_replicas_in_sync
    with strategy.scope() if strategy else contextlib.nullcontext():
        bn = cls(False, False, decay_rate=0.5, data_format=data_format)

    def call(is_training):
        def replica_fn(x):
            if not is_training:
                return bn(x, is_training=False)
            return bn(x, is_training=True), bn(x, is_training=False)

        return replica_fn if strategy is None else lambda x: strategy.run(replica_fn, args=(x,))

    if replicas == 1:
        inputs = tf.constant(x)
    else:
        parts = np.split(x, replicas)
        inputs = strategy.experimental_distribute_values_from_function(lambda ctx: parts[ctx.replica_id_in_sync_group])
    call(False)(inputs)  # builds the variables eagerly, before any tracing
    train = call(True)
    if mode != "eager":
        train = tf.function(train, jit_compile=mode == "xla")
    y, y_inference = train(inputs)
    if replicas > 1:
        local = strategy.experimental_local_results
        y, y_inference = [np.concatenate([t.numpy() for t in local(ys)]) for ys in (y, y_inference)]

    groups = np.split(x, replicas) if cls is core.BatchNorm else [x]
    unbiased = len(shape) == 4 and channel_axis == -1
    want_y, want_mean, want_var = batch_norm_reference(groups, channel_axis, unbiased)
    np.testing.assert_allclose(bn.moving_variance.value.numpy(), want_var, rtol=1e-3)
    np.testing.assert_allclose(bn.moving_mean.value.numpy(), want_mean, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(y), want_y, atol=1e-2)
    np.testing.assert_allclose(np.asarray(y_inference), (x - want_mean) / np.sqrt(want_var + 1e-5), atol=1e-2)


# --- half precision ---------------------------------------------------------------------

HALF_TOLERANCES = {  # dtype: (relative, for the moving statistics; absolute, for outputs of magnitude ~3)
    tf.bfloat16: (1e-2, 3e-2),
    tf.float16: (2e-3, 4e-3),
}


@pytest.mark.parametrize("mode", ["eager", "xla_tensor_flags"])
@pytest.mark.parametrize("shape", [(8, 3), (2, 2, 2, 3)], ids=["rank2", "rank4_nhwc"])
@pytest.mark.parametrize("dtype", HALF_TOLERANCES, ids=lambda d: d.name)
@pytest.mark.parametrize("cls", [core.BatchNorm, core.CrossReplicaBatchNorm], ids=lambda c: c.__name__)
def test_half_precision_matches_float32(cls, dtype, shape, mode, rng):
    """With the default decay 0.999, which is 1.0 in bfloat16: finite, and a float32 run's within precision.

    The float32 run sees the same (rounded) inputs, so the difference is the module's own.
    """
    rtol, atol = HALF_TOLERANCES[dtype]
    xs = [tf.cast(rng.normal(1.0, 2.0, size=shape), dtype) for _ in range(3)]
    results = {}
    for run_dtype in [dtype, tf.float32]:
        bn = cls(True, True)
        bn(tf.cast(xs[0], run_dtype), is_training=False)
        call, flag = (lambda x, t: bn(x, is_training=t)), bool  # noqa: E731
        if mode == "xla_tensor_flags":
            call, flag = tf.function(call, jit_compile=True), tf.constant
        outputs = [call(tf.cast(x, run_dtype), flag(True)) for x in xs]
        outputs.append(call(tf.cast(xs[0], run_dtype), flag(False)))
        assert all(o.dtype == run_dtype for o in outputs)
        stats = [bn.moving_mean.value, bn.moving_variance.value]
        assert all(v.dtype == run_dtype for v in stats + [bn.scale, bn.offset])
        results[run_dtype] = [tf.cast(t, tf.float32).numpy() for t in outputs + stats]
    for got, want in zip(results[dtype][:-2], results[tf.float32][:-2]):
        assert np.all(np.isfinite(got))
        np.testing.assert_allclose(got, want, atol=atol)
    for got, want in zip(results[dtype][-2:], results[tf.float32][-2:]):
        np.testing.assert_allclose(got, want, rtol=rtol)


# --- call-time scale and offset, flags, NumPy scalars --------------------------------------


def test_call_time_scale_and_offset_must_keep_the_inputs_shape(rng):
    bn = core.BatchNorm(False, False, name="bn")
    with pytest.raises(
        ValueError, match=r"BatchNorm 'bn': scale of shape \(4, 1, 3\) does not broadcast to the inputs' shape \(2, 3\)"
    ):
        bn(tf.ones([2, 3]), is_training=True, scale=tf.ones([4, 1, 3]))
    with pytest.raises(
        ValueError, match=r"'bn': offset of shape \(3, 3\) does not broadcast to the inputs' shape \(2, 3\)"
    ):
        bn(tf.ones([2, 3]), is_training=False, offset=np.ones([3, 3], np.float32))
    traced = tf.function(lambda x, s: bn(x, is_training=True, scale=s))
    with pytest.raises(
        ValueError, match=r"scale of shape \(None, 1, 3\) does not broadcast to the inputs' shape \(None, 3\)"
    ):
        traced.get_concrete_function(tf.TensorSpec([None, 3]), tf.TensorSpec([None, 1, 3]))

    # Per-example values ([batch, 1, 1, channels], conditional batch norm) are fine.
    x = rng.normal(size=(2, 2, 2, 3)).astype(np.float32)
    scale = rng.uniform(0.5, 2.0, size=(2, 1, 1, 3)).astype(np.float32)
    offset = rng.normal(size=(2, 1, 1, 3)).astype(np.float32)
    conditional = core.BatchNorm(False, False)
    y = conditional(x, is_training=True, scale=scale, offset=offset).numpy()
    mean, var = x.mean((0, 1, 2)), x.var((0, 1, 2))
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5) * scale + offset, rtol=TOL, atol=TOL)
    assert conditional(x, is_training=False, scale=scale, offset=offset).shape == x.shape


def test_flags_must_be_booleans():
    bn = core.BatchNorm(True, True, name="bn")
    x = tf.ones([2, 3])
    with pytest.raises(
        TypeError, match=r"BatchNorm 'bn': is_training must be a bool or a boolean scalar tensor, got 'no'"
    ):
        bn(x, is_training="no")
    with pytest.raises(TypeError, match=r"'bn': test_local_stats must be a bool or a boolean scalar tensor, got 1$"):
        bn(x, is_training=False, test_local_stats=1)
    assert not bn.moving_mean.counter.numpy()  # nothing ran
    # NumPy booleans are booleans.
    np.testing.assert_array_equal(bn(x, is_training=np.bool_(True)).numpy(), bn(x, is_training=True).numpy())
    np.testing.assert_array_equal(bn(x, np.array(False), np.array(True)).numpy(), bn(x, False, True).numpy())
    assert bn.moving_mean.counter.numpy() == 2


def test_numpy_scalars_are_accepted(rng):
    x = rng.normal(size=(4, 3)).astype(np.float32)
    by_numpy = core.BatchNorm(True, True, decay_rate=np.float32(0.5), eps=np.float64(1e-3))
    by_python = core.BatchNorm(True, True, decay_rate=float(np.float32(0.5)), eps=1e-3)
    for bn in (by_numpy, by_python):
        bn(x, is_training=True)
    for a, b in zip(by_numpy.variables, by_python.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.name)
    with pytest.raises(ValueError, match=r"BatchNorm 'batch_norm': decay_rate must be in \[0, 1\), got True"):
        core.BatchNorm(True, True, decay_rate=True)
    with pytest.raises(ValueError, match=r"BatchNorm 'batch_norm': eps must be a positive number, got True"):
        core.BatchNorm(True, True, eps=True)


def test_large_mean_over_many_elements(rng):
    """A one-pass float32 mean is off by ~1.5e-2 here (4096 values of mean 1e4); the
    shifted statistics keep it within float32's rounding of 1e4, 5e-4."""
    x = (1e4 + rng.normal(size=(4096, 3))).astype(np.float32)
    bn = core.BatchNorm(False, False, decay_rate=0.5)
    y = bn(x, is_training=True).numpy()
    want_y, want_mean, want_var = batch_norm_reference([x], -1, unbiased=False)
    np.testing.assert_allclose(bn.moving_mean.value.numpy(), want_mean, atol=1e-3, rtol=0)
    np.testing.assert_allclose(bn.moving_variance.value.numpy(), want_var, rtol=1e-4)
    np.testing.assert_allclose(y, want_y, atol=1e-3)


@pytest.mark.parametrize("mode", ["eager", "function", "xla"])
def test_large_mean_with_an_outlying_first_example(mode, rng):
    """Training shifts the inputs by the first example's mean. Here that example sits 50
    spreads above the other 63, the worst place for it: the shifted values' mean is then
    close to the bound of sqrt(batch - 1) spreads, and XLA's E[x^2] - E[x]^2 on them must
    still get the variance to 1e-3."""
    x = (1e4 + rng.normal(size=(64, 2, 2, 3))).astype(np.float32)
    x[0] += 50.0
    bn = core.BatchNorm(False, False, decay_rate=0.0)
    train = lambda x: bn(x, is_training=True)  # noqa: E731
    if mode != "eager":
        train = tf.function(train, jit_compile=mode == "xla")
    y = train(tf.constant(x)).numpy()
    want_y, want_mean, want_var = batch_norm_reference([x], -1, unbiased=True)
    shifted_mean = (x.astype(np.float64) - x[:1].mean((0, 1, 2))).mean((0, 1, 2))
    assert np.all(shifted_mean**2 / want_var.ravel() > 40), "the first example should be an outlier"
    np.testing.assert_allclose(bn.moving_variance.value.numpy(), want_var, rtol=1e-3)
    np.testing.assert_allclose(bn.moving_mean.value.numpy(), want_mean, atol=1e-3, rtol=0)
    np.testing.assert_allclose(y, want_y, atol=1e-2)


# --- gradients: the fused kernel's and the closed form's, against autodiff in float64 ------

GRADIENT_LAYOUTS = {  # shape, data_format
    "rank2": ((6, 3), "channels_last"),
    "rank4_nhwc": ((3, 2, 2, 3), "channels_last"),
    "rank4_nchw": ((3, 3, 2, 2), "channels_first"),
    "rank3_ncw": ((3, 3, 4), "NCW"),
}
# How scale and offset are given: learnt, absent, or at call time with these shapes
# ("channel" is [channels] in the layout's position, "example" [batch, 1, ..., channels]).
GRADIENT_PARAMS = {
    "learnt": None,
    "absent": (),
    "channel": ("channel", "channel"),
    "example": ("example", "example"),
    "example_scale_channel_offset": ("example", "channel"),
    "example_shared_by_channels": ("example_all_channels", None),
}


def textbook_batch_norm(x, axes, scale=None, offset=None):
    """Batch norm by the definition, in plain TensorFlow ops: the reference autodiff differentiates."""
    mean = tf.reduce_mean(x, axes, keepdims=True)
    y = (x - mean) * tf.math.rsqrt(tf.reduce_mean(tf.square(x - mean), axes, keepdims=True) + 1e-5)
    y = y if scale is None else y * scale
    return y if offset is None else y + offset


def first_and_second_derivatives(fn, x, params, w, v):
    """fn(x, *params), d(sum(w * y))/d(x, params), and d(sum(v * dx))/d(x, params)."""
    with tf.GradientTape() as outer:
        outer.watch([x] + params)
        with tf.GradientTape() as inner:
            inner.watch([x] + params)
            y = fn(x, *params)
            loss = tf.reduce_sum(y * w)
        first = inner.gradient(loss, [x] + params)
        second_loss = tf.reduce_sum(first[0] * v)
    second = outer.gradient(second_loss, [x] + params, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return [y] + first + second


@pytest.mark.parametrize("mode", ["eager", "function", "xla"])
@pytest.mark.parametrize("params", GRADIENT_PARAMS)
@pytest.mark.parametrize("layout", GRADIENT_LAYOUTS)
@pytest.mark.parametrize("dtype", [tf.float32, tf.float64], ids=lambda d: d.name)
def test_gradients_match_autodiff_of_the_definition(dtype, layout, params, mode, rng):
    """Outputs, gradients (inputs, scale, offset) and second derivatives of training, every way of
    giving scale and offset. float32 runs the fused kernel; float64 the closed-form gradient."""
    shape, data_format = GRADIENT_LAYOUTS[layout]
    axis = -1 % len(shape) if data_format == "channels_last" else 1
    axes = [i for i in range(len(shape)) if i != axis]
    param_shapes = {
        "channel": [shape[axis] if i == axis else 1 for i in range(len(shape))],
        "example": [shape[i] if i in (0, axis) else 1 for i in range(len(shape))],
        "example_all_channels": [shape[0]] + [1] * (len(shape) - 1),
    }
    x = rng.normal(3.0, 2.0, size=shape)
    w, v = rng.normal(size=shape), rng.normal(size=shape)
    learnt = GRADIENT_PARAMS[params] is None
    bn = core.BatchNorm(
        learnt,
        learnt,
        scale_init=core.initializers.RandomNormal(1.0, 0.3) if learnt else None,
        offset_init=core.initializers.RandomNormal(0.0, 0.3) if learnt else None,
        data_format=data_format,
    )
    bn(tf.constant(x, dtype), is_training=False)
    if learnt:
        values = [bn.scale.numpy(), bn.offset.numpy()]
        given = []
    else:
        values = [None if s is None else rng.uniform(0.5, 2.0, size=param_shapes[s]) for s in GRADIENT_PARAMS[params]]
        given = [tf.constant(p, dtype) for p in values if p is not None]
    names = [n for n, p in zip(["scale", "offset"], values) if p is not None]

    def ours(x, *given):
        return bn(x, is_training=True, **dict(zip(names, given)))

    if learnt:  # the variables' gradients, through their reads

        def derivatives(x, w, v):
            with tf.GradientTape() as outer:
                outer.watch(x)
                with tf.GradientTape() as inner:
                    inner.watch(x)
                    y = bn(x, is_training=True)
                    loss = tf.reduce_sum(y * w)
                first = inner.gradient(loss, [x, bn.scale, bn.offset])
                second_loss = tf.reduce_sum(first[0] * v)
            zero = tf.UnconnectedGradients.ZERO
            return [y] + first + outer.gradient(second_loss, [x, bn.scale, bn.offset], unconnected_gradients=zero)

    else:

        def derivatives(x, w, v, *given):
            return first_and_second_derivatives(ours, x, list(given), w, v)

    if mode != "eager":
        derivatives = tf.function(derivatives, jit_compile=mode == "xla")
    got = derivatives(*[tf.constant(t, dtype) for t in [x, w, v]], *given)

    reference_params = [
        tf.constant(p.astype(np.float64).reshape(param_shapes["channel"]) if learnt else p)
        for p in values
        if p is not None
    ]

    def reference(x, *params):
        return textbook_batch_norm(x, axes, **dict(zip(names, params)))

    want = first_and_second_derivatives(reference, tf.constant(x), reference_params, tf.constant(w), tf.constant(v))
    what = ["outputs", "d inputs"] + [f"d {n}" for n in names] + ["d2 inputs"] + [f"d2 inputs, {n}" for n in names]
    tol = 1e-4 if dtype == tf.float32 else 1e-10
    for name, a, b in zip(what, got, want, strict=True):
        b = np.zeros(a.shape) if b is None else b.numpy()
        np.testing.assert_allclose(a.numpy(), b.reshape(a.shape), rtol=tol, atol=tol, err_msg=name)
