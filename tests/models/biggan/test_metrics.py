"""FID and IS against closed forms; the offline classifier; a SavedModel extractor on a model the test writes."""

import numpy as np
import pytest
import tensorflow as tf

from models.biggan import data, metrics


def test_fid_closed_forms():
    rng = np.random.RandomState(0)
    a = rng.normal(size=[5, 5])
    sigma = a @ a.T + np.eye(5)
    mu = rng.normal(size=5)
    assert abs(metrics.frechet_distance(mu, sigma, mu, sigma)) < 1e-9
    shift = rng.normal(size=5)
    np.testing.assert_allclose(metrics.frechet_distance(mu, sigma, mu + shift, sigma), np.sum(shift**2), rtol=1e-9)
    # Diagonal covariances: the sum of (sqrt(s1) - sqrt(s2))^2.
    s1, s2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    np.testing.assert_allclose(metrics.frechet_distance(np.zeros(3), np.diag(s1), np.zeros(3), np.diag(s2)), 2.0)
    # From features: two large samples of the same Gaussian are close to 0; shifted by 1 in 4 dims, near 4.
    x, y = rng.normal(size=[20000, 4]), rng.normal(size=[20000, 4])
    base = metrics.fid_from_features(x, y)
    assert base < 0.01
    # Shifting one set by 1 in each of 4 dims adds exactly the change of the squared mean distance (about 4).
    d = x.mean(0) - y.mean(0)
    np.testing.assert_allclose(
        metrics.fid_from_features(x, y + 1.0) - base, np.sum((d - 1) ** 2) - np.sum(d**2), rtol=1e-9
    )
    with pytest.raises(ValueError, match="mismatched"):
        metrics.frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


def test_inception_score_closed_forms():
    # Confident and uniform over classes: IS = number of classes; the same for every image: 1.
    logits = np.full([100, 10], -1e4)
    logits[np.arange(100), np.arange(100) % 10] = 0.0
    mean, std = metrics.inception_score(logits, splits=10)
    np.testing.assert_allclose(mean, 10.0, rtol=1e-9)
    assert std < 1e-9
    np.testing.assert_allclose(metrics.inception_score(np.zeros([50, 7]), splits=5)[0], 1.0)
    same = np.tile([[5.0, 0.0, 0.0]], [30, 1])
    np.testing.assert_allclose(metrics.inception_score(same, splits=3)[0], 1.0)


def test_classifier_learns_shapes32_above_chance():
    images, labels = data.render_shapes(0, np.arange(600))
    classifier = metrics.train_classifier(images, labels, 10, steps=120, batch_size=32)
    test_images, test_labels = data.render_shapes(1, np.arange(200))
    x = test_images.astype(np.float32) / 127.5 - 1.0
    assert metrics.accuracy(classifier, x, test_labels) > 0.2  # twice chance, after 120 steps
    features, logits = metrics.extract(classifier, x[:7], batch_size=3)
    assert features.shape == (7, 128) and logits.shape == (7, 10)


def test_saved_model_extractor_reads_a_saved_model(tmp_path):
    class Fake(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
        def serve(self, images):
            pooled = tf.reduce_mean(images, axis=[1, 2], keepdims=True)  # [N, 1, 1, 3], like pool_3
            return {"pool_3": pooled, "logits": tf.concat([pooled[:, 0, 0], -pooled[:, 0, 0]], 1)}

    fake = Fake()
    tf.saved_model.save(fake, str(tmp_path), signatures={"serving_default": fake.serve})
    extractor = metrics.SavedModelExtractor(str(tmp_path), input_size=8, input_range=(0.0, 255.0))
    images = tf.fill([2, 4, 4, 3], 1.0)  # white in [-1, 1]: 255 in the model's range
    features, logits = extractor(images)
    np.testing.assert_allclose(features, np.full([2, 3], 255.0), rtol=1e-6)
    assert logits.shape == [2, 6]
    with pytest.raises(ValueError, match="no output"):
        metrics.SavedModelExtractor(str(tmp_path), features_key="mixed_7c")
    with pytest.raises(ValueError, match="no SavedModel"):
        metrics.SavedModelExtractor(str(tmp_path / "missing"))
