"""The generated scenes (`scenes.py`) as a TensorFlow Datasets builder: `tfds.load("generated_rooms")`.

Importing this module registers the builder; nothing is downloaded, the scenes are
rendered while the data set is prepared:

    import tensorflow_datasets as tfds
    from models.gqn import scenes_tfds  # registers "generated_rooms"

    train = tfds.load("generated_rooms/64", split="train", data_dir="/tmp/tfds")

Configurations: "64" (64x64 frames, 2,000 training and 200 test scenes, the sizes of
`scenes.Settings()`) and "32" (32x32, the same counts). Other sizes:
`GeneratedRooms(config=GeneratedRoomsConfig(name=..., settings=scenes.Settings(...)))`.

Each example is {"frames": uint8 [views, S, S, 3], "cameras": float32 [views, 5]}, the
cameras as the gqn-datasets store them, (x, y, z, yaw, pitch); `data.camera_transform`
gives the 7-vectors the model takes. Frames are stored as PNG, so they are exactly the
renderer's pixels (the TFRecord files of `scenes.write_scenes` hold JPEG, as the
originals do). Example i of a split is scene i of `scenes.scene_views`.
"""

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from models.gqn import scenes


@dataclasses.dataclass
class GeneratedRoomsConfig(tfds.core.BuilderConfig):
    """A builder configuration: the `scenes.Settings` the scenes are made with."""

    settings: scenes.Settings = dataclasses.field(default_factory=scenes.Settings)


class GeneratedRooms(tfds.core.GeneratorBasedBuilder):
    """Rooms with a few coloured objects seen from a ring of cameras, rendered offline (`scenes.py`)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    BUILDER_CONFIGS = [
        GeneratedRoomsConfig(name="64", description="64x64 frames", settings=scenes.Settings(frame_size=64)),
        GeneratedRoomsConfig(name="32", description="32x32 frames", settings=scenes.Settings(frame_size=32)),
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        settings = self.builder_config.settings
        size, views = settings.frame_size, settings.views
        return self.dataset_info_from_configs(
            description=__doc__.splitlines()[0],
            features=tfds.features.FeaturesDict(
                {
                    "frames": tfds.features.Sequence(
                        tfds.features.Image(shape=(size, size, 3), encoding_format="png"), length=views
                    ),
                    "cameras": tfds.features.Tensor(shape=(views, 5), dtype=np.float32),
                }
            ),
            # In scene order, so example i of a split is scene i (`scenes.scene_views`).
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager  # nothing to download
        return {split: self._generate_examples(split) for split in scenes.SPLITS}

    def _generate_examples(self, split: str):
        settings = self.builder_config.settings
        count = settings.train_scenes if split == "train" else settings.test_scenes
        for number in range(count):
            frames, cameras = scenes.scene_views(settings, split, number)
            yield number, {"frames": frames, "cameras": cameras}
