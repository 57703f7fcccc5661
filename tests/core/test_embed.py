"""Embed: parity with Sonnet, gradients, construction options, errors."""

import numpy as np
import pytest
import sonnet as snt
import tensorflow as tf

import core
from tests.core.parity import assert_parity


@pytest.mark.parametrize("densify", [False, True])
@pytest.mark.parametrize("shape", [(4,), (2, 3)])
def test_matches_sonnet(densify, shape, rng):
    ids = rng.randint(0, 7, size=shape).astype(np.int32)
    assert_parity(core.Embed(7, 3, densify_gradients=densify), snt.Embed(7, 3, densify_gradients=densify), [ids])


def test_table_gradients_match_sonnet(rng):
    ids = tf.constant(rng.randint(0, 7, size=(5,)))
    for densify in (False, True):
        ours, theirs = core.Embed(7, 3, densify_gradients=densify), snt.Embed(7, 3, densify_gradients=densify)
        core.utils.port_variables(theirs, ours)
        grads = []
        for module in (ours, theirs):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(tf.sin(module(ids)))
            grads.append(tape.gradient(loss, module.embeddings))
        assert type(grads[0]) is type(grads[1])
        assert isinstance(grads[0], tf.Tensor if densify else tf.IndexedSlices)
        np.testing.assert_allclose(tf.convert_to_tensor(grads[0]), tf.convert_to_tensor(grads[1]), rtol=1e-6)


def test_lookup_and_construction_options():
    table = np.arange(12.0).reshape(4, 3)
    emb = core.Embed(existing_vocab=table, dtype=tf.float64, trainable=False)
    assert (emb.vocab_size, emb.embed_dim) == (4, 3)
    np.testing.assert_array_equal(emb(np.array([[3, 0]])).numpy(), table[[[3, 0]]])
    np.testing.assert_array_equal(emb(tf.constant([1], tf.uint8)).numpy(), table[[1]])  # narrow ids are widened
    assert emb.embeddings.dtype == tf.float64 and not emb.trainable_variables
    assert core.Embed(100).embed_dim == snt.Embed(100).embed_dim == 19  # round(6 * 100 ** 0.25)
    big = core.Embed(1000, 64)
    assert big.embeddings.numpy().std() == pytest.approx(0.8796, rel=0.02)  # truncated normal, stddev 1
    assert big.embeddings.name == "embed/embeddings:0"


def test_bad_inputs():
    emb = core.Embed(5, 2, name="tokens")
    with pytest.raises(TypeError, match=r"Embed 'tokens': inputs must be integer ids, got dtype float32"):
        emb(tf.constant([1.0]))
    with pytest.raises(ValueError, match="give vocab_size or existing_vocab"):
        core.Embed()
    with pytest.raises(
        ValueError, match="existing_vocab fixes the table, so vocab_size, embed_dim and initializer must not be given"
    ):
        core.Embed(3, existing_vocab=np.zeros([3, 2]))
    with pytest.raises(ValueError, match=r"existing_vocab must be \[vocab_size, embed_dim\], got shape \(3,\)"):
        core.Embed(existing_vocab=np.zeros([3]))
    with pytest.raises(ValueError, match="embed_dim must be a positive int, got 0"):
        core.Embed(3, 0)
    with pytest.raises(TypeError, match="dtype must be floating point, got int32"):
        core.Embed(3, 2, dtype=tf.int32)


def test_numpy_integer_sizes():
    emb = core.Embed(np.int64(10), np.int32(3))
    assert (emb.vocab_size, emb.embed_dim) == (10, 3)
    assert type(emb.vocab_size) is int and type(emb.embed_dim) is int
    assert emb(tf.constant([[1, 9]])).shape == (1, 2, 3)
    assert core.Embed(np.uint16(100)).embed_dim == 19
    assert core.embed.embedding_dim(np.int64(100)) == 19
    with pytest.raises(ValueError, match="vocab_size must be a positive int, got True"):
        core.Embed(True)


@pytest.mark.parametrize("mode", ["eager", "function"])
@pytest.mark.parametrize(
    "ids, bad",
    [
        ([1, 5], [(5, [1])]),
        ([[-1, 0], [2, 7]], [(-1, [0, 0]), (7, [1, 1])]),
        (np.array([9, 2, -3], np.int64), [(9, [0]), (-3, [2])]),
        (np.array([7], np.uint8), [(7, [0])]),
    ],
)
def test_out_of_range_ids_name_the_module_the_vocabulary_and_the_ids(mode, ids, bad):
    emb = core.Embed(5, 2, name="tokens")
    lookup = emb if mode == "eager" else tf.function(emb)
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        lookup(tf.constant(ids))
    message = str(error.value.message)
    expected = "ids must lie in [0, vocab_size) = [0, 5), got"
    if mode == "eager":
        listed = ", ".join(f"{v} at {p}" for v, p in bad)
        assert f"Embed 'tokens': {expected} {len(bad)} outside it: {listed}" in message
    else:  # Assert prints each item of its data in brackets
        values = " ".join(str(v) for v, _ in bad)
        positions = "".join(str(p).replace(",", "") for _, p in bad)  # [n, rank] prints as [[0 0][1 1]]
        assert (
            f"[Embed tokens: {expected}] [{len(bad)}] [outside it; the first:] [{values}] [at] [{positions}]" in message
        )
    # Ids at both ends of the vocabulary, and no ids at all, pass.
    np.testing.assert_array_equal(lookup(tf.constant([0, 4])).numpy(), emb.embeddings.numpy()[[0, 4]])
    assert lookup(tf.zeros([2, 0], tf.int32)).shape == (2, 0, 2)


@pytest.mark.parametrize("mode", ["eager", "function"])
def test_an_out_of_range_error_lists_the_first_ten_ids(mode):
    emb = core.Embed(3, 2, name="tokens")
    lookup = emb if mode == "eager" else tf.function(emb)
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        lookup(tf.range(-12, 3))  # 12 negative ids, then 0, 1, 2
    message = str(error.value.message)
    if mode == "eager":
        assert "got 12 outside it: -12 at [0], -11 at [1]" in message
        assert "-3 at [9], and 2 more" in message and "-2" not in message
    else:
        assert "[12] [outside it; the first:] [-12 -11 -10 -9 -8 -7 -6 -5 -4 -3] [at]" in message


def test_out_of_range_ids_under_xla_are_clamped():
    # What the docstring promises: no error under XLA, the nearest valid row instead.
    table = np.arange(10.0, dtype=np.float32).reshape(5, 2)
    emb = core.Embed(existing_vocab=table)
    lookup = tf.function(emb, jit_compile=True)
    np.testing.assert_array_equal(lookup(tf.constant([7, -1, 2])).numpy(), table[[4, 0, 2]])
