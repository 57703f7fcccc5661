"""The AlphaStar network's modules through the shared conformance checks (tests/conformance/suite.py).

Heads and the network run in both modes: inference samples with a fixed seed (the
sampling noise is a hash of the seed, so the actions agree in every execution mode),
training teacher-forces actions drawn from the inputs' masks. Floating outputs come
first, so the multi-replica check compares them.
"""

import numpy as np
import tensorflow as tf

from models.alphastar_net import encoders, heads, layers, network, specs
from tests.conformance import registry
from tests.conformance.registry import Entry
from tests.conformance.suite import *  # noqa: F403 (the shared checks, run over ENTRIES)

SEED = (3, 4)
INTERFACE = specs.tiny_interface()
BATCH = 2


def _seed():
    return tf.constant(SEED, tf.int32)


def _mode(is_training, choice):
    """Teacher forcing while training, sampling with the fixed seed otherwise."""
    return dict(choice=choice) if is_training else dict(seed=_seed(), temperature=0.8)


def _head(call):
    """A forward of a head returning (choice, logits, ...), with the choice moved last."""

    def forward(module, inputs, is_training):
        choice, *floats = call(module, inputs, is_training)
        return (*floats, choice)

    return forward


def _net_inputs(rng):
    observation = specs.random_observation(INTERFACE, rng, BATCH)
    return observation, specs.random_actions(INTERFACE, observation, rng)


def _net_forward(model, inputs, is_training):
    observation, actions = inputs
    state = model.initial_state(tf.shape(observation["available_action_types"])[0])
    if is_training:
        out, _ = model(observation, state, actions)
    else:
        out, _ = model(observation, state, seed=_seed(), temperature=0.8)
    return out.logits, out.log_probs, out.baseline, out.actions


def _head_inputs(rng, *shapes, choices=4, picks=None):
    """Float inputs of `shapes`, a used mask [BATCH], and choices [BATCH] (or [BATCH, picks])."""
    floats = tuple(rng.normal(size=s).astype(np.float32) for s in shapes)
    used = rng.uniform(size=[BATCH]) < 0.7
    size = [BATCH] if picks is None else [BATCH, picks]
    return (*floats, used, rng.randint(0, choices, size=size).astype(np.int32))


def _action_type_inputs(rng):
    available = rng.uniform(size=[BATCH, 4]) < 0.5
    available[:, 1] = True
    return (
        rng.normal(size=[BATCH, 6]).astype(np.float32),
        rng.normal(size=[BATCH, 3]).astype(np.float32),
        available,
        np.full([BATCH], 1, np.int32),
    )


def _pointer_inputs(rng):
    embedding, entities, used, _ = _head_inputs(rng, [BATCH, 8], [BATCH, 5, 6])
    mask = rng.uniform(size=[BATCH, 5]) < 0.7
    mask[:, :2] = True
    picks = np.array([[1, 0, 5], [0, 5, -1]], np.int32)  # entity 5 of 5 ends the selection
    return embedding, entities, mask, used, picks


def _location_inputs(rng):
    embedding, skip, used, _ = _head_inputs(rng, [BATCH, 16], [BATCH, 2, 2, 4])
    mask = rng.uniform(size=[BATCH, 8, 8]) < 0.8
    mask[:, 0, 0] = True
    choice = np.zeros([BATCH], np.int32)  # cell (0, 0), never masked
    return embedding, skip, mask, used, choice


# Each part's multi-device, SavedModel and XLA checks run on the AlphaStarNet entry, which
# holds every part (in both modes): one compile of the network instead of one per part
# keeps the suite's time down. Each part still runs eagerly and in tf.function, through
# checkpoints, deepcopy and the variable-name check.
IN_THE_NETWORK = "run on the AlphaStarNet entry, which holds this part"
PART = {"xla": IN_THE_NETWORK, "saved_model": IN_THE_NETWORK, "mirrored": IN_THE_NETWORK}

ENTRIES = [
    Entry(
        "GLU",
        layers.GLU,
        lambda: layers.GLU(3),
        lambda rng: (rng.normal(size=[2, 4]).astype(np.float32), rng.normal(size=[2, 5]).astype(np.float32)),
        skip=PART,
    ),
    Entry("ResBlock", layers.ResBlock, lambda: layers.ResBlock(), registry.normal(2, 3, 4), skip=PART),
    Entry("ConvResBlock", layers.ConvResBlock, lambda: layers.ConvResBlock(), registry.normal(2, 3, 3, 2), skip=PART),
    Entry(
        "FiLMResBlock",
        layers.FiLMResBlock,
        lambda: layers.FiLMResBlock(),
        lambda rng: (rng.normal(size=[2, 3, 3, 2]).astype(np.float32), rng.normal(size=[2, 4]).astype(np.float32)),
        skip=PART,
    ),
    Entry(
        "EntityEncoder",
        encoders.EntityEncoder,
        lambda: encoders.EntityEncoder(width=6, num_layers=2, num_heads=2, key_size=3, mlp_size=8, embedding_size=5),
        lambda rng: (rng.normal(size=[2, 4, 3]).astype(np.float32), rng.uniform(size=[2, 4]) < 0.6),
        skip=PART,
    ),
    Entry(
        "SpatialEncoder",
        encoders.SpatialEncoder,
        lambda: encoders.SpatialEncoder(
            map_size=8,
            scatter_channels=2,
            input_channels=3,
            downsample_channels=(4,),
            num_resblocks=1,
            embedding_size=5,
        ),
        lambda rng: (
            rng.normal(size=[2, 4, 4, 2]).astype(np.float32),
            rng.normal(size=[2, 3, 6]).astype(np.float32),
            rng.randint(0, 8, size=[2, 3, 2]).astype(np.int32),
            rng.uniform(size=[2, 3]) < 0.6,
        ),
        skip=PART,
    ),
    Entry(
        "ScalarEncoder",
        encoders.ScalarEncoder,
        lambda: encoders.ScalarEncoder(embedding_size=3, context_names=("b",)),
        lambda rng: (
            {"a": rng.normal(size=[2, 2]).astype(np.float32), "b": rng.normal(size=[2, 4]).astype(np.float32)},
        ),
        skip=PART,
    ),
    Entry(
        "ActionTypeHead",
        heads.ActionTypeHead,
        lambda: heads.ActionTypeHead(4, width=5, num_resblocks=2, embedding_size=7),
        _action_type_inputs,
        forward=_head(lambda m, x, t: m(*x[:3], **_mode(t, x[3]))),
        skip=PART,
    ),
    Entry(
        "ArgumentHead",
        heads.ArgumentHead,
        lambda: heads.ArgumentHead(4, hidden_sizes=(5,)),
        lambda rng: _head_inputs(rng, [BATCH, 6]),
        forward=_head(lambda m, x, t: m(x[0], x[1], **_mode(t, x[2]))),
        skip=PART,
    ),
    Entry(
        "PointerHead",
        heads.PointerHead,
        lambda: heads.PointerHead(3, key_size=4, hidden_size=6),
        _pointer_inputs,
        forward=_head(lambda m, x, t: m(*x[:4], **_mode(t, x[4]))),
        skip=PART,
    ),
    Entry(
        "LocationHead",
        heads.LocationHead,
        lambda: heads.LocationHead(num_resblocks=2, upsample_channels=(3, 1)),
        _location_inputs,
        forward=_head(lambda m, x, t: m(x[0], [x[1]], *x[2:4], **_mode(t, x[4]))),
        skip=PART,
    ),
    Entry(
        "BaselineHead",
        heads.BaselineHead,
        lambda: heads.BaselineHead(hidden_sizes=(4,)),
        registry.normal(2, 3),
        skip=PART,
    ),
    Entry(
        "AlphaStarNet",
        network.AlphaStarNet,
        lambda: network.AlphaStarNet(INTERFACE, network.tiny()),
        _net_inputs,
        forward=_net_forward,
        skip={
            "mirrored": "slow for this suite (a traced multi-replica step of the whole network takes half a minute of "
            "CPU); test_train.py::test_replicas_train_as_one_device_on_the_whole_batch (-m slow) trains it on the "
            "shared logical CPUs against one device"
        },
    ),
]
PUBLIC_MODULES = registry.module_classes_in("models.alphastar_net")
