"""Options of the pytest-benchmark entry point (`pytest benchmarks --benchmark-only`)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_addoption(parser):
    group = parser.getgroup("flagship workloads")
    group.addoption(
        "--workload-preset",
        default="quick",
        choices=("smoke", "quick", "paper"),
        help="size preset of the workloads (default: quick)",
    )
    group.addoption(
        "--workload-dtype",
        default="float32",
        choices=("float32", "bfloat16"),
        help="dtype of the workloads' inputs and parameters (default: float32)",
    )
