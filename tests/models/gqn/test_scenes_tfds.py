"""The generated scenes through TensorFlow Datasets: built offline, loaded with tfds.load."""

import numpy as np
import tensorflow_datasets as tfds

from models.gqn import scenes, scenes_tfds


def test_tfds_builds_and_loads_the_generated_scenes_offline(tmp_path):
    settings = scenes.Settings(frame_size=16, views=3, train_scenes=3, test_scenes=2)
    config = scenes_tfds.GeneratedRoomsConfig(name="tiny", settings=settings)
    builder = scenes_tfds.GeneratedRooms(config=config, data_dir=str(tmp_path))
    builder.download_and_prepare()
    assert builder.info.splits["train"].num_examples == 3 and builder.info.splits["test"].num_examples == 2
    loaded = tfds.load("generated_rooms/tiny", split="test", data_dir=str(tmp_path), download=False)
    for number, example in enumerate(loaded):
        frames, cameras = scenes.scene_views(settings, "test", number)
        np.testing.assert_array_equal(example["frames"], frames)  # PNG: the renderer's pixels
        np.testing.assert_array_equal(example["cameras"], cameras)
    assert {c.name for c in scenes_tfds.GeneratedRooms.BUILDER_CONFIGS} == {"64", "32"}
    assert "generated_rooms" in tfds.list_builders()
