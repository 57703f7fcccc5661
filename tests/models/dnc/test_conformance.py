"""The DNC's modules through the shared conformance checks (tests/conformance/suite.py).

Each forward unrolls 3 steps (time-major) from the initial state and returns the
outputs and the last read words, not the memory state: where two slots' usages nearly
tie, rounding can rank them either way and the state comes out permuted across slots
(`test_dnc.py` checks the state up to that permutation); what the model computes does
not depend on it.
"""

from typing import Any

import tensorflow as tf

import core
from models.dnc import access, dnc
from tests.conformance import registry
from tests.conformance.registry import Entry, normal
from tests.conformance.suite import *  # noqa: F403 (the shared checks, run over ENTRIES)

CSORDAS = dict(masking=True, deallocation=True, link_sharpening=True, strength_op="oneplus")


def _dnc(**access_config) -> dnc.DNC:
    config = dict(memory_size=6, word_size=4, num_reads=2, num_writes=1)
    config.update(access_config)
    return dnc.DNC(config, dict(hidden_size=8), output_size=3, clip_value=20)


def _unroll_dnc(model: dnc.DNC, x: tf.Tensor) -> Any:
    outputs, state = core.dynamic_unroll(model, x, model.initial_state(tf.shape(x)[1]))
    return outputs, state.access_output


def _unroll_access(model: access.MemoryAccess, x: tf.Tensor) -> Any:
    read_words, _ = core.dynamic_unroll(model, x, model.initial_state(tf.shape(x)[1]))
    return read_words


ENTRIES = [
    Entry("DNC", dnc.DNC, lambda: _dnc(), normal(3, 2, 5), forward=lambda m, x, t: _unroll_dnc(m, x[0])),
    Entry(
        "DNC_csordas",
        dnc.DNC,
        lambda: _dnc(num_writes=2, **CSORDAS),
        normal(3, 2, 5),
        forward=lambda m, x, t: _unroll_dnc(m, x[0]),
    ),
    Entry(
        "MemoryAccess",
        access.MemoryAccess,
        lambda: access.MemoryAccess(memory_size=6, word_size=4, num_reads=2, num_writes=2, **CSORDAS),
        normal(3, 2, 7),
        forward=lambda m, x, t: _unroll_access(m, x[0]),
        skip={"mirrored": "DNC_csordas holds a MemoryAccess of this configuration and runs the mirrored check"},
    ),
]
PUBLIC_MODULES = registry.module_classes_in("models.dnc")
