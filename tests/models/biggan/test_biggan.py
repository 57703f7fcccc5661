"""BigGAN's networks: published sizes, spectral norms, cross-replica batch norm, bad inputs."""

import numpy as np
import pytest
import tensorflow as tf

import core
from models.biggan import biggan, layers
from tests.conformance.suite import assert_all_close

SMALL = dict(ch=2, resolution=32, num_classes=3, attention_resolution=16)
G_SMALL = dict(SMALL, dim_z=8, shared_dim=4)


def trainable_count(module):
    return sum(int(np.prod(v.shape)) for v in module.trainable_variables)


def test_parameter_counts_are_the_published_ones():
    # Built in a graph, not eagerly: the variables get their shapes but their initial
    # values are never computed (158M of them, orthogonal: QR of 13,824 x 1,536 kernels
    # would take minutes), so the count costs a few seconds.
    with tf.Graph().as_default():
        g = biggan.Generator(
            ch=96, resolution=128, num_classes=1000, dim_z=120, shared_dim=128, attention_resolution=64
        )
        d = biggan.Discriminator(ch=96, resolution=128, num_classes=1000, attention_resolution=64)
        g(tf.zeros([1, 120]), tf.zeros([1], tf.int32), False)
        d(tf.zeros([1, 128, 128, 3]), tf.zeros([1], tf.int32), False)
    assert trainable_count(g) == 70_433_988
    assert trainable_count(d) == 87_982_370
    # One spectral norm per weight: every trainable matrix or kernel but G's shared embedding.
    for net, exempt in ((g, 1), (d, 0)):
        weights = [v for v in net.trainable_variables if v.shape.rank >= 2]
        norms = [m for m in net.submodules if isinstance(m, core.SpectralNorm)]
        assert len(norms) == len(weights) - exempt


@pytest.mark.parametrize("resolution", [32, 64, 256, 512])
def test_every_resolution_builds_and_generates_its_size(resolution):
    # ch=1 keeps the larger plans cheap; the attention needs 8 channels, so none here.
    dim_z = {32: 8, 64: 10, 256: 14, 512: 16}[resolution]
    g = biggan.Generator(
        ch=1, resolution=resolution, num_classes=2, dim_z=dim_z, shared_dim=2, attention_resolution=None
    )
    d = biggan.Discriminator(ch=1, resolution=resolution, num_classes=2, attention_resolution=None)
    images = g(tf.random.normal([2, dim_z]), tf.constant([0, 1]), is_training=True)
    assert images.shape == [2, resolution, resolution, 3]
    assert float(tf.reduce_max(tf.abs(images))) <= 1.0
    assert d(images, tf.constant([0, 1]), is_training=True).shape == [2]
    assert len(g.blocks) == int(np.log2(resolution)) - 2


def test_spectral_norm_keeps_the_largest_singular_value_near_one():
    conv = layers.SNConv2D(6, 3, w_init=core.initializers.RandomNormal(3.0))
    x = tf.random.normal([2, 5, 5, 4])
    conv(x, is_training=True)
    for _ in range(30):
        conv(x, is_training=True)
    matrix = tf.reshape(conv.normalized_weight(False), [-1, 6]).numpy()
    top = np.linalg.svd(matrix, compute_uv=False)[0]
    assert abs(top - 1.0) < 1e-3
    raw = np.linalg.svd(conv.w.numpy().reshape(-1, 6), compute_uv=False)[0]
    assert raw > 10  # the raw weight is far from normalised


@pytest.mark.parametrize("kind", ["linear", "conv", "embed"])
def test_a_layer_scaling_its_output_equals_one_using_the_normalised_weight(kind):
    """The layers divide their output by sigma; in value and gradient that is the layer with `w / sigma`."""
    tf.random.set_seed(2)
    if kind == "linear":
        layer, x = layers.SNLinear(5), tf.random.normal([3, 7])
        reference = lambda w: tf.matmul(x, w) + layer.b  # noqa: E731
    elif kind == "conv":
        layer, x = layers.SNConv2D(5, 3), tf.random.normal([2, 4, 4, 6])
        reference = lambda w: tf.nn.bias_add(tf.nn.conv2d(x, w, 1, "SAME"), layer.b)  # noqa: E731
    else:
        layer, x = layers.SNEmbed(6, 5), tf.constant([0, 3, 3, 5])
        reference = lambda w: tf.gather(w, x)  # noqa: E731
    layer(x, is_training=True)
    probe = tf.random.normal(layer(x, False).shape)
    for is_training in (True, False):
        u = layer.spectral_norm.u.numpy()
        with tf.GradientTape() as tape:
            got = layer(x, is_training)
        got_grad = tape.gradient(got, layer.w, output_gradients=probe)
        layer.spectral_norm.u.assign(u)
        with tf.GradientTape() as tape:
            want = reference(layer.normalized_weight(is_training))
        want_grad = tape.gradient(want, layer.w, output_gradients=probe)
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(tf.convert_to_tensor(got_grad).numpy(), want_grad.numpy(), rtol=1e-5, atol=1e-6)


def test_power_iteration_then_inference_equals_a_training_call():
    tf.random.set_seed(1)
    g = biggan.Generator(**G_SMALL)
    z, y = tf.random.normal([4, 8]), tf.constant([0, 1, 2, 0])
    g(z, y, is_training=True)
    start = [v.numpy() for v in g.variables]
    trained = g(z, y, is_training=True).numpy()
    trained_u = [m.u.numpy() for m in g.submodules if isinstance(m, core.SpectralNorm)]
    for v, value in zip(g.variables, start):
        v.assign(value)
    g.power_iteration()
    pure = g(z, y, is_training=False, test_local_stats=True).numpy()
    np.testing.assert_allclose(pure, trained, rtol=1e-5, atol=1e-6)
    for u, expected in zip([m.u.numpy() for m in g.submodules if isinstance(m, core.SpectralNorm)], trained_u):
        np.testing.assert_array_equal(u, expected)


def test_cross_replica_generator_equals_one_generator_on_the_whole_batch(mirrored):
    """4 replicas, different and uneven batches (3, 5, 2, 6): the same images, summed
    gradients, batch-norm statistics and spectral-norm vectors as one generator on the
    16 examples, in training mode."""
    tf.random.set_seed(0)
    sizes = [3, 5, 2, 6]
    rng = np.random.RandomState(0)
    z = rng.normal(size=[16, 8]).astype(np.float32)
    y = rng.randint(0, 3, size=16).astype(np.int32)
    w = tf.constant(rng.normal(size=[32, 32, 3]).astype(np.float32))
    bounds = np.cumsum([0] + sizes)

    whole = biggan.Generator(**G_SMALL, cross_replica=False)
    whole(z, y, is_training=False)
    with mirrored.scope():
        replicated = biggan.Generator(**G_SMALL, cross_replica=True)
    inputs = mirrored.experimental_distribute_values_from_function(
        lambda ctx: (
            z[bounds[ctx.replica_id_in_sync_group] : bounds[ctx.replica_id_in_sync_group + 1]],
            y[bounds[ctx.replica_id_in_sync_group] : bounds[ctx.replica_id_in_sync_group + 1]],
        )
    )
    mirrored.run(lambda z, y: replicated(z, y, is_training=False), args=inputs)
    assert [v.name for v in replicated.variables] == [v.name for v in whole.variables]
    for target, source in zip(replicated.variables, whole.variables):
        target.assign(source)

    def replica_step(z, y):
        with tf.GradientTape() as tape:
            images = replicated(z, y, is_training=True)
            loss = tf.reduce_sum(images * w)
        grads = tape.gradient(loss, replicated.trainable_variables)
        return images, tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, grads)

    images, grads = tf.function(lambda x: mirrored.run(replica_step, args=x))(inputs)
    with tf.GradientTape() as tape:
        expected_images = whole(z, y, is_training=True)
        loss = tf.reduce_sum(expected_images * w)
    expected_grads = tape.gradient(loss, whole.trainable_variables)

    got = np.concatenate([t.numpy() for t in mirrored.experimental_local_results(images)])
    assert_all_close([got], [expected_images.numpy()], 1e-4, "images")
    # Biases right before a batch norm have a gradient of zero in exact arithmetic (their
    # rounding noise is all there is), so every gradient is compared on the scale of the largest.
    scale = max(float(tf.reduce_max(tf.abs(g))) for g in expected_grads)
    names = [v.name for v in whole.trainable_variables]
    for replica_grads in zip(*[mirrored.experimental_local_results(g) for g in grads]):
        for name, got_grad, expected_grad in zip(names, replica_grads, expected_grads):
            np.testing.assert_allclose(got_grad, expected_grad, rtol=1e-3, atol=1e-4 * scale, err_msg=name)
    # Statistics and spectral-norm vectors: the same on every replica, and the whole batch's.
    for v, expected in zip(replicated.variables, whole.variables):
        copies = [c.numpy() for c in mirrored.experimental_local_results(v)]
        for c in copies[1:]:
            np.testing.assert_array_equal(c, copies[0], err_msg=v.name)
        if not v.trainable:
            assert_all_close([copies[0]], [expected.numpy()], 1e-4, v.name)
    moved = [v for v in whole.variables if "moving_mean/average" in v.name]
    assert moved and all(np.any(v.numpy() != 0) for v in moved)


def test_bad_arguments_and_inputs_are_named():
    with pytest.raises(ValueError, match="resolution must be one of"):
        biggan.Generator(resolution=48)
    with pytest.raises(ValueError, match="dim_z 120 does not split into 7"):
        biggan.Generator(resolution=256)
    with pytest.raises(ValueError, match="attention_resolution 64 is not the output resolution"):
        biggan.Discriminator(resolution=32)
    with pytest.raises(ValueError, match="ch must be a positive integer"):
        biggan.Generator(ch=0)
    g = biggan.Generator(**G_SMALL)
    with pytest.raises(ValueError, match="z with size"):
        g(tf.zeros([2, 9]), tf.constant([0, 1]), True)
    with pytest.raises(TypeError, match="y must be integer class ids"):
        g(tf.zeros([2, 8]), tf.constant([0.0, 1.0]), True)
    with pytest.raises(ValueError, match="same batch size"):
        g(tf.zeros([2, 8]), tf.constant([0, 1, 2]), True)
    d = biggan.Discriminator(**SMALL)
    with pytest.raises(ValueError, match=r"expected images of shape \[batch, 32, 32, 3\]"):
        d(tf.zeros([2, 16, 16, 3]), tf.constant([0, 1]), True)
