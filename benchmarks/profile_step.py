"""Where a step's time goes: a per-op profile of one train step, by part of the model.

    python -m benchmarks.profile_step dnc --preset paper --modes function,xla

Builds a registered workload, runs its train step until warm, then records one step
with TensorFlow's profiler and sums the time of every op (every XLA thunk in XLA mode)
over the threads that ran it: that is CPU time, which on a busy machine is steadier
than the wall clock. Each op is put in a *group*, the innermost of `--groups` that
appears in its TensorFlow name scope (XLA thunks are traced back to the TensorFlow op
through the compiled HLO's metadata), and in a *direction*: forward, backward
(gradient ops) or update (the optimizer). Ops of the loop machinery itself (TensorList
reads and writes, while-loop control, the copies XLA makes of the loop's stacks) form
the group "loop".

Prints, per mode, a Markdown table of the groups' shares and the most expensive ops.
"""

import argparse
import collections
import glob
import json
import os
import re
import shutil
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
from tensorflow.tsl.profiler.protobuf import xplane_pb2  # noqa: E402

from benchmarks import measure, registry  # noqa: E402
from benchmarks import steps as steps_lib  # noqa: E402

# The DNC's parts: the name scopes of models/dnc/dnc.py and access.py.
DNC_GROUPS = (
    "controller",
    "fields",
    "usage",
    "write_weights",
    "allocation",
    "erase_write",
    "link",
    "read_weights",
    "read_words",
    "output_linear",
)
# Events that wrap others (their time is their children's) and are not ops.
WRAPPERS = {
    "ExecutorState::Process",
    "ParallelFor",
    "ThunkExecutor::Execute",
    "ThreadpoolListener::StartRegion",
    "ThreadpoolListener::Record",
    "ThreadpoolListener::StopRegion",
}
LOOP_TYPES = re.compile(
    r"^(Enter|Exit|Merge|Switch|NextIteration|LoopCond|While|StatelessWhile|TensorList\w*|TensorArray\w*|"
    r"Identity|IdentityN|StackPushV2|StackPopV2)$"
)
HLO_LINE = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = .*?metadata=\{([^}]*)\}")
HLO_FIELD = re.compile(r'(op_type|op_name)="([^"]*)"')


def _hlo_names(hlo: str) -> dict[str, tuple[str, str]]:
    """HLO instruction name -> (TensorFlow op type, TensorFlow op name), from the metadata."""
    names = {}
    for line in hlo.splitlines():
        m = HLO_LINE.match(line)
        if m:
            fields = dict(HLO_FIELD.findall(m.group(2)))
            names[m.group(1)] = (fields.get("op_type", ""), fields.get("op_name", ""))
    return names


def _events(logdir: str) -> collections.Counter:
    """Event name -> picoseconds summed over the threads of the host plane, python's thread left out."""
    paths = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
    if not paths:
        raise RuntimeError(f"the profiler wrote no trace under {logdir}")
    space = xplane_pb2.XSpace()
    with open(paths[0], "rb") as f:
        space.ParseFromString(f.read())
    totals = collections.Counter()
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        for line in plane.lines:
            if line.name == "python":
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if name not in WRAPPERS:
                    totals[name] += event.duration_ps
    return totals


def classify(op_type: str, op_name: str, groups: tuple[str, ...]) -> tuple[str, str]:
    """(group, direction) of one TensorFlow op."""
    path = op_name.split("/")
    if "gradients" in path or any(p.endswith("_grad") for p in path):
        direction = "backward"
    elif any(p.lower() in ("rmsprop", "adam", "sgd", "momentum") for p in path) or "Assign" in op_type:
        direction = "update"
    else:
        direction = "forward"
    if LOOP_TYPES.match(op_type) or op_type in ("copy", "dynamic-update-slice", "dynamic-slice"):
        return "loop", direction
    for part in reversed(path):
        if part in groups:
            return part, direction
    return "other", direction


def profile(
    workload: str, preset: str, mode: str, groups: tuple[str, ...], warmup: int = 2, config: dict | None = None
) -> dict:
    """One train step's ops in `mode`: {"wall_s", "total_s", "groups": {(group, dir): s}, "ops": [...]}.

    `config` overrides entries of the preset's size (as `side_by_side.py --config`).
    """
    w = registry.select([workload])[0]
    size = dict(w.size(preset))
    unknown = set(config or {}) - set(size)
    if unknown:
        raise ValueError(f"--config: {workload} has no size entries {sorted(unknown)}; it has {sorted(size)}")
    size.update(config or {})
    prepared = measure.prepare(w.build, size, measure.Settings(preset=preset))
    step = steps_lib.single_device(prepared.case, "train", mode)
    for _ in range(warmup):
        steps_lib.to_host(step(prepared.inputs))
    hlo = {}
    if mode == "xla":
        hlo = _hlo_names(step.experimental_get_compiler_ir(prepared.inputs)(stage="optimized_hlo"))
    logdir = tempfile.mkdtemp(prefix="profile_step_")
    try:
        tf.profiler.experimental.start(logdir)
        start = time.perf_counter()
        steps_lib.to_host(step(prepared.inputs))
        wall = time.perf_counter() - start
        tf.profiler.experimental.stop()
        events = _events(logdir)
    finally:
        shutil.rmtree(logdir, ignore_errors=True)
    by_group, by_op = collections.Counter(), collections.Counter()
    for name, ps in events.items():
        if mode == "xla":
            if name not in hlo:
                continue  # the executable's own events (not thunks)
            hlo_type = name.split(".")[0].replace("_", "-")
            op_type, op_name = hlo[name]
            if hlo_type in ("copy", "dynamic-update-slice", "bitcast-dynamic-update-slice-fusion"):
                op_type = "copy"
            label = f"{name} ({op_type} {op_name})"
        else:
            op_name, _, op_type = name.rpartition(":")
            label = name
        group = classify(op_type, op_name, groups)
        by_group[group] += ps / 1e12
        by_op[label] += ps / 1e12
    return {"wall_s": wall, "total_s": sum(by_group.values()), "groups": by_group, "ops": by_op.most_common()}


def table(result: dict, top: int) -> str:
    total = result["total_s"]
    lines = [
        f"one step: {result['wall_s']:.2f} s wall clock, {total:.2f} s of op time (CPU time summed over threads)",
        "",
        "| group | forward | backward | update | all |",
        "|---|---|---|---|---|",
    ]
    groups = collections.Counter()
    for (group, _), s in result["groups"].items():
        groups[group] += s
    for group, s in groups.most_common():
        shares = [result["groups"].get((group, d), 0.0) / total * 100 for d in ("forward", "backward", "update")]
        lines.append(f"| {group} | " + " | ".join(f"{x:.1f} %" for x in shares) + f" | {s / total * 100:.1f} % |")
    lines += ["", "| op | share |", "|---|---|"]
    for label, s in result["ops"][:top]:
        lines.append(f"| `{label[-140:]}` | {s / total * 100:.1f} % |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile_step", description=__doc__)
    p.add_argument("workload", help="a registered workload (see python -m benchmarks.run --list)")
    p.add_argument("--preset", default="quick", choices=registry.PRESETS)
    p.add_argument("--modes", default="function,xla", help="comma-separated: function, xla")
    p.add_argument("--groups", default=",".join(DNC_GROUPS), help="name-scope parts to group ops by")
    p.add_argument("--top", type=int, default=12, help="how many single ops to list")
    p.add_argument("--config", type=json.loads, default=None, help="JSON overriding size entries: '{\"ch\": 64}'")
    args = p.parse_args(argv)
    groups = tuple(g for g in args.groups.split(",") if g)
    for mode in [m for m in args.modes.split(",") if m]:
        if mode not in ("function", "xla"):
            p.error(f"--modes takes function and xla, got {mode!r}")
        print(f"## {args.workload} ({args.preset}), train step, {mode}\n")
        result = profile(args.workload, args.preset, mode, groups, config=args.config)
        print(table(result, args.top) + "\n", flush=True)


if __name__ == "__main__":
    main()
