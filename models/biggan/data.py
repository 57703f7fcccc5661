"""BigGAN's data: class-conditional images, and the task `train.py` trains on.

Three sources of labelled images, one interface (`Images`: uint8 pictures and int labels,
read by index):

- `shapes32`, generated here: ten classes of shapes at 32x32 (below). No download; a
  pure function of (seed, example index). `render_shapes` draws them directly, and the
  TFDS builder `Shapes32` packages them as a TensorFlow Datasets dataset.
- any TFDS dataset the user has prepared (`cifar10`, `imagenet2012`), by `tfds_images`:
  read whole into memory when small, or by index through TFDS's random-access
  `data_source` when prepared in the ArrayRecord format (ImageNet at 128x128 is about
  60 GB: `tfds build imagenet2012 --file_format=array_record` once, with the archives
  in place; nothing here downloads).

The procedural classes, each drawn at a random position, size and rotation (up to 25
degrees), in a random foreground colour on a random background of another colour with
a linear gradient, plus pixel noise, so that a generator must learn the shape of each
class and not a colour or a place:

    0 disc     1 square    2 triangle   3 ring      4 plus
    5 horizontal stripes   6 vertical stripes       7 checkerboard
    8 diagonal cross (an X)                         9 two discs side by side
"""

import collections
import dataclasses
from typing import Any

import numpy as np
import tensorflow as tf

SHAPES_CLASSES = (
    "disc",
    "square",
    "triangle",
    "ring",
    "plus",
    "horizontal_stripes",
    "vertical_stripes",
    "checkerboard",
    "diagonal_cross",
    "two_discs",
)
SHAPES_SIZE = 32


def _shape_mask(label: int, u: np.ndarray, v: np.ndarray, size: float, rng: np.random.Generator) -> np.ndarray:
    """Coverage in [0, 1] of the class's shape at the centred, rotated coordinates (u, v) in pixels."""

    def edge(distance):  # signed distance (negative inside) -> soft coverage over one pixel
        return np.clip(0.5 - distance, 0.0, 1.0)

    r = np.hypot(u, v)
    box = np.maximum(np.abs(u), np.abs(v))
    if label == 0:
        return edge(r - size)
    if label == 1:
        return edge(box - 0.8 * size)
    if label == 2:  # an equilateral triangle, apex up
        d = np.maximum.reduce([v - 0.5 * size, -0.866 * u - 0.5 * v - 0.5 * size, 0.866 * u - 0.5 * v - 0.5 * size])
        return edge(d * 1.2)
    if label == 3:
        return edge(np.abs(r - 0.75 * size) - 0.25 * size)
    if label == 4:
        arm = 0.28 * size
        return np.maximum(
            edge(np.maximum(np.abs(u) - arm, np.abs(v) - size)), edge(np.maximum(np.abs(v) - arm, np.abs(u) - size))
        )
    period = rng.uniform(3.0, 5.0)
    inside = edge(box - size)
    if label == 5:
        return inside * (np.sin(2 * np.pi * v / period) > 0)
    if label == 6:
        return inside * (np.sin(2 * np.pi * u / period) > 0)
    if label == 7:
        return inside * ((np.sin(2 * np.pi * u / period) > 0) ^ (np.sin(2 * np.pi * v / period) > 0))
    if label == 8:
        arm = 0.2 * size
        a, b = (u + v) / np.sqrt(2), (u - v) / np.sqrt(2)
        return np.maximum(
            edge(np.maximum(np.abs(a) - arm, np.abs(b) - size)), edge(np.maximum(np.abs(b) - arm, np.abs(a) - size))
        )
    if label == 9:
        small = 0.5 * size
        return np.maximum(edge(np.hypot(u - small, v) - 0.8 * small), edge(np.hypot(u + small, v) - 0.8 * small))
    raise ValueError(f"no shapes32 class {label}")


def render_shapes(seed: int, indices: np.ndarray | list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The shapes32 examples `indices` of the stream `seed`: uint8 images [N, 32, 32, 3], int64 labels [N].

    Example i has class i mod 10 (so every ten consecutive examples hold each class
    once) and is a pure function of (seed, i).
    """
    indices = np.asarray(indices, np.int64).reshape([-1])
    images = np.empty([len(indices), SHAPES_SIZE, SHAPES_SIZE, 3], np.uint8)
    labels = indices % len(SHAPES_CLASSES)
    grid = np.arange(SHAPES_SIZE, dtype=np.float64) + 0.5
    xx, yy = np.meshgrid(grid, grid)
    for n, (index, label) in enumerate(zip(indices, labels)):
        rng = np.random.default_rng([seed, int(index)])
        size = rng.uniform(6.0, 11.0)
        cx, cy = rng.uniform(size, SHAPES_SIZE - size, size=2)
        angle = np.deg2rad(rng.uniform(-25.0, 25.0))
        dx, dy = xx - cx, yy - cy
        u = np.cos(angle) * dx + np.sin(angle) * dy
        v = -np.sin(angle) * dx + np.cos(angle) * dy
        mask = _shape_mask(int(label), u, v, size, rng)[..., None]
        foreground = rng.uniform(0.0, 1.0, size=3)
        background = rng.uniform(0.0, 1.0, size=3)
        while np.abs(foreground - background).sum() < 0.9:  # keep the shape visible
            background = rng.uniform(0.0, 1.0, size=3)
        direction = rng.normal(size=2)
        gradient = 0.15 * ((xx - 16) * direction[0] + (yy - 16) * direction[1]) / (16 * np.linalg.norm(direction))
        picture = mask * foreground + (1 - mask) * (background + gradient[..., None])
        picture = picture + rng.normal(0.0, 0.03, size=picture.shape)
        images[n] = np.clip(np.round(picture * 255), 0, 255).astype(np.uint8)
    return images, labels


# --- sources of labelled images ------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Images:
    """Labelled images read by index.

    Attributes:
      size: number of examples.
      num_classes: number of classes.
      resolution: side of the (square) images.
      read: `indices [N] int64 tensor -> (uint8 images [N, r, r, 3], int32 labels [N])`,
        usable inside `tf.data` and `tf.function`.
      name: where they come from.
    """

    size: int
    num_classes: int
    resolution: int
    read: Any
    name: str = ""


def in_memory_images(images: np.ndarray, labels: np.ndarray, num_classes: int, name: str = "") -> Images:
    """`Images` over arrays held in memory: uint8 [N, r, r, 3] and int labels [N]."""
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim != 4 or images.shape[-1] != 3 or images.shape[1] != images.shape[2] or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 [N, r, r, 3], got {images.dtype} {images.shape}")
    if labels.shape != (len(images),):
        raise ValueError(f"labels must be [N] with N = {len(images)}, got shape {labels.shape}")
    if len(images) == 0:
        raise ValueError(f"{name or 'the data'} holds no examples")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must be in [0, {num_classes}), got [{labels.min()}, {labels.max()}]")
    table, classes = tf.constant(images), tf.constant(labels.astype(np.int32))

    def read(indices):
        return tf.gather(table, indices), tf.gather(classes, indices)

    return Images(len(images), num_classes, images.shape[1], read, name)


def shapes32(num_examples: int = 50_000, seed: int = 0) -> Images:
    """The first `num_examples` shapes32 examples of stream `seed`, rendered into memory
    (about 3 KB each; 50,000 take a few seconds). Stream 0 is the training set, stream 1
    the test set (as the TFDS builder has them)."""
    images, labels = render_shapes(seed, np.arange(num_examples))
    return in_memory_images(images, labels, len(SHAPES_CLASSES), name=f"shapes32 stream {seed}")


def _center_crop_resize(image: tf.Tensor, resolution: int) -> tf.Tensor:
    """The largest centred square of `image`, resized (area) to `resolution` (BigGAN's ImageNet preprocessing)."""
    shape = tf.shape(image)
    side = tf.minimum(shape[0], shape[1])
    top, left = (shape[0] - side) // 2, (shape[1] - side) // 2
    square = image[top : top + side, left : left + side]
    resized = tf.image.resize(square, [resolution, resolution], method="area", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)


def tfds_images(
    name: str,
    split: str = "train",
    resolution: int | None = None,
    data_dir: str | None = None,
    in_memory: bool | None = None,
) -> Images:
    """A prepared TensorFlow Datasets dataset with "image" and "label" features, as `Images`.

    Nothing is downloaded: prepare it first (`tfds build <name>`; for cifar10 and
    imagenet2012 the archives must be where TFDS looks). Images are centre-cropped to a
    square and resized to `resolution` (default: their own side, for square images).

    Args:
      name: the TFDS name ("cifar10", "imagenet2012", "shapes32").
      split: the split to read.
      resolution: side of the images returned.
      data_dir: TFDS's data directory (default: TFDS's own default).
      in_memory: read the whole split into memory (default: when it has at most 200,000
        examples), or read by index from TFDS's random-access `data_source`, which needs
        the dataset prepared in the ArrayRecord format (`--file_format=array_record`).

    Raises:
      ValueError: the dataset is not prepared (naming how to prepare it), or cannot be
        read by index.
    """
    import tensorflow_datasets as tfds

    if name.split("/")[0].split(":")[0] == "shapes32":
        from models.biggan import shapes32  # noqa: F401 (registers the builder)
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # an unknown name
        raise ValueError(f"TFDS dataset {name!r}: {e}") from e
    if not builder.is_prepared():
        raise ValueError(
            f"TFDS dataset {name!r} is not prepared in {builder.data_dir_root}; nothing here downloads it: "
            f"run `tfds build {name}` (with its archives in place) first"
        )
    info = builder.info
    num_classes = info.features["label"].num_classes
    count = info.splits[split].num_examples
    if count == 0:
        raise ValueError(f"TFDS dataset {name!r} split {split!r} holds no examples")
    if in_memory is None:
        in_memory = count <= 200_000
    if resolution is None:
        shape = info.features["image"].shape
        if shape[0] is None or shape[0] != shape[1]:
            raise ValueError(f"TFDS dataset {name!r} has images of shape {shape}: give a resolution")
        resolution = shape[0]
    array_record = str(getattr(info, "file_format", "")).lower().endswith("array_record")
    if in_memory and not array_record:
        ds = builder.as_dataset(
            split=split, shuffle_files=False, read_config=tfds.ReadConfig(interleave_cycle_length=1)
        )
        ds = ds.map(lambda e: (_center_crop_resize(e["image"], resolution), e["label"]))
        images, labels = [], []
        for image, label in ds.batch(1024).as_numpy_iterator():
            images.append(image)
            labels.append(label)
        return in_memory_images(np.concatenate(images), np.concatenate(labels), num_classes, name=f"{name}/{split}")
    try:
        source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except Exception as e:
        raise ValueError(
            f"TFDS dataset {name!r} cannot be read by index ({e}); prepare it in the ArrayRecord format "
            f"(`tfds build {name} --file_format=array_record`) or pass in_memory=True"
        ) from e

    def fetch(indices):
        records = (
            source.__getitems__(indices.tolist())
            if hasattr(source, "__getitems__")
            else [source[int(i)] for i in indices]
        )
        return np.stack([r["image"] for r in records]), np.asarray([r["label"] for r in records], np.int32)

    def read(indices):
        raw, labels = tf.numpy_function(fetch, [indices], [tf.uint8, tf.int32])
        images = tf.map_fn(
            lambda image: _center_crop_resize(image, resolution),
            raw,
            fn_output_signature=tf.TensorSpec([resolution, resolution, 3], tf.uint8),
        )
        return images, tf.ensure_shape(labels, [None])

    by_index = Images(count, num_classes, resolution, read, f"{name}/{split} (by index)")
    if not in_memory:
        return by_index
    # ArrayRecord files have no tf.data reader: read them whole by index.
    parts = [by_index.read(tf.range(i, min(i + 1024, count), dtype=tf.int64)) for i in range(0, count, 1024)]
    return in_memory_images(
        np.concatenate([p[0].numpy() for p in parts]),
        np.concatenate([p[1].numpy() for p in parts]),
        num_classes,
        name=f"{name}/{split}",
    )


# --- the task ------------------------------------------------------------------------


Batch = collections.namedtuple("Batch", ["images", "labels", "z", "fake_labels"])
Batch.__doc__ = """What one training step consumes: `d_steps` discriminator steps and one generator step.

images: float [d_steps, B, r, r, 3] real images in [-1, 1], one batch per D step.
labels: int32 [d_steps, B], their classes.
z: float [d_steps + 1, B, dim_z] latents: one batch per D step, then the G step's.
fake_labels: int32 [d_steps + 1, B], the classes the generator is asked for.
"""


@dataclasses.dataclass(frozen=True)
class GANTask:
    """The data of a BigGAN run, deterministic per (seed, step, example).

    Step s consumes `d_steps` batches of real examples and `d_steps + 1` batches of
    latents and classes (`Batch`). Real example i (0 <= i < batch_size) of D step k at
    step s is record `perm_e(p mod N)`, with p = (s * d_steps + k) * batch_size + i its
    position in the stream of examples, e = p div N the epoch, and perm_e a permutation
    of the N records drawn from (seed, e) by `tf.random.experimental.index_shuffle`:
    every epoch visits every record once, in its own order. Latents and classes of the
    fakes are drawn from (seed, s) for the global batch. So a step's global batch is a
    pure function of (seed, s), a resumed run sees exactly the batches it would have
    seen, and replica r of R takes examples [r B / R, (r + 1) B / R) of the batch a
    one-replica run sees.

    Attributes:
      images: the real data (`Images`).
      batch_size: the GLOBAL batch size (per D step).
      d_steps: discriminator steps per generator step.
      dim_z: the generator's latent size.
    """

    images: Images
    batch_size: int = 64
    d_steps: int = 2
    dim_z: int = 120

    def __post_init__(self):
        for name in ("batch_size", "d_steps", "dim_z"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"GANTask: {name} must be a positive int, got {value!r}")
        if self.images.size < 1:
            raise ValueError(f"GANTask: the images ({self.images.name}) hold no examples")
        if self.batch_size * self.d_steps > self.images.size:
            raise ValueError(
                f"GANTask: a step reads batch_size * d_steps = {self.batch_size * self.d_steps} examples, more than "
                f"the {self.images.size} the data ({self.images.name}) holds"
            )

    @property
    def num_classes(self) -> int:
        return self.images.num_classes

    @property
    def resolution(self) -> int:
        return self.images.resolution

    def global_batch(self, seed: int, step: tf.Tensor) -> Batch:
        """Step `step`'s whole batch (every replica's share)."""
        step = tf.cast(step, tf.int64)
        b, k = self.batch_size, self.d_steps
        n = self.images.size
        positions = (step * k) * b + tf.range(k * b, dtype=tf.int64)
        epochs = positions // n
        # One permutation per epoch, drawn from (seed, epoch). A batch no larger than the
        # data spans at most two epochs, so two draws cover it.
        first_epoch = positions[0] // n
        epochs = positions // n

        def permuted(epoch):
            seed_pair = tf.stack([tf.constant(seed, tf.int64), epoch])
            return tf.random.experimental.index_shuffle(positions % n, seed_pair, tf.constant(n - 1, tf.int64))

        records = tf.where(epochs == first_epoch, permuted(first_epoch), permuted(first_epoch + 1))
        images, labels = self.images.read(records)
        images = tf.cast(images, tf.float32) / 127.5 - 1.0
        r = self.resolution
        # Streams of their own: (seed + 1e9, step) for the latents, (seed + 2e9, step) for the classes.
        z = tf.random.stateless_normal([k + 1, b, self.dim_z], tf.stack([seed + 1_000_000_000, step]))
        fake_labels = tf.random.stateless_uniform(
            [k + 1, b], tf.stack([seed + 2_000_000_000, step]), 0, self.num_classes, tf.int32
        )
        return Batch(tf.reshape(images, [k, b, r, r, 3]), tf.reshape(tf.cast(labels, tf.int32), [k, b]), z, fake_labels)

    def replica_batch(self, seed: int, step: int | tf.Tensor, replica: int | tf.Tensor, num_replicas: int) -> Batch:
        """Replica `replica`'s share of step `step`'s batch: examples [r B / R, (r + 1) B / R)."""
        if self.batch_size % num_replicas:
            raise ValueError(f"the batch size {self.batch_size} does not split evenly over {num_replicas} replicas")
        share = self.batch_size // num_replicas
        start = tf.cast(replica, tf.int32) * share
        return Batch(*(t[:, start : start + share] for t in self.global_batch(seed, step)))

    def dataset(self, seed: int, start_step: int, context: tf.distribute.InputContext) -> tf.data.Dataset:
        """This input pipeline's per-replica batches from step `start_step` on, in the order
        (step, local replica), for `strategy.distribute_datasets_from_function`.

        Global replica id = `context.input_pipeline_id` * local replicas + local index."""
        replicas = context.num_replicas_in_sync
        if self.batch_size % replicas:
            raise ValueError(f"the batch size {self.batch_size} does not split evenly over {replicas} replicas")
        local = replicas // max(context.num_input_pipelines, 1)
        first = context.input_pipeline_id * local
        pairs = tf.data.Dataset.range(start_step, 2**62).flat_map(
            lambda s: tf.data.Dataset.range(first, first + local).map(lambda r: (s, r))
        )
        return pairs.map(
            lambda s, r: self.replica_batch(seed, s, r, replicas),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        ).prefetch(2)
