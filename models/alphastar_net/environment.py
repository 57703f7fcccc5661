"""A small real-time strategy game in NumPy with AlphaStar's observation and action nesting, and its expert.

"Harvest and defend", on a map_size x map_size grid. The player owns a base, workers and
soldiers; minerals and build sites are neutral; enemies walk from the map's edge to the
base and hit it. Game time runs in ticks; each agent step issues one action and then
lets `delay + 1` ticks pass. An episode lasts `horizon` ticks, or until the base falls.

Action types and the arguments they use (the argument table):

| action type | delay | queued | selected_units | target_unit | target_location |
|---|---|---|---|---|---|
| no_op   | yes | no  | no                  | no                  | no                  |
| harvest | yes | yes | workers             | a mineral           | no                  |
| attack  | yes | yes | soldiers            | an enemy            | no                  |
| build   | yes | yes | a worker            | no                  | a build site's cell |
| train   | yes | yes | the base            | no                  | no                  |

Each tick: a harvesting worker finishes its trip after `trip_ticks` (one mineral into
the stock, reward 0.2) and goes idle; a building worker turns the site into a tower
after `build_ticks`; the base finishes the soldier at the head of its queue after
`train_ticks`; each attacking soldier, and each tower (against the enemy nearest it in
range), takes one health from its target, a kill giving reward 1; each enemy steps
towards the base and, next to it, takes one of its health (reward -1); new enemies
appear at random on the edge. A depleted mineral field is replaced elsewhere; a built
site by a new site, up to `max_towers` towers.

Commands: harvest and attack give the selected units of the right kind that order (the
others are ignored) if the target is a mineral or an enemy; build sends the first
selected worker to the cell of a site no worker is building yet and pays `tower_cost`;
train queues a soldier at the base for `soldier_cost` if the base is selected and idle,
or busy and the command is queued (an unqueued command to a busy base fails). A command
that fails does nothing.

The scripted expert (`Game.expert_action`), by priority: attack with every idle soldier
(by tag) the weakest enemy (ties: the lowest tag); build a tower with the idle worker of
the lowest tag; harvest the mineral of the lowest tag with every idle worker (by tag);
train a soldier (queued when the base is busy); otherwise wait with the longest delay.
Every choice is a function of the observation (the tag, health and idle state of every
entity are features), so a network can clone it; waiting that long is its weakness
(idle workers and soldiers wait for it), which reinforcement learning can improve on.
"""

import dataclasses
from typing import Any

import numpy as np

from models.alphastar_net import specs

ENTITY_TYPES = ("worker", "soldier", "base", "tower", "mineral", "site", "enemy")
OWNERS = ("self", "neutral", "enemy")
_OWNER = {"worker": 0, "soldier": 0, "base": 0, "tower": 0, "mineral": 1, "site": 1, "enemy": 2}
_KIND_INDEX = {kind: i for i, kind in enumerate(ENTITY_TYPES)}
ACTION_TYPES = ("no_op", "harvest", "attack", "build", "train")
NO_OP, HARVEST, ATTACK, BUILD, TRAIN = range(len(ACTION_TYPES))
# delay, queued, selected_units, target_unit, target_location
ARGUMENT_TABLE = (
    (True, False, False, False, False),
    (True, True, True, True, False),
    (True, True, True, True, False),
    (True, True, True, False, True),
    (True, True, True, False, False),
)
# type one-hot, owner one-hot, x, y, health, idle, queue, tag, amount
ENTITY_FEATURES = len(ENTITY_TYPES) + len(OWNERS) + 7
PLANES = ("own", "enemy", "mineral", "site")
_PLANE = {"worker": 0, "soldier": 0, "base": 0, "tower": 0, "enemy": 1, "mineral": 2, "site": 3}
SCALARS = (("resources", 4), ("time", 1))
MINERAL_REWARD, KILL_REWARD, DAMAGE_REWARD = 0.2, 1.0, -1.0
_TAG_SCALE, _AMOUNT_SCALE = 32.0, 10.0


@dataclasses.dataclass(frozen=True)
class GameSettings:
    """The game's sizes and rules (defaults: the `mini` game the agent trains on here).

    Attributes:
      map_size: the location grid's side.
      spatial_size: the feature planes' side (a divisor of map_size; AlphaStar: half).
      max_entities: entity slots of an observation.
      max_selected: most units one action selects.
      num_delays: delay choices: a step lets delay + 1 ticks pass.
      horizon: ticks per episode.
      workers, soldiers, minerals: units and mineral fields at the start.
      mineral_amount: (low, high) minerals in a field, inclusive.
      enemy_spawn_probability: chance per tick that an enemy appears.
      max_enemies: enemies alive at once, at most.
      enemy_health: (low, high) health of a new enemy, inclusive.
      base_health: the base's health; the episode ends when it falls.
      soldier_cost, tower_cost: minerals.
      max_soldiers: soldiers alive and queued, at most.
      max_queue: soldiers the base queues, at most.
      max_towers: towers built, at most.
      trip_ticks, train_ticks, build_ticks: durations.
      tower_range: Chebyshev range of a tower.
    """

    map_size: int = 16
    spatial_size: int = 16
    max_entities: int = 24
    max_selected: int = 8
    num_delays: int = 4
    horizon: int = 32
    workers: int = 3
    soldiers: int = 1
    minerals: int = 3
    mineral_amount: tuple[int, int] = (4, 10)
    enemy_spawn_probability: float = 0.12
    max_enemies: int = 3
    enemy_health: tuple[int, int] = (2, 5)
    base_health: int = 20
    soldier_cost: int = 3
    tower_cost: int = 5
    max_soldiers: int = 4
    max_queue: int = 2
    max_towers: int = 2
    trip_ticks: int = 3
    train_ticks: int = 3
    build_ticks: int = 2
    tower_range: int = 4

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, list):
                object.__setattr__(self, field.name, tuple(value))
        if self.map_size % self.spatial_size:
            raise ValueError(f"spatial_size {self.spatial_size} must divide map_size {self.map_size}")
        if self.map_size < 6:
            raise ValueError(f"map_size must be at least 6, got {self.map_size}")
        start = 1 + self.workers + self.soldiers + self.minerals + 1
        most = start + self.max_enemies + self.max_soldiers + self.max_towers
        if self.max_entities < most:
            raise ValueError(
                f"max_entities {self.max_entities} is too small: the game can have {most} entities at once "
                f"(base, workers, soldiers, minerals, a site, enemies, towers)"
            )
        if not 0 <= self.enemy_spawn_probability <= 1:
            raise ValueError(f"enemy_spawn_probability must be in [0, 1], got {self.enemy_spawn_probability}")

    def interface(self) -> specs.Interface:
        """The observation and action sizes and the argument table of this game."""
        return specs.Interface(
            num_entities=self.max_entities,
            entity_features=ENTITY_FEATURES,
            spatial_size=self.spatial_size,
            spatial_channels=len(PLANES),
            map_size=self.map_size,
            scalar_features=SCALARS,
            argument_table=ARGUMENT_TABLE,
            num_delays=self.num_delays,
            max_selected=self.max_selected,
            action_type_names=ACTION_TYPES,
        )


def full_settings() -> GameSettings:
    """The game at AlphaStar's interface sizes: 512 entities, 128 x 128 planes, a 256 x 256 grid,
    64 selected units, 128 delays (the rules as in the mini game)."""
    return GameSettings(map_size=256, spatial_size=128, max_entities=512, max_selected=64, num_delays=128, horizon=256)


class _Entity:
    __slots__ = ("tag", "kind", "x", "y", "health", "order", "target", "timer", "amount", "queue")

    def __init__(self, tag: int, kind: str, x: int, y: int, health: int = 1, amount: int = 0):
        self.tag, self.kind, self.x, self.y = tag, kind, x, y
        self.health, self.amount = health, amount
        self.order = None  # None (idle), "harvest", "attack", "build"
        self.target = None  # an _Entity, or a cell (x, y) for "build"
        self.timer = 0
        self.queue = []  # the base: ticks left of each queued soldier


def _chebyshev(a: "_Entity", x: int, y: int) -> int:
    return max(abs(a.x - x), abs(a.y - y))


class Game:
    """The game as an environment: `reset(seed)` and `step(action)` on one episode.

    Observations and actions are nests of NumPy arrays shaped like
    `settings.interface()`'s specs (no batch axis). `step` returns
    `(observation, reward, done)`; after `done`, call `reset` again. `score` is the
    episode's reward so far, `last_command_succeeded` whether the last action's command
    took effect (see the module docstring).

    Args:
      settings: the game's sizes and rules.
    """

    def __init__(self, settings: GameSettings | None = None):
        self.settings = settings or GameSettings()
        self.interface = self.settings.interface()
        self._rng = np.random.default_rng(0)
        self._slots: list[_Entity | None] = []
        self.done = True

    # --- episode --------------------------------------------------------------------

    def reset(self, seed: Any) -> dict[str, Any]:
        """Starts an episode drawn from `seed` (an int or a sequence of ints); returns its first observation."""
        s = self.settings
        self._rng = np.random.default_rng(seed)
        self._slots = [None] * s.max_entities
        self._grid = np.zeros([s.map_size, s.map_size], bool)  # cells with an entity
        self._next_tag = 0
        self.tick = 0
        self.stock = 0
        self.towers_built = 0
        self.score = 0.0
        self.done = False
        self.last_command_succeeded = True
        margin = 3
        bx, by = (int(v) for v in self._rng.integers(margin, s.map_size - margin, size=2))
        self.base = self._add("base", bx, by, health=s.base_health)
        for _ in range(s.workers):
            self._add("worker", *self._free_cell_near(bx, by))
        for _ in range(s.soldiers):
            self._add("soldier", *self._free_cell_near(bx, by))
        for _ in range(s.minerals):
            self._spawn_mineral()
        self._spawn_site()
        return self.observation()

    def step(self, action: dict[str, Any]) -> tuple[dict[str, Any], float, bool]:
        """Issues `action` and lets delay + 1 ticks pass; returns (observation, reward, done)."""
        if self.done:
            raise RuntimeError("Game.step after the episode ended; call reset first")
        action = {k: np.asarray(v) for k, v in action.items()}
        missing = [k for k in specs.ACTION_KEYS if k not in action]
        if missing:
            raise ValueError(f"Game.step: the action lacks {missing}; it needs every key of {specs.ACTION_KEYS}")
        action_type = int(action["action_type"])
        if not 0 <= action_type < len(ACTION_TYPES) or not self.available()[action_type]:
            raise ValueError(
                f"Game.step: action type {action_type} is not available (available: "
                f"{[ACTION_TYPES[i] for i in np.flatnonzero(self.available())]})"
            )
        delay = int(action["delay"])
        if not 0 <= delay < self.settings.num_delays:
            raise ValueError(f"Game.step: delay must be in [0, {self.settings.num_delays}), got {delay}")
        self.last_command_succeeded = self._command(action_type, action)
        reward = 0.0
        for _ in range(delay + 1):
            reward += self._tick()
            if self.done:
                break
        self.score += reward
        return self.observation(), reward, self.done

    # --- observation ------------------------------------------------------------------

    def available(self) -> np.ndarray:
        """bool [num_action_types]: which action types may be issued now."""
        s = self.settings
        kinds = self._count_kinds()
        available = np.zeros(len(ACTION_TYPES), bool)
        available[NO_OP] = True
        available[HARVEST] = bool(self._idle("worker")) and kinds["mineral"] > 0
        available[ATTACK] = kinds["soldier"] > 0 and kinds["enemy"] > 0
        available[BUILD] = self.stock >= s.tower_cost and bool(self._free_sites()) and kinds["worker"] > 0
        available[TRAIN] = (
            self.stock >= s.soldier_cost
            and kinds["soldier"] + len(self.base.queue) < s.max_soldiers
            and len(self.base.queue) < s.max_queue
        )
        return available

    def observation(self) -> dict[str, Any]:
        """The current observation, a nest of NumPy arrays shaped like the interface's observation spec."""
        s = self.settings
        n = s.max_entities
        features = np.zeros([n, ENTITY_FEATURES], np.float32)
        positions = np.zeros([n, 2], np.int32)
        mask = np.zeros([n], bool)
        planes = np.zeros([s.spatial_size, s.spatial_size, len(PLANES)], np.float32)
        location_mask = ~self._grid
        scale = s.map_size // s.spatial_size
        slots = [i for i, e in enumerate(self._slots) if e is not None]
        entities = [self._slots[i] for i in slots]
        kinds = [_KIND_INDEX[e.kind] for e in entities]
        mask[slots] = True
        positions[slots] = [(e.x, e.y) for e in entities]
        features[slots, kinds] = 1
        features[slots, [len(ENTITY_TYPES) + _OWNER[e.kind] for e in entities]] = 1
        features[slots, len(ENTITY_TYPES) + len(OWNERS) :] = [
            (
                e.x / s.map_size,
                e.y / s.map_size,
                e.health / 5.0,
                float(e.order is None and not e.queue),
                len(e.queue) / s.max_queue,
                e.tag / _TAG_SCALE,
                e.amount / _AMOUNT_SCALE,
            )
            for e in entities
        ]
        xs, ys = positions[slots, 0], positions[slots, 1]
        planes[ys // scale, xs // scale, [_PLANE[e.kind] for e in entities]] = 1
        sites = [e for e in entities if e.kind == "site"]
        location_mask[[e.y for e in sites], [e.x for e in sites]] = True
        counts = np.bincount(kinds, minlength=len(ENTITY_TYPES))
        return {
            "entities": {"features": features, "positions": positions, "mask": mask},
            "spatial": planes,
            "scalars": {
                "resources": np.array(
                    [
                        self.stock / 10.0,
                        counts[_KIND_INDEX["soldier"]] / s.max_soldiers,
                        len(self.base.queue) / s.max_queue,
                        self.base.health / s.base_health,
                    ],
                    np.float32,
                ),
                "time": np.array([self.tick / s.horizon], np.float32),
            },
            "available_action_types": self.available(),
            "location_mask": location_mask,
        }

    # --- policies ---------------------------------------------------------------------

    def no_op(self, delay: int = 0) -> dict[str, np.ndarray]:
        """The no-op action with the given delay (every other argument unused)."""
        action = {k: np.array(specs.UNUSED, np.int32) for k in specs.ACTION_KEYS}
        action["selected_units"] = np.full([self.settings.max_selected], specs.UNUSED, np.int32)
        action["action_type"] = np.array(NO_OP, np.int32)
        action["delay"] = np.array(delay, np.int32)
        return action

    def expert_action(self) -> dict[str, np.ndarray]:
        """The scripted expert's action for the current state (see the module docstring)."""
        s = self.settings
        available = self.available()
        idle_soldiers = self._idle("soldier")
        idle_workers = self._idle("worker")
        if available[ATTACK] and idle_soldiers:
            enemies = [e for e in self._slots if e is not None and e.kind == "enemy"]
            target = min(enemies, key=lambda e: (e.health, e.tag))
            return self._action(ATTACK, 0, 0, idle_soldiers, target_unit=self._slot(target))
        if available[BUILD] and idle_workers:
            site = min(self._free_sites(), key=lambda e: e.tag)
            location = specs.flat_location(site.x, site.y, s.map_size)
            return self._action(BUILD, 0, 0, idle_workers[:1], target_location=location)
        if available[HARVEST]:
            mineral = min((e for e in self._slots if e is not None and e.kind == "mineral"), key=lambda e: e.tag)
            return self._action(HARVEST, 0, 0, idle_workers, target_unit=self._slot(mineral))
        if available[TRAIN]:
            return self._action(TRAIN, 1, int(bool(self.base.queue)), [self._slot(self.base)])
        return self.no_op(s.num_delays - 1)

    def random_action(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """A uniformly random legal-shaped action: an available type, random arguments over real entities."""
        s = self.settings
        action_type = int(rng.choice(np.flatnonzero(self.available())))
        real = [i for i, e in enumerate(self._slots) if e is not None]
        own = [i for i in real if _OWNER[self._slots[i].kind] == 0]
        count = int(rng.integers(1, min(len(own), s.max_selected) + 1))
        units = [int(u) for u in rng.permutation(own)[:count]]
        free = np.flatnonzero(self.observation()["location_mask"].reshape(-1))
        action = self._action(
            action_type,
            int(rng.integers(s.num_delays)),
            int(rng.integers(2)),
            units,
            target_unit=int(rng.choice(real)),
            target_location=int(rng.choice(free)),
        )
        return action

    def _action(self, action_type, delay, queued, units, target_unit=-1, target_location=-1) -> dict[str, np.ndarray]:
        """An action with the arguments the table says `action_type` uses, -1 in the others."""
        s = self.settings
        uses = dict(zip(specs.ARGUMENTS, ARGUMENT_TABLE[action_type]))
        selected = np.full([s.max_selected], specs.UNUSED, np.int32)
        if uses["selected_units"]:
            picks = [u if isinstance(u, (int, np.integer)) else self._slot(u) for u in units][: s.max_selected]
            selected[: len(picks)] = picks
            if len(picks) < s.max_selected:
                selected[len(picks)] = s.max_entities  # end of selection
        values = {
            "action_type": action_type,
            "delay": delay,
            "queued": queued,
            "selected_units": selected,
            "target_unit": target_unit,
            "target_location": target_location,
        }
        return {
            k: np.asarray(v if k in ("action_type", "selected_units") or uses[k] else specs.UNUSED, np.int32)
            for k, v in values.items()
        }

    # --- rules --------------------------------------------------------------------------

    def _command(self, action_type: int, action: dict[str, np.ndarray]) -> bool:
        """Carries out a command; whether it took effect."""
        s = self.settings
        if action_type == NO_OP:
            return True
        units = []
        for index in action["selected_units"].reshape(-1):
            index = int(index)
            if not 0 <= index < s.max_entities:
                break  # end of selection or no pick
            e = self._slots[index]
            if e is not None and e not in units:
                units.append(e)
        queued = int(action["queued"]) == 1
        if action_type in (HARVEST, ATTACK):
            kind, target_kind = ("worker", "mineral") if action_type == HARVEST else ("soldier", "enemy")
            target = self._entity(int(action["target_unit"]))
            if target is None or target.kind != target_kind:
                return False
            order = "harvest" if action_type == HARVEST else "attack"
            ordered = [e for e in units if e.kind == kind]
            for e in ordered:
                e.order, e.target, e.timer = order, target, s.trip_ticks
            return bool(ordered)
        elif action_type == BUILD:
            workers = [e for e in units if e.kind == "worker"]
            location = int(action["target_location"])
            if not workers or not 0 <= location < s.map_size * s.map_size or self.stock < s.tower_cost:
                return False
            x, y = specs.location_cell(location, s.map_size)
            site = next((e for e in self._free_sites() if (e.x, e.y) == (x, y)), None)
            if site is None:
                return False
            self.stock -= s.tower_cost
            workers[0].order, workers[0].target, workers[0].timer = "build", site, s.build_ticks
            return True
        elif action_type == TRAIN:
            if self.base not in units or not self.available()[TRAIN]:
                return False
            if self.base.queue and not queued:
                return False
            self.stock -= s.soldier_cost
            self.base.queue.append(s.train_ticks)
            return True
        return False

    def _tick(self) -> float:
        s = self.settings
        reward = 0.0
        for e in list(self._slots):
            if e is None or e.order not in ("harvest", "build"):
                continue
            e.timer -= 1
            if e.timer > 0:
                continue
            target, e.order, e.target = e.target, None, None
            if target not in self._slots:
                continue  # depleted or built meanwhile
            if target.kind == "mineral":
                self.stock += 1
                reward += MINERAL_REWARD
                target.amount -= 1
                if target.amount <= 0:
                    self._remove(target)
                    self._spawn_mineral()
            elif target.kind == "site":
                self._remove(target)
                self._add("tower", target.x, target.y)
                self.towers_built += 1
                if self.towers_built < s.max_towers:
                    self._spawn_site()
        if self.base.queue:
            self.base.queue[0] -= 1
            if self.base.queue[0] <= 0:
                self.base.queue.pop(0)
                cell = self._free_cell_near(self.base.x, self.base.y)
                if cell is not None:
                    self._add("soldier", *cell)
        damage = {}
        for e in self._slots:
            if e is None:
                continue
            if e.kind == "soldier" and e.order == "attack":
                if e.target in self._slots:
                    damage[id(e.target)] = damage.get(id(e.target), 0) + 1
                else:
                    e.order, e.target = None, None
            elif e.kind == "tower":
                enemies = [t for t in self._slots if t is not None and t.kind == "enemy"]
                in_range = [t for t in enemies if _chebyshev(e, t.x, t.y) <= s.tower_range]
                if in_range:
                    target = min(in_range, key=lambda t: (_chebyshev(e, t.x, t.y), t.tag))
                    damage[id(target)] = damage.get(id(target), 0) + 1
        for e in list(self._slots):
            if e is not None and e.kind == "enemy" and id(e) in damage:
                e.health -= damage[id(e)]
                if e.health <= 0:
                    self._remove(e)
                    reward += KILL_REWARD
        for e in self._slots:
            if e is not None and e.kind == "soldier" and e.order == "attack" and e.target not in self._slots:
                e.order, e.target = None, None
        for e in self._slots:
            if e is None or e.kind != "enemy":
                continue
            if _chebyshev(e, self.base.x, self.base.y) <= 1:
                self.base.health -= 1
                reward += DAMAGE_REWARD
            else:
                x = e.x + int(np.sign(self.base.x - e.x))
                y = e.y + int(np.sign(self.base.y - e.y))
                if not self._grid[y, x]:
                    self._grid[e.y, e.x], self._grid[y, x] = False, True
                    e.x, e.y = x, y
        if self._count_kinds()["enemy"] < s.max_enemies and self._rng.random() < s.enemy_spawn_probability:
            cell = self._free_edge_cell()
            if cell is not None:
                low, high = s.enemy_health
                self._add("enemy", *cell, health=int(self._rng.integers(low, high + 1)))
        self.tick += 1
        if self.base.health <= 0 or self.tick >= s.horizon:
            self.done = True
        return reward

    # --- helpers ------------------------------------------------------------------------

    def _add(self, kind: str, x: int, y: int, health: int = 1, amount: int = 0) -> _Entity:
        slot = self._slots.index(None)
        e = _Entity(self._next_tag, kind, x, y, health, amount)
        self._next_tag += 1
        self._slots[slot] = e
        self._grid[y, x] = True
        return e

    def _remove(self, e: _Entity) -> None:
        self._slots[self._slots.index(e)] = None
        self._grid[e.y, e.x] = False

    def _slot(self, e: _Entity) -> int:
        return self._slots.index(e)

    def _entity(self, index: int) -> _Entity | None:
        return self._slots[index] if 0 <= index < len(self._slots) else None

    def _count_kinds(self) -> dict[str, int]:
        counts = dict.fromkeys(ENTITY_TYPES, 0)
        for e in self._slots:
            if e is not None:
                counts[e.kind] += 1
        return counts

    def _idle(self, kind: str) -> list[int]:
        """Slots of the idle units of `kind`, by tag."""
        units = [e for e in self._slots if e is not None and e.kind == kind and e.order is None]
        return [self._slot(e) for e in sorted(units, key=lambda e: e.tag)]

    def _free_sites(self) -> list[_Entity]:
        """The build sites no worker is on its way to build."""
        claimed = [e.target for e in self._slots if e is not None and e.order == "build"]
        return [e for e in self._slots if e is not None and e.kind == "site" and all(e is not c for c in claimed)]

    def _occupied(self, x: int, y: int) -> bool:
        return bool(self._grid[y, x])

    def _free_cell_near(self, x: int, y: int) -> tuple[int, int] | None:
        """A random free cell at the smallest Chebyshev distance from (x, y) that has one."""
        size = self.settings.map_size
        for radius in range(1, size):
            cells = [
                (x + dx, y + dy)
                for dx in range(-radius, radius + 1)
                for dy in range(-radius, radius + 1)
                if max(abs(dx), abs(dy)) == radius
                and 0 <= x + dx < size
                and 0 <= y + dy < size
                and not self._occupied(x + dx, y + dy)
            ]
            if cells:
                return cells[int(self._rng.integers(len(cells)))]
        return None

    def _random_free_cell(self, low: int, high: int) -> tuple[int, int]:
        while True:
            x, y = (int(v) for v in self._rng.integers(low, high, size=2))
            if not self._occupied(x, y) and _chebyshev(self.base, x, y) >= 2:
                return x, y

    def _spawn_mineral(self) -> None:
        low, high = self.settings.mineral_amount
        x, y = self._random_free_cell(1, self.settings.map_size - 1)
        self._add("mineral", x, y, amount=int(self._rng.integers(low, high + 1)))

    def _spawn_site(self) -> None:
        self._add("site", *self._random_free_cell(1, self.settings.map_size - 1))

    def _free_edge_cell(self) -> tuple[int, int] | None:
        size = self.settings.map_size
        last = size - 1
        edge = [(x, 0) for x in range(size)] + [(x, last) for x in range(size)]
        edge += [(0, y) for y in range(1, last)] + [(last, y) for y in range(1, last)]
        free = [c for c in edge if not self._occupied(*c)]
        if not free:
            return None
        return free[int(self._rng.integers(len(free)))]
