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
      ValueError: on a line without a line number, or a question line without an answer,
        naming the source and line.
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
        if "\t" in rest:
            parts = rest.split("\t")
            if len(parts) < 2 or not parts[1].strip():
                raise ValueError(
                    f"{source}:{number}: a question line needs 'question<TAB>answer<TAB>facts', got {line!r}"
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
            with open(path, encoding="utf-8") as f:
                stories += parse(f, task, source=path)
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

    Training batch i takes its stories from a permutation of the training stories that
    depends only on (seed, epoch), so a resumed run sees the stories it would have.

    Args:
      data_dir: the unpacked `en-10k` folder.
      tasks: the task numbers (1-20) to train and test on jointly.
      batch_size: stories per training batch (the paper: 1).
      eval_batch_size: stories per test batch.
      max_test_stories: test on at most this many stories per task (None: all).
    """

    def __init__(
        self,
        data_dir: str,
        tasks: Sequence[int] = tuple(range(1, 21)),
        batch_size: int = 1,
        eval_batch_size: int = 32,
        max_test_stories: int | None = None,
    ):
        bad = [t for t in tasks if not 1 <= t <= 20]
        if bad:
            raise ValueError(f"bAbI tasks are numbered 1 to 20, got {bad}")
        self.tasks = tuple(tasks)
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

    @property
    def input_size(self) -> int:
        return len(self.vocab)

    @property
    def output_size(self) -> int:
        return len(self.vocab)

    def train_batch(self, seed: int, step: int, replica: int = 0, num_replicas: int = 1) -> Batch:
        """Replica `replica`'s share (batch_size / num_replicas stories) of training batch `step`."""
        n, per_replica = len(self.train_stories), self.batch_size // num_replicas
        first = step * self.batch_size + replica * per_replica
        orders: dict[int, np.ndarray] = {}  # one permutation per epoch the batch reaches
        picked = []
        for position in range(first, first + per_replica):
            epoch, index = divmod(position, n)
            if epoch not in orders:
                orders[epoch] = np.random.RandomState([seed % 2**32, epoch]).permutation(n)
            picked.append(self.train_stories[orders[epoch][index]])
        return encode(picked, self.vocab)

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
