"""The training step: replicas stay equal; XLA per replica computes what the plain step does."""

import numpy as np
import pytest
import tensorflow as tf

import core
from models.biggan import biggan, data, gan, sampling

NET = dict(ch=2, resolution=32, num_classes=3, attention_resolution=16)
SMALL_NET = dict(ch=1, resolution=32, num_classes=3, attention_resolution=None)


class _TinyCritic(biggan.Discriminator):
    """One downsampling block and the projection head: the discriminator's pieces, small."""

    def __init__(self):
        super().__init__(ch=1, resolution=32, num_classes=3, attention_resolution=None)
        self.blocks = [biggan.DBlock(2, downsample=True, preactivation=False, name="block_0")]
        self.resolution, self.output_channels = 8, 2


def _task(batch_size=8):
    images, labels = data.render_shapes(0, np.arange(40))
    return data.GANTask(data.in_memory_images(images, labels % 3, 3), batch_size=batch_size, d_steps=1, dim_z=8)


def _step(cross_replica, jit_compile, strategy):
    core.utils.set_seed(0)
    with strategy.scope():
        g = biggan.Generator(**NET, dim_z=8, shared_dim=4, cross_replica=cross_replica)
        g_ema = biggan.Generator(**NET, dim_z=8, shared_dim=4)
        d = biggan.Discriminator(**NET)
        g_opt = core.optimizers.Adam(1e-3, beta1=0.0, beta2=0.999)
        d_opt = core.optimizers.Adam(4e-3, beta1=0.0, beta2=0.999)
    step = gan.GANStep(g, d, g_opt, d_opt, d_steps=1, ortho_beta=1e-4, jit_compile=jit_compile)
    return step, g, g_ema, d


def _run(strategy, cross_replica, jit_compile, steps=2):
    task = _task()
    step, g, g_ema, d = _step(cross_replica, jit_compile, strategy)
    replicas = strategy.num_replicas_in_sync
    batches = [
        strategy.experimental_distribute_values_from_function(
            lambda ctx, s=s: task.replica_batch(0, s, ctx.replica_id_in_sync_group, replicas)
        )
        for s in range(steps)
    ]
    strategy.run(lambda b: (step.build(b), g_ema(b.z[0], b.fake_labels[0], False)), args=(batches[0],))
    with strategy.scope():
        step.build_optimizers()
        step.average = sampling.WeightAverage(g, g_ema, decay=0.5, start_step=1)
    fn = tf.function(lambda b, i: strategy.run(step.replica_step, args=(b, i)))
    for s, batch in enumerate(batches):
        metrics, finite = fn(batch, tf.constant(s, tf.int64))
        assert all(bool(f) for f in strategy.experimental_local_results(finite))
    return (g, g_ema, d, step), strategy.experimental_local_results(metrics)


@pytest.mark.slow
def test_mirrored_step_keeps_every_replica_equal(mirrored):
    """Two whole steps under 4 replicas (about 7 minutes on a loaded 2-core machine: each
    replica traces the generator and discriminator passes)."""
    (g, g_ema, d, step), metrics = _run(mirrored, cross_replica=True, jit_compile=False)
    assert len(metrics) == 4 and all(np.isfinite(float(m["g_loss"])) for m in metrics)
    kinds = {"batch-norm statistics": 0, "spectral-norm vectors": 0, "averaged weights": 0}
    for module in (g, g_ema, d, step.g_optimizer, step.d_optimizer):
        for v in module.variables:
            copies = [c.numpy() for c in mirrored.experimental_local_results(v)]
            assert len(copies) == 4
            for c in copies[1:]:
                np.testing.assert_array_equal(c, copies[0], err_msg=v.name)
            kinds["batch-norm statistics"] += "moving_mean/average" in v.name and module is g
            kinds["spectral-norm vectors"] += v.name.endswith("/u:0")
            kinds["averaged weights"] += module is g_ema and v.trainable
    assert all(kinds.values()), kinds
    # The statistics moved, and the average is neither the start nor the trained weights.
    assert np.any(g.output_bn.moving_mean.value.numpy() != 0)
    w, w_ema = g.output_conv.w.numpy(), g_ema.output_conv.w.numpy()
    assert not np.allclose(w, w_ema)


@pytest.mark.slow
@pytest.mark.parametrize("cross_replica", [False, True], ids=["local_bn", "cross_replica_bn"])
def test_xla_per_replica_computes_what_the_plain_step_does(mirrored, cross_replica):
    """XLA compiles each replica's passes (with the state writes and collectives outside);
    the trained weights match the uncompiled step's."""
    plain, _ = _run(mirrored, cross_replica, jit_compile=False)
    compiled, metrics = _run(mirrored, cross_replica, jit_compile=True)
    assert np.isfinite(float(metrics[0]["d_loss_real"]))
    for a, b in zip(
        plain[0].trainable_variables + plain[2].trainable_variables,
        compiled[0].trainable_variables + compiled[2].trainable_variables,
    ):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=2e-3, atol=2e-4, err_msg=a.name)


def test_weight_average_keeps_replicas_equal(mirrored):
    with mirrored.scope():
        source, target = biggan.Discriminator(**SMALL_NET), biggan.Discriminator(**SMALL_NET)
    x = tf.zeros([1, 32, 32, 3])
    mirrored.run(lambda: (source(x, tf.constant([0]), False), target(x, tf.constant([0]), False)))
    average = sampling.WeightAverage(source, target, decay=0.75, start_step=0)
    w, t = source.linear.w, target.linear.w
    expected = t.numpy()
    update = tf.function(lambda: mirrored.run(average.update, args=(tf.constant(5, tf.int64),)))
    for value in (1.0, 3.0):
        w.assign(tf.fill(w.shape, value))
        update()
        expected = 0.75 * expected + 0.25 * value
    for copy in mirrored.experimental_local_results(t):
        np.testing.assert_allclose(copy.numpy(), expected, rtol=1e-6)
    u = [c.numpy() for c in mirrored.experimental_local_results(target.linear.spectral_norm.u)]
    np.testing.assert_array_equal(u[0], source.linear.spectral_norm.u.numpy())  # state is copied
    assert all(np.array_equal(c, u[0]) for c in u)


def test_compiled_per_replica_with_the_reduce_outside(mirrored):
    """XLA per replica under 4 replicas, different data: the power iteration and the
    all-reduce outside the compiled part give the gradients and vectors of a training
    call. On a discriminator block and head at 8x8 (the whole networks: `-m slow`;
    each replica compiles its own copy, minutes on a loaded 2-core machine)."""
    core.utils.set_seed(0)
    with mirrored.scope():
        d = _TinyCritic()
    rng = np.random.RandomState(0)
    per_replica = [
        (rng.uniform(-1, 1, size=[2, 8, 8, 3]).astype(np.float32), rng.randint(0, 3, size=2).astype(np.int32))
        for _ in range(4)
    ]
    inputs = mirrored.experimental_distribute_values_from_function(
        lambda ctx: per_replica[ctx.replica_id_in_sync_group]
    )
    mirrored.run(lambda x, y: d(x, y, False), args=inputs)
    start = [v.numpy() for v in d.variables]

    def loss_and_grads(x, y, is_training):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.nn.relu(1.0 - d(x, y, is_training)))
        return tape.gradient(loss, d.trainable_variables)

    compiled = tf.function(lambda x, y: loss_and_grads(x, y, False), jit_compile=True)

    def plain_step(x, y):
        return core.distribute.all_reduce_gradients(loss_and_grads(x, y, True))

    def xla_step(x, y):
        d.power_iteration()
        return core.distribute.all_reduce_gradients(compiled(x, y))

    results = []
    for step in (plain_step, xla_step):
        for v, value in zip(d.variables, start):
            v.assign(value)
        grads = tf.function(lambda x: mirrored.run(step, args=x))(inputs)
        u = [
            [c.numpy() for c in mirrored.experimental_local_results(m.u)]
            for m in d.submodules
            if isinstance(m, core.SpectralNorm)
        ]
        results.append(([mirrored.experimental_local_results(g) for g in grads], u))
    (plain_grads, plain_u), (xla_grads, xla_u) = results
    scale = max(float(np.abs(g[0]).max()) for g in plain_grads)
    for a, b in zip(plain_grads, xla_grads):
        for replica in range(4):
            np.testing.assert_allclose(b[replica], a[0], rtol=1e-3, atol=1e-4 * scale)
    for a, b in zip(plain_u, xla_u):
        for replica in range(4):
            np.testing.assert_allclose(b[replica], a[0], rtol=1e-5, atol=1e-6)
