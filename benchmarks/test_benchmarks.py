"""The workload registry under pytest-benchmark.

    pytest benchmarks --benchmark-only [--workload-preset smoke|quick|paper]
        [--workload-dtype float32|bfloat16] [--benchmark-autosave] [--benchmark-compare]

One benchmark per workload, implementation (ours and each peer), step and mode, grouped
by workload, step and mode so each group shows ours against the peers. The first call
(tracing, compiling) happens before timing. pytest-benchmark times calls back to back
rather than interleaved, so on a shared machine prefer `python -m benchmarks.run` for
ratios; this entry point is for saving and comparing runs with pytest-benchmark's tools.
(Not part of `make test`, whose test paths are tests/ only.)
"""

import pytest
import tensorflow as tf

from benchmarks import measure, registry, steps

CASES = [(w.name, name) for w in registry.select() for name in ("ours", *w.peers)]


@pytest.fixture(scope="module")
def prepared() -> dict:
    """Built and initialised cases, shared by the tests of one (workload, implementation)."""
    return {}


@pytest.mark.parametrize("mode", steps.MODES)
@pytest.mark.parametrize("step", steps.STEPS)
@pytest.mark.parametrize("workload,implementation", CASES, ids=[f"{w}-{i}" for w, i in CASES])
def test_step(benchmark, request, prepared, workload, implementation, step, mode):
    preset = request.config.getoption("--workload-preset")
    settings = measure.Settings.for_preset(preset, dtype=tf.as_dtype(request.config.getoption("--workload-dtype")))
    spec = registry.select([workload])[0]
    key = (workload, implementation)
    if key not in prepared:
        prepared.clear()  # one workload's cases in memory at a time
        builder = spec.build if implementation == "ours" else spec.peers[implementation]
        try:
            prepared[key] = measure.prepare(builder, spec.size(preset), settings)
        except Exception as e:  # noqa: BLE001 -- e.g. a peer without bfloat16 support
            if implementation == "ours":
                raise
            pytest.skip(f"{implementation} cannot build {workload} in {settings.dtype.name}: {type(e).__name__}: {e}")
    case = prepared[key]
    fn = steps.make(case.case, step, mode)
    inputs = case.inputs_for(step)
    steps.to_host(fn(inputs))  # tracing and compiling, outside the timing
    benchmark.group = f"{workload} {step} {mode}"
    benchmark.extra_info.update(preset=preset, batch_size=case.case.batch_size, size=spec.size(preset))
    benchmark(lambda: steps.to_host(fn(inputs)))
