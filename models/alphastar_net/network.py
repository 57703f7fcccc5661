"""The agent network: encoders, a deep LSTM core, autoregressive heads; sampling and teacher forcing.

Vinyals et al., "Grandmaster level in StarCraft II using multi-agent reinforcement
learning", Nature 575 (2019), supplementary "detailed architecture". One step:

1. the entity transformer, the spatial ResNet (entity embeddings scattered onto the
   map) and the scalar encoder embed the observation;
2. concat(embedded_entity, embedded_spatial, embedded_scalar) enters a `core.DeepRNN` of
   layer-normalised LSTMs;
3. the heads choose, in order, the action type, delay, queued, selected units, target
   unit and target location, threading the autoregressive embedding through them;
   arguments the action type does not use are -1 and count for nothing;
4. a baseline head estimates the value.

`AlphaStarNet` is one module with two modes over the same variables: sampling (no
actions given; `temperature` and `seed`) and teacher forcing (`actions` given). Both
return an `AgentOutput` whose `actions`, `logits` and `log_probs` are dicts keyed like
the action spec; a sampled action's teacher-forced log-probabilities equal those
computed while sampling it.
"""

import collections
import dataclasses
from collections.abc import Sequence
from typing import Any

import tensorflow as tf

import core
from core import utils
from models.alphastar_net import specs
from models.alphastar_net.encoders import EntityEncoder, ScalarEncoder, SpatialEncoder
from models.alphastar_net.heads import ActionTypeHead, ArgumentHead, BaselineHead, LocationHead, PointerHead

AgentOutput = collections.namedtuple("AgentOutput", ["actions", "logits", "log_probs", "baseline"])
AgentOutput.__doc__ = """What the network returns for a step (or, from `unroll`, a sequence of steps).

Attributes:
  actions: dict keyed like the action spec, int32 [B] ([B, max_selected] for selected_units).
  logits: the masked logits each choice was made from, divided by the temperature:
    [B, num_choices] ([B, max_selected, num_entities + 1] for selected_units).
  log_probs: each choice's log-probability, [B] ([B, max_selected]); 0 for unused
    arguments and picks.
  baseline: the value estimate [B].
"""

AVAILABLE_ACTION_TYPES = "available_action_types"

# Sampling streams: one per head, and one per pick of the pointers.
_ACTION_TYPE_STREAM, _DELAY_STREAM, _QUEUED_STREAM, _POINTER_STREAM = 0, 1, 2, 3


@dataclasses.dataclass(frozen=True)
class Config:
    """The network's sizes. The defaults are the AlphaStar supplement's (`full()`); `mini()` trains on a CPU.

    Attributes:
      entity_width, transformer_layers, transformer_heads, transformer_key_size,
        transformer_mlp_size, entity_embedding_size: the entity encoder (`EntityEncoder`).
      scatter_channels, spatial_input_channels, downsample_channels, spatial_resblocks,
        spatial_embedding_size: the spatial encoder (`SpatialEncoder`).
      scalar_embedding_size, scalar_context: the scalar encoder; `scalar_context` names
        the inputs the heads gate on ("available_action_types" is always an input).
      lstm_layers, lstm_size: the core, a stack of layer-normalised LSTMs.
      action_type_width, action_type_resblocks: the action-type head.
      autoregressive_size: size of the autoregressive embedding; a multiple of the
        map skips' cell count, onto which the location head reshapes it.
      argument_hidden: hidden layers of the delay and queued heads.
      pointer_key_size, pointer_hidden: the selected-units and target-unit heads.
      location_resblocks, upsample_channels: the location head.
      baseline_hidden: hidden layers of the baseline head.
    """

    entity_width: int = 256
    transformer_layers: int = 3
    transformer_heads: int = 2
    transformer_key_size: int = 128
    transformer_mlp_size: int = 1024
    entity_embedding_size: int = 256
    scatter_channels: int = 32
    spatial_input_channels: int = 32
    downsample_channels: tuple[int, ...] = (64, 128, 128)
    spatial_resblocks: int = 4
    spatial_embedding_size: int = 256
    scalar_embedding_size: int = 64
    scalar_context: tuple[str, ...] = (AVAILABLE_ACTION_TYPES,)
    lstm_layers: int = 3
    lstm_size: int = 384
    action_type_width: int = 256
    action_type_resblocks: int = 16
    autoregressive_size: int = 1024
    argument_hidden: tuple[int, ...] = (256, 256)
    pointer_key_size: int = 32
    pointer_hidden: int = 256
    location_resblocks: int = 4
    upsample_channels: tuple[int, ...] = (128, 64, 16, 1)
    baseline_hidden: tuple[int, ...] = (256, 256)

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, list):
                object.__setattr__(self, field.name, tuple(value))


def full() -> Config:
    """The AlphaStar supplement's sizes."""
    return Config()


def mini() -> Config:
    """Small enough to train on a CPU in minutes: every part present, every size cut."""
    return Config(
        entity_width=32,
        transformer_layers=1,
        transformer_heads=2,
        transformer_key_size=16,
        transformer_mlp_size=64,
        entity_embedding_size=32,
        scatter_channels=8,
        spatial_input_channels=8,
        downsample_channels=(16, 32),
        spatial_resblocks=2,
        spatial_embedding_size=64,
        scalar_embedding_size=16,
        lstm_layers=1,
        lstm_size=96,
        action_type_width=64,
        action_type_resblocks=2,
        autoregressive_size=128,
        argument_hidden=(64,),
        pointer_key_size=16,
        pointer_hidden=64,
        location_resblocks=2,
        upsample_channels=(16, 1),
        baseline_hidden=(64,),
    )


def tiny() -> Config:
    """The smallest sizes that keep every part, for tests and smoke runs: one block of each
    kind, one stride-2 convolution down and one transposed convolution up (so the location
    grid is the planes' size), an autoregressive embedding of 16 (a 2 x 2 skip map of 4
    channels, or 4 x 4 of 1)."""
    return Config(
        entity_width=8,
        transformer_layers=1,
        transformer_heads=2,
        transformer_key_size=4,
        transformer_mlp_size=8,
        entity_embedding_size=8,
        scatter_channels=4,
        spatial_input_channels=4,
        downsample_channels=(4,),
        spatial_resblocks=1,
        spatial_embedding_size=8,
        scalar_embedding_size=4,
        lstm_layers=1,
        lstm_size=8,
        action_type_width=8,
        action_type_resblocks=1,
        autoregressive_size=16,
        argument_hidden=(8,),
        pointer_key_size=4,
        pointer_hidden=8,
        location_resblocks=1,
        upsample_channels=(1,),
        baseline_hidden=(8,),
    )


CONFIGS = {"full": full, "mini": mini, "tiny": tiny}


def _fold(x: tf.Tensor) -> tf.Tensor:
    """[T, B, ...] -> [T * B, ...]."""
    shape = x.shape
    if shape[:2].is_fully_defined():
        return tf.reshape(x, [shape[0] * shape[1], *shape[2:]])
    return tf.reshape(x, tf.concat([[-1], tf.shape(x)[2:]], 0))


def _unfold(x: tf.Tensor, steps: Any, batch: Any) -> tf.Tensor:
    """[T * B, ...] -> [T, B, ...]."""
    return tf.reshape(x, tf.concat([tf.stack([steps, batch]), tf.shape(x)[1:]], 0))


class AlphaStarNet(core.Module):
    """The AlphaStar-style agent network for one `specs.Interface` (see the module docstring).

    Args:
      interface: the observation and action sizes and the argument table.
      config: the network's sizes; `full()` (the paper's) by default.
      dtype: dtype of the parameters, of the recurrent state and of the observations'
        float inputs.
      name: module name.

    Raises:
      ValueError: when the config does not fit the interface (the map sizes do not
        chain, the embedding cannot be reshaped onto the map skips, a context input is
        unknown).
    """

    def __init__(
        self,
        interface: specs.Interface,
        config: Config | None = None,
        dtype: tf.DType = tf.float32,
        name: str | None = None,
    ):
        super().__init__(name=name)
        config = config or full()
        self.interface = interface
        self.config = config
        self._dtype = tf.as_dtype(dtype)
        self._check_config()
        c = config
        self.entity_encoder = EntityEncoder(
            c.entity_width,
            c.transformer_layers,
            c.transformer_heads,
            c.transformer_key_size,
            c.transformer_mlp_size,
            c.entity_embedding_size,
        )
        self.spatial_encoder = SpatialEncoder(
            interface.map_size,
            c.scatter_channels,
            c.spatial_input_channels,
            c.downsample_channels,
            c.spatial_resblocks,
            c.spatial_embedding_size,
        )
        self.scalar_encoder = ScalarEncoder(c.scalar_embedding_size, c.scalar_context)
        self.lstm = core.DeepRNN(
            [core.LSTM(c.lstm_size, dtype=dtype, layer_norm=True, name=f"lstm_{i}") for i in range(c.lstm_layers)],
            name="lstm",
        )
        self.action_type_head = ActionTypeHead(
            interface.num_action_types, c.action_type_width, c.action_type_resblocks, c.autoregressive_size
        )
        self.delay_head = ArgumentHead(interface.num_delays, c.argument_hidden, name="delay_head")
        self.queued_head = ArgumentHead(2, c.argument_hidden, name="queued_head")
        self.selected_units_head = PointerHead(
            interface.max_selected,
            end_of_selection=True,
            update_embedding=True,
            key_size=c.pointer_key_size,
            hidden_size=c.pointer_hidden,
            dtype=dtype,
            name="selected_units_head",
        )
        self.target_unit_head = PointerHead(
            1,
            end_of_selection=False,
            update_embedding=False,
            key_size=c.pointer_key_size,
            hidden_size=c.pointer_hidden,
            dtype=dtype,
            name="target_unit_head",
        )
        self.location_head = LocationHead(c.location_resblocks, c.upsample_channels)
        self.baseline_head = BaselineHead(c.baseline_hidden)

    def _check_config(self) -> None:
        c, i = self.config, self.interface
        who = utils.describe(self)
        down, up = len(c.downsample_channels), len(c.upsample_channels)
        if i.spatial_size % (1 << down):
            raise ValueError(
                f"{who}: the {down} stride-2 convolutions of downsample_channels need a spatial_size divisible "
                f"by {1 << down}, got {i.spatial_size}"
            )
        resolution = i.spatial_size >> down
        if resolution << up != i.map_size:
            raise ValueError(
                f"{who}: the location head upsamples the {resolution} x {resolution} map skips {up} times "
                f"(upsample_channels) to {resolution << up} x {resolution << up}, but map_size is {i.map_size}"
            )
        if c.autoregressive_size % (resolution * resolution):
            raise ValueError(
                f"{who}: autoregressive_size {c.autoregressive_size} must be a multiple of the map skips' "
                f"{resolution} x {resolution} cells"
            )
        names = {n for n, _ in i.scalar_features}
        if AVAILABLE_ACTION_TYPES in names:
            raise ValueError(f"{who}: {AVAILABLE_ACTION_TYPES!r} is an observation of its own, not a scalar feature")
        unknown = [n for n in c.scalar_context if n not in names | {AVAILABLE_ACTION_TYPES}]
        if unknown:
            raise ValueError(
                f"{who}: scalar_context names {unknown}, which are not scalar features ({sorted(names)}) "
                f"nor {AVAILABLE_ACTION_TYPES!r}"
            )

    # --- public API ------------------------------------------------------------------

    def initial_state(self, batch_size: int | tf.Tensor) -> Any:
        """The core's state before the first step of `batch_size` episodes."""
        return self.lstm.initial_state(batch_size)

    def __call__(
        self,
        observation: Any,
        prev_state: Any,
        actions: dict[str, tf.Tensor] | None = None,
        *,
        temperature: float | tf.Tensor = 1.0,
        seed: tf.Tensor | None = None,
    ) -> tuple[AgentOutput, Any]:
        """One step for a batch of observations [B, ...].

        Args:
          observation: a nest shaped like `interface.observation_spec()` with a leading
            batch axis.
          prev_state: the core's state (`initial_state(B)` at an episode's start).
          actions: for teacher forcing, a dict shaped like the action spec with the
            batch axis; None to sample.
          temperature: divides every head's logits (AlphaStar plays at 0.8).
          seed: int [2], the sampling noise (see `distributions`); the same seed gives
            the same actions in every execution mode. Drawn at random when None.

        Returns:
          (AgentOutput, next_state).
        """
        observation, actions = self._check_inputs(observation, actions, 1)
        core_input, encoded = self._encode(observation)
        lstm_output, next_state = self.lstm(core_input, prev_state)
        return self._heads(lstm_output, encoded, observation, actions, temperature, seed), next_state

    def unroll(
        self,
        observations: Any,
        initial_state: Any,
        actions: dict[str, tf.Tensor] | None = None,
        *,
        temperature: float | tf.Tensor = 1.0,
        seed: tf.Tensor | None = None,
    ) -> tuple[AgentOutput, Any]:
        """Runs a time-major sequence [T, B, ...] of observations (and actions, to teacher-force).

        The encoders and heads run once on the T * B steps folded together; only the
        core runs step by step (`core.dynamic_unroll`). Arguments as in `__call__`,
        with a leading time axis; the outputs have it too.

        Returns:
          (AgentOutput [T, B, ...], the core's final state).
        """
        observations, actions = self._check_inputs(observations, actions, 2)
        leading = tf.shape(observations[AVAILABLE_ACTION_TYPES])
        steps, batch = leading[0], leading[1]
        flat_observations = tf.nest.map_structure(_fold, observations)
        flat_actions = None if actions is None else tf.nest.map_structure(_fold, actions)
        core_input, encoded = self._encode(flat_observations)
        core_input = _unfold(core_input, steps, batch)
        lstm_output, final_state = core.dynamic_unroll(self.lstm, core_input, initial_state)
        outputs = self._heads(_fold(lstm_output), encoded, flat_observations, flat_actions, temperature, seed)
        return tf.nest.map_structure(lambda x: _unfold(x, steps, batch), outputs), final_state

    # --- the pieces --------------------------------------------------------------------

    def _encode(self, observation: Any) -> tuple[tf.Tensor, tuple]:
        """The core's input and what the heads need from the encoders, for a batch [B, ...]."""
        entities = observation["entities"]
        entity_embeddings, embedded_entity = self.entity_encoder(entities["features"], entities["mask"])
        map_skips, embedded_spatial = self.spatial_encoder(
            observation["spatial"], entity_embeddings, entities["positions"], entities["mask"]
        )
        scalars = dict(observation["scalars"])
        scalars[AVAILABLE_ACTION_TYPES] = tf.cast(observation[AVAILABLE_ACTION_TYPES], self._dtype)
        embedded_scalar, scalar_context = self.scalar_encoder(scalars)
        core_input = tf.concat([embedded_entity, embedded_spatial, embedded_scalar], axis=-1)
        return core_input, (entity_embeddings, map_skips, scalar_context)

    def _heads(self, lstm_output, encoded, observation, actions, temperature, seed) -> AgentOutput:
        entity_embeddings, map_skips, scalar_context = encoded
        entity_mask = observation["entities"]["mask"]
        if actions is None and seed is None:
            seed = tf.random.uniform([2], 0, 2**31 - 1, tf.int32)

        def given(key):
            return None if actions is None else actions[key]

        common = dict(temperature=temperature, seed=seed)
        action_type, type_logits, type_log_prob, embedding = self.action_type_head(
            lstm_output,
            scalar_context,
            observation[AVAILABLE_ACTION_TYPES],
            given("action_type"),
            stream=_ACTION_TYPE_STREAM,
            **common,
        )
        used = specs.argument_masks(self.interface, action_type)
        delay, delay_logits, delay_log_prob, embedding = self.delay_head(
            embedding, used["delay"], given("delay"), stream=_DELAY_STREAM, **common
        )
        queued, queued_logits, queued_log_prob, embedding = self.queued_head(
            embedding, used["queued"], given("queued"), stream=_QUEUED_STREAM, **common
        )
        units, units_logits, units_log_prob, embedding = self.selected_units_head(
            embedding,
            entity_embeddings,
            entity_mask,
            used["selected_units"],
            given("selected_units"),
            stream=_POINTER_STREAM,
            **common,
        )
        target = given("target_unit")
        target, target_logits, target_log_prob, _ = self.target_unit_head(
            embedding,
            entity_embeddings,
            entity_mask,
            used["target_unit"],
            None if target is None else target[:, None],
            stream=_POINTER_STREAM + self.interface.max_selected,
            **common,
        )
        location, location_logits, location_log_prob = self.location_head(
            embedding,
            map_skips,
            observation["location_mask"],
            used["target_location"],
            given("target_location"),
            stream=_POINTER_STREAM + self.interface.max_selected + 1,
            **common,
        )
        return AgentOutput(
            actions={
                "action_type": action_type,
                "delay": delay,
                "queued": queued,
                "selected_units": units,
                "target_unit": target[:, 0],
                "target_location": location,
            },
            logits={
                "action_type": type_logits,
                "delay": delay_logits,
                "queued": queued_logits,
                "selected_units": units_logits,
                "target_unit": target_logits[:, 0],
                "target_location": location_logits,
            },
            log_probs={
                "action_type": type_log_prob,
                "delay": delay_log_prob,
                "queued": queued_log_prob,
                "selected_units": units_log_prob,
                "target_unit": target_log_prob[:, 0],
                "target_location": location_log_prob,
            },
            baseline=self.baseline_head(lstm_output),
        )

    def _check_inputs(self, observation: Any, actions: Any, leading: int) -> tuple[Any, Any]:
        """The observation and actions as tensors; ValueError/TypeError naming what does not fit the specs."""
        layout = "[B, ...]" if leading == 1 else "[T, B, ...]"
        for what, value, spec in [
            ("observation", observation, self.interface.observation_spec(self._dtype)),
            ("actions", actions, self.interface.action_spec()),
        ]:
            if value is None:
                continue
            try:
                tf.nest.assert_same_structure(value, spec, check_types=False)
            except (ValueError, TypeError) as e:
                raise ValueError(
                    f"{utils.describe(self)}: the {what} does not have the structure of the interface's spec "
                    f"({e}); expected {tf.nest.map_structure(lambda s: s.shape.as_list(), spec)}"
                ) from None
            for path, x, s in zip([p for p, _ in _paths(spec)], tf.nest.flatten(value), tf.nest.flatten(spec)):
                shape = tf.TensorShape(getattr(x, "shape", None))
                if shape.rank != leading + s.shape.rank or not shape[leading:].is_compatible_with(s.shape):
                    raise ValueError(
                        f"{utils.describe(self)}: {what} {path} must be {layout} with trailing shape "
                        f"{s.shape.as_list()}, got shape {shape}"
                    )
                if tf.as_dtype(x.dtype) != s.dtype:
                    raise TypeError(
                        f"{utils.describe(self)}: {what} {path} must be {s.dtype.name}, got {tf.as_dtype(x.dtype).name}"
                    )
        as_tensors = lambda nest: None if nest is None else tf.nest.map_structure(tf.convert_to_tensor, nest)  # noqa: E731
        return as_tensors(observation), as_tensors(actions)


def _paths(structure: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """(path, leaf) pairs of a nest of dicts, in `tf.nest.flatten` order."""
    if isinstance(structure, dict):
        return [pair for key in sorted(structure) for pair in _paths(structure[key], f"{prefix}/{key}".lstrip("/"))]
    return [(prefix, structure)]


def count_parameters(module: tf.Module) -> int:
    """The number of trainable scalars in `module`."""
    return int(sum(v.shape.num_elements() for v in module.trainable_variables))


def policy_parameters(net: AlphaStarNet) -> int:
    """The trainable scalars an agent needs to act: all but the baseline head's."""
    return count_parameters(net) - count_parameters(net.baseline_head)


def zero_observation(interface: specs.Interface, leading: Sequence[int], dtype: tf.DType = tf.float32) -> Any:
    """An all-zero observation (every entity padding, every action type and cell unavailable) [*leading, ...]."""
    return tf.nest.map_structure(lambda s: tf.zeros([*leading, *s.shape], s.dtype), interface.observation_spec(dtype))
