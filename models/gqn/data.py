"""Scenes in the format of DeepMind's gqn-datasets: a reader, view sampling and a record index.

The released data sets are TFRecord files, one record (one `tf.train.Example`) per
scene, named NNN-of-MMM.tfrecord (1-based, zero-padded to the width of the file count)
under <dataset>/train/ and <dataset>/test/. Each record has two features:

    "frames":  FixedLenFeature([views], string)     one JPEG-encoded RGB image per view
    "cameras": FixedLenFeature([views * 5], float)  (x, y, z, yaw, pitch) per view, radians

`read_scenes` turns records into {"frames": float32 [views, S, S, 3] in [0, 1],
"cameras": float32 [views, 7]}, the camera as position plus the sines and cosines of
yaw and pitch in one of two orders (`ANGLE_ORDERS`: the official reader's "sin_cos",
or the paper's "cos_sin"; train and test must agree). `sample_views` draws the
context_size + 1 distinct views of one training example (the last is the query), and
`query_examples` does so for every scene, afresh each epoch.

`RecordIndex` counts the records once (published scene counts differ between reports,
so nothing here trusts them) and reads any record by its number, which is how
`task.SceneTask` makes every training example a pure function of (seed, step, example).

A corrupt or truncated file raises `CorruptFileError` naming the file, the record and
its byte offset: both `read_scenes` and `RecordIndex.scan` check every record's
checksums with TensorFlow's own reader before anything trains on it.
"""

import dataclasses
import os
import re
import threading
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

ANGLE_ORDERS = ("sin_cos", "cos_sin")
# A TFRecord record: 8-byte length, 4-byte checksum of it, the data, 4-byte checksum of the data.
_RECORD_HEADER = 12
_RECORD_OVERHEAD = 16
_FILE_NAME = re.compile(r"^(\d+)-of-(\d+)\.tfrecord$")


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What the reader must know of a data set: frame side S and views per scene.

    `train_files` and `test_files` are the published file counts, for reference only:
    the reader counts files and records itself.
    """

    frame_size: int
    views: int
    train_files: int = 0
    test_files: int = 0

    def __post_init__(self):
        for name in ("frame_size", "views"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"DatasetInfo: {name} must be a positive int, got {value!r}")


DATASETS = {
    "rooms_ring_camera": DatasetInfo(64, 10, 2160, 240),
    "rooms_free_camera_no_object_rotations": DatasetInfo(64, 10, 2160, 240),
    "rooms_free_camera_with_object_rotations": DatasetInfo(128, 10, 2034, 226),
    "shepard_metzler_5_parts": DatasetInfo(64, 15, 900, 100),
    "shepard_metzler_7_parts": DatasetInfo(64, 15, 900, 100),
    "jaco": DatasetInfo(64, 11, 3600, 400),
    "mazes": DatasetInfo(84, 300, 1080, 120),
    # Written by `scenes.py` (a ring camera around a room with a few objects).
    "generated_rooms": DatasetInfo(64, 10),
    "generated_rooms_32": DatasetInfo(32, 10),
}


class CorruptFileError(ValueError):
    """A data file that cannot be read as scenes of the expected data set; the message names it."""


def dataset_info(dataset: str | DatasetInfo) -> DatasetInfo:
    """The `DatasetInfo` of a data set name in `DATASETS`, or `dataset` itself."""
    if isinstance(dataset, DatasetInfo):
        return dataset
    if dataset not in DATASETS:
        raise ValueError(f"unknown data set {dataset!r}; known: {sorted(DATASETS)}, or pass a DatasetInfo")
    return DATASETS[dataset]


def check_angle_order(angle_order: str) -> str:
    if angle_order not in ANGLE_ORDERS:
        raise ValueError(f"angle_order must be one of {ANGLE_ORDERS}, got {angle_order!r}")
    return angle_order


def file_name(number: int, count: int) -> str:
    """The name of file `number` (1-based) of `count`: "007-of-240.tfrecord"."""
    width = len(str(count))
    return f"{number:0{width}d}-of-{count:0{width}d}.tfrecord"


def find_files(directory: str) -> list[str]:
    """The NNN-of-MMM.tfrecord files of one split (a folder such as <dataset>/train), in order.

    Raises:
      FileNotFoundError: if the folder holds no such file.
      ValueError: if the files disagree on the count MMM, or some of 1..MMM are missing.
    """
    if not tf.io.gfile.isdir(directory):
        raise FileNotFoundError(f"{directory} is not a folder")
    found = {}
    for name in tf.io.gfile.listdir(directory):
        match = _FILE_NAME.match(name)
        if match:
            found[name] = (int(match.group(1)), int(match.group(2)))
    if not found:
        raise FileNotFoundError(f"{directory} holds no NNN-of-MMM.tfrecord files")
    counts = {count for _, count in found.values()}
    if len(counts) > 1:
        raise ValueError(f"{directory}: the file names disagree on the file count: {sorted(counts)}")
    count = counts.pop()
    numbers = {number for number, _ in found.values()}
    missing = sorted(set(range(1, count + 1)) - numbers)
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        raise ValueError(f"{directory}: {len(missing)} of {count} files are missing (numbers {shown})")
    return [os.path.join(directory, name) for name in sorted(found, key=lambda n: found[n][0])]


# --- parsing and decoding --------------------------------------------------------------


def feature_spec(info: DatasetInfo) -> dict[str, tf.io.FixedLenFeature]:
    return {
        "frames": tf.io.FixedLenFeature([info.views], tf.string),
        "cameras": tf.io.FixedLenFeature([info.views * 5], tf.float32),
    }


def parse_scene(serialized: tf.Tensor, info: DatasetInfo) -> dict[str, tf.Tensor]:
    """One record as stored: {"frames": JPEG strings [views], "cameras": float32 [views, 5]}."""
    features = tf.io.parse_single_example(serialized, feature_spec(info))
    return {"frames": features["frames"], "cameras": tf.reshape(features["cameras"], [info.views, 5])}


def camera_transform(raw: tf.Tensor, angle_order: str = "sin_cos") -> tf.Tensor:
    """(x, y, z, yaw, pitch) [..., 5] -> [..., 7].

    "sin_cos": [x, y, z, sin yaw, cos yaw, sin pitch, cos pitch] (DeepMind's reader);
    "cos_sin": [x, y, z, cos yaw, sin yaw, cos pitch, sin pitch] (the paper).
    """
    check_angle_order(angle_order)
    position, yaw, pitch = raw[..., :3], raw[..., 3:4], raw[..., 4:5]
    if angle_order == "sin_cos":
        angles = [tf.sin(yaw), tf.cos(yaw), tf.sin(pitch), tf.cos(pitch)]
    else:
        angles = [tf.cos(yaw), tf.sin(yaw), tf.cos(pitch), tf.sin(pitch)]
    return tf.concat([position, *angles], axis=-1)


def decode_frames(jpegs: tf.Tensor, frame_size: int) -> tf.Tensor:
    """JPEG strings [n] -> float32 [n, S, S, 3] in [0, 1]; an image of another size is an error."""

    def decode(jpeg):
        image = tf.io.decode_jpeg(jpeg, channels=3)
        tf.debugging.assert_equal(
            tf.shape(image)[:2],
            [frame_size, frame_size],
            message=f"a frame is not {frame_size}x{frame_size}; is the data set right?",
        )
        return image

    images = tf.map_fn(decode, jpegs, fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))
    images = tf.ensure_shape(images, [None, frame_size, frame_size, 3])
    return tf.image.convert_image_dtype(images, tf.float32)


def decode_scene(serialized: tf.Tensor, info: DatasetInfo, angle_order: str = "sin_cos") -> dict[str, tf.Tensor]:
    """One record -> {"frames": float32 [views, S, S, 3] in [0, 1], "cameras": float32 [views, 7]}."""
    scene = parse_scene(serialized, info)
    return {
        "frames": decode_frames(scene["frames"], info.frame_size),
        "cameras": camera_transform(scene["cameras"], angle_order),
    }


def read_scenes(
    files: str | Sequence[str], dataset: str | DatasetInfo = "rooms_ring_camera", angle_order: str = "sin_cos"
) -> tf.data.Dataset:
    """The scenes of `files`, in order: {"frames": float32 [views, S, S, 3] in [0, 1], "cameras": float32 [views, 7]}.

    Every file is checked first (`RecordIndex.scan`: every record's checksums, and the
    first record's features), once per process and file version, so a bad file is
    named before anything reads from it; the dataset knows its length (`len(ds)`).

    Args:
      files: TFRecord paths (or one path), e.g. `find_files("<root>/rooms_ring_camera/train")`.
      dataset: a name in `DATASETS` (frame size, views per scene) or a `DatasetInfo`.
      angle_order: "sin_cos" or "cos_sin", see `camera_transform`.

    Raises:
      CorruptFileError: for a corrupt or truncated file, or one that does not hold
        scenes of `dataset`, naming the file.
      FileNotFoundError: for a missing file.
    """
    info = dataset_info(dataset)
    check_angle_order(angle_order)
    files = [files] if isinstance(files, str) else list(files)
    index = RecordIndex.scan(files, info)
    scenes = tf.data.TFRecordDataset(files).apply(tf.data.experimental.assert_cardinality(len(index)))
    return scenes.map(lambda r: decode_scene(r, info, angle_order), num_parallel_calls=tf.data.AUTOTUNE)


# --- views of a scene --------------------------------------------------------------------


def sample_views(scene: dict[str, tf.Tensor], context_size: int, seed: tf.Tensor, frame_size: int | None = None):
    """Draws context_size + 1 distinct views of one scene: the context, and the last as the query.

    Args:
      scene: {"frames": [views, S, S, 3] float, or [views] JPEG strings (then only the
        drawn views are decoded, to `frame_size`), "cameras": [views, 7]}.
      context_size: K, the number of context views.
      seed: a stateless seed, int [2]: the same seed draws the same views.
      frame_size: S, for JPEG frames.

    Returns:
      {"context_frames" [K, S, S, 3], "context_cameras" [K, 7], "query_frame" [S, S, 3],
      "query_camera" [7]}.

    Raises:
      ValueError: if the scene has fewer than K + 1 views.
    """
    views = scene["cameras"].shape[0]
    if views is not None and context_size + 1 > views:
        raise ValueError(f"a scene has {views} views: too few for {context_size} context views and a query")
    if views is None:
        views = tf.shape(scene["cameras"])[0]
    chosen = tf.argsort(tf.random.stateless_uniform([views], seed))[: context_size + 1]
    frames = tf.gather(scene["frames"], chosen)
    if frames.dtype == tf.string:
        if frame_size is None:
            raise ValueError("sample_views: frames are JPEG strings; give frame_size")
        frames = decode_frames(frames, frame_size)
    cameras = tf.gather(scene["cameras"], chosen)
    return {
        "context_frames": frames[:context_size],
        "context_cameras": cameras[:context_size],
        "query_frame": frames[context_size],
        "query_camera": cameras[context_size],
    }


def query_examples(scenes: tf.data.Dataset, context_size: int, seed: int, epochs: int | None = None) -> tf.data.Dataset:
    """Every scene as a training example (`sample_views`), its views drawn afresh each epoch.

    The views of scene i in epoch e are drawn from a seed made of (seed, e, i), so the
    examples are reproducible and change from one epoch to the next.

    Args:
      scenes: scenes as `read_scenes` gives them.
      context_size: K.
      seed: an integer.
      epochs: passes over the scenes; None repeats forever.
    """
    epochs_ds = tf.data.Dataset.range(epochs) if epochs is not None else tf.data.Dataset.range(2**62)

    def epoch(e):
        base = tf.stack([tf.constant(seed, tf.int64), e])
        return scenes.enumerate().map(
            lambda i, scene: sample_views(scene, context_size, tf.random.experimental.stateless_fold_in(base, i)),
            num_parallel_calls=tf.data.AUTOTUNE,
        )

    return epochs_ds.flat_map(epoch)


# --- counting and reading records by number ---------------------------------------------


class RecordIndex:
    """Where each record of some TFRecord files lies: counted once, then read by number.

    `RecordIndex.scan(files)` reads every file once with TensorFlow's reader (which checks
    each record's checksums) and notes where each record starts; `index.read(i)` then
    returns record i (numbered across the files in order) with one positional read, and
    `index.read_op(i)` does so inside a `tf.data` pipeline. `load()` keeps every record in
    memory instead (for data sets that fit, such as the generated ones).

    Attributes:
      files: the files, in order.
      file_ids, offsets, lengths: per record, its file's position in `files`, the byte
        offset of its header and its data's length.
    """

    def __init__(self, files: Sequence[str], file_ids: np.ndarray, offsets: np.ndarray, lengths: np.ndarray):
        self.files = list(files)
        self.file_ids = file_ids
        self.offsets = offsets
        self.lengths = lengths
        self._records: list[bytes] | None = None
        self._fds: dict[int, int] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.lengths)

    @classmethod
    def scan(cls, files: Sequence[str], dataset: str | DatasetInfo | None = None) -> "RecordIndex":
        """Counts and checks the records of `files`; with `dataset`, also checks the first record of each.

        Results are cached per file (path, size and modification time), so scanning the
        same files again is free.

        Raises:
          CorruptFileError: naming the file (and the record and byte offset) that is
            corrupt or truncated, or whose first record is not a scene of `dataset`.
          FileNotFoundError: naming a missing file.
        """
        info = dataset_info(dataset) if dataset is not None else None
        ids, offsets, lengths = [], [], []
        for number, path in enumerate(files):
            file_lengths = _scan_file(path, info)
            starts = np.concatenate([[0], np.cumsum(file_lengths + _RECORD_OVERHEAD)[:-1]]).astype(np.int64)
            ids.append(np.full(len(file_lengths), number, np.int32))
            offsets.append(starts[: len(file_lengths)])
            lengths.append(file_lengths)
        join = lambda parts, dtype: np.concatenate(parts).astype(dtype) if parts else np.zeros([0], dtype)  # noqa: E731
        return cls(files, join(ids, np.int32), join(offsets, np.int64), join(lengths, np.int64))

    def load(self) -> "RecordIndex":
        """Reads every record into memory (returns self)."""
        if self._records is None:
            records = []
            for path_id, path in enumerate(self.files):
                with tf.io.gfile.GFile(path, "rb") as f:
                    content = f.read()
                for i in np.flatnonzero(self.file_ids == path_id):
                    start = int(self.offsets[i]) + _RECORD_HEADER
                    records.append((int(i), content[start : start + int(self.lengths[i])]))
            self._records = [record for _, record in sorted(records)]
        return self

    def read(self, number: int) -> bytes:
        """Record `number` (0-based, across the files in order), as serialized bytes."""
        number = int(number)
        if not 0 <= number < len(self):
            raise IndexError(f"record {number} of {len(self)}")
        if self._records is not None:
            return self._records[number]
        file_id = int(self.file_ids[number])
        start, length = int(self.offsets[number]) + _RECORD_HEADER, int(self.lengths[number])
        path = self.files[file_id]
        if hasattr(os, "pread") and os.path.exists(path):  # a local file: one positional read, thread-safe
            with self._lock:
                fd = self._fds.get(file_id)
                if fd is None:
                    fd = self._fds[file_id] = os.open(path, os.O_RDONLY)
            data = os.pread(fd, length, start)
        else:  # any file system TensorFlow knows (gs://, ...)
            with tf.io.gfile.GFile(path, "rb") as f:
                f.seek(start)
                data = f.read(length)
        if len(data) != length:
            raise CorruptFileError(f"{path}: record {number} is cut short (the file changed since it was counted?)")
        return data

    def read_op(self, number: tf.Tensor) -> tf.Tensor:
        """`read` as a TensorFlow op: a scalar string tensor (for `tf.data` pipelines)."""
        record = tf.numpy_function(lambda i: np.bytes_(self.read(i)), [number], tf.string, stateful=False)
        return tf.ensure_shape(record, [])

    def __del__(self):
        for fd in getattr(self, "_fds", {}).values():
            try:
                os.close(fd)
            except OSError:
                pass


_SCANNED: dict[tuple, np.ndarray] = {}


def _scan_file(path: str, info: DatasetInfo | None) -> np.ndarray:
    """The data lengths of a file's records, every checksum checked; cached per file version."""
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{path} does not exist")
    stat = tf.io.gfile.stat(path)
    key = (os.path.abspath(path), stat.length, stat.mtime_nsec, info)
    if key in _SCANNED:
        return _SCANNED[key]
    lengths: list[int] = []
    try:
        for chunk in tf.data.TFRecordDataset(path).map(tf.strings.length).batch(4096):
            lengths.extend(chunk.numpy().tolist())
    except tf.errors.DataLossError as error:
        good = _good_records(path)
        offset = sum(good) + _RECORD_OVERHEAD * len(good)
        raise CorruptFileError(
            f"{path} is corrupt or truncated: record {len(good)} (at byte {offset} of {stat.length}) "
            f"cannot be read ({error.message.splitlines()[0]}); {len(good)} records before it are intact"
        ) from None
    if info is not None and lengths:
        _check_first_record(path, info)
    result = np.asarray(lengths, np.int64)
    _SCANNED[key] = result
    return result


def _good_records(path: str) -> list[int]:
    """The lengths of the records before the first bad one (the slow path of an error)."""
    lengths = []
    try:
        for record in tf.data.TFRecordDataset(path):
            lengths.append(len(record.numpy()))
    except tf.errors.DataLossError:
        pass
    return lengths


def _check_first_record(path: str, info: DatasetInfo) -> None:
    record = next(iter(tf.data.TFRecordDataset(path).take(1)))
    try:
        scene = parse_scene(record, info)
        shape = tf.io.extract_jpeg_shape(scene["frames"][0]).numpy().tolist()
    except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as error:
        raise CorruptFileError(
            f"{path} does not hold scenes with {info.views} JPEG frames and {info.views * 5} camera values "
            f"per record ({error.message.splitlines()[0]})"
        ) from None
    if shape[:2] != [info.frame_size, info.frame_size]:
        raise CorruptFileError(f"{path}: frames are {shape[0]}x{shape[1]}, not {info.frame_size}x{info.frame_size}")
