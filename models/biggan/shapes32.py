"""shapes32 as a TensorFlow Datasets dataset: ten classes of procedural 32x32 shapes, no download.

Importing this module registers the builder, so that (with the data prepared)

    tfds.load("shapes32", data_dir=...)          # 50,000 train, 10,000 test
    tfds.load("shapes32/tiny", data_dir=...)     # 200 train, 100 test, for tests

work like any TFDS dataset; `tfds build models/biggan/shapes32.py` prepares it from the
command line. The examples are `data.render_shapes` of stream 0 (train) and stream 1
(test); the classes are described in `data.py`.
"""

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from models.biggan import data

_CHUNK = 500


@dataclasses.dataclass
class Shapes32Config(tfds.core.BuilderConfig):
    """Sizes of the splits."""

    train_examples: int = 50_000
    test_examples: int = 10_000


class Shapes32(tfds.core.GeneratorBasedBuilder):
    """Procedural class-conditional 32x32 images: ten shapes in random colours, places and sizes."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    BUILDER_CONFIGS = [
        Shapes32Config(name="default", description="50,000 training and 10,000 test images."),
        Shapes32Config(
            name="tiny", description="200 training and 100 test images.", train_examples=200, test_examples=100
        ),
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(data.SHAPES_SIZE, data.SHAPES_SIZE, 3)),
                    "label": tfds.features.ClassLabel(names=list(data.SHAPES_CLASSES)),
                }
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        return {
            "train": self._generate_examples(0, self.builder_config.train_examples),
            "test": self._generate_examples(1, self.builder_config.test_examples),
        }

    def _generate_examples(self, stream: int, count: int):
        for start in range(0, count, _CHUNK):
            indices = np.arange(start, min(start + _CHUNK, count))
            images, labels = data.render_shapes(stream, indices)
            for index, image, label in zip(indices, images, labels):
                yield int(index), {"image": image, "label": int(label)}
