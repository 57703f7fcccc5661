"""Scenes made here: a NumPy ray caster writing TFRecords in exactly the gqn-datasets format.

So that GQN trains, and its reader is exercised on real files, without a download. A
scene is a square room (floor, four walls of different colours, open above) holding one
to three coloured objects (spheres, cylinders, boxes) standing on the floor, lit by a
directional light with shadows, and seen from `views` cameras on a ring around the
room's centre, each looking at it, like DeepMind's rooms_ring_camera:

    room       x, y in [-1, 1], floor z = 0, walls up to z = WALL_HEIGHT
    camera     (x, y, z, yaw, pitch): z up, yaw measured from +x towards +y, pitch up
               from the horizon, radians; field of view FIELD_OF_VIEW

Everything is a pure function of (seed, scene number): scene i of a split comes from
NumPy's generator seeded with (seed, split, i), so a data set regenerates bit for bit
and any part of it can be made alone.

    python -m models.gqn.scenes --out=/tmp/gqn_scenes --frame_size=64 \
        --train_scenes=20000 --test_scenes=1000

writes /tmp/gqn_scenes/{train,test}/NNN-of-MMM.tfrecord and a `generated.json` that
records the settings (`ensure_scenes` regenerates when they differ).
"""

import dataclasses
import json
import os

import numpy as np
import tensorflow as tf

from models.gqn import data

WALL_HEIGHT = 1.0
FIELD_OF_VIEW = np.deg2rad(65.0)
RING_RADIUS = (0.7, 0.9)
CAMERA_HEIGHT = (0.35, 0.6)
LIGHT = np.array([0.45, 0.3, 0.84]) / np.linalg.norm([0.45, 0.3, 0.84])
AMBIENT = 0.35
SKY = np.array([0.78, 0.84, 0.92])
# Saturated object colours and muted wall and floor colours.
OBJECT_COLOURS = np.array(
    [[0.85, 0.15, 0.15], [0.15, 0.65, 0.2], [0.15, 0.3, 0.85], [0.9, 0.8, 0.1], [0.8, 0.2, 0.75], [0.1, 0.75, 0.8]]
)
WALL_COLOURS = np.array(
    [[0.75, 0.55, 0.45], [0.45, 0.6, 0.7], [0.6, 0.7, 0.45], [0.7, 0.65, 0.55], [0.55, 0.5, 0.7], [0.8, 0.75, 0.6]]
)
FLOOR_COLOURS = np.array([[0.45, 0.42, 0.4], [0.35, 0.4, 0.45], [0.5, 0.45, 0.35]])
SPLITS = {"train": 0, "test": 1}


@dataclasses.dataclass(frozen=True)
class Settings:
    """What a generated data set is made with (recorded in generated.json).

    Attributes:
      frame_size: S of the S x S frames.
      views: cameras per scene.
      train_scenes, test_scenes: scenes per split.
      scenes_per_file: scenes in each TFRecord file.
      seed: the data set's seed.
      supersampling: rays per pixel along each axis (anti-aliasing).
      jpeg_quality: quality of the JPEG frames.
    """

    frame_size: int = 64
    views: int = 10
    train_scenes: int = 2000
    test_scenes: int = 200
    scenes_per_file: int = 500
    seed: int = 0
    supersampling: int = 2
    jpeg_quality: int = 95

    def __post_init__(self):
        for name in ("frame_size", "views", "train_scenes", "test_scenes", "scenes_per_file", "supersampling"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"scenes.Settings: {name} must be a positive int, got {value!r}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"scenes.Settings: jpeg_quality must be in [1, 100], got {self.jpeg_quality!r}")

    @property
    def info(self) -> data.DatasetInfo:
        """What the reader needs: `data.read_scenes(files, settings.info)`."""
        return data.DatasetInfo(self.frame_size, self.views)


@dataclasses.dataclass
class Scene:
    """One room: colours, and objects as parallel arrays."""

    floor: np.ndarray  # [3]
    walls: np.ndarray  # [4, 3]: x = +1, y = +1, x = -1, y = -1
    kinds: list[str]  # "sphere" | "cylinder" | "box" per object
    centres: np.ndarray  # [n, 2] (x, y) on the floor
    sizes: np.ndarray  # [n, 3]: radius or half-widths, and height
    angles: np.ndarray  # [n] rotation about z (boxes)
    colours: np.ndarray  # [n, 3]


def random_scene(rng: np.random.Generator) -> Scene:
    """A room with one to three non-overlapping objects."""
    walls = WALL_COLOURS[rng.choice(len(WALL_COLOURS), 4, replace=False)]
    floor = FLOOR_COLOURS[rng.integers(len(FLOOR_COLOURS))]
    count = int(rng.integers(1, 4))
    kinds, centres, sizes, angles, colours, radii = [], [], [], [], [], []
    for colour in rng.choice(len(OBJECT_COLOURS), count, replace=False):
        kind = str(rng.choice(["sphere", "cylinder", "box"]))
        if kind == "sphere":
            r = rng.uniform(0.12, 0.22)
            size, reach = (r, r, 2 * r), r
        elif kind == "cylinder":
            r, h = rng.uniform(0.08, 0.16), rng.uniform(0.2, 0.5)
            size, reach = (r, r, h), r
        else:
            a, b, h = rng.uniform(0.08, 0.16), rng.uniform(0.08, 0.16), rng.uniform(0.15, 0.4)
            size, reach = (a, b, h), float(np.hypot(a, b))
        for _ in range(100):  # rejection sampling: well inside the camera ring, apart from the others
            centre = rng.uniform(-0.45, 0.45, 2)
            if np.linalg.norm(centre) + reach < 0.5 and all(
                np.linalg.norm(centre - c) > reach + q + 0.05 for c, q in zip(centres, radii)
            ):
                break
        else:
            continue
        kinds.append(kind)
        centres.append(centre)
        sizes.append(size)
        angles.append(rng.uniform(0, np.pi))
        colours.append(np.clip(OBJECT_COLOURS[colour] + rng.uniform(-0.08, 0.08, 3), 0, 1))
        radii.append(reach)
    return Scene(floor, walls, kinds, np.array(centres), np.array(sizes), np.array(angles), np.array(colours))


def ring_cameras(rng: np.random.Generator, views: int) -> np.ndarray:
    """[views, 5] cameras (x, y, z, yaw, pitch) on a ring, each looking at the room's centre."""
    angle = rng.uniform(0, 2 * np.pi, views)
    radius = rng.uniform(*RING_RADIUS, views)
    height = rng.uniform(*CAMERA_HEIGHT, views)
    x, y = radius * np.cos(angle), radius * np.sin(angle)
    yaw = np.arctan2(-y, -x)
    pitch = np.arctan2(0.25 - height, radius)  # at a point a quarter up the middle of the room
    return np.stack([x, y, height, yaw, pitch], axis=1).astype(np.float32)


def render(scene: Scene, cameras: np.ndarray, frame_size: int, supersampling: int = 2) -> np.ndarray:
    """The views of `scene` from `cameras` [V, 5]: uint8 [V, S, S, 3]."""
    n = frame_size * supersampling
    origins, directions = _rays(cameras, n)  # [V, n*n, 3]
    colour = _shade(scene, origins.reshape(-1, 3), directions.reshape(-1, 3))
    image = colour.reshape(len(cameras), frame_size, supersampling, frame_size, supersampling, 3).mean(axis=(2, 4))
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)


def _rays(cameras: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    x, y, z, yaw, pitch = cameras.astype(np.float64).T
    forward = np.stack([np.cos(pitch) * np.cos(yaw), np.cos(pitch) * np.sin(yaw), np.sin(pitch)], -1)
    right = np.stack([np.sin(yaw), -np.cos(yaw), np.zeros_like(yaw)], -1)
    up = np.cross(right, forward)
    half = np.tan(FIELD_OF_VIEW / 2)
    s = (np.arange(n) + 0.5) / n * 2 - 1  # pixel centres in [-1, 1]
    u, v = np.meshgrid(s * half, -s * half)  # rows go down the image
    directions = forward[:, None] + u.reshape(1, -1, 1) * right[:, None] + v.reshape(1, -1, 1) * up[:, None]
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
    origins = np.broadcast_to(np.stack([x, y, z], -1)[:, None], directions.shape)
    # Single precision is plenty at these sizes and halves the memory traffic.
    return origins.astype(np.float32), directions.astype(np.float32)


def _hit_room(o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distance, normal and colour index (0 floor, 1-4 walls, 5 sky) of the room's surfaces."""
    t = np.full(len(o), np.inf)
    normal = np.zeros_like(o)
    what = np.full(len(o), 5)
    with np.errstate(divide="ignore", invalid="ignore"):
        floor = np.where(d[:, 2] < 0, -o[:, 2] / d[:, 2], np.inf)
        closer = floor < t
        t, what = np.where(closer, floor, t), np.where(closer, 0, what)
        normal[closer] = [0, 0, 1]
        for wall, (axis, sign) in enumerate([(0, 1), (1, 1), (0, -1), (1, -1)], start=1):
            tw = np.where(d[:, axis] * sign > 0, (sign - o[:, axis]) / d[:, axis], np.inf)
            height = o[:, 2] + tw * d[:, 2]
            tw = np.where((height >= 0) & (height <= WALL_HEIGHT), tw, np.inf)
            closer = tw < t
            t, what = np.where(closer, tw, t), np.where(closer, wall, what)
            n = np.zeros(3)
            n[axis] = -sign
            normal[closer] = n
    return t, normal, what


def _hit_object(o: np.ndarray, d: np.ndarray, kind: str, centre, size, angle) -> tuple[np.ndarray, np.ndarray]:
    """Distance (inf for a miss) and normal of one object.

    Only the rays that meet the object's bounding sphere are traced (objects cover a
    small part of most views).
    """
    t = np.full(len(o), np.inf)
    normal = np.zeros_like(o)
    reach = size[0] if kind != "box" else np.hypot(size[0], size[1])
    c = np.array([centre[0], centre[1], size[2] / 2], o.dtype)
    oc = o - c
    b = np.einsum("ij,ij->i", oc, d)
    near = (b * b - np.einsum("ij,ij->i", oc, oc) + reach**2 + (size[2] / 2) ** 2 >= 0) & (b < reach + size[2])
    rows = np.flatnonzero(near)
    if len(rows):
        t[rows], normal[rows] = _trace_object(o[rows], d[rows], kind, centre, size, angle)
    return t, normal


def _trace_object(o: np.ndarray, d: np.ndarray, kind: str, centre, size, angle) -> tuple[np.ndarray, np.ndarray]:
    t = np.full(len(o), np.inf)
    normal = np.zeros_like(o)
    with np.errstate(divide="ignore", invalid="ignore"):
        if kind == "sphere":
            c = np.array([centre[0], centre[1], size[0]])
            oc = o - c
            b = np.sum(oc * d, axis=1)
            disc = b * b - (np.sum(oc * oc, axis=1) - size[0] ** 2)
            root = np.sqrt(np.maximum(disc, 0))
            near = np.where(-b - root > 1e-6, -b - root, -b + root)
            t = np.where((disc >= 0) & (near > 1e-6), near, np.inf)
            normal = (o + t[:, None] * d - c) / size[0]
        elif kind == "cylinder":
            r, h = size[0], size[2]
            ox, oy = o[:, 0] - centre[0], o[:, 1] - centre[1]
            a = d[:, 0] ** 2 + d[:, 1] ** 2
            b = ox * d[:, 0] + oy * d[:, 1]
            disc = b * b - a * (ox**2 + oy**2 - r * r)
            side = (-b - np.sqrt(np.maximum(disc, 0))) / a
            z = o[:, 2] + side * d[:, 2]
            side = np.where((disc >= 0) & (side > 1e-6) & (z >= 0) & (z <= h), side, np.inf)
            cap = (h - o[:, 2]) / d[:, 2]
            px, py = ox + cap * d[:, 0], oy + cap * d[:, 1]
            cap = np.where((cap > 1e-6) & (px**2 + py**2 <= r * r), cap, np.inf)
            t = np.minimum(side, cap)
            p = o + t[:, None] * d
            radial = np.stack([(p[:, 0] - centre[0]) / r, (p[:, 1] - centre[1]) / r, np.zeros(len(o))], 1)
            normal = np.where((cap <= side)[:, None], np.array([0.0, 0.0, 1.0]), radial)
        else:  # a box rotated by `angle` about z: slabs in its own frame
            cos, sin = np.cos(angle), np.sin(angle)
            rot = np.array([[cos, sin, 0], [-sin, cos, 0], [0, 0, 1]])  # world -> box
            lo, hi = np.array([-size[0], -size[1], 0]), np.array([size[0], size[1], size[2]])
            ob = (o - np.array([centre[0], centre[1], 0])) @ rot.T
            db = d @ rot.T
            t1, t2 = (lo - ob) / db, (hi - ob) / db
            tmin, tmax = np.minimum(t1, t2), np.maximum(t1, t2)
            enter, leave = np.max(tmin, axis=1), np.min(tmax, axis=1)
            t = np.where((enter <= leave) & (enter > 1e-6), enter, np.inf)
            axis = np.argmax(tmin, axis=1)
            local = np.zeros_like(o)
            local[np.arange(len(o)), axis] = -np.sign(db[np.arange(len(o)), axis])
            normal = local @ rot
    return t, normal


def _hit_objects(scene: Scene, o: np.ndarray, d: np.ndarray):
    """Nearest object hit: distance, normal and object index (-1 for none)."""
    t = np.full(len(o), np.inf)
    normal = np.zeros_like(o)
    which = np.full(len(o), -1)
    for i, kind in enumerate(scene.kinds):
        ti, ni = _hit_object(o, d, kind, scene.centres[i], scene.sizes[i], scene.angles[i])
        closer = ti < t
        t, which = np.where(closer, ti, t), np.where(closer, i, which)
        normal[closer] = ni[closer]
    return t, normal, which


def _shade(scene: Scene, o: np.ndarray, d: np.ndarray) -> np.ndarray:
    t_room, n_room, what = _hit_room(o, d)
    t_obj, n_obj, which = _hit_objects(scene, o, d)
    on_object = t_obj < t_room
    t = np.where(on_object, t_obj, t_room)
    normal = np.where(on_object[:, None], n_obj, n_room)
    surfaces = np.concatenate([scene.floor[None], scene.walls, SKY[None]])
    base = np.where(on_object[:, None], scene.colours[np.maximum(which, 0)] if len(scene.kinds) else 0, surfaces[what])
    sky = ~on_object & (what == 5)
    point = o + np.where(np.isfinite(t), t, 0)[:, None] * d
    lit = np.clip(normal @ LIGHT, 0, 1)
    # Shadows: the objects between a lit point and the light.
    rows = np.flatnonzero((lit > 0) & ~sky)
    light = np.broadcast_to(LIGHT, (len(rows), 3))
    t_shadow, _, _ = _hit_objects(scene, point[rows] + 1e-4 * normal[rows], light)
    lit[rows[np.isfinite(t_shadow)]] = 0.0
    colour = base * (AMBIENT + (1 - AMBIENT) * lit)[:, None]
    return np.where(sky[:, None], SKY, colour)


def scene_views(settings: Settings, split: str, number: int) -> tuple[np.ndarray, np.ndarray]:
    """Scene `number` of `split`: (frames uint8 [V, S, S, 3], cameras float32 [V, 5])."""
    rng = np.random.default_rng([settings.seed, SPLITS[split], number])
    scene = random_scene(rng)
    cameras = ring_cameras(rng, settings.views)
    return render(scene, cameras, settings.frame_size, settings.supersampling), cameras


def serialize(frames: np.ndarray, cameras: np.ndarray, jpeg_quality: int = 95) -> bytes:
    """One scene as a gqn-datasets record: JPEG "frames" [V] and "cameras" [V * 5]."""
    # Full-resolution colour: chroma subsampling blurs colour edges badly at 32x32 and below.
    jpegs = [tf.io.encode_jpeg(f, quality=jpeg_quality, chroma_downsampling=False).numpy() for f in frames]
    example = tf.train.Example(
        features=tf.train.Features(
            feature={
                "frames": tf.train.Feature(bytes_list=tf.train.BytesList(value=jpegs)),
                "cameras": tf.train.Feature(float_list=tf.train.FloatList(value=cameras.reshape(-1).tolist())),
            }
        )
    )
    return example.SerializeToString()


def write_split(root: str, split: str, settings: Settings) -> list[str]:
    """Writes one split's files under root/split/ (each file written whole, then renamed)."""
    count = settings.train_scenes if split == "train" else settings.test_scenes
    files = -(-count // settings.scenes_per_file)
    folder = os.path.join(root, split)
    os.makedirs(folder, exist_ok=True)
    paths = []
    for f in range(files):
        path = os.path.join(folder, data.file_name(f + 1, files))
        first, last = f * settings.scenes_per_file, min(count, (f + 1) * settings.scenes_per_file)
        with tf.io.TFRecordWriter(path + ".tmp") as writer:
            for i in range(first, last):
                writer.write(serialize(*scene_views(settings, split, i), settings.jpeg_quality))
        os.replace(path + ".tmp", path)
        paths.append(path)
    return paths


def write_scenes(root: str, settings: Settings = Settings()) -> dict[str, list[str]]:
    """Writes a whole data set: root/train, root/test and root/generated.json."""
    files = {split: write_split(root, split, settings) for split in SPLITS}
    with open(os.path.join(root, "generated.json.tmp"), "w") as f:
        json.dump(dataclasses.asdict(settings), f, indent=1)
    os.replace(os.path.join(root, "generated.json.tmp"), os.path.join(root, "generated.json"))
    return files


def ensure_scenes(root: str, settings: Settings = Settings()) -> dict[str, list[str]]:
    """The data set at `root`, generated first unless it is there with the same settings."""
    record = os.path.join(root, "generated.json")
    if os.path.exists(record):
        with open(record) as f:
            if json.load(f) == dataclasses.asdict(settings):
                return {split: data.find_files(os.path.join(root, split)) for split in SPLITS}
    return write_scenes(root, settings)


def main(argv):
    del argv
    from absl import flags

    f = flags.FLAGS
    settings = Settings(
        frame_size=f.frame_size,
        views=f.views,
        train_scenes=f.train_scenes,
        test_scenes=f.test_scenes,
        scenes_per_file=f.scenes_per_file,
        seed=f.seed,
    )
    files = write_scenes(f.out, settings)
    print(f"wrote {sum(map(len, files.values()))} files to {f.out}")


if __name__ == "__main__":
    from absl import app, flags

    flags.DEFINE_string("out", None, "the data set's folder (train/ and test/ go below it)", required=True)
    flags.DEFINE_integer("frame_size", 64, "side of the square frames")
    flags.DEFINE_integer("views", 10, "cameras per scene")
    flags.DEFINE_integer("train_scenes", 2000, "scenes in the train split")
    flags.DEFINE_integer("test_scenes", 200, "scenes in the test split")
    flags.DEFINE_integer("scenes_per_file", 500, "scenes per TFRecord file")
    flags.DEFINE_integer("seed", 0, "the data set's seed")
    app.run(main)
