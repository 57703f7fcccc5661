"""GQN and ConvDRAW: closed forms, shapes, variable counts, shared variables, modes, errors."""

import math

import numpy as np
import pytest
import tensorflow as tf

from models.gqn import convdraw, gqn, representation

# The model builds its cores on empty batches, where TensorFlow 2.21's oneDNN convolutions
# once returned wrong shapes (10 of these tests failed with oneDNN on, none with it off):
# CI runs this module with oneDNN on as well.
pytestmark = pytest.mark.onednn

B, K, S = 2, 3, 16  # batch, context views, image side (state 4x4)


def tiny(kind="tower", share_cores=False, steps=2, **kwargs):
    config = dict(
        num_steps=steps,
        share_cores=share_cores,
        image_size=S,
        representation_channels=6,
        hidden_channels=5,
        z_channels=2,
    )
    config.update(kwargs)
    return gqn.GQN(kind, **config)


def inputs(seed=0, batch=B, views=K):
    rng = np.random.RandomState(seed)
    return (
        tf.constant(rng.uniform(size=[batch, views, S, S, 3]), tf.float32),
        tf.constant(rng.normal(size=[batch, views, 7]), tf.float32),
        tf.constant(rng.normal(size=[batch, 7]), tf.float32),
        tf.constant(rng.uniform(size=[batch, S, S, 3]), tf.float32),
    )


def count(variables):
    return sum(int(np.prod(v.shape)) for v in variables)


# --- closed forms --------------------------------------------------------------------


def test_kl_of_identical_gaussians_is_zero_and_matches_the_closed_form():
    rng = np.random.RandomState(0)
    mean, log_variance = rng.normal(size=[2, 3, 3, 4]), rng.normal(size=[2, 3, 3, 4])
    np.testing.assert_allclose(convdraw.gaussian_kl(mean, log_variance, mean, log_variance), 0.0, atol=1e-12)
    # KL(N(1, 1) || N(0, e^2)) = log e - 1/2 + (1 + 1) / (2 e^2)
    kl = convdraw.gaussian_kl(tf.constant(1.0), tf.constant(0.0), tf.constant(0.0), tf.constant(2.0))
    np.testing.assert_allclose(kl, 1.0 - 0.5 + 1.0 / math.e**2, rtol=1e-6)


def test_kl_of_nearly_equal_gaussians_keeps_its_precision():
    d = np.linspace(-3, 3, 6001)
    exact = 0.5 * (np.expm1(d) - d)  # float64
    zeros = tf.zeros(d.shape)
    got = convdraw.gaussian_kl(zeros, tf.constant(d, tf.float32), zeros, zeros).numpy()
    assert np.max(np.abs(got - exact) / np.maximum(exact, 1e-30)) < 1e-6
    naive = 0.5 * (np.exp(d.astype(np.float32)) - 1 - d.astype(np.float32))
    assert np.max(np.abs(naive - exact) / np.maximum(exact, 1e-30)) > 1e-2  # what the series avoids


def test_kl_matches_a_monte_carlo_estimate():
    rng = np.random.RandomState(1)
    mq, lq, mp, lp = 0.3, -0.4, -0.2, 0.5
    z = mq + np.exp(lq / 2) * rng.normal(size=400_000)
    log_q = -0.5 * (np.log(2 * np.pi) + lq + (z - mq) ** 2 / np.exp(lq))
    log_p = -0.5 * (np.log(2 * np.pi) + lp + (z - mp) ** 2 / np.exp(lp))
    estimate, error = np.mean(log_q - log_p), np.std(log_q - log_p) / np.sqrt(z.size)
    assert abs(float(convdraw.gaussian_kl(mq, lq, mp, lp)) - estimate) < 4 * error


def test_gaussian_nll_floor_at_sigma_0_7_is_0_5623_nats_per_dimension():
    x = tf.random.uniform([1, 64, 64, 3])
    nll = convdraw.gaussian_nll(x, x, 0.7)
    np.testing.assert_allclose(nll.numpy(), 0.5623, atol=5e-5)
    assert round(float(tf.reduce_sum(nll))) == 6909
    # And the square term: one unit off costs 1 / (2 sigma^2) more.
    np.testing.assert_allclose(convdraw.gaussian_nll(1.0, 0.0, 0.7) - convdraw.gaussian_nll(0.0, 0.0, 0.7), 1 / 0.98)


# --- the split computation against the plain one ---------------------------------------------


def plain_elbo(generator, target, sigma, noise, vector=None, spatial=None):
    """The ELBO with each core's plain step (`core.Conv2DLSTM` on the concatenated inputs)."""
    s, batch = generator.state_size, target.shape[0]
    parts = ([representation.broadcast(vector, (s, s))] if vector is not None else []) + (
        [spatial] if spatial is not None else []
    )
    conditioning = tf.concat(parts, -1) if parts else None
    generation = generator.generation_cores[0].initial_state(batch)
    inference = generator.inference_cores[0].initial_state(batch)
    kls = []
    for step in range(generator.num_steps):
        index = 0 if generator.share_cores else step
        hidden_g = generation.lstm.hidden
        prior = tf.split(generator.prior(hidden_g), 2, axis=-1)
        image = target
        if generator.read == "error":
            image = tf.concat([target, target - generator.observation(generation.canvas)], -1)
        hidden_e, inference = generator.inference_cores[index](
            image, conditioning, hidden_g, generation.canvas, inference
        )
        q_mean, q_log_variance = tf.split(generator.posterior(hidden_e), 2, axis=-1)
        z = q_mean + tf.exp(0.5 * q_log_variance) * noise[:, step]
        kls.append(tf.reduce_sum(convdraw.gaussian_kl(q_mean, q_log_variance, *prior), [1, 2, 3]))
        inputs = z if conditioning is None else tf.concat([conditioning, z], -1)
        generation = generator.generation_cores[index](inputs, generation)
    mean = generator.observation(generation.canvas)
    nll = tf.reduce_sum(convdraw.gaussian_nll(target, mean, sigma), [1, 2, 3])
    return {"nll": nll, "kl_per_step": tf.stack(kls, 1), "mean": mean}


@pytest.mark.parametrize(
    "config",
    [
        dict(share_cores=False, vector_channels=2, spatial_channels=3),
        dict(share_cores=True, vector_channels=4),
        dict(share_cores=True, read="error"),
    ],
    ids=["spatial_unshared", "vector_shared", "error_read"],
)
def test_the_split_computation_equals_the_plain_cores(config):
    generator = convdraw.Generator(S, num_steps=3, hidden_channels=5, z_channels=2, **config)
    rng = np.random.RandomState(3)
    target = tf.constant(rng.uniform(size=[B, S, S, 3]), tf.float32)
    noise = tf.constant(rng.normal(size=[B, *generator.noise_shape]), tf.float32)
    vector = (
        tf.constant(rng.normal(size=[B, config["vector_channels"]]), tf.float32)
        if "vector_channels" in config
        else None
    )
    spatial = tf.constant(rng.normal(size=[B, 4, 4, 3]), tf.float32) if "spatial_channels" in config else None
    with tf.GradientTape(persistent=True) as tape:
        split = generator.elbo(target, 0.7, noise, vector, spatial)
        plain = plain_elbo(generator, target, 0.7, noise, vector, spatial)
        losses = [
            tf.reduce_sum(split["nll"] + split["kl"]),
            tf.reduce_sum(plain["nll"] + tf.reduce_sum(plain["kl_per_step"], 1)),
        ]
    for key in plain:
        np.testing.assert_allclose(split[key], plain[key], rtol=1e-5, atol=1e-5, err_msg=key)
    params = generator.trainable_variables
    for a, b, v in zip(tape.gradient(losses[0], params), tape.gradient(losses[1], params), params):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(tf.reduce_max(tf.abs(b))) + 1e-7, err_msg=v.name)


def test_broadcast_conv_is_the_convolution_of_the_broadcast_vector():
    rng = np.random.RandomState(0)
    vector = tf.constant(rng.normal(size=[3, 4]), tf.float32)
    for kernel_size, size in [(5, 4), (3, 6), (5, 2), (4, 5)]:
        kernel = tf.constant(rng.normal(size=[kernel_size, kernel_size, 4, 6]), tf.float32)
        expected = convdraw.conv(representation.broadcast(vector, (size, size)), kernel)
        np.testing.assert_allclose(convdraw.broadcast_conv(vector, kernel, size), expected, rtol=1e-5, atol=1e-5)


# --- representation networks ------------------------------------------------------------


@pytest.mark.parametrize("size", [16, 32])
def test_tower_and_pool_shapes(size):
    image, camera = tf.random.uniform([3, size, size, 3]), tf.random.normal([3, 7])
    tower, pool = representation.Tower(8), representation.Pool(8)
    assert tower(image, camera).shape == (3, size // 4, size // 4, 8)
    assert pool(image, camera).shape == (3, 1, 1, 8)
    # The paper's tower: 64x64 views to 16x16x256.
    assert representation.Tower()(tf.zeros([1, 64, 64, 3]), tf.zeros([1, 7])).shape == (1, 16, 16, 256)


def test_pool_is_the_spatial_mean_of_the_same_tower():
    image, camera = tf.random.uniform([2, 16, 16, 3]), tf.random.normal([2, 7])
    tower, pool = representation.Tower(4), representation.Pool(4)
    tower(image, camera)
    pool(image, camera)
    for a, b in zip(tower.variables, pool.variables):
        b.assign(a)
    np.testing.assert_allclose(pool(image, camera), tf.reduce_mean(tower(image, camera), [1, 2], keepdims=True))


def test_the_scene_representation_is_the_sum_over_views_in_any_order():
    model = tiny()
    frames, cameras, _, _ = inputs()
    r = model.represent(frames, cameras)
    each = [model.represent(frames[:, i : i + 1], cameras[:, i : i + 1]) for i in range(K)]
    np.testing.assert_allclose(r, tf.add_n(each), rtol=1e-5, atol=1e-6)
    reverse = model.represent(frames[:, ::-1], cameras[:, ::-1])
    np.testing.assert_allclose(reverse, r, rtol=1e-5, atol=1e-6)


# --- variables ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["tower", "pool"])
def test_unshared_cores_add_one_pair_of_cores_per_extra_step(kind):
    steps = 3
    shared, unshared = tiny(kind, True, steps), tiny(kind, False, steps)
    for model in (shared, unshared):
        model.elbo(*inputs(), sigma=1.0)
    generator = shared.generator
    pair = count(generator.generation_cores[0].trainable_variables) + count(
        generator.inference_cores[0].trainable_variables
    )
    assert count(unshared.trainable_variables) - count(shared.trainable_variables) == (steps - 1) * pair
    assert len(unshared.generator.generation_cores) == len(unshared.generator.inference_cores) == steps


def test_paper_parameter_counts():
    """The paper's sizes (tower 256, ConvLSTMs 128, z 3, 5x5 kernels), counted by hand.

    Tower: 2x2 convs 3->256, 256->256, 128->256; 3x3 convs 256->128, 263->256, 263->128,
    128->256; a 1x1 256->256, each with a bias. A generation core: the ConvLSTM on
    7 + 256 + 3 channels with 128 hidden, and a 4x4 write 128->128; an inference core:
    the ConvLSTM on 3 + 263 + 128 + 128 channels, 4x4 reads 3->3 and 128->128. Prior and
    posterior 5x5 128->6, the observation 1x1 128->3.
    """
    tower = (4 * 3 * 256 + 256) + (4 * 256 * 256 + 256) + (9 * 256 * 128 + 128) + (4 * 128 * 256 + 256)
    tower += (9 * 263 * 256 + 256) + (9 * 263 * 128 + 128) + (9 * 128 * 256 + 256) + (256 * 256 + 256)

    def lstm(inputs):
        return 25 * (inputs + 128) * 512 + 512

    generation = lstm(7 + 256 + 3) + 16 * 128 * 128
    inference = lstm(3 + 263 + 128 + 128) + 16 * 3 * 3 + 16 * 128 * 128
    heads = 2 * (25 * 128 * 6 + 6) + (128 * 3 + 3)
    # Built on 8x8 images (no variable depends on the image size) and with fewer steps
    # (the count grows by one pair of cores per unshared step).
    for steps, share, cores in [(3, True, 1), (2, False, 2)]:
        model = gqn.GQN("tower", num_steps=steps, share_cores=share, image_size=8)
        model.elbo(*[tf.zeros([1, 1, 8, 8, 3]), tf.zeros([1, 1, 7]), tf.zeros([1, 7]), tf.zeros([1, 8, 8, 3])], 1.0)
        assert count(model.trainable_variables) == tower + cores * (generation + inference) + heads
    assert tower + generation + inference + heads == 15_889_823  # shared cores
    assert tower + 12 * (generation + inference) + heads == 168_665_039  # 12 unshared pairs, the paper's L


# --- the forward methods -----------------------------------------------------------------


def test_elbo_parts_shapes_and_sums():
    model = tiny(steps=3)
    frames, cameras, query_camera, query = inputs()
    out = model.elbo(frames, cameras, query_camera, query, sigma=0.7)
    assert out["loss"].shape == out["nll"].shape == out["kl"].shape == out["mse"].shape == (B,)
    assert out["kl_per_step"].shape == (B, 3)
    assert out["mean"].shape == (B, S, S, 3)
    np.testing.assert_allclose(out["loss"], out["nll"] + out["kl"], rtol=1e-6)
    np.testing.assert_allclose(out["kl"], tf.reduce_sum(out["kl_per_step"], 1), rtol=1e-6)
    assert np.all(out["kl_per_step"].numpy() >= 0)
    expected_nll = tf.reduce_sum(convdraw.gaussian_nll(query, out["mean"], 0.7), [1, 2, 3])
    np.testing.assert_allclose(out["nll"], expected_nll, rtol=1e-6)
    np.testing.assert_allclose(out["mse"], tf.reduce_mean(tf.square(out["mean"] - query), [1, 2, 3]), rtol=1e-6)


def test_the_forward_methods_share_the_same_variables():
    model = tiny()
    frames, cameras, query_camera, query = inputs()
    noise = model.noise(tf.constant([[1, 2], [3, 4]], tf.int64))
    model.elbo(frames, cameras, query_camera, query, 0.7, noise)
    built = {id(v): v.name for v in model.variables}
    r = model.represent(frames, cameras)
    sample = model.generate(r, query_camera, noise)
    reconstruction = model.reconstruct(frames, cameras, query_camera, query)
    assert {id(v): v.name for v in model.variables} == built  # no method made variables of its own
    assert sample.shape == reconstruction.shape == (B, S, S, 3)
    assert 0.0 <= float(tf.reduce_min(sample)) and float(tf.reduce_max(sample)) <= 1.0
    # Changing a shared variable changes what every method computes.
    before = [model.generate(r, query_camera, noise), model.reconstruct(frames, cameras, query_camera, query)]
    model.generator.observation.b.assign_add([0.1, 0.1, 0.1])
    after = [model.generate(r, query_camera, noise), model.reconstruct(frames, cameras, query_camera, query)]
    for a, b in zip(before, after):
        assert not np.allclose(a, b)


def test_generate_draws_from_the_prior_not_the_posterior():
    """With every variable of the inference side zeroed, elbo changes but generate does not."""
    model = tiny()
    frames, cameras, query_camera, query = inputs()
    noise = model.noise(tf.constant([[5, 6], [7, 8]], tf.int64))
    elbo = model.elbo(frames, cameras, query_camera, query, 0.7, noise)["mean"]
    sample = model.generate(model.represent(frames, cameras), query_camera, noise)
    for v in model.generator.posterior.variables:
        v.assign(tf.zeros_like(v))
    assert not np.allclose(model.elbo(frames, cameras, query_camera, query, 0.7, noise)["mean"], elbo)
    np.testing.assert_array_equal(model.generate(model.represent(frames, cameras), query_camera, noise), sample)


def test_noise_is_a_pure_function_of_each_examples_seed():
    model = tiny()
    seeds = tf.constant([[1, 2], [3, 4], [1, 2]], tf.int64)
    noise = model.noise(seeds)
    assert noise.shape == (3, 2, S // 4, S // 4, 2)
    np.testing.assert_array_equal(noise[0], noise[2])
    np.testing.assert_array_equal(model.noise(seeds[1:2])[0], noise[1])  # whatever else is in the batch
    np.testing.assert_array_equal(tf.function(model.noise)(seeds), noise)


def test_conv_draw_is_the_unconditional_model_with_an_error_image_read():
    model = gqn.ConvDRAW(image_size=S, num_steps=2, hidden_channels=5, z_channels=2)
    images = tf.random.uniform([3, S, S, 3])
    out = model.elbo(images, sigma=0.7)
    assert out["loss"].shape == (3,) and out["kl_per_step"].shape == (3, 2)
    assert model.generate(4).shape == (4, S, S, 3)
    assert model.reconstruct(images).shape == (3, S, S, 3)
    core = model.generator.inference_cores[0]
    assert core.read_canvas is None
    assert core.read_image.w.shape == (4, 4, 6, 6)  # the image and its error image
    # The canvas read makes the difference between GQN's and ConvDRAW's inference core.
    assert tiny().generator.inference_cores[0].read_canvas is not None


# --- errors ------------------------------------------------------------------------------


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="representation must be one of"):
        gqn.GQN("pyramid")
    with pytest.raises(ValueError, match="image_size must be a multiple of 4"):
        gqn.GQN(image_size=30)
    with pytest.raises(ValueError, match="num_steps must be a positive int"):
        gqn.GQN(num_steps=0)
    with pytest.raises(TypeError, match="share_cores must be a bool"):
        gqn.GQN(share_cores="yes")


def test_bad_inputs_are_named():
    model = tiny()
    frames, cameras, query_camera, query = inputs()
    with pytest.raises(ValueError, match=r"context frames must be \[batch, views, 16, 16, 3\]"):
        model.elbo(frames[..., :2], cameras, query_camera, query, 0.7)
    with pytest.raises(ValueError, match="context frames .* and cameras .* differ"):
        model.elbo(frames, cameras[:, :2], query_camera, query, 0.7)
    with pytest.raises(ValueError, match="camera size 7"):
        model.elbo(frames, cameras[..., :5], query_camera, query, 0.7)
    with pytest.raises(ValueError, match=r"images must be \[batch, 16, 16, 3\]"):
        model.elbo(frames, cameras, query_camera, query[:, :8], 0.7)
    with pytest.raises(ValueError, match=r"noise must be \[batch, 2, 4, 4, 2\]"):
        model.elbo(frames, cameras, query_camera, query, 0.7, noise=tf.zeros([B, 3, 4, 4, 2]))
    with pytest.raises(ValueError, match="a tower representation is"):
        model.generate(tf.zeros([B, 1, 1, 6]), query_camera)
    with pytest.raises(TypeError, match="dtype float64"):
        model.elbo(*[tf.cast(x, tf.float64) for x in (frames, cameras, query_camera, query)], 0.7)
