"""BigGAN's losses: the hinge loss (Lim & Ye, 2017; Miyato et al., 2018) and orthogonal regularisation.

    L_D = E[max(0, 1 - D(x))] + E[max(0, 1 + D(G(z)))]      (x real)
    L_G = -E[D(G(z))]
    R_beta(W) = beta * || W^T W * (1 - I) ||_F^2            (Brock et al., 2019, eq. 3)

The regulariser is the paper's "off-diagonal" form: it pushes the columns of W apart
without fixing their norms. W is a weight viewed as a matrix with one column per output
unit ([k * k * in, out] for a convolution kernel).
"""

from collections.abc import Iterable

import tensorflow as tf


def discriminator_hinge_loss(real_logits: tf.Tensor, fake_logits: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """The discriminator's hinge loss, as its two terms (real, fake), each a mean over its batch."""
    real = tf.reduce_mean(tf.nn.relu(1.0 - real_logits))
    fake = tf.reduce_mean(tf.nn.relu(1.0 + fake_logits))
    return real, fake


def generator_hinge_loss(fake_logits: tf.Tensor) -> tf.Tensor:
    """The generator's hinge loss: minus the mean logit of its samples."""
    return -tf.reduce_mean(fake_logits)


def off_diagonal_penalty(weight: tf.Tensor) -> tf.Tensor:
    """`|| W^T W * (1 - I) ||_F^2` for `weight` viewed as W [prod(shape[:-1]), shape[-1]].

    For a wide W (fewer rows than columns) the [columns x columns] Gram matrix would be
    large (24,576^2 for the 128x128 generator's first layer) and cannot be orthogonal
    anyway; there the same number comes from the small Gram matrix, by
    ||W^T W||_F = ||W W^T||_F and a diagonal made of the columns' squared norms.
    """
    w = tf.reshape(weight, [-1, weight.shape[-1]])
    rows, cols = w.shape
    if cols <= rows:
        gram = tf.matmul(w, w, transpose_a=True)
        return tf.reduce_sum(tf.square(gram * (1.0 - tf.eye(cols, dtype=gram.dtype))))
    small = tf.matmul(w, w, transpose_b=True)
    column_norms = tf.reduce_sum(tf.square(w), axis=0)
    return tf.reduce_sum(tf.square(small)) - tf.reduce_sum(tf.square(column_norms))


def orthogonal_regularization(weights: Iterable[tf.Tensor], beta: float = 1e-4) -> tf.Tensor:
    """`beta` times the sum of `off_diagonal_penalty` over `weights` (the paper's beta: 1e-4).

    BigGAN-PyTorch's `ortho` adds `2 beta (W W^T * (1 - I)) W` to the gradients, the
    gradient of half this penalty: the same regulariser at half the strength.
    """
    weights = list(weights)
    if not weights:
        return tf.constant(0.0)
    return beta * tf.add_n([off_diagonal_penalty(w) for w in weights])


def regularized_weights(generator) -> list[tf.Variable]:
    """The generator's weights the paper regularises: every trainable one of rank >= 2 but
    the shared class embedding."""
    shared = generator.shared.embeddings
    return [v for v in generator.trainable_variables if v.shape.rank >= 2 and v is not shared]
