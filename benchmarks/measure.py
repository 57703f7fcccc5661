"""Measuring one workload: build every implementation, time each step's entries, assemble rows.

For one workload the harness builds our `Case` and the peers' and creates every
variable eagerly. Then, for each step (forward, train), every (implementation, mode)
*entry* makes its first call (tracing, and compiling for XLA, included) and its warm-up
calls, and all the step's entries are timed together in interleaved rounds
(`benchmarks.timing`): each round times back-to-back calls of every entry, in an order
rotated by one each round, so every entry sees the same load as the others. Each call
ends with the results on the host (`steps.to_host`). A step's rounds stop at
`max_repeats`, or once `min_repeats` are done and the step's share of the workload's
time cap is spent.

Per entry: the median and quartiles of the per-call time over rounds. Speed comparisons
are medians of per-round ratios, with 95% bootstrap intervals (`stats.ratio`).

An entry whose call takes longer than a step's share of the cap over `min_repeats`
(time_cap / steps / min_repeats: 3.5 s at `quick`) would alone overrun the cap; it is
called once more after its first call, that call is its only timing, and it stays out
of the rounds (`interleaved` is False and its ratios have n = 1, no interval).
"""

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import tensorflow as tf

from benchmarks import flops as flops_lib
from benchmarks import steps as steps_lib
from benchmarks import timing
from benchmarks.registry import Case, Workload

PEER_NAMES = ("sonnet", "keras")


@dataclasses.dataclass(frozen=True)
class Settings:
    """How one run measures. `Settings.for_preset` fills the timing fields per preset.

    Attributes:
      preset: "smoke", "quick" or "paper" (see `registry.PRESETS`).
      steps: which steps to time ("forward", "train").
      modes: which modes to time ("eager", "function", "xla").
      dtype: the dtype of inputs and parameters.
      replicas: replicas of the train step (`MirroredStrategy` over that many devices).
      peers: peer libraries to compare against, where a workload has them.
      peer_modes: the modes in which peers are timed (a subset of `modes` applies).
      time_cap: seconds per workload, building, tracing and compiling included; none
        of those is interrupted, so slow compiles can overrun it.
      max_repeats: rounds at most per step.
      min_repeats: rounds at least per step, even past the time cap.
      warmup: calls after the first call, before timing.
      repeat_seconds: target duration of one entry's timed calls within a round.
      seed: seed of the inputs.
    """

    preset: str = "quick"
    steps: tuple[str, ...] = steps_lib.STEPS
    modes: tuple[str, ...] = steps_lib.MODES
    dtype: tf.DType = tf.float32
    replicas: int = 1
    peers: tuple[str, ...] = PEER_NAMES
    peer_modes: tuple[str, ...] = ("function",)
    time_cap: float = 35.0
    max_repeats: int = 30
    min_repeats: int = 5
    warmup: int = 2
    repeat_seconds: float = 0.05
    seed: int = 0

    @classmethod
    def for_preset(cls, preset: str, **overrides: Any) -> "Settings":
        """Settings with the timing defaults of `preset`, then `overrides` (None values ignored)."""
        defaults = {
            "smoke": dict(time_cap=10.0, max_repeats=3, min_repeats=2, warmup=1, repeat_seconds=0.0),
            "quick": dict(time_cap=35.0, max_repeats=30, min_repeats=5, warmup=2, repeat_seconds=0.05),
            "paper": dict(time_cap=300.0, max_repeats=20, min_repeats=3, warmup=1, repeat_seconds=0.2),
        }[preset]
        defaults.update({k: v for k, v in overrides.items() if v is not None})
        return cls(preset=preset, **defaults)


class Prepared:
    """A built and initialised case with its inputs (single-device and, if replicated, distributed)."""

    def __init__(self, case: Case, settings: Settings, strategy: tf.distribute.Strategy | None):
        self.case = case
        self.inputs = case.make_inputs(settings.seed)
        self.distributed = None
        if strategy is not None and strategy.num_replicas_in_sync > 1:
            replicas = strategy.num_replicas_in_sync
            batches = [self.inputs] + [case.make_inputs(settings.seed + i) for i in range(1, replicas)]
            self.distributed = steps_lib.distribute_inputs(strategy, batches)
            with strategy.scope():
                strategy.run(case.initialize, args=(self.distributed,))
                case.initialize_optimizer()
        else:
            case.initialize(self.inputs)
            case.initialize_optimizer()

    def inputs_for(self, step: str) -> Any:
        return self.distributed if step == "train" and self.distributed is not None else self.inputs


def prepare(
    builder: Callable[..., Case], size: dict, settings: Settings, strategy: tf.distribute.Strategy | None = None
) -> Prepared:
    """Builds a case at `size` in `settings.dtype` (under `strategy` if replicated) and initialises it."""
    if strategy is not None and strategy.num_replicas_in_sync > 1:
        with strategy.scope():
            case = builder(dtype=settings.dtype, **size)
    else:
        case = builder(dtype=settings.dtype, **size)
    return Prepared(case, settings, strategy)


def _count_flops(
    workload: Workload, prepared: Prepared, step: str, settings: Settings, strategy, traced: Callable | None
) -> dict:
    """FLOPs per step of ours: from the traced graph when it shows all of them, else analytic.

    Also records the dtypes of the graph's matrix products and convolutions, which show
    whether a `--dtype` run really computes in that dtype. `traced` is our step in
    function mode if it was timed (its trace is reused), else None.
    """
    size = workload.size(settings.preset)
    replicas = prepared.distributed is not None and step == "train"
    scale = strategy.num_replicas_in_sync if replicas else 1
    analytic = workload.flops(**size) if workload.flops else None
    analytic_count = None if analytic is None else scale * getattr(analytic, step)
    graph, dtypes, graph_error = None, None, None
    try:
        fn = traced or steps_lib.make(prepared.case, step, "function", strategy)
        concrete = fn.get_concrete_function(prepared.inputs_for(step))
        graph = flops_lib.count_graph(concrete.graph)
        dtypes = flops_lib.compute_dtypes(concrete.graph)
    except Exception as e:  # noqa: BLE001 -- a graph the profiler cannot read leaves the analytic count
        graph_error = timing.describe_error(e)
    if graph is not None and graph.complete:
        used, source = graph.flops, "graph"
    elif analytic_count is not None:
        used, source = analytic_count, "analytic"
    elif graph is not None:
        used, source = graph.flops, "graph (incomplete: loop or function bodies not counted)"
    else:
        used, source = None, "unavailable"
    return {
        "graph": None if graph is None else graph.flops,
        "graph_complete": None if graph is None else graph.complete,
        "graph_error": graph_error,
        "analytic": analytic_count,
        "analytic_note": None if analytic is None else analytic.note,
        "used": used,
        "source": source,
        "compute_dtypes": dtypes,
    }


def _entries(
    prepared: dict[str, Prepared], step: str, settings: Settings, strategy, device: str
) -> tuple[list[timing.Entry], dict]:
    """Every (implementation, mode) entry of `step`, after its first and warm-up calls; and the step functions."""
    # The longest call that still fits `min_repeats` rounds in a step's nominal share of the cap.
    limit = settings.time_cap / len(settings.steps) / settings.min_repeats
    entries, functions = [], {}
    for name, prep in prepared.items():
        modes = settings.modes if name == "ours" else [m for m in settings.modes if m in settings.peer_modes]
        for mode in modes:
            entry = timing.Entry(name, mode, call=lambda: None)
            try:
                fn = functions[(name, mode)] = steps_lib.make(prep.case, step, mode, strategy)
                inputs = prep.inputs_for(step)
                entry.call = lambda fn=fn, inputs=inputs: steps_lib.to_host(fn(inputs))
            except Exception as e:  # noqa: BLE001 -- an unsupported mode is a result, not a crash
                entry.error = timing.describe_error(e)
            else:
                timing.first_calls(entry, settings.warmup, device, limit)
            entries.append(entry)
    return entries, functions


def _ok(entry: timing.Entry | None) -> bool:
    return entry is not None and entry.error is None and bool(entry.times)


def _row(
    workload: Workload,
    step: str,
    mode: str,
    by_key: dict,
    settings: Settings,
    batch: int,
    replicas: int,
    flops: dict,
) -> dict:
    """The JSON row of ours in one mode, with the peers' figures in that mode."""
    entry = by_key.get(("ours", mode))
    eager, function = by_key.get(("ours", "eager")), by_key.get(("ours", "function"))
    figures = timing.timing_fields(entry)
    median = figures["median_s"]
    achieved = flops["used"] / median if median and flops["used"] else None
    row = {
        "workload": workload.name,
        "step": step,
        "mode": mode,
        "implementation": "ours",
        "status": "ok" if _ok(entry) else "error",
        "error": None if entry is None else entry.error,
        "replicas": replicas,
        "batch_size": batch,
        **figures,
        "examples_per_s": batch / median if median else None,
        "speedup_vs_eager": timing.ratio(eager, entry) if mode != "eager" and _ok(entry) and _ok(eager) else None,
        "speedup_vs_function": (
            timing.ratio(function, entry) if mode == "xla" and _ok(entry) and _ok(function) else None
        ),
        "flops_per_step": flops["used"],
        "flops_source": flops["source"],
        "flops_per_s": achieved,
        "fraction_of_peak": None,  # filled in by `run.run`, from the peak measured at both ends of the run
        **timing.memory_fields(entry),
        "peers": {},
    }
    if mode in settings.peer_modes:
        for (name, peer_mode), other in by_key.items():
            if name != "ours" and peer_mode == mode:
                row["peers"][name] = {
                    "status": "ok" if _ok(other) else "error",
                    "error": other.error,
                    **timing.timing_fields(other),
                    **timing.memory_fields(other),
                    "ours_over_peer": timing.ratio(entry, other) if _ok(entry) and _ok(other) else None,
                }
    return row


def _step_rows(
    workload: Workload,
    prepared: dict[str, Prepared],
    step: str,
    settings: Settings,
    strategy,
    deadline: float,
    device: str,
) -> tuple[list[dict], bool, dict]:
    """Rows of one step (ours in each mode, with its peers), whether the cap cut it short, FLOP counts."""
    entries, functions = _entries(prepared, step, settings, strategy, device)
    timed = [e for e in entries if e.error is None and e.interleaved]
    capped = bool(timed) and timing.rounds(
        timed, settings.min_repeats, settings.max_repeats, settings.repeat_seconds, deadline
    )
    ours = prepared["ours"]
    replicas = strategy.num_replicas_in_sync if ours.distributed is not None and step == "train" else 1
    flops = _count_flops(workload, ours, step, settings, strategy, functions.get(("ours", "function")))
    by_key = {(e.implementation, e.mode): e for e in entries}
    rows = [
        _row(workload, step, mode, by_key, settings, ours.case.batch_size * replicas, replicas, flops)
        for mode in settings.modes
    ]
    return rows, capped, flops


def run_workload(
    workload: Workload,
    settings: Settings,
    strategy: tf.distribute.Strategy | None = None,
    device: str = "CPU:0",
) -> dict:
    """Measures `workload` (ours and its peers) for every step and mode in `settings`.

    Args:
      workload: what to measure.
      settings: how.
      strategy: the multi-replica strategy for the train step, or None for one device.
      device: the device whose allocator the peak memory is read from.

    Returns:
      {"workload": facts about the workload and its run, "rows": one dict per step and
      mode of ours, each with its peers' figures}.
    """
    start = time.perf_counter()
    size = workload.size(settings.preset)
    builders = {"ours": workload.build} | {p: workload.peers[p] for p in settings.peers if p in workload.peers}
    prepared, peer_errors = {}, {}
    for name, builder in builders.items():
        try:
            prepared[name] = prepare(builder, size, settings, strategy)
        except Exception as e:  # noqa: BLE001 -- a peer that cannot build this is reported
            if name == "ours":
                raise
            peer_errors[name] = timing.describe_error(e)
    rows, capped, counts = [], False, {}
    for i, step in enumerate(settings.steps):
        remaining = settings.time_cap - (time.perf_counter() - start)
        deadline = time.perf_counter() + max(0.0, remaining) / (len(settings.steps) - i)
        step_rows, step_capped, counts[step] = _step_rows(
            workload, prepared, step, settings, strategy, deadline, device
        )
        for row in step_rows:
            for peer, error in peer_errors.items():
                if row["mode"] in settings.peer_modes:
                    row["peers"][peer] = {
                        "status": "error",
                        "error": error,
                        **timing.timing_fields(None),
                        **timing.memory_fields(None),
                        "ours_over_peer": None,
                    }
        rows += step_rows
        capped = capped or step_capped
    return {
        "workload": {
            "name": workload.name,
            "description": workload.description,
            "recurrent": workload.recurrent,
            "size": size,
            "peers": sorted(workload.peers),
            "flops": counts,
            "wall_s": time.perf_counter() - start,
            "capped": capped,
        },
        "rows": rows,
    }
