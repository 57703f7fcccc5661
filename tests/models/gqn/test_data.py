"""The gqn-datasets reader on files the tests write, and the scene generator's files read back."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from models.gqn import data, scenes

VIEWS, SIZE = 4, 8
INFO = data.DatasetInfo(SIZE, VIEWS)


def scene_record(scene: int, views: int = VIEWS, size: int = SIZE) -> tuple[bytes, np.ndarray, np.ndarray]:
    """A record whose view v of scene s is one flat colour and whose cameras encode (s, v)."""
    colours = np.array([[(40 * scene + 60 * v) % 256, 30 * v % 256, 200] for v in range(views)], np.uint8)
    frames = np.broadcast_to(colours[:, None, None, :], [views, size, size, 3])
    cameras = np.array([[scene, v, 0.5, 0.1 * v - 0.3, 0.05 * scene - 0.2] for v in range(views)], np.float32)
    return scenes.serialize(frames, cameras), frames, cameras


def write_files(folder, scenes_per_file=(3, 2), **kwargs) -> list[str]:
    os.makedirs(folder, exist_ok=True)
    paths, scene = [], 0
    for f, count in enumerate(scenes_per_file):
        path = os.path.join(folder, data.file_name(f + 1, len(scenes_per_file)))
        with tf.io.TFRecordWriter(path) as writer:
            for _ in range(count):
                writer.write(scene_record(scene, **kwargs)[0])
                scene += 1
        paths.append(path)
    return paths


def test_file_names_and_finding_a_split(tmp_path):
    assert data.file_name(7, 240) == "007-of-240.tfrecord"
    assert data.file_name(1, 2160) == "0001-of-2160.tfrecord"
    assert data.file_name(12, 12) == "12-of-12.tfrecord"
    paths = write_files(tmp_path / "train", scenes_per_file=[1] * 11)
    (tmp_path / "train" / "notes.txt").write_text("not data")
    assert data.find_files(str(tmp_path / "train")) == paths  # numeric order, other files ignored
    os.remove(paths[3])
    with pytest.raises(ValueError, match="1 of 11 files are missing \\(numbers 4\\)"):
        data.find_files(str(tmp_path / "train"))
    with pytest.raises(FileNotFoundError, match="holds no NNN-of-MMM.tfrecord"):
        data.find_files(str(tmp_path))
    (tmp_path / "train" / "04-of-12.tfrecord").write_bytes(b"")
    with pytest.raises(ValueError, match="disagree on the file count"):
        data.find_files(str(tmp_path / "train"))


@pytest.mark.parametrize("order", data.ANGLE_ORDERS)
def test_read_scenes_decodes_frames_and_cameras_in_either_angle_order(tmp_path, order):
    paths = write_files(tmp_path)
    ds = data.read_scenes(paths, INFO, angle_order=order)
    assert len(ds) == 5
    for s, scene in enumerate(ds):
        _, frames, raw = scene_record(s)
        assert scene["frames"].dtype == tf.float32 and scene["frames"].shape == (VIEWS, SIZE, SIZE, 3)
        np.testing.assert_allclose(scene["frames"], frames / 255.0, atol=3 / 255)  # JPEG of flat colours
        yaw, pitch = raw[:, 3], raw[:, 4]
        angles = (
            [np.sin(yaw), np.cos(yaw), np.sin(pitch), np.cos(pitch)]
            if order == "sin_cos"
            else [np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)]
        )
        np.testing.assert_allclose(scene["cameras"], np.concatenate([raw[:, :3], np.stack(angles, 1)], 1), atol=1e-6)
    with pytest.raises(ValueError, match="angle_order must be one of"):
        data.read_scenes(paths, INFO, angle_order="degrees")


def test_the_real_data_sets_are_known_by_name():
    assert data.dataset_info("rooms_ring_camera") == data.DatasetInfo(64, 10, 2160, 240)
    assert data.dataset_info("mazes").frame_size == 84 and data.dataset_info("mazes").views == 300
    assert data.dataset_info("shepard_metzler_7_parts").views == 15
    with pytest.raises(ValueError, match="unknown data set 'rooms'"):
        data.dataset_info("rooms")


def corrupt(path, offset_from, change):
    content = bytearray(open(path, "rb").read())
    position = offset_from(len(content))
    content[position] ^= change
    open(path, "wb").write(bytes(content))


def test_a_corrupt_file_is_named_with_its_record(tmp_path):
    paths = write_files(tmp_path)
    record_bytes = len(scene_record(0)[0]) + 16
    # A flipped byte inside the second record's data: its checksum no longer matches.
    corrupt(paths[0], lambda n: record_bytes + 40, 0xFF)
    with pytest.raises(data.CorruptFileError) as error:
        data.read_scenes(paths, INFO)
    message = str(error.value)
    assert paths[0] in message and "record 1" in message and f"at byte {record_bytes}" in message
    assert "1 records before it are intact" in message


def test_a_truncated_file_is_named(tmp_path):
    paths = write_files(tmp_path)
    content = open(paths[1], "rb").read()
    open(paths[1], "wb").write(content[:-30])
    with pytest.raises(data.CorruptFileError, match=f"{paths[1]} is corrupt or truncated: record 1"):
        data.RecordIndex.scan(paths, INFO)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.RecordIndex.scan([str(tmp_path / "nope.tfrecord")])


def test_a_file_of_another_data_set_is_named(tmp_path):
    paths = write_files(tmp_path)
    with pytest.raises(data.CorruptFileError, match=f"{paths[0]} does not hold scenes with 10 JPEG frames"):
        data.read_scenes(paths, "rooms_ring_camera")
    with pytest.raises(data.CorruptFileError, match="frames are 8x8, not 16x16"):
        data.read_scenes(paths, data.DatasetInfo(16, VIEWS))


def test_the_record_index_reads_any_record_by_number(tmp_path):
    paths = write_files(tmp_path)
    index = data.RecordIndex.scan(paths, INFO)
    in_order = [r.numpy() for r in tf.data.TFRecordDataset(paths)]
    assert len(index) == 5 and list(index.file_ids) == [0, 0, 0, 1, 1]
    for number in [4, 0, 3, 1, 2]:
        assert index.read(number) == in_order[number]
    read = tf.data.Dataset.from_tensor_slices(tf.constant([3, 1], tf.int64)).map(index.read_op)
    assert [r.numpy() for r in read] == [in_order[3], in_order[1]]
    loaded = data.RecordIndex.scan(paths, INFO).load()
    assert [loaded.read(i) for i in range(5)] == in_order
    with pytest.raises(IndexError):
        index.read(5)


def test_sample_views_draws_distinct_views_with_the_query_last():
    _, frames, raw = scene_record(2, views=10)
    scene = {"frames": tf.constant(frames / 255.0, tf.float32), "cameras": tf.constant(raw)}
    drawn = []
    for s in range(20):
        example = data.sample_views(scene, 5, tf.constant([7, s], tf.int64))
        views = np.concatenate([example["context_cameras"][:, 1], [example["query_camera"][1]]]).astype(int)
        assert len(set(views)) == 6
        np.testing.assert_array_equal(example["query_frame"], scene["frames"][views[-1]])
        np.testing.assert_array_equal(example["context_frames"], tf.gather(scene["frames"], views[:5]))
        drawn.append(tuple(views))
    assert len(set(drawn)) > 15  # different seeds, different draws
    again = data.sample_views(scene, 5, tf.constant([7, 0], tf.int64))
    np.testing.assert_array_equal(
        again["query_camera"], data.sample_views(scene, 5, tf.constant([7, 0]))["query_camera"]
    )
    # JPEG frames: only the drawn views are decoded, to the same pixels as decoding them all.
    record = data.parse_scene(tf.constant(scene_record(2, views=10)[0]), data.DatasetInfo(SIZE, 10))
    lazy = data.sample_views(record, 3, tf.constant([1, 2], tf.int64), frame_size=SIZE)
    full = data.sample_views({**record, "frames": data.decode_frames(record["frames"], SIZE)}, 3, tf.constant([1, 2]))
    np.testing.assert_array_equal(lazy["context_frames"], full["context_frames"])
    with pytest.raises(ValueError, match="too few for 10 context views"):
        data.sample_views(scene, 10, tf.constant([0, 0]))


def test_query_examples_draw_views_afresh_each_epoch(tmp_path):
    scenes_ds = data.read_scenes(write_files(tmp_path), INFO)
    first = list(data.query_examples(scenes_ds, 2, seed=3, epochs=2))
    assert len(first) == 10
    views = [tuple(np.concatenate([e["context_cameras"][:, 1], [e["query_camera"][1]]]).astype(int)) for e in first]
    scene_of = [int(e["query_camera"][0]) for e in first]
    assert scene_of == [0, 1, 2, 3, 4] * 2  # scenes in order, each once per epoch
    assert sum(views[i] != views[i + 5] for i in range(5)) >= 4  # new views in the second epoch
    again = list(data.query_examples(scenes_ds, 2, seed=3, epochs=2))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a["query_camera"], b["query_camera"])


# --- generated scenes ------------------------------------------------------------------------


def test_generated_scenes_are_deterministic_and_seen_from_a_ring():
    settings = scenes.Settings(frame_size=16, views=5)
    frames, cameras = scenes.scene_views(settings, "train", 3)
    again, _ = scenes.scene_views(settings, "train", 3)
    np.testing.assert_array_equal(frames, again)
    assert frames.shape == (5, 16, 16, 3) and frames.dtype == np.uint8 and cameras.shape == (5, 5)
    x, y, z, yaw, pitch = cameras.T
    np.testing.assert_allclose(np.hypot(x, y), np.clip(np.hypot(x, y), *scenes.RING_RADIUS))
    np.testing.assert_allclose(np.cos(yaw), -x / np.hypot(x, y), atol=1e-5)  # looking at the centre
    np.testing.assert_allclose(np.sin(yaw), -y / np.hypot(x, y), atol=1e-5)
    assert np.all(pitch < 0)  # down at the floor
    assert len({f.tobytes() for f in frames}) == 5  # every view different
    other, _ = scenes.scene_views(settings, "test", 3)
    assert not np.array_equal(other, frames)


def test_generated_files_read_back(tmp_path):
    settings = scenes.Settings(frame_size=16, views=6, train_scenes=3, test_scenes=1, scenes_per_file=2)
    files = scenes.write_scenes(str(tmp_path), settings)
    assert [os.path.basename(p) for p in files["train"]] == ["1-of-2.tfrecord", "2-of-2.tfrecord"]
    assert data.find_files(str(tmp_path / "train")) == files["train"]
    assert json.load(open(tmp_path / "generated.json")) == {**settings.__dict__}
    read = list(data.read_scenes(files["train"], settings.info, angle_order="cos_sin"))
    assert len(read) == 3
    for number, scene in enumerate(read):
        frames, raw = scenes.scene_views(settings, "train", number)
        assert np.mean(np.abs(scene["frames"].numpy() - frames / 255.0)) < 0.015  # JPEG at quality 95
        np.testing.assert_allclose(scene["cameras"], data.camera_transform(raw, "cos_sin"), atol=1e-6)
    # ensure_scenes keeps matching data and remakes it for other settings.
    stamp = os.path.getmtime(files["train"][0])
    assert scenes.ensure_scenes(str(tmp_path), settings) == files
    assert os.path.getmtime(files["train"][0]) == stamp
    other = scenes.Settings(frame_size=16, views=6, train_scenes=1, test_scenes=1, scenes_per_file=2)
    assert [os.path.basename(p) for p in scenes.ensure_scenes(str(tmp_path), other)["train"]] == ["1-of-1.tfrecord"]
