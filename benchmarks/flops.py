"""FLOP counts from traced graphs, and this machine's peak FLOP/s.

TensorFlow's profiler (`tf.compat.v1.profiler`, float_operation options) counts the
floating-point operations of every op in a graph that has a registered FLOP statistic:
matrix products and convolutions (2 per multiply-add) and their gradients, and the
common elementwise ops. It does not look inside the bodies of loops, conditionals or
nested function calls: a graph holding such an op gets `complete=False`, and its work
must be counted analytically (`registry.Flops`), unless the bodies it runs do no
floating-point work at all (an input check's `tf.cond` whose branches compare integer
ids and assert, as `core.Embed`'s).
"""

import dataclasses
import time

import numpy as np
import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class GraphCount:
    """FLOPs the profiler counts in a graph, and whether that is all of the graph's work."""

    flops: int
    complete: bool


def _called(node_def) -> list[str]:
    """Names of the functions `node_def` runs (a While loop's body, an If branch, a function call)."""
    names = []
    for attr in node_def.attr.values():
        if attr.HasField("func"):
            names.append(attr.func.name)
        names.extend(f.name for f in attr.list.func)
    return names


# Ops that move, select or check data without arithmetic on it. Anything else in a
# called body with a floating-point type attribute is work the profiler cannot count.
_NO_ARITHMETIC = {
    "Assert", "Const", "GatherNd", "GatherV2", "Identity", "IdentityN", "If", "LogicalAnd",
    "LogicalNot", "LogicalOr", "NoOp", "Reshape", "Shape", "Size", "StatelessIf", "StopGradient",
    "StridedSlice", "Where",
}  # fmt: skip
_FLOAT_TYPES = {d.as_datatype_enum for d in (tf.float16, tf.bfloat16, tf.float32, tf.float64)}


def _does_float_work(name: str, library: dict, seen: set[str]) -> bool:
    """Whether the function `name` of `library` (or a function it calls) computes on floats."""
    if name in seen:
        return False
    seen.add(name)
    for node in library[name].node_def:
        if any(_does_float_work(f, library, seen) for f in _called(node)):
            return True
        if node.op in _NO_ARITHMETIC:
            continue
        types = [a.type for a in node.attr.values() if a.HasField("type")]
        types += [t for a in node.attr.values() for t in a.list.type]
        if any(t in _FLOAT_TYPES for t in types) or not types:
            return True  # an op without a type attribute: assume it computes
    return False


_BATCH_MATMULS = ("BatchMatMul", "BatchMatMulV2", "BatchMatMulV3")


def _batch_matmul_correction(op: tf.Operation) -> int:
    """What to add to the profiler's count of `op`, a batched product with an adjoint first operand.

    TensorFlow's profiler (2.21) takes the contracted size of a batched product from
    a `transpose_a` attribute, which BatchMatMul does not have (it has `adj_x`), so for
    `matmul(a, b, adjoint_a=True)` it counts a's last axis instead of its second to
    last. Gradients of batched products are such products.
    """
    if op.type not in _BATCH_MATMULS or not op.get_attr("adj_x"):
        return 0
    a, out = op.inputs[0].shape, op.outputs[0].shape
    if not (a.is_fully_defined() and out.is_fully_defined()):
        return 0
    return 2 * (a[-2] - a[-1]) * out.num_elements()


def _live_ops(graph: tf.Graph) -> set[str] | None:
    """Names of the ops a call of the function runs: those its outputs and side effects need.

    TensorFlow prunes the rest when it instantiates a function (gradients into the
    data, say, which autodiff builds but nothing reads). None for a graph that is not a
    function's, where every op counts.
    """
    outputs = getattr(graph, "outputs", None)
    if outputs is None:
        return None
    live, stack = set(), [t.op for t in outputs] + list(getattr(graph, "control_outputs", []))
    while stack:
        op = stack.pop()
        if op.name in live:
            continue
        live.add(op.name)
        stack.extend(t.op for t in op.inputs)
        stack.extend(op.control_inputs)
    return live


def _per_op(profile) -> dict[str, int]:
    """Each op's own FLOPs, from the profiler's tree of name scopes."""
    counts, stack = {}, [profile]
    while stack:
        node = stack.pop()
        if node.float_ops:
            counts[node.name] = node.float_ops
        stack.extend(node.children)
    return counts


def count_graph(graph: tf.Graph) -> GraphCount:
    """Counts the FLOPs of `graph` (shapes must be static) with TensorFlow's profiler.

    Only the ops a call runs are counted (see `_live_ops`), and the profiler's count of
    batched products with an adjoint first operand is corrected (see
    `_batch_matmul_correction`). Left alone, those two counted 2.4 times the true work
    of the attention workload's train step.
    """
    builder = tf.compat.v1.profiler.ProfileOptionBuilder
    options = builder(builder.float_operation()).with_empty_output().build()
    per_op = _per_op(tf.compat.v1.profiler.profile(graph=graph, options=options))
    live = _live_ops(graph)
    total = 0
    for op in graph.get_operations():
        if live is None or op.name in live:
            total += per_op.get(op.name, 0) + _batch_matmul_correction(op)
    calls = [f for op in graph.get_operations() if live is None or op.name in live for f in _called(op.node_def)]
    library = {f.signature.name: f for f in graph.as_graph_def().library.function} if calls else {}
    complete = not any(_does_float_work(f, library, set()) for f in calls)
    return GraphCount(int(total), complete)


def count_function(fn: tf.types.experimental.PolymorphicFunction, *args) -> GraphCount:
    """Counts the FLOPs of one call of the `tf.function` `fn` on `args` (traced, not run)."""
    return count_graph(fn.get_concrete_function(*args).graph)


@dataclasses.dataclass(frozen=True)
class Kernel:
    """One calibration kernel: a matrix product [m, k] x [k, n], or a stride-1 "SAME"
    convolution of [batch, size, size, channels_in] inputs with a `kernel` x `kernel` x
    channels_in x channels_out filter (channels last, the layout every device has)."""

    kind: str  # "matmul" or "conv2d"
    shape: tuple[int, ...]  # (m, k, n) or (batch, size, channels_in, channels_out, kernel)

    @property
    def name(self) -> str:
        if self.kind == "matmul":
            m, k, n = self.shape
            return f"matmul {m}x{k} @ {k}x{n}"
        batch, size, cin, cout, kernel = self.shape
        return f"conv2d {kernel}x{kernel} {cin}->{cout} on {batch}x{size}x{size}"

    @property
    def flops(self) -> int:
        """2 per multiply-add, as the profiler counts."""
        if self.kind == "matmul":
            m, k, n = self.shape
            return 2 * m * k * n
        batch, size, cin, cout, kernel = self.shape
        return 2 * batch * size * size * cout * kernel * kernel * cin


# Matrix products and convolutions of the sizes the workloads run: a CPU's best rate
# depends on the shape (a convolution's blocking can beat a square product's), so the
# peak is the best of several. `smoke` keeps the tests fast.
CALIBRATION = {
    "smoke": (Kernel("matmul", (512, 512, 512)), Kernel("conv2d", (4, 16, 32, 64, 3))),
    "full": (
        Kernel("matmul", (2048, 2048, 2048)),
        Kernel("matmul", (1024, 1024, 1024)),
        Kernel("matmul", (4096, 256, 1024)),
        Kernel("conv2d", (32, 32, 64, 64, 3)),
        Kernel("conv2d", (8, 16, 64, 256, 5)),
        Kernel("conv2d", (8, 32, 128, 128, 3)),
    ),
}


def kernel_rate(kernel: Kernel, dtype: tf.DType = tf.float32, repeats: int = 5, calls: int = 3) -> float:
    """The FLOP/s of `kernel` in `dtype`: the fastest of `repeats` timings of `calls` back-to-back calls.

    Each call runs in a `tf.function` and brings one element of the result back to the
    host, which waits for all of it. The fastest, because noise from other processes
    only ever slows a kernel down.
    """
    if kernel.kind == "matmul":
        m, k, n = kernel.shape
        shapes, op = ([m, k], [k, n]), lambda a, b: tf.linalg.matmul(a, b)[0, 0]
    else:
        batch, size, cin, cout, kw = kernel.shape
        shapes = ([batch, size, size, cin], [kw, kw, cin, cout])
        op = lambda a, b: tf.nn.conv2d(a, b, 1, "SAME")[0, 0, 0, 0]  # noqa: E731
    a, b = (tf.cast(tf.random.stateless_normal(s, seed=[i, 0]), dtype) for i, s in enumerate(shapes))
    fn = tf.function(op)
    fn(a, b).numpy()
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn(a, b).numpy()
        best = min(best, (time.perf_counter() - start) / calls)
    return kernel.flops / best


def measure_peak(
    dtype: tf.DType = tf.float32, kernels: tuple[Kernel, ...] = CALIBRATION["full"], repeats: int = 5, calls: int = 3
) -> dict:
    """This machine's peak in `dtype`: the best rate of the calibration `kernels` (`kernel_rate`).

    Returns {"flops_per_s": the best rate, "best": the kernel that gave it, "dtype",
    "kernels": [{"name", "flops", "flops_per_s"} for each]}.
    """
    rates = [{"name": k.name, "flops": k.flops, "flops_per_s": kernel_rate(k, dtype, repeats, calls)} for k in kernels]
    best = max(rates, key=lambda r: r["flops_per_s"])
    return {
        "flops_per_s": best["flops_per_s"],
        "best": best["name"],
        "dtype": tf.as_dtype(dtype).name,
        "kernels": rates,
    }


# The ops that carry a model's arithmetic: their dtype is the dtype the model computes in.
HEAVY_OPS = frozenset(
    {
        "MatMul",
        "BatchMatMul",
        "BatchMatMulV2",
        "BatchMatMulV3",
        "Einsum",
        "Conv2D",
        "Conv3D",
        "Conv2DBackpropInput",
        "Conv2DBackpropFilter",
        "Conv3DBackpropInputV2",
        "Conv3DBackpropFilterV2",
        "DepthwiseConv2dNative",
    }
)


def compute_dtypes(graph: tf.Graph, skip_scope: str | None = None) -> dict[str, list[str]]:
    """The dtypes of the matrix products and convolutions in `graph`, per op type.

    Unlike the profiler, this looks inside loop bodies and nested functions too (the
    graph's function library), so a recurrent core's products are included. Ops whose
    name contains `skip_scope` (e.g. "spectral_norm/") are left out.
    """
    graph_def = graph.as_graph_def()
    nodes = list(graph_def.node) + [n for f in graph_def.library.function for n in f.node_def]
    found: dict[str, set[str]] = {}
    for node in nodes:
        if skip_scope is not None and skip_scope in node.name:
            continue
        if node.op in HEAVY_OPS and "T" in node.attr:
            found.setdefault(node.op, set()).add(tf.as_dtype(node.attr["T"].type).name)
    return {op: sorted(dtypes) for op, dtypes in sorted(found.items())}
