"""The workload registry: what the harness times, and how a model adds its own.

A *workload* is one computation timed in every mode: a name, its sizes at each preset,
a function that builds our implementation as a `Case`, optionally the same computation
built with other libraries (the *peers*), and optionally an analytic FLOP count.

A model adds its workloads with one file in `benchmarks/workloads/` (every module there
is imported by `load()`), calling `register(Workload(...))` at import time; see
`benchmarks/workloads/__init__.py` for a template.
"""

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import tensorflow as tf

PRESETS = ("smoke", "quick", "paper")
PRESET_HELP = {
    "smoke": "seconds in all, for tests",
    "quick": "the default; each workload at a size that shows its character, a few minutes in all",
    "paper": "the published configuration (or, for the core workloads, a large one); opt in",
}

Nest = Any


@dataclasses.dataclass
class Case:
    """One implementation of a workload, built at one size and dtype.

    The harness composes the steps from these parts: the forward step is `forward`;
    the train step is `loss_and_grads` then `apply`. Under a multi-replica strategy,
    `loss_and_grads` and `apply` run in each replica, and `apply` all-reduces the
    gradients the way its library expects before updating; in XLA mode only
    `loss_and_grads` is compiled per replica, so the all-reduce stays outside XLA.

    Attributes:
      batch_size: examples in one batch from `make_inputs` (per replica).
      make_inputs: `seed -> batch`, a nest of tensors; different seeds, different data.
      initialize: `batch -> None`, creates the model's variables (called eagerly, in a
        replica context when replicated).
      initialize_optimizer: `() -> None`, creates the optimizer's variables (called
        eagerly after `initialize`, in the cross-replica context under the strategy).
      forward: `batch -> outputs`, the inference forward pass (a nest of tensors).
      loss_and_grads: `batch -> (loss, gradients)`, a training forward and backward pass.
      apply: `gradients -> None`, the optimizer update (all-reduce included).
      variables: `() -> list of tf.Variable`, every piece of state (model, optimizer),
        so tests can snapshot and restore it.
    """

    batch_size: int
    make_inputs: Callable[[int], Nest]
    initialize: Callable[[Nest], None]
    initialize_optimizer: Callable[[], None]
    forward: Callable[[Nest], Nest]
    loss_and_grads: Callable[[Nest], tuple[tf.Tensor, list]]
    apply: Callable[[list], None]
    variables: Callable[[], Sequence[tf.Variable]]


Builder = Callable[..., Case]  # builder(dtype: tf.DType, **size) -> Case


@dataclasses.dataclass(frozen=True)
class Flops:
    """An analytic FLOP count per step (a multiply-add is two FLOPs)."""

    forward: float
    train: float
    note: str = ""


@dataclasses.dataclass(frozen=True)
class Workload:
    """A computation the harness times in every mode.

    Attributes:
      name: short identifier, used on the command line (`--workloads lstm`).
      description: one line for the table and `--list`.
      sizes: preset name -> keyword arguments of `build` (and of `flops`); one entry
        per preset in `PRESETS`.
      build: `build(dtype, **size) -> Case`, our implementation.
      peers: library name ("sonnet", "keras") -> a builder of the same computation
        with that library, same signature as `build`.
      flops: `flops(**size) -> Flops`, the analytic count; needed where the graph
        hides the work in a loop (the profiler does not look inside loop bodies).
      recurrent: whether the workload unrolls a recurrent core.
    """

    name: str
    description: str
    sizes: Mapping[str, Mapping[str, Any]]
    build: Builder
    peers: Mapping[str, Builder] = dataclasses.field(default_factory=dict)
    flops: Callable[..., Flops] | None = None
    recurrent: bool = False

    def __post_init__(self):
        if not self.name.isidentifier():
            raise ValueError(f"workload name must be an identifier, got {self.name!r}")
        missing = [p for p in PRESETS if p not in self.sizes]
        if missing:
            raise ValueError(f"workload {self.name!r} has no sizes for preset(s) {missing}; give all of {PRESETS}")
        unknown = [p for p in self.sizes if p not in PRESETS]
        if unknown:
            raise ValueError(f"workload {self.name!r} has sizes for unknown preset(s) {unknown}; presets are {PRESETS}")

    def size(self, preset: str) -> dict[str, Any]:
        return dict(self.sizes[preset])


_REGISTRY: dict[str, Workload] = {}
_LOADED = []


def register(workload: Workload) -> Workload:
    """Adds a workload to the registry; its name must be new."""
    if workload.name in _REGISTRY:
        raise ValueError(f"a workload named {workload.name!r} is already registered")
    _REGISTRY[workload.name] = workload
    return workload


def load() -> dict[str, Workload]:
    """Imports every module of `benchmarks.workloads` (once) and returns the registry, in order."""
    if not _LOADED:
        package = importlib.import_module("benchmarks.workloads")
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
            importlib.import_module(f"{package.__name__}.{info.name}")
        _LOADED.append(True)
    return dict(_REGISTRY)


def select(names: Sequence[str] | None = None) -> list[Workload]:
    """The workloads called `names` (all when None), in registry order.

    Raises:
      KeyError: for a name nobody registered, listing the known ones.
    """
    registry = load()
    if not names:
        return list(registry.values())
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise KeyError(f"unknown workload(s) {unknown}; registered: {sorted(registry)}")
    return [w for w in registry.values() if w.name in names]
