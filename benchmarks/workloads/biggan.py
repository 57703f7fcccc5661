"""BigGAN: the `models.biggan` generator and discriminator, a hinge-loss step with Adam.

The forward step samples images (the generator in inference). The train step is
BigGAN's with one D step per G step: the discriminator's hinge loss on a batch of real
and one of generated images (one pass on both), its Adam update, then the generator's
hinge loss on new samples through the updated discriminator and its Adam update
(BigGAN-PyTorch's learning rates 1e-4 and 4e-4, betas 0 and 0.999). This is what
`benchmarks/peers/biggan_pytorch.py` times in the author's
implementation. `quick` is 32x32 at width 16 (10 classes, no attention); `paper` the 128x128,
ch 96, 1,000-class model with attention at 64x64 (70.4M + 88.0M parameters), which only
needs to build and run here.

Under several replicas (`--replicas N`) the generator's batch norms are cross-replica,
and the harness all-reduces after `loss_and_grads`, so there both updates come from one
generator and one discriminator pass (the D step's fakes also score the G step). With
XLA each replica's passes are compiled and the all-reduce stays outside; the compiled
part must then write no replicated state, so under several replicas (in every mode,
alike) the spectral norms advance in `apply` (outside XLA, for the next step) and the
passes use the stored vectors, and batch statistics without moving averages
(`models/biggan/gan.py` explains). The cross-replica batch norms' own collectives cannot
be compiled for one CPU device either, so that row is an error on CPUs.
"""

import tensorflow as tf

import core
from benchmarks import cases, registry
from models.biggan import biggan, losses


def build(dtype: tf.DType, batch: int, resolution: int, ch: int, classes: int, attention: int | None) -> registry.Case:
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    g = biggan.Generator(ch, resolution, classes, attention_resolution=attention, cross_replica=replicas > 1)
    d = biggan.Discriminator(ch, resolution, classes, attention_resolution=attention)
    g_opt = core.optimizers.Adam(1e-4, beta1=0.0, beta2=0.999)
    d_opt = core.optimizers.Adam(4e-4, beta1=0.0, beta2=0.999)
    params: dict = {}

    def make_inputs(seed: int):
        images = tf.clip_by_value(cases.normal(seed, [batch, resolution, resolution, 3], dtype) * 0.5, -1.0, 1.0)
        z = cases.normal(seed + 1, [2, batch, g.dim_z], dtype)  # the D step's latents, then the G step's
        labels = tf.random.stateless_uniform([3, batch], [seed, 7], 0, classes, tf.int32)
        return images, labels[0], z, labels[1:]

    def initialize(inputs) -> None:
        images, labels, z, fake_labels = inputs
        d(g(z[0], fake_labels[0], is_training=True), labels, is_training=True)

    def initialize_optimizer() -> None:
        params["g"], params["d"] = list(g.trainable_variables), list(d.trainable_variables)
        g_opt.build(params["g"])
        d_opt.build(params["d"])

    def forward(inputs):
        _, _, z, fake_labels = inputs
        return g(z[0], fake_labels[0], is_training=False)

    def d_loss_and_grads(images, labels, fake, fake_labels, is_training):
        with tf.GradientTape() as tape:
            logits = d(tf.concat([images, fake], 0), tf.concat([labels, fake_labels], 0), is_training=is_training)
            real, fake_loss = losses.discriminator_hinge_loss(*tf.split(logits, 2))
            d_loss = real + fake_loss
        return d_loss, tape.gradient(d_loss, params["d"])

    def loss_and_grads(inputs):
        images, labels, z, fake_labels = inputs
        ctx = tf.distribute.get_replica_context()
        if ctx is None or ctx.num_replicas_in_sync == 1:
            # BigGAN's step: a D step on real and generated images, then a G step.
            fake = tf.stop_gradient(g(z[0], fake_labels[0], is_training=True))
            d_loss, d_grads = d_loss_and_grads(images, labels, fake, fake_labels[0], True)
            d_opt.apply(d_grads, params["d"])
            with tf.GradientTape() as tape:
                g_loss = losses.generator_hinge_loss(d(g(z[1], fake_labels[1], True), fake_labels[1], True))
            return d_loss + g_loss, tape.gradient(g_loss, params["g"])
        # Under several replicas the all-reduces come after this (compiled) part, so both
        # updates come from one pass, with no state written here (see the docstring).
        with tf.GradientTape() as tape:
            fake = g(z[0], fake_labels[0], is_training=False, test_local_stats=True)
            d_loss, d_grads = d_loss_and_grads(images, labels, fake, fake_labels[0], False)
            g_loss = losses.generator_hinge_loss(d(fake, fake_labels[0], False))
        return d_loss + g_loss, d_grads + tape.gradient(g_loss, params["g"])

    def apply(grads) -> None:
        ctx = tf.distribute.get_replica_context()
        if ctx is None or ctx.num_replicas_in_sync == 1:
            g_opt.apply(grads, params["g"])
            return
        grads = core.distribute.all_reduce_gradients(grads)
        n = len(params["d"])
        d_opt.apply(grads[:n], params["d"])
        g_opt.apply(grads[n:], params["g"])
        g.power_iteration()
        d.power_iteration()

    return registry.Case(
        batch_size=batch,
        make_inputs=make_inputs,
        initialize=initialize,
        initialize_optimizer=initialize_optimizer,
        forward=forward,
        loss_and_grads=loss_and_grads,
        apply=apply,
        variables=lambda: list(g.variables) + list(d.variables) + list(g_opt.variables) + list(d_opt.variables),
    )


registry.register(
    registry.Workload(
        name="biggan",
        description="models.biggan Generator + Discriminator, hinge losses, two Adams",
        sizes={
            "smoke": dict(batch=2, resolution=32, ch=1, classes=3, attention=None),
            "quick": dict(batch=16, resolution=32, ch=16, classes=10, attention=None),
            "paper": dict(batch=2, resolution=128, ch=96, classes=1000, attention=64),
        },
        build=build,
    )
)
