"""The three encoders: entities (a transformer), the map (a ResNet with scattered entities), scalars.

Sizes and structure follow the AlphaStar supplement (Vinyals et al., Nature 2019); the
defaults are its sizes. Every encoder takes a batch [B, ...]; fold time into the batch
first to encode a sequence.
"""

from collections.abc import Mapping, Sequence

import tensorflow as tf

import core
from core import utils
from models.alphastar_net.layers import ConvResBlock


def masked_mean(x: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """The mean of `x` [B, N, D] over the N rows where `mask` [B, N] is True (zeros for none)."""
    weights = tf.cast(mask, x.dtype)[..., None]
    count = tf.maximum(tf.reduce_sum(weights, axis=1), tf.ones([], x.dtype))
    return tf.reduce_sum(x * weights, axis=1) / count


class EntityEncoder(core.Module):
    """A transformer over the entity set, with padding masked out of the attention.

    Each entity's features are embedded to `width`, then `num_layers` pre-normalised
    layers each add self-attention (`core.MultiHeadAttention`, `num_heads` heads of
    `key_size`, projected back to `width`: the supplement's per-head projections summed)
    and an MLP (`mlp_size` hidden). Padded entities are never attended to. Returns

      entity_embeddings = ReLU(Linear(embedding_size)(ReLU(x)))   one per entity, [B, N, embedding_size]
      embedded_entity   = ReLU(Linear(embedding_size)(mean of x over the real entities))   [B, embedding_size]

    Args:
      width: the transformer's width (AlphaStar: 256).
      num_layers: transformer layers (3).
      num_heads: attention heads (2).
      key_size: size of each head's keys, queries and values (128).
      mlp_size: hidden size of each layer's MLP (1024).
      embedding_size: size of both outputs (256).
      name: module name.
    """

    def __init__(
        self,
        width: int = 256,
        num_layers: int = 3,
        num_heads: int = 2,
        key_size: int = 128,
        mlp_size: int = 1024,
        embedding_size: int = 256,
        name: str | None = None,
    ):
        super().__init__(name=name)
        width = utils.positive_int(self, width, "width")
        num_layers = utils.positive_int(self, num_layers, "num_layers")
        self.embed = core.Linear(width, name="embed")
        self.attention = [
            core.MultiHeadAttention(num_heads, key_size, model_size=width, name=f"attention_{i}")
            for i in range(num_layers)
        ]
        self.attention_norm = [
            core.LayerNorm(-1, create_scale=True, create_offset=True, name=f"attention_norm_{i}")
            for i in range(num_layers)
        ]
        self.mlp = [core.nets.MLP([mlp_size, width], name=f"mlp_{i}") for i in range(num_layers)]
        self.mlp_norm = [
            core.LayerNorm(-1, create_scale=True, create_offset=True, name=f"mlp_norm_{i}") for i in range(num_layers)
        ]
        self.entity_output = core.Linear(embedding_size, name="entity_output")
        self.pooled_output = core.Linear(embedding_size, name="pooled_output")

    def __call__(self, features: tf.Tensor, mask: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Encodes `features` [B, N, F] of the entities where `mask` [B, N] (bool) is True.

        Returns:
          (entity_embeddings [B, N, embedding_size], embedded_entity [B, embedding_size]).
        """
        utils.check_rank(self, features, 3, what="features", layout="[batch, entities, features]")
        utils.check_rank(self, mask, 2, what="mask", layout="[batch, entities]")
        if tf.as_dtype(mask.dtype) != tf.bool:
            raise TypeError(f"{utils.describe(self)}: mask must be bool (True = a real entity), got {mask.dtype}")
        x = self.embed(features)
        for attention, attention_norm, mlp, mlp_norm in zip(
            self.attention, self.attention_norm, self.mlp, self.mlp_norm
        ):
            x = x + attention(attention_norm(x), key_mask=mask)
            x = x + mlp(mlp_norm(x))
        entity_embeddings = tf.nn.relu(self.entity_output(tf.nn.relu(x)))
        embedded_entity = tf.nn.relu(self.pooled_output(masked_mean(x, mask)))
        return entity_embeddings, embedded_entity


def scatter_entities(values: tf.Tensor, positions: tf.Tensor, mask: tf.Tensor, size: int, map_size: int) -> tf.Tensor:
    """Sums each entity's vector into its cell of a [B, size, size, D] map.

    Args:
      values: [B, N, D], one vector per entity.
      positions: int [B, N, 2], (x, y) cells of the map_size x map_size grid; clipped
        to it.
      mask: bool [B, N]; False rows (padding) add nothing.
      size: height and width of the output map.
      map_size: the grid `positions` refer to; cell (x, y) lands on
        (x * size // map_size, y * size // map_size).
    """
    shape = tf.shape(values)
    batch, count = shape[0], shape[1]
    cells = tf.clip_by_value(tf.cast(positions, tf.int32), 0, map_size - 1) * size // map_size
    rows = tf.broadcast_to(tf.range(batch)[:, None], [batch, count])
    indices = tf.stack([rows, cells[..., 1], cells[..., 0]], axis=-1)  # (b, y, x)
    updates = values * tf.cast(mask, values.dtype)[..., None]
    grid = tf.zeros(tf.stack([batch, size, size, shape[2]]), values.dtype)
    return tf.tensor_scatter_nd_add(grid, tf.reshape(indices, [-1, 3]), tf.reshape(updates, [-1, values.shape[-1]]))


class SpatialEncoder(core.Module):
    """A convolutional encoder of the map, with the entities' embeddings scattered onto it.

    The entity embeddings go through a per-entity linear map (the supplement's conv1d of
    32) and a ReLU and are summed into the cells the entities occupy; with the feature
    planes they pass through a 1x1 convolution, then stride-2 convolutions of kernel 4
    (ReLU before each) down to the skip resolution, then residual blocks. Returns

      map_skips         the output of each residual block (or the downsampled map when
                        there are none): [B, r, r, downsample_channels[-1]] each, for the
                        location head;
      embedded_spatial  ReLU(Linear(embedding_size)(the last map, flattened)), [B, embedding_size].

    Args:
      map_size: the location grid the entity positions refer to.
      scatter_channels: channels of the scattered entity embeddings (AlphaStar: 32).
      input_channels: channels of the first 1x1 convolution (32).
      downsample_channels: one stride-2 convolution per entry ((64, 128, 128): 128 -> 16).
      num_resblocks: residual blocks at the skip resolution (4).
      embedding_size: size of embedded_spatial (256).
      name: module name.
    """

    def __init__(
        self,
        map_size: int,
        scatter_channels: int = 32,
        input_channels: int = 32,
        downsample_channels: Sequence[int] = (64, 128, 128),
        num_resblocks: int = 4,
        embedding_size: int = 256,
        name: str | None = None,
    ):
        super().__init__(name=name)
        self.map_size = utils.positive_int(self, map_size, "map_size")
        if num_resblocks < 0:
            raise ValueError(f"{utils.describe(self)}: num_resblocks must be >= 0, got {num_resblocks}")
        self.scatter = core.Linear(scatter_channels, name="scatter")
        self.project = core.Conv2D(input_channels, 1, name="project")
        self.downsample = [
            core.Conv2D(c, 4, stride=2, name=f"downsample_{i}") for i, c in enumerate(downsample_channels)
        ]
        self.resblocks = [ConvResBlock(name=f"resblock_{i}") for i in range(num_resblocks)]
        self.flatten = core.Flatten()
        self.output = core.Linear(embedding_size, name="output")

    def __call__(
        self, planes: tf.Tensor, entity_embeddings: tf.Tensor, positions: tf.Tensor, mask: tf.Tensor
    ) -> tuple[list[tf.Tensor], tf.Tensor]:
        """Encodes `planes` [B, S, S, C] with the entities of `entity_embeddings` [B, N, E] at `positions`.

        Returns:
          (map_skips, embedded_spatial), as in the class docstring.
        """
        utils.check_rank(self, planes, 4, what="planes", layout="[batch, height, width, channels]")
        utils.check_rank(self, positions, 3, what="positions", layout="[batch, entities, 2]")
        size = planes.shape[1]
        if size is None or planes.shape[2] != size:
            raise ValueError(f"{utils.describe(self)}: planes must be square of known size, got shape {planes.shape}")
        scattered = scatter_entities(tf.nn.relu(self.scatter(entity_embeddings)), positions, mask, size, self.map_size)
        x = self.project(tf.concat([planes, scattered], axis=-1))
        for conv in self.downsample:
            x = conv(tf.nn.relu(x))
        skips = []
        for block in self.resblocks:
            x = block(x)
            skips.append(x)
        if not skips:
            skips.append(x)
        embedded_spatial = tf.nn.relu(self.output(self.flatten(tf.nn.relu(x))))
        return skips, embedded_spatial


class ScalarEncoder(core.Module):
    """Embeds each global feature vector and gathers the embeddings the heads gate on.

    Each named input goes through its own Linear(embedding_size) and a ReLU. Returns

      embedded_scalar  the concatenation of every embedding, inputs in name order;
      scalar_context   the concatenation of the embeddings of `context_names` (AlphaStar
                       gates its action-type logits and autoregressive embedding on the
                       available actions, the race and the like this way).

    Args:
      embedding_size: size of each input's embedding.
      context_names: which inputs make the context; at least one.
      name: module name.
    """

    def __init__(self, embedding_size: int = 64, context_names: Sequence[str] = ("available_action_types",), name=None):
        super().__init__(name=name)
        self.embedding_size = utils.positive_int(self, embedding_size, "embedding_size")
        if isinstance(context_names, str) or not context_names:
            raise ValueError(
                f"{utils.describe(self)}: context_names must name one input or more, got {context_names!r}"
            )
        self.context_names = tuple(context_names)
        self.embeddings = {}

    @core.once
    def _initialize(self, inputs: Mapping[str, tf.Tensor]) -> None:
        missing = [n for n in self.context_names if n not in inputs]
        if missing:
            raise ValueError(
                f"{utils.describe(self)}: context input(s) {missing} not among the inputs {sorted(inputs)}"
            )
        self._names = sorted(inputs)
        # Filled in place: the dict made in the constructor is the one a checkpoint restore waits on.
        for name in self._names:
            self.embeddings[name] = core.Linear(self.embedding_size, name=name)

    def __call__(self, inputs: Mapping[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        """Encodes `inputs`, a dict of float [B, size] tensors.

        Returns:
          (embedded_scalar [B, len(inputs) * embedding_size],
           scalar_context [B, len(context_names) * embedding_size]).
        """
        self._initialize(inputs)
        if sorted(inputs) != self._names:
            raise ValueError(f"{utils.describe(self)}: expected inputs {self._names}, got {sorted(inputs)}")
        embedded = {name: tf.nn.relu(self.embeddings[name](inputs[name])) for name in self._names}
        return (
            tf.concat([embedded[n] for n in self._names], axis=-1),
            tf.concat([embedded[n] for n in self.context_names], axis=-1),
        )
