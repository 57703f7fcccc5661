"""AlphaStar: one step of `models.alphastar_net.AlphaStarNet` on spec-shaped observations.

The forward step samples an action (temperature 0.8, a fixed seed), as an actor does;
the train step teacher-forces given actions through every head, as behaviour cloning
does (the harness's loss, the mean square of the outputs, on the log-probabilities and
the baseline). `quick` is the `mini` configuration on the mini game's interface (24
entity slots, 16 x 16 maps) at batch 16; `paper` is the `full` configuration (the
supplement's sizes) on AlphaStar's interface (512 entity slots, 128 x 128 planes, a
256 x 256 location grid, 64 selected units, 128 delays) at batch 8.
"""

import numpy as np
import tensorflow as tf

from benchmarks import cases, registry
from models.alphastar_net import environment, network, specs

INTERFACES = {
    "tiny": specs.tiny_interface,
    "mini": lambda: environment.GameSettings().interface(),
    "full": lambda: environment.full_settings().interface(),
}


def _inputs(interface: specs.Interface, batch: int, dtype: tf.DType):
    def make(seed: int):
        rng = np.random.RandomState(seed)
        observation = specs.random_observation(interface, rng, batch)
        actions = specs.random_actions(interface, observation, rng)
        cast = lambda x: tf.constant(x, dtype) if x.dtype == np.float32 else tf.constant(x)  # noqa: E731
        return (
            tf.nest.map_structure(cast, observation),
            tf.nest.map_structure(tf.constant, actions),
            tf.constant([seed, 0], tf.int32),
        )

    return make


def build(dtype: tf.DType, batch: int, config: str, game: str) -> registry.Case:
    interface = INTERFACES[game]()
    net = network.AlphaStarNet(interface, network.CONFIGS[config](), dtype=dtype)

    def forward(inputs):
        observation, _, seed = inputs
        out, _ = net(observation, net.initial_state(batch), seed=seed, temperature=0.8)
        return out.logits, out.log_probs, out.baseline, out.actions

    def train_forward(inputs):
        observation, actions, _ = inputs
        out, _ = net(observation, net.initial_state(batch), actions)
        return out.log_probs, out.baseline

    return cases.core_case(net, batch, _inputs(interface, batch, dtype), forward=forward, train_forward=train_forward)


registry.register(
    registry.Workload(
        name="alphastar",
        description="models.alphastar_net AlphaStarNet, one step: sampling / teacher-forced",
        sizes={
            "smoke": dict(batch=2, config="tiny", game="tiny"),
            "quick": dict(batch=16, config="mini", game="mini"),
            "paper": dict(batch=8, config="full", game="full"),
        },
        build=build,
    )
)
