"""GQN: `models.gqn.GQN`, its ELBO trained with Adam, and generation from the prior.

The train step is the one GQN trains with: the negative ELBO of the query view given
the context views (the representation network over every context view, then the L
ConvDRAW steps with the inference core), its gradients and an Adam update. The forward
step is inference: the scene representation, then the query view drawn from the prior
(the generation core only). The noise of the samples is an input, drawn once.

`quick` is the small training configuration (`models/gqn/configs/small.gin`); `paper`
the paper's: 64x64 frames, the tower representation (256 channels), 12 unshared steps
of 128-channel ConvLSTMs, batch 36 with 5 context views. The side-by-side comparison
with torch-gqn (`benchmarks/peers/torch_gqn.py`) also runs torch-gqn's own default,
`--config '{"batch": 8, "views": 3, "steps": 8, "shared": true, "representation": "pool"}'`
on the paper preset.
"""

import tensorflow as tf

from benchmarks import cases, registry
from models.gqn import gqn

# The likelihood's pixel standard deviation: the paper's value at the start of training.
SIGMA = 2.0


def build(
    dtype: tf.DType,
    batch: int,
    views: int,
    image: int,
    steps: int,
    shared: bool,
    representation: str,
    r_channels: int,
    hidden: int,
    z: int,
) -> registry.Case:
    model = gqn.GQN(
        representation,
        num_steps=steps,
        share_cores=shared,
        image_size=image,
        representation_channels=r_channels,
        hidden_channels=hidden,
        z_channels=z,
        dtype=dtype,
    )

    def make_inputs(seed: int) -> dict[str, tf.Tensor]:
        def uniform(shape, offset):
            return tf.cast(tf.random.stateless_uniform(shape, [seed, offset]), dtype)

        return {
            "context_frames": uniform([batch, views, image, image, 3], 1),
            "context_cameras": cases.normal(seed, [batch, views, 7], dtype),
            "query_camera": cases.normal(seed + 1, [batch, 7], dtype),
            "query_frame": uniform([batch, image, image, 3], 2),
            "noise": cases.normal(seed + 2, [batch, *model.generator.noise_shape], dtype),
        }

    def forward(x: dict[str, tf.Tensor]) -> tf.Tensor:
        r = model.represent(x["context_frames"], x["context_cameras"])
        return model.generate(r, x["query_camera"], x["noise"])

    def elbo(x: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return model.elbo(
            x["context_frames"], x["context_cameras"], x["query_camera"], x["query_frame"], SIGMA, x["noise"]
        )

    return cases.core_case(
        model,
        batch,
        make_inputs,
        forward,
        train_forward=elbo,
        loss=lambda terms: tf.reduce_mean(terms["loss"]),
    )


registry.register(
    registry.Workload(
        name="gqn",
        description="models.gqn GQN: ELBO + Adam; generation from the prior",
        sizes={
            "smoke": dict(
                batch=2, views=2, image=8, steps=2, shared=False, representation="tower", r_channels=4, hidden=3, z=2
            ),
            "quick": dict(
                batch=16,
                views=3,
                image=32,
                steps=6,
                shared=False,
                representation="tower",
                r_channels=64,
                hidden=32,
                z=3,
            ),
            "paper": dict(
                batch=36,
                views=5,
                image=64,
                steps=12,
                shared=False,
                representation="tower",
                r_channels=256,
                hidden=128,
                z=3,
            ),
        },
        build=build,
        recurrent=True,
    )
)
