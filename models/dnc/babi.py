"""bAbI question answering (Weston et al., 2015) as the DNC paper trains on it.

Reads the `tasks_1-20_v1-2/en-10k` text format: files `qa{N}_*_{train,test}.txt`, where
each line starts with a line number (1 starts a new story); question lines hold the
question, a tab, the answer, a tab and the supporting-fact line numbers.

Encoding (Graves et al., 2016, and public reproductions): a story, questions included,
is one sequence of word tokens, one per time step: lowercased words, with "." and "?"
as tokens of their own. After each question comes one "-" per answer word (answers with
several words, tasks 8 and 19, are comma-separated), and the model must output the
answer word at those steps: softmax cross-entropy there only. A question counts as
wrong if any of its answer words is wrong; the error is per task, over the test set,
and a task "fails" above 5% error. The vocabulary is counted from the data.

The data is a download; nothing here fetches it. Point `data_dir` at the unpacked
`en-10k` folder (or any folder in the same format).
"""

import collections
import dataclasses
import glob
import os
import re
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import tensorflow as tf

ANSWER = "-"
FAIL_THRESHOLD = 0.05
_TOKEN = re.compile(r"[a-z0-9]+|[.?]")
_FACTS = re.compile(r"\d+( \d+)*")
_FILE = re.compile(r"qa(\d+)_.*_(train|test)\.txt$")

Batch = collections.namedtuple("Batch", ["observations", "targets", "mask", "question", "task"])


@dataclasses.dataclass(frozen=True)
class Story:
    """One story as tokens: `answers[i]` is the answer token at position i, or None.

    `question[i]` numbers the question an answer position belongs to (0, 1, ... within the
    story), -1 elsewhere.
    """

    task: int
    tokens: tuple[str, ...]
    answers: tuple[str | None, ...]
    question: tuple[int, ...]


def tokenize(text: str) -> list[str]:
    """Lowercase words and the tokens "." and "?"."""
    return _TOKEN.findall(text.lower())


def parse(lines: Iterable[str], task: int, source: str = "<lines>") -> list[Story]:
    """Stories from the lines of one bAbI file.

    Raises:
      ValueError: naming the source and line, on a line without a line number, a
        question without its tab-separated answer and supporting facts (a question mark
        in a line without a tab, or a line cut short), or a story line with a tab.
    """
    stories, tokens, answers, question = [], [], [], []
    for number, line in enumerate(lines, 1):
        line = line.rstrip("\n")
        if not line.strip():
            continue
        head, _, rest = line.partition(" ")
        if not head.isdigit():
            raise ValueError(f"{source}:{number}: a bAbI line starts with its line number, got {line!r}")
        if int(head) == 1 and tokens:
            stories.append(Story(task, tuple(tokens), tuple(answers), tuple(question)))
            tokens, answers, question = [], [], []
        if "\t" in rest or "?" in rest:
            # A question: "question?<TAB>answer<TAB>supporting fact numbers". The facts
            # come last, so a line cut short anywhere before them is caught here.
            parts = rest.split("\t")
            if len(parts) != 3 or not parts[1].strip() or not _FACTS.fullmatch(parts[2].strip()):
                raise ValueError(
                    f"{source}:{number}: a question line needs 'question?<TAB>answer<TAB>supporting facts' "
                    f"(numbers), got {line!r}; is the file cut short or are its tabs lost?"
                )
            asked, answer = tokenize(parts[0]), parts[1]
            index = max(question, default=-1) + 1
            words = [w.strip().lower() for w in answer.split(",") if w.strip()]
            tokens += asked + [ANSWER] * len(words)
            answers += [None] * len(asked) + words
            question += [-1] * len(asked) + [index] * len(words)
        else:
            words = tokenize(rest)
            tokens += words
            answers += [None] * len(words)
            question += [-1] * len(words)
    if tokens:
        stories.append(Story(task, tuple(tokens), tuple(answers), tuple(question)))
    return stories


def read_dir(data_dir: str, tasks: Sequence[int], split: str) -> list[Story]:
    """The stories of `split` ("train" or "test") of the given tasks in `data_dir`.

    Raises:
      FileNotFoundError: when a task has no file of that split, naming the pattern.
      ValueError: a file that is not UTF-8 text, holds no story, or does not parse,
        naming the file.
    """
    stories = []
    for task in tasks:
        matches = [p for p in glob.glob(os.path.join(data_dir, f"qa{task}_*_{split}.txt")) if _FILE.search(p)]
        if not matches:
            raise FileNotFoundError(
                f"bAbI task {task}: no file {os.path.join(data_dir, f'qa{task}_*_{split}.txt')}; "
                "point data_dir at the unpacked tasks_1-20_v1-2/en-10k folder"
            )
        for path in sorted(matches):
            try:
                with open(path, encoding="utf-8") as f:
                    lines = f.readlines()
            except UnicodeDecodeError as e:
                raise ValueError(f"{path}: not UTF-8 text ({e})") from None
            found = parse(lines, task, source=path)
            if not found:
                raise ValueError(f"{path}: no stories in the file; is it empty?")
            stories += found
    return stories


class Vocabulary:
    """Token <-> id, sorted for determinism; built from the data, never hard-coded."""

    def __init__(self, stories: Iterable[Story]):
        words = set()
        for story in stories:
            words.update(story.tokens)
            words.update(a for a in story.answers if a is not None)
        words.add(ANSWER)
        self.tokens = tuple(sorted(words))
        self._ids = {t: i for i, t in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    def id(self, token: str) -> int:
        try:
            return self._ids[token]
        except KeyError:
            raise KeyError(f"token {token!r} is not in the vocabulary ({len(self)} tokens)") from None


def encode(stories: Sequence[Story], vocab: Vocabulary) -> Batch:
    """Stories padded to the longest as one time-major batch.

    Returns:
      Batch(observations [T, B, V] one-hot float32 (zeros on padding), targets [T, B]
      int32 (the answer id at answer steps, 0 elsewhere), mask [T, B] float32 (1 at
      answer steps), question [T, B] int32 (question number at answer steps, -1
      elsewhere), task [B] int32).
    """
    length = max(len(s.tokens) for s in stories)
    ids = np.full([length, len(stories)], -1, np.int32)
    targets = np.zeros([length, len(stories)], np.int32)
    mask = np.zeros([length, len(stories)], np.float32)
    question = np.full([length, len(stories)], -1, np.int32)
    for b, story in enumerate(stories):
        ids[: len(story.tokens), b] = [vocab.id(t) for t in story.tokens]
        for t, answer in enumerate(story.answers):
            if answer is not None:
                targets[t, b] = vocab.id(answer)
                mask[t, b] = 1.0
                question[t, b] = story.question[t]
    return Batch(
        observations=tf.one_hot(ids, len(vocab)),  # id -1 (padding) gives a zero vector
        targets=tf.constant(targets),
        mask=tf.constant(mask),
        question=tf.constant(question),
        task=tf.constant([s.task for s in stories], tf.int32),
    )


def answer_loss(logits: tf.Tensor, targets: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Softmax cross-entropy at the answer steps, summed over time, averaged over the batch."""
    xent = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits)
    return tf.reduce_sum(xent * tf.cast(mask, xent.dtype)) / tf.cast(tf.shape(logits)[1], xent.dtype)


def question_errors(predictions: np.ndarray, batch: Batch) -> dict[int, tuple[int, int]]:
    """(wrong questions, questions) per task: a question is wrong if any answer word is."""
    targets, mask = batch.targets.numpy(), batch.mask.numpy()
    question, task = batch.question.numpy(), batch.task.numpy()
    wrong: dict[tuple[int, int], bool] = {}
    for t, b in zip(*np.nonzero(mask)):
        key = (int(b), int(question[t, b]))
        wrong[key] = wrong.get(key, False) or predictions[t, b] != targets[t, b]
    counts: dict[int, list[int]] = {}
    for (b, _), is_wrong in wrong.items():
        c = counts.setdefault(int(task[b]), [0, 0])
        c[0] += int(is_wrong)
        c[1] += 1
    return {k: (v[0], v[1]) for k, v in counts.items()}


class BabiTask:
    """bAbI as `train.py` drives it: joint training on the chosen tasks, per-task test error.

    The training stories are read in epochs, each in its own order: position p of the
    stream is story `index_shuffle(p mod n)` under the seed (seed, p div n), a
    permutation that depends only on the seed and the epoch. Step s takes positions
    [s B, (s + 1) B), and replica r of R its [s B + r B / R, s B + (r + 1) B / R); so a
    resumed run sees the stories it would have seen, and R replicas together see what
    one device sees.

    Args:
      data_dir: the unpacked `en-10k` folder.
      tasks: the task numbers (1-20) to train and test on jointly.
      batch_size: stories per training batch (the paper: 1).
      eval_batch_size: stories per test batch.
      max_test_stories: test on at most this many stories per task (None: all).

    Raises:
      ValueError: bad arguments, naming them; a file that does not parse (see `read_dir`).
      FileNotFoundError: a task without its train or test file.
    """

    def __init__(
        self,
        data_dir: str,
        tasks: Sequence[int] = tuple(range(1, 21)),
        batch_size: int = 1,
        eval_batch_size: int = 32,
        max_test_stories: int | None = None,
    ):
        if isinstance(tasks, (str, bytes)) or not isinstance(tasks, Iterable):
            raise ValueError(f"BabiTask: tasks must be a list of task numbers (1 to 20), got {tasks!r}")
        tasks = tuple(tasks)
        bad = [t for t in tasks if not _positive_int(t) or not 1 <= t <= 20]
        if bad or not tasks:
            raise ValueError(f"BabiTask: tasks are numbered 1 to 20, got {list(tasks)!r}")
        for name, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if not _positive_int(value):
                raise ValueError(f"BabiTask: {name} must be a positive integer, got {value!r}")
        if max_test_stories is not None and not _positive_int(max_test_stories):
            raise ValueError(f"BabiTask: max_test_stories must be a positive integer or None, got {max_test_stories!r}")
        self.tasks = tasks
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.train_stories = read_dir(data_dir, self.tasks, "train")
        test = read_dir(data_dir, self.tasks, "test")
        if max_test_stories is not None:
            by_task: dict[int, list[Story]] = {}
            for s in test:
                by_task.setdefault(s.task, []).append(s)
            test = [s for t in self.tasks for s in by_task.get(t, [])[:max_test_stories]]
        self.test_stories = test
        self.vocab = Vocabulary(self.train_stories + self.test_stories)
        self._train = _ragged(self.train_stories, self.vocab)

    @property
    def input_size(self) -> int:
        return len(self.vocab)

    @property
    def output_size(self) -> int:
        return len(self.vocab)

    def dataset(self, seed: int, start_step: int, context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
        """This input pipeline's per-replica training batches for steps start_step, start_step + 1, ...

        In the order `strategy.distribute_datasets_from_function` deals them: step by
        step, one per replica of this pipeline. Each is a time-major `Batch` padded to
        its longest story.

        Raises:
          ValueError: the batch size does not split evenly over the replicas.
        """
        context = context or tf.distribute.InputContext()
        replicas, pipelines = context.num_replicas_in_sync, context.num_input_pipelines
        if self.batch_size % replicas or replicas % pipelines:
            raise ValueError(f"BabiTask: batch size {self.batch_size} does not split over {replicas} replicas")
        size, local = self.batch_size // replicas, replicas // pipelines
        first_replica = context.input_pipeline_id * local
        stories, vocab_size = self._train, len(self.vocab)
        count = tf.cast(stories["task"].shape[0], tf.int64)

        def element(index):
            step, replica = index // local, first_replica + index % local
            positions = step * self.batch_size + replica * size + tf.range(size, dtype=tf.int64)
            epochs = positions // count
            # One permutation per epoch, so one seed per position. The raw op, because
            # tf.random.experimental.index_shuffle pads a batch of seeds on the wrong axis.
            seeds = tf.stack([tf.fill([size], tf.constant(seed, tf.int64)), epochs, tf.zeros_like(epochs)], axis=1)
            picked = tf.raw_ops.RandomIndexShuffle(
                index=positions % count, seed=seeds, max_index=tf.fill([size], count - 1), rounds=4
            )
            padded = {k: tf.gather(v, picked) for k, v in stories.items()}
            ids = tf.transpose(padded["ids"].to_tensor(-1))
            return Batch(
                observations=tf.one_hot(ids, vocab_size),  # id -1 (padding) gives a zero vector
                targets=tf.transpose(padded["targets"].to_tensor(0)),
                mask=tf.transpose(padded["mask"].to_tensor(0.0)),
                question=tf.transpose(padded["question"].to_tensor(-1)),
                task=padded["task"],
            )

        first = tf.constant(start_step * local, tf.int64)
        return tf.data.Dataset.range(first, tf.int64.max).map(element).prefetch(2)

    def loss(self, logits: tf.Tensor, batch: Batch) -> tf.Tensor:
        return answer_loss(logits, batch.targets, batch.mask)

    def metrics(self, logits: tf.Tensor, batch: Batch) -> dict[str, tf.Tensor]:
        right = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), batch.targets), tf.float32)
        answers = tf.reduce_sum(batch.mask)
        return {
            "loss": self.loss(logits, batch),
            "word_error": 1.0 - tf.reduce_sum(right * batch.mask) / tf.maximum(answers, 1.0),
        }

    def evaluate(self, logits_fn: Callable[[tf.Tensor], tf.Tensor], seed: int) -> dict[str, dict[str, float]]:
        """Per-task error on the test stories, their mean, and the number of failed tasks."""
        del seed  # the test set is fixed
        counts: dict[int, list[int]] = {}
        for start in range(0, len(self.test_stories), self.eval_batch_size):
            batch = encode(self.test_stories[start : start + self.eval_batch_size], self.vocab)
            predictions = tf.argmax(logits_fn(batch.observations), -1, output_type=tf.int32).numpy()
            for task, (wrong, total) in question_errors(predictions, batch).items():
                c = counts.setdefault(task, [0, 0])
                c[0] += wrong
                c[1] += total
        unasked = [t for t in self.tasks if counts.get(t, [0, 0])[1] == 0]
        if unasked:
            raise ValueError(f"bAbI tasks {unasked} have no questions in the test stories: nothing to score")
        per_task = {f"task_{t}": counts[t][0] / counts[t][1] for t in sorted(counts)}
        errors = list(per_task.values())
        summary = {
            "mean_error": float(np.mean(errors)),
            "failed_tasks": float(sum(e > FAIL_THRESHOLD for e in errors)),
        }
        return {"test": summary, "test_per_task": per_task}

    def is_solved(self, results: dict[str, dict[str, float]]) -> bool:
        """Every task at or below 5% error (the paper's pass mark)."""
        return results["test"]["failed_tasks"] == 0


def _positive_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1


def _ragged(stories: Sequence[Story], vocab: Vocabulary) -> dict[str, tf.Tensor]:
    """Every story's token ids, answer ids, answer mask and question numbers as ragged rows."""
    lengths = np.array([len(s.tokens) for s in stories], np.int64)
    ids = np.array([vocab.id(t) for s in stories for t in s.tokens], np.int32)
    targets = np.array([vocab.id(a) if a is not None else 0 for s in stories for a in s.answers], np.int32)
    mask = np.array([a is not None for s in stories for a in s.answers], np.float32)
    question = np.array([q for s in stories for q in s.question], np.int32)

    def rows(values):
        return tf.RaggedTensor.from_row_lengths(values, lengths)

    return {
        "ids": rows(ids),
        "targets": rows(targets),
        "mask": rows(mask),
        "question": rows(question),
        "task": tf.constant([s.task for s in stories], tf.int32),
    }
