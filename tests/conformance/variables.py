"""Regenerates a test module's variables.json, the checked-in list of its entries' variables.

    python -m tests.conformance.variables                                    # the core's list
    python -m tests.conformance.variables tests.models.dnc.test_conformance  # a model's
    python -m tests.conformance.variables tests.conformance.test_conformance Linear  # named entries

Review the diff before committing it: a changed line is a renamed or reshaped variable,
which breaks users' checkpoints.
"""

import importlib
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tests.conformance import suite  # noqa: E402


def main(test_module: str, names: list[str]) -> None:
    module = importlib.import_module(test_module)
    path = suite.variables_file(module)
    listing = {}
    if names and os.path.exists(path):
        with open(path) as f:
            listing = json.load(f)
    for entry in module.ENTRIES:
        if not names or entry.name in names:
            built, _ = suite.build(entry)
            listing[entry.name] = suite.describe_variables(built)
    known = {e.name for e in module.ENTRIES}
    listing = {k: v for k, v in sorted(listing.items()) if k in known}
    with open(path, "w") as f:
        json.dump(listing, f, indent=1)
        f.write("\n")
    print(f"wrote {len(listing)} entries to {path}")


if __name__ == "__main__":
    args = sys.argv[1:]
    main(args[0] if args else "tests.conformance.test_conformance", args[1:])
