"""Test set-up shared by the whole suite.

The CPU is split into four logical devices before TensorFlow initialises, so that
multi-replica tests can run a real MirroredStrategy on one machine. Single-device code
runs on the first of them, as usual.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from core import distribute  # noqa: E402

NUM_REPLICAS = 4
REPLICA_DEVICES = distribute.logical_cpus(NUM_REPLICAS)


def pytest_generate_tests(metafunc):
    """Runs each shared conformance check over the `ENTRIES` of the module it is in."""
    entries = getattr(metafunc.module, "ENTRIES", None)
    if "entry" in metafunc.fixturenames and entries is not None:
        metafunc.parametrize("entry", entries, ids=[e.name for e in entries])


@pytest.fixture(scope="session")
def mirrored():
    """The MirroredStrategy over the four logical CPUs, one per test process.

    One instance only: strategies in one process number their collective ops alike, and
    a second instance reusing those numbers with other shapes aborts all collectives.
    """
    return tf.distribute.MirroredStrategy(REPLICA_DEVICES)


@pytest.fixture
def rng():
    """A NumPy generator with a fixed seed, fresh for each test."""
    return np.random.RandomState(0)
