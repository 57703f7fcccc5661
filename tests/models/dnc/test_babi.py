"""bAbI pipeline on small files in the real format, written by the test."""

import numpy as np
import pytest
import tensorflow as tf

from models.dnc import babi

QA1 = """1 Mary moved to the bathroom.
2 John went to the hallway.
3 Where is Mary? \tbathroom\t1
4 Daniel went back to the hallway.
5 Where is Daniel? \thallway\t4
1 Sandra journeyed to the garden.
2 Where is Sandra? \tgarden\t1
"""
QA8 = """1 Mary got the apple there.
2 Mary picked up the football there.
3 What is Mary carrying? \tapple,football\t1 2
"""
QA19 = """1 The kitchen is north of the hallway.
2 How do you go from the hallway to the kitchen? \tn\t1
"""


@pytest.fixture
def data_dir(tmp_path):
    for name, text in [("qa1_single-supporting-fact", QA1), ("qa8_lists-sets", QA8), ("qa19_path-finding", QA19)]:
        for split in ("train", "test"):
            (tmp_path / f"{name}_{split}.txt").write_text(text)
    return str(tmp_path)


def test_parse_stories_and_answer_positions():
    stories = babi.parse(QA1.splitlines(True), task=1)
    assert len(stories) == 2
    first = stories[0]
    assert first.tokens[:6] == ("mary", "moved", "to", "the", "bathroom", ".")
    dash = first.tokens.index("-")
    assert first.tokens[dash - 4 : dash + 1] == ("where", "is", "mary", "?", "-")
    assert first.answers[dash] == "bathroom" and first.question[dash] == 0
    assert [a for a in first.answers if a] == ["bathroom", "hallway"]
    assert sorted(set(q for q in first.question if q >= 0)) == [0, 1]


def test_multi_word_answers_get_one_dash_each():
    (story,) = babi.parse(QA8.splitlines(True), task=8)
    assert story.tokens[-2:] == ("-", "-")
    assert story.answers[-2:] == ("apple", "football")
    assert story.question[-2:] == (0, 0)


def test_vocabulary_is_counted_from_the_data(data_dir):
    task = babi.BabiTask(data_dir, tasks=[1, 8, 19])
    vocab = task.vocab
    assert "-" in vocab.tokens and "." in vocab.tokens and "?" in vocab.tokens
    assert "football" in vocab.tokens and "n" in vocab.tokens
    assert list(vocab.tokens) == sorted(vocab.tokens)
    assert task.input_size == task.output_size == len(vocab)
    with pytest.raises(KeyError, match="'dragon' is not in the vocabulary"):
        vocab.id("dragon")


def test_encode_pads_and_masks(data_dir):
    task = babi.BabiTask(data_dir, tasks=[1, 8])
    batch = babi.encode(task.train_stories, task.vocab)
    lengths = [len(s.tokens) for s in task.train_stories]
    assert batch.observations.shape == (max(lengths), len(lengths), len(task.vocab))
    obs = batch.observations.numpy()
    for b, n in enumerate(lengths):
        np.testing.assert_array_equal(obs[:n, b].sum(-1), 1.0)  # one-hot on real steps
        np.testing.assert_array_equal(obs[n:, b], 0.0)  # zeros on padding
    assert batch.mask.numpy().sum() == 5  # 2 + 1 + 2 answer words
    dash = task.vocab.id("-")
    np.testing.assert_array_equal(obs.argmax(-1)[batch.mask.numpy() == 1], dash)


def test_per_task_error_counts_a_question_wrong_if_any_word_is(data_dir):
    task = babi.BabiTask(data_dir, tasks=[1, 8, 19], eval_batch_size=2)

    def oracle(observations, wrong_words=()):
        # Peek at the test set's answers, in test-story order, to build perfect logits.
        batch = next(
            b
            for b in _batches(task)
            if b.observations.shape == observations.shape
            and np.array_equal(b.observations.numpy(), observations.numpy())
        )
        targets = batch.targets.numpy().copy()
        for word in wrong_words:
            targets[targets == task.vocab.id(word)] = task.vocab.id("the")
        return tf.one_hot(targets, len(task.vocab)) * 10.0

    perfect = task.evaluate(oracle, seed=0)
    assert perfect["test"] == {"mean_error": 0.0, "failed_tasks": 0.0}
    assert task.is_solved(perfect)
    # "football" wrong: task 8's only question is wrong although "apple" is right.
    partly = task.evaluate(lambda obs: oracle(obs, ["football"]), seed=0)
    assert partly["test_per_task"] == {"task_1": 0.0, "task_8": 1.0, "task_19": 0.0}
    assert partly["test"]["failed_tasks"] == 1.0
    # "hallway" wrong: one of task 1's three questions.
    one = task.evaluate(lambda obs: oracle(obs, ["hallway"]), seed=0)
    assert one["test_per_task"]["task_1"] == pytest.approx(1 / 3)


def _batches(task):
    for start in range(0, len(task.test_stories), task.eval_batch_size):
        yield babi.encode(task.test_stories[start : start + task.eval_batch_size], task.vocab)


def test_training_batches_are_a_function_of_seed_and_step(data_dir):
    task = babi.BabiTask(data_dir, tasks=[1, 8, 19], batch_size=2)
    a = next(iter(task.dataset(seed=1, start_step=5)))
    b = list(task.dataset(seed=1, start_step=0).take(6))[5]
    for key in a._fields:
        np.testing.assert_array_equal(getattr(a, key).numpy(), getattr(b, key).numpy(), err_msg=key)
    # Over each epoch every story is used once, in an order of its own.
    n = len(task.train_stories)
    epochs = [[tuple(x.task.numpy()) for x in task.dataset(seed=1, start_step=e * n // 2).take(n // 2)] for e in (0, 1)]
    for seen in epochs:
        assert sorted(t for pair in seen for t in pair) == sorted(s.task for s in task.train_stories)
    # The batch is the stories, encoded as `encode` does.
    stories = babi.encode(task.train_stories, task.vocab)
    assert a.observations.shape[2] == stories.observations.shape[2] == len(task.vocab)
    two = tf.distribute.InputContext(num_input_pipelines=1, input_pipeline_id=0, num_replicas_in_sync=2)
    halves = list(task.dataset(seed=1, start_step=5, context=two).take(2))
    np.testing.assert_array_equal(np.concatenate([h.task.numpy() for h in halves]), a.task.numpy())
    loss = task.loss(tf.zeros([a.mask.shape[0], 2, len(task.vocab)]), a)
    assert loss.numpy() == pytest.approx(a.mask.numpy().sum() / 2 * np.log(len(task.vocab)), rel=1e-5)


def test_errors_name_the_problem(tmp_path, data_dir):
    with pytest.raises(ValueError, match=r"x.txt:2: a bAbI line starts with its line number"):
        babi.parse(["1 Mary went home.\n", "Where is Mary?\thome\t1\n"], task=1, source="x.txt")
    with pytest.raises(ValueError, match=r"x.txt:1: a question line needs"):
        babi.parse(["1 Where is Mary?\t\t1\n"], task=1, source="x.txt")
    with pytest.raises(FileNotFoundError, match=r"bAbI task 2: no file .*qa2_\*_train.txt"):
        babi.BabiTask(data_dir, tasks=[2])
    with pytest.raises(ValueError, match="numbered 1 to 20, got \\[21\\]"):
        babi.BabiTask(data_dir, tasks=[21])


@pytest.mark.parametrize(
    "line, problem",
    [
        ("3 Where is Mary?\n", "a question without its tab-separated answer"),
        ("3 Where is Mary? \tbath", "a line cut short in the answer"),
        ("3 Where is Mary? \tbathroom", "a line cut short before the facts"),
        ("3 Where is Mary? \tbathroom\t", "a line cut short at the facts"),
        ("3 Where is Mary? \tbathroom\tone", "facts that are not numbers"),
    ],
)
def test_malformed_question_lines_are_errors(line, problem):
    lines = ["1 Mary moved to the bathroom.\n", "2 John went to the hallway.\n", line]
    with pytest.raises(
        ValueError, match=r"q.txt:3: a question line needs 'question\?<TAB>answer<TAB>supporting facts'"
    ):
        babi.parse(lines, task=1, source="q.txt")


def test_bad_files_and_arguments_name_the_problem(tmp_path, data_dir):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "qa1_x_train.txt").write_bytes(b"1 Mary went to the caf\xe9.\n")
    (bad / "qa1_x_test.txt").write_text(QA1)
    with pytest.raises(ValueError, match=r"qa1_x_train.txt: not UTF-8 text"):
        babi.BabiTask(str(bad), tasks=[1])
    (bad / "qa1_x_train.txt").write_text("")
    with pytest.raises(ValueError, match=r"qa1_x_train.txt: no stories in the file"):
        babi.BabiTask(str(bad), tasks=[1])
    for kwargs, message in [
        (dict(tasks=1), "tasks must be a list of task numbers"),
        (dict(tasks=[]), "tasks are numbered 1 to 20, got \\[\\]"),
        (dict(tasks=[1], batch_size=0), "batch_size must be a positive integer, got 0"),
        (dict(tasks=[1], eval_batch_size=2.5), "eval_batch_size must be a positive integer, got 2.5"),
        (dict(tasks=[1], max_test_stories=0), "max_test_stories must be a positive integer or None, got 0"),
    ]:
        with pytest.raises(ValueError, match=message):
            babi.BabiTask(data_dir, **kwargs)


def test_a_test_set_without_questions_is_an_error_not_a_pass(tmp_path):
    (tmp_path / "qa1_x_train.txt").write_text(QA1)
    (tmp_path / "qa1_x_test.txt").write_text("1 Mary moved to the bathroom.\n2 John went to the hallway.\n")
    task = babi.BabiTask(str(tmp_path), tasks=[1])
    with pytest.raises(ValueError, match=r"bAbI tasks \[1\] have no questions in the test stories"):
        task.evaluate(lambda obs: tf.zeros([obs.shape[0], obs.shape[1], len(task.vocab)]), seed=0)
