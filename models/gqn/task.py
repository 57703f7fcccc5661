"""GQN's task as the training setup drives it: batches of scenes by number, the loss, metrics, evaluation.

Every training example is a pure function of (seed, step, example): the records are
counted once (`data.RecordIndex`), and the g-th example of the run (g = step * B + i for
example i of the global batch of size B) is scene

    index_shuffle(g mod N, seed=(seed, g div N), max_index=N - 1)

of the N training scenes, i.e. epoch g div N visits every scene once in an order drawn
from (seed, epoch); its context and query views and its noise seed are drawn from seeds
folded from (seed, g). So a resumed run sees exactly the examples it would have seen,
replica r of R gets examples [r B / R, (r + 1) B / R) of the same global batch a single
device sees, and the views of a scene change from one epoch to the next.
"""

import dataclasses
import os
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from models.gqn import data, scenes

# Streams of stateless seeds, folded with the run's seed so they never meet.
_VIEWS, _NOISE, _EVAL_VIEWS, _EVAL_NOISE = 1, 2, 3, 4
_INDEXES: dict[tuple, data.RecordIndex] = {}
_MEAN_IMAGES: dict[tuple, np.ndarray] = {}


@dataclasses.dataclass(frozen=True)
class SceneTask:
    """Scenes in the gqn-datasets format under `data_dir`/{train,test}, as GQN training examples.

    Attributes:
      data_dir: the data set's folder, holding train/ and test/ with NNN-of-MMM.tfrecord files.
      dataset_name: a name in `data.DATASETS` or a `data.DatasetInfo` (frame size, views).
      generate: `scenes.Settings` to make the data at `data_dir` first unless it is
        there already with those settings (the offline default); then `dataset_name`
        is not used (the settings say what the data are). None: the data must be there.
      context_size: K, context views per example (the paper draws 1 to 5 at random;
        here it is fixed, so shapes are static).
      batch_size: the global batch size B (36 in the paper).
      angle_order: "sin_cos" or "cos_sin" (`data.camera_transform`).
      in_memory: keep the records in memory (fits the generated sets) or read each
        from its file by offset.
      eval_scenes: test scenes per evaluation (fewer if the split has fewer).
      eval_batch_size: examples per evaluation batch.
      baseline_scenes: training scenes whose frames make the mean image of the baseline.
      solved_ratio: `is_solved` when the prediction MSE is below the mean image's MSE
        divided by this; None: never.
    """

    data_dir: str
    dataset_name: str | data.DatasetInfo = "rooms_ring_camera"
    generate: scenes.Settings | None = None
    context_size: int = 5
    batch_size: int = 36
    angle_order: str = "sin_cos"
    in_memory: bool = True
    eval_scenes: int = 200
    eval_batch_size: int = 20
    baseline_scenes: int = 500
    solved_ratio: float | None = None

    def __post_init__(self):
        for name in ("context_size", "batch_size", "eval_scenes", "eval_batch_size", "baseline_scenes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"SceneTask: {name} must be a positive int, got {value!r}")
        data.check_angle_order(self.angle_order)
        if self.generate is None:
            data.dataset_info(self.dataset_name)
        if self.context_size + 1 > self.info.views:
            raise ValueError(
                f"SceneTask: context_size {self.context_size} needs {self.context_size + 1} views per scene; "
                f"the data set has {self.info.views}"
            )

    @property
    def info(self) -> data.DatasetInfo:
        return self.generate.info if self.generate is not None else data.dataset_info(self.dataset_name)

    @property
    def image_size(self) -> int:
        """S, the frames' side: what the model is built for."""
        return self.info.frame_size

    def index(self, split: str) -> data.RecordIndex:
        """The split's records, counted (and checked) once per process."""
        key = (os.path.abspath(self.data_dir), split, self.info, self.generate, self.in_memory)
        if key not in _INDEXES:
            if self.generate is not None:
                scenes.ensure_scenes(self.data_dir, self.generate)
            index = data.RecordIndex.scan(data.find_files(os.path.join(self.data_dir, split)), self.info)
            if len(index) == 0:
                raise ValueError(f"SceneTask: {self.data_dir}/{split} holds no scenes")
            _INDEXES[key] = index.load() if self.in_memory else index
        return _INDEXES[key]

    # --- training batches ------------------------------------------------------------

    def example(self, seed: int, number: tf.Tensor) -> dict[str, tf.Tensor]:
        """Training example `number` (g, counted from the start of the run) of the run seeded `seed`."""
        index = self.index("train")
        n = tf.constant(len(index), tf.int64)
        seed = tf.constant(seed, tf.int64)
        epoch, position = number // n, number % n
        scene = tf.random.experimental.index_shuffle(position, tf.stack([seed, epoch]), n - 1)
        return self._example(index, scene, seed, number, _VIEWS, _NOISE)

    def dataset(self, seed: int, start_step: int, context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
        """This input pipeline's per-replica training batches for steps start_step, start_step + 1, ...

        Elements come step by step, and within a step replica by replica of this
        pipeline, as `strategy.distribute_datasets_from_function` deals them. Replica r
        of R (global id = pipeline id * local replicas + local index) gets examples
        [r B / R, (r + 1) B / R) of each global batch.

        Raises:
          ValueError: the batch size does not split evenly over the replicas.
        """
        context = context or tf.distribute.InputContext()
        replicas, pipelines = context.num_replicas_in_sync, context.num_input_pipelines
        if self.batch_size % replicas or replicas % pipelines:
            raise ValueError(f"SceneTask: batch size {self.batch_size} does not split over {replicas} replicas")
        per_replica, local = self.batch_size // replicas, replicas // pipelines
        first_replica = context.input_pipeline_id * local
        per_step = local * per_replica  # examples this pipeline makes per step

        def number(k):
            step, within = k // per_step, k % per_step
            replica = first_replica + within // per_replica
            return step * self.batch_size + replica * per_replica + within % per_replica

        self.index("train")  # count (and check) the records before tracing
        examples = tf.data.Dataset.range(start_step * per_step, tf.int64.max)
        examples = examples.map(lambda k: self.example(seed, number(k)), num_parallel_calls=tf.data.AUTOTUNE)
        return examples.batch(per_replica, drop_remainder=True).prefetch(2)

    # --- loss, metrics ---------------------------------------------------------------------

    def loss(self, outputs: dict[str, tf.Tensor], batch: dict[str, tf.Tensor]) -> tf.Tensor:
        """The mean negative ELBO over the batch (nats per example)."""
        del batch
        return tf.reduce_mean(outputs["loss"])

    def metrics(self, outputs: dict[str, tf.Tensor], batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """Means over the batch: loss, nll, kl and mse (of the posterior sample's mean image)."""
        del batch
        return {key: tf.reduce_mean(outputs[key]) for key in ("loss", "nll", "kl", "mse")}

    # --- evaluation -------------------------------------------------------------------------

    def eval_batches(self, seed: int, count: int | None = None, batch_size: int | None = None):
        """Held-out batches: the first `count` (default `eval_scenes`) test scenes, in order.

        Views and noise seeds come from seed streams training never uses, so every
        evaluation of a run sees the same examples.
        """
        index = self.index("test")
        count = min(count or self.eval_scenes, len(index))
        size = batch_size or self.eval_batch_size
        seed = tf.constant(seed, tf.int64)
        numbers = tf.data.Dataset.range(count)
        examples = numbers.map(
            lambda i: self._example(index, i, seed, i, _EVAL_VIEWS, _EVAL_NOISE), num_parallel_calls=tf.data.AUTOTUNE
        )
        return examples.batch(size)

    def mean_image(self) -> np.ndarray:
        """The baseline's prediction: the mean training frame over `baseline_scenes` scenes, [S, S, 3]."""
        key = (os.path.abspath(self.data_dir), self.info, self.baseline_scenes, self.angle_order)
        if key not in _MEAN_IMAGES:
            index = self.index("train")
            count = min(self.baseline_scenes, len(index))
            records = tf.data.Dataset.range(count).map(index.read_op)
            frames = records.map(lambda r: data.decode_scene(r, self.info, self.angle_order)["frames"])
            total = frames.reduce(tf.zeros([self.image_size] * 2 + [3]), lambda acc, f: acc + tf.reduce_sum(f, 0))
            _MEAN_IMAGES[key] = (total / (count * self.info.views)).numpy()
        return _MEAN_IMAGES[key]

    def evaluate(self, predict_fn: Callable[[dict], dict], seed: int) -> dict[str, dict[str, float]]:
        """The model on held-out test scenes, against the mean-image baseline.

        Args:
          predict_fn: batch -> {"loss", "nll", "kl", "mse" [B] (the ELBO's terms, as
            `GQN.elbo`), "prediction" [B, S, S, 3] (the query view generated from the
            context, sampled from the prior)}.
          seed: the run's seed.

        Returns:
          {"test": {"loss", "nll", "kl", "mse" (posterior), "prediction_mse" (prior
          sample vs the true query view), "mean_image_mse" (the mean training frame vs
          the true query view), "ratio" (mean_image_mse / prediction_mse)}}, means
          over the scenes.

        Raises:
          ValueError: if there is no test scene.
        """
        mean_image = tf.constant(self.mean_image())
        totals: dict[str, float] = {}
        count = 0
        for batch in self.eval_batches(seed):
            outputs = predict_fn(batch)
            truth = batch["query_frame"]
            per_example = {key: outputs[key] for key in ("loss", "nll", "kl", "mse")}
            per_example["prediction_mse"] = tf.reduce_mean(tf.square(outputs["prediction"] - truth), axis=[1, 2, 3])
            per_example["mean_image_mse"] = tf.reduce_mean(tf.square(mean_image - truth), axis=[1, 2, 3])
            for key, value in per_example.items():
                totals[key] = totals.get(key, 0.0) + float(tf.reduce_sum(value))
            count += int(truth.shape[0])
        if count == 0:
            raise ValueError("SceneTask: the evaluation has no test scene")
        results = {key: value / count for key, value in totals.items()}
        results["ratio"] = results["mean_image_mse"] / max(results["prediction_mse"], 1e-12)
        return {"test": results}

    def is_solved(self, results: dict[str, dict[str, float]]) -> bool:
        """Whether the predictions beat the mean image by `solved_ratio` (never, when it is None)."""
        return self.solved_ratio is not None and results["test"]["ratio"] >= self.solved_ratio

    # --- one example ------------------------------------------------------------------------

    def _example(self, index, scene, seed, number, views_stream, noise_stream) -> dict[str, tf.Tensor]:
        record = data.parse_scene(index.read_op(scene), self.info)
        record["cameras"] = data.camera_transform(record["cameras"], self.angle_order)
        views_seed = tf.random.experimental.stateless_fold_in(tf.stack([seed, views_stream]), number)
        example = data.sample_views(record, self.context_size, views_seed, self.info.frame_size)
        example["noise_seed"] = tf.random.experimental.stateless_fold_in(tf.stack([seed, noise_stream]), number)
        example["scene"] = scene
        return example
