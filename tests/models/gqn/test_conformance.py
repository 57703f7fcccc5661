"""GQN's modules through the shared conformance checks (tests/conformance/suite.py).

Tiny sizes (8x8 images, so 2x2 cores, 2 drawing steps). The noise of the posterior and
prior samples is an input, so every forward is deterministic. "GQN_pool_shared" runs
all the forward methods on the same variables (elbo, generate, reconstruct); the
entries return the ELBO per pixel, not in nats, to keep the squared outputs of the
mirrored check's loss moderate.

The multi-replica checks trace the model once per replica, which costs tens of seconds
for a whole GQN; they run on "GQN_pool_shared", whose modules (representation network,
cores, prior, posterior, observation) are those of every other entry but ConvDRAW's
error read, which holds no state of its own.
"""

import numpy as np
import tensorflow as tf

from models.gqn import convdraw, gqn, representation
from tests.conformance import registry
from tests.conformance.registry import Entry
from tests.conformance.suite import *  # noqa: F403 (the shared checks, run over ENTRIES)

B, K, S, STEPS, Z = 2, 2, 8, 2, 2
PIXELS = S * S * 3


def _gqn(kind: str, share: bool) -> gqn.GQN:
    return gqn.GQN(kind, STEPS, share, S, representation_channels=4, hidden_channels=3, z_channels=Z)


def _scene(rng: np.random.RandomState):
    return (
        rng.uniform(size=[B, K, S, S, 3]).astype(np.float32),
        rng.normal(size=[B, K, 7]).astype(np.float32),
        rng.normal(size=[B, 7]).astype(np.float32),
        rng.uniform(size=[B, S, S, 3]).astype(np.float32),
        rng.normal(size=[B, STEPS, S // 4, S // 4, Z]).astype(np.float32),
    )


def _gqn_elbo(model: gqn.GQN, x, is_training: bool):
    terms = model.elbo(*x[:4], 0.7, x[4])
    return terms["loss"] / PIXELS, terms["kl_per_step"], terms["mean"]


def _gqn_methods(model: gqn.GQN, x, is_training: bool):
    frames, cameras, query_camera, query, noise = x
    sample = model.generate(model.represent(frames, cameras), query_camera, noise)
    return (*_gqn_elbo(model, x, is_training), sample, model.reconstruct(*x[:4]))


def _images(rng: np.random.RandomState):
    return rng.uniform(size=[B, S, S, 3]).astype(np.float32), rng.normal(size=[B, STEPS, 2, 2, Z]).astype(np.float32)


def _draw_forward(model, x, is_training: bool):
    images, noise = x
    terms = model.elbo(images, 0.7, noise)
    return terms["loss"] / PIXELS, terms["mean"], model.generate(B, noise), model.reconstruct(images)


def _generator_forward(model: convdraw.Generator, x, is_training: bool):
    images, vector, spatial, noise = x
    terms = model.elbo(images, 0.7, noise, vector, spatial)
    return terms["loss"] / PIXELS, terms["mean"], model.generate(B, noise, vector, spatial)


def _core_step(model: convdraw.GenerationCore, x, is_training: bool):
    state = model(x[0], model.initial_state(tf.shape(x[0])[0]))
    state = model.step(x[1], model.condition(None, x[2], tf.shape(x[0])[0]), state)
    return state.lstm.hidden, state.canvas


def _inference_step(model: convdraw.InferenceCore, x, is_training: bool):
    image, conditioning, hidden, canvas = x
    batch = tf.shape(image)[0]
    first, state = model(image, conditioning, hidden, canvas, model.initial_state(batch))
    gates = model.condition(image, conditioning[:, 0, 0, :1], conditioning[..., 1:], batch)
    return first, model.step(gates, hidden, canvas, state)[0]


def _view(rng: np.random.RandomState):
    return rng.uniform(size=[B, S, S, 3]).astype(np.float32), rng.normal(size=[B, 7]).astype(np.float32)


COVERED = "the Generator runs under MirroredStrategy in GQN_pool_shared's checks"
MIRRORED = {"mirrored": COVERED}

ENTRIES = [
    Entry("GQN_tower", gqn.GQN, lambda: _gqn("tower", False), _scene, forward=_gqn_elbo, skip=MIRRORED, rtol=1e-4),
    Entry("GQN_pool_shared", gqn.GQN, lambda: _gqn("pool", True), _scene, forward=_gqn_methods, rtol=1e-4),
    Entry(
        "ConvDRAW",
        gqn.ConvDRAW,
        lambda: gqn.ConvDRAW(S, STEPS, hidden_channels=3, z_channels=Z),
        _images,
        forward=_draw_forward,
        skip=MIRRORED,
        rtol=1e-4,
    ),
    Entry(
        "Generator_conditioned",
        convdraw.Generator,
        lambda: convdraw.Generator(
            S, STEPS, True, vector_channels=1, spatial_channels=2, hidden_channels=3, z_channels=Z
        ),
        lambda rng: (
            rng.uniform(size=[B, S, S, 3]).astype(np.float32),
            rng.normal(size=[B, 1]).astype(np.float32),
            rng.normal(size=[B, 2, 2, 2]).astype(np.float32),
            rng.normal(size=[B, STEPS, 2, 2, Z]).astype(np.float32),
        ),
        forward=_generator_forward,
        skip=MIRRORED,
        rtol=1e-4,
    ),
    Entry(
        "GenerationCore",
        convdraw.GenerationCore,
        lambda: convdraw.GenerationCore(2, 0, 2, 1, 4, 2),
        lambda rng: (
            rng.normal(size=[B, 2, 2, 3]).astype(np.float32),
            rng.normal(size=[B, 2, 2, 1]).astype(np.float32),
            rng.normal(size=[B, 2, 2, 2]).astype(np.float32),
        ),
        forward=_core_step,
    ),
    Entry(
        "InferenceCore",
        convdraw.InferenceCore,
        lambda: convdraw.InferenceCore(2, 3, 1, 1, 4, 3, canvas_channels=4),
        lambda rng: (
            rng.uniform(size=[B, S, S, 3]).astype(np.float32),
            rng.normal(size=[B, 2, 2, 2]).astype(np.float32),
            rng.normal(size=[B, 2, 2, 4]).astype(np.float32),
            rng.normal(size=[B, S, S, 4]).astype(np.float32),
        ),
        forward=_inference_step,
    ),
    Entry("Tower", representation.Tower, lambda: representation.Tower(4), _view, forward=lambda m, x, t: m(*x)),
    Entry("Pool", representation.Pool, lambda: representation.Pool(4), _view, forward=lambda m, x, t: m(*x)),
]
PUBLIC_MODULES = registry.module_classes_in("models.gqn")
