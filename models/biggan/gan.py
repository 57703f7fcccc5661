"""One BigGAN training step: `d_steps` discriminator updates, then one generator update.

    for each of the d_steps D steps k:
        fake = G(z_k, c_k)                         (no gradient into G)
        L_D = hinge(D(real_k, y_k), D(fake, c_k))  (D sees real and fake in one batch)
        D <- Adam_D(all-reduce(grad L_D))
    L_G = -mean D(G(z, c)) + R_beta(G)             (orthogonal regularisation, beta may be 0)
    G <- Adam_G(all-reduce(grad L_G))
    G_ema <- average of G (`sampling.WeightAverage`), from its start step on

`GANStep.replica_step` runs inside `strategy.run` (or alone, on one device). Each
replica's forward and backward passes are `tf.function`s, compiled by XLA with
`jit_compile=True`; the all-reduces and the optimizer updates run around them, outside
XLA, which compiles for one device and so cannot hold a collective on a CPU. Under
several replicas two more things must stay outside the compiled parts:

- State writes to replicated variables (spectral-norm vectors, batch-norm moving
  averages), which synchronise the replicas: the step advances every spectral norm
  first (`power_iteration()`, outside), then runs the networks with `is_training=False`
  and, for the generator, `test_local_stats=True` inside. That computes exactly what a
  training call computes; the generator's moving averages are then not updated, so
  evaluate with `sampling.standing_statistics` (BigGAN's practice anyway).
- The cross-replica batch norms' own collectives: with a `cross_replica` generator the
  generator runs outside XLA and only the discriminator inside.

On one device, or with `jit_compile=False`, everything is one training call.
"""

from collections.abc import Callable

import tensorflow as tf

import core
from models.biggan import biggan, losses, sampling


class GANStep:
    """The per-replica training step of a generator and a discriminator.

    Args:
      generator, discriminator: the networks (built, or built by `build`).
      g_optimizer, d_optimizer: `core.optimizers` instances (BigGAN: Adam, betas 0 and 0.999).
      average: the generator's weight average, updated after each step; None for none.
      d_steps: discriminator updates per generator update.
      ortho_beta: strength of the orthogonal regularisation of G (the paper's 1e-4;
        0 turns it off, as BigGAN-PyTorch does).
      jit_compile: compile each replica's forward and backward passes with XLA.
    """

    def __init__(
        self,
        generator: biggan.Generator,
        discriminator: biggan.Discriminator,
        g_optimizer: core.Module,
        d_optimizer: core.Module,
        average: sampling.WeightAverage | None = None,
        d_steps: int = 2,
        ortho_beta: float = 0.0,
        jit_compile: bool = False,
    ):
        self.generator, self.discriminator = generator, discriminator
        self.g_optimizer, self.d_optimizer = g_optimizer, d_optimizer
        self.average = average
        self.d_steps = int(d_steps)
        self.ortho_beta = float(ortho_beta)
        self.jit_compile = bool(jit_compile)
        self._compiled: dict = {}

    def build(self, batch) -> None:
        """Makes every variable with one call of each network (eagerly, in a replica context
        under a strategy), then the optimizers' (in the cross-replica context)."""
        self.generator(batch.z[0], batch.fake_labels[0], is_training=False)
        self.discriminator(batch.images[0], batch.labels[0], is_training=False)

    def build_optimizers(self) -> None:
        self.g_optimizer.build(self.generator.trainable_variables)
        self.d_optimizer.build(self.discriminator.trainable_variables)

    # --- the pieces each replica computes ---------------------------------------------

    def _flags(self, pure: bool) -> tuple:
        """(is_training, test_local_stats) of the networks: a training call, or its pure form."""
        return (False, True) if pure else (True, False)

    def generate(self, z, y, pure: bool) -> tf.Tensor:
        is_training, local = self._flags(pure)
        return self.generator(z, y, is_training, test_local_stats=local)

    def d_loss_and_grads(self, images, labels, fake, fake_labels, pure: bool):
        """The discriminator's hinge loss on real and fake in one batch, and its gradients."""
        params = self.discriminator.trainable_variables
        with tf.GradientTape() as tape:
            logits = self.discriminator(
                tf.concat([images, tf.stop_gradient(fake)], 0), tf.concat([labels, fake_labels], 0), not pure
            )
            real_logits, fake_logits = tf.split(logits, 2)
            real, fake_loss = losses.discriminator_hinge_loss(real_logits, fake_logits)
            loss = real + fake_loss
        metrics = {
            "d_loss_real": real,
            "d_loss_fake": fake_loss,
            "d_real": tf.reduce_mean(real_logits),
            "d_fake": tf.reduce_mean(fake_logits),
        }
        return tape.gradient(loss, params), metrics

    def g_loss_and_grads(self, z, fake_labels, pure: bool):
        """The generator's hinge loss (plus the orthogonal regulariser), and its gradients."""
        params = self.generator.trainable_variables
        with tf.GradientTape() as tape:
            logits = self.discriminator(self.generate(z, fake_labels, pure), fake_labels, not pure)
            g_loss = losses.generator_hinge_loss(logits)
            loss = g_loss
            if self.ortho_beta:
                loss += losses.orthogonal_regularization(losses.regularized_weights(self.generator), self.ortho_beta)
        return tape.gradient(loss, params), {"g_loss": g_loss}

    def _fn(self, name: str, fn: Callable, compile_: bool) -> Callable:
        """`fn` compiled by XLA, or `fn` itself (inline: a nested `tf.function` may not write
        replicated state under a strategy)."""
        if not compile_:
            return fn
        key = (name, compile_)
        if key not in self._compiled:
            self._compiled[key] = tf.function(fn, jit_compile=compile_, reduce_retracing=True, autograph=False)
        return self._compiled[key]

    # --- the step ----------------------------------------------------------------------------

    def replica_step(self, batch, step: tf.Tensor) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        """One step on this replica's `data.Batch`: (its metrics, means over its batch; whether it was finite).

        Call it inside `strategy.run` (or directly, on one device), itself inside a
        `tf.function`. `step` is the generator step being taken (for the weight average).

        Each of the step's updates (`d_steps` of D, one of G, the weight average) is
        applied only if its losses on every replica and its all-reduced gradients are
        finite, and only if every update before it in the step was applied and left the
        weights finite; the verdict (a bool tensor, the same on every replica) says
        whether all were. An update that overflows the weights is itself applied (the
        verdict is then False): undo the step by restoring the variables as they were
        before it, if the run goes on.
        """
        ctx = tf.distribute.get_replica_context()
        replicas = 1 if ctx is None else ctx.num_replicas_in_sync
        pure = self.jit_compile and replicas > 1
        # A cross-replica generator's collectives cannot be compiled for one device.
        compile_g = self.jit_compile and not (replicas > 1 and self.generator.cross_replica)
        d_params, g_params = self.discriminator.trainable_variables, self.generator.trainable_variables
        finite, metrics = tf.constant(True), {}
        for k in range(self.d_steps):
            if pure:
                self.generator.power_iteration()
            if pure and not compile_g:
                fake = self.generate(batch.z[k], batch.fake_labels[k], pure)
                self.discriminator.power_iteration()
                grads, metrics = self._fn("d", self.d_loss_and_grads, self.jit_compile)(
                    batch.images[k], batch.labels[k], fake, batch.fake_labels[k], pure
                )
            else:
                if pure:
                    self.discriminator.power_iteration()
                grads, metrics = self._fn("gd", self._generate_and_d, self.jit_compile)(
                    batch.images[k], batch.labels[k], batch.z[k], batch.fake_labels[k], pure
                )
            losses_k = [metrics["d_loss_real"], metrics["d_loss_fake"]]
            finite = _guarded_update(self.d_optimizer, grads, d_params, losses_k, finite)
        if pure:
            self.generator.power_iteration()
            self.discriminator.power_iteration()
        grads, g_metrics = self._fn("g", self.g_loss_and_grads, compile_g)(batch.z[-1], batch.fake_labels[-1], pure)
        finite = _guarded_update(self.g_optimizer, grads, g_params, [g_metrics["g_loss"]], finite)
        if self.average is not None:
            self.average.update(step, enabled=finite)
        return {**metrics, **g_metrics}, finite

    def _generate_and_d(self, images, labels, z, fake_labels, pure: bool):
        fake = self.generate(z, fake_labels, pure)
        return self.d_loss_and_grads(images, labels, fake, fake_labels, pure)


def _guarded_update(optimizer, grads, params, losses_, finite: tf.Tensor) -> tf.Tensor:
    """All-reduces `grads` and applies them if `finite` and the losses (on every replica)
    and the reduced gradients are finite; returns whether it did and the weights stayed finite."""
    grads = core.distribute.all_reduce_gradients(grads)
    bad = tf.add_n([tf.cast(tf.logical_not(tf.math.is_finite(loss)), tf.float32) for loss in losses_])
    # One verdict for all replicas: the reduced gradients are the same everywhere, and a
    # replica's non-finite loss counts for all.
    bad = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, bad)
    ok = finite & tf.math.is_finite(tf.linalg.global_norm(grads)) & tf.equal(bad, 0.0)

    def update():
        optimizer.apply(grads, params)
        return tf.reduce_all([tf.reduce_all(tf.math.is_finite(p)) for p in params])

    return tf.cond(ok, update, lambda: tf.constant(False))
