"""Optimizers: parity with Sonnet, schedules, None and sparse updates, modes, replicas, errors."""

import copy

import numpy as np
import pytest
import sonnet as snt
import tensorflow as tf

import core
from core.optimizers import schedules

STEPS = 10
TOL = 1e-6

# name -> (ours, Sonnet's), each a function of the learning rate.
OPTIMIZERS = {
    "SGD": (lambda lr: core.optimizers.SGD(lr), lambda lr: snt.optimizers.SGD(lr)),
    "Momentum": (lambda lr: core.optimizers.Momentum(lr, 0.9), lambda lr: snt.optimizers.Momentum(lr, 0.9)),
    "Momentum_nesterov": (
        lambda lr: core.optimizers.Momentum(lr, 0.8, use_nesterov=True),
        lambda lr: snt.optimizers.Momentum(lr, 0.8, use_nesterov=True),
    ),
    "Adam": (lambda lr: core.optimizers.Adam(lr), lambda lr: snt.optimizers.Adam(lr)),
    "Adam_custom": (
        lambda lr: core.optimizers.Adam(lr, beta1=0.5, beta2=0.9, epsilon=1e-3),
        lambda lr: snt.optimizers.Adam(lr, beta1=0.5, beta2=0.9, epsilon=1e-3),
    ),
    "RMSProp": (lambda lr: core.optimizers.RMSProp(lr), lambda lr: snt.optimizers.RMSProp(lr)),
    "RMSProp_centered_momentum": (
        lambda lr: core.optimizers.RMSProp(lr, decay=0.8, momentum=0.5, epsilon=1e-6, centered=True),
        lambda lr: snt.optimizers.RMSProp(lr, decay=0.8, momentum=0.5, epsilon=1e-6, centered=True),
    ),
}


def make_parameters(rng, dtype=np.float32):
    """A [5, 3] table and a [3] bias, named like a module's."""
    return [
        tf.Variable(rng.normal(size=(5, 3)).astype(dtype), name="net/table"),
        tf.Variable(rng.normal(size=(3,)).astype(dtype), name="net/bias"),
    ]


def dense_updates(rng, steps=STEPS):
    normal = lambda *shape: rng.normal(size=shape).astype(np.float32)  # noqa: E731
    return [[normal(5, 3), normal(3)] for _ in range(steps)]


def sparse_updates(rng, steps=STEPS):
    """IndexedSlices of both parameters, with repeated indices (which must be summed)."""
    out = []
    for _ in range(steps):
        table_rows = rng.randint(0, 5, size=4)
        bias_rows = np.array([1, rng.randint(0, 3), 1])
        table = tf.constant(rng.normal(size=(4, 3)).astype(np.float32))
        bias = tf.constant(rng.normal(size=(3,)).astype(np.float32))
        out.append(
            [
                tf.IndexedSlices(table, tf.constant(table_rows), tf.constant([5, 3])),
                tf.IndexedSlices(bias, tf.constant(bias_rows), tf.constant([3])),
            ]
        )
    return out


def values(variables):
    return [v.numpy() for v in variables]


# --- parity with Sonnet ----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
@pytest.mark.parametrize("rate", ["float", "variable"])
def test_matches_sonnet(name, sparse, rate, rng):
    make_ours, make_theirs = OPTIMIZERS[name]
    if rate == "float":
        ours, theirs = make_ours(0.1), make_theirs(0.1)
        our_rate = their_rate = None
    else:
        our_rate, their_rate = tf.Variable(0.1, name="lr"), tf.Variable(0.1, name="lr")
        ours, theirs = make_ours(our_rate), make_theirs(their_rate)
    params = make_parameters(rng)
    our_params = [tf.Variable(p, name=p.name.split(":")[0]) for p in params]
    their_params = [tf.Variable(p, name=p.name.split(":")[0]) for p in params]
    updates = sparse_updates(rng) if sparse else dense_updates(rng)
    for step, update in enumerate(updates):
        if rate == "variable" and step == STEPS // 2:
            # Changing the variable changes the next step.
            our_rate.assign(0.03)
            their_rate.assign(0.03)
        ours.apply(update, our_params)
        theirs.apply(update, their_params)
    for a, b in zip(values(our_params), values(their_params)):
        np.testing.assert_allclose(a, b, atol=TOL, rtol=0)
    assert not np.allclose(values(our_params)[0], values(params)[0])
    if name != "SGD":  # SGD has no state in either library
        # Same state names and shapes: port_variables maps Sonnet's state onto ours.
        their_state = {v.name: v.numpy() for v in theirs.variables}
        pairs = core.utils.port_variables(theirs, ours)
        assert len(pairs) == len(theirs.variables) == len(ours.variables)
        for v in ours.variables:
            np.testing.assert_allclose(v.numpy(), their_state[v.name], atol=TOL, rtol=0, err_msg=v.name)


def test_state_names_match_sonnet(rng):
    for name, (make_ours, make_theirs) in OPTIMIZERS.items():
        if name == "SGD":
            continue
        ours, theirs = make_ours(0.1), make_theirs(0.1)
        params = make_parameters(rng)
        ours.build(params)
        theirs.apply([tf.zeros_like(p) for p in params], params)
        described = lambda opt: sorted((v.name, tuple(v.shape), v.dtype.name) for v in opt.variables)  # noqa: E731
        assert described(ours) == described(theirs), name
        core.utils.port_variables(theirs, ours)
        core.utils.port_variables(ours, theirs)


def test_restores_a_sonnet_checkpoint(rng, tmp_path):
    # Attributes are named as Sonnet's, so object-based checkpoints carry over too.
    params = make_parameters(rng)
    theirs = snt.optimizers.Adam(0.1)
    for update in dense_updates(rng, steps=3):
        theirs.apply([tf.constant(u) for u in update], params)
    path = tf.train.Checkpoint(opt=theirs).write(str(tmp_path / "ckpt"))
    ours = core.optimizers.Adam(0.1)
    status = tf.train.Checkpoint(opt=ours).read(path)
    ours.build(params)  # the slots take the saved values as they are made
    status.assert_consumed()
    for a, b in zip(sorted(ours.variables, key=lambda v: v.name), sorted(theirs.variables, key=lambda v: v.name)):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.name)


def test_deepcopy_with_its_parameters(rng):
    holder = tf.Module()
    holder.params = make_parameters(rng)
    holder.opt = core.optimizers.Momentum(0.1, 0.9)
    holder.opt.apply([tf.ones_like(p) for p in holder.params], holder.params)
    clone = copy.deepcopy(holder)
    before = values(holder.params) + values(holder.opt.variables)
    clone.opt.apply([tf.ones_like(p) for p in clone.params], clone.params)
    for a, b in zip(values(holder.params) + values(holder.opt.variables), before):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(clone.params[0].numpy(), before[0])


def test_deepcopy_of_the_optimizer_alone_serves_the_same_parameters(rng):
    params = make_parameters(rng)
    start = values(params)
    opt = core.optimizers.Momentum(0.1, 0.9)
    opt.apply([tf.ones_like(p) for p in params], params)
    slots = values(opt.variables)
    clone = copy.deepcopy(opt)
    clone.apply([tf.ones_like(p) for p in params], params)  # the original parameters, not copies
    # Two steps of 0.1 * accumulated: 1, then 0.9 * 1 + 1 (the copy kept the accumulator).
    np.testing.assert_allclose(params[1].numpy(), start[1] - 0.1 - 0.19, rtol=1e-6)
    for a, b in zip(values(opt.variables), slots):
        np.testing.assert_array_equal(a, b)  # the original's slots are its own
    assert not np.array_equal(values(clone.variables)[0], slots[0])
    # A separate copy of the parameters is not what the slots were built for, and the
    # error says why although the names agree.
    copied = copy.deepcopy(params)
    with pytest.raises(
        ValueError,
        match=r"Momentum 'momentum': parameter 0 is not the variable the slots were built for: both are named "
        r"'net/table:0', but they are different variables",
    ):
        clone.apply([tf.ones_like(p) for p in copied], copied)


@pytest.mark.parametrize("optimizer_first", [True, False])
def test_deepcopy_together_serves_the_copied_parameters(optimizer_first, rng):
    params = make_parameters(rng)
    opt = core.optimizers.Adam(0.1)
    opt.apply([tf.ones_like(p) for p in params], params)
    before = values(params) + values(opt.variables)
    if optimizer_first:  # the parameters are copied after the optimizer within one call
        opt_copy, params_copy = copy.deepcopy((opt, params))
    else:
        params_copy, opt_copy = copy.deepcopy((params, opt))
    opt_copy.apply([tf.ones_like(p) for p in params_copy], params_copy)
    for a, b in zip(values(params) + values(opt.variables), before):
        np.testing.assert_array_equal(a, b)
    assert int(opt_copy.step) == 2 and int(opt.step) == 1
    with pytest.raises(ValueError, match=r"parameter 0 is not the variable the slots were built for"):
        opt_copy.apply([tf.ones_like(p) for p in params], params)


def test_sgd_takes_any_parameter_list_like_sonnet(rng):
    # One SGD for a GAN's generator and discriminator: different lists in turn.
    generator, discriminator = make_parameters(rng), make_parameters(rng)
    ours = core.optimizers.SGD(0.1)
    theirs = snt.optimizers.SGD(0.1)
    copies = [[tf.Variable(p) for p in ps] for ps in (generator, discriminator)]
    for params, their_params in [(generator, copies[0]), (discriminator, copies[1]), (generator[:1], copies[0][:1])]:
        updates = [tf.constant(rng.normal(size=p.shape).astype(np.float32)) for p in params]
        ours.apply(updates, params)
        theirs.apply(updates, their_params)
    for a, b in zip(values(generator + discriminator), values(copies[0] + copies[1])):
        np.testing.assert_allclose(a, b, atol=TOL, rtol=0)
    ours.build(discriminator)  # nothing to build, and no fixed list
    with pytest.raises(TypeError, match=r"SGD 'sgd': parameter 1 is not a tf.Variable"):
        ours.apply([tf.ones([5, 3]), tf.ones([3])], [generator[0], tf.ones([3])])
    with pytest.raises(ValueError, match=r"SGD 'sgd': parameters is empty"):
        ours.apply([], [])
    # With a schedule, the step counter counts every apply, whichever list it was given.
    scheduled = core.optimizers.SGD(schedules.LinearDecay(0.1, 0.0, decay_steps=10))
    scheduled.apply([tf.ones([3])], [generator[1]])
    scheduled.apply([tf.ones([3])], [discriminator[1]])
    assert int(scheduled.step) == 2


def test_optimizers_with_slots_keep_one_list(rng):
    params = make_parameters(rng)
    opt = core.optimizers.Momentum(0.1, 0.9)
    opt.apply([tf.ones_like(p) for p in params], params)
    with pytest.raises(ValueError, match=r"Momentum 'momentum': got 1 parameters, but the slots were built for 2"):
        opt.apply([tf.ones([5, 3])], params[:1])


@pytest.mark.parametrize("name", ["SGD", "Momentum_nesterov", "Adam", "RMSProp_centered_momentum"])
@pytest.mark.parametrize("dtype", [tf.bfloat16, tf.float16])
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_half_precision_steps_stay_finite_and_near_float32(name, dtype, sparse, rng):
    # Adam's defaults are the hard case: 0.999 is 1 in bfloat16, so a second-moment bias
    # correction 1 - beta2^t computed in bfloat16 is 0 and the step NaN.
    make = OPTIMIZERS[name][0]
    start = make_parameters(rng)
    # Start both runs from the same (half-precision) values and gradients, so the runs
    # differ only by the half-precision storage of parameters and slots.
    start = [tf.cast(tf.cast(p, dtype), tf.float32).numpy() for p in start]
    updates = [[tf.cast(tf.cast(u, dtype), tf.float32).numpy() for u in us] for us in dense_updates(rng, steps=5)]
    low, high = [tf.Variable(tf.cast(p, dtype)) for p in start], [tf.Variable(p) for p in start]
    low_opt, high_opt = make(0.01), make(0.01)
    for us in updates:
        for opt, params, dt in ((low_opt, low, dtype), (high_opt, high, tf.float32)):
            grads = [tf.cast(u, dt) for u in us]
            if sparse:
                grads[0] = tf.IndexedSlices(grads[0][:4], tf.constant([0, 2, 2, 4]), tf.constant([5, 3]))
            opt.apply(grads, params)
    half_ulp = {tf.bfloat16: 2.0**-8, tf.float16: 2.0**-11}[dtype]  # relative, below a power of 2
    for lo, hi in zip(low, high):
        got = tf.cast(lo, tf.float32).numpy()
        assert lo.dtype == dtype and np.all(np.isfinite(got)), f"{name} {dtype.name}: {got}"
        # One rounding of the parameter per step, each at most half an ulp of its magnitude.
        magnitude = 2.0 ** np.ceil(np.log2(np.max(np.abs(hi.numpy()))))
        np.testing.assert_allclose(got, hi.numpy(), rtol=0, atol=len(updates) * half_ulp * magnitude)
    assert all(v.dtype == dtype for v in low_opt.variables if v.dtype.is_floating)
    assert not np.allclose(tf.cast(low[1], tf.float32).numpy(), start[1])


def test_numpy_hyperparameters_are_numbers(rng):
    params = make_parameters(rng)
    twins = [tf.Variable(p) for p in params]
    ours = core.optimizers.Adam(
        np.float32(0.01), beta1=np.float64(0.8), beta2=np.float32(0.99), epsilon=np.float32(1e-6)
    )
    plain = core.optimizers.Adam(float(np.float32(0.01)), 0.8, float(np.float32(0.99)), float(np.float32(1e-6)))
    for update in dense_updates(rng, steps=3):
        ours.apply([tf.constant(u) for u in update], params)
        plain.apply([tf.constant(u) for u in update], twins)
    for a, b in zip(values(params), values(twins)):
        np.testing.assert_array_equal(a, b)
    for make in (
        lambda: core.optimizers.SGD(np.float32(0.1)),
        lambda: core.optimizers.Momentum(np.float32(0.1), np.float32(0.9)),
        lambda: core.optimizers.RMSProp(np.float32(0.1), np.float32(0.9), np.float32(0.5), np.float32(1e-6)),
    ):
        make().apply([tf.ones_like(p) for p in params], params)
    with pytest.raises(ValueError, match=r"Adam 'adam': beta2 must be in \[0.0, 1.0\), got np.float32\(1.0\)"):
        core.optimizers.Adam(beta2=np.float32(1.0))


def test_sgd_has_no_state_and_adam_counts(rng):
    params = make_parameters(rng)
    sgd = core.optimizers.SGD(0.1)
    sgd.apply([tf.ones_like(p) for p in params], params)
    assert sgd.variables == () and sgd.step is None
    adam = core.optimizers.Adam()
    adam.build(params)
    assert adam.step.name == "adam/t:0" and adam.step.dtype == tf.int64 and int(adam.step) == 0
    for _ in range(3):
        adam.apply([tf.ones_like(p) for p in params], params)
    assert int(adam.step) == 3


# --- schedules and other hyperparameters --------------------------------------------------


def numpy_reference(name, params, updates, hyper):
    """The update maths in NumPy (float64), hyperparameters given as functions of the count."""
    params = [p.astype(np.float64) for p in params]
    slots = {k: [np.zeros_like(p) for p in params] for k in ("a", "b", "c")}
    for count, update in enumerate(updates):
        h = {k: f(count) for k, f in hyper.items()}
        for i, g in enumerate(update):
            a, b, c = slots["a"][i], slots["b"][i], slots["c"][i]
            if name == "SGD":
                params[i] = params[i] - h["lr"] * g
            elif name == "Momentum":
                a[...] = h["mu"] * a + g
                params[i] = params[i] - h["lr"] * a
            elif name == "Adam":
                t = count + 1
                a[...] = h["b1"] * a + (1 - h["b1"]) * g
                b[...] = h["b2"] * b + (1 - h["b2"]) * g * g
                m_hat, v_hat = a / (1 - h["b1"] ** t), b / (1 - h["b2"] ** t)
                params[i] = params[i] - h["lr"] * m_hat / (np.sqrt(v_hat) + h["eps"])
            elif name == "RMSProp":  # centered, with momentum
                b[...] = h["decay"] * b + (1 - h["decay"]) * g * g
                c[...] = h["decay"] * c + (1 - h["decay"]) * g
                a[...] = h["mu"] * a + h["lr"] * g / np.sqrt(b - c * c + h["eps"])
                params[i] = params[i] - a
    return params


SCHEDULED = {
    # name: (ours, with schedules where allowed; the same hyperparameters as NumPy functions)
    "SGD": (
        lambda: core.optimizers.SGD(schedules.ConstantWithLinearWarmup(0.1, warmup_steps=4)),
        {"lr": lambda n: 0.1 * min(n, 4) / 4},
    ),
    "Momentum": (
        lambda: core.optimizers.Momentum(
            schedules.ExponentialDecay(0.1, decay_steps=3, decay_rate=0.5), schedules.PiecewiseConstant([3], [0.5, 0.9])
        ),
        {"lr": lambda n: 0.1 * 0.5 ** (n / 3), "mu": lambda n: 0.5 if n <= 3 else 0.9},
    ),
    "Adam": (
        lambda: core.optimizers.Adam(schedules.CosineDecay(0.1, decay_steps=8), beta1=lambda n: 0.8),
        {
            "lr": lambda n: 0.1 * 0.5 * (1 + np.cos(np.pi * min(n, 8) / 8)),
            "b1": lambda n: 0.8,
            "b2": lambda n: 0.999,
            "eps": lambda n: 1e-8,
        },
    ),
    "RMSProp": (
        lambda: core.optimizers.RMSProp(
            schedules.LinearDecay(0.05, 0.01, decay_steps=5), decay=0.8, momentum=0.5, epsilon=1e-6, centered=True
        ),
        {
            "lr": lambda n: 0.05 + (0.01 - 0.05) * min(n, 5) / 5,
            "decay": lambda n: 0.8,
            "mu": lambda n: 0.5,
            "eps": lambda n: 1e-6,
        },
    ),
}


@pytest.mark.parametrize("name", sorted(SCHEDULED))
def test_schedules_match_numpy_reference(name, rng):
    make, hyper = SCHEDULED[name]
    opt = make()
    params = make_parameters(rng)
    start = values(params)
    updates = dense_updates(rng)
    for update in updates:
        opt.apply([tf.constant(u) for u in update], params)
    expected = numpy_reference(name, start, updates, hyper)
    for a, e in zip(values(params), expected):
        np.testing.assert_allclose(a, e, atol=TOL, rtol=0)
    assert int(opt.step) == STEPS
    # With a schedule, even SGD counts its steps, in Sonnet's Adam's variable name.
    assert opt.step.name == f"{opt.name}/t:0"


def test_schedule_sees_the_count_of_earlier_steps():
    seen = []

    def schedule(count):
        seen.append(count)
        return tf.constant(0.0)

    opt = core.optimizers.SGD(schedule)
    p = tf.Variable(1.0)
    step = tf.function(lambda: opt.apply([tf.constant(1.0)], [p]))
    opt.apply([tf.constant(1.0)], [p])
    step()
    step()
    assert int(seen[0]) == 0 and seen[0].dtype == tf.int64
    assert int(opt.step) == 3


def test_variable_rate_is_read_at_every_traced_step():
    lr = tf.Variable(0.5)
    p = tf.Variable([1.0, 2.0])
    opt = core.optimizers.Momentum(lr, momentum=0.0)
    step = tf.function(lambda g: opt.apply([g], [p]))
    step(tf.ones([2]))
    lr.assign(0.25)
    step(tf.ones([2]))
    np.testing.assert_allclose(p.numpy(), [0.25, 1.25])


def test_float64_and_mixed_dtypes(rng):
    # A Python float reaches a float64 parameter at float64 precision.
    p64 = tf.Variable(rng.normal(size=(3,)))
    p32 = tf.Variable(rng.normal(size=(3,)).astype(np.float32))
    g64, g32 = rng.normal(size=(3,)), rng.normal(size=(3,)).astype(np.float32)
    expected64 = p64.numpy() - 0.1 * g64
    expected32 = p32.numpy() - np.float32(0.1) * g32
    core.optimizers.SGD(0.1).apply([tf.constant(g64), tf.constant(g32)], [p64, p32])
    np.testing.assert_array_equal(p64.numpy(), expected64)
    np.testing.assert_allclose(p32.numpy(), expected32, rtol=1e-7)


# --- None and sparse updates -----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_none_updates_are_skipped(name, rng):
    opt = OPTIMIZERS[name][0](0.1)
    params = make_parameters(rng)
    start = values(params)
    for update in dense_updates(rng, steps=3):
        opt.apply([None, tf.constant(update[1])], params)
    np.testing.assert_array_equal(params[0].numpy(), start[0])
    assert not np.array_equal(params[1].numpy(), start[1])
    for v in opt.variables:
        if "table" in v.name:  # the skipped parameter's slots are untouched
            np.testing.assert_array_equal(v.numpy(), np.zeros(v.shape), err_msg=v.name)


@pytest.mark.parametrize("name", ["Momentum", "Adam", "RMSProp_centered_momentum"])
def test_sparse_update_leaves_other_rows_alone(name, rng):
    opt = OPTIMIZERS[name][0](0.1)
    params = make_parameters(rng)
    start = values(params)
    dense = tf.constant(rng.normal(size=(3,)).astype(np.float32))
    rows = tf.IndexedSlices(tf.ones([3, 3]), tf.constant([3, 1, 3]), tf.constant([5, 3]))
    opt.apply([rows, dense], params)
    opt.apply([rows, dense], params)
    touched = [1, 3]
    untouched = [0, 2, 4]
    np.testing.assert_array_equal(params[0].numpy()[untouched], start[0][untouched])
    assert np.all(params[0].numpy()[touched] != start[0][touched])
    for v in opt.variables:
        if "table" in v.name:
            assert np.all(v.numpy()[untouched] == 0), v.name
            assert np.all(v.numpy()[touched] != 0), v.name


def test_sparse_sgd_subtracts_repeated_rows_each_time():
    p = tf.Variable(tf.zeros([3, 2]))
    core.optimizers.SGD(0.5).apply([tf.IndexedSlices(tf.ones([3, 2]), tf.constant([2, 0, 2]))], [p])
    np.testing.assert_array_equal(p.numpy(), [[-0.5, -0.5], [0, 0], [-1, -1]])


# --- eager, tf.function and XLA ----------------------------------------------------------


MODES = {
    "eager": lambda f: f,
    "function": tf.function,
    "xla": lambda f: tf.function(f, jit_compile=True),
}


@pytest.mark.parametrize("name", ["SGD", "Momentum_nesterov", "Adam", "RMSProp_centered_momentum"])
def test_eager_function_and_xla_agree(name):
    results = {}
    for mode, wrap in MODES.items():
        rng = np.random.RandomState(1)
        params = make_parameters(rng)
        schedule = schedules.CosineDecay(0.1, decay_steps=4, warmup_steps=1)
        opt = OPTIMIZERS[name][0](schedule)

        def step(values, indices, bias):
            opt.apply([tf.IndexedSlices(values, indices, tf.constant([5, 3])), bias], params)

        run = wrap(step)
        # The first call builds the slots, inside the trace for the traced modes.
        for table, bias in dense_updates(rng, steps=3):
            run(tf.constant(table[:3]), tf.constant([4, 0, 4]), tf.constant(bias))
        results[mode] = values(params) + values(opt.variables)
    for mode in ("function", "xla"):
        for a, e in zip(results[mode], results["eager"]):
            np.testing.assert_allclose(a, e, rtol=1e-6, atol=1e-7, err_msg=mode)


# --- multi-replica --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Momentum", "Adam", "RMSProp_centered_momentum"])
def test_replicas_stay_equal_under_mirrored(name, mirrored):
    n = mirrored.num_replicas_in_sync
    make = OPTIMIZERS[name][0]
    rng = np.random.RandomState(2)
    start = [rng.normal(size=(5, 3)).astype(np.float32), rng.normal(size=(3,)).astype(np.float32)]
    with mirrored.scope():
        params = [tf.Variable(start[0], name="net/table"), tf.Variable(start[1], name="net/bias")]
        opt = make(schedules.ConstantWithLinearWarmup(0.1, warmup_steps=2, initial_value=0.02))
        # Build before the traced step: no variables may be made in a trace that all-reduces.
        opt.build(params)

    def replica_step(rows, indices, bias):
        grads = [tf.IndexedSlices(rows, indices, tf.constant([5, 3])), bias]
        opt.apply(core.distribute.all_reduce_gradients(grads), params)

    step = tf.function(lambda *args: mirrored.run(replica_step, args=args))
    # Different data on every replica and every step.
    steps = [
        [
            (
                rng.normal(size=(2, 3)).astype(np.float32),
                rng.randint(0, 5, size=2),
                rng.normal(size=3).astype(np.float32),
            )
            for _ in range(n)
        ]
        for _ in range(3)
    ]
    for data in steps:
        step(
            *[
                mirrored.experimental_distribute_values_from_function(
                    lambda ctx, k=k: tf.constant(data[ctx.replica_id_in_sync_group][k])
                )
                for k in range(3)
            ]
        )

    for v in list(params) + list(opt.variables):
        copies = [c.numpy() for c in mirrored.experimental_local_results(v)]
        assert len(copies) == n
        for i, c in enumerate(copies[1:], 1):
            np.testing.assert_array_equal(c, copies[0], err_msg=f"{v.name} differs on replica {i}")

    # And they equal one device applying the averaged gradients.
    ref_params = [tf.Variable(start[0], name="net/table"), tf.Variable(start[1], name="net/bias")]
    ref = make(schedules.ConstantWithLinearWarmup(0.1, warmup_steps=2, initial_value=0.02))
    for data in steps:
        rows = np.concatenate([d[0] for d in data]) / n
        indices = np.concatenate([d[1] for d in data])
        bias = np.mean([d[2] for d in data], axis=0)
        sparse = tf.IndexedSlices(tf.constant(rows), tf.constant(indices), tf.constant([5, 3]))
        ref.apply([sparse, tf.constant(bias)], ref_params)
    for v, r in zip(params, ref_params):
        np.testing.assert_allclose(v.numpy(), r.numpy(), atol=TOL, rtol=0)


# --- build and errors --------------------------------------------------------------------------


def test_build_makes_the_slots_before_any_step(rng):
    params = make_parameters(rng)
    opt = core.optimizers.RMSProp(0.1, centered=True)
    assert opt.variables == ()
    opt.build(params)
    assert len(opt.variables) == 6 and all(np.all(v.numpy() == 0) for v in opt.variables)
    opt.build(params)  # again: nothing new
    assert len(opt.variables) == 6
    # A traced step after build creates no variables.
    tf.function(lambda: opt.apply([tf.ones_like(p) for p in params], params))()
    assert len(opt.variables) == 6


def test_bad_inputs():
    w = tf.Variable(tf.zeros([3, 2]), name="w")
    b = tf.Variable(tf.zeros([2]), name="b")
    opt = core.optimizers.Adam(name="opt")
    with pytest.raises(ValueError, match=r"Adam 'opt': got 1 updates for 2 parameters"):
        opt.apply([tf.ones([3, 2])], [w, b])
    with pytest.raises(ValueError, match=r"Adam 'opt': parameters is empty"):
        opt.apply([], [])
    with pytest.raises(TypeError, match=r"Adam 'opt': parameter 0 is not a tf.Variable"):
        opt.apply([tf.ones([2])], [tf.zeros([2])])
    with pytest.raises(TypeError, match=r"Adam 'opt': parameter 'i:0' must be floating point, got dtype int32"):
        opt.apply([tf.ones([2], tf.int32)], [tf.Variable([1, 2], name="i")])
    with pytest.raises(ValueError, match=r"Adam 'opt': every update is None"):
        opt.apply([None, None], [w, b])
    with pytest.raises(ValueError, match=r"Adam 'opt': the update of parameter 'w:0' has shape \(2, 3\), expected"):
        opt.apply([tf.ones([2, 3]), None], [w, b])
    with pytest.raises(ValueError, match=r"Adam 'opt': the sparse update of parameter 'w:0' has rows of shape \(3,\)"):
        opt.apply([tf.IndexedSlices(tf.ones([1, 3]), tf.constant([0])), None], [w, b])
    with pytest.raises(TypeError, match=r"Adam 'opt': the update of parameter 'b:0' has dtype float64, but the param"):
        opt.apply([tf.ones([3, 2]), tf.ones([2], tf.float64)], [w, b])
    # Sonnet's optimizers raise ValueError for it: code written for them catches ours too.
    with pytest.raises(ValueError, match=r"Adam 'opt': the update of parameter 'b:0' has dtype float64"):
        opt.apply([tf.ones([3, 2]), tf.ones([2], tf.float64)], [w, b])
    # A bad call changes nothing, even when the bad update is not the first.
    assert np.all(w.numpy() == 0) and int(opt.step) == 0
    c = tf.Variable(tf.zeros([2]), name="c")
    with pytest.raises(ValueError, match=r"Adam 'opt': parameter 1 is 'c:0', but the slots were built for 'b:0'"):
        opt.apply([None, tf.ones([2])], [w, c])
    with pytest.raises(ValueError, match=r"Adam 'opt': got 3 parameters, but the slots were built for 2"):
        opt.apply([None, None, tf.ones([2])], [w, b, c])
    with pytest.raises(ValueError, match=r"Adam 'opt': parameter 1 is 'c:0'"):
        opt.build([w, c])


def test_bad_hyperparameters():
    with pytest.raises(TypeError, match=r"SGD 'sgd': learning_rate must be a number, a tf.Variable, a tensor or a sch"):
        core.optimizers.SGD("0.1")
    with pytest.raises(TypeError, match=r"SGD 'sgd': learning_rate must be a number"):
        core.optimizers.SGD(True)
    with pytest.raises(ValueError, match=r"Adam 'adam': beta1 must be in \[0.0, 1.0\), got 1.0"):
        core.optimizers.Adam(beta1=1.0)
    with pytest.raises(ValueError, match=r"Adam 'adam': epsilon must be in \[0.0, inf\], got -1"):
        core.optimizers.Adam(epsilon=-1)
    with pytest.raises(ValueError, match=r"RMSProp 'rms_prop': decay must be in \[0.0, 1.0\], got 1.5"):
        core.optimizers.RMSProp(0.1, decay=1.5)
    with pytest.raises(ValueError, match=r"Momentum 'momentum': learning_rate must be in \[-inf, inf\], got nan"):
        core.optimizers.Momentum(float("nan"), 0.9)
    with pytest.raises(TypeError, match=r"Momentum 'momentum': use_nesterov must be a bool"):
        core.optimizers.Momentum(0.1, 0.9, use_nesterov=1)
    with pytest.raises(TypeError, match=r"RMSProp 'rms_prop': centered must be a bool"):
        core.optimizers.RMSProp(0.1, centered="yes")
    # A schedule set after build has no step counter to read.
    p = tf.Variable(1.0)
    opt = core.optimizers.SGD(0.1)
    opt.apply([tf.constant(1.0)], [p])
    opt.learning_rate = schedules.ExponentialDecay(0.1, 10, 0.5)
    with pytest.raises(ValueError, match=r"SGD 'sgd': learning_rate became a schedule after the optimizer was built"):
        opt.apply([tf.constant(1.0)], [p])


def test_dtype_mismatch_is_caught_as_sonnet_users_catch_it():
    w = tf.Variable(tf.zeros([2]))
    for opt in (snt.optimizers.SGD(0.1), core.optimizers.SGD(0.1)):
        with pytest.raises(ValueError):
            opt.apply([tf.ones([2], tf.float64)], [w])
    with pytest.raises(core.optimizers.DTypeMismatchError):
        core.optimizers.SGD(0.1).apply([tf.ones([2], tf.float64)], [w])


def test_the_fused_adam_step_is_the_papers_step_even_where_epsilon_dominates(rng):
    """A plain float32 variable takes TensorFlow's fused Adam kernel, whose epsilon is
    added before the bias correction; ours rescales it, so the step is Algorithm 1's.
    Against NumPy in float64, with gradients from 1e-10 (where epsilon dominates the
    denominator) to 10."""
    from core.optimizers import adam

    start = rng.normal(size=[6]).astype(np.float32)
    parameter = tf.Variable(start)
    optimizer = core.optimizers.Adam(0.1)
    optimizer.apply([tf.zeros([6])], [parameter])  # builds the slots
    parameter.assign(start)
    assert adam._fusable(tf.float32, parameter, optimizer.m[0], optimizer.v[0])
    p, m, v = start.astype(np.float64), np.zeros(6), np.zeros(6)
    # The zero update above was step 1: the moments stay zero, and the step too.
    scales = np.array([1e-10, 1e-8, 1e-6, 1e-3, 1.0, 10.0])
    for t in range(2, 7):
        g = (rng.normal(size=[6]) * scales).astype(np.float32)
        optimizer.apply([tf.constant(g)], [parameter])
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g.astype(np.float64) ** 2
        p -= 0.1 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
    np.testing.assert_allclose(parameter.numpy(), p, rtol=1e-6, atol=1e-6)
