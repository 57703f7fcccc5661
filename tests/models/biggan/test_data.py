"""shapes32 (rendering and its TFDS builder), TFDS sources, and the task's determinism."""

import numpy as np
import pytest
import tensorflow as tf

from models.biggan import data


def test_render_is_a_pure_function_of_seed_and_index():
    images, labels = data.render_shapes(0, [3, 17, 40])
    again, _ = data.render_shapes(0, [17])
    np.testing.assert_array_equal(again[0], images[1])
    assert images.dtype == np.uint8 and images.shape == (3, 32, 32, 3)
    np.testing.assert_array_equal(labels, [3, 7, 0])
    other, _ = data.render_shapes(1, [3])
    assert not np.array_equal(other[0], images[0])
    # Every class draws something: foreground and background differ within each image.
    all_classes, _ = data.render_shapes(0, np.arange(10))
    assert all(img.std() > 10 for img in all_classes)


def _task(n=23, batch_size=4, d_steps=2):
    images, labels = data.render_shapes(0, np.arange(n))
    return data.GANTask(data.in_memory_images(images, labels, 10), batch_size=batch_size, d_steps=d_steps, dim_z=6)


def test_task_batches_are_deterministic_and_split_over_replicas():
    task = _task()
    whole = task.global_batch(7, 3)
    assert whole.images.shape == [2, 4, 32, 32, 3] and whole.z.shape == [3, 4, 6]
    assert whole.fake_labels.shape == [3, 4] and whole.labels.dtype == tf.int32
    assert float(tf.reduce_min(whole.images)) >= -1.0 and float(tf.reduce_max(whole.images)) <= 1.0
    parts = [task.replica_batch(7, 3, r, 2) for r in range(2)]
    for i, field in enumerate(whole):
        np.testing.assert_array_equal(np.concatenate([p[i] for p in parts], axis=1), field)
    # The same (seed, step), the same batch; another step, another.
    np.testing.assert_array_equal(task.global_batch(7, 3).z, whole.z)
    assert not np.array_equal(task.global_batch(7, 4).z, whole.z)
    with pytest.raises(ValueError, match="does not split evenly over 3"):
        task.replica_batch(7, 3, 0, 3)


def test_every_epoch_visits_every_record_once():
    task = _task(n=23, batch_size=4, d_steps=1)
    # Records are read by index: recover them by matching the images.
    images, _ = data.render_shapes(0, np.arange(23))
    flat = images.reshape(23, -1).astype(np.float32) / 127.5 - 1.0
    seen = []
    for step in range(12):  # 48 examples: two epochs of 23, and two more
        batch = task.global_batch(0, step).images.numpy().reshape(4, -1)
        seen += [int(np.argmin(np.abs(flat - row).sum(1))) for row in batch]
    assert sorted(seen[:23]) == list(range(23)) and sorted(seen[23:46]) == list(range(23))
    assert seen[:23] != seen[23:46]  # each epoch has its own order


def test_dataset_from_a_step_resumes_the_stream(mirrored):
    task = _task()
    context = tf.distribute.InputContext(num_input_pipelines=1, input_pipeline_id=0, num_replicas_in_sync=2)
    stream = list(task.dataset(5, 0, context).take(6))  # steps 0, 1, 2 for replicas 0 and 1
    resumed = list(task.dataset(5, 2, context).take(2))
    for a, b in zip(stream[4:], resumed):
        np.testing.assert_array_equal(a.z, b.z)
        np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(np.concatenate([stream[2].z, stream[3].z], 1), task.global_batch(5, 1).z)
    # Through a strategy: each replica gets its share.
    dist = mirrored.distribute_datasets_from_function(lambda ctx: _task(batch_size=8).dataset(5, 0, ctx))
    first = next(iter(dist))
    shares = [t.numpy() for t in mirrored.experimental_local_results(first.z)]
    np.testing.assert_array_equal(np.concatenate(shares, 1), _task(batch_size=8).global_batch(5, 0).z)


def test_tfds_builder_and_readers(tmp_path):
    import tensorflow_datasets as tfds

    from models.biggan import shapes32

    with pytest.raises(ValueError, match="is not prepared"):
        data.tfds_images("shapes32/tiny", data_dir=str(tmp_path))
    builder = shapes32.Shapes32(config="tiny", data_dir=str(tmp_path), file_format="array_record")
    builder.download_and_prepare()
    expected, labels = data.render_shapes(1, np.arange(100))
    images = data.tfds_images("shapes32/tiny", "test", data_dir=str(tmp_path), in_memory=True)
    assert images.size == 100 and images.num_classes == 10 and images.resolution == 32
    # TFDS stores the examples in an order of its own: match each read one to its rendering.
    got, got_labels = images.read(tf.range(100, dtype=tf.int64))
    flat = expected.reshape(100, -1).astype(np.int64)
    match = [int(np.argmin(np.abs(flat - g.reshape(-1)).sum(1))) for g in got.numpy().astype(np.int64)]
    assert sorted(match) == list(range(100))
    np.testing.assert_array_equal(got.numpy(), expected[match])
    np.testing.assert_array_equal(got_labels, labels[match])
    # By index through TFDS's random access (the way for data too large for memory).
    by_index = data.tfds_images("shapes32/tiny", "test", data_dir=str(tmp_path), in_memory=False, resolution=16)
    small, small_labels = by_index.read(tf.constant([57, 3], tf.int64))
    assert small.shape == [2, 16, 16, 3] and small.dtype == tf.uint8
    np.testing.assert_array_equal(small_labels, got_labels.numpy()[[57, 3]])
    area = tf.image.resize(got.numpy()[[57]].astype(np.float32), [16, 16], method="area")
    assert np.abs(small[0].numpy().astype(np.float32) - area[0].numpy()).max() <= 1.0
    assert tfds.builder("shapes32/tiny", data_dir=str(tmp_path)).info.splits["train"].num_examples == 200
