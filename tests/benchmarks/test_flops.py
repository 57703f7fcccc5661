"""FLOP counting: the profiler's graph counts against analytic counts, and loop detection."""

import numpy as np
import pytest
import tensorflow as tf

import core
from benchmarks import flops, registry


def test_matrix_product_count_is_exact():
    a, b = tf.ones([64, 128]), tf.ones([128, 32])
    count = flops.count_function(tf.function(tf.linalg.matmul), a, b)
    assert count == flops.GraphCount(2 * 64 * 128 * 32, complete=True)


@pytest.mark.parametrize("adjoint_a,adjoint_b", [(False, False), (True, False), (False, True), (True, True)])
def test_batched_matrix_product_count_is_exact_with_adjoints(adjoint_a, adjoint_b):
    batch, m, k, n = 3, 8, 16, 4
    a = tf.ones([batch, k, m] if adjoint_a else [batch, m, k])
    b = tf.ones([batch, n, k] if adjoint_b else [batch, k, n])
    product = tf.function(lambda a, b: tf.linalg.matmul(a, b, adjoint_a=adjoint_a, adjoint_b=adjoint_b))
    assert flops.count_function(product, a, b) == flops.GraphCount(2 * batch * m * k * n, complete=True)


def test_mlp_forward_count_is_the_products_plus_the_bias_adds():
    sizes, batch = (32, 64, 48, 10), 16
    mlp = core.nets.MLP(sizes[1:])
    x = tf.ones([batch, sizes[0]])
    count = flops.count_function(tf.function(mlp), x)
    # The profiler counts 2 per multiply-add, 1 per bias add, nothing for ReLU.
    expected = sum(2 * batch * i * o + batch * o for i, o in zip(sizes[:-1], sizes[1:]))
    assert count == flops.GraphCount(expected, complete=True)


def test_mlp_train_step_count_is_close_to_the_workloads_analytic_count():
    workload = registry.select(["mlp"])[0]
    size = {"batch": 64, "sizes": (128, 256, 256, 10)}
    case = workload.build(tf.float32, **size)
    x = case.make_inputs(0)
    case.initialize(x)
    case.initialize_optimizer()

    @tf.function
    def train(x):
        loss, grads = case.loss_and_grads(x)
        case.apply(grads)
        return loss

    count = flops.count_function(train, x)
    analytic = workload.flops(**size).train
    # The graph adds elementwise work (bias gradients, the loss, Adam) to the products.
    assert count.complete
    assert analytic <= count.flops <= 1.1 * analytic


def _lstm_unroll(unroll, dtype=tf.float32, train=False):
    """The graph of an LSTM(64) unroll over 6 steps of [8, 32]; with `train`, of its gradients."""
    lstm = core.LSTM(64, dtype=dtype)
    x = tf.cast(tf.random.normal([6, 8, 32]), dtype)

    def forward(x):
        return unroll(lstm, x, lstm.initial_state(8))[0]

    def gradients(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(forward(x))
        return tape.gradient(loss, lstm.trainable_variables)

    lstm(x[0], lstm.initial_state(8))
    return tf.function(gradients if train else forward).get_concrete_function(x).graph


def test_a_loop_is_flagged_as_hiding_its_flops():
    assert not flops.count_graph(_lstm_unroll(core.dynamic_unroll)).complete


def test_a_branch_that_only_checks_integer_ids_keeps_the_count_complete():
    embed = core.Embed(10, 16)
    w = tf.random.normal([16, 8])

    @tf.function
    def lookup(ids):
        return tf.matmul(embed(ids), w)  # Embed checks the ids in a tf.cond that asserts

    graph = lookup.get_concrete_function(tf.constant([1, 2, 3])).graph
    assert any(flops._called(op.node_def) for op in graph.get_operations())
    count = flops.count_graph(graph)
    assert count.complete
    # The product, and the check's two comparisons of the ids' bounds outside the branch.
    assert 2 * 3 * 16 * 8 <= count.flops <= 2 * 3 * 16 * 8 + 2


def test_a_branch_that_computes_on_floats_makes_the_count_incomplete():
    @tf.function
    def either(x, flag):
        return tf.cond(flag, lambda: tf.matmul(x, x), lambda: x * 2.0)

    graph = either.get_concrete_function(tf.ones([4, 4]), tf.constant(True)).graph
    assert not flops.count_graph(graph).complete


def test_the_attention_train_step_count_is_close_to_its_analytic_count():
    workload = registry.select(["attention"])[0]
    size = {"batch": 4, "entities": 32, "features": 64, "heads": 2, "key_size": 32}
    case = workload.build(tf.float32, **size)
    x = case.make_inputs(0)
    case.initialize(x)
    case.initialize_optimizer()

    @tf.function
    def train(x):
        loss, grads = case.loss_and_grads(x)
        case.apply(grads)
        return loss

    count = flops.count_function(train, x)
    analytic = workload.flops(**size).train
    assert count.complete
    assert analytic <= count.flops <= 1.1 * analytic


@pytest.mark.parametrize("step", ["forward", "train"])
def test_the_analytic_lstm_count_matches_a_static_unroll_graph(step):
    workload = registry.select(["lstm"])[0]
    count = flops.count_graph(_lstm_unroll(core.static_unroll, train=step == "train"))
    analytic = getattr(workload.flops(batch=8, steps=6, inputs=32, hidden=64), step)
    assert count.complete
    # The static unroll's graph has the same products plus the gates' elementwise ops.
    assert analytic <= count.flops <= 1.1 * analytic


@pytest.mark.parametrize("step", ["forward", "train"])
def test_the_analytic_conv_lstm_count_matches_a_static_unroll_graph(step):
    workload = registry.select(["conv_lstm"])[0]
    size = {"batch": 2, "steps": 4, "image": 8, "in_channels": 8, "channels": 16, "kernel": 3}
    cell = core.Conv2DLSTM((8, 8, 8), 16, 3)
    x = tf.random.normal([4, 2, 8, 8, 8])
    cell(x[0], cell.initial_state(2))

    def forward(x):
        return core.static_unroll(cell, x, cell.initial_state(2))[0]

    def gradients(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(forward(x))
        return tape.gradient(loss, cell.trainable_variables)

    graph = tf.function(gradients if step == "train" else forward).get_concrete_function(x).graph
    count = flops.count_graph(graph)
    analytic = getattr(workload.flops(**size), step)
    assert count.complete
    assert analytic <= count.flops <= 1.1 * analytic


def test_compute_dtypes_look_inside_loop_bodies():
    assert flops.compute_dtypes(_lstm_unroll(core.dynamic_unroll, tf.bfloat16)) == {"MatMul": ["bfloat16"]}


def test_peak_is_the_best_rate_of_its_kernels():
    kernels = (flops.Kernel("matmul", (64, 32, 16)), flops.Kernel("conv2d", (2, 8, 4, 8, 3)))
    peak = flops.measure_peak(tf.float32, kernels, repeats=2, calls=1)
    rates = [k["flops_per_s"] for k in peak["kernels"]]
    assert [k["name"] for k in peak["kernels"]] == ["matmul 64x32 @ 32x16", "conv2d 3x3 4->8 on 2x8x8"]
    assert all(r > 0 and np.isfinite(r) for r in rates)
    assert peak["flops_per_s"] == max(rates) and peak["best"] == peak["kernels"][rates.index(max(rates))]["name"]
    assert peak["dtype"] == "float32"


@pytest.mark.parametrize("kernel", [flops.Kernel("matmul", (8, 16, 4)), flops.Kernel("conv2d", (2, 6, 3, 5, 3))])
def test_calibration_kernels_count_flops_as_the_profiler_does(kernel):
    if kernel.kind == "matmul":
        m, k, n = kernel.shape
        fn, args = tf.linalg.matmul, (tf.ones([m, k]), tf.ones([k, n]))
    else:
        batch, size, cin, cout, kw = kernel.shape
        fn = lambda a, b: tf.nn.conv2d(a, b, 1, "SAME")  # noqa: E731
        args = (tf.ones([batch, size, size, cin]), tf.ones([kw, kw, cin, cout]))
    assert flops.count_function(tf.function(fn), *args).flops == kernel.flops


@pytest.mark.parametrize("name", ["mlp", "lstm", "conv_bn", "conv_lstm", "attention"])
def test_every_core_workload_has_an_analytic_count(name):
    workload = registry.select([name])[0]
    for preset in registry.PRESETS:
        counts = workload.flops(**workload.size(preset))
        assert 0 < counts.forward < counts.train
