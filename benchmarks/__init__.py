"""Benchmarks of the core and the models: the harness (`python -m benchmarks.run`), its workload registry and tools."""
