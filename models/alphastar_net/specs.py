"""What the network sees and does: nested observation and action specs, and the argument table.

An observation (one step of one game; batches add leading axes) is a nest of tensors:

    {
      "entities": {
        "features":  float [num_entities, entity_features]   one row per entity slot,
        "positions": int32 [num_entities, 2]                 (x, y) cells of the map_size grid,
        "mask":      bool  [num_entities]                    True for a real entity, False for padding,
      },
      "spatial": float [spatial_size, spatial_size, spatial_channels]   the map's feature planes,
      "scalars": {name: float [size], ...}                               global features, one vector per name,
      "available_action_types": bool [num_action_types],
      "location_mask": bool [map_size, map_size]                          cells a location may target,
    }

An action is a nest of int32 tensors, one per argument, in the order the heads choose them:

    {
      "action_type":     int32 []               in [0, num_action_types),
      "delay":           int32 []               in [0, num_delays),
      "queued":          int32 []               0 or 1,
      "selected_units":  int32 [max_selected]   entity indices in [0, num_entities], num_entities being
                                                end-of-selection; -1 after the end,
      "target_unit":     int32 []               an entity index,
      "target_location": int32 []               a cell, flattened as y * map_size + x,
    }

The argument table (`Interface.argument_table`) says which of the five arguments after the
action type each action type uses; an argument an action does not use holds -1, has
log-probability 0 and adds nothing to a loss or an entropy.
"""

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow as tf

# The action's keys in the order the heads choose them.
ACTION_TYPE = "action_type"
ARGUMENTS = ("delay", "queued", "selected_units", "target_unit", "target_location")
ACTION_KEYS = (ACTION_TYPE,) + ARGUMENTS

# Marks an argument (or a pick of selected_units) that is not used.
UNUSED = -1


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"Interface.{name} must be a positive integer, got {value!r}")
    return int(value)


@dataclasses.dataclass(frozen=True)
class Interface:
    """The sizes of a game's observations and actions, and which arguments each action type uses.

    The network is built for one interface (its heads' output sizes come from it); the
    environment produces observations and takes actions of the same interface.

    Attributes:
      num_entities: entity slots per observation (AlphaStar: 512); unused slots are padding.
      entity_features: size of each entity's feature vector.
      spatial_size: height and width of the feature planes.
      spatial_channels: number of feature planes.
      map_size: height and width of the location grid (AlphaStar: 256, twice the planes').
        An entity at cell (x, y) lands on plane cell (x * spatial_size // map_size, ...).
      scalar_features: (name, size) of each global feature vector, in order.
      argument_table: one row per action type, one bool per argument in `ARGUMENTS`
        order: whether that action type uses it.
      num_delays: number of delay choices (AlphaStar: 128).
      max_selected: most units one action selects (AlphaStar: 64).
      action_type_names: optional names of the action types, for logs.
    """

    num_entities: int
    entity_features: int
    spatial_size: int
    spatial_channels: int
    map_size: int
    scalar_features: tuple[tuple[str, int], ...]
    argument_table: tuple[tuple[bool, ...], ...]
    num_delays: int
    max_selected: int
    action_type_names: tuple[str, ...] | None = None

    def __post_init__(self):
        for name in ("num_entities", "entity_features", "spatial_size", "spatial_channels", "map_size"):
            object.__setattr__(self, name, _positive(name, getattr(self, name)))
        object.__setattr__(self, "num_delays", _positive("num_delays", self.num_delays))
        object.__setattr__(self, "max_selected", _positive("max_selected", self.max_selected))
        scalars = self.scalar_features
        if isinstance(scalars, Mapping):
            scalars = tuple(scalars.items())
        scalars = tuple((str(n), _positive(f"scalar_features[{n!r}]", s)) for n, s in scalars)
        if len({n for n, _ in scalars}) != len(scalars):
            raise ValueError(f"Interface.scalar_features has repeated names: {[n for n, _ in scalars]}")
        object.__setattr__(self, "scalar_features", scalars)
        table = np.asarray(self.argument_table)
        if table.ndim != 2 or table.shape[0] < 1 or table.shape[1] != len(ARGUMENTS) or table.dtype != bool:
            raise ValueError(
                f"Interface.argument_table must be bools [num_action_types, {len(ARGUMENTS)}] (one column per "
                f"argument in {ARGUMENTS}), got {np.asarray(self.argument_table).tolist()}"
            )
        object.__setattr__(self, "argument_table", tuple(tuple(bool(b) for b in row) for row in table))
        names = self.action_type_names
        if names is not None:
            names = tuple(str(n) for n in names)
            if len(names) != table.shape[0]:
                raise ValueError(
                    f"Interface.action_type_names has {len(names)} names for {table.shape[0]} action types"
                )
            object.__setattr__(self, "action_type_names", names)

    @property
    def num_action_types(self) -> int:
        return len(self.argument_table)

    @property
    def num_locations(self) -> int:
        return self.map_size * self.map_size

    def table(self) -> np.ndarray:
        """The argument table as a bool array [num_action_types, len(ARGUMENTS)]."""
        return np.asarray(self.argument_table, bool)

    def uses(self, argument: str) -> np.ndarray:
        """Which action types use `argument`: bool [num_action_types]."""
        return self.table()[:, ARGUMENTS.index(argument)]

    def observation_spec(self, dtype: tf.DType = tf.float32) -> dict[str, Any]:
        """The nest of `tf.TensorSpec`s of one observation (no batch axis); floats in `dtype`."""
        n = self.num_entities
        return {
            "entities": {
                "features": tf.TensorSpec([n, self.entity_features], dtype, "entities/features"),
                "positions": tf.TensorSpec([n, 2], tf.int32, "entities/positions"),
                "mask": tf.TensorSpec([n], tf.bool, "entities/mask"),
            },
            "spatial": tf.TensorSpec([self.spatial_size, self.spatial_size, self.spatial_channels], dtype, "spatial"),
            "scalars": {name: tf.TensorSpec([size], dtype, f"scalars/{name}") for name, size in self.scalar_features},
            "available_action_types": tf.TensorSpec([self.num_action_types], tf.bool, "available_action_types"),
            "location_mask": tf.TensorSpec([self.map_size, self.map_size], tf.bool, "location_mask"),
        }

    def action_spec(self) -> dict[str, tf.TensorSpec]:
        """The nest of `tf.TensorSpec`s of one action (no batch axis), keys in `ACTION_KEYS` order."""
        spec = {key: tf.TensorSpec([], tf.int32, key) for key in ACTION_KEYS}
        spec["selected_units"] = tf.TensorSpec([self.max_selected], tf.int32, "selected_units")
        return spec

    def num_choices(self) -> dict[str, int]:
        """The number of logits of each argument (per pick for selected_units)."""
        return {
            "action_type": self.num_action_types,
            "delay": self.num_delays,
            "queued": 2,
            "selected_units": self.num_entities + 1,
            "target_unit": self.num_entities,
            "target_location": self.num_locations,
        }


def tiny_interface() -> Interface:
    """A small interface for tests and smoke runs (fits `network.tiny()`): 5 entity slots of 3
    features, 4 x 4 maps, one scalar feature, 3 action types, 3 delays, 3 selections."""
    return Interface(
        num_entities=5,
        entity_features=3,
        spatial_size=4,
        spatial_channels=2,
        map_size=4,
        scalar_features=(("stats", 2),),
        argument_table=(
            (True, False, False, False, False),
            (True, True, True, True, False),
            (True, False, True, False, True),
        ),
        num_delays=3,
        max_selected=3,
    )


def with_batch(spec: Any, *leading: int | None) -> Any:
    """`spec` (a nest of TensorSpecs) with leading axes added, e.g. `with_batch(spec, T, B)`."""
    return tf.nest.map_structure(lambda s: tf.TensorSpec([*leading, *s.shape], s.dtype, s.name), spec)


def argument_masks(interface: Interface, action_type: tf.Tensor) -> dict[str, tf.Tensor]:
    """Which arguments each action uses: bool tensors shaped like `action_type`, one per key.

    `action_type` itself is always used; an action type outside the table (such as the
    -1 of a padded step) uses nothing, not even the action type.
    """
    action_type = tf.convert_to_tensor(action_type)
    valid = (action_type >= 0) & (action_type < interface.num_action_types)
    index = tf.where(valid, action_type, tf.zeros_like(action_type))
    table = tf.constant(interface.table())
    rows = tf.gather(table, index)  # [..., len(ARGUMENTS)]
    masks = {ACTION_TYPE: valid}
    for i, name in enumerate(ARGUMENTS):
        masks[name] = rows[..., i] & valid
    return masks


def flat_location(x: Any, y: Any, map_size: int) -> Any:
    """The `target_location` of cell (x, y): y * map_size + x."""
    return y * map_size + x


def location_cell(location: Any, map_size: int) -> tuple[Any, Any]:
    """The cell (x, y) of a flattened `target_location`."""
    return location % map_size, location // map_size


def random_observation(interface: Interface, rng: np.random.RandomState, batch: int, dtype=np.float32) -> dict:
    """Spec-shaped random observations [batch, ...] (NumPy): some padding, some action types and cells available.

    Every row has at least one real entity, one available action type (no-op, type 0, is
    always available) and one available cell. For tests and benchmarks.
    """
    n, m = interface.num_entities, interface.map_size
    mask = rng.uniform(size=[batch, n]) < 0.7
    mask[:, 0] = True
    available = rng.uniform(size=[batch, interface.num_action_types]) < 0.6
    available[:, 0] = True
    location_mask = rng.uniform(size=[batch, m, m]) < 0.8
    location_mask[:, 0, 0] = True
    s, c = interface.spatial_size, interface.spatial_channels
    return {
        "entities": {
            "features": rng.normal(size=[batch, n, interface.entity_features]).astype(dtype),
            "positions": rng.randint(0, m, size=[batch, n, 2]).astype(np.int32),
            "mask": mask,
        },
        "spatial": (rng.uniform(size=[batch, s, s, c]) < 0.2).astype(dtype),
        "scalars": {name: rng.normal(size=[batch, size]).astype(dtype) for name, size in interface.scalar_features},
        "available_action_types": available,
        "location_mask": location_mask,
    }


def random_actions(interface: Interface, observation: dict, rng: np.random.RandomState) -> dict:
    """Random actions [batch, ...] (NumPy) that the masks of `observation` allow, -1 in unused arguments."""
    available = np.asarray(observation["available_action_types"])
    entity_mask = np.asarray(observation["entities"]["mask"])
    location_mask = np.asarray(observation["location_mask"]).reshape(len(available), -1)
    batch, table = len(available), interface.table()
    actions = {key: np.full([batch], UNUSED, np.int32) for key in ACTION_KEYS}
    actions["selected_units"] = np.full([batch, interface.max_selected], UNUSED, np.int32)
    for b in range(batch):
        action_type = int(rng.choice(np.flatnonzero(available[b])))
        uses = dict(zip(ARGUMENTS, table[action_type]))
        actions["action_type"][b] = action_type
        real = np.flatnonzero(entity_mask[b])
        if uses["delay"]:
            actions["delay"][b] = rng.randint(interface.num_delays)
        if uses["queued"]:
            actions["queued"][b] = rng.randint(2)
        if uses["selected_units"]:
            count = rng.randint(1, min(len(real), interface.max_selected) + 1)
            picks = rng.permutation(real)[:count]
            actions["selected_units"][b, :count] = picks
            if count < interface.max_selected:
                actions["selected_units"][b, count] = interface.num_entities
        if uses["target_unit"]:
            actions["target_unit"][b] = rng.choice(real)
        if uses["target_location"]:
            actions["target_location"][b] = rng.choice(np.flatnonzero(location_mask[b]))
    return actions
