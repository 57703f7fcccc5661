"""SceneTask: batches as a pure function of (seed, step, example), replicas, epochs, evaluation."""

import numpy as np
import pytest
import tensorflow as tf

from models.gqn import scenes
from models.gqn import task as task_lib

SETTINGS = scenes.Settings(frame_size=16, views=5, train_scenes=6, test_scenes=3, scenes_per_file=4)


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("scenes"))
    return task_lib.SceneTask(root, generate=SETTINGS, context_size=2, batch_size=4, eval_batch_size=2)


def batches(task, seed, start, count, context=None):
    return [{k: v.numpy() for k, v in b.items()} for b in task.dataset(seed, start, context).take(count)]


def assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_batches_have_the_model_inputs(task):
    (batch,) = batches(task, 0, 0, 1)
    assert batch["context_frames"].shape == (4, 2, 16, 16, 3) and batch["context_frames"].dtype == np.float32
    assert batch["context_cameras"].shape == (4, 2, 7)
    assert batch["query_frame"].shape == (4, 16, 16, 3) and batch["query_camera"].shape == (4, 7)
    assert batch["noise_seed"].shape == (4, 2) and batch["noise_seed"].dtype == np.int64
    assert task.image_size == 16 and len(task.index("train")) == 6 and len(task.index("test")) == 3


def test_a_batch_is_a_pure_function_of_seed_and_step(task):
    run = batches(task, 0, 0, 3)
    assert_same(batches(task, 0, 2, 1)[0], run[2])  # a resumed run starts where it stopped
    assert_same(batches(task, 0, 0, 3)[1], run[1])
    other = batches(task, 1, 0, 1)[0]
    assert not np.array_equal(other["query_frame"], run[0]["query_frame"])


def test_replicas_split_the_global_batch_of_one_device(task):
    whole = batches(task, 5, 1, 2)
    two = tf.distribute.InputContext(num_input_pipelines=1, input_pipeline_id=0, num_replicas_in_sync=2)
    parts = batches(task, 5, 1, 4, two)  # step 1: replicas 0, 1; step 2: replicas 0, 1
    for step in range(2):
        joined = {k: np.concatenate([parts[2 * step][k], parts[2 * step + 1][k]]) for k in whole[step]}
        assert_same(joined, whole[step])
    # Two input pipelines (workers) of two replicas each: pipeline 1 makes replicas 2 and 3.
    second = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1, num_replicas_in_sync=4)
    quarters = batches(task, 5, 1, 2, second)
    assert_same(
        {k: np.concatenate([q[k] for q in quarters]) for k in whole[0]}, {k: v[2:] for k, v in whole[0].items()}
    )


def test_each_epoch_visits_every_scene_once_with_fresh_views(task):
    run = batches(task, 3, 0, 6)  # 24 examples: four epochs of the 6 scenes
    order = np.concatenate([b["scene"] for b in run])
    for epoch in range(4):
        assert sorted(order[6 * epoch : 6 * epoch + 6]) == list(range(6))
    assert not np.array_equal(order[:6], order[6:12])  # another order each epoch
    queries = np.concatenate([b["query_camera"] for b in run])
    first = {s: queries[i] for i, s in enumerate(order[:6])}
    second = {s: queries[6 + i] for i, s in enumerate(order[6:12])}
    assert sum(not np.array_equal(first[s], second[s]) for s in range(6)) >= 4  # new views drawn


def test_bad_settings_are_named(task, tmp_path):
    with pytest.raises(ValueError, match="does not split over 3 replicas"):
        task.dataset(0, 0, tf.distribute.InputContext(num_replicas_in_sync=3))
    with pytest.raises(ValueError, match="context_size 5 needs 6 views per scene; the data set has 5"):
        task_lib.SceneTask(task.data_dir, generate=SETTINGS, context_size=5)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        task_lib.SceneTask(task.data_dir, generate=SETTINGS, batch_size=0)
    with pytest.raises(ValueError, match="unknown data set"):
        task_lib.SceneTask(str(tmp_path), dataset_name="nope")
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        task_lib.SceneTask(str(tmp_path), dataset_name="rooms_ring_camera").index("train")


def test_evaluation_against_the_mean_image(task):
    mean_image = task.mean_image()
    assert mean_image.shape == (16, 16, 3) and 0 < mean_image.mean() < 1

    def predictor(image_of):
        def predict(batch):
            zeros = tf.zeros_like(batch["query_frame"][:, 0, 0, 0])
            terms = {"loss": zeros + 2, "nll": zeros + 1.5, "kl": zeros + 0.5, "mse": zeros}
            return {**terms, "prediction": image_of(batch)}

        return predict

    perfect = task.evaluate(predictor(lambda b: b["query_frame"]), seed=0)["test"]
    assert perfect["prediction_mse"] == 0 and perfect["loss"] == 2 and perfect["kl"] == 0.5
    assert perfect["mean_image_mse"] > 0
    baseline = task.evaluate(predictor(lambda b: tf.broadcast_to(mean_image, tf.shape(b["query_frame"]))), seed=0)
    np.testing.assert_allclose(baseline["test"]["ratio"], 1.0, rtol=1e-5)
    assert not task.is_solved(baseline)
    solvable = task_lib.SceneTask(task.data_dir, generate=SETTINGS, context_size=2, solved_ratio=2.0)
    assert solvable.is_solved({"test": {"ratio": 2.5}}) and not solvable.is_solved({"test": {"ratio": 1.5}})
    # The same held-out examples at every evaluation.
    first = [b["query_camera"].numpy() for b in task.eval_batches(seed=0)]
    np.testing.assert_array_equal(
        np.concatenate(first), np.concatenate([b["query_camera"] for b in task.eval_batches(0)])
    )
    assert sum(len(f) for f in first) == 3


def test_an_empty_evaluation_set_raises(tmp_path):
    settings = scenes.Settings(frame_size=16, views=5, train_scenes=2, test_scenes=1, scenes_per_file=4)
    scenes.write_scenes(str(tmp_path), settings)
    with tf.io.TFRecordWriter(str(tmp_path / "test" / "1-of-1.tfrecord")):
        pass  # an empty test split
    empty = task_lib.SceneTask(str(tmp_path), dataset_name=settings.info, context_size=2)
    with pytest.raises(ValueError, match="test holds no scenes"):
        empty.evaluate(lambda batch: {}, seed=0)
