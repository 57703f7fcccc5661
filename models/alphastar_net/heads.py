"""The autoregressive action heads: action type, delay and queued, pointers to units, location.

Each head reads the autoregressive embedding (the choices made so far), chooses its
argument and, where the supplement says so, adds an embedding of its choice for the
heads after it. Every head works in two modes over the same variables:

- sampling (`choice=None`): draws from the masked logits divided by `temperature`, with
  noise from `seed` (see `distributions`);
- teacher forcing (`choice` given): takes the given choice.

Either way it returns the choice, the masked (tempered) logits and the choice's
log-probability, which is therefore the same in both modes for the same choice. Where
the action does not use the argument (`used` False) the choice is -1, its
log-probability 0, and it leaves the embedding unchanged.
"""

from collections.abc import Sequence

import tensorflow as tf

import core
from core import utils
from models.alphastar_net import distributions
from models.alphastar_net.layers import GLU, FiLMResBlock, ResBlock

UNUSED = -1


def _choose(
    logits: tf.Tensor,
    choice: tf.Tensor | None,
    used: tf.Tensor,
    seed: tf.Tensor | None,
    stream: int,
) -> tuple[tf.Tensor, tf.Tensor]:
    """The choice (sampled when `choice` is None; -1 where not `used`) and its log-probability."""
    if choice is None:
        choice = distributions.sample(logits, seed, stream)
    choice = tf.where(used, tf.cast(choice, tf.int32), UNUSED)
    return choice, distributions.log_prob(logits, choice)


def _one_hot(choice: tf.Tensor, depth: int, dtype: tf.DType) -> tf.Tensor:
    """One-hot rows of `choice`; all zeros where it is -1."""
    return tf.one_hot(choice, depth, dtype=dtype)


class ActionTypeHead(core.Module):
    """Chooses the action type and starts the autoregressive embedding.

    logits = GLU(num_action_types)(ReLU(ResBlocks(Linear(width)(lstm_output))), scalar_context),
    unavailable types masked; then

      autoregressive_embedding = GLU(one_hot(action_type), scalar_context)
                                 + GLU(lstm_output, scalar_context)       (both to embedding_size)

    Args:
      num_action_types: the number of action types.
      width: width of the residual stack (AlphaStar: 256).
      num_resblocks: residual blocks (16).
      embedding_size: size of the autoregressive embedding (1024).
      name: module name.
    """

    def __init__(
        self,
        num_action_types: int,
        width: int = 256,
        num_resblocks: int = 16,
        embedding_size: int = 1024,
        name: str | None = None,
    ):
        super().__init__(name=name)
        self.num_action_types = utils.positive_int(self, num_action_types, "num_action_types")
        self.project = core.Linear(width, name="project")
        self.resblocks = [ResBlock(name=f"resblock_{i}") for i in range(num_resblocks)]
        self.logits = GLU(num_action_types, name="logits")
        self.embed_choice = GLU(embedding_size, name="embed_choice")
        self.embed_lstm = GLU(embedding_size, name="embed_lstm")

    def __call__(
        self,
        lstm_output: tf.Tensor,
        scalar_context: tf.Tensor,
        available: tf.Tensor,
        choice: tf.Tensor | None = None,
        temperature: float | tf.Tensor = 1.0,
        seed: tf.Tensor | None = None,
        stream: int = 0,
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        """Chooses among the `available` (bool [B, num_action_types]) action types.

        Returns:
          (action_type [B], logits [B, num_action_types], log_prob [B], autoregressive_embedding [B, E]).
        """
        x = self.project(lstm_output)
        for block in self.resblocks:
            x = block(x)
        logits = self.logits(tf.nn.relu(x), scalar_context)
        logits = distributions.mask_logits(logits, available, temperature)
        used = tf.ones(tf.shape(logits)[:1], tf.bool)
        choice, log_prob = _choose(logits, choice, used, seed, stream)
        chosen = _one_hot(choice, self.num_action_types, lstm_output.dtype)
        embedding = self.embed_choice(chosen, scalar_context) + self.embed_lstm(lstm_output, scalar_context)
        return choice, logits, log_prob, embedding


class ArgumentHead(core.Module):
    """A categorical argument read from the autoregressive embedding: the delay or the queued flag.

    logits = MLP(hidden_sizes + [num_choices])(embedding); the choice's one-hot goes
    through MLP(hidden_sizes + [embedding_size]) and is added to the embedding where the
    action uses the argument (AlphaStar: delay always, queued only for action types
    that can be queued).

    Args:
      num_choices: the number of values (AlphaStar: 128 delays, 2 for queued).
      hidden_sizes: the hidden layers of both MLPs ((256, 256)).
      name: module name.
    """

    def __init__(self, num_choices: int, hidden_sizes: Sequence[int] = (256, 256), name: str | None = None):
        super().__init__(name=name)
        self.num_choices = utils.positive_int(self, num_choices, "num_choices")
        self.hidden_sizes = tuple(hidden_sizes)
        self.logits = core.nets.MLP([*self.hidden_sizes, num_choices], name="logits")

    @core.once
    def _initialize(self, embedding: tf.Tensor) -> None:
        utils.check_rank(self, embedding, 2, what="embedding", layout="[batch, size]")
        self.embed = core.nets.MLP([*self.hidden_sizes, embedding.shape[-1]], name="embed")

    def __call__(
        self,
        embedding: tf.Tensor,
        used: tf.Tensor,
        choice: tf.Tensor | None = None,
        temperature: float | tf.Tensor = 1.0,
        seed: tf.Tensor | None = None,
        stream: int = 0,
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        """Chooses the argument for the actions where `used` (bool [B]) is True.

        Returns:
          (choice [B], logits [B, num_choices], log_prob [B], updated embedding [B, E]).
        """
        self._initialize(embedding)
        logits = distributions.mask_logits(self.logits(embedding), None, temperature)
        choice, log_prob = _choose(logits, choice, used, seed, stream)
        update = self.embed(_one_hot(choice, self.num_choices, embedding.dtype))
        embedding = embedding + update * tf.cast(used, embedding.dtype)[:, None]
        return choice, logits, log_prob, embedding


class PointerHead(core.Module):
    """Points at entities, one pick at a time: selected units (with end-of-selection) or the target unit.

    The keys are a per-entity linear map of the entity embeddings (the supplement's
    conv1d of 32), plus, with `end_of_selection`, one learned key that ends the
    selection. Each pick's query comes from an LSTM(key_size) whose input is
    Linear(key_size)(ReLU(Linear(hidden_size)(embedding))); the logits are the keys'
    dot products with the query. Padded entities are masked, and so is every entity
    already picked (no unit twice); end-of-selection is masked at the first pick (a
    selection is never empty) unless no entity can be picked at all. After each
    unit pick, Linear(embedding_size)(that unit's key) is added to the embedding (with
    `update_embedding`), so the next query knows what has been picked; the selection
    stops at end-of-selection or after `max_picks` picks.

    Args:
      max_picks: most picks (AlphaStar: 64 selected units; 1 target unit).
      end_of_selection: whether there is an end-of-selection key (index N, after the
        N entities).
      update_embedding: whether picks add to the embedding (the target-unit head, the
        last pointer, does not).
      key_size: size of the keys, queries and the query LSTM (32).
      hidden_size: the query's hidden layer (256).
      dtype: dtype of the query LSTM (its initial state).
      name: module name.
    """

    def __init__(
        self,
        max_picks: int,
        end_of_selection: bool = True,
        update_embedding: bool = True,
        key_size: int = 32,
        hidden_size: int = 256,
        dtype: tf.DType = tf.float32,
        name: str | None = None,
    ):
        super().__init__(name=name)
        self.max_picks = utils.positive_int(self, max_picks, "max_picks")
        self.end_of_selection = bool(end_of_selection)
        self.update_embedding = bool(update_embedding)
        self.key_size = utils.positive_int(self, key_size, "key_size")
        self.keys = core.Linear(key_size, name="keys")
        self.query_hidden = core.Linear(hidden_size, name="query_hidden")
        self.query_input = core.Linear(key_size, name="query_input")
        self.query = core.LSTM(key_size, dtype=dtype, name="query")
        self._dtype = tf.as_dtype(dtype)

    @core.once
    def _initialize(self, embedding: tf.Tensor) -> None:
        utils.check_rank(self, embedding, 2, what="embedding", layout="[batch, size]")
        if self.end_of_selection:
            init = core.initializers.TruncatedNormal(stddev=1.0 / self.key_size**0.5)
            self.end_key = tf.Variable(init([self.key_size], self._dtype), name="end_key")
        if self.update_embedding:
            self.embed = core.Linear(embedding.shape[-1], name="embed")

    def __call__(
        self,
        embedding: tf.Tensor,
        entity_embeddings: tf.Tensor,
        entity_mask: tf.Tensor,
        used: tf.Tensor,
        choice: tf.Tensor | None = None,
        temperature: float | tf.Tensor = 1.0,
        seed: tf.Tensor | None = None,
        stream: int = 0,
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        """Picks entities of `entity_embeddings` [B, N, D] (those where `entity_mask` [B, N] is True).

        Args:
          embedding: the autoregressive embedding [B, E].
          entity_embeddings: [B, N, D].
          entity_mask: bool [B, N].
          used: bool [B]; where False, nothing is picked.
          choice: for teacher forcing, int [B, max_picks]: entity indices, N for
            end-of-selection, -1 for no pick; picks after the first -1 or N are ignored.
          temperature, seed, stream: as for every head.

        Returns:
          (picks int32 [B, max_picks] (-1 after the end), logits [B, max_picks, K]
           with K = N + 1 with end-of-selection and N without, log_probs [B, max_picks],
           updated embedding [B, E]).
        """
        self._initialize(embedding)
        keys = self.keys(entity_embeddings)  # [B, N, key_size]
        batch, count = tf.shape(keys)[0], tf.shape(keys)[1]
        if self.end_of_selection:
            end_key = tf.broadcast_to(tf.cast(self.end_key, keys.dtype), [batch, 1, self.key_size])
            keys = tf.concat([keys, end_key], axis=1)
            none_selectable = ~tf.reduce_any(entity_mask, axis=1, keepdims=True)
        if choice is not None:
            choice = tf.cast(choice, tf.int32)

        def pick(i, embedding, state, active, picked):
            """Pick i (a Python int or a scalar tensor): (pick, logits, log_prob, embedding, state, active, picked)."""
            query_in = self.query_input(tf.nn.relu(self.query_hidden(embedding)))
            query, state = self.query(query_in, state)
            logits = tf.einsum("bkd,bd->bk", keys, query)
            mask = entity_mask & ~picked
            if self.end_of_selection:
                end_allowed = none_selectable | (i > 0)
                mask = tf.concat([mask, end_allowed], axis=1)
            logits = distributions.mask_logits(logits, mask, temperature)
            given = None
            if choice is not None:
                given = tf.gather(choice, i, axis=1)
                active = active & (given >= 0)
            choice_i, log_prob = _choose(logits, given, active, seed, stream + i)
            is_unit = active & (choice_i < count) if self.end_of_selection else active
            picked = picked | tf.one_hot(tf.where(is_unit, choice_i, count), count, on_value=True, off_value=False)
            if self.update_embedding:
                key = tf.gather(keys, tf.where(is_unit, choice_i, 0), batch_dims=1)
                embedding = embedding + self.embed(key) * tf.cast(is_unit, embedding.dtype)[:, None]
            # End-of-selection, or no pick, ends the selection.
            return choice_i, logits, log_prob, embedding, state, is_unit, picked

        # The first pick runs outside the loop: it creates the variables (which a loop
        # body cannot), and it is the one where end-of-selection is masked.
        first, logits, log_prob, embedding, state, active, picked = pick(
            0, embedding, self.query.initial_state(batch), used, tf.zeros_like(entity_mask)
        )
        if self.max_picks == 1:
            return first[:, None], logits[:, None], log_prob[:, None], embedding

        # The other picks in a symbolic loop, so the graph (and an XLA compile) holds one copy.
        def body(i, embedding, state, active, picked, picks, all_logits, log_probs):
            choice_i, logits_i, log_prob_i, embedding, state, active, picked = pick(i, embedding, state, active, picked)
            return (
                i + 1,
                embedding,
                state,
                active,
                picked,
                picks.write(i - 1, choice_i),
                all_logits.write(i - 1, logits_i),
                log_probs.write(i - 1, log_prob_i),
            )

        rest = self.max_picks - 1
        arrays = (
            tf.TensorArray(tf.int32, rest, element_shape=first.shape),
            tf.TensorArray(logits.dtype, rest, element_shape=logits.shape),
            tf.TensorArray(log_prob.dtype, rest, element_shape=log_prob.shape),
        )
        outputs = tf.while_loop(
            lambda i, *_: i < self.max_picks,
            body,
            (tf.constant(1), embedding, state, active, picked, *arrays),
            maximum_iterations=rest,
        )
        embedding, (picks, all_logits, log_probs) = outputs[1], outputs[5:]

        def join(first_value, array):
            stacked = array.stack()  # [max_picks - 1, B, ...]
            perm = [1, 0] + list(range(2, stacked.shape.rank))
            return tf.concat([first_value[:, None], tf.transpose(stacked, perm)], axis=1)

        return join(first, picks), join(logits, all_logits), join(log_prob, log_probs), embedding


class LocationHead(core.Module):
    """Points at a cell of the map: FiLM-gated residual blocks on the map skips, then upsampling.

    The autoregressive embedding is reshaped to [r, r, E / r^2] (r: the skips'
    resolution; AlphaStar: 1024 -> 16 x 16 x 4), concatenated with the last map skip and
    projected by a 1x1 convolution to the skips' channel count; each FiLM-gated residual
    block (conditioned on the embedding) then adds one map skip, the last skip first;
    transposed convolutions of kernel 4 and stride 2 (ReLU between) upsample to the
    location grid, the last one to a single channel: the logits, one per cell.
    Cells outside `location_mask` are masked.

    Args:
      num_resblocks: FiLM-gated blocks (AlphaStar: 4).
      upsample_channels: the transposed convolutions' channels, the last being 1
        (AlphaStar: 128, 64, 16, 1: 16 -> 256).
      name: module name.
    """

    def __init__(
        self, num_resblocks: int = 4, upsample_channels: Sequence[int] = (128, 64, 16, 1), name: str | None = None
    ):
        super().__init__(name=name)
        upsample_channels = tuple(upsample_channels)
        if not upsample_channels or upsample_channels[-1] != 1:
            raise ValueError(
                f"{utils.describe(self)}: upsample_channels must end with 1 (the logits), got {upsample_channels}"
            )
        self.resblocks = [FiLMResBlock(name=f"resblock_{i}") for i in range(num_resblocks)]
        self.upsample = [
            core.Conv2DTranspose(c, 4, stride=2, name=f"upsample_{i}") for i, c in enumerate(upsample_channels)
        ]

    @core.once
    def _initialize(self, embedding: tf.Tensor, map_skips: Sequence[tf.Tensor]) -> None:
        utils.check_rank(self, embedding, 2, what="embedding", layout="[batch, size]")
        resolution, channels = map_skips[-1].shape[1], map_skips[-1].shape[-1]
        size = embedding.shape[-1]
        if size % (resolution * resolution):
            raise ValueError(
                f"{utils.describe(self)}: the embedding size {size} must be a multiple of the map skips' "
                f"{resolution} x {resolution} cells, to be reshaped onto them"
            )
        self._embedding_shape = [-1, resolution, resolution, size // (resolution * resolution)]
        self.project = core.Conv2D(channels, 1, name="project")

    def __call__(
        self,
        embedding: tf.Tensor,
        map_skips: Sequence[tf.Tensor],
        location_mask: tf.Tensor,
        used: tf.Tensor,
        choice: tf.Tensor | None = None,
        temperature: float | tf.Tensor = 1.0,
        seed: tf.Tensor | None = None,
        stream: int = 0,
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Chooses a cell where `location_mask` (bool [B, G, G]) allows.

        Returns:
          (target_location [B] (y * G + x), logits [B, G * G], log_prob [B]).
        """
        self._initialize(embedding, map_skips)
        x = tf.concat([tf.reshape(embedding, self._embedding_shape), map_skips[-1]], axis=-1)
        x = tf.nn.relu(self.project(x))
        for i, block in enumerate(self.resblocks):
            x = block(x, embedding)
            if i < len(map_skips):
                x = x + map_skips[-1 - i]
        for i, conv in enumerate(self.upsample):
            x = conv(x if i == 0 else tf.nn.relu(x))
        if location_mask.shape[1] is not None and x.shape[1] is not None and location_mask.shape[1] != x.shape[1]:
            raise ValueError(
                f"{utils.describe(self)}: the upsampled map is {x.shape[1]} x {x.shape[2]} but location_mask is "
                f"{location_mask.shape[1]} x {location_mask.shape[2]}; the map size must be the skips' resolution "
                f"times 2 ** len(upsample_channels)"
            )
        grid = x.shape[1] if x.shape[1] is not None else tf.shape(x)[1]
        logits = tf.reshape(x, [-1, grid * grid])
        mask = tf.reshape(location_mask, [-1, grid * grid])
        logits = distributions.mask_logits(logits, mask, temperature)
        choice, log_prob = _choose(logits, choice, used, seed, stream)
        return choice, logits, log_prob


class BaselineHead(core.Module):
    """The value estimate: MLP(hidden_sizes + [1]) of the LSTM output, a scalar per example.

    AlphaStar's baselines also see the opponent's observations (during training only);
    this one sees what the policy sees.

    Args:
      hidden_sizes: the MLP's hidden layers.
      name: module name.
    """

    def __init__(self, hidden_sizes: Sequence[int] = (256, 256), name: str | None = None):
        super().__init__(name=name)
        self.mlp = core.nets.MLP([*hidden_sizes, 1], name="mlp")

    def __call__(self, lstm_output: tf.Tensor) -> tf.Tensor:
        """[B, D] -> [B]."""
        return self.mlp(lstm_output)[:, 0]
