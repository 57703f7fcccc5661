"""Sample quality: Frechet distance (FID) and Inception Score (IS), from a pluggable feature extractor.

    FID = |m1 - m2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))     (Heusel et al., 2017)
    IS  = exp(E_x KL(p(y|x) || p(y)))                      (Salimans et al., 2016)

m, S: mean and covariance of the extractor's features of real (1) and generated (2)
images; p(y|x): its class probabilities. The maths works on activations (numbers in,
numbers out) and is tested against closed forms.

An extractor is any callable `images -> (features [N, F], logits [N, K])` taking float
images [N, H, W, 3] in [-1, 1]. Two are provided:

- `Classifier`, a small convolutional network, with `offline_extractor` training it on
  the shapes32 data generated here (deterministically, cached on disk), so the metrics
  run on a machine with no network. Numbers from it are NOT comparable with published
  FIDs and ISs, which all use the 2015 Inception network.
- `SavedModelExtractor`, for those Inception weights when the user has them: a
  TensorFlow SavedModel at a local path (for instance the TF-GAN Inception module, or
  `tf.keras.applications.InceptionV3` exported with pool and logit outputs), whose
  outputs are picked by key. Nothing here downloads it.
"""

import os
from collections.abc import Callable

import numpy as np
import tensorflow as tf

import core

Extractor = Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor]]


# --- the maths ---------------------------------------------------------------------------


def statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean [F] and (unbiased) covariance [F, F] of features [N, F], in float64."""
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"need features [N >= 2, F], got shape {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """The Frechet distance between N(mu1, sigma1) and N(mu2, sigma2).

    tr((S1 S2)^(1/2)) is computed as the sum of the square roots of the eigenvalues of
    the symmetric S1^(1/2) S2 S1^(1/2) (they are those of S1 S2), which needs no
    general matrix square root and stays real; eigenvalues that rounding takes below
    zero count as zero.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(f"mismatched statistics: {mu1.shape}, {sigma1.shape} vs {mu2.shape}, {sigma2.shape}")
    values, vectors = np.linalg.eigh((sigma1 + sigma1.T) / 2)
    root1 = (vectors * np.sqrt(np.maximum(values, 0.0))) @ vectors.T
    middle = root1 @ sigma2 @ root1
    trace_root = np.sqrt(np.maximum(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0)).sum()
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_root)


def fid_from_features(real: np.ndarray, fake: np.ndarray) -> float:
    """FID between two sets of features [N, F]."""
    return frechet_distance(*statistics(real), *statistics(fake))


def inception_score(logits: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """The Inception Score of class logits [N, K]: mean and standard deviation over `splits` parts.

    Computed from log-probabilities (log-softmax), so confident predictions give no 0 * log 0.
    """
    logits = np.asarray(logits, np.float64)
    if logits.ndim != 2 or len(logits) < splits:
        raise ValueError(f"need logits [N >= splits = {splits}, K], got shape {logits.shape}")
    log_p = logits - logits.max(axis=1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    scores = []
    for part in np.array_split(log_p, splits):
        log_marginal = np.log(np.exp(part).mean(axis=0))
        kl = (np.exp(part) * (part - log_marginal)).sum(axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


def extract(
    extractor: Extractor, images: np.ndarray | tf.Tensor, batch_size: int = 250
) -> tuple[np.ndarray, np.ndarray]:
    """The extractor's (features, logits) of images [N, H, W, 3] in [-1, 1], batch by batch."""
    features, logits = [], []
    for start in range(0, len(images), batch_size):
        f, g = extractor(tf.convert_to_tensor(images[start : start + batch_size], tf.float32))
        features.append(np.asarray(f))
        logits.append(np.asarray(g))
    return np.concatenate(features), np.concatenate(logits)


# --- the offline extractor ---------------------------------------------------------------


class Classifier(core.Module):
    """A small image classifier whose penultimate layer serves as features.

    Three 3x3 convolutions (32, 64, 128 channels) with ReLU, the first two followed by
    2x2 max pooling, global average pooling, a 128-unit ReLU layer (the features), and
    a linear layer to the class logits. Call `classifier(images)` with images in [-1, 1];
    it returns (features [N, 128], logits [N, num_classes]).
    """

    def __init__(self, num_classes: int = 10, name: str | None = "classifier"):
        super().__init__(name=name)
        self.num_classes = core.utils.positive_int(self, num_classes, "num_classes")
        self.convs = [core.Conv2D(c, 3, name=f"conv_{i}") for i, c in enumerate((32, 64, 128))]
        self.hidden = core.Linear(128, name="hidden")
        self.logits = core.Linear(num_classes, name="logits")

    def __call__(self, images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        h = images
        for i, conv in enumerate(self.convs):
            h = tf.nn.relu(conv(h))
            if i < 2:
                h = tf.nn.max_pool2d(h, 2, 2, "VALID")
        features = tf.nn.relu(self.hidden(tf.reduce_mean(h, axis=[1, 2])))
        return features, self.logits(features)


def train_classifier(
    images: np.ndarray, labels: np.ndarray, num_classes: int, steps: int = 1500, batch_size: int = 64, seed: int = 0
) -> Classifier:
    """Trains a `Classifier` on uint8 images [N, H, W, 3] and labels [N] (Adam 1e-3, cross-entropy)."""
    core.utils.set_seed(seed)
    classifier = Classifier(num_classes)
    optimizer = core.optimizers.Adam(1e-3)
    table, classes = tf.constant(images), tf.constant(np.asarray(labels, np.int32))

    @tf.function(autograph=False)
    def step(i):
        index = tf.random.stateless_uniform([batch_size], [seed, i], 0, len(images), tf.int32)
        x = tf.cast(tf.gather(table, index), tf.float32) / 127.5 - 1.0
        with tf.GradientTape() as tape:
            _, logits = classifier(x)
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.gather(classes, index), logits=logits)
            )
        optimizer.apply(tape.gradient(loss, classifier.trainable_variables), classifier.trainable_variables)
        return loss

    classifier(tf.zeros([1, *images.shape[1:]]))
    optimizer.build(classifier.trainable_variables)
    for i in range(steps):
        step(tf.constant(i, tf.int64))
    return classifier


def accuracy(classifier: Extractor, images: np.ndarray | tf.Tensor, labels: np.ndarray, batch_size: int = 250) -> float:
    """The fraction of images [N, H, W, 3] in [-1, 1] the classifier puts in their class."""
    _, logits = extract(classifier, images, batch_size)
    return float(np.mean(np.argmax(logits, axis=1) == np.asarray(labels)))


def default_cache_dir() -> str:
    return os.path.join(os.path.expanduser("~"), ".cache", "flagship", "biggan")


def offline_extractor(cache_dir: str | None = None, train_examples: int = 20_000, steps: int = 1500) -> Classifier:
    """The offline default extractor: a `Classifier` trained on shapes32 (stream 0).

    Trained on first use (a few minutes on a CPU; deterministic) and saved under
    `cache_dir` (default ~/.cache/flagship/biggan), then read back from there.
    """
    from models.biggan import data

    directory = os.path.join(cache_dir or default_cache_dir(), f"shapes32_classifier_{train_examples}_{steps}")
    classifier = Classifier(len(data.SHAPES_CLASSES))
    classifier(tf.zeros([1, data.SHAPES_SIZE, data.SHAPES_SIZE, 3]))
    checkpoint = tf.train.Checkpoint(classifier=classifier)
    saved = tf.train.latest_checkpoint(directory)
    if saved:
        checkpoint.read(saved).assert_consumed()
        return classifier
    images, labels = data.render_shapes(0, np.arange(train_examples))
    trained = train_classifier(images, labels, len(data.SHAPES_CLASSES), steps=steps)
    for target, source in zip(classifier.variables, trained.variables):
        target.assign(source)
    tf.train.CheckpointManager(checkpoint, directory, max_to_keep=1).save()
    return classifier


# --- Inception weights from the user -------------------------------------------------------


class SavedModelExtractor:
    """Features and logits from a SavedModel at a local path (the Inception network, typically).

    Images in [-1, 1] are resized (bilinear) to `input_size` and passed to the
    SavedModel's `signature` in the range it expects; its outputs `features_key` and
    `logits_key` are flattened to [N, F] and [N, K].

    Args:
      path: the SavedModel's directory.
      features_key, logits_key: names of the outputs (the TF-GAN Inception module's are
        "pool_3" and "logits").
      signature: the signature to call ("serving_default").
      input_size: the side images are resized to (299 for Inception).
      input_range: the (low, high) range the model takes pixels in ((-1, 1) for TF-GAN's;
        (0, 255) for others).

    Raises:
      ValueError: the path holds no SavedModel, or the signature or an output is missing.
    """

    def __init__(
        self,
        path: str,
        features_key: str = "pool_3",
        logits_key: str = "logits",
        signature: str = "serving_default",
        input_size: int = 299,
        input_range: tuple[float, float] = (-1.0, 1.0),
    ):
        if not tf.saved_model.contains_saved_model(path):
            raise ValueError(
                f"no SavedModel at {path!r}: give the directory of the Inception network you downloaded "
                "(nothing here downloads it)"
            )
        self._model = tf.saved_model.load(path)
        signatures = getattr(self._model, "signatures", {})
        if signature not in signatures:
            raise ValueError(f"the SavedModel at {path!r} has no signature {signature!r}; it has {sorted(signatures)}")
        self._fn = signatures[signature]
        outputs = set(self._fn.structured_outputs)
        missing = [k for k in (features_key, logits_key) if k not in outputs]
        if missing:
            raise ValueError(
                f"the SavedModel at {path!r} has no output(s) {missing}; its outputs are {sorted(outputs)}"
            )
        _, inputs = self._fn.structured_input_signature
        if len(inputs) != 1:
            raise ValueError(f"the signature {signature!r} takes {sorted(inputs)}; expected one image input")
        self._input_name = next(iter(inputs))
        self._keys = (features_key, logits_key)
        self._size = input_size
        self._range = input_range

    def __call__(self, images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        x = tf.image.resize(tf.convert_to_tensor(images, tf.float32), [self._size, self._size], method="bilinear")
        low, high = self._range
        x = (x + 1.0) / 2.0 * (high - low) + low
        outputs = self._fn(**{self._input_name: x})
        features, logits = (outputs[k] for k in self._keys)
        return tf.reshape(features, [tf.shape(features)[0], -1]), tf.reshape(logits, [tf.shape(logits)[0], -1])
